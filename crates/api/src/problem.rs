//! The one error type of the API, answered as `application/problem+json` (RFC 9457).
//!
//! Infrastructure failures are logged with their cause and answered with a generic detail;
//! the client learns which dependency is down (so it can retry), never internal messages.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::{FieldError, TaskError};
use eventstore::StoreError;
use projections::ProjectionError;
use serde::Serialize;
use utoipa::ToSchema;

/// Media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid input field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct InvalidField {
    /// The JSON field (or query parameter) name, e.g. `title`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl From<FieldError> for InvalidField {
    fn from(error: FieldError) -> Self {
        Self {
            field: error.field.to_owned(),
            message: error.message.into_owned(),
        }
    }
}

/// An RFC 9457 problem document, as sent.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI reference naming the kind of problem, e.g. `/problems/validation`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind.
    pub title: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// What happened this time.
    pub detail: String,
    /// The invalid fields (422 only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<InvalidField>,
    /// The task's current version (version conflicts only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<u64>,
    /// The position the read model has reached (504), or the last position of the log (409
    /// for a `Tm-Min-Position` past it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_position: Option<u64>,
    /// The position the request asked for (504, and 409 for a position past the log's end).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_position: Option<u64>,
    /// How many events the read model is behind (504 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub behind_by: Option<u64>,
    /// The dependency that is down (503 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dependency: Option<&'static str>,
    /// The subtasks still to be done (409 for completing a task that has some; complete or
    /// cancel them first).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub open_subtasks: Vec<uuid::Uuid>,
}

/// Every error the API answers with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed (bad JSON, bad header, bad parameter syntax).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 401: no token, or one that is forged, expired or not yet valid.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// 404: no such task, or someone else's.
    #[error("not found")]
    NotFound,
    /// 409: the task's state refuses the command.
    #[error("state conflict: {0}")]
    StateConflict(TaskError),
    /// 404: no live calendar feed token of the caller's has this id.
    #[error("no such feed token")]
    FeedTokenNotFound,
    /// 409: the caller holds the most live feed tokens allowed; revoking one makes room.
    #[error("too many feed tokens")]
    TooManyFeedTokens {
        /// The cap.
        max: u32,
    },
    /// 409: completing a task whose subtasks are still open.
    #[error("open subtasks")]
    OpenSubtasks(Vec<domain::TaskId>),
    /// 409: `If-Match` named another version, or a concurrent writer won.
    #[error("version conflict")]
    VersionConflict {
        /// The task's current version, when known.
        current_version: Option<u64>,
        /// Explanation.
        detail: String,
    },
    /// 409: `Tm-Min-Position` names a position past the end of the log: no wait can reach
    /// it, so it is refused at once rather than timed out.
    #[error("position {requested} past the end of the log ({end})")]
    PositionPastEnd {
        /// What the client asked for.
        requested: u64,
        /// The last position of the log.
        end: u64,
    },
    /// 413: the body is over the limit.
    #[error("payload too large")]
    PayloadTooLarge,
    /// 415: the body is not JSON.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// 422: fields that fail validation.
    #[error("invalid fields")]
    Validation(Vec<InvalidField>),
    /// 429: the user or the client address is over its rate limit.
    #[error("rate limited ({scope})")]
    RateLimited {
        /// `user` or `ip`: which limit refused.
        scope: &'static str,
        /// Seconds until one more request would be allowed (`Retry-After`).
        retry_after_secs: u64,
    },
    /// 503: predictions were asked for before the ml role published a first model.
    #[error("no model yet")]
    NoModelYet,
    /// 503: a dependency is down; retry later.
    #[error("{dependency} unavailable: {cause}")]
    Unavailable {
        /// `nats` or `postgres` (or `redis` inside the rate limiter, which never answers it).
        dependency: &'static str,
        /// The cause, for the log only.
        cause: String,
    },
    /// 504: the read model did not reach the requested position in time.
    #[error("read model behind")]
    ReadModelBehind {
        /// What the client asked for.
        requested: u64,
        /// What the read model has.
        current: u64,
    },
    /// 500: a bug or corrupt data; logged, not shown.
    #[error("internal error: {0}")]
    Internal(String),
    /// At start or on a refresh: the JWKS of `TASKMASTER_JWKS` cannot be read or holds no
    /// usable key. The message names the file or URL (without credentials) so a start fails
    /// with one line saying what to fix; it is never answered to a client as it is.
    #[error("TASKMASTER_JWKS: {0}")]
    KeySet(String),
}

impl ApiError {
    /// One invalid field.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        ApiError::Validation(vec![InvalidField {
            field: field.to_owned(),
            message: message.into(),
        }])
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound | ApiError::FeedTokenNotFound => StatusCode::NOT_FOUND,
            ApiError::StateConflict(_)
            | ApiError::OpenSubtasks(_)
            | ApiError::TooManyFeedTokens { .. }
            | ApiError::VersionConflict { .. }
            | ApiError::PositionPastEnd { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NoModelYet => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::ReadModelBehind { .. } => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) | ApiError::KeySet(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn problem(&self) -> Problem {
        let status = self.status().as_u16();
        let problem = |kind: &str, title: &'static str, detail: String| Problem {
            kind: format!("/problems/{kind}"),
            title,
            status,
            detail,
            errors: Vec::new(),
            current_version: None,
            current_position: None,
            requested_position: None,
            behind_by: None,
            dependency: None,
            open_subtasks: Vec::new(),
        };
        match self {
            ApiError::BadRequest(detail) => problem("malformed-request", "Malformed request", detail.clone()),
            ApiError::Unauthorized(detail) => problem("unauthorized", "Unauthorized", detail.clone()),
            ApiError::NotFound => problem("not-found", "Not found", "no such task".into()),
            ApiError::FeedTokenNotFound => {
                problem("not-found", "Not found", "no such live feed token".into())
            }
            ApiError::TooManyFeedTokens { max } => problem(
                "too-many-feed-tokens",
                "Too many feed tokens",
                format!("you hold {max} live calendar feed tokens, the most allowed; revoke one first"),
            ),
            ApiError::StateConflict(error) => {
                problem("state-conflict", "The task's state refuses this command", format!("{error}"))
            }
            ApiError::OpenSubtasks(open) => Problem {
                open_subtasks: open.iter().map(|id| id.0).collect(),
                ..problem(
                    "open-subtasks",
                    "The task has open subtasks",
                    format!(
                        "{} subtask(s) are still open; complete or cancel them first",
                        open.len()
                    ),
                )
            },
            ApiError::VersionConflict { current_version, detail } => Problem {
                current_version: *current_version,
                ..problem("version-conflict", "Version conflict", detail.clone())
            },
            ApiError::PositionPastEnd { requested, end } => Problem {
                current_position: Some(*end),
                requested_position: Some(*requested),
                ..problem(
                    "position-past-end",
                    "The position is past the end of the log",
                    format!(
                        "Tm-Min-Position {requested} is past the end of the log (position {end}); send the position of a command's answer"
                    ),
                )
            },
            ApiError::PayloadTooLarge => problem(
                "payload-too-large",
                "Payload too large",
                "the request body is larger than 1 MiB".into(),
            ),
            ApiError::UnsupportedMediaType => problem(
                "unsupported-media-type",
                "Unsupported media type",
                "send the body as application/json".into(),
            ),
            ApiError::Validation(errors) => {
                let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
                let detail = errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                Problem {
                    errors: errors.clone(),
                    ..problem(
                        "validation",
                        "Invalid fields",
                        if detail.is_empty() { format!("invalid: {}", fields.join(", ")) } else { detail },
                    )
                }
            }
            ApiError::RateLimited { scope, retry_after_secs } => problem(
                "rate-limited",
                "Too many requests",
                format!(
                    "the {} is over its rate limit; retry in {retry_after_secs} s",
                    if *scope == "user" { "user" } else { "client address" }
                ),
            ),
            ApiError::NoModelYet => problem(
                "no-model-yet",
                "No model has been trained yet",
                "the ml role publishes a first model once tasks have been completed with an \
                 actual effort; retry later"
                    .into(),
            ),
            ApiError::Unavailable { dependency, .. } => Problem {
                dependency: Some(dependency),
                ..problem(
                    "dependency-unavailable",
                    "A dependency is unavailable",
                    format!("{dependency} is unavailable; retry shortly"),
                )
            },
            ApiError::ReadModelBehind { requested, current } => Problem {
                current_position: Some(*current),
                requested_position: Some(*requested),
                behind_by: Some(requested.saturating_sub(*current)),
                ..problem(
                    "read-model-behind",
                    "The read model has not caught up",
                    format!(
                        "the read model is at position {current}, {} events behind the requested position {requested}; retry shortly",
                        requested.saturating_sub(*current)
                    ),
                )
            },
            ApiError::Internal(_) | ApiError::KeySet(_) => problem(
                "internal",
                "Internal error",
                "something went wrong on our side; it has been logged".into(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(cause) => tracing::error!(%cause, "internal error"),
            ApiError::KeySet(cause) => tracing::error!(%cause, "key set unusable"),
            ApiError::Unavailable { dependency, cause } => {
                tracing::warn!(dependency, %cause, "dependency unavailable")
            }
            _ => {}
        }
        let status = self.status();
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        match self {
            ApiError::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::Unavailable { .. } | ApiError::ReadModelBehind { .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::NoModelYet => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            }
            ApiError::RateLimited {
                retry_after_secs, ..
            } => {
                if let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                    headers.insert(header::RETRY_AFTER, value);
                }
            }
            _ => {}
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Rejected(TaskError::NotFound) => ApiError::NotFound,
            StoreError::Rejected(TaskError::OpenChildren(open)) => ApiError::OpenSubtasks(open),
            // The hierarchy refusals are about the parent the request names, not about the
            // task's state: the request can be fixed by naming another parent.
            StoreError::Rejected(
                refusal @ (TaskError::ParentCycle
                | TaskError::TooDeep { .. }
                | TaskError::ParentArchived),
            ) => ApiError::field("parent_id", refusal.to_string()),
            StoreError::Rejected(refusal @ TaskError::RecurrenceWithoutDue) => {
                ApiError::field("due_at", refusal.to_string())
            }
            StoreError::Rejected(
                refusal @ (TaskError::ReminderInPast | TaskError::ReminderWithoutDue),
            ) => ApiError::field("reminders", refusal.to_string()),
            StoreError::Rejected(refusal) => ApiError::StateConflict(refusal),
            StoreError::VersionConflict { expected, actual } => ApiError::VersionConflict {
                current_version: Some(actual),
                detail: format!(
                    "If-Match named version {expected}, the task is at version {actual}"
                ),
            },
            StoreError::Concurrency => ApiError::VersionConflict {
                current_version: None,
                detail: "the task changed concurrently; read it again and retry".into(),
            },
            StoreError::Unavailable(cause) => ApiError::Unavailable {
                dependency: "nats",
                cause,
            },
            other @ (StoreError::Corrupt { .. } | StoreError::Config(_)) => {
                ApiError::Internal(other.to_string())
            }
        }
    }
}

impl From<commands::CommandError> for ApiError {
    fn from(error: commands::CommandError) -> Self {
        use commands::CommandError;
        match error {
            CommandError::Store(error) => error.into(),
            CommandError::Read(error) => error.into(),
            CommandError::ParentNotFound => ApiError::field("parent_id", "no such task"),
            CommandError::ReadModelBehind { requested, current } => ApiError::Unavailable {
                dependency: "postgres",
                cause: format!(
                    "the read model is at {current}, behind the log at {requested}, so the subtasks cannot be known"
                ),
            },
            CommandError::MoveRaced => ApiError::VersionConflict {
                current_version: None,
                detail: "a concurrent move would have put the task under itself; the move was undone, read the tree again and retry".into(),
            },
        }
    }
}

impl From<ProjectionError> for ApiError {
    fn from(error: ProjectionError) -> Self {
        match error {
            ProjectionError::InvalidCursor => ApiError::field(
                "cursor",
                "is not a cursor this server issued, or was issued for another sort",
            ),
            ProjectionError::Database(cause) if projections::error::is_outage(&cause) => {
                ApiError::Unavailable {
                    dependency: "postgres",
                    cause: cause.to_string(),
                }
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(error: ApiError) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, headers, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn an_event_store_outage_is_a_503_with_retry_after_and_no_internals() {
        let error = ApiError::from(StoreError::Unavailable(
            "timed out: secret-host:4222".into(),
        ));
        let (status, headers, body) = answer(error).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[header::RETRY_AFTER], "1");
        assert_eq!(headers[header::CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(body["dependency"], "nats");
        assert!(!body.to_string().contains("secret-host"));
    }

    #[tokio::test]
    async fn a_database_outage_is_a_503_but_a_query_bug_is_a_500() {
        let outage = ApiError::from(ProjectionError::Database(sqlx::Error::PoolTimedOut));
        assert_eq!(outage.status(), StatusCode::SERVICE_UNAVAILABLE);
        let bug = ApiError::from(ProjectionError::Database(sqlx::Error::ColumnNotFound(
            "x".into(),
        )));
        let (status, _, body) = answer(bug).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!body.to_string().contains("ColumnNotFound"));
    }

    #[tokio::test]
    async fn refusals_map_to_404_and_409() {
        assert_eq!(
            ApiError::from(StoreError::Rejected(TaskError::NotFound)).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            ApiError::from(StoreError::Rejected(TaskError::Archived)).status(),
            StatusCode::CONFLICT
        );
        assert_eq!(
            ApiError::from(StoreError::Concurrency).status(),
            StatusCode::CONFLICT
        );
        let (_, _, body) = answer(ApiError::from(StoreError::VersionConflict {
            expected: 1,
            actual: 3,
        }))
        .await;
        assert_eq!(body["current_version"], 3);
        assert_eq!(body["type"], "/problems/version-conflict");
    }
}
