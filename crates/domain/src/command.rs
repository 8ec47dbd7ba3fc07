//! Commands: imperative requests that the aggregate accepts (yielding at most one event) or
//! refuses. Every value inside is already validated, and every command carries the instant it
//! was issued, so `decide` never reads a clock.

use crate::event::SeriesLink;
use crate::recurrence::Recurrence;
use crate::reminder::Reminder;
use crate::values::{
    CancelReason, Description, EffortMinutes, Priority, Tag, TaskId, TaskTitle, TimeZoneName,
    Timestamp, UserId,
};

/// Every command of the Task aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskCommand {
    /// Create a new task.
    Create(CreateTask),
    /// Change some fields.
    Update(UpdateTask),
    /// Begin (or resume) working on it.
    Start(StartTask),
    /// Stop working on it for now.
    Pause(PauseTask),
    /// Mark it done.
    Complete(CompleteTask),
    /// Undo a completion.
    Reopen(ReopenTask),
    /// Put it away for good.
    Archive(ArchiveTask),
    /// Drop it without doing it.
    Cancel(CancelTask),
    /// Put it under another task, or back at the top level.
    Move(MoveTask),
    /// Tell the owner a reminder came due (the scheduler issues it).
    FireReminder(FireReminder),
}

impl TaskCommand {
    /// A stable name for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            TaskCommand::Create(_) => "CreateTask",
            TaskCommand::Update(_) => "UpdateTask",
            TaskCommand::Start(_) => "StartTask",
            TaskCommand::Pause(_) => "PauseTask",
            TaskCommand::Complete(_) => "CompleteTask",
            TaskCommand::Reopen(_) => "ReopenTask",
            TaskCommand::Archive(_) => "ArchiveTask",
            TaskCommand::Cancel(_) => "CancelTask",
            TaskCommand::Move(_) => "MoveTask",
            TaskCommand::FireReminder(_) => "FireReminder",
        }
    }
}

/// Create a task owned by `owner`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateTask {
    /// The new task's id, chosen by the caller.
    pub task_id: TaskId,
    /// The authenticated user.
    pub owner: UserId,
    /// Required title.
    pub title: TaskTitle,
    /// Optional description.
    pub description: Option<Description>,
    /// Optional priority.
    pub priority: Option<Priority>,
    /// Optional due date (already range-checked by `DueAt::parse`).
    pub due_at: Option<Timestamp>,
    /// Optional start date: when work may begin (range-checked like the due date).
    pub starts_at: Option<Timestamp>,
    /// The user's own estimate.
    pub estimate_minutes: Option<EffortMinutes>,
    /// Tags, deduplicated.
    pub tags: Vec<Tag>,
    /// The owner's time zone.
    pub time_zone: TimeZoneName,
    /// Where it goes in the hierarchy: `None` for a top-level task.
    pub placement: Option<Placement>,
    /// How it repeats; needs a due date.
    pub recurrence: Option<Recurrence>,
    /// Its place in an existing series (the automation runtime sets it on the next
    /// occurrence). `None` with a recurrence starts a new series with this task as
    /// occurrence 1.
    pub series: Option<SeriesLink>,
    /// When to remind the owner (checked with [`Reminder::parse_list`]; none may lie in the
    /// past).
    pub reminders: Vec<Reminder>,
    /// When the command was issued.
    pub at: Timestamp,
}

/// The deepest a task may sit: a top-level task is at level 1, its subtasks at level 2, and so
/// on down to this level. Four is what people use (project, task, step, checklist item) and
/// keeps every ancestor walk short.
pub const MAX_DEPTH: usize = 4;

/// What the command path found out about the parent a task is placed under. The aggregate
/// decides only about itself, so the facts about other tasks arrive with the command, gathered
/// by the caller from the log (the ancestors) and the read model (the subtree's height).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The new parent.
    pub parent_id: TaskId,
    /// The parent's own ancestors, nearest first (empty when the parent is at the top level).
    pub parent_ancestors: Vec<TaskId>,
    /// The parent is archived: it takes no new subtasks.
    pub parent_archived: bool,
    /// Levels in the placed task's own subtree, itself included: 1 for a task without
    /// subtasks (always 1 for a create).
    pub subtree_height: usize,
}

impl Placement {
    /// The level the placed task would sit at (the parent's level plus one).
    pub fn level(&self) -> usize {
        self.parent_ancestors.len() + 2
    }

    /// The level of the deepest task of the placed subtree.
    pub fn deepest_level(&self) -> usize {
        self.level() + self.subtree_height.max(1) - 1
    }

    /// Whether the placement puts `task` under itself: as its own parent or below one of its
    /// descendants (which would then be among the parent's ancestors).
    pub fn is_cycle_for(&self, task: TaskId) -> bool {
        self.parent_id == task || self.parent_ancestors.contains(&task)
    }
}

/// Field changes of an update. `None` leaves a field alone; for optional fields `Some(None)`
/// clears it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TaskChanges {
    /// New title.
    pub title: Option<TaskTitle>,
    /// New or cleared description.
    pub description: Option<Option<Description>>,
    /// New or cleared priority.
    pub priority: Option<Option<Priority>>,
    /// New or cleared due date.
    pub due_at: Option<Option<Timestamp>>,
    /// New or cleared start date.
    pub starts_at: Option<Option<Timestamp>>,
    /// New or cleared estimate.
    pub estimate_minutes: Option<Option<EffortMinutes>>,
    /// The complete new tag list.
    pub tags: Option<Vec<Tag>>,
    /// The complete new reminder list.
    pub reminders: Option<Vec<Reminder>>,
}

/// Change some fields of a task; only fields that really change end up in the event.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateTask {
    /// The requested changes.
    pub changes: TaskChanges,
    /// When the command was issued.
    pub at: Timestamp,
}

/// Start or resume work.
#[derive(Debug, Clone, PartialEq)]
pub struct StartTask {
    /// When work started.
    pub at: Timestamp,
}

/// Pause work.
#[derive(Debug, Clone, PartialEq)]
pub struct PauseTask {
    /// When work paused.
    pub at: Timestamp,
}

/// Complete a task. Without `actual_minutes`, the effort is derived from the tracked time.
#[derive(Debug, Clone, PartialEq)]
pub struct CompleteTask {
    /// The effort the user reports, if any.
    pub actual_minutes: Option<EffortMinutes>,
    /// The task's subtasks that are still open (neither completed nor cancelled), as the
    /// command path found them.
    pub open_children: Vec<TaskId>,
    /// Complete the open subtasks too (the automation runtime carries it out, one child at a
    /// time); without it, open subtasks refuse the completion.
    pub cascade: bool,
    /// When it was completed.
    pub at: Timestamp,
}

/// Reopen a completed task.
#[derive(Debug, Clone, PartialEq)]
pub struct ReopenTask {
    /// When it was reopened.
    pub at: Timestamp,
}

/// Archive a task; it refuses every change afterwards.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveTask {
    /// When it was archived.
    pub at: Timestamp,
}

/// Cancel a task: it will not be done. Unlike archiving it can be undone (reopen), and unlike
/// completing it records no effort, so insights and the learner leave it out.
#[derive(Debug, Clone, PartialEq)]
pub struct CancelTask {
    /// Why, in the user's words, if they said.
    pub reason: Option<CancelReason>,
    /// When it was cancelled.
    pub at: Timestamp,
}

/// Move a task under another one, or to the top level.
#[derive(Debug, Clone, PartialEq)]
pub struct MoveTask {
    /// The new place: `None` for the top level.
    pub placement: Option<Placement>,
    /// When it was moved.
    pub at: Timestamp,
}

/// Fire one pending reminder of a task: the scheduler issues it at (or after) the reminder's
/// instant, with a command id derived from the task and the instant, so several schedulers
/// fire it once.
#[derive(Debug, Clone, PartialEq)]
pub struct FireReminder {
    /// The instant the reminder was set for, as the task resolves it now.
    pub remind_at: Timestamp,
    /// When it is fired.
    pub at: Timestamp,
}
