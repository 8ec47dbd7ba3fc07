//! [`Context`]: what an automation works with, and the ids it derives.

use std::sync::Arc;
use std::time::Duration;

use commands::CommandPath;
use domain::{Task, TaskId};
use eventstore::{CommandMeta, EventStore, RecordedEvent};
use projections::ReadSource;
use uuid::Uuid;

use crate::error::AutomationError;

/// Namespace of every id an automation derives, fixed forever.
const AUTOMATION_NAMESPACE: Uuid = Uuid::from_u128(0x8b7e_1f04_5a2c_4d9e_a3b6_0c7d_2e91_f456);

/// The command path, the log and the read model, shared by every reaction.
#[derive(Debug, Clone)]
pub struct Context {
    /// The path every command goes through.
    pub commands: CommandPath,
    /// The read model, for what the log cannot answer (a task's subtasks).
    pub reads: ReadSource,
    /// Longest wait for the primary read model to reach a triggering event.
    pub read_wait: Duration,
}

impl Context {
    /// A context over the given command path and read model.
    pub fn new(commands: CommandPath, reads: ReadSource, read_wait: Duration) -> Self {
        Self {
            commands,
            reads,
            read_wait,
        }
    }

    /// The event store behind the command path.
    pub fn store(&self) -> &Arc<EventStore> {
        self.commands.store()
    }

    /// What names the triggering event: its command id (one command makes at most one
    /// event), else its stream position.
    fn trigger(event: &RecordedEvent) -> String {
        event
            .command_id
            .clone()
            .unwrap_or_else(|| format!("position:{}", event.position))
    }

    /// A UUID derived from the automation, the triggering event and a step name: the same
    /// inputs give the same id on every delivery, in every process.
    pub fn derived_id(automation: &str, event: &RecordedEvent, step: &str) -> Uuid {
        let key = format!("{automation}\n{}\n{step}", Self::trigger(event));
        Uuid::new_v5(&AUTOMATION_NAMESPACE, key.as_bytes())
    }

    /// A task id derived from a stable key alone (not from an event), for tasks that several
    /// events might try to create and that must exist once: the next occurrence of a series
    /// is named by the series and its number, whichever completion reached it.
    pub fn derived_task_id(automation: &str, key: &str) -> TaskId {
        TaskId(Uuid::new_v5(
            &AUTOMATION_NAMESPACE,
            format!("{automation}\ntask\n{key}").as_bytes(),
        ))
    }

    /// The metadata of a command issued in reaction to `event`: a derived command id (so
    /// JetStream drops a repeat inside its duplicate window), the event's correlation id, and
    /// the trace context of the current reaction span, which continues the event's trace.
    pub fn meta(&self, automation: &str, event: &RecordedEvent, step: &str) -> CommandMeta {
        let trigger = Self::trigger(event);
        CommandMeta {
            command_id: Self::derived_id(automation, event, step).to_string(),
            correlation_id: event.correlation_id.clone().unwrap_or(trigger),
            traceparent: Some(telemetry::trace_context::traceparent_for_event(
                event.traceparent.as_deref(),
            )),
            client_supplied_id: true,
        }
    }

    /// Waits until the primary read model has applied `event`, so what it says about the
    /// event's task (its subtasks) includes the event.
    pub async fn caught_up(&self, event: &RecordedEvent) -> Result<(), AutomationError> {
        self.reads
            .wait_for_primary(event.position, self.read_wait)
            .await
            .map(|_| ())
            .map_err(|behind| AutomationError::ReadModelBehind {
                wanted: event.position,
                current: behind.current,
            })
    }

    /// The event's task as it stood right after the event: its history folded up to the
    /// event's position, so a reaction sees what the event saw even when it runs late (after
    /// a reopen, an edit). `None` when the task is gone (erased).
    pub async fn task_at(&self, event: &RecordedEvent) -> Result<Option<Task>, AutomationError> {
        let history = self.store().history(&event.owner, event.task_id).await?;
        Ok(history
            .iter()
            .take_while(|recorded| recorded.position <= event.position)
            .map(|recorded| &recorded.event)
            .fold(None, domain::evolve))
    }
}
