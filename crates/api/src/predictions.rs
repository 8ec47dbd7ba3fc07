//! Predictions of the learning side: `POST /v1/predictions` for a draft task, and the
//! `prediction` of `GET /v1/tasks/{id}`. Both run [`ml::Model::predict`] on the version this
//! process serves, which [`ml::ServingModel`] swaps when a better one is published; nothing
//! here waits on I/O, so a prediction costs microseconds.

use axum::extract::State;
use axum::Json;
use domain::{Task, TaskStatus, UserId};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::AuthUser;
use crate::extract::JsonBody;
use crate::problem::{ApiError, Problem};
use crate::state::AppState;
use crate::tasks::dto::{CreateTaskRequest, PriorityName};

/// What the models expect of a task.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct PredictionResponse {
    /// Expected effort in minutes: the owner's estimate corrected by how tasks like this one
    /// went for them and for everyone.
    pub effort_minutes: u32,
    /// Suggested priority from the text and the due date (`null` until some task had one).
    #[schema(value_type = Option<PriorityName>)]
    pub priority: Option<&'static str>,
    /// The model version that answered.
    pub model_version: u64,
}

impl From<ml::Prediction> for PredictionResponse {
    fn from(prediction: ml::Prediction) -> Self {
        Self {
            effort_minutes: prediction.effort_minutes,
            priority: prediction.priority.map(domain::Priority::as_str),
            model_version: prediction.model_version,
        }
    }
}

/// The prediction for a stored task: for tasks still to be done, when a model is served.
pub fn for_task(state: &AppState, owner: &UserId, task: &Task) -> Option<PredictionResponse> {
    if matches!(task.status, TaskStatus::Completed | TaskStatus::Archived) {
        return None;
    }
    let model = state.models.get()?;
    Some(model.predict(owner, &ml::TaskInput::from(task)).into())
}

/// Effort and priority predictions for a draft task (the body of a create, not stored).
#[utoipa::path(
    post, path = "/v1/predictions", tag = "queries",
    request_body = CreateTaskRequest,
    responses(
        (status = 200, description = "The prediction", body = PredictionResponse),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No model has been trained yet (the ml role publishes one once tasks have been completed)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn predict_draft(
    State(state): State<AppState>,
    AuthUser(owner): AuthUser,
    JsonBody(body): JsonBody<CreateTaskRequest>,
) -> Result<Json<PredictionResponse>, ApiError> {
    let draft = body.validate()?;
    let model = state.models.get().ok_or(ApiError::NoModelYet)?;
    let input = ml::TaskInput {
        title: draft.title.as_str().to_owned(),
        description: draft.description.as_ref().map(|d| d.as_str().to_owned()),
        tags: draft.tags.iter().map(|t| t.as_str().to_owned()).collect(),
        priority: draft.priority,
        estimate_minutes: draft.estimate_minutes.map(|e| e.get()),
        due_at: draft.due_at,
        created_at: chrono::Utc::now(),
    };
    Ok(Json(model.predict(&owner, &input).into()))
}

/// The route of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(predict_draft))
}
