//! The Task aggregate as a decider: [`decide`] turns a command and the current state into at
//! most one event (or a refusal), [`evolve`] folds an event into the state.
//!
//! `evolve` is total: it never panics and ignores an event that makes no sense for the state
//! (say, an update before the create), because it also folds events read back from a log that
//! other writers may have touched. `decide` is where the rules live.

use serde::{Deserialize, Serialize};

use crate::command::{CompleteTask, CreateTask, Placement, TaskChanges, TaskCommand, MAX_DEPTH};
use crate::error::TaskError;
use crate::event::{
    ReminderDue, SeriesLink, TaskArchived, TaskCancelled, TaskCompleted, TaskCreated, TaskEvent,
    TaskMoved, TaskPaused, TaskReopened, TaskStarted, TaskUpdated,
};
use crate::recurrence::{Recurrence, RecurrenceMode};
use crate::reminder::{Reminder, LATE_AFTER};
use crate::values::{
    CancelReason, Description, EffortMinutes, Priority, Tag, TaskId, TaskTitle, TimeZoneName,
    Timestamp, UserId,
};

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Created or reopened, not being worked on.
    Open,
    /// Being worked on; tracked time is running.
    InProgress,
    /// Started before, not being worked on now.
    Paused,
    /// Done.
    Completed,
    /// Put away; refuses every change.
    Archived,
    /// Dropped without being done; reopening makes it open again.
    Cancelled,
}

impl TaskStatus {
    /// Every status.
    pub const ALL: [TaskStatus; 6] = [
        TaskStatus::Open,
        TaskStatus::InProgress,
        TaskStatus::Paused,
        TaskStatus::Completed,
        TaskStatus::Archived,
        TaskStatus::Cancelled,
    ];

    /// The stable snake_case name used in JSON, SQL and query strings.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Open => "open",
            TaskStatus::InProgress => "in_progress",
            TaskStatus::Paused => "paused",
            TaskStatus::Completed => "completed",
            TaskStatus::Archived => "archived",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(input: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == input)
    }
}

/// The state of one task, as folded from its events. The read model stores exactly this (plus
/// the stream position), which is what lets `verify` compare the two field by field.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// The task.
    pub id: TaskId,
    /// Its owner.
    pub owner: UserId,
    /// Title.
    pub title: TaskTitle,
    /// Description.
    pub description: Option<Description>,
    /// Priority.
    pub priority: Option<Priority>,
    /// Due date.
    pub due_at: Option<Timestamp>,
    /// When work may begin; `None` means at once.
    pub starts_at: Option<Timestamp>,
    /// The owner's estimate.
    pub estimate_minutes: Option<EffortMinutes>,
    /// Tags.
    pub tags: Vec<Tag>,
    /// The owner's time zone at creation.
    pub time_zone: TimeZoneName,
    /// The task it is a subtask of; `None` at the top level.
    pub parent_id: Option<TaskId>,
    /// How it repeats, if it does.
    pub recurrence: Option<Recurrence>,
    /// Its series and place in it, for an occurrence of a repeating task.
    pub series: Option<SeriesLink>,
    /// When to remind the owner.
    pub reminders: Vec<Reminder>,
    /// The reminder instants already fired (a lead time that moves with the due date is a
    /// new instant, and fires again).
    pub reminders_fired: Vec<Timestamp>,
    /// Life-cycle status.
    pub status: TaskStatus,
    /// When it was created.
    pub created_at: Timestamp,
    /// When the last event happened.
    pub updated_at: Timestamp,
    /// When the running work session started; `Some` exactly while in progress.
    pub started_at: Option<Timestamp>,
    /// Seconds of work tracked in finished sessions.
    pub tracked_seconds: i64,
    /// When it was completed (while completed or archived after completion).
    pub completed_at: Option<Timestamp>,
    /// The actual effort recorded at completion.
    pub actual_minutes: Option<EffortMinutes>,
    /// When it was archived.
    pub archived_at: Option<Timestamp>,
    /// When it was cancelled (while cancelled, or archived after a cancellation).
    pub cancelled_at: Option<Timestamp>,
    /// Why it was cancelled, if the user said.
    pub cancel_reason: Option<CancelReason>,
    /// How many events it has: 1 after creation. This is the `version` of the API.
    pub version: u64,
}

/// Decides what a command means for the current state: one event, none (an update that
/// changes nothing), or a refusal.
pub fn decide(state: Option<&Task>, command: &TaskCommand) -> Result<Option<TaskEvent>, TaskError> {
    let task = match (state, command) {
        (None, TaskCommand::Create(create)) => {
            if create.recurrence.is_some() && create.due_at.is_none() {
                return Err(TaskError::RecurrenceWithoutDue);
            }
            check_reminders(&create.reminders, create.due_at, create.at)?;
            if let Some(placement) = &create.placement {
                check_placement(create.task_id, placement)?;
            }
            return Ok(Some(created(create)));
        }
        (Some(_), TaskCommand::Create(_)) => return Err(TaskError::AlreadyExists),
        (None, _) => return Err(TaskError::NotFound),
        (Some(task), _) => task,
    };
    if task.status == TaskStatus::Archived {
        return Err(TaskError::Archived);
    }
    let task_id = task.id;
    let event = match command {
        // Answered above; repeated so the match stays exhaustive without a panic path.
        TaskCommand::Create(_) => return Err(TaskError::AlreadyExists),
        TaskCommand::Update(update) => {
            if let Some(reminders) = &update.changes.reminders {
                let due = update.changes.due_at.unwrap_or(task.due_at);
                let new: Vec<Reminder> = reminders
                    .iter()
                    .filter(|r| !task.reminders.contains(r))
                    .copied()
                    .collect();
                check_reminders(&new, due, update.at)?;
            }
            return Ok(changed_fields(task, &update.changes, update.at).map(TaskEvent::Updated));
        }
        TaskCommand::FireReminder(fire) => {
            if !task.pending_reminders().any(|at| at == fire.remind_at) {
                return Err(TaskError::ReminderNotPending);
            }
            TaskEvent::ReminderDue(ReminderDue {
                task_id,
                remind_at: fire.remind_at,
                late: fire.at - fire.remind_at > LATE_AFTER,
                occurred_at: fire.at,
            })
        }
        TaskCommand::Start(start) => match task.status {
            TaskStatus::Open | TaskStatus::Paused => TaskEvent::Started(TaskStarted {
                task_id,
                occurred_at: start.at,
            }),
            TaskStatus::InProgress => return Err(TaskError::AlreadyStarted),
            TaskStatus::Completed => return Err(TaskError::AlreadyCompleted),
            TaskStatus::Archived => return Err(TaskError::Archived),
            TaskStatus::Cancelled => return Err(TaskError::Cancelled),
        },
        TaskCommand::Pause(pause) => match task.status {
            TaskStatus::InProgress => TaskEvent::Paused(TaskPaused {
                task_id,
                occurred_at: pause.at,
            }),
            TaskStatus::Cancelled => return Err(TaskError::Cancelled),
            _ => return Err(TaskError::NotStarted),
        },
        TaskCommand::Complete(complete) => match task.status {
            TaskStatus::Completed => return Err(TaskError::AlreadyCompleted),
            TaskStatus::Cancelled => return Err(TaskError::Cancelled),
            _ if !complete.cascade && !complete.open_children.is_empty() => {
                return Err(TaskError::OpenChildren(complete.open_children.clone()))
            }
            _ => TaskEvent::Completed(completed(task, complete)),
        },
        TaskCommand::Move(move_task) => {
            let parent_id = move_task.placement.as_ref().map(|p| p.parent_id);
            if parent_id == task.parent_id {
                return Ok(None);
            }
            if let Some(placement) = &move_task.placement {
                check_placement(task_id, placement)?;
            }
            TaskEvent::Moved(TaskMoved {
                task_id,
                parent_id,
                occurred_at: move_task.at,
            })
        }
        TaskCommand::Reopen(reopen) => match task.status {
            TaskStatus::Completed | TaskStatus::Cancelled => TaskEvent::Reopened(TaskReopened {
                task_id,
                occurred_at: reopen.at,
            }),
            _ => return Err(TaskError::NotCompleted),
        },
        TaskCommand::Cancel(cancel) => match task.status {
            TaskStatus::Cancelled => return Err(TaskError::Cancelled),
            TaskStatus::Completed => return Err(TaskError::CancelCompleted),
            _ => TaskEvent::Cancelled(TaskCancelled {
                task_id,
                reason: cancel.reason.clone(),
                occurred_at: cancel.at,
            }),
        },
        TaskCommand::Archive(archive) => TaskEvent::Archived(TaskArchived {
            task_id,
            occurred_at: archive.at,
        }),
    };
    Ok(Some(event))
}

/// New reminders must lie ahead of `now`, and a lead time needs a due date.
fn check_reminders(
    reminders: &[Reminder],
    due_at: Option<Timestamp>,
    now: Timestamp,
) -> Result<(), TaskError> {
    for reminder in reminders {
        match reminder.instant(due_at) {
            None => return Err(TaskError::ReminderWithoutDue),
            Some(at) if at <= now => return Err(TaskError::ReminderInPast),
            Some(_) => {}
        }
    }
    Ok(())
}

/// The hierarchy rules: no cycle, no deeper than [`MAX_DEPTH`], no archived parent.
fn check_placement(task: TaskId, placement: &Placement) -> Result<(), TaskError> {
    if placement.is_cycle_for(task) {
        return Err(TaskError::ParentCycle);
    }
    if placement.parent_archived {
        return Err(TaskError::ParentArchived);
    }
    if placement.deepest_level() > MAX_DEPTH {
        return Err(TaskError::TooDeep { max: MAX_DEPTH });
    }
    Ok(())
}

fn created(create: &CreateTask) -> TaskEvent {
    TaskEvent::Created(TaskCreated {
        task_id: create.task_id,
        owner_id: create.owner.clone(),
        title: create.title.clone(),
        description: create.description.clone(),
        priority: create.priority,
        due_at: create.due_at,
        starts_at: create.starts_at,
        estimate_minutes: create.estimate_minutes,
        tags: create.tags.clone(),
        time_zone: create.time_zone.clone(),
        parent_id: create.placement.as_ref().map(|p| p.parent_id),
        recurrence: create.recurrence.clone(),
        series: match (&create.recurrence, create.series, create.due_at) {
            (_, Some(series), _) => Some(series),
            (Some(_), None, Some(due)) => Some(SeriesLink {
                series_id: create.task_id,
                occurrence: 1,
                anchor: due,
            }),
            _ => None,
        },
        reminders: create.reminders.clone(),
        occurred_at: create.at,
    })
}

fn completed(task: &Task, complete: &CompleteTask) -> TaskCompleted {
    let running = task
        .started_at
        .map(|since| session_seconds(since, complete.at))
        .unwrap_or(0);
    let actual_minutes = complete
        .actual_minutes
        .or_else(|| EffortMinutes::from_tracked_seconds(task.tracked_seconds + running));
    TaskCompleted {
        task_id: task.id,
        actual_minutes,
        cascade: complete.cascade,
        occurred_at: complete.at,
    }
}

/// Keeps only the fields whose value differs from the current one; `None` when nothing does.
fn changed_fields(task: &Task, changes: &TaskChanges, at: Timestamp) -> Option<TaskUpdated> {
    fn differs<T: PartialEq + Clone>(new: &Option<T>, current: &T) -> Option<T> {
        new.as_ref().filter(|value| *value != current).cloned()
    }
    let update = TaskUpdated {
        task_id: task.id,
        title: differs(&changes.title, &task.title),
        description: differs(&changes.description, &task.description),
        priority: differs(&changes.priority, &task.priority),
        due_at: differs(&changes.due_at, &task.due_at),
        starts_at: differs(&changes.starts_at, &task.starts_at),
        estimate_minutes: differs(&changes.estimate_minutes, &task.estimate_minutes),
        tags: differs(&changes.tags, &task.tags),
        reminders: differs(&changes.reminders, &task.reminders),
        occurred_at: at,
    };
    let any = update.title.is_some()
        || update.description.is_some()
        || update.priority.is_some()
        || update.due_at.is_some()
        || update.starts_at.is_some()
        || update.estimate_minutes.is_some()
        || update.tags.is_some()
        || update.reminders.is_some();
    any.then_some(update)
}

/// Length of a work session in seconds; a clock that went backwards counts as zero.
fn session_seconds(since: Timestamp, until: Timestamp) -> i64 {
    (until - since).num_seconds().max(0)
}

/// Folds one event into the state. Total: an event that does not fit is ignored.
pub fn evolve(state: Option<Task>, event: &TaskEvent) -> Option<Task> {
    let mut task = match (state, event) {
        (None, TaskEvent::Created(e)) => {
            return Some(Task {
                id: e.task_id,
                owner: e.owner_id.clone(),
                title: e.title.clone(),
                description: e.description.clone(),
                priority: e.priority,
                due_at: e.due_at,
                starts_at: e.starts_at,
                estimate_minutes: e.estimate_minutes,
                tags: e.tags.clone(),
                time_zone: e.time_zone.clone(),
                parent_id: e.parent_id,
                recurrence: e.recurrence.clone(),
                series: e.series,
                reminders: e.reminders.clone(),
                reminders_fired: Vec::new(),
                status: TaskStatus::Open,
                created_at: e.occurred_at,
                updated_at: e.occurred_at,
                started_at: None,
                tracked_seconds: 0,
                completed_at: None,
                actual_minutes: None,
                archived_at: None,
                cancelled_at: None,
                cancel_reason: None,
                version: 1,
            })
        }
        (None, _) => return None,
        (Some(task), TaskEvent::Created(_)) => return Some(task),
        (Some(task), _) => task,
    };
    match event {
        TaskEvent::Created(_) => {}
        TaskEvent::Updated(e) => {
            if let Some(title) = &e.title {
                task.title = title.clone();
            }
            if let Some(description) = &e.description {
                task.description = description.clone();
            }
            if let Some(priority) = e.priority {
                task.priority = priority;
            }
            if let Some(due_at) = e.due_at {
                task.due_at = due_at;
            }
            if let Some(starts_at) = e.starts_at {
                task.starts_at = starts_at;
            }
            if let Some(estimate) = e.estimate_minutes {
                task.estimate_minutes = estimate;
            }
            if let Some(tags) = &e.tags {
                task.tags = tags.clone();
            }
            if let Some(reminders) = &e.reminders {
                task.reminders = reminders.clone();
            }
        }
        TaskEvent::Started(e) => {
            task.status = TaskStatus::InProgress;
            task.started_at = Some(e.occurred_at);
        }
        TaskEvent::Paused(e) => {
            task.close_session(e.occurred_at);
            task.status = TaskStatus::Paused;
        }
        TaskEvent::Completed(e) => {
            task.close_session(e.occurred_at);
            task.status = TaskStatus::Completed;
            task.completed_at = Some(e.occurred_at);
            task.actual_minutes = e.actual_minutes;
        }
        TaskEvent::Reopened(_) => {
            task.status = TaskStatus::Open;
            task.completed_at = None;
            task.actual_minutes = None;
            task.cancelled_at = None;
            task.cancel_reason = None;
        }
        TaskEvent::Cancelled(e) => {
            task.close_session(e.occurred_at);
            task.status = TaskStatus::Cancelled;
            task.cancelled_at = Some(e.occurred_at);
            task.cancel_reason = e.reason.clone();
        }
        TaskEvent::Moved(e) => task.parent_id = e.parent_id,
        TaskEvent::ReminderDue(e) => {
            if !task.reminders_fired.contains(&e.remind_at) {
                task.reminders_fired.push(e.remind_at);
            }
        }
        TaskEvent::Archived(e) => {
            task.close_session(e.occurred_at);
            task.status = TaskStatus::Archived;
            task.archived_at = Some(e.occurred_at);
        }
    }
    task.updated_at = event.occurred_at();
    task.version += 1;
    Some(task)
}

impl Task {
    /// The reminder instants still to fire, earliest first: none once the task is done,
    /// cancelled or archived; a lead time resolves against the current due date.
    pub fn pending_reminders(&self) -> impl Iterator<Item = Timestamp> + '_ {
        let active = matches!(
            self.status,
            TaskStatus::Open | TaskStatus::InProgress | TaskStatus::Paused
        );
        let mut instants: Vec<Timestamp> = self
            .reminders
            .iter()
            .filter(|_| active)
            .filter_map(|r| r.instant(self.due_at))
            .filter(|at| !self.reminders_fired.contains(at))
            .collect();
        instants.sort();
        instants.dedup();
        instants.into_iter()
    }

    /// The next reminder to fire, if any: what the scheduler's queue is ordered by.
    pub fn next_reminder(&self) -> Option<Timestamp> {
        self.pending_reminders().next()
    }

    /// Ends the running work session, if any, adding its length to the tracked time.
    fn close_session(&mut self, at: Timestamp) {
        if let Some(since) = self.started_at.take() {
            self.tracked_seconds = self
                .tracked_seconds
                .saturating_add(session_seconds(since, at));
        }
    }

    /// Tracked seconds including the running session, as of `now`.
    pub fn tracked_seconds_at(&self, now: Timestamp) -> i64 {
        self.tracked_seconds
            + self
                .started_at
                .map(|since| session_seconds(since, now))
                .unwrap_or(0)
    }
}

/// The next task of a series: its place, due date and start date. The automation runtime
/// creates it when an occurrence is completed or cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextOccurrence {
    /// The new task's place in the series.
    pub series: SeriesLink,
    /// When it is due.
    pub due_at: Timestamp,
    /// When it may begin: as far before its due date as the finished occurrence's start date
    /// was before its own.
    pub starts_at: Option<Timestamp>,
}

impl Task {
    /// The occurrence that follows this one when it is finished (completed or cancelled) at
    /// `done_at`, or `None` when the task does not repeat or its series has ended (COUNT or
    /// UNTIL reached).
    ///
    /// - `fixed`: the first occurrence of the rule after both this one's due date and
    ///   `done_at`: occurrences missed while the task stayed open are skipped rather than
    ///   created overdue, and COUNT counts the calendar from the anchor.
    /// - `after_completion`: one interval after `done_at`, at this occurrence's local time of
    ///   day; COUNT limits the number of occurrences.
    ///
    /// Expansion is in the task's time zone, so 09:00 stays 09:00 across a DST change.
    pub fn next_occurrence(&self, done_at: Timestamp) -> Option<NextOccurrence> {
        let recurrence = self.recurrence.as_ref()?;
        let series = self.series?;
        let due = self.due_at?;
        let zone = self.time_zone.tz();
        let next_due = match recurrence.mode {
            RecurrenceMode::Fixed => recurrence.first_after(series.anchor, due.max(done_at), zone),
            RecurrenceMode::AfterCompletion => {
                recurrence.next_due(series.anchor, due, done_at, series.occurrence, zone)
            }
        }?;
        Some(NextOccurrence {
            series: SeriesLink {
                occurrence: series.occurrence.checked_add(1)?,
                ..series
            },
            due_at: next_due,
            starts_at: self.starts_at.map(|starts| next_due - (due - starts)),
        })
    }
}

/// Rebuilds a task from its events, oldest first.
pub fn replay<'a>(events: impl IntoIterator<Item = &'a TaskEvent>) -> Option<Task> {
    events.into_iter().fold(None, evolve)
}
