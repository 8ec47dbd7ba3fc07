//! Webhook endpoints over HTTP: register (the secret is answered once), list, delete, and the
//! deliveries given up on, with redelivery. Delivery itself is the `webhooks` crate's worker.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::extract::JsonBody;
use crate::limits::{EventTypeName, WebhookUrlText};
use crate::problem::{ApiError, Problem};
use crate::state::AppState;

/// The event types an endpoint may ask for (`domain`'s current types).
pub fn event_types() -> Vec<&'static str> {
    domain::event::CURRENT_VERSIONS
        .iter()
        .map(|(name, _)| *name)
        .collect()
}

/// A new endpoint. Unknown fields are refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// Where to deliver: an `http(s)` URL. In production it may not point at a loopback,
    /// private or link-local address.
    #[schema(value_type = WebhookUrlText)]
    pub url: String,
    /// The event types wanted (at most 20, e.g. `ReminderDue`, `TaskCompleted`); absent or
    /// empty for all.
    #[serde(default)]
    #[schema(value_type = Vec<EventTypeName>, max_items = 20)]
    pub event_types: Vec<String>,
}

/// An endpoint as listed (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookResponse {
    /// Its id.
    pub id: Uuid,
    /// Where deliveries go.
    pub url: String,
    /// The event types it receives; empty for all.
    pub event_types: Vec<String>,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

impl From<webhooks::Endpoint> for WebhookResponse {
    fn from(e: webhooks::Endpoint) -> Self {
        Self {
            id: e.id,
            url: e.url,
            event_types: e.event_types,
            created_at: e.created_at,
        }
    }
}

/// An endpoint just registered, with its secret: the only time it is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedWebhook {
    /// The endpoint.
    #[serde(flatten)]
    pub endpoint: WebhookResponse,
    /// The signing secret (`whsec_<base64>`): verify `webhook-signature` with it.
    pub secret: String,
}

/// The caller's endpoints.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    /// Oldest first.
    pub items: Vec<WebhookResponse>,
}

/// A delivery given up on.
#[derive(Debug, Serialize, ToSchema)]
pub struct FailedDelivery {
    /// The event's stream position (what redelivery names).
    pub position: i64,
    /// The `webhook-id` every attempt carried.
    pub webhook_id: String,
    /// The event's type.
    pub event_type: String,
    /// Attempts made.
    pub attempts: i32,
    /// The last HTTP status answered, if any.
    pub last_status: Option<i32>,
    /// The last failure.
    pub last_error: Option<String>,
}

/// An endpoint's deliveries given up on.
#[derive(Debug, Serialize, ToSchema)]
pub struct FailedDeliveries {
    /// Oldest event first (at most 1,000).
    pub items: Vec<FailedDelivery>,
}

fn endpoint_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::BadRequest("the webhook id must be a UUID".into()))
}

/// Register a webhook endpoint.
#[utoipa::path(
    post, path = "/v1/webhooks", tag = "webhooks",
    request_body = CreateWebhookRequest,
    responses(
        (status = 201, description = "Registered; the secret is shown this once", body = CreatedWebhook),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already 20 endpoints: delete one first", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields: a URL that is not http(s) or points inward, an unknown event type", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create_webhook(
    State(state): State<AppState>,
    AuthUser(owner): AuthUser,
    JsonBody(body): JsonBody<CreateWebhookRequest>,
) -> Result<(StatusCode, Json<CreatedWebhook>), ApiError> {
    let known = event_types();
    if body.event_types.len() > 20 {
        return Err(ApiError::field("event_types", "at most 20 event types"));
    }
    if let Some(unknown) = body
        .event_types
        .iter()
        .find(|t| !known.contains(&t.as_str()))
    {
        return Err(ApiError::field(
            "event_types",
            format!("{unknown:?} is not an event type ({})", known.join(", ")),
        ));
    }
    let url = state.config.webhook_targets.check(&body.url).await?;
    let mut types = body.event_types;
    types.sort();
    types.dedup();
    let secret = webhooks::signature::new_secret();
    let endpoint = webhooks::store::create(
        state.reads.primary(),
        &owner,
        &webhooks::NewEndpoint {
            url: url.to_string(),
            event_types: types,
        },
        &secret,
    )
    .await?
    .ok_or_else(|| {
        ApiError::LimitReached(format!(
            "you have {} webhook endpoints, the most allowed; delete one first",
            webhooks::store::MAX_ENDPOINTS_PER_USER
        ))
    })?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhook {
            endpoint: endpoint.into(),
            secret,
        }),
    ))
}

/// List your webhook endpoints (never their secrets).
#[utoipa::path(
    get, path = "/v1/webhooks", tag = "webhooks",
    responses(
        (status = 200, description = "Your endpoints, oldest first", body = WebhookList),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_webhooks(
    State(state): State<AppState>,
    AuthUser(owner): AuthUser,
) -> Result<Json<WebhookList>, ApiError> {
    let endpoints = webhooks::store::list(state.reads.primary(), &owner).await?;
    Ok(Json(WebhookList {
        items: endpoints.into_iter().map(Into::into).collect(),
    }))
}

/// Delete a webhook endpoint; its pending deliveries are dropped.
#[utoipa::path(
    delete, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = Uuid, Path, description = "Endpoint id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Malformed endpoint id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint of yours", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn delete_webhook(
    State(state): State<AppState>,
    AuthUser(owner): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = endpoint_id(&id)?;
    if webhooks::store::delete(state.reads.primary(), &owner, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::Missing("webhook endpoint"))
    }
}

/// The deliveries of an endpoint that were given up on after repeated failure.
#[utoipa::path(
    get, path = "/v1/webhooks/{id}/failures", tag = "webhooks",
    params(("id" = Uuid, Path, description = "Endpoint id")),
    responses(
        (status = 200, description = "Deliveries given up on, oldest event first", body = FailedDeliveries),
        (status = 400, description = "Malformed endpoint id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint of yours", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn webhook_failures(
    State(state): State<AppState>,
    AuthUser(owner): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<FailedDeliveries>, ApiError> {
    let id = endpoint_id(&id)?;
    let failed = webhooks::store::failures(state.reads.primary(), &owner, id)
        .await?
        .ok_or(ApiError::Missing("webhook endpoint"))?;
    Ok(Json(FailedDeliveries {
        items: failed
            .into_iter()
            .map(|d| FailedDelivery {
                position: d.position,
                webhook_id: d.webhook_id,
                event_type: d.event_type,
                attempts: d.attempts,
                last_status: d.last_status,
                last_error: d.last_error,
            })
            .collect(),
    }))
}

/// Deliver a failed delivery again, with the same `webhook-id`, its attempts reset.
#[utoipa::path(
    post, path = "/v1/webhooks/{id}/failures/{position}/redeliver", tag = "webhooks",
    params(
        ("id" = Uuid, Path, description = "Endpoint id"),
        ("position" = i64, Path, minimum = 1, maximum = 9223372036854775807_i64, description = "The failed delivery's event position"),
    ),
    responses(
        (status = 202, description = "Queued for delivery again"),
        (status = 400, description = "Malformed endpoint id or position", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such failed delivery of an endpoint of yours", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn redeliver_webhook(
    State(state): State<AppState>,
    AuthUser(owner): AuthUser,
    Path((id, position)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = endpoint_id(&id)?;
    let position = crate::limits::parse_position(&position)
        .ok_or_else(|| ApiError::BadRequest("the position must be a stream position".into()))?;
    if webhooks::store::redeliver(state.reads.primary(), &owner, id, position as i64).await? {
        Ok(StatusCode::ACCEPTED)
    } else {
        Err(ApiError::Missing("failed delivery"))
    }
}

/// The webhook routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_webhook, list_webhooks))
        .routes(routes!(delete_webhook))
        .routes(routes!(webhook_failures))
        .routes(routes!(redeliver_webhook))
}
