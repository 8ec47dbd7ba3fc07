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
    /// A stored event could not be decoded.
    #[error("undecodable event: {0}")]
    Undecodable(String),
    /// A list cursor that this server did not issue, or issued for another sort.
    #[error("invalid cursor")]
    InvalidCursor,
    /// A setting the read side cannot work with.
    #[error("{0}")]
    Config(String),
    /// Partition leases in NATS KV could not be read or written.
    #[error("partition leases: {0}")]
    Leases(String),
    /// Another process is rebuilding this projection right now.
    #[error("a rebuild of {0} is already running (one at a time per database)")]
    RebuildRunning(String),
    /// The read model is on another layout than this projector was following (a rebuild
    /// swapped it in): the projector must start over from the new layout.
    #[error("the layout of {0} changed (a rebuild was swapped in)")]
    LayoutChanged(String),
}

impl ProjectionError {
    /// Whether the failure is about the infrastructure (Postgres or NATS unreachable, the
    /// checkpoint moved) rather than about one event: retrying later, from the checkpoint, is
    /// the cure, and no event should be dead-lettered for it.
    pub fn is_transient(&self) -> bool {
        match self {
            ProjectionError::Database(e) => is_outage(e),
            ProjectionError::Stream(_)
            | ProjectionError::Leases(_)
            | ProjectionError::CheckpointMoved { .. }
            | ProjectionError::LayoutChanged(_) => true,
            _ => false,
        }
    }
}

/// Whether a database error means Postgres is unreachable or shutting down (retry later) rather
/// than a statement that fails on its own (a bug, or data Postgres refuses).
pub fn is_outage(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        // SQLSTATE classes 08 (connection exception), 53 (insufficient resources),
        // 57 (operator intervention, e.g. admin shutdown), 40 (serialization, deadlock).
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            ["08", "53", "57", "40"]
                .iter()
                .any(|class| code.starts_with(class))
        }),
        _ => false,
    }
}
