//! The one error enum of the automation runtime.

use commands::CommandError;
use domain::TaskError;
use eventstore::StoreError;
use projections::ProjectionError;

/// Why a reaction did not go through.
#[derive(Debug, thiserror::Error)]
pub enum AutomationError {
    /// A command failed or was refused.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// Reading the log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading the read model failed.
    #[error(transparent)]
    Read(#[from] ProjectionError),
    /// The dead-letter table could not be written or read.
    #[error("automation dead letters: {0}")]
    Database(#[from] sqlx::Error),
    /// The read model did not reach the triggering event in time.
    #[error("the read model is at {current}, behind the event at {wanted}")]
    ReadModelBehind {
        /// The triggering event's position.
        wanted: u64,
        /// Where the read model got to.
        current: u64,
    },
    /// The consumer could not be opened or read.
    #[error("automation consumer: {0}")]
    Stream(String),
}

impl AutomationError {
    /// Whether a retry can change the outcome. A domain refusal cannot (the state that refused
    /// it is a fact of the log); an outage, a conflict with a concurrent writer or a lagging
    /// read model can.
    pub fn is_retryable(&self) -> bool {
        match self {
            AutomationError::Command(CommandError::Store(store))
            | AutomationError::Store(store) => !matches!(store, StoreError::Rejected(_)),
            AutomationError::Command(CommandError::ParentNotFound) => false,
            AutomationError::Command(_) => true,
            AutomationError::Read(ProjectionError::InvalidRow { .. }) => false,
            _ => true,
        }
    }
}

/// Whether a command's refusal means what it asked for is already the case, or can no longer
/// be done by anyone: the automation has nothing left to do.
pub(crate) fn already_settled(error: &CommandError, settled: &[fn(&TaskError) -> bool]) -> bool {
    match error {
        CommandError::Store(StoreError::Rejected(refusal)) => settled.iter().any(|f| f(refusal)),
        _ => false,
    }
}
