//! Training examples from the event log.
//!
//! [`History`] folds events in log order with the domain's own `evolve` (the code the
//! projector runs), and turns facts into examples as they happen:
//! - a `TaskCompleted` with an actual effort is an **effort example**: the task as it stood,
//!   its owner's history *before* this completion (so nothing leaks from the future), and the
//!   effort it took;
//! - a `TaskCreated` with a priority is a **priority example**: the text and due date the owner
//!   saw, and the priority they chose.
//!
//! Replay from the start and incremental learning both feed events through
//! [`History::observe`], one at a time, so they cannot disagree.

use std::collections::HashMap;

use domain::{Priority, Task, TaskEvent, TaskId, UserId};
use eventstore::RecordedEvent;

use crate::features::{
    feature_row, priority_row, text_vector, OwnerHistory, SparseVector, TaskInput,
};

/// A completed task and what it took.
#[derive(Debug, Clone)]
pub struct EffortExample {
    /// Stream sequence of the completion.
    pub position: u64,
    /// The owner.
    pub owner: UserId,
    /// Its text vector (for the owner's nearest neighbours).
    pub text: SparseVector,
    /// Its feature row.
    pub row: SparseVector,
    /// The effort it took, in minutes.
    pub actual_minutes: u32,
}

/// A created task and the priority its owner gave it.
#[derive(Debug, Clone)]
pub struct PriorityExample {
    /// Stream sequence of the creation.
    pub position: u64,
    /// Its feature row.
    pub row: SparseVector,
    /// The priority chosen.
    pub priority: Priority,
}

/// What one event taught.
#[derive(Debug)]
pub enum Observed {
    /// Nothing to learn from.
    Nothing,
    /// An effort example.
    Effort(EffortExample),
    /// A priority example.
    Priority(PriorityExample),
}

/// The state of the log as far as it has been read: every task and every owner's history.
#[derive(Debug, Default)]
pub struct History {
    tasks: HashMap<TaskId, Task>,
    owners: HashMap<UserId, OwnerHistory>,
    position: u64,
}

impl History {
    /// The stream sequence of the last event observed.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The owners' histories, as the model needs them at prediction time.
    pub fn owners(&self) -> &HashMap<UserId, OwnerHistory> {
        &self.owners
    }

    /// Folds one event and returns the example it makes, if any.
    pub fn observe(&mut self, recorded: &RecordedEvent) -> Observed {
        self.position = self.position.max(recorded.position);
        let before = self.tasks.remove(&recorded.task_id);
        let after = domain::evolve(before, &recorded.event);
        let observed = match (&recorded.event, &after) {
            (TaskEvent::Completed(completed), Some(task)) => match completed.actual_minutes {
                Some(actual) => {
                    let input = TaskInput::from(task);
                    let owner = self.owners.entry(task.owner.clone()).or_default();
                    let text = text_vector(&input);
                    let row = feature_row(&input, &text, owner);
                    owner.record(actual.get(), input.estimate_minutes);
                    Observed::Effort(EffortExample {
                        position: recorded.position,
                        owner: task.owner.clone(),
                        text,
                        row,
                        actual_minutes: actual.get(),
                    })
                }
                None => Observed::Nothing,
            },
            (TaskEvent::Created(created), Some(task)) => match created.priority {
                Some(priority) => {
                    let input = TaskInput::from(task);
                    Observed::Priority(PriorityExample {
                        position: recorded.position,
                        row: priority_row(&input, &text_vector(&input)),
                        priority,
                    })
                }
                None => Observed::Nothing,
            },
            _ => Observed::Nothing,
        };
        if let Some(task) = after {
            // Archived tasks take no further events: drop them to keep memory bounded.
            if task.archived_at.is_none() {
                self.tasks.insert(recorded.task_id, task);
            }
        }
        observed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use domain::{EffortMinutes, FromTrusted, TaskCompleted, TaskCreated, TaskTitle, TimeZoneName};

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    fn recorded(position: u64, owner: &str, task: TaskId, event: TaskEvent) -> RecordedEvent {
        RecordedEvent {
            position,
            owner: UserId::from_trusted(owner.into()),
            task_id: task,
            event_type: event.event_type().into(),
            event_version: 1,
            command_id: None,
            correlation_id: None,
            traceparent: None,
            recorded_at: at(position as i64),
            event,
        }
    }

    fn created(
        task: TaskId,
        owner: &str,
        estimate: Option<u32>,
        priority: Option<Priority>,
    ) -> TaskEvent {
        TaskEvent::Created(TaskCreated {
            task_id: task,
            owner_id: UserId::from_trusted(owner.into()),
            title: TaskTitle::from_trusted("Fix the login bug".into()),
            description: None,
            priority,
            due_at: None,
            starts_at: None,
            estimate_minutes: estimate.map(EffortMinutes::from_trusted),
            tags: vec![],
            time_zone: TimeZoneName::from_trusted("UTC".into()),
            occurred_at: at(0),
            parent_id: None,
            recurrence: None,
            series: None,
            reminders: Vec::new(),
        })
    }

    fn completed(task: TaskId, actual: Option<u32>) -> TaskEvent {
        TaskEvent::Completed(TaskCompleted {
            task_id: task,
            actual_minutes: actual.map(EffortMinutes::from_trusted),
            occurred_at: at(60),
            cascade: false,
        })
    }

    #[test]
    fn a_completion_with_an_effort_is_an_example_with_the_history_before_it() {
        // given two completed tasks of one owner, each estimated 30 and taking 60
        let mut history = History::default();
        let (a, b) = (
            TaskId(uuid::Uuid::from_u128(1)),
            TaskId(uuid::Uuid::from_u128(2)),
        );
        let mut examples = vec![];
        for (position, event, task) in [
            (1, created(a, "ann", Some(30), Some(Priority::High)), a),
            (2, completed(a, Some(60)), a),
            (3, created(b, "ann", Some(30), None), b),
            (4, completed(b, Some(60)), b),
        ] {
            examples.push(history.observe(&recorded(position, "ann", task, event)));
        }
        // then the first creation is a priority example, and each completion an effort example
        assert!(matches!(&examples[0], Observed::Priority(p) if p.priority == Priority::High));
        let Observed::Effort(first) = &examples[1] else {
            panic!("{:?}", examples[1])
        };
        let Observed::Effort(second) = &examples[3] else {
            panic!("{:?}", examples[3])
        };
        assert_eq!(first.actual_minutes, 60);
        let bias = |row: &SparseVector| {
            row.iter()
                .find(|(i, _)| *i == crate::features::dense::OWNER_BIAS)
                .map_or(0.0, |(_, v)| v)
        };
        // the first completion saw no history; the second saw the first's overrun
        assert_eq!(bias(&first.row), 0.0);
        assert!(bias(&second.row) > 0.0);
        assert_eq!(
            history.owners()[&UserId::from_trusted("ann".into())].completions,
            2
        );
        assert_eq!(history.position(), 4);
    }

    #[test]
    fn a_cancelled_task_is_no_example_and_leaves_the_owners_history_alone() {
        // given a task that was started, then cancelled with tracked time on it
        let mut history = History::default();
        let task = TaskId(uuid::Uuid::from_u128(8));
        history.observe(&recorded(
            1,
            "cy",
            task,
            created(task, "cy", Some(30), None),
        ));
        let cancelled = TaskEvent::Cancelled(domain::TaskCancelled {
            task_id: task,
            reason: None,
            occurred_at: at(600),
        });
        // when the cancellation is observed
        let observed = history.observe(&recorded(2, "cy", task, cancelled));
        // then it teaches nothing: no effort example, no completion in the owner's history
        assert!(matches!(observed, Observed::Nothing));
        assert!(history
            .owners()
            .get(&UserId::from_trusted("cy".into()))
            .is_none_or(|owner| owner.completions == 0));
    }

    #[test]
    fn a_completion_without_an_effort_teaches_nothing() {
        let mut history = History::default();
        let task = TaskId(uuid::Uuid::from_u128(7));
        history.observe(&recorded(1, "bo", task, created(task, "bo", None, None)));
        let observed = history.observe(&recorded(2, "bo", task, completed(task, None)));
        assert!(matches!(observed, Observed::Nothing));
    }
}
