//! `POST /v1/tasks/parse`: how a line of quick-add text reads, without creating anything, so a
//! client can preview what `POST /v1/tasks` with the same `text` would create and let the
//! person confirm it (or fix it field by field and send the fields instead).

use axum::extract::State;
use axum::Json;

use crate::auth::AuthUser;
use crate::extract::JsonBody;
use crate::problem::{ApiError, Problem};
use crate::state::AppState;
use crate::tasks::dto::{quick_add_text, time_zone, Checks, ParseTaskRequest, QuickAddResponse};

/// Read a line of quick-add text into the fields of a task, without creating it.
///
/// `Pay rent every month on the 1st at 9am #home !high ~30m` gives a title, a due date, a
/// recurrence, tags, a priority and an estimate. Dates and times are read in `time_zone` as
/// of now; what looked like syntax but could not be read is listed in `unparsed` and stays
/// in the title.
#[utoipa::path(
    post, path = "/v1/tasks/parse", tag = "queries",
    request_body = ParseTaskRequest,
    responses(
        (status = 200, description = "How the text reads", body = QuickAddResponse),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn parse_task(
    State(_state): State<AppState>,
    AuthUser(_owner): AuthUser,
    JsonBody(body): JsonBody<ParseTaskRequest>,
) -> Result<Json<QuickAddResponse>, ApiError> {
    let mut checks = Checks::default();
    let text = checks.take(quick_add_text(&body.text));
    let zone = checks.take(time_zone(body.time_zone.as_deref()));
    checks.finish()?;
    let (Some(text), Some(zone)) = (text, zone) else {
        return Err(ApiError::field("text", "invalid"));
    };
    let reading = domain::quickadd::parse(text, commands::now(), zone.tz());
    Ok(Json(QuickAddResponse::new(reading, &zone)))
}
