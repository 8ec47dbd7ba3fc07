//! Command endpoints: each turns a request into one domain command, executes it through the
//! event store and answers `{ id, version, position }`.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::Json;
use domain::{
    ArchiveTask, CancelReason, CancelTask, CreateTask, EffortMinutes, PauseTask, ReopenTask,
    StartTask, TaskCommand, TaskId, UpdateTask, UserId,
};
use eventstore::{CommandMeta, CommandOutcome};
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::extract::{CommandHeaders, JsonBody, OptionalJsonBody};
use crate::limits::{CreateHeaders, TaskCommandHeaders};
use crate::problem::{ApiError, Problem};
use crate::state::AppState;
use crate::tasks::dto::{
    CancelTaskRequest, CommandResponse, CompleteTaskRequest, CreateTaskBody, CreateTaskInput,
    MoveTaskRequest, UpdateTaskRequest,
};

use commands::now;

/// Namespace of the ids derived from idempotency keys (UUID v5), fixed forever.
const IDEMPOTENCY_NAMESPACE: Uuid = Uuid::from_u128(0x6d0f_4f0c_2b6e_4a43_9a57_3c2b_8e1f_0a11);

/// The id of a task created with an idempotency key: derived from the owner and the key, so a
/// retried create addresses the same task (and the same subject) as the first attempt.
fn derived_task_id(owner: &UserId, key: &str) -> TaskId {
    TaskId(Uuid::new_v5(
        &IDEMPOTENCY_NAMESPACE,
        format!("task\n{owner}\n{key}").as_bytes(),
    ))
}

/// The command id: derived from the owner, the command, the task and the client's key when
/// there is one (scoped so two users, or two endpoints, never collide on the same key), else
/// fresh.
fn command_id(owner: &UserId, command: &str, task: TaskId, key: Option<&str>) -> String {
    match key {
        Some(key) => Uuid::new_v5(
            &IDEMPOTENCY_NAMESPACE,
            format!("{owner}\n{command}\n{task}\n{key}").as_bytes(),
        )
        .to_string(),
        None => Uuid::now_v7().to_string(),
    }
}

fn meta(owner: &UserId, name: &str, task_id: TaskId, headers: &CommandHeaders) -> CommandMeta {
    CommandMeta {
        command_id: command_id(owner, name, task_id, headers.idempotency_key.as_deref()),
        correlation_id: headers.correlation_id.clone(),
        traceparent: headers.traceparent.clone(),
        client_supplied_id: headers.idempotency_key.is_some(),
    }
}

async fn execute(
    state: &AppState,
    owner: &UserId,
    task_id: TaskId,
    command: TaskCommand,
    headers: &CommandHeaders,
) -> Result<CommandOutcome, ApiError> {
    let meta = meta(owner, command.name(), task_id, headers);
    Ok(state
        .commands
        .execute(owner, task_id, &command, headers.if_match, &meta)
        .await?)
}

type CommandAnswer = (StatusCode, HeaderMap, Json<CommandResponse>);

fn answer(status: StatusCode, outcome: CommandOutcome) -> CommandAnswer {
    let mut headers = HeaderMap::new();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", outcome.version)) {
        headers.insert(header::ETAG, etag);
    }
    if status == StatusCode::CREATED {
        if let Ok(location) = HeaderValue::from_str(&format!("/v1/tasks/{}", outcome.task_id)) {
            headers.insert(header::LOCATION, location);
        }
    }
    (
        status,
        headers,
        Json(CommandResponse {
            id: outcome.task_id.0,
            version: outcome.version,
            position: outcome.position,
        }),
    )
}

/// Parses the `{id}` of a task path.
pub(crate) fn task_id(raw: &str) -> Result<TaskId, ApiError> {
    TaskId::parse(raw).map_err(|_| ApiError::BadRequest("the task id must be a UUID".into()))
}

/// Create a task, from its fields or from one line of text (quick add).
#[utoipa::path(
    post, path = "/v1/tasks", tag = "commands",
    request_body = CreateTaskBody,
    params(CreateHeaders),
    responses(
        (status = 201, description = "Created", body = CommandResponse),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Conflict", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Event store unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create_task(
    State(state): State<AppState>,
    AuthUser(owner): AuthUser,
    headers: CommandHeaders,
    JsonBody(body): JsonBody<CreateTaskInput>,
) -> Result<CommandAnswer, ApiError> {
    let at = now();
    let new = body.validate(at)?;
    let task_id = match &headers.idempotency_key {
        Some(key) => derived_task_id(&owner, key),
        None => TaskId(Uuid::now_v7()),
    };
    let placement = match new.parent_id {
        Some(parent) => Some(state.commands.placement(&owner, parent, None).await?),
        None => None,
    };
    // A repeating task needs a due date to anchor its series; without one it is the end of
    // the first day from today that the rule allows.
    let due_at = match (&new.recurrence, new.due_at) {
        (Some(recurrence), None) => Some(recurrence.first_due(at, new.time_zone.tz()).ok_or_else(
            || ApiError::field("recurrence.rule", "has no occurrence from today on"),
        )?),
        (_, due_at) => due_at,
    };
    let command = TaskCommand::Create(CreateTask {
        task_id,
        owner: owner.clone(),
        title: new.title,
        description: new.description,
        priority: new.priority,
        due_at,
        estimate_minutes: new.estimate_minutes,
        tags: new.tags,
        starts_at: new.starts_at,
        time_zone: new.time_zone,
        placement,
        recurrence: new.recurrence,
        series: None,
        reminders: new.reminders,
        at,
    });
    let outcome = execute(&state, &owner, task_id, command, &headers).await?;
    Ok(answer(StatusCode::CREATED, outcome))
}

/// Change some fields of a task.
#[utoipa::path(
    patch, path = "/v1/tasks/{id}", tag = "commands",
    request_body = UpdateTaskRequest,
    params(
        ("id" = Uuid, Path, description = "Task id"),
        TaskCommandHeaders,
    ),
    responses(
        (status = 200, description = "Updated (or nothing to change)", body = CommandResponse),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Version or state conflict", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Event store unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn update_task(
    State(state): State<AppState>,
    AuthUser(owner): AuthUser,
    Path(id): Path<String>,
    headers: CommandHeaders,
    JsonBody(body): JsonBody<UpdateTaskRequest>,
) -> Result<CommandAnswer, ApiError> {
    let task_id = task_id(&id)?;
    let changes = body.validate()?;
    let command = TaskCommand::Update(UpdateTask { changes, at: now() });
    let outcome = execute(&state, &owner, task_id, command, &headers).await?;
    Ok(answer(StatusCode::OK, outcome))
}

macro_rules! transition {
    ($name:ident, $path:literal, $summary:literal, $variant:ident, $command:ident) => {
        #[doc = $summary]
        #[utoipa::path(
            post, path = $path, tag = "commands",
            params(
                ("id" = Uuid, Path, description = "Task id"),
                TaskCommandHeaders,
            ),
            responses(
                (status = 200, description = "Done", body = CommandResponse),
                (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
                (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
                (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
                (status = 409, description = "Version or state conflict", body = Problem, content_type = "application/problem+json"),
                (status = 503, description = "Event store unavailable", body = Problem, content_type = "application/problem+json"),
            ),
            security(("bearer" = []))
        )]
        pub async fn $name(
            State(state): State<AppState>,
            AuthUser(owner): AuthUser,
            Path(id): Path<String>,
            headers: CommandHeaders,
        ) -> Result<CommandAnswer, ApiError> {
            let task_id = task_id(&id)?;
            let command = TaskCommand::$variant($command { at: now() });
            let outcome = execute(&state, &owner, task_id, command, &headers).await?;
            Ok(answer(StatusCode::OK, outcome))
        }
    };
}

transition!(
    start_task,
    "/v1/tasks/{id}/start",
    "Start (or resume) work on a task.",
    Start,
    StartTask
);
transition!(
    pause_task,
    "/v1/tasks/{id}/pause",
    "Pause work on a task.",
    Pause,
    PauseTask
);
transition!(
    reopen_task,
    "/v1/tasks/{id}/reopen",
    "Reopen a completed task.",
    Reopen,
    ReopenTask
);
transition!(
    archive_task,
    "/v1/tasks/{id}/archive",
    "Archive a task; it refuses changes afterwards.",
    Archive,
    ArchiveTask
);

/// Cancel a task: it will not be done. It can be reopened; insights and the learner leave it
/// out, since it records no effort.
#[utoipa::path(
    post, path = "/v1/tasks/{id}/cancel", tag = "commands",
    request_body(content = Option<CancelTaskRequest>, description = "Optional; a reason for the cancellation"),
    params(
        ("id" = Uuid, Path, description = "Task id"),
        TaskCommandHeaders,
    ),
    responses(
        (status = 200, description = "Cancelled", body = CommandResponse),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Version or state conflict (completed, archived or already cancelled)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Event store unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn cancel_task(
    State(state): State<AppState>,
    AuthUser(owner): AuthUser,
    Path(id): Path<String>,
    headers: CommandHeaders,
    OptionalJsonBody(body): OptionalJsonBody<CancelTaskRequest>,
) -> Result<CommandAnswer, ApiError> {
    let task_id = task_id(&id)?;
    let reason = match body.reason.as_deref() {
        Some(reason) => {
            CancelReason::parse(reason).map_err(|e| ApiError::Validation(vec![e.into()]))?
        }
        None => None,
    };
    let command = TaskCommand::Cancel(CancelTask { reason, at: now() });
    let outcome = execute(&state, &owner, task_id, command, &headers).await?;
    Ok(answer(StatusCode::OK, outcome))
}

/// Complete a task.
#[utoipa::path(
    post, path = "/v1/tasks/{id}/complete", tag = "commands",
    request_body(content = Option<CompleteTaskRequest>, description = "Optional; without `actual_minutes` the effort is derived from tracked time"),
    params(
        ("id" = Uuid, Path, description = "Task id"),
        TaskCommandHeaders,
    ),
    responses(
        (status = 200, description = "Completed", body = CommandResponse),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Version or state conflict, or open subtasks without `cascade` (named in `open_subtasks`)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Event store unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn complete_task(
    State(state): State<AppState>,
    AuthUser(owner): AuthUser,
    Path(id): Path<String>,
    headers: CommandHeaders,
    OptionalJsonBody(body): OptionalJsonBody<CompleteTaskRequest>,
) -> Result<CommandAnswer, ApiError> {
    let task_id = task_id(&id)?;
    let actual_minutes = body
        .actual_minutes
        .map(|m| EffortMinutes::parse(m.0, "actual_minutes"))
        .transpose()
        .map_err(|e| ApiError::Validation(vec![e.into()]))?;
    let meta = meta(&owner, "CompleteTask", task_id, &headers);
    let outcome = state
        .commands
        .complete(
            &owner,
            task_id,
            actual_minutes,
            body.cascade,
            headers.if_match,
            &meta,
        )
        .await?;
    Ok(answer(StatusCode::OK, outcome))
}

/// Move a task under another one of yours, or to the top level (`"parent_id": null`).
#[utoipa::path(
    post, path = "/v1/tasks/{id}/move", tag = "commands",
    request_body = MoveTaskRequest,
    params(
        ("id" = Uuid, Path, description = "Task id"),
        TaskCommandHeaders,
    ),
    responses(
        (status = 200, description = "Moved (or already there)", body = CommandResponse),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Version or state conflict, or a concurrent move that would have made a cycle (undone)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid parent: missing, not yours, archived, the task itself or below it, or too deep", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Event store or read model unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn move_task(
    State(state): State<AppState>,
    AuthUser(owner): AuthUser,
    Path(id): Path<String>,
    headers: CommandHeaders,
    JsonBody(body): JsonBody<MoveTaskRequest>,
) -> Result<CommandAnswer, ApiError> {
    let task_id = task_id(&id)?;
    let parent = match body.parent_id {
        Some(Some(parent)) => Some(
            crate::tasks::dto::parent_id(&parent)
                .map_err(|e| ApiError::Validation(vec![e.into()]))?,
        ),
        Some(None) => None,
        None => {
            return Err(ApiError::field(
                "parent_id",
                "is required: a task id, or null for the top level",
            ))
        }
    };
    let meta = meta(&owner, "MoveTask", task_id, &headers);
    let outcome = state
        .commands
        .move_task(&owner, task_id, parent, headers.if_match, &meta)
        .await?;
    Ok(answer(StatusCode::OK, outcome))
}
