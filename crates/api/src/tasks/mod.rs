//! The task endpoints: commands (writes through the event store), queries (reads from the
//! read model and the log), and the quick-add preview.

pub mod commands;
pub mod dto;
pub mod queries;
pub mod quickadd;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// The routes of the task endpoints, with their OpenAPI operations.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(commands::create_task, queries::list_tasks))
        .routes(routes!(quickadd::parse_task))
        .routes(routes!(queries::get_task, commands::update_task))
        .routes(routes!(commands::start_task))
        .routes(routes!(commands::pause_task))
        .routes(routes!(commands::complete_task))
        .routes(routes!(commands::reopen_task))
        .routes(routes!(commands::archive_task))
        .routes(routes!(commands::cancel_task))
        .routes(routes!(commands::move_task))
        .routes(routes!(queries::task_history))
}
