//! `GET /v1/events`: the authenticated user's events, live, as server-sent events.
//!
//! The SSE event id is the stream sequence, so a client that reconnects with `Last-Event-ID`
//! resumes right after the last event it saw: no gap, no duplicate. The feed reads the user's
//! subjects only (`tasks.events.<owner>.>`), so it can never carry someone else's event.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::AuthUser;
use crate::limits::{parse_position, LiveHeaders, MAX_POSITION};
use crate::problem::{ApiError, Problem};
use crate::state::AppState;

/// The `data` of one server-sent event.
#[derive(Debug, Serialize, ToSchema)]
pub struct LiveEvent {
    /// Stream position (also the SSE id).
    pub position: u64,
    /// The task.
    pub task_id: uuid::Uuid,
    /// Event type, e.g. `TaskCreated` (also the SSE event name).
    pub event_type: String,
    /// Payload version as stored.
    pub event_version: u32,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// The payload, upcast to the current version.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    headers
        .get("last-event-id")
        .map(|v| {
            // Bounded, so the position after it cannot overflow.
            v.to_str()
                .ok()
                .and_then(|v| parse_position(v.trim()))
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "Last-Event-ID must be a stream position, 0 to {MAX_POSITION}"
                    ))
                })
        })
        .transpose()
}

/// Your events, live (server-sent events; resume with `Last-Event-ID`).
#[utoipa::path(
    get, path = "/v1/events", tag = "queries",
    params(LiveHeaders),
    responses(
        (status = 200, description = "A text/event-stream of your events; each event's id is its stream position", body = LiveEvent, content_type = "text/event-stream"),
        (status = 400, description = "Malformed Last-Event-ID", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Event store unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn live_events(
    State(state): State<AppState>,
    AuthUser(owner): AuthUser,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let from = match last_event_id(&headers)? {
        Some(last) => last + 1,
        None => state.store.head_position().await? + 1,
    };
    let events = state
        .store
        .follow(Some(&owner), from, eventstore::follow::STALL_CHECK)
        .await?
        .filter_map(|item| {
            let event = match item {
                Ok(recorded) => to_sse(recorded),
                Err(error) => {
                    // Undecodable events are skipped here (the projection dead-letters them).
                    tracing::warn!(%error, "live feed skips an event");
                    None
                }
            };
            futures::future::ready(event.map(Ok))
        })
        .take_until(state.shutdown.clone().cancelled_owned());
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn to_sse(recorded: eventstore::RecordedEvent) -> Option<Event> {
    let live = LiveEvent {
        position: recorded.position,
        task_id: recorded.task_id.0,
        event_type: recorded.event.event_type().to_owned(),
        event_version: recorded.event_version,
        occurred_at: recorded.event.occurred_at(),
        data: recorded.event.to_json(),
    };
    Event::default()
        .id(live.position.to_string())
        .event(live.event_type.clone())
        .json_data(&live)
        .ok()
}

/// The route of the live feed.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(live_events))
}
