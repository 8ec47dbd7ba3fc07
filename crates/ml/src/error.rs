//! The one error enum of the learning side.

/// What can go wrong while training, storing or loading models.
#[derive(Debug, thiserror::Error)]
pub enum MlError {
    /// The numbers did not work out (a singular system, no examples where some are needed).
    #[error("training: {0}")]
    Training(String),
    /// Reading the event log failed.
    #[error("event log: {0}")]
    EventLog(#[from] eventstore::StoreError),
    /// The model object store or the pointer bucket failed or is unreachable.
    #[error("model registry: {0}")]
    Registry(String),
    /// A stored model could not be read (written by an incompatible release?).
    #[error("model {object}: {reason}")]
    Corrupt {
        /// The object's name.
        object: String,
        /// What is wrong.
        reason: String,
    },
    /// Another publisher moved the pointer first; this version was not published.
    #[error("the model pointer moved to version {0} while publishing")]
    PointerMoved(u64),
    /// Input that cannot be learnt from (the evaluation CSV).
    #[error("{0}")]
    Input(String),
}

impl MlError {
    pub(crate) fn registry(error: impl std::fmt::Display) -> Self {
        Self::Registry(error.to_string())
    }
}
