//! [`NextOccurrence`]: when an occurrence of a repeating task is completed or cancelled, the
//! next one is created, with its subtasks.
//!
//! The next occurrence's id is derived from the series and its number, not from the event:
//! completing occurrence 3, reopening it and completing it again reaches occurrence 4 twice,
//! and the second create is refused as "already exists", so a series never forks. Its
//! subtasks' ids are derived from the new occurrence and the subtask copied, so a crash in
//! the middle of copying resumes where it stopped.

use domain::{CreateTask, Reminder, TaskCommand, TaskError, TaskEvent, TaskId, TaskStatus};
use eventstore::RecordedEvent;
use futures::future::BoxFuture;
use projections::queries;
use std::collections::HashMap;

use crate::context::Context;
use crate::error::{already_settled, AutomationError};
use crate::Automation;

/// Creates the next occurrence of a series.
#[derive(Debug, Clone, Copy, Default)]
pub struct NextOccurrence;

/// This automation's name.
pub const NAME: &str = "recurrence";

impl NextOccurrence {
    /// The id of occurrence `occurrence` of the series `series`.
    pub fn occurrence_id(series: TaskId, occurrence: u32) -> TaskId {
        Context::derived_task_id(NAME, &format!("{series}\n{occurrence}"))
    }

    async fn react(&self, context: &Context, event: &RecordedEvent) -> Result<(), AutomationError> {
        let done_at = match &event.event {
            TaskEvent::Completed(e) => e.occurred_at,
            TaskEvent::Cancelled(e) => e.occurred_at,
            _ => return Ok(()),
        };
        let Some(task) = context.task_at(event).await? else {
            return Ok(());
        };
        if !matches!(task.status, TaskStatus::Completed | TaskStatus::Cancelled) {
            return Ok(());
        }
        let (Some(recurrence), Some(next)) = (&task.recurrence, task.next_occurrence(done_at))
        else {
            if task.recurrence.is_some() {
                tracing::info!(task_id = %task.id, "the series has ended: no next occurrence");
            }
            return Ok(());
        };
        let owner = &event.owner;
        let next_id = Self::occurrence_id(next.series.series_id, next.series.occurrence);
        // The occurrence stays where the finished one was in the hierarchy, as long as that
        // parent still takes subtasks; otherwise it goes to the top level.
        let placement = match task.parent_id {
            Some(parent) => context.commands.placement(owner, parent, None).await.ok(),
            None => None,
        };
        let create = TaskCommand::Create(CreateTask {
            task_id: next_id,
            owner: owner.clone(),
            title: task.title.clone(),
            description: task.description.clone(),
            priority: task.priority,
            due_at: Some(next.due_at),
            starts_at: next.starts_at,
            estimate_minutes: task.estimate_minutes,
            tags: task.tags.clone(),
            time_zone: task.time_zone.clone(),
            placement: placement.filter(|p| !p.parent_archived),
            recurrence: Some(recurrence.clone()),
            series: Some(next.series),
            // Lead times come along as they are; instants keep their distance to the due date.
            reminders: task
                .reminders
                .iter()
                .map(|r| match *r {
                    Reminder::At(at) => {
                        Reminder::At(at + (next.due_at - task.due_at.unwrap_or(at)))
                    }
                    lead => lead,
                })
                .filter(|r| r.instant(Some(next.due_at)).is_some_and(|at| at > done_at))
                .collect(),
            at: done_at,
        });
        let meta = context.meta(NAME, event, "occurrence");
        create_once(context, owner, next_id, &create, &meta).await?;

        // The subtasks come along, as they stood when the occurrence was finished.
        context.caught_up(event).await?;
        let subtasks = queries::descendants(context.reads.primary(), owner, task.id).await?;
        let mut copies: HashMap<TaskId, TaskId> = HashMap::from([(task.id, next_id)]);
        for record in subtasks {
            let child = record.task;
            let Some(new_parent) = child.parent_id.and_then(|p| copies.get(&p).copied()) else {
                continue;
            };
            let copy_id = Context::derived_task_id(NAME, &format!("{next_id}\n{}", child.id));
            copies.insert(child.id, copy_id);
            let placement = context.commands.placement(owner, new_parent, None).await?;
            let create = TaskCommand::Create(CreateTask {
                task_id: copy_id,
                owner: owner.clone(),
                title: child.title,
                description: child.description,
                priority: child.priority,
                due_at: child
                    .due_at
                    .map(|due| due + (next.due_at - task.due_at.unwrap_or(due))),
                starts_at: child
                    .starts_at
                    .map(|starts| starts + (next.due_at - task.due_at.unwrap_or(starts))),
                estimate_minutes: child.estimate_minutes,
                tags: child.tags,
                time_zone: child.time_zone,
                placement: Some(placement),
                recurrence: None,
                series: None,
                reminders: Vec::new(),
                at: done_at,
            });
            let meta = context.meta(NAME, event, &format!("subtask {}", child.id));
            create_once(context, owner, copy_id, &create, &meta).await?;
        }
        tracing::info!(
            task_id = %task.id,
            next = %next_id,
            occurrence = next.series.occurrence,
            due_at = %next.due_at,
            "created the next occurrence"
        );
        Ok(())
    }
}

/// Creates a task unless it exists already (an earlier delivery made it).
async fn create_once(
    context: &Context,
    owner: &domain::UserId,
    id: TaskId,
    create: &TaskCommand,
    meta: &eventstore::CommandMeta,
) -> Result<(), AutomationError> {
    match context
        .commands
        .execute(owner, id, create, None, meta)
        .await
    {
        Ok(_) => Ok(()),
        Err(error) if already_settled(&error, &[|e| *e == TaskError::AlreadyExists]) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

impl Automation for NextOccurrence {
    fn name(&self) -> &'static str {
        NAME
    }

    fn wants(&self, event: &RecordedEvent) -> bool {
        matches!(
            event.event,
            TaskEvent::Completed(_) | TaskEvent::Cancelled(_)
        )
    }

    fn handle<'a>(
        &'a self,
        context: &'a Context,
        event: &'a RecordedEvent,
    ) -> BoxFuture<'a, Result<(), AutomationError>> {
        Box::pin(self.react(context, event))
    }
}
