//! The one error enum of the read side.

/// What can go wrong while projecting or querying.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// Postgres failed or is unreachable.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("migrations: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// Reading the event stream failed.
    #[error("event stream: {0}")]
    Stream(String),
    /// Another projector advanced the checkpoint first: this batch was not applied.
    #[error("checkpoint of {projection} moved from {expected} underneath us")]
    CheckpointMoved {
        /// The projection.
        projection: String,
        /// The position this projector started its batch from.
        expected: u64,
    },
    /// A stored row does not fit the domain types (written by another version?).
    #[error("read model row for task {task_id} is invalid: {reason}")]
    InvalidRow {
        /// The task.
        task_id: uuid::Uuid,
        /// What is wrong.
        reason: String,
    },
    /// A list cursor that this server did not issue, or issued for another sort.
    #[error("invalid cursor")]
    InvalidCursor,
}
