//! The one error enum of the command path.

use eventstore::StoreError;
use projections::ProjectionError;

/// Why a command did not go through.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The event store refused or failed it (a domain refusal, a conflict, NATS down).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The read model could not be asked about the task's subtasks.
    #[error(transparent)]
    Read(#[from] ProjectionError),
    /// The named parent does not exist for this owner.
    #[error("no such parent task")]
    ParentNotFound,
    /// The primary read model did not catch up with the log in time, so the subtasks of a
    /// task cannot be known yet.
    #[error("the read model is at {current}, behind the log at {requested}")]
    ReadModelBehind {
        /// The log's head when the command arrived.
        requested: u64,
        /// Where the read model got to.
        current: u64,
    },
    /// A concurrent move made the tree cyclic together with this one; this move was undone.
    #[error("a concurrent move would have put the task under itself; the move was undone")]
    MoveRaced,
}
