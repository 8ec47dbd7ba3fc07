//! Operational endpoints, served by every role: liveness, readiness, metrics, OpenAPI.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::health::Readiness;
use crate::state::OpsState;

/// Liveness answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Liveness {
    /// Always `ok` while the process serves requests.
    pub status: &'static str,
}

/// The process is alive (it does not look at dependencies).
#[utoipa::path(get, path = "/health/live", tag = "operations",
    responses((status = 200, description = "Alive", body = Liveness)))]
pub async fn live() -> Json<Liveness> {
    Json(Liveness { status: "ok" })
}

/// Whether the dependencies answer: NATS, Postgres and Redis, each reported, and the read
/// replica when one is configured (optional: queries fall back to the primary).
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready (possibly degraded: an optional dependency is down)", body = Readiness),
        (status = 503, description = "A required dependency is down", body = Readiness),
    ))]
pub async fn ready(State(ops): State<OpsState>) -> (StatusCode, Json<Readiness>) {
    let readiness = ops.health.readiness().await;
    let status = if readiness.status == "unavailable" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, Json(readiness))
}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Metrics", body = String, content_type = "application/openmetrics-text")))]
pub async fn metrics(State(ops): State<OpsState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        ops.metrics.encode(),
    )
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document", body = Object)))]
pub async fn openapi(State(ops): State<OpsState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        ops.openapi.as_str().to_owned(),
    )
}

/// The operational routes.
pub fn router() -> OpenApiRouter<OpsState> {
    OpenApiRouter::new()
        .routes(routes!(live))
        .routes(routes!(ready))
        .routes(routes!(metrics))
        .routes(routes!(openapi))
}
