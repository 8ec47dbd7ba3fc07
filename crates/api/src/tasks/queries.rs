//! Query endpoints: one task, lists, and a task's history. Reads come from the Postgres read
//! model (after waiting for `Tm-Min-Position` when given); history comes from the event log.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::Json;
use chrono::{DateTime, Utc};
use domain::{Priority, TaskStatus};
use projections::queries::{self, Cursor, ListQuery, SortKey};
use projections::task_rows::TaskRecord;

use crate::auth::AuthUser;
use crate::extract::MinPosition;
use crate::problem::{ApiError, Problem};
use crate::state::AppState;
use crate::tasks::commands::task_id;
use crate::tasks::dto::{HistoryEvent, TaskHistory, TaskList, TaskResponse};

/// Waits for the read model to reach the client's `Tm-Min-Position`, or answers 504. With a
/// replica, that is the replica's copy (unless it is down), the one the query then reads.
pub(crate) async fn wait_for_position(state: &AppState, min: MinPosition) -> Result<(), ApiError> {
    if let MinPosition(Some(requested)) = min {
        state
            .reads
            .wait_for(requested, state.config.read_wait_timeout)
            .await
            .map_err(|behind| ApiError::ReadModelBehind {
                requested,
                current: behind.current,
            })?;
    }
    Ok(())
}

/// Which past state of a task to rebuild, from the query string.
#[derive(Debug, Clone, Copy, PartialEq)]
enum AsOf {
    /// The state after this many events.
    Version(u64),
    /// The state as of this instant (events that occurred at or before it).
    Instant(DateTime<Utc>),
}

fn as_of(raw: Option<&str>) -> Result<Option<AsOf>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|_| ApiError::BadRequest("the query string is malformed".into()))?;
    let mut found = None;
    for (name, value) in pairs {
        let point = match name.as_str() {
            "as_of_version" => AsOf::Version(
                value
                    .parse::<u64>()
                    .ok()
                    .filter(|v| *v >= 1)
                    .ok_or_else(|| {
                        ApiError::BadRequest("as_of_version must be a version, 1 or more".into())
                    })?,
            ),
            "as_of" => AsOf::Instant(parse_time("as_of", &value)?),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter {other:?}"
                )))
            }
        };
        if found.replace(point).is_some() {
            return Err(ApiError::BadRequest(
                "give one of as_of_version or as_of, once".into(),
            ));
        }
    }
    Ok(found)
}

/// Rebuilds a task's past state from its events (time travel).
async fn task_as_of(
    state: &AppState,
    owner: &domain::UserId,
    id: domain::TaskId,
    point: AsOf,
) -> Result<TaskRecord, ApiError> {
    let events = state.store.history(owner, id).await?;
    let included = events.iter().take_while(|e| match point {
        AsOf::Version(_) => true,
        AsOf::Instant(at) => e.event.occurred_at() <= at,
    });
    let limit = match point {
        AsOf::Version(v) => usize::try_from(v).unwrap_or(usize::MAX),
        AsOf::Instant(_) => usize::MAX,
    };
    let mut task = None;
    let mut position = 0;
    for recorded in included.take(limit) {
        task = domain::evolve(task, &recorded.event);
        position = recorded.position;
    }
    let task = task.ok_or(ApiError::NotFound)?;
    if let AsOf::Version(v) = point {
        if task.version != v {
            return Err(ApiError::NotFound);
        }
    }
    Ok(TaskRecord { task, position })
}

/// Read one task, now or as it was (`as_of_version` or `as_of`).
#[utoipa::path(
    get, path = "/v1/tasks/{id}", tag = "queries",
    params(
        ("id" = Uuid, Path, description = "Task id"),
        ("as_of_version" = Option<u64>, Query, description = "Time travel: the task as it was at this version, rebuilt from its events", minimum = 1),
        ("as_of" = Option<DateTime<Utc>>, Query, description = "Time travel: the task as it was at this instant (RFC 3339), rebuilt from its events"),
        ("Tm-Min-Position" = Option<u64>, Header, description = "Wait (bounded) until the read model has applied this stream position"),
    ),
    responses(
        (status = 200, description = "The task; `ETag` carries its version", body = TaskResponse),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such task (or no such version / not yet created at that instant)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Read model unavailable", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The read model did not reach Tm-Min-Position in time", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_task(
    State(state): State<AppState>,
    AuthUser(owner): AuthUser,
    Path(id): Path<String>,
    min: MinPosition,
    RawQuery(raw): RawQuery,
) -> Result<(HeaderMap, Json<TaskResponse>), ApiError> {
    let id = task_id(&id)?;
    let record = match as_of(raw.as_deref())? {
        Some(point) => task_as_of(&state, &owner, id, point).await?,
        None => {
            wait_for_position(&state, min).await?;
            let owner = &owner;
            state
                .reads
                .query(min.0, |pool| async move {
                    queries::get_task(&pool, owner, id).await
                })
                .await?
                .ok_or(ApiError::NotFound)?
        }
    };
    let mut headers = HeaderMap::new();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", record.task.version)) {
        headers.insert(header::ETAG, etag);
    }
    let prediction = crate::predictions::for_task(&state, &owner, &record.task);
    let mut response = TaskResponse::from(record);
    response.prediction = prediction;
    Ok((headers, Json(response)))
}

fn parse_time(name: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(value)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|_| ApiError::BadRequest(format!("{name} must be an RFC 3339 instant")))
}

fn list_query(state: &AppState, raw: Option<&str>) -> Result<ListQuery, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|_| ApiError::BadRequest("the query string is malformed".into()))?;
    let mut query = ListQuery {
        limit: state.config.default_page_size,
        ..ListQuery::default()
    };
    let mut cursor = None;
    for (name, value) in pairs {
        match name.as_str() {
            "status" => {
                for s in value.split(',').filter(|s| !s.is_empty()) {
                    query.statuses.push(TaskStatus::parse(s).ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "status must be one of open, in_progress, paused, completed, archived (got {s:?})"
                        ))
                    })?);
                }
            }
            "priority" => {
                for p in value.split(',').filter(|p| !p.is_empty()) {
                    query.priorities.push(Priority::parse(p).map_err(|_| {
                        ApiError::BadRequest(format!(
                            "priority must be one of low, medium, high, urgent (got {p:?})"
                        ))
                    })?);
                }
            }
            "tag" => {
                if value.chars().count() > domain::Tag::MAX_CHARS
                    || query.tags.len() >= domain::Tag::MAX_PER_TASK
                {
                    return Err(ApiError::BadRequest(
                        "at most 20 tag filters of 32 characters".into(),
                    ));
                }
                query.tags.push(value.trim().to_owned());
            }
            "due_after" => query.due_after = Some(parse_time("due_after", &value)?),
            "due_before" => query.due_before = Some(parse_time("due_before", &value)?),
            "q" => {
                if value.chars().count() > 200 {
                    return Err(ApiError::BadRequest(
                        "q is limited to 200 characters".into(),
                    ));
                }
                if !value.trim().is_empty() {
                    query.text = Some(value);
                }
            }
            "sort" => {
                let (descending, name) = match value.strip_prefix('-') {
                    Some(name) => (true, name),
                    None => (false, value.as_str()),
                };
                query.sort = SortKey::parse(name).ok_or_else(|| {
                    ApiError::BadRequest(
                        "sort must be created_at, updated_at, due_at or priority, optionally prefixed by - for descending".into(),
                    )
                })?;
                query.descending = descending;
            }
            "limit" => {
                query.limit = value
                    .parse::<u32>()
                    .ok()
                    .filter(|l| (1..=state.config.max_page_size).contains(l))
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "limit must be between 1 and {}",
                            state.config.max_page_size
                        ))
                    })?;
            }
            "cursor" => cursor = Some(value),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter {other:?}"
                )))
            }
        }
    }
    if let Some(cursor) = cursor {
        query.after = Some(Cursor::decode(&cursor)?);
    }
    Ok(query)
}

/// List your tasks.
#[utoipa::path(
    get, path = "/v1/tasks", tag = "queries",
    params(
        ("status" = Option<String>, Query, description = "Comma-separated statuses: open, in_progress, paused, completed, archived"),
        ("priority" = Option<String>, Query, description = "Comma-separated priorities: low, medium, high, urgent"),
        ("tag" = Option<String>, Query, description = "Only tasks carrying this tag; repeat for several (all must match; at most 20)"),
        ("due_after" = Option<DateTime<Utc>>, Query, description = "Due at or after this instant"),
        ("due_before" = Option<DateTime<Utc>>, Query, description = "Due before this instant"),
        ("q" = Option<String>, Query, description = "Full-text search over title and description (web-search syntax; at most 200 characters)"),
        ("sort" = Option<String>, Query, description = "created_at, updated_at, due_at or priority; prefix with - for descending (default -created_at)"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 200 (default 50)", minimum = 1, maximum = 200),
        ("cursor" = Option<String>, Query, description = "The next_cursor of the previous page"),
        ("Tm-Min-Position" = Option<u64>, Header, description = "Wait (bounded) until the read model has applied this stream position"),
    ),
    responses(
        (status = 200, description = "A page of tasks", body = TaskList),
        (status = 400, description = "Malformed parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Read model unavailable", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The read model did not reach Tm-Min-Position in time", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_tasks(
    State(state): State<AppState>,
    AuthUser(owner): AuthUser,
    min: MinPosition,
    RawQuery(raw): RawQuery,
) -> Result<Json<TaskList>, ApiError> {
    let query = list_query(&state, raw.as_deref())?;
    wait_for_position(&state, min).await?;
    let (owner, query) = (&owner, &query);
    let page = state
        .reads
        .query(min.0, |pool| async move {
            queries::list_tasks(&pool, owner, query).await
        })
        .await?;
    Ok(Json(TaskList {
        items: page.items.into_iter().map(TaskResponse::from).collect(),
        next_cursor: page.next.map(|c| c.encode()),
    }))
}

/// A task's events, read from the event log.
#[utoipa::path(
    get, path = "/v1/tasks/{id}/history", tag = "queries",
    params(("id" = Uuid, Path, description = "Task id")),
    responses(
        (status = 200, description = "Every event of the task, oldest first", body = TaskHistory),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Event store unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn task_history(
    State(state): State<AppState>,
    AuthUser(owner): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<TaskHistory>, ApiError> {
    let id = task_id(&id)?;
    let events = state.store.history(&owner, id).await?;
    if events.is_empty() {
        return Err(ApiError::NotFound);
    }
    Ok(Json(TaskHistory {
        items: events
            .into_iter()
            .enumerate()
            .map(|(i, e)| HistoryEvent::new(i as u64 + 1, e))
            .collect(),
    }))
}
