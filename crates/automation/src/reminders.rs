//! [`ReminderScheduler`]: fires each pending reminder at its time, as a `ReminderDue` event.
//!
//! # The queue
//! The read model keeps, per unfinished task, the earliest reminder instant still to fire
//! (`tasks.next_reminder_at`, partially indexed). The scheduler reads a short window of it
//! ([`SchedulerOptions::lookahead`] ahead, at most [`SchedulerOptions::batch`] rows) every
//! [`SchedulerOptions::poll`], and arms one timer per reminder in the window. So memory holds
//! one window, whatever the number pending further ahead (100,000 or ten million), and the
//! process wakes once per poll plus once per reminder fired.
//!
//! # Exactly once
//! A reminder is fired by `FireReminder`, through the command path, with a command id derived
//! from the task and the instant. The aggregate refuses an instant already fired (or no longer
//! pending: the task was completed, the due date moved a lead time), and JetStream drops a
//! repeat inside its duplicate window, so several schedulers, or one that restarts, fire each
//! reminder once. A scheduler that was down fires what it missed when it comes back; the
//! event says `late: true` when it fires more than five seconds after its time.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::{FireReminder, TaskCommand, TaskError, TaskId, UserId};
use eventstore::CommandMeta;
use projections::queries;
use telemetry::metrics::AutomationOutcomeLabels;
use telemetry::Metrics;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::context::Context;
use crate::error::already_settled;

/// The name in metrics and logs.
pub const NAME: &str = "reminders";

/// Namespace of the command ids of fired reminders, fixed forever.
const REMINDER_NAMESPACE: Uuid = Uuid::from_u128(0x2f6a_9c31_7d08_4e55_b6c2_81a4_f0e3_5d17);

/// Tuning of the scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// How far ahead each read of the queue looks.
    pub lookahead: Duration,
    /// How often the queue is read.
    pub poll: Duration,
    /// Most reminders read (and armed) at once.
    pub batch: i64,
    /// Reminders being fired at once.
    pub concurrency: usize,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            lookahead: Duration::from_secs(2),
            poll: Duration::from_millis(250),
            batch: 2_000,
            concurrency: 256,
        }
    }
}

/// Fires due reminders; part of the `automation` role.
#[derive(Debug, Clone)]
pub struct ReminderScheduler {
    context: Context,
    metrics: Arc<Metrics>,
    options: SchedulerOptions,
}

/// One reminder in the window.
type Armed = (TaskId, DateTime<Utc>);

impl ReminderScheduler {
    /// A scheduler over the context's read model and command path.
    pub fn new(context: Context, metrics: Arc<Metrics>, options: SchedulerOptions) -> Self {
        Self {
            context,
            metrics,
            options,
        }
    }

    /// The command id of firing `task`'s reminder at `at`: the same in every process.
    pub fn command_id(task: TaskId, at: DateTime<Utc>) -> Uuid {
        Uuid::new_v5(
            &REMINDER_NAMESPACE,
            format!("{task}\n{}", at.to_rfc3339()).as_bytes(),
        )
    }

    /// Runs until `shutdown`; a failing read model or event store is logged and retried.
    pub async fn run(self, shutdown: CancellationToken) {
        // Armed or fired and not yet gone from the queue (the projection applies the
        // `ReminderDue` a moment later): not armed twice.
        let mut known: HashMap<Armed, tokio::time::Instant> = HashMap::new();
        let mut firing: JoinSet<(Armed, bool)> = JoinSet::new();
        let mut tick = tokio::time::interval(self.options.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(joined) = firing.join_next(), if !firing.is_empty() => {
                    // A reminder that failed to fire is armed again on the next read.
                    if let Ok((armed, false)) = joined {
                        known.remove(&armed);
                    }
                }
                _ = tick.tick() => {
                    let until = Utc::now()
                        + chrono::Duration::from_std(self.options.lookahead).unwrap_or_default();
                    let due = match queries::due_reminders(
                        self.context.reads.primary(),
                        until,
                        self.options.batch,
                    )
                    .await
                    {
                        Ok(due) => due,
                        Err(error) => {
                            tracing::warn!(%error, "reading the reminder queue failed; trying again");
                            continue;
                        }
                    };
                    let in_window: HashSet<Armed> = due.iter().map(|(t, _, at)| (*t, *at)).collect();
                    // Forget what left the queue (fired and projected, or moved), keeping a
                    // fired entry a while in case the projection is slow.
                    let now = tokio::time::Instant::now();
                    known.retain(|armed, since| {
                        in_window.contains(armed) || now.duration_since(*since) < Duration::from_secs(30)
                    });
                    for (task, owner, at) in due {
                        if firing.len() >= self.options.concurrency {
                            break;
                        }
                        if known.contains_key(&(task, at)) {
                            continue;
                        }
                        known.insert((task, at), now);
                        let this = self.clone();
                        firing.spawn(async move { ((task, at), this.fire_at(task, owner, at).await) });
                    }
                }
            }
        }
        firing.abort_all();
        tracing::info!("reminder scheduler stopped");
    }

    /// Waits until `at`, then fires the reminder; whether it is settled (fired, or no longer
    /// pending).
    async fn fire_at(&self, task: TaskId, owner: UserId, at: DateTime<Utc>) -> bool {
        if let Ok(wait) = (at - Utc::now()).to_std() {
            tokio::time::sleep(wait).await;
        }
        let command = TaskCommand::FireReminder(FireReminder {
            remind_at: at,
            at: commands::now(),
        });
        let meta = CommandMeta {
            command_id: Self::command_id(task, at).to_string(),
            correlation_id: format!("reminder:{task}"),
            traceparent: Some(telemetry::trace_context::traceparent_for_event(None)),
            client_supplied_id: true,
        };
        let outcome = match self
            .context
            .commands
            .execute(&owner, task, &command, None, &meta)
            .await
        {
            Ok(_) => "done",
            Err(error) if already_settled(&error, &[|e| *e == TaskError::ReminderNotPending]) => {
                "not_pending"
            }
            Err(error) => {
                tracing::warn!(%error, task_id = %task, remind_at = %at, "firing a reminder failed; it stays queued");
                "retried"
            }
        };
        self.metrics
            .automation_reactions
            .get_or_create(&AutomationOutcomeLabels {
                automation: NAME,
                outcome,
            })
            .inc();
        outcome != "retried"
    }
}
