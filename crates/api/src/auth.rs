//! Bearer-token authentication: HS256 JWTs whose `sub` is the user id.
//!
//! The algorithm is pinned (a token claiming `none` or another algorithm is refused), `exp` is
//! required and `nbf` honoured, both with a small leeway for clock skew. The user id must be a
//! valid subject token (see [`domain::UserId`]) because it becomes part of NATS subjects.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use domain::UserId;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::problem::ApiError;

/// Seconds of clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECONDS: u64 = 30;

/// The claims taskmaster reads and writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
}

/// Verifies bearer tokens.
#[derive(Clone)]
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("algorithm", &"HS256")
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// A verifier for HS256 tokens signed with `secret`.
    pub fn hs256(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            key: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// The user a token speaks for.
    pub fn verify(&self, token: &str) -> Result<UserId, ApiError> {
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                let why = match e.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired",
                    ErrorKind::ImmatureSignature => "the token is not valid yet",
                    ErrorKind::InvalidSignature => "the token's signature is invalid",
                    ErrorKind::InvalidAlgorithm => "the token's algorithm is not accepted",
                    ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim",
                    _ => "the token is malformed",
                };
                ApiError::Unauthorized(why.into())
            })?;
        UserId::parse(&data.claims.sub).map_err(|_| {
            ApiError::Unauthorized("the token's subject is not a valid user id".into())
        })
    }
}

/// Mints an HS256 token for `user`, valid for `ttl_seconds` from `now` (seconds since epoch).
pub fn mint_hs256(secret: &[u8], user: &UserId, now: i64, ttl_seconds: i64) -> String {
    let claims = Claims {
        sub: user.as_str().to_owned(),
        iat: now,
        exp: now + ttl_seconds,
        nbf: None,
    };
    // HMAC signing of a small struct cannot fail.
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap_or_default()
}

/// The authenticated user of a request.
#[derive(Debug, Clone)]
pub struct AuthUser(pub UserId);

impl<S> FromRequestParts<S> for AuthUser
where
    Arc<TokenVerifier>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthorized("missing Authorization: Bearer token".into()))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthorized("expected Authorization: Bearer <token>".into())
            })?;
        let verifier = Arc::<TokenVerifier>::from_ref(state);
        verifier.verify(token).map(AuthUser)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test-secret-test-secret-test-secret";

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    #[test]
    fn a_minted_token_verifies_to_its_user() {
        let user = UserId::parse("alice").unwrap();
        let token = mint_hs256(SECRET, &user, now(), 60);
        assert_eq!(TokenVerifier::hs256(SECRET).verify(&token).unwrap(), user);
    }

    #[test]
    fn expired_forged_and_unsigned_tokens_are_refused() {
        let user = UserId::parse("alice").unwrap();
        let verifier = TokenVerifier::hs256(SECRET);
        let expired = mint_hs256(SECRET, &user, now() - 3600, 60);
        assert!(verifier.verify(&expired).is_err());
        let forged = mint_hs256(b"another-secret", &user, now(), 60);
        assert!(verifier.verify(&forged).is_err());
        // {"alg":"none"} with the same claims and no signature.
        let unsigned = format!(
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
            token_body(&mint_hs256(SECRET, &user, now(), 60))
        );
        assert!(verifier.verify(&unsigned).is_err());
    }

    fn token_body(token: &str) -> &str {
        token.split('.').nth(1).unwrap()
    }

    #[test]
    fn a_subject_that_is_not_a_safe_user_id_is_refused() {
        let claims = Claims {
            sub: "alice.>".into(),
            iat: now(),
            exp: now() + 60,
            nbf: None,
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert!(TokenVerifier::hs256(SECRET).verify(&token).is_err());
    }
}
