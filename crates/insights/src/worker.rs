//! The insights worker (role `insights`): keeps each user's cached insights current as their
//! events arrive, so the API answers from the cache without waiting for the TTL.
//!
//! It reads the task stream through a **durable pull consumer** (`insights`, scoped by the
//! prefix), created to start with new messages, with explicit acks. Any number of workers may
//! share it: JetStream hands each message to one of them.
//!
//! Per message it takes the owner from the subject and **debounces per user**: the refresh
//! runs once the user has been quiet for `debounce`, or `max_delay` after their first pending
//! event when they never are, so a burst of events gives one refresh. Only the user's newest
//! message is held unacked; an older one is acked as soon as a newer one supersedes it, since
//! the newer one's refresh reads the read model at a later position and so covers both (and if
//! the worker dies, the newer one is redelivered). That keeps one unacked message per user
//! with a pending refresh, far below the consumer's `max_ack_pending`.
//!
//! A refresh first waits (bounded) until the tasks read model has applied the message's
//! position, then recomputes and stores ([`InsightsService::refresh`]), then acks:
//! - read model still behind after the wait (projector down or far behind): the cached value
//!   is dropped, so the API computes instead of serving one that misses the event, and the
//!   message is nacked to be retried after `retry_after`;
//! - Postgres failing: nacked, retried after `retry_after`;
//! - Redis failing: logged and acked. The API bypasses a failing Redis, and the TTL bounds how
//!   long a value that missed this refresh can be served once Redis is back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{AckKind, Message};
use domain::UserId;
use eventstore::Naming;
use futures::StreamExt;
use telemetry::metrics::{ConsumerLabels, InsightsLabels};
use telemetry::Metrics;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::error::InsightsError;
use crate::service::InsightsService;

/// The durable consumer's name before scoping: `insights`, or `<prefix>_insights`.
pub const CONSUMER: &str = "insights";

/// Tuning of the worker.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Quiet time after a user's last event before their refresh (`TASKMASTER_INSIGHTS_DEBOUNCE_MS`).
    pub debounce: Duration,
    /// Longest a refresh is put off by a user who keeps sending events.
    pub max_delay: Duration,
    /// Longest wait for the read model to reach an event before giving up on that refresh.
    pub read_model_wait: Duration,
    /// Delay before a message whose refresh could not be made is delivered again.
    pub retry_after: Duration,
    /// Refreshes running at once (each holds a Postgres connection while it computes).
    pub concurrency: usize,
    /// Unacked messages the consumer delivers at most (one per user with a pending refresh).
    pub max_ack_pending: i64,
}

impl WorkerOptions {
    /// Options with `debounce`, the others derived or at their defaults.
    pub fn with_debounce(debounce: Duration) -> Self {
        Self {
            debounce,
            max_delay: (debounce * 5).max(Duration::from_secs(1)),
            read_model_wait: Duration::from_secs(10),
            retry_after: Duration::from_secs(2),
            concurrency: 4,
            max_ack_pending: 20_000,
        }
    }

    /// How long JetStream waits for an ack before redelivering: more than a refresh can take.
    fn ack_wait(&self) -> Duration {
        self.max_delay + self.read_model_wait + Duration::from_secs(30)
    }
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self::with_debounce(Duration::from_secs(1))
    }
}

/// How often the consumer's lag (messages the stream holds that no worker has received yet) is
/// read for `taskmaster_consumer_lag_events{consumer="insights"}`.
const LAG_SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The span of one user's refresh: a child of the span that appended the newest of the events
/// it covers (older ones were superseded by it), so the command's trace shows its insights
/// being refreshed.
fn refresh_span(user: &UserId, waiting: &Pending) -> tracing::Span {
    let span = tracing::info_span!(
        parent: None,
        "insights.refresh",
        otel.name = "refresh insights",
        otel.kind = "consumer",
        user = %user,
        position = waiting.position,
    );
    let traceparent = waiting
        .message
        .headers
        .as_ref()
        .and_then(|h| h.get(eventstore::headers::TRACEPARENT))
        .map(|v| v.as_str());
    if let Some(traceparent) = traceparent {
        telemetry::trace_context::continue_trace(&span, traceparent);
    }
    span
}

/// One user's pending refresh.
struct Pending {
    first_seen: Instant,
    last_seen: Instant,
    /// The stream position the read model must reach first: the newest event's.
    position: u64,
    /// The newest message; acked once the refresh is done.
    message: Message,
}

impl Pending {
    fn due(&self, options: &WorkerOptions) -> Instant {
        (self.last_seen + options.debounce).min(self.first_seen + options.max_delay)
    }
}

/// Refreshes cached insights from the event stream.
#[derive(Debug, Clone)]
pub struct InsightsWorker {
    jetstream: async_nats::jetstream::Context,
    naming: Naming,
    refresher: Refresher,
}

/// What a worker shares with its refresh tasks.
#[derive(Debug, Clone)]
struct Refresher {
    service: Arc<InsightsService>,
    metrics: Arc<Metrics>,
    options: WorkerOptions,
}

impl InsightsWorker {
    /// A worker over the stream named by `naming`. It waits for the read model on the
    /// database the service reads ([`InsightsService::reads`]), so a refresh never reads a
    /// replica that has not replayed the event yet.
    pub fn new(
        service: Arc<InsightsService>,
        jetstream: async_nats::jetstream::Context,
        naming: Naming,
        metrics: Arc<Metrics>,
        options: WorkerOptions,
    ) -> Self {
        Self {
            jetstream,
            naming,
            refresher: Refresher {
                service,
                metrics,
                options,
            },
        }
    }

    /// The durable consumer's name under `naming`'s prefix.
    pub fn consumer_name(naming: &Naming) -> String {
        naming.scoped(CONSUMER)
    }

    /// Runs until `shutdown`. Stream failures never end it: they are logged and the consumer
    /// is opened again with backoff, keeping the refreshes already pending.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut pending: HashMap<UserId, Pending> = HashMap::new();
        let mut refreshing: JoinSet<()> = JoinSet::new();
        let mut backoff = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            match self.consume(&shutdown, &mut pending, &mut refreshing).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "insights worker interrupted; reopening its consumer");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        // Hand what is pending to another worker now rather than after the ack wait.
        for (_, waiting) in pending.drain() {
            let _ = waiting.message.ack_with(AckKind::Nak(None)).await;
        }
        let finishing = async { while refreshing.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(2), finishing)
            .await
            .is_err()
        {
            // Aborted on drop; their messages are redelivered after the ack wait.
            tracing::info!("insights refreshes still running at shutdown were abandoned");
        }
        tracing::info!("insights worker stopped");
    }

    async fn open_consumer(&self) -> Result<PullConsumer, InsightsError> {
        let stream = self
            .jetstream
            .get_stream(self.naming.stream())
            .await
            .map_err(|e| InsightsError::Stream(e.to_string()))?;
        let name = Self::consumer_name(&self.naming);
        stream
            .get_or_create_consumer(
                &name,
                pull::Config {
                    durable_name: Some(name.clone()),
                    description: Some(
                        "insights workers: refresh a user's cached insights on their events".into(),
                    ),
                    deliver_policy: DeliverPolicy::New,
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: self.refresher.options.ack_wait(),
                    max_ack_pending: self.refresher.options.max_ack_pending,
                    filter_subject: self.naming.all_events(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| InsightsError::Stream(e.to_string()))
    }

    /// Consumes until shutdown (`Ok`) or a stream failure (`Err`).
    async fn consume(
        &self,
        shutdown: &CancellationToken,
        pending: &mut HashMap<UserId, Pending>,
        refreshing: &mut JoinSet<()>,
    ) -> Result<(), InsightsError> {
        let consumer = self.open_consumer().await?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| InsightsError::Stream(e.to_string()))?;
        tracing::info!(consumer = %Self::consumer_name(&self.naming), "insights worker consuming");
        let refresher = &self.refresher;
        let options = &refresher.options;
        let mut lag_tick = tokio::time::interval(LAG_SAMPLE_EVERY);
        lag_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let room = refreshing.len() < options.concurrency;
            let next_due = pending
                .values()
                .map(|p| p.due(options))
                .min()
                .filter(|_| room);
            let due = async {
                match next_due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = due => {
                    let now = Instant::now();
                    let ready: Vec<UserId> = pending
                        .iter()
                        .filter(|(_, p)| p.due(options) <= now)
                        .map(|(user, _)| user.clone())
                        .take(options.concurrency - refreshing.len())
                        .collect();
                    for user in ready {
                        if let Some(waiting) = pending.remove(&user) {
                            let span = refresh_span(&user, &waiting);
                            refreshing.spawn(refresher.clone().refresh(user, waiting).instrument(span));
                        }
                    }
                }
                Some(_) = refreshing.join_next(), if !refreshing.is_empty() => {}
                _ = lag_tick.tick() => {
                    if let Ok(info) = consumer.get_info().await {
                        refresher
                            .metrics
                            .consumer_lag
                            .get_or_create(&ConsumerLabels { consumer: CONSUMER })
                            .set(info.num_pending as i64);
                    }
                }
                next = messages.next() => match next {
                    Some(Ok(message)) => self.accept(message, pending).await,
                    Some(Err(error)) => return Err(InsightsError::Stream(error.to_string())),
                    None => return Err(InsightsError::Stream("the consumer closed".into())),
                },
            }
        }
    }

    /// Adds a message to its user's pending refresh.
    async fn accept(&self, message: Message, pending: &mut HashMap<UserId, Pending>) {
        let owner = self.naming.parse_subject(message.subject.as_str());
        let (Some((owner, _)), Ok(info)) = (owner, message.info()) else {
            // Not a task event of this deployment: nothing to refresh.
            let _ = message.ack().await;
            return;
        };
        let position = info.stream_sequence;
        let now = Instant::now();
        match pending.get_mut(&owner) {
            Some(waiting) => {
                let superseded = std::mem::replace(&mut waiting.message, message);
                waiting.last_seen = now;
                waiting.position = waiting.position.max(position);
                if let Err(error) = superseded.ack().await {
                    tracing::debug!(%error, "acking a superseded insights message failed; it will be redelivered");
                }
            }
            None => {
                pending.insert(
                    owner,
                    Pending {
                        first_seen: now,
                        last_seen: now,
                        position,
                        message,
                    },
                );
            }
        }
    }
}

impl Refresher {
    /// Waits for the read model, recomputes and stores, then acks (or nacks to retry).
    async fn refresh(self, owner: UserId, waiting: Pending) {
        let retry = AckKind::Nak(Some(self.options.retry_after));
        let (outcome, ack) = match self
            .service
            .reads()
            .wait_for(waiting.position, self.options.read_model_wait)
            .await
        {
            Err(behind) => {
                tracing::warn!(
                    user = %owner,
                    wanted = waiting.position,
                    current = behind.current,
                    "the read model did not reach the event in time; dropping the cached insights and retrying later"
                );
                let _ = self.service.cache().forget(&owner).await;
                ("read_model_behind", retry)
            }
            Ok(_) => match self.service.refresh(&owner, waiting.position).await {
                Ok(true) => ("stored", AckKind::Ack),
                Ok(false) => ("superseded", AckKind::Ack),
                Err(error) if error.is_cache() => {
                    tracing::warn!(user = %owner, %error, "Redis is unavailable; insights not refreshed (the API bypasses the cache meanwhile)");
                    ("cache_unavailable", AckKind::Ack)
                }
                Err(error) => {
                    tracing::warn!(user = %owner, %error, "computing insights failed; retrying later");
                    ("failed", retry)
                }
            },
        };
        if let Err(error) = waiting.message.ack_with(ack).await {
            tracing::debug!(%error, "acknowledging an insights message failed; it will be redelivered");
        }
        self.metrics
            .insights_refreshes
            .get_or_create(&InsightsLabels { outcome })
            .inc();
    }
}
