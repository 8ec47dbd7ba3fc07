//! The one error enum of the domain, plus the field error used by the value parsers.
//!
//! Every variant is a domain outcome, never a technical failure: the event store and the API
//! map them to precise answers (409 for a refused transition, 404 for a missing task, 422 for
//! a field).

use std::borrow::Cow;

use crate::values::TaskId;

/// A command refused by the rules of the Task aggregate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// The task has no events: it was never created (or belongs to someone else, which the
    /// event store cannot tell apart, on purpose).
    #[error("task not found")]
    NotFound,
    /// A create addressed an id that already has events.
    #[error("task already exists")]
    AlreadyExists,
    /// Archived tasks refuse every further change.
    #[error("task is archived")]
    Archived,
    /// Start on a task that is already in progress.
    #[error("task is already started")]
    AlreadyStarted,
    /// Pause on a task that is not in progress.
    #[error("task is not started")]
    NotStarted,
    /// Start or complete on a completed task (reopen it first).
    #[error("task is already completed")]
    AlreadyCompleted,
    /// Reopen on a task that is neither completed nor cancelled.
    #[error("task is not completed or cancelled")]
    NotCompleted,
    /// Start, pause, complete or cancel on a cancelled task (reopen it first).
    #[error("task is cancelled")]
    Cancelled,
    /// Cancel on a completed task (reopen it first).
    #[error("a completed task cannot be cancelled")]
    CancelCompleted,
    /// A placement under the task itself or one of its descendants.
    #[error("a task cannot be placed under itself or one of its subtasks")]
    ParentCycle,
    /// A placement that would put some task of the subtree below the deepest level.
    #[error("subtasks nest at most {max} levels deep")]
    TooDeep {
        /// The deepest level allowed.
        max: usize,
    },
    /// A placement under an archived task.
    #[error("an archived task takes no subtasks")]
    ParentArchived,
    /// Completion of a task whose subtasks are still open, without asking to cascade.
    #[error("the task has open subtasks")]
    OpenChildren(Vec<TaskId>),
    /// A repeating task without a due date: the series has nothing to count from.
    #[error("a repeating task needs a due date: its first occurrence anchors the series")]
    RecurrenceWithoutDue,
    /// A new reminder whose instant has already passed.
    #[error("a reminder lies in the past")]
    ReminderInPast,
    /// A lead-time reminder on a task without a due date.
    #[error("before_due_minutes needs the task to have a due date")]
    ReminderWithoutDue,
    /// Firing a reminder the task does not have pending (already fired, removed, moved with
    /// the due date, or the task is done).
    #[error("no such pending reminder")]
    ReminderNotPending,
}

/// An input field that failed validation. `field` is the JSON name the client sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The JSON field name, e.g. `title`.
    pub field: &'static str,
    /// What is wrong, in words a client developer can act on.
    pub message: Cow<'static, str>,
}

impl FieldError {
    /// Builds a field error.
    pub fn new(field: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// A stored payload that cannot be turned into a [`crate::TaskEvent`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The `Tm-Event-Type` is not one this code knows.
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    /// The version is newer than this code, or was never published.
    #[error("unknown version {version} of event type {event_type}")]
    UnknownVersion {
        /// The event type.
        event_type: String,
        /// The version found.
        version: u32,
    },
    /// The JSON does not match the schema of its type and version.
    #[error("malformed {event_type} payload: {source}")]
    Payload {
        /// The event type.
        event_type: &'static str,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
}
