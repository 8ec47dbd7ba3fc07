//! The Task aggregate of taskmaster, as a pure decider.
//!
//! Nothing in this crate performs I/O, reads a clock or draws randomness: time and ids arrive
//! inside the commands, so `decide` and `evolve` are plain functions that the event store, the
//! projections, replay and `verify` can all run and get the same answer.
//!
//! # Layout
//! - [`values`]: validated value types (`TaskTitle::parse`, `Tags::parse`, …). Parsing user input
//!   goes through them; decoding stored events does not re-validate, because a stored event is a
//!   fact even if the rules tighten later.
//! - [`command`]: the imperative commands.
//! - [`event`]: the past-tense events, their stable `event_type`/`event_version`, and the
//!   decoding (with upcasting) of stored payloads.
//! - [`recurrence`]: repeating tasks: a validated RRULE and the next due date of a series.
//! - [`quickadd`]: one line of text (`Pay rent every month on the 1st #home !high`) read into
//!   the fields of a task, for a preview the client confirms.
//! - [`reminder`]: when to tell the owner about a task; fired once per instant.
//! - [`task`]: the aggregate state, [`decide`] and [`evolve`].
//! - [`error`]: the one error enum of this crate.

pub mod command;
pub mod error;
pub mod event;
pub mod quickadd;
pub mod recurrence;
pub mod reminder;
pub mod task;
pub mod values;

pub use command::{
    ArchiveTask, CancelTask, CompleteTask, CreateTask, FireReminder, MoveTask, PauseTask,
    Placement, ReopenTask, StartTask, TaskChanges, TaskCommand, UpdateTask, MAX_DEPTH,
};
pub use error::{DecodeError, FieldError, TaskError};
pub use event::{
    ReminderDue, SeriesLink, TaskArchived, TaskCancelled, TaskCompleted, TaskCreated, TaskEvent,
    TaskMoved, TaskPaused, TaskReopened, TaskStarted, TaskUpdated,
};
pub use quickadd::QuickAdd;
pub use recurrence::{Recurrence, RecurrenceMode};
pub use reminder::Reminder;
pub use task::{decide, evolve, replay, NextOccurrence, Task, TaskStatus};
pub use values::{
    CancelReason, Description, DueAt, EffortMinutes, FromTrusted, Priority, StartsAt, Tag, TaskId,
    TaskTitle, TimeZoneName, Timestamp, UserId,
};
