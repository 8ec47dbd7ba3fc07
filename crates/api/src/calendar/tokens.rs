//! Feed tokens over HTTP: mint one (answered once), list them (never the secret), revoke one.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::calendar::{feed_token_hash, new_feed_token};
use crate::extract::OptionalJsonBody;
use crate::limits::FeedTokenLabelText;
use crate::problem::{ApiError, Problem};
use crate::state::AppState;

/// The most live feed tokens one user holds: one per device and then some. Revoking one makes
/// room; the cap keeps a runaway script from filling the table.
pub const MAX_LIVE_FEED_TOKENS: u32 = 20;

/// Longest label, in characters.
pub const MAX_LABEL_CHARS: usize = 100;

/// A new feed token. The body may be omitted (or be `null`). Unknown fields are refused.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MintFeedTokenRequest {
    /// What to call it ("phone"), to tell subscriptions apart when revoking one.
    #[schema(value_type = Option<FeedTokenLabelText>)]
    pub label: Option<String>,
}

impl MintFeedTokenRequest {
    /// The label, trimmed, `None` when blank; 422 naming `label` when too long or holding a
    /// control character.
    fn label(&self) -> Result<Option<String>, ApiError> {
        let Some(label) = &self.label else {
            return Ok(None);
        };
        if label.chars().count() > MAX_LABEL_CHARS || label.chars().any(char::is_control) {
            return Err(ApiError::field(
                "label",
                "must be at most 100 characters, without control characters",
            ));
        }
        let trimmed = label.trim();
        Ok((!trimmed.is_empty()).then(|| trimmed.to_owned()))
    }
}

/// A feed token as listed: never the secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedTokenInfo {
    /// What revocation names.
    pub id: Uuid,
    /// What it was called when minted, if anything.
    pub label: Option<String>,
    /// When it was minted.
    pub created_at: DateTime<Utc>,
    /// When a feed was last read with it (to the minute), if ever.
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<projections::feed_tokens::FeedToken> for FeedTokenInfo {
    fn from(token: projections::feed_tokens::FeedToken) -> Self {
        Self {
            id: token.id,
            label: token.label,
            created_at: token.created_at,
            last_used_at: token.last_used_at,
        }
    }
}

/// A token just minted: the only time its secret is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct MintedFeedToken {
    /// What revocation names.
    pub id: Uuid,
    /// What it is called, if anything.
    pub label: Option<String>,
    /// When it was minted.
    pub created_at: DateTime<Utc>,
    /// The secret (43 base64url characters). It is not stored, only its hash: keep it now.
    pub token: String,
    /// The feed's path and query with the token: subscribe a calendar client to this path on
    /// this server's origin.
    pub feed_path: String,
}

/// The caller's live feed tokens.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedTokenList {
    /// Oldest first.
    pub items: Vec<FeedTokenInfo>,
}

/// Mint a calendar feed token.
#[utoipa::path(
    post, path = "/v1/calendar/tokens", tag = "calendar",
    request_body(content = Option<MintFeedTokenRequest>, description = "Optional"),
    responses(
        (status = 201, description = "Minted; the token is shown this once", body = MintedFeedToken),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already 20 live feed tokens: revoke one first", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn mint_feed_token(
    State(state): State<AppState>,
    AuthUser(owner): AuthUser,
    OptionalJsonBody(body): OptionalJsonBody<MintFeedTokenRequest>,
) -> Result<(StatusCode, Json<MintedFeedToken>), ApiError> {
    let label = body.label()?;
    let token = new_feed_token()?;
    let stored = projections::feed_tokens::insert(
        state.reads.primary(),
        &owner,
        Uuid::now_v7(),
        label.as_deref(),
        &feed_token_hash(&token),
        commands::now(),
        MAX_LIVE_FEED_TOKENS,
    )
    .await?
    .ok_or(ApiError::TooManyFeedTokens {
        max: MAX_LIVE_FEED_TOKENS,
    })?;
    Ok((
        StatusCode::CREATED,
        Json(MintedFeedToken {
            id: stored.id,
            label: stored.label,
            created_at: stored.created_at,
            feed_path: format!("/v1/calendar.ics?token={token}"),
            token,
        }),
    ))
}

/// List your live calendar feed tokens (never their secrets).
#[utoipa::path(
    get, path = "/v1/calendar/tokens", tag = "calendar",
    responses(
        (status = 200, description = "Your live feed tokens, oldest first", body = FeedTokenList),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_feed_tokens(
    State(state): State<AppState>,
    AuthUser(owner): AuthUser,
) -> Result<Json<FeedTokenList>, ApiError> {
    let tokens = projections::feed_tokens::list(state.reads.primary(), &owner).await?;
    Ok(Json(FeedTokenList {
        items: tokens.into_iter().map(Into::into).collect(),
    }))
}

/// Revoke a calendar feed token: its feed answers 401 from now on.
#[utoipa::path(
    delete, path = "/v1/calendar/tokens/{id}", tag = "calendar",
    params(("id" = Uuid, Path, description = "Feed token id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "Malformed feed token id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such live feed token of yours (unknown, someone else's, or revoked already)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn revoke_feed_token(
    State(state): State<AppState>,
    AuthUser(owner): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = Uuid::parse_str(&id)
        .ok()
        .ok_or_else(|| ApiError::BadRequest("the feed token id must be a UUID".into()))?;
    let revoked =
        projections::feed_tokens::revoke(state.reads.primary(), &owner, id, commands::now())
            .await?;
    if revoked {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::FeedTokenNotFound)
    }
}
