//! The one error enum of the event store. Domain refusals, concurrency conflicts and
//! infrastructure failures are separate variants so the API can answer 409, 409 and 503.

use domain::{DecodeError, TaskError};

/// What can go wrong when executing a command or reading events.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The aggregate refused the command.
    #[error(transparent)]
    Rejected(#[from] TaskError),
    /// `If-Match` named a version that is not the task's current one.
    #[error("version conflict: expected version {expected}, current version is {actual}")]
    VersionConflict {
        /// The version the client expected.
        expected: u64,
        /// The task's current version.
        actual: u64,
    },
    /// Another writer appended to the task between our read and our append, and retrying did
    /// not help (JetStream answered `WrongLastSequence`).
    #[error("concurrent modification of the task; retry the command")]
    Concurrency,
    /// A stored message could not be decoded.
    #[error("stored event at sequence {sequence} cannot be decoded: {source}")]
    Corrupt {
        /// Its stream sequence.
        sequence: u64,
        /// Why.
        #[source]
        source: DecodeError,
    },
    /// NATS or JetStream did not answer as expected (down, timed out, stream missing).
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    /// The configuration or a stream definition is invalid.
    #[error("event store configuration: {0}")]
    Config(String),
}

impl StoreError {
    /// Wraps any NATS-side failure as [`StoreError::Unavailable`], keeping its message.
    pub fn unavailable(error: impl std::fmt::Display) -> Self {
        StoreError::Unavailable(error.to_string())
    }
}
