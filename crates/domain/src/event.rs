//! Events: past-tense facts, one per accepted command.
//!
//! Each event has an `event_type` (the Rust-independent name, stable forever) and an
//! `event_version`; both travel as headers (`Tm-Event-Type`, `Tm-Event-Version`) and the payload
//! is the JSON of the event struct alone. Stored events are never rewritten: when a payload
//! changes shape, a new version is added and [`TaskEvent::decode`] upcasts the old ones.
//!
//! Every payload repeats `task_id` and `occurred_at` so an outside consumer needs nothing but
//! the payload to make sense of it.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::DecodeError;
use crate::recurrence::Recurrence;
use crate::reminder::Reminder;
use crate::values::{
    CancelReason, Description, EffortMinutes, Priority, Tag, TaskId, TaskTitle, TimeZoneName,
    Timestamp, UserId,
};

/// A task came into existence (version 5: with its recurrence and its place in a series).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskCreated {
    /// The task.
    pub task_id: TaskId,
    /// Who owns it (also the `<owner_id>` token of the subject).
    pub owner_id: UserId,
    /// Its title.
    pub title: TaskTitle,
    /// Its description, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Description>,
    /// Its priority, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// When it is due, if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<Timestamp>,
    /// When work on it may begin, if it may not begin at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<Timestamp>,
    /// The owner's estimate of the effort, in minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate_minutes: Option<EffortMinutes>,
    /// Its tags.
    #[serde(default)]
    #[schemars(length(max = 20))]
    pub tags: Vec<Tag>,
    /// The owner's time zone when the task was created.
    pub time_zone: TimeZoneName,
    /// The task it is a subtask of; absent for a top-level task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<TaskId>,
    /// How it repeats: when it is completed or cancelled, the automation runtime creates the
    /// next occurrence by this rule. Absent for a task that does not repeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurrence: Option<Recurrence>,
    /// The series it belongs to and its place in it; present on every occurrence of a
    /// repeating task, so its history links the occurrences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<SeriesLink>,
    /// When to remind the owner: instants, or lead times before the due date.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub reminders: Vec<Reminder>,
    /// When it was created.
    pub occurred_at: Timestamp,
}

/// Where a task stands in a repeating series. The first occurrence's id names the series, and
/// its due date anchors a `fixed` rule (it plays the part of the rule's DTSTART), so every
/// occurrence carries what the next one is computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SeriesLink {
    /// The series: the id of its first occurrence.
    pub series_id: TaskId,
    /// This task's number in the series, from 1.
    #[schemars(range(min = 1))]
    pub occurrence: u32,
    /// The due date of occurrence 1.
    pub anchor: Timestamp,
}

/// Earlier payload versions, kept so stored events stay readable, with their upcasters.
pub mod v1 {
    use super::*;

    /// A task came into existence (version 1: before time zones were recorded).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(rename = "TaskCreated")]
    pub struct TaskCreated {
        /// The task.
        pub task_id: TaskId,
        /// Who owns it (also the `<owner_id>` token of the subject).
        pub owner_id: UserId,
        /// Its title.
        pub title: TaskTitle,
        /// Its description, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub description: Option<Description>,
        /// Its priority, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub priority: Option<Priority>,
        /// When it is due, if ever.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub due_at: Option<Timestamp>,
        /// The owner's estimate of the effort, in minutes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub estimate_minutes: Option<EffortMinutes>,
        /// Its tags.
        #[serde(default)]
        #[schemars(length(max = 20))]
        pub tags: Vec<Tag>,
        /// When it was created.
        pub occurred_at: Timestamp,
    }

    /// Upcasts to the current version: tasks created before zones were recorded count as
    /// UTC, and had no start date.
    impl From<TaskCreated> for super::TaskCreated {
        fn from(v1: TaskCreated) -> Self {
            super::v2::TaskCreated {
                task_id: v1.task_id,
                owner_id: v1.owner_id,
                title: v1.title,
                description: v1.description,
                priority: v1.priority,
                due_at: v1.due_at,
                estimate_minutes: v1.estimate_minutes,
                tags: v1.tags,
                time_zone: TimeZoneName::utc(),
                occurred_at: v1.occurred_at,
            }
            .into()
        }
    }

    /// Some fields changed (version 1: before start dates).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(rename = "TaskUpdated")]
    pub struct TaskUpdated {
        /// The task.
        pub task_id: TaskId,
        /// The new title.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub title: Option<TaskTitle>,
        /// The new description, or `null` when cleared.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present"
        )]
        pub description: Option<Option<Description>>,
        /// The new priority, or `null` when cleared.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present"
        )]
        pub priority: Option<Option<Priority>>,
        /// The new due date, or `null` when cleared.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present"
        )]
        pub due_at: Option<Option<Timestamp>>,
        /// The new estimate, or `null` when cleared.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present"
        )]
        pub estimate_minutes: Option<Option<EffortMinutes>>,
        /// The complete new tag list.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 20))]
        pub tags: Option<Vec<Tag>>,
        /// When it changed.
        pub occurred_at: Timestamp,
    }

    /// Upcasts to the current version through version 2: a version 1 update never touched
    /// the start date.
    impl From<TaskUpdated> for super::TaskUpdated {
        fn from(v1: TaskUpdated) -> Self {
            super::v2::TaskUpdated {
                task_id: v1.task_id,
                title: v1.title,
                description: v1.description,
                priority: v1.priority,
                due_at: v1.due_at,
                starts_at: None,
                estimate_minutes: v1.estimate_minutes,
                tags: v1.tags,
                occurred_at: v1.occurred_at,
            }
            .into()
        }
    }

    /// The task is done (version 1: before cascades).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(rename = "TaskCompleted")]
    pub struct TaskCompleted {
        /// The task.
        pub task_id: TaskId,
        /// The effort it took: as reported, else derived from tracked time; absent when
        /// neither is known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub actual_minutes: Option<EffortMinutes>,
        /// When it was completed.
        pub occurred_at: Timestamp,
    }

    /// Upcasts to version 2: a version 1 completion never cascaded.
    impl From<TaskCompleted> for super::TaskCompleted {
        fn from(v1: TaskCompleted) -> Self {
            super::TaskCompleted {
                task_id: v1.task_id,
                actual_minutes: v1.actual_minutes,
                cascade: false,
                occurred_at: v1.occurred_at,
            }
        }
    }
}

/// Version 2 payloads.
pub mod v2 {
    use super::*;

    /// A task came into existence (version 2: with the owner's time zone, before start dates).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(rename = "TaskCreated")]
    pub struct TaskCreated {
        /// The task.
        pub task_id: TaskId,
        /// Who owns it (also the `<owner_id>` token of the subject).
        pub owner_id: UserId,
        /// Its title.
        pub title: TaskTitle,
        /// Its description, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub description: Option<Description>,
        /// Its priority, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub priority: Option<Priority>,
        /// When it is due, if ever.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub due_at: Option<Timestamp>,
        /// The owner's estimate of the effort, in minutes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub estimate_minutes: Option<EffortMinutes>,
        /// Its tags.
        #[serde(default)]
        #[schemars(length(max = 20))]
        pub tags: Vec<Tag>,
        /// The owner's time zone when the task was created.
        pub time_zone: TimeZoneName,
        /// When it was created.
        pub occurred_at: Timestamp,
    }

    /// Upcasts to the current version through version 3: tasks created before start dates
    /// could begin at once.
    impl From<TaskCreated> for super::TaskCreated {
        fn from(v2: TaskCreated) -> Self {
            super::v3::TaskCreated {
                task_id: v2.task_id,
                owner_id: v2.owner_id,
                title: v2.title,
                description: v2.description,
                priority: v2.priority,
                due_at: v2.due_at,
                starts_at: None,
                estimate_minutes: v2.estimate_minutes,
                tags: v2.tags,
                time_zone: v2.time_zone,
                occurred_at: v2.occurred_at,
            }
            .into()
        }
    }

    /// Some fields changed (version 2: with the start date, before reminders).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(rename = "TaskUpdated")]
    pub struct TaskUpdated {
        /// The task.
        pub task_id: TaskId,
        /// The new title.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub title: Option<TaskTitle>,
        /// The new description, or `null` when cleared.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present"
        )]
        pub description: Option<Option<Description>>,
        /// The new priority, or `null` when cleared.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present"
        )]
        pub priority: Option<Option<Priority>>,
        /// The new due date, or `null` when cleared.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present"
        )]
        pub due_at: Option<Option<Timestamp>>,
        /// The new start date, or `null` when cleared.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present"
        )]
        pub starts_at: Option<Option<Timestamp>>,
        /// The new estimate, or `null` when cleared.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present"
        )]
        pub estimate_minutes: Option<Option<EffortMinutes>>,
        /// The complete new tag list.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 20))]
        pub tags: Option<Vec<Tag>>,
        /// When it changed.
        pub occurred_at: Timestamp,
    }

    /// Upcasts to version 3: updates before reminders left them alone.
    impl From<TaskUpdated> for super::TaskUpdated {
        fn from(v2: TaskUpdated) -> Self {
            super::TaskUpdated {
                task_id: v2.task_id,
                title: v2.title,
                description: v2.description,
                priority: v2.priority,
                due_at: v2.due_at,
                starts_at: v2.starts_at,
                estimate_minutes: v2.estimate_minutes,
                tags: v2.tags,
                reminders: None,
                occurred_at: v2.occurred_at,
            }
        }
    }
}

/// Version 3 payloads.
pub mod v3 {
    use super::*;

    /// A task came into existence (version 3: with its start date, before subtasks).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(rename = "TaskCreated")]
    pub struct TaskCreated {
        /// The task.
        pub task_id: TaskId,
        /// Who owns it (also the `<owner_id>` token of the subject).
        pub owner_id: UserId,
        /// Its title.
        pub title: TaskTitle,
        /// Its description, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub description: Option<Description>,
        /// Its priority, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub priority: Option<Priority>,
        /// When it is due, if ever.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub due_at: Option<Timestamp>,
        /// When work on it may begin, if it may not begin at once.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub starts_at: Option<Timestamp>,
        /// The owner's estimate of the effort, in minutes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub estimate_minutes: Option<EffortMinutes>,
        /// Its tags.
        #[serde(default)]
        #[schemars(length(max = 20))]
        pub tags: Vec<Tag>,
        /// The owner's time zone when the task was created.
        pub time_zone: TimeZoneName,
        /// When it was created.
        pub occurred_at: Timestamp,
    }

    /// Upcasts to the current version through version 4: tasks created before subtasks were
    /// top-level tasks.
    impl From<TaskCreated> for super::TaskCreated {
        fn from(v3: TaskCreated) -> Self {
            super::v4::TaskCreated {
                task_id: v3.task_id,
                owner_id: v3.owner_id,
                title: v3.title,
                description: v3.description,
                priority: v3.priority,
                due_at: v3.due_at,
                starts_at: v3.starts_at,
                estimate_minutes: v3.estimate_minutes,
                tags: v3.tags,
                time_zone: v3.time_zone,
                parent_id: None,
                occurred_at: v3.occurred_at,
            }
            .into()
        }
    }
}

/// Version 4 payloads.
pub mod v4 {
    use super::*;

    /// A task came into existence (version 4: with its place in the hierarchy, before
    /// recurrence).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(rename = "TaskCreated")]
    pub struct TaskCreated {
        /// The task.
        pub task_id: TaskId,
        /// Who owns it (also the `<owner_id>` token of the subject).
        pub owner_id: UserId,
        /// Its title.
        pub title: TaskTitle,
        /// Its description, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub description: Option<Description>,
        /// Its priority, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub priority: Option<Priority>,
        /// When it is due, if ever.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub due_at: Option<Timestamp>,
        /// When work on it may begin, if it may not begin at once.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub starts_at: Option<Timestamp>,
        /// The owner's estimate of the effort, in minutes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub estimate_minutes: Option<EffortMinutes>,
        /// Its tags.
        #[serde(default)]
        #[schemars(length(max = 20))]
        pub tags: Vec<Tag>,
        /// The owner's time zone when the task was created.
        pub time_zone: TimeZoneName,
        /// The task it is a subtask of; absent for a top-level task.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub parent_id: Option<TaskId>,
        /// When it was created.
        pub occurred_at: Timestamp,
    }

    /// Upcasts to version 5: tasks created before recurrence did not repeat.
    impl From<TaskCreated> for super::TaskCreated {
        fn from(v4: TaskCreated) -> Self {
            super::TaskCreated {
                task_id: v4.task_id,
                owner_id: v4.owner_id,
                title: v4.title,
                description: v4.description,
                priority: v4.priority,
                due_at: v4.due_at,
                starts_at: v4.starts_at,
                estimate_minutes: v4.estimate_minutes,
                tags: v4.tags,
                time_zone: v4.time_zone,
                parent_id: v4.parent_id,
                recurrence: None,
                series: None,
                reminders: Vec::new(),
                occurred_at: v4.occurred_at,
            }
        }
    }
}

/// Reads a field that may be absent (no change), `null` (cleared) or a value (set).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Some fields changed (version 3: with reminders). Only changed fields are present;
/// `null` means the field was cleared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskUpdated {
    /// The task.
    pub task_id: TaskId,
    /// The new title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<TaskTitle>,
    /// The new description, or `null` when cleared.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub description: Option<Option<Description>>,
    /// The new priority, or `null` when cleared.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub priority: Option<Option<Priority>>,
    /// The new due date, or `null` when cleared.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub due_at: Option<Option<Timestamp>>,
    /// The new start date, or `null` when cleared.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub starts_at: Option<Option<Timestamp>>,
    /// The new estimate, or `null` when cleared.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub estimate_minutes: Option<Option<EffortMinutes>>,
    /// The complete new tag list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 20))]
    pub tags: Option<Vec<Tag>>,
    /// The complete new reminder list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 10))]
    pub reminders: Option<Vec<Reminder>>,
    /// When it changed.
    pub occurred_at: Timestamp,
}

/// Work on the task started (or resumed after a pause).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskStarted {
    /// The task.
    pub task_id: TaskId,
    /// When work started; tracked time runs from here.
    pub occurred_at: Timestamp,
}

/// Work on the task paused; the time since it started is added to the tracked time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskPaused {
    /// The task.
    pub task_id: TaskId,
    /// When work paused.
    pub occurred_at: Timestamp,
}

/// The task is done (version 2: with the cascade request).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskCompleted {
    /// The task.
    pub task_id: TaskId,
    /// The effort it took: as reported, else derived from tracked time; absent when neither
    /// is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_minutes: Option<EffortMinutes>,
    /// The completion asked for the open subtasks to be completed too; the automation
    /// runtime completes each of them once.
    #[serde(default, skip_serializing_if = "is_false")]
    pub cascade: bool,
    /// When it was completed.
    pub occurred_at: Timestamp,
}

/// A completed task is open again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskReopened {
    /// The task.
    pub task_id: TaskId,
    /// When it was reopened.
    pub occurred_at: Timestamp,
}

/// The task is archived and refuses further changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskArchived {
    /// The task.
    pub task_id: TaskId,
    /// When it was archived.
    pub occurred_at: Timestamp,
}

/// The task will not be done. It keeps its fields, takes no tracked time and records no
/// effort; reopening makes it open again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskCancelled {
    /// The task.
    pub task_id: TaskId,
    /// Why, if the user said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<CancelReason>,
    /// When it was cancelled.
    pub occurred_at: Timestamp,
}

/// The task moved in the hierarchy: under another task, or to the top level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskMoved {
    /// The task.
    pub task_id: TaskId,
    /// Its new parent; `null` for the top level.
    pub parent_id: Option<TaskId>,
    /// When it moved.
    pub occurred_at: Timestamp,
}

/// A reminder of the task came due: the scheduler fired it (once per resolved instant). It
/// changes nothing else; subscribers (the live feed, webhooks) tell the owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReminderDue {
    /// The task.
    pub task_id: TaskId,
    /// The instant the reminder was set for.
    pub remind_at: Timestamp,
    /// It fired more than a few seconds after `remind_at` (the scheduler was down or behind).
    #[serde(default, skip_serializing_if = "is_false")]
    pub late: bool,
    /// When it fired.
    pub occurred_at: Timestamp,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// Every event of the Task aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskEvent {
    /// See [`TaskCreated`].
    Created(TaskCreated),
    /// See [`TaskUpdated`].
    Updated(TaskUpdated),
    /// See [`TaskStarted`].
    Started(TaskStarted),
    /// See [`TaskPaused`].
    Paused(TaskPaused),
    /// See [`TaskCompleted`].
    Completed(TaskCompleted),
    /// See [`TaskReopened`].
    Reopened(TaskReopened),
    /// See [`TaskArchived`].
    Archived(TaskArchived),
    /// See [`TaskCancelled`].
    Cancelled(TaskCancelled),
    /// See [`TaskMoved`].
    Moved(TaskMoved),
    /// See [`ReminderDue`].
    ReminderDue(ReminderDue),
}

/// The `(event_type, event_version)` pairs that this code writes today.
pub const CURRENT_VERSIONS: [(&str, u32); 10] = [
    ("TaskCreated", 5),
    ("TaskUpdated", 3),
    ("TaskStarted", 1),
    ("TaskPaused", 1),
    ("TaskCompleted", 2),
    ("TaskReopened", 1),
    ("TaskArchived", 1),
    ("TaskCancelled", 1),
    ("TaskMoved", 1),
    ("ReminderDue", 1),
];

fn parse<T: for<'de> Deserialize<'de>>(
    event_type: &'static str,
    payload: &[u8],
) -> Result<T, DecodeError> {
    serde_json::from_slice(payload).map_err(|source| DecodeError::Payload { event_type, source })
}

impl TaskEvent {
    /// The stable type name, independent of Rust identifiers.
    pub fn event_type(&self) -> &'static str {
        match self {
            TaskEvent::Created(_) => "TaskCreated",
            TaskEvent::Updated(_) => "TaskUpdated",
            TaskEvent::Started(_) => "TaskStarted",
            TaskEvent::Paused(_) => "TaskPaused",
            TaskEvent::Completed(_) => "TaskCompleted",
            TaskEvent::Reopened(_) => "TaskReopened",
            TaskEvent::Archived(_) => "TaskArchived",
            TaskEvent::Cancelled(_) => "TaskCancelled",
            TaskEvent::Moved(_) => "TaskMoved",
            TaskEvent::ReminderDue(_) => "ReminderDue",
        }
    }

    /// The version of the payload shape this code writes.
    pub fn event_version(&self) -> u32 {
        match self {
            TaskEvent::Created(_) => 5,
            TaskEvent::Updated(_) => 3,
            TaskEvent::Completed(_) => 2,
            _ => 1,
        }
    }

    /// The task the event is about.
    pub fn task_id(&self) -> TaskId {
        match self {
            TaskEvent::Created(e) => e.task_id,
            TaskEvent::Updated(e) => e.task_id,
            TaskEvent::Started(e) => e.task_id,
            TaskEvent::Paused(e) => e.task_id,
            TaskEvent::Completed(e) => e.task_id,
            TaskEvent::Reopened(e) => e.task_id,
            TaskEvent::Archived(e) => e.task_id,
            TaskEvent::Cancelled(e) => e.task_id,
            TaskEvent::Moved(e) => e.task_id,
            TaskEvent::ReminderDue(e) => e.task_id,
        }
    }

    /// When the event happened (the instant carried by its command).
    pub fn occurred_at(&self) -> Timestamp {
        match self {
            TaskEvent::Created(e) => e.occurred_at,
            TaskEvent::Updated(e) => e.occurred_at,
            TaskEvent::Started(e) => e.occurred_at,
            TaskEvent::Paused(e) => e.occurred_at,
            TaskEvent::Completed(e) => e.occurred_at,
            TaskEvent::Reopened(e) => e.occurred_at,
            TaskEvent::Archived(e) => e.occurred_at,
            TaskEvent::Cancelled(e) => e.occurred_at,
            TaskEvent::Moved(e) => e.occurred_at,
            TaskEvent::ReminderDue(e) => e.occurred_at,
        }
    }

    /// The JSON payload of the current version.
    pub fn encode(&self) -> Vec<u8> {
        let encoded = match self {
            TaskEvent::Created(e) => serde_json::to_vec(e),
            TaskEvent::Updated(e) => serde_json::to_vec(e),
            TaskEvent::Started(e) => serde_json::to_vec(e),
            TaskEvent::Paused(e) => serde_json::to_vec(e),
            TaskEvent::Completed(e) => serde_json::to_vec(e),
            TaskEvent::Reopened(e) => serde_json::to_vec(e),
            TaskEvent::Archived(e) => serde_json::to_vec(e),
            TaskEvent::Cancelled(e) => serde_json::to_vec(e),
            TaskEvent::Moved(e) => serde_json::to_vec(e),
            TaskEvent::ReminderDue(e) => serde_json::to_vec(e),
        };
        // Plain structs with string keys: serde_json cannot fail on them.
        encoded.expect("task events always serialize to JSON")
    }

    /// The payload of the current version as a JSON value (for responses that embed it).
    pub fn to_json(&self) -> serde_json::Value {
        // The bytes come from `encode`, which always produces valid JSON.
        serde_json::from_slice(&self.encode()).unwrap_or_default()
    }

    /// Decodes a stored payload of any published version, upcasting old versions to the
    /// current shape.
    pub fn decode(event_type: &str, version: u32, payload: &[u8]) -> Result<Self, DecodeError> {
        let event = match (event_type, version) {
            ("TaskCreated", 1) => {
                TaskEvent::Created(parse::<v1::TaskCreated>("TaskCreated", payload)?.into())
            }
            ("TaskCreated", 2) => {
                TaskEvent::Created(parse::<v2::TaskCreated>("TaskCreated", payload)?.into())
            }
            ("TaskCreated", 3) => {
                TaskEvent::Created(parse::<v3::TaskCreated>("TaskCreated", payload)?.into())
            }
            ("TaskCreated", 4) => {
                TaskEvent::Created(parse::<v4::TaskCreated>("TaskCreated", payload)?.into())
            }
            ("TaskCreated", 5) => TaskEvent::Created(parse("TaskCreated", payload)?),
            ("TaskUpdated", 1) => {
                TaskEvent::Updated(parse::<v1::TaskUpdated>("TaskUpdated", payload)?.into())
            }
            ("TaskUpdated", 2) => {
                TaskEvent::Updated(parse::<v2::TaskUpdated>("TaskUpdated", payload)?.into())
            }
            ("TaskUpdated", 3) => TaskEvent::Updated(parse("TaskUpdated", payload)?),
            ("TaskStarted", 1) => TaskEvent::Started(parse("TaskStarted", payload)?),
            ("TaskPaused", 1) => TaskEvent::Paused(parse("TaskPaused", payload)?),
            ("TaskCompleted", 1) => {
                TaskEvent::Completed(parse::<v1::TaskCompleted>("TaskCompleted", payload)?.into())
            }
            ("TaskCompleted", 2) => TaskEvent::Completed(parse("TaskCompleted", payload)?),
            ("TaskReopened", 1) => TaskEvent::Reopened(parse("TaskReopened", payload)?),
            ("TaskArchived", 1) => TaskEvent::Archived(parse("TaskArchived", payload)?),
            ("TaskCancelled", 1) => TaskEvent::Cancelled(parse("TaskCancelled", payload)?),
            ("TaskMoved", 1) => TaskEvent::Moved(parse("TaskMoved", payload)?),
            ("ReminderDue", 1) => TaskEvent::ReminderDue(parse("ReminderDue", payload)?),
            (known, version) if CURRENT_VERSIONS.iter().any(|(t, _)| *t == known) => {
                return Err(DecodeError::UnknownVersion {
                    event_type: known.to_owned(),
                    version,
                })
            }
            (unknown, _) => return Err(DecodeError::UnknownType(unknown.to_owned())),
        };
        Ok(event)
    }

    /// The JSON Schema of every published `(event_type, version)`, old versions included, generated from the Rust
    /// types. `events/` holds exactly these; a test fails when the two drift apart.
    pub fn schemas() -> Vec<(&'static str, u32, serde_json::Value)> {
        fn schema<T: JsonSchema>() -> serde_json::Value {
            serde_json::to_value(schemars::schema_for!(T)).expect("schemas serialize")
        }
        vec![
            ("TaskCreated", 1, schema::<v1::TaskCreated>()),
            ("TaskCreated", 2, schema::<v2::TaskCreated>()),
            ("TaskCreated", 3, schema::<v3::TaskCreated>()),
            ("TaskCreated", 4, schema::<v4::TaskCreated>()),
            ("TaskCreated", 5, schema::<TaskCreated>()),
            ("TaskUpdated", 1, schema::<v1::TaskUpdated>()),
            ("TaskUpdated", 2, schema::<v2::TaskUpdated>()),
            ("TaskUpdated", 3, schema::<TaskUpdated>()),
            ("TaskStarted", 1, schema::<TaskStarted>()),
            ("TaskPaused", 1, schema::<TaskPaused>()),
            ("TaskCompleted", 1, schema::<v1::TaskCompleted>()),
            ("TaskCompleted", 2, schema::<TaskCompleted>()),
            ("TaskReopened", 1, schema::<TaskReopened>()),
            ("TaskArchived", 1, schema::<TaskArchived>()),
            ("TaskCancelled", 1, schema::<TaskCancelled>()),
            ("TaskMoved", 1, schema::<TaskMoved>()),
            ("ReminderDue", 1, schema::<ReminderDue>()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use uuid::Uuid;

    fn at() -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()
    }

    #[test]
    fn an_update_distinguishes_absent_from_cleared_fields() {
        let id = TaskId(Uuid::nil());
        let event = TaskEvent::Updated(TaskUpdated {
            task_id: id,
            title: None,
            description: Some(None),
            priority: Some(Some(Priority::High)),
            due_at: None,
            starts_at: None,
            estimate_minutes: None,
            tags: None,
            reminders: None,
            occurred_at: at(),
        });
        let json: serde_json::Value = serde_json::from_slice(&event.encode()).unwrap();
        assert_eq!(json["description"], serde_json::Value::Null);
        assert!(json.get("due_at").is_none());
        let back = TaskEvent::decode("TaskUpdated", 3, &event.encode()).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn a_v1_creation_is_upcast_in_utc_without_a_start_date() {
        let v1 = br#"{"task_id":"00000000-0000-0000-0000-000000000001","owner_id":"amy","title":"Old","tags":["x"],"occurred_at":"2025-01-01T00:00:00Z"}"#;
        let TaskEvent::Created(created) = TaskEvent::decode("TaskCreated", 1, v1).unwrap() else {
            panic!("a creation")
        };
        assert_eq!(created.time_zone, TimeZoneName::utc());
        assert_eq!(created.starts_at, None);
        assert_eq!(created.title.as_str(), "Old");
        // A v1 payload is not a valid v2 payload, and the other way round.
        assert!(TaskEvent::decode("TaskCreated", 2, v1).is_err());
        let mut current = created;
        current.starts_at = Some(at());
        let v3 = TaskEvent::Created(current).encode();
        assert!(TaskEvent::decode("TaskCreated", 1, &v3).is_err());
        // A v3 payload with a start date is not a v2 one: a v2 reader refuses what it
        // would drop.
        assert!(TaskEvent::decode("TaskCreated", 2, &v3).is_err());
    }

    #[test]
    fn v2_creations_and_v1_updates_are_upcast_without_a_start_date() {
        let v2 = br#"{"task_id":"00000000-0000-0000-0000-000000000001","owner_id":"amy","title":"T","time_zone":"Europe/Paris","occurred_at":"2025-01-01T00:00:00Z"}"#;
        let TaskEvent::Created(created) = TaskEvent::decode("TaskCreated", 2, v2).unwrap() else {
            panic!("a creation")
        };
        assert_eq!(created.time_zone.as_str(), "Europe/Paris");
        assert_eq!(created.starts_at, None);
        let v1 = br#"{"task_id":"00000000-0000-0000-0000-000000000001","due_at":null,"occurred_at":"2025-01-01T00:00:00Z"}"#;
        let TaskEvent::Updated(updated) = TaskEvent::decode("TaskUpdated", 1, v1).unwrap() else {
            panic!("an update")
        };
        assert_eq!(updated.due_at, Some(None));
        assert_eq!(updated.starts_at, None);
        assert!(TaskEvent::decode(
            "TaskUpdated",
            1,
            br#"{"task_id":"00000000-0000-0000-0000-000000000001","starts_at":null,"occurred_at":"2025-01-01T00:00:00Z"}"#
        )
        .is_err());
    }

    #[test]
    fn unknown_types_and_versions_are_named_in_the_error() {
        assert!(matches!(
            TaskEvent::decode("TaskExploded", 1, b"{}"),
            Err(DecodeError::UnknownType(t)) if t == "TaskExploded"
        ));
        assert!(matches!(
            TaskEvent::decode("TaskStarted", 9, b"{}"),
            Err(DecodeError::UnknownVersion { version: 9, .. })
        ));
        assert!(matches!(
            TaskEvent::decode("TaskStarted", 1, b"not json"),
            Err(DecodeError::Payload { .. })
        ));
    }
}
