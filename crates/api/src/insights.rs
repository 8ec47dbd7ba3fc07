//! `GET /v1/insights`: the caller's productivity insights, from the Redis cache when it holds
//! a recent enough value, else computed from the read model (and cached).
//!
//! Redis never makes this endpoint fail: when it is down or slow, the answer is computed from
//! Postgres and says so with `Tm-Cache: bypass`. Only Postgres being down is a 503.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::Json;
use insights::{Insights, InsightsError};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::AuthUser;
use crate::extract::MinPosition;
use crate::limits::ReadHeaders;
use crate::problem::{ApiError, Problem};
use crate::state::AppState;
use crate::tasks::queries::wait_for_position;

/// Header saying where the insights came from: `hit`, `miss` or `bypass`.
pub const TM_CACHE: HeaderName = HeaderName::from_static("tm-cache");

/// Your productivity insights.
///
/// Answered from the cache when it holds a value at or after `Tm-Min-Position` (when given),
/// else computed from the read model and cached for the configured TTL. The insights worker
/// refreshes the cached value shortly after your events arrive.
#[utoipa::path(
    get, path = "/v1/insights", tag = "queries",
    params(ReadHeaders),
    responses(
        (status = 200, description = "Your insights. `Tm-Cache` says where they came from.", body = Insights,
         headers(("Tm-Cache" = String, description = "`hit`: from the cache; `miss`: computed from the read model and cached; `bypass`: computed from the read model because the cache (Redis) is unavailable"))),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Tm-Min-Position is past the end of the log", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Read model unavailable (never because of Redis)", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The read model did not reach Tm-Min-Position in time", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_insights(
    State(state): State<AppState>,
    AuthUser(owner): AuthUser,
    min: MinPosition,
) -> Result<(HeaderMap, Json<Insights>), ApiError> {
    wait_for_position(&state, min).await?;
    let answer = state.insights.get(&owner, min.0).await?;
    let mut headers = HeaderMap::new();
    headers.insert(TM_CACHE, HeaderValue::from_static(answer.cache.as_str()));
    Ok((headers, Json(answer.insights)))
}

impl From<InsightsError> for ApiError {
    fn from(error: InsightsError) -> Self {
        match error {
            InsightsError::Database(cause) => {
                ApiError::from(projections::ProjectionError::Database(cause))
            }
            InsightsError::ReadModel(cause) => ApiError::from(cause),
            // The service answers without the cache rather than fail; reaching here is a bug.
            other @ (InsightsError::CacheUnavailable(_) | InsightsError::Stream(_)) => {
                ApiError::Internal(other.to_string())
            }
        }
    }
}

/// The insights route.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_insights))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn a_postgres_outage_is_a_503_and_a_cache_failure_never_is() {
        let outage = ApiError::from(InsightsError::Database(sqlx::Error::PoolTimedOut));
        assert_eq!(outage.status(), StatusCode::SERVICE_UNAVAILABLE);
        let read_model = ApiError::from(InsightsError::ReadModel(
            projections::ProjectionError::Database(sqlx::Error::PoolClosed),
        ));
        assert_eq!(read_model.status(), StatusCode::SERVICE_UNAVAILABLE);
        let cache = ApiError::from(InsightsError::CacheUnavailable("down".into()));
        assert_ne!(cache.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
