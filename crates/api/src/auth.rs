//! Bearer-token authentication: JWTs whose `sub` is the user id, signed with a shared secret
//! (HS256), or with a private key whose public half is in a JSON Web Key Set (RS256, EdDSA).
//!
//! # Rules
//! - Each key accepts exactly its algorithm. The HS256 secret verifies only HS256 tokens; a
//!   JWKS key only the algorithm of its `alg` (or, without one, of its type: RSA → RS256,
//!   Ed25519 → EdDSA). A token claiming `none`, any other algorithm, or an algorithm other than
//!   its key's (the "algorithm confusion" of an HS256 token signed with an RSA public key as
//!   the secret) is refused before any signature is checked.
//! - JWKS keys are chosen by the token's `kid`; a token without one may use the set's only key
//!   of its algorithm. An unknown `kid` is refused, after at most one re-read of the set per
//!   [`UNKNOWN_KID_REFETCH_INTERVAL`] (keys rotate; a flood of made-up ids must not become a
//!   flood of fetches).
//! - `exp` is required and `exp`/`nbf` are checked with a leeway for clock skew. `iss` and
//!   `aud` are required and checked when configured. A token carrying an `aud` while no
//!   audience is configured is refused (RFC 7519 §4.1.3: a token meant for another service is
//!   not ours).
//! - The user id must be a valid subject token (see [`domain::UserId`]) because it becomes
//!   part of NATS subjects.
//! - Refusals say why in problem+json but never echo the token, the secret or a key.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use base64::Engine;
use domain::UserId;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::problem::ApiError;

/// Seconds of clock skew tolerated on `exp` and `nbf` unless configured otherwise.
pub const DEFAULT_LEEWAY_SECONDS: u64 = 30;
/// The largest leeway accepted: beyond five minutes an expired token lives on too long.
pub const MAX_LEEWAY_SECONDS: u64 = 300;
/// How often a JWKS is re-read in the background, so rotated keys arrive before tokens
/// signed with them.
pub const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(300);
/// The least time between two re-reads triggered by tokens naming an unknown `kid`.
pub const UNKNOWN_KID_REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// How long a JWKS fetch may take: a start fails within this when the URL does not answer.
const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The claims taskmaster reads and writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at.
    #[serde(default)]
    pub iat: i64,
    /// Not before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Issuer: required to match when `TASKMASTER_JWT_ISSUER` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience: required to match when `TASKMASTER_JWT_AUDIENCE` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

impl Claims {
    /// Claims for `user`, valid for `ttl_seconds` from `now` (seconds since the epoch).
    pub fn for_user(user: &UserId, now: i64, ttl_seconds: i64) -> Self {
        Self {
            sub: user.as_str().to_owned(),
            iat: now,
            exp: now + ttl_seconds,
            nbf: None,
            iss: None,
            aud: None,
        }
    }
}

/// The only claim read after validation; the rest is checked by `jsonwebtoken`. Reading
/// nothing else keeps tokens of identity providers (an `aud` list, no `iat`) acceptable.
#[derive(Deserialize)]
struct Subject {
    sub: String,
}

/// What a token must claim besides a signature: the clock leeway and, when configured, the
/// issuer and audience.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRules {
    /// Seconds of clock skew tolerated on `exp` and `nbf`.
    pub leeway_seconds: u64,
    /// The required `iss`, if any.
    pub issuer: Option<String>,
    /// The required `aud`, if any.
    pub audience: Option<String>,
}

impl Default for ClaimRules {
    fn default() -> Self {
        Self {
            leeway_seconds: DEFAULT_LEEWAY_SECONDS,
            issuer: None,
            audience: None,
        }
    }
}

impl ClaimRules {
    /// A validation accepting `algorithm` and nothing else.
    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        // Explicit, so the pin does not rest on a library default.
        validation.algorithms = vec![algorithm];
        validation.leeway = self.leeway_seconds;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        let mut required = vec!["exp", "sub"];
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        if let Some(audience) = &self.audience {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        validation
    }
}

/// Where a JSON Web Key Set comes from: `TASKMASTER_JWKS`. Its `Debug` is its `Display`: a
/// URL may carry credentials or an access token, and settings are printed with `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A file, re-read like a URL so a mounted secret can rotate.
    File(PathBuf),
    /// An `http(s)://` URL, typically an identity provider's `jwks_uri`.
    Url(reqwest::Url),
}

impl JwksSource {
    /// `http://…` or `https://…` is a URL, anything else a file path.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let lower = raw.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            reqwest::Url::parse(raw)
                .map(JwksSource::Url)
                .map_err(|e| format!("not a valid URL: {e}"))
        } else if lower.contains("://") {
            Err("must be a file path or an http(s) URL".into())
        } else {
            Ok(JwksSource::File(PathBuf::from(raw)))
        }
    }
}

impl std::fmt::Debug for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JwksSource({self})")
    }
}

impl std::fmt::Display for JwksSource {
    /// The path, or the URL without credentials, query or fragment (which may hold a token).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwksSource::File(path) => write!(f, "{}", path.display()),
            JwksSource::Url(url) => {
                let mut shown = url.clone();
                let _ = shown.set_username("");
                let _ = shown.set_password(None);
                shown.set_query(None);
                shown.set_fragment(None);
                write!(f, "{shown}")
            }
        }
    }
}

/// One public key of a JWKS, pinned to one algorithm.
#[derive(Clone)]
struct PublicKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// The usable keys of a JWKS.
#[derive(Clone, Default)]
struct KeySet {
    keys: Vec<PublicKey>,
}

impl KeySet {
    /// Parses a JWKS, keeping the RS256 and Ed25519 signing keys. Other keys (encryption keys,
    /// other curves or algorithms, symmetric keys) are skipped, not errors: identity providers
    /// publish them side by side with the signing keys.
    fn parse(bytes: &[u8]) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct RawSet {
            keys: Vec<serde_json::Value>,
        }
        let raw: RawSet = serde_json::from_slice(bytes)
            .map_err(|e| format!("not a JSON Web Key Set ({{\"keys\": [...]}}): {e}"))?;
        let mut keys = Vec::new();
        for value in raw.keys {
            let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
                continue;
            };
            if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
                continue;
            }
            let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
                (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
                (AlgorithmParameters::OctetKeyPair(p), None | Some(KeyAlgorithm::EdDSA))
                    if p.curve == EllipticCurve::Ed25519 =>
                {
                    Algorithm::EdDSA
                }
                _ => continue,
            };
            let Ok(key) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            keys.push(PublicKey {
                kid: jwk.common.key_id.clone(),
                algorithm,
                key,
            });
        }
        if keys.is_empty() {
            return Err("holds no RS256 or Ed25519 (EdDSA) signing key".into());
        }
        Ok(Self { keys })
    }

    fn knows(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// The key a token of `algorithm` naming `kid` is verified with.
    fn select(&self, algorithm: Algorithm, kid: Option<&str>) -> Result<&PublicKey, ApiError> {
        let key = match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .ok_or_else(|| refused("the token's key id (kid) is not known"))?,
            None => {
                let mut candidates = self.keys.iter().filter(|k| k.algorithm == algorithm);
                match (candidates.next(), candidates.next()) {
                    (Some(only), None) => only,
                    (None, _) => return Err(refused("the token's algorithm is not accepted")),
                    (Some(_), Some(_)) => {
                        return Err(refused(
                            "the token names no key id (kid) and several keys could verify it",
                        ))
                    }
                }
            }
        };
        if key.algorithm != algorithm {
            return Err(refused("the token's algorithm does not match its key"));
        }
        Ok(key)
    }
}

/// A JWKS, its source and when it was last read.
struct JwksKeys {
    source: JwksSource,
    http: reqwest::Client,
    current: RwLock<Arc<KeySet>>,
    /// When a re-read for an unknown `kid` last ran, to bound them.
    last_kid_refetch: tokio::sync::Mutex<Option<Instant>>,
}

impl JwksKeys {
    async fn load(source: JwksSource) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .timeout(JWKS_FETCH_TIMEOUT)
            .build()
            .map_err(|e| ApiError::KeySet(format!("cannot build an HTTP client: {e}")))?;
        let set = fetch(&source, &http).await?;
        Ok(Self {
            source,
            http,
            current: RwLock::new(Arc::new(set)),
            last_kid_refetch: tokio::sync::Mutex::new(None),
        })
    }

    fn current(&self) -> Arc<KeySet> {
        self.current
            .read()
            .map(|set| set.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// Re-reads the set; on failure the keys held stay in use.
    async fn refresh(&self) -> Result<usize, ApiError> {
        let set = fetch(&self.source, &self.http).await?;
        let count = set.keys.len();
        match self.current.write() {
            Ok(mut current) => *current = Arc::new(set),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(set),
        }
        Ok(count)
    }

    async fn refresh_for_unknown_kid(&self) {
        let mut last = self.last_kid_refetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < UNKNOWN_KID_REFETCH_INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
        match self.refresh().await {
            Ok(keys) => {
                tracing::info!(source = %self.source, keys, "re-read the JWKS for an unknown key id")
            }
            Err(error) => {
                tracing::warn!(%error, "re-reading the JWKS failed; keeping the keys held")
            }
        }
    }
}

#[tracing::instrument(skip_all, fields(source = %source))]
async fn fetch(source: &JwksSource, http: &reqwest::Client) -> Result<KeySet, ApiError> {
    let bytes = match source {
        JwksSource::File(path) => tokio::fs::read(path)
            .await
            .map_err(|e| ApiError::KeySet(format!("cannot read {source}: {e}")))?,
        JwksSource::Url(url) => {
            // reqwest's own message ("error sending request") hides the cause in its
            // sources: name them all, on one line, and never the URL's query.
            let unreachable = |e: reqwest::Error| {
                let e = e.without_url();
                let mut message = format!("cannot fetch {source}: {e}");
                let mut cause = std::error::Error::source(&e);
                while let Some(inner) = cause {
                    message.push_str(&format!(": {inner}"));
                    cause = inner.source();
                }
                ApiError::KeySet(message.replace('\n', " "))
            };
            http.get(url.clone())
                .header(reqwest::header::ACCEPT, "application/json")
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(unreachable)?
                .bytes()
                .await
                .map_err(unreachable)?
                .to_vec()
        }
    };
    KeySet::parse(&bytes).map_err(|e| ApiError::KeySet(format!("{source} {e}")))
}

/// The header fields read before any key is chosen.
struct TokenHeader {
    algorithm: Algorithm,
    kid: Option<String>,
}

impl TokenHeader {
    /// Reads the header without trusting it: only HS256, RS256 and EdDSA get any further.
    fn read(token: &str) -> Result<Self, ApiError> {
        #[derive(Deserialize)]
        struct Raw {
            alg: String,
            #[serde(default)]
            kid: Option<String>,
        }
        let malformed = || refused("the token is malformed");
        let mut parts = token.split('.');
        let (Some(header), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| malformed())?;
        let raw: Raw = serde_json::from_slice(&json).map_err(|_| malformed())?;
        let algorithm = match raw.alg.as_str() {
            "HS256" => Algorithm::HS256,
            "RS256" => Algorithm::RS256,
            "EdDSA" => Algorithm::EdDSA,
            _ => return Err(refused("the token's algorithm is not accepted")),
        };
        Ok(Self {
            algorithm,
            kid: raw.kid,
        })
    }
}

fn refused(why: &str) -> ApiError {
    ApiError::Unauthorized(why.into())
}

/// Verifies bearer tokens: HS256 with a secret, RS256/EdDSA with a JWKS, or both.
#[derive(Clone)]
pub struct TokenVerifier {
    hs256: Option<DecodingKey>,
    jwks: Option<Arc<JwksKeys>>,
    rules: ClaimRules,
    hs256_validation: Validation,
    rs256_validation: Validation,
    eddsa_validation: Validation,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("hs256", &self.hs256.is_some())
            .field("jwks", &self.jwks.as_ref().map(|j| j.source.to_string()))
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// A verifier for HS256 tokens signed with `secret`, with the default rules.
    pub fn hs256(secret: &[u8]) -> Self {
        Self::new(Some(secret), ClaimRules::default())
    }

    /// A verifier for HS256 tokens signed with `hs256_secret` (none: HS256 is refused), add
    /// a JWKS with [`TokenVerifier::with_jwks`].
    pub fn new(hs256_secret: Option<&[u8]>, rules: ClaimRules) -> Self {
        Self {
            hs256: hs256_secret.map(DecodingKey::from_secret),
            jwks: None,
            hs256_validation: rules.validation(Algorithm::HS256),
            rs256_validation: rules.validation(Algorithm::RS256),
            eddsa_validation: rules.validation(Algorithm::EdDSA),
            rules,
        }
    }

    /// Also accepts RS256 and EdDSA tokens signed by the keys of `source`, read now: a start
    /// fails with one line naming the file or URL when it cannot be read or holds no usable
    /// key, rather than serving 401s (or 503s) for a misconfiguration.
    pub async fn with_jwks(mut self, source: JwksSource) -> Result<Self, ApiError> {
        self.jwks = Some(Arc::new(JwksKeys::load(source).await?));
        Ok(self)
    }

    /// Re-reads the JWKS every `every` until `shutdown` (returns at once without a JWKS). A
    /// failed read is logged and the keys held stay in use.
    pub async fn keep_keys_fresh(&self, every: Duration, shutdown: CancellationToken) {
        let Some(jwks) = &self.jwks else {
            return;
        };
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            match jwks.refresh().await {
                Ok(keys) => tracing::debug!(source = %jwks.source, keys, "re-read the JWKS"),
                Err(error) => {
                    tracing::warn!(%error, "re-reading the JWKS failed; keeping the keys held")
                }
            }
        }
    }

    /// The user a token speaks for, checked against the keys held now.
    pub fn verify(&self, token: &str) -> Result<UserId, ApiError> {
        let header = TokenHeader::read(token)?;
        self.verify_header(token, &header)
    }

    /// Like [`TokenVerifier::verify`], but a token naming a `kid` the JWKS lacks first
    /// re-reads the set (at most once per [`UNKNOWN_KID_REFETCH_INTERVAL`]): the issuer may
    /// have rotated its keys since the last read.
    pub async fn authenticate(&self, token: &str) -> Result<UserId, ApiError> {
        let header = TokenHeader::read(token)?;
        if let (Some(jwks), Some(kid), false) = (
            &self.jwks,
            &header.kid,
            header.algorithm == Algorithm::HS256,
        ) {
            if !jwks.current().knows(kid) {
                jwks.refresh_for_unknown_kid().await;
            }
        }
        self.verify_header(token, &header)
    }

    fn verify_header(&self, token: &str, header: &TokenHeader) -> Result<UserId, ApiError> {
        let result = self.check(token, header);
        if let Err(ApiError::Unauthorized(why)) = &result {
            tracing::debug!(reason = %why, "refused a bearer token");
        }
        result
    }

    fn check(&self, token: &str, header: &TokenHeader) -> Result<UserId, ApiError> {
        let keys;
        let (key, validation) = match header.algorithm {
            Algorithm::HS256 => match &self.hs256 {
                Some(key) => (key, &self.hs256_validation),
                None => return Err(refused("the token's algorithm is not accepted")),
            },
            algorithm => {
                keys = match &self.jwks {
                    Some(jwks) => jwks.current(),
                    None => return Err(refused("the token's algorithm is not accepted")),
                };
                let key = keys.select(algorithm, header.kid.as_deref())?;
                let validation = match key.algorithm {
                    Algorithm::EdDSA => &self.eddsa_validation,
                    _ => &self.rs256_validation,
                };
                (&key.key, validation)
            }
        };
        let data = jsonwebtoken::decode::<Subject>(token, key, validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => refused("the token has expired"),
                ErrorKind::ImmatureSignature => refused("the token is not valid yet"),
                ErrorKind::InvalidSignature => refused("the token's signature is invalid"),
                ErrorKind::InvalidAlgorithm => refused("the token's algorithm is not accepted"),
                ErrorKind::MissingRequiredClaim(claim) => {
                    ApiError::Unauthorized(format!("the token lacks the required claim `{claim}`"))
                }
                ErrorKind::InvalidIssuer => refused("the token's issuer is not accepted"),
                ErrorKind::InvalidAudience => refused("the token's audience is not accepted"),
                _ => refused("the token is malformed"),
            }
        })?;
        UserId::parse(&data.claims.sub)
            .map_err(|_| refused("the token's subject is not a valid user id"))
    }
}

/// Mints an HS256 token for `user`, valid for `ttl_seconds` from `now` (seconds since epoch).
pub fn mint_hs256(secret: &[u8], user: &UserId, now: i64, ttl_seconds: i64) -> String {
    mint_hs256_claims(secret, &Claims::for_user(user, now, ttl_seconds))
}

/// Mints an HS256 token carrying `claims` (with an issuer or audience, say).
pub fn mint_hs256_claims(secret: &[u8], claims: &Claims) -> String {
    // HMAC signing of a small struct cannot fail.
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap_or_default()
}

/// The authenticated user of a request. A middleware that verifies the token itself (the
/// rate limiter) puts it in the request's extensions, where the extractor takes it.
#[derive(Debug, Clone)]
pub struct AuthUser(pub UserId);

/// The token of an `Authorization: Bearer <token>` header; the error says what is wrong.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Result<&str, ApiError> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized("missing Authorization: Bearer token".into()))?;
    header
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::Unauthorized("expected Authorization: Bearer <token>".into()))
}

impl<S> FromRequestParts<S> for AuthUser
where
    Arc<TokenVerifier>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // Verified already by the rate limiter in front of the handler: not twice per request.
        if let Some(AuthUser(user)) = parts.extensions.get::<AuthUser>() {
            return Ok(AuthUser(user.clone()));
        }
        let token = bearer_token(&parts.headers)?;
        let verifier = Arc::<TokenVerifier>::from_ref(state);
        verifier.authenticate(token).await.map(AuthUser)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test-secret-test-secret-test-secret";
    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/auth");

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn alice() -> UserId {
        UserId::parse("alice").unwrap()
    }

    fn sign(header: Header, claims: &impl Serialize, key: &EncodingKey) -> String {
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    fn with_kid(algorithm: Algorithm, kid: Option<&str>) -> Header {
        let mut header = Header::new(algorithm);
        header.kid = kid.map(str::to_owned);
        header
    }

    fn rsa_key() -> EncodingKey {
        EncodingKey::from_rsa_pem(&fixture("rsa-private.pem")).unwrap()
    }

    fn ed_key() -> EncodingKey {
        EncodingKey::from_ed_pem(&fixture("ed25519-private.pem")).unwrap()
    }

    fn hs_key() -> EncodingKey {
        EncodingKey::from_secret(SECRET)
    }

    fn jwks_file(name: &str) -> JwksSource {
        JwksSource::File(PathBuf::from(format!("{FIXTURES}/{name}")))
    }

    async fn jwks_verifier(hs256: Option<&[u8]>) -> TokenVerifier {
        TokenVerifier::new(hs256, ClaimRules::default())
            .with_jwks(jwks_file("jwks.json"))
            .await
            .unwrap()
    }

    /// The `detail` a refusal answers with.
    fn refusal(result: Result<UserId, ApiError>) -> String {
        match result {
            Err(ApiError::Unauthorized(detail)) => detail,
            other => panic!("expected a 401, got {other:?}"),
        }
    }

    fn unsigned(claims: &Claims) -> String {
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            engine.encode(br#"{"alg":"none","typ":"JWT"}"#),
            engine.encode(serde_json::to_vec(claims).unwrap())
        )
    }

    #[test]
    fn a_minted_token_verifies_to_its_user() {
        let token = mint_hs256(SECRET, &alice(), now(), 60);
        assert_eq!(
            TokenVerifier::hs256(SECRET).verify(&token).unwrap(),
            alice()
        );
    }

    #[test]
    fn expired_forged_and_unsigned_tokens_are_refused() {
        let verifier = TokenVerifier::hs256(SECRET);
        let expired = mint_hs256(SECRET, &alice(), now() - 3600, 60);
        assert_eq!(refusal(verifier.verify(&expired)), "the token has expired");
        let forged = mint_hs256(b"another-secret", &alice(), now(), 60);
        assert_eq!(
            refusal(verifier.verify(&forged)),
            "the token's signature is invalid"
        );
        let none = unsigned(&Claims::for_user(&alice(), now(), 60));
        assert_eq!(
            refusal(verifier.verify(&none)),
            "the token's algorithm is not accepted"
        );
        // "none" with a signature glued on, and other spellings, fare no better.
        assert!(verifier.verify(&format!("{none}c2ln")).is_err());
        assert!(verifier.verify("garbage").is_err());
        assert!(verifier.verify("a.b.c.d").is_err());
    }

    #[test]
    fn an_hs256_verifier_refuses_every_other_algorithm() {
        let verifier = TokenVerifier::hs256(SECRET);
        let claims = Claims::for_user(&alice(), now(), 60);
        for algorithm in [Algorithm::HS384, Algorithm::HS512] {
            let token = sign(
                Header::new(algorithm),
                &claims,
                &EncodingKey::from_secret(SECRET),
            );
            assert_eq!(
                refusal(verifier.verify(&token)),
                "the token's algorithm is not accepted",
                "{algorithm:?}"
            );
        }
        let rs256 = sign(Header::new(Algorithm::RS256), &claims, &rsa_key());
        assert_eq!(
            refusal(verifier.verify(&rs256)),
            "the token's algorithm is not accepted"
        );
        let eddsa = sign(Header::new(Algorithm::EdDSA), &claims, &ed_key());
        assert!(verifier.verify(&eddsa).is_err());
    }

    #[test]
    fn exp_is_required_and_checked_with_the_leeway() {
        let verifier = TokenVerifier::hs256(SECRET);
        #[derive(Serialize)]
        struct NoExp<'a> {
            sub: &'a str,
            iat: i64,
        }
        let token = sign(
            Header::new(Algorithm::HS256),
            &NoExp {
                sub: "alice",
                iat: now(),
            },
            &hs_key(),
        );
        assert_eq!(
            refusal(verifier.verify(&token)),
            "the token lacks the required claim `exp`"
        );
        // Expired 10 s ago: inside the 30 s leeway.
        let mut claims = Claims::for_user(&alice(), now() - 70, 60);
        let token = sign(Header::new(Algorithm::HS256), &claims, &hs_key());
        assert_eq!(verifier.verify(&token).unwrap(), alice());
        // Expired 60 s ago: beyond it.
        claims.exp = now() - 60;
        let token = sign(Header::new(Algorithm::HS256), &claims, &hs_key());
        assert_eq!(refusal(verifier.verify(&token)), "the token has expired");
        // A leeway of zero refuses the first one too.
        let strict = TokenVerifier::new(
            Some(SECRET),
            ClaimRules {
                leeway_seconds: 0,
                ..ClaimRules::default()
            },
        );
        claims.exp = now() - 10;
        let token = sign(Header::new(Algorithm::HS256), &claims, &hs_key());
        assert!(strict.verify(&token).is_err());
    }

    #[test]
    fn nbf_is_checked_with_the_leeway() {
        let verifier = TokenVerifier::hs256(SECRET);
        let mut claims = Claims::for_user(&alice(), now(), 600);
        claims.nbf = Some(now() + 10);
        let soon = sign(Header::new(Algorithm::HS256), &claims, &hs_key());
        assert_eq!(verifier.verify(&soon).unwrap(), alice());
        claims.nbf = Some(now() + 120);
        let later = sign(Header::new(Algorithm::HS256), &claims, &hs_key());
        assert_eq!(
            refusal(verifier.verify(&later)),
            "the token is not valid yet"
        );
    }

    #[test]
    fn a_configured_issuer_and_audience_are_required_and_must_match() {
        let rules = ClaimRules {
            issuer: Some("https://id.example".into()),
            audience: Some("taskmaster".into()),
            ..ClaimRules::default()
        };
        let verifier = TokenVerifier::new(Some(SECRET), rules);
        let mut claims = Claims::for_user(&alice(), now(), 60);
        claims.aud = Some("taskmaster".into());
        assert_eq!(
            refusal(verifier.verify(&mint_hs256_claims(SECRET, &claims))),
            "the token lacks the required claim `iss`"
        );
        claims.aud = None;
        claims.iss = Some("https://id.example".into());
        assert_eq!(
            refusal(verifier.verify(&mint_hs256_claims(SECRET, &claims))),
            "the token lacks the required claim `aud`"
        );
        claims.aud = Some("taskmaster".into());
        assert_eq!(
            verifier
                .verify(&mint_hs256_claims(SECRET, &claims))
                .unwrap(),
            alice()
        );
        claims.iss = Some("https://evil.example".into());
        assert_eq!(
            refusal(verifier.verify(&mint_hs256_claims(SECRET, &claims))),
            "the token's issuer is not accepted"
        );
        claims.iss = Some("https://id.example".into());
        claims.aud = Some("another-service".into());
        assert_eq!(
            refusal(verifier.verify(&mint_hs256_claims(SECRET, &claims))),
            "the token's audience is not accepted"
        );
    }

    #[test]
    fn without_a_configured_audience_a_token_for_some_audience_is_refused() {
        let mut claims = Claims::for_user(&alice(), now(), 60);
        claims.aud = Some("another-service".into());
        assert_eq!(
            refusal(TokenVerifier::hs256(SECRET).verify(&mint_hs256_claims(SECRET, &claims))),
            "the token's audience is not accepted"
        );
    }

    #[test]
    fn a_subject_that_is_not_a_safe_user_id_is_refused() {
        let mut claims = Claims::for_user(&alice(), now(), 60);
        claims.sub = "alice.>".into();
        let token = mint_hs256_claims(SECRET, &claims);
        assert!(TokenVerifier::hs256(SECRET).verify(&token).is_err());
    }

    #[tokio::test]
    async fn rs256_and_eddsa_tokens_from_a_jwks_file_are_accepted() {
        let verifier = jwks_verifier(None).await;
        let claims = Claims::for_user(&alice(), now(), 60);
        let rs = sign(
            with_kid(Algorithm::RS256, Some("rsa-test-1")),
            &claims,
            &rsa_key(),
        );
        assert_eq!(verifier.authenticate(&rs).await.unwrap(), alice());
        let ed = sign(
            with_kid(Algorithm::EdDSA, Some("ed-test-1")),
            &claims,
            &ed_key(),
        );
        assert_eq!(verifier.authenticate(&ed).await.unwrap(), alice());
        // Without a kid: the set's only key of each algorithm.
        let rs = sign(Header::new(Algorithm::RS256), &claims, &rsa_key());
        assert_eq!(verifier.verify(&rs).unwrap(), alice());
        let ed = sign(Header::new(Algorithm::EdDSA), &claims, &ed_key());
        assert_eq!(verifier.verify(&ed).unwrap(), alice());
    }

    #[tokio::test]
    async fn with_a_jwks_and_no_secret_hs256_is_off() {
        let verifier = jwks_verifier(None).await;
        let token = mint_hs256(SECRET, &alice(), now(), 60);
        assert_eq!(
            refusal(verifier.verify(&token)),
            "the token's algorithm is not accepted"
        );
        let both = jwks_verifier(Some(SECRET)).await;
        assert_eq!(both.verify(&token).unwrap(), alice());
    }

    #[tokio::test]
    async fn an_hs256_token_keyed_with_the_rsa_public_key_is_refused() {
        let public_pem = fixture("rsa-public.pem");
        let claims = Claims::for_user(&alice(), now(), 60);
        let confused = sign(
            with_kid(Algorithm::HS256, Some("rsa-test-1")),
            &claims,
            &EncodingKey::from_secret(&public_pem),
        );
        // HS256 off: refused by algorithm, whatever the kid says.
        let verifier = jwks_verifier(None).await;
        assert_eq!(
            refusal(verifier.authenticate(&confused).await),
            "the token's algorithm is not accepted"
        );
        // HS256 on: checked against the secret only, never against a JWKS key.
        let both = jwks_verifier(Some(SECRET)).await;
        assert_eq!(
            refusal(both.authenticate(&confused).await),
            "the token's signature is invalid"
        );
        // An EdDSA token naming the RSA key: refused for the mismatch.
        let mismatched = sign(
            with_kid(Algorithm::EdDSA, Some("rsa-test-1")),
            &claims,
            &ed_key(),
        );
        assert_eq!(
            refusal(verifier.authenticate(&mismatched).await),
            "the token's algorithm does not match its key"
        );
    }

    #[tokio::test]
    async fn an_unknown_kid_and_a_key_outside_the_set_are_refused() {
        let verifier = jwks_verifier(None).await;
        let claims = Claims::for_user(&alice(), now(), 60);
        let other = EncodingKey::from_rsa_pem(&fixture("rsa-other-private.pem")).unwrap();
        let unknown = sign(
            with_kid(Algorithm::RS256, Some("rsa-test-2")),
            &claims,
            &other,
        );
        assert_eq!(
            refusal(verifier.authenticate(&unknown).await),
            "the token's key id (kid) is not known"
        );
        // Signed by another key but naming ours: the signature fails.
        let forged = sign(
            with_kid(Algorithm::RS256, Some("rsa-test-1")),
            &claims,
            &other,
        );
        assert_eq!(
            refusal(verifier.authenticate(&forged).await),
            "the token's signature is invalid"
        );
        // RS256 tokens are checked with the leeway and required claims too.
        let expired = sign(
            with_kid(Algorithm::RS256, Some("rsa-test-1")),
            &Claims::for_user(&alice(), now() - 3600, 60),
            &rsa_key(),
        );
        assert_eq!(refusal(verifier.verify(&expired)), "the token has expired");
    }

    #[tokio::test]
    async fn an_unknown_kid_re_reads_the_set_at_most_once_a_minute() {
        let dir = std::env::temp_dir().join(format!("tm-jwks-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("jwks.json");
        std::fs::write(&path, fixture("jwks.json")).unwrap();
        let verifier = TokenVerifier::new(None, ClaimRules::default())
            .with_jwks(JwksSource::File(path.clone()))
            .await
            .unwrap();
        let claims = Claims::for_user(&alice(), now(), 60);
        let rotated_key = EncodingKey::from_rsa_pem(&fixture("rsa-other-private.pem")).unwrap();
        let rotated = sign(
            with_kid(Algorithm::RS256, Some("rsa-test-2")),
            &claims,
            &rotated_key,
        );
        // The issuer rotates: the token's kid triggers a re-read, which finds it.
        std::fs::write(&path, fixture("jwks-rotated.json")).unwrap();
        assert_eq!(verifier.authenticate(&rotated).await.unwrap(), alice());
        // It rotates back at once: within the minute no re-read happens, so the old kid is
        // unknown until the next periodic refresh.
        std::fs::write(&path, fixture("jwks.json")).unwrap();
        let old = sign(
            with_kid(Algorithm::RS256, Some("rsa-test-1")),
            &claims,
            &rsa_key(),
        );
        assert_eq!(
            refusal(verifier.authenticate(&old).await),
            "the token's key id (kid) is not known"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn the_background_refresh_picks_up_rotated_keys_and_keeps_them_when_a_read_fails() {
        let dir = std::env::temp_dir().join(format!("tm-jwks-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("jwks.json");
        std::fs::write(&path, fixture("jwks.json")).unwrap();
        let verifier = Arc::new(
            TokenVerifier::new(None, ClaimRules::default())
                .with_jwks(JwksSource::File(path.clone()))
                .await
                .unwrap(),
        );
        let shutdown = CancellationToken::new();
        let refresher = tokio::spawn({
            let verifier = verifier.clone();
            let shutdown = shutdown.clone();
            async move {
                verifier
                    .keep_keys_fresh(Duration::from_millis(20), shutdown)
                    .await
            }
        });
        let rotated_key = EncodingKey::from_rsa_pem(&fixture("rsa-other-private.pem")).unwrap();
        let rotated = sign(
            with_kid(Algorithm::RS256, Some("rsa-test-2")),
            &Claims::for_user(&alice(), now(), 60),
            &rotated_key,
        );
        assert!(verifier.verify(&rotated).is_err());
        std::fs::write(&path, fixture("jwks-rotated.json")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        // `verify` never re-reads by itself: only the background refresh can make this pass.
        while verifier.verify(&rotated).is_err() {
            assert!(Instant::now() < deadline, "the rotated key never arrived");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A broken file later: the keys held stay in use.
        std::fs::write(&path, b"{ not json").unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(verifier.verify(&rotated).unwrap(), alice());
        shutdown.cancel();
        refresher.await.unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn an_unreadable_or_useless_jwks_is_a_one_line_error_naming_it() {
        let missing = TokenVerifier::new(None, ClaimRules::default())
            .with_jwks(jwks_file("no-such-file.json"))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            missing.starts_with("TASKMASTER_JWKS: cannot read "),
            "{missing}"
        );
        assert!(missing.contains("no-such-file.json"), "{missing}");
        assert_eq!(missing.lines().count(), 1, "{missing}");
        for (bytes, expected) in [
            (&b"not json"[..], "not a JSON Web Key Set"),
            (br#"{"keys": []}"#, "holds no RS256 or Ed25519"),
            (
                br#"{"keys": [{"kty":"oct","k":"c2VjcmV0","alg":"HS256"}]}"#,
                "holds no RS256 or Ed25519",
            ),
        ] {
            let error = KeySet::parse(bytes).err().unwrap();
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn a_jwks_source_is_a_path_or_an_http_url_shown_without_credentials() {
        assert_eq!(
            JwksSource::parse("/etc/taskmaster/jwks.json").unwrap(),
            JwksSource::File("/etc/taskmaster/jwks.json".into())
        );
        let url = JwksSource::parse("https://user:pw@id.example/jwks?token=abc").unwrap();
        assert!(matches!(url, JwksSource::Url(_)));
        assert_eq!(url.to_string(), "https://id.example/jwks");
        let debug = format!("{url:?}");
        assert!(!debug.contains("pw") && !debug.contains("abc"), "{debug}");
        assert!(JwksSource::parse("ftp://id.example/jwks").is_err());
        assert!(JwksSource::parse("https://").is_err());
    }

    #[test]
    fn the_verifier_debug_shows_no_secret() {
        let verifier = TokenVerifier::hs256(SECRET);
        let debug = format!("{verifier:?}");
        assert!(!debug.contains("test-secret"), "{debug}");
    }
}
