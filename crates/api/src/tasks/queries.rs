//! Query endpoints: one task, lists, and a task's history. Reads come from the Postgres read
//! model (after waiting for `Tm-Min-Position` when given); history comes from the event log.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::Json;
use chrono::{DateTime, Utc};
use domain::{Priority, TaskStatus};
use projections::queries::{self, Availability, Cursor, ListQuery, ParentFilter, SortKey};
use projections::task_rows::TaskRecord;

use crate::auth::AuthUser;
use crate::extract::MinPosition;
use crate::limits::{
    parse_instant, parse_position, ListParams, TaskReadParams, DEFAULT_PAGE_SIZE, MAX_CURSOR_CHARS,
    MAX_FILTER_CHARS, MAX_PAGE_SIZE, MAX_POSITION, MAX_SEARCH_CHARS,
};
use crate::problem::{ApiError, Problem};
use crate::state::AppState;
use crate::tasks::commands::task_id;
use crate::tasks::dto::{HistoryEvent, TaskHistory, TaskList, TaskResponse};

/// Waits for the read model to reach the client's `Tm-Min-Position`, or answers 504. With a
/// replica, that is the replica's copy (unless it is down), the one the query then reads.
///
/// A position past the end of the log is refused at once (409): no wait can reach it, so a
/// 504 with `Retry-After` would send the client into retries that cannot succeed. The log's
/// end is only asked for when the read model is behind; if NATS cannot say, the request
/// waits as it would have.
pub(crate) async fn wait_for_position(state: &AppState, min: MinPosition) -> Result<(), ApiError> {
    let MinPosition(Some(requested)) = min else {
        return Ok(());
    };
    if state.reads.current() >= requested {
        return Ok(());
    }
    if let Ok(head) = state.store.head_position().await {
        if requested > head {
            return Err(ApiError::PositionPastEnd {
                requested,
                end: head,
            });
        }
    }
    state
        .reads
        .wait_for(requested, state.config.read_wait_timeout)
        .await
        .map_err(|behind| ApiError::ReadModelBehind {
            requested,
            current: behind.current,
        })?;
    Ok(())
}

/// The query string's parameters, in order. Names the server does not document never get
/// here ([`crate::middleware::refuse_unknown_query_parameters`]).
fn query_pairs(raw: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|_| ApiError::BadRequest("the query string is malformed".into()))
}

/// Which past state of a task to rebuild, from the query string: the state after
/// `version` events, the state as of `instant` (events that occurred at or before it), or
/// both (that version, if the task had reached it by then).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct AsOf {
    version: Option<u64>,
    instant: Option<DateTime<Utc>>,
}

fn as_of(raw: Option<&str>) -> Result<Option<AsOf>, ApiError> {
    let mut point = AsOf::default();
    for (name, value) in query_pairs(raw)? {
        let repeated = match name.as_str() {
            "as_of_version" => point
                .version
                .replace(parse_position(&value).filter(|v| *v >= 1).ok_or_else(|| {
                    ApiError::field(
                        "as_of_version",
                        format!("must be a task version, 1 to {MAX_POSITION}"),
                    )
                })?)
                .is_some(),
            "as_of" => point
                .instant
                .replace(parse_instant("as_of", &value).map_err(field_error)?)
                .is_some(),
            _ => false,
        };
        if repeated {
            return Err(ApiError::field(&name, "give it once"));
        }
    }
    Ok((point != AsOf::default()).then_some(point))
}

fn field_error(error: domain::FieldError) -> ApiError {
    ApiError::Validation(vec![error.into()])
}

/// Rebuilds a task's past state from its events (time travel).
async fn task_as_of(
    state: &AppState,
    owner: &domain::UserId,
    id: domain::TaskId,
    point: AsOf,
) -> Result<TaskRecord, ApiError> {
    let events = state.store.history(owner, id).await?;
    let included = events
        .iter()
        .take_while(|e| point.instant.is_none_or(|at| e.event.occurred_at() <= at));
    let limit = point
        .version
        .map_or(usize::MAX, |v| usize::try_from(v).unwrap_or(usize::MAX));
    let mut task = None;
    let mut position = 0;
    for recorded in included.take(limit) {
        task = domain::evolve(task, &recorded.event);
        position = recorded.position;
    }
    let task = task.ok_or(ApiError::NotFound)?;
    if point.version.is_some_and(|v| task.version != v) {
        return Err(ApiError::NotFound);
    }
    Ok(TaskRecord { task, position })
}

/// Read one task, now or as it was (`as_of_version` or `as_of`).
#[utoipa::path(
    get, path = "/v1/tasks/{id}", tag = "queries",
    params(
        ("id" = Uuid, Path, description = "Task id"),
        TaskReadParams,
    ),
    responses(
        (status = 200, description = "The task; `ETag` carries its version", body = TaskResponse),
        (status = 400, description = "Malformed request (task id, header or query string)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such task (or no such version / not yet created at that instant)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A query parameter is invalid or unknown", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Tm-Min-Position is past the end of the log", body = Problem, content_type = "application/problem+json"),
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
    let mut responses = with_subtasks(&state, &owner, min, vec![record]).await?;
    let mut response = responses.pop().ok_or(ApiError::NotFound)?;
    response.prediction = prediction;
    Ok((headers, Json(response)))
}

/// The answers for `records`, each with its subtask counts (one query for all of them).
async fn with_subtasks(
    state: &AppState,
    owner: &domain::UserId,
    min: MinPosition,
    records: Vec<TaskRecord>,
) -> Result<Vec<TaskResponse>, ApiError> {
    let ids: Vec<domain::TaskId> = records.iter().map(|r| r.task.id).collect();
    let ids = &ids;
    let mut counts = state
        .reads
        .query(min.0, |pool| async move {
            queries::child_counts(&pool, owner, ids).await
        })
        .await?;
    Ok(records
        .into_iter()
        .map(|record| {
            let id = record.task.id;
            let mut response = TaskResponse::from(record);
            response.subtasks = counts.remove(&id).map(Into::into);
            response
        })
        .collect())
}

/// A comma-separated filter (`status`, `priority`): empty for none, else every item parsed,
/// at most [`MAX_FILTER_CHARS`].
fn filter_list<T>(
    name: &str,
    value: &str,
    parse: impl Fn(&str) -> Option<T>,
    names: &str,
) -> Result<Vec<T>, ApiError> {
    let refused = || ApiError::field(name, format!("must be a comma-separated list of {names}"));
    if value.len() > MAX_FILTER_CHARS {
        return Err(refused());
    }
    if value.is_empty() {
        return Ok(Vec::new());
    }
    value
        .split(',')
        .map(|item| parse(item).ok_or_else(refused))
        .collect()
}

fn list_query(raw: Option<&str>) -> Result<ListQuery, ApiError> {
    let mut query = ListQuery {
        limit: DEFAULT_PAGE_SIZE,
        ..ListQuery::default()
    };
    let mut cursor = None;
    for (name, value) in query_pairs(raw)? {
        match name.as_str() {
            "status" => query.statuses.extend(filter_list(
                "status",
                &value,
                TaskStatus::parse,
                "open, in_progress, paused, completed, archived, cancelled",
            )?),
            "priority" => query.priorities.extend(filter_list(
                "priority",
                &value,
                |p| Priority::parse(p).ok(),
                "low, medium, high, urgent",
            )?),
            "tag" => {
                if query.tags.len() >= domain::Tag::MAX_PER_TASK {
                    return Err(ApiError::field("tag", "at most 20 tags"));
                }
                let tag = domain::Tag::parse(&value)
                    .map_err(|e| ApiError::field("tag", e.message.replace("each tag", "a tag")))?;
                query.tags.push(tag.as_str().to_owned());
            }
            "due_after" => {
                query.due_after = Some(parse_instant("due_after", &value).map_err(field_error)?)
            }
            "due_before" => {
                query.due_before = Some(parse_instant("due_before", &value).map_err(field_error)?)
            }
            "available" => {
                let available = match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(ApiError::field("available", "must be true or false")),
                };
                query.available = Some(Availability {
                    available,
                    at: Utc::now(),
                });
            }
            "parent" => {
                query.parent = Some(match value.as_str() {
                    "none" => ParentFilter::TopLevel,
                    id => ParentFilter::Of(domain::TaskId::parse(id).map_err(|_| {
                        ApiError::field("parent", "must be a task id, or none for top-level tasks")
                    })?),
                })
            }
            "series" => {
                query.series = Some(
                    domain::TaskId::parse(&value)
                        .map_err(|_| ApiError::field("series", "must be a series id"))?,
                )
            }
            "subtree" => {
                query.subtree = Some(
                    domain::TaskId::parse(&value)
                        .map_err(|_| ApiError::field("subtree", "must be a task id"))?,
                )
            }
            "q" => {
                if value.chars().count() > MAX_SEARCH_CHARS || value.chars().any(char::is_control) {
                    return Err(ApiError::field(
                        "q",
                        "must be at most 200 characters, without control characters",
                    ));
                }
                if !value.trim().is_empty() {
                    query.text = Some(value);
                }
            }
            "sort" => {
                let (descending, key) = match value.strip_prefix('-') {
                    Some(key) => (true, key),
                    None => (false, value.as_str()),
                };
                query.sort = SortKey::parse(key).ok_or_else(|| {
                    ApiError::field(
                        "sort",
                        "must be created_at, updated_at, due_at or priority, optionally prefixed by - for descending",
                    )
                })?;
                query.descending = descending;
            }
            "limit" => {
                query.limit = value
                    .parse::<u32>()
                    .ok()
                    .filter(|l| (1..=MAX_PAGE_SIZE).contains(l) && !value.starts_with('+'))
                    .ok_or_else(|| {
                        ApiError::field("limit", format!("must be between 1 and {MAX_PAGE_SIZE}"))
                    })?;
            }
            "cursor" => {
                if value.len() > MAX_CURSOR_CHARS {
                    return Err(ApiError::from(projections::ProjectionError::InvalidCursor));
                }
                cursor = Some(value)
            }
            _ => {}
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
    params(ListParams),
    responses(
        (status = 200, description = "A page of tasks", body = TaskList),
        (status = 400, description = "Malformed request (header or query string)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A query parameter is invalid or unknown", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Tm-Min-Position is past the end of the log", body = Problem, content_type = "application/problem+json"),
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
    let query = list_query(raw.as_deref())?;
    wait_for_position(&state, min).await?;
    let (owner, query) = (&owner, &query);
    let page = state
        .reads
        .query(min.0, |pool| async move {
            queries::list_tasks(&pool, owner, query).await
        })
        .await?;
    Ok(Json(TaskList {
        items: with_subtasks(&state, owner, min, page.items).await?,
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
