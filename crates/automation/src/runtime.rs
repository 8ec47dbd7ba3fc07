//! [`Runtime`]: the durable consumer, the reactions, their retries and dead letters.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{AckKind, Message};
use eventstore::envelope::RawEvent;
use eventstore::{Naming, RecordedEvent, StoreError};
use futures::StreamExt;
use telemetry::metrics::{AutomationLabels, AutomationOutcomeLabels, ConsumerLabels};
use telemetry::Metrics;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::context::Context;
use crate::dead_letters;
use crate::error::AutomationError;
use crate::Automation;

/// The durable consumer's name before scoping: `automation`, or `<prefix>_automation`.
pub const CONSUMER: &str = "automation";

/// How often the consumer's lag is sampled for `taskmaster_consumer_lag_events`.
const LAG_SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Tuning of the runtime.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Events handled at once. Reactions to different events run concurrently; their
    /// commands are ordered per task by the aggregate's optimistic concurrency.
    pub concurrency: usize,
    /// Deliveries of one event before its failing reactions become dead letters.
    pub max_attempts: u32,
    /// Wait before the first redelivery of a failed event; doubled each time.
    pub retry_base: Duration,
    /// Longest wait between redeliveries.
    pub retry_max: Duration,
    /// How long JetStream waits for an ack before redelivering (a runtime that died).
    pub ack_wait: Duration,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            concurrency: 64,
            max_attempts: 10,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            ack_wait: Duration::from_secs(60),
        }
    }
}

impl RuntimeOptions {
    /// The wait before delivery `attempt + 1` of an event that failed `attempt` times.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
        self.retry_base.saturating_mul(factor).min(self.retry_max)
    }
}

/// Runs the automations over the task stream.
#[derive(Debug, Clone)]
pub struct Runtime {
    jetstream: async_nats::jetstream::Context,
    naming: Naming,
    shared: Arc<Shared>,
}

/// What every reaction task shares.
#[derive(Debug)]
struct Shared {
    context: Context,
    automations: Vec<Arc<dyn Automation>>,
    metrics: Arc<Metrics>,
    options: RuntimeOptions,
}

/// How one event's handling ended.
enum Settled {
    /// Every reaction went through (or had nothing to do).
    Done,
    /// A reaction failed in a way a retry can change: redeliver after this long.
    Retry(Duration),
    /// A reaction can never go through: recorded as a dead letter.
    DeadLettered,
}

impl Runtime {
    /// A runtime for `automations` over the stream named by `naming`.
    pub fn new(
        jetstream: async_nats::jetstream::Context,
        naming: Naming,
        context: Context,
        automations: Vec<Arc<dyn Automation>>,
        metrics: Arc<Metrics>,
        options: RuntimeOptions,
    ) -> Self {
        Self {
            jetstream,
            naming,
            shared: Arc::new(Shared {
                context,
                automations,
                metrics,
                options,
            }),
        }
    }

    /// The durable consumer's name under `naming`'s prefix.
    pub fn consumer_name(naming: &Naming) -> String {
        naming.scoped(CONSUMER)
    }

    /// Creates the durable consumer if it does not exist yet, so the runtime's position
    /// starts here even if no runtime has run (`dev` and `serve` call it at start).
    pub async fn ensure_consumer(&self) -> Result<PullConsumer, AutomationError> {
        let stream = self
            .jetstream
            .get_stream(self.naming.stream())
            .await
            .map_err(|e| AutomationError::Stream(e.to_string()))?;
        let name = Self::consumer_name(&self.naming);
        stream
            .get_or_create_consumer(
                &name,
                pull::Config {
                    durable_name: Some(name.clone()),
                    description: Some(
                        "automation runtimes: react to events with commands (recurrence, cascades)"
                            .into(),
                    ),
                    deliver_policy: DeliverPolicy::New,
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: self.shared.options.ack_wait,
                    max_ack_pending: (self.shared.options.concurrency * 4) as i64,
                    filter_subject: self.naming.all_events(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| AutomationError::Stream(e.to_string()))
    }

    /// Runs until `shutdown`. Stream failures never end it: they are logged and the consumer
    /// is opened again with backoff.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut reacting: JoinSet<()> = JoinSet::new();
        let mut backoff = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            match self.consume(&shutdown, &mut reacting).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "automation runtime interrupted; reopening its consumer");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        let finishing = async { while reacting.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(5), finishing)
            .await
            .is_err()
        {
            // Aborted on drop; their events are redelivered after the ack wait, and the
            // derived ids make the repeat harmless.
            tracing::info!("automation reactions still running at shutdown were abandoned");
        }
        tracing::info!("automation runtime stopped");
    }

    async fn consume(
        &self,
        shutdown: &CancellationToken,
        reacting: &mut JoinSet<()>,
    ) -> Result<(), AutomationError> {
        let consumer = self.ensure_consumer().await?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| AutomationError::Stream(e.to_string()))?;
        tracing::info!(consumer = %Self::consumer_name(&self.naming), "automation runtime consuming");
        let mut lag_tick = tokio::time::interval(LAG_SAMPLE_EVERY);
        lag_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let room = reacting.len() < self.shared.options.concurrency;
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                Some(_) = reacting.join_next(), if !reacting.is_empty() => {}
                _ = lag_tick.tick() => {
                    if let Ok(info) = consumer.get_info().await {
                        self.shared
                            .metrics
                            .consumer_lag
                            .get_or_create(&ConsumerLabels { consumer: CONSUMER })
                            .set(info.num_pending as i64);
                    }
                }
                next = messages.next(), if room => match next {
                    Some(Ok(message)) => {
                        let shared = self.shared.clone();
                        let naming = self.naming.clone();
                        reacting.spawn(async move { shared.handle(&naming, message).await });
                    }
                    Some(Err(error)) => return Err(AutomationError::Stream(error.to_string())),
                    None => return Err(AutomationError::Stream("the consumer closed".into())),
                },
            }
        }
    }
}

impl Shared {
    /// Handles one delivered event and acknowledges it as the outcome says.
    async fn handle(&self, naming: &Naming, message: Message) {
        let attempt = message
            .info()
            .map(|i| i.delivered.max(1) as u32)
            .unwrap_or(1);
        let decoded = RawEvent::from_consumer(&message).map(|raw| raw.decode(naming));
        let event = match decoded {
            Some(Ok(event)) => event,
            Some(Err(StoreError::Corrupt { sequence, source })) => {
                // The projector records it as a dead letter of its own; nothing to react to.
                tracing::warn!(sequence, %source, "automation skips an undecodable event");
                let _ = message.ack().await;
                return;
            }
            _ => {
                let _ = message.ack().await;
                return;
            }
        };
        let ack = match self.react(&event, attempt).await {
            Settled::Done | Settled::DeadLettered => AckKind::Ack,
            Settled::Retry(after) => AckKind::Nak(Some(after)),
        };
        if let Err(error) = message.ack_with(ack).await {
            tracing::debug!(%error, "acknowledging an automation message failed; it will be redelivered");
        }
    }

    /// Runs every automation that wants the event, each in a span continuing its trace.
    async fn react(&self, event: &RecordedEvent, attempt: u32) -> Settled {
        let mut settled = Settled::Done;
        for automation in self.automations.iter().filter(|a| a.wants(event)) {
            let name = automation.name();
            let span = tracing::info_span!(
                parent: None,
                "automation.react",
                otel.name = %format!("automation {name}"),
                otel.kind = "consumer",
                automation = name,
                position = event.position,
                task_id = %event.task_id,
                attempt,
            );
            if let Some(traceparent) = &event.traceparent {
                telemetry::trace_context::continue_trace(&span, traceparent);
            }
            let result = automation
                .handle(&self.context, event)
                .instrument(span.clone())
                .await;
            let outcome = match result {
                Ok(()) => "done",
                Err(error) if error.is_retryable() && attempt < self.options.max_attempts => {
                    let after = self.options.backoff(attempt);
                    span.in_scope(|| tracing::warn!(%error, attempt, retry_in = ?after, "automation failed; retrying"));
                    if !matches!(settled, Settled::Retry(_)) {
                        settled = Settled::Retry(after);
                    }
                    "retried"
                }
                Err(error) => {
                    span.in_scope(|| tracing::error!(%error, attempt, "automation gave up; recording a dead letter"));
                    match dead_letters::record(
                        self.context.reads.primary(),
                        name,
                        event,
                        &error.to_string(),
                        attempt,
                    )
                    .await
                    {
                        Ok(()) => {
                            if matches!(settled, Settled::Done) {
                                settled = Settled::DeadLettered;
                            }
                            "dead_lettered"
                        }
                        Err(record_error) => {
                            // Without its dead letter the event must not be dropped.
                            tracing::warn!(%record_error, "recording an automation dead letter failed; retrying the event");
                            settled = Settled::Retry(self.options.backoff(attempt));
                            "retried"
                        }
                    }
                }
            };
            self.metrics
                .automation_reactions
                .get_or_create(&AutomationOutcomeLabels {
                    automation: name,
                    outcome,
                })
                .inc();
            if outcome == "done" {
                let lag = (chrono::Utc::now() - event.recorded_at)
                    .to_std()
                    .unwrap_or_default();
                self.metrics
                    .automation_lag
                    .get_or_create(&AutomationLabels { automation: name })
                    .observe(lag.as_secs_f64());
            }
        }
        settled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_the_defaults_when_attempts_fail_then_the_wait_doubles_up_to_a_minute() {
        let options = RuntimeOptions::default();
        assert_eq!(options.backoff(1), Duration::from_secs(1));
        assert_eq!(options.backoff(2), Duration::from_secs(2));
        assert_eq!(options.backoff(5), Duration::from_secs(16));
        assert_eq!(options.backoff(7), Duration::from_secs(60));
        assert_eq!(options.backoff(400), Duration::from_secs(60));
    }
}
