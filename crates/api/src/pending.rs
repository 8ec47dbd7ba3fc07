//! Endpoints of the contract whose features arrive later (predictions). They authenticate like the others and answer 501 problem+json, never made-up data.

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::AuthUser;
use crate::problem::{ApiError, Problem};
use crate::state::AppState;

/// Effort and priority predictions for a draft task (not available yet).
#[utoipa::path(
    post, path = "/v1/predictions", tag = "queries",
    responses(
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 501, description = "Not available in this release", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn predictions(_user: AuthUser) -> ApiError {
    ApiError::NotImplemented("POST /v1/predictions")
}

/// The routes of the pending endpoints.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(predictions))
}
