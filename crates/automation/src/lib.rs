//! The process-manager runtime of taskmaster (role `automation`): automations that react to
//! events by issuing commands, the way a person would, through the same command path as the
//! API ([`commands::CommandPath`]), so every rule of the aggregate holds for them too.
//!
//! # Exactly once
//! An automation never remembers what it did. Everything it issues is named by the event that
//! triggered it: command ids are UUID v5 of the automation, the triggering event's command id
//! and a step name ([`Context::meta`]), and tasks it creates get ids derived the same way. A
//! redelivery, a restart, or two runtimes handling the same event therefore issue the same
//! command twice at most, and the second one is answered by JetStream's duplicate window
//! (same `Nats-Msg-Id`) or, after it, refused by the aggregate (a create of an id that exists,
//! a completion of a completed task), which the automation counts as done.
//!
//! # Delivery
//! The runtime reads the task stream through one durable pull consumer (`automation`, scoped
//! by the prefix; its acknowledged position is the runtime's durable position), created to
//! start at the stream's end the first time it runs. Any number of runtimes may share it. An
//! event is acknowledged once every automation that wants it has handled it. A failure is
//! retried with backoff (1 s doubling to 60 s, by JetStream's redelivery); a refusal that no
//! retry can change, or the tenth failed attempt, is recorded as a dead letter (table
//! `automation_dead_letters`, `taskmaster automation dead-letters list|retry|discard`) and the
//! event is acknowledged, so one bad event never holds up the others.
//!
//! # Tracing and metrics
//! Each reaction is a span that continues the trace of the triggering event (its
//! `traceparent`), and the commands it issues carry that trace on, so a completion, the next
//! occurrence it caused and that occurrence's projection are one trace.
//! `taskmaster_automation_reactions{automation,outcome}` counts reactions,
//! `taskmaster_automation_lag_seconds{automation}` measures from the event's append to the end
//! of its reaction, and `taskmaster_consumer_lag_events{consumer="automation"}` what is waiting.
//!
//! # Writing an automation
//! Implement [`Automation`]: a stable [`Automation::name`] (it is part of every id it
//! derives: never rename one), a cheap [`Automation::wants`] filter, and
//! [`Automation::handle`], which reads what it needs (the triggering event, the log, the
//! caught-up read model) and issues commands with ids from [`Context::meta`] and
//! [`Context::derived_task_id`]. Treat "already done" refusals as success. Add it to
//! [`automations`]. [`recurrence::NextOccurrence`] and [`cascade::CascadeCompletion`] are the
//! two worked examples.
//!
//! # Layout
//! - [`runtime`]: the consumer loop, retries, dead letters, metrics and spans.
//! - [`context`]: what an automation gets: the command path, the read model, derived ids.
//! - [`recurrence`]: the next occurrence of a repeating task, with its subtasks.
//! - [`cascade`]: completing the open subtasks of a parent completed with `cascade`.
//! - [`reminders`]: the scheduler that fires reminders at their time (timer-driven, not an
//!   event reaction, but the same command path and the same exactly-once rules).
//! - [`dead_letters`]: the events an automation gave up on.
//! - [`error`]: the crate's one error enum.

pub mod cascade;
pub mod context;
pub mod dead_letters;
pub mod error;
pub mod recurrence;
pub mod reminders;
pub mod runtime;

use std::sync::Arc;

use eventstore::RecordedEvent;
use futures::future::BoxFuture;

pub use context::Context;
pub use error::AutomationError;
pub use runtime::{Runtime, RuntimeOptions, CONSUMER};

/// A reaction to events: see the crate documentation for the rules one must follow.
pub trait Automation: Send + Sync + std::fmt::Debug + 'static {
    /// The stable name: a metric label, the dead-letter key, and part of every id the
    /// automation derives. Never change it.
    fn name(&self) -> &'static str;

    /// Whether the event concerns this automation; cheap, no I/O.
    fn wants(&self, event: &RecordedEvent) -> bool;

    /// Reacts to the event. Must be idempotent: it may run more than once for one event.
    fn handle<'a>(
        &'a self,
        context: &'a Context,
        event: &'a RecordedEvent,
    ) -> BoxFuture<'a, Result<(), AutomationError>>;
}

/// Every automation the runtime runs.
pub fn automations() -> Vec<Arc<dyn Automation>> {
    vec![
        Arc::new(recurrence::NextOccurrence),
        Arc::new(cascade::CascadeCompletion),
    ]
}
