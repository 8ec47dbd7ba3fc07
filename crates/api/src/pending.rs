//! Endpoints of the contract whose features arrive later (insights). They authenticate like the others and answer 501 problem+json, never made-up data.

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::AuthUser;
use crate::problem::{ApiError, Problem};
use crate::state::AppState;

/// Per-user productivity insights (not available yet).
#[utoipa::path(
    get, path = "/v1/insights", tag = "queries",
    responses(
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 501, description = "Not available in this release", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn insights(_user: AuthUser) -> ApiError {
    ApiError::NotImplemented("GET /v1/insights")
}

/// The routes of the pending endpoints.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(insights))
}
