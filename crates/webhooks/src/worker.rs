//! [`WebhookWorker`]: the intake (events to deliveries) and the dispatcher (deliveries to
//! HTTP requests); see the crate documentation for the guarantees.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::AckKind;
use chrono::{DateTime, Utc};
use eventstore::envelope::RawEvent;
use eventstore::{Naming, RecordedEvent};
use futures::StreamExt;
use sqlx::PgPool;
use telemetry::metrics::{ConsumerLabels, OutcomeLabels};
use telemetry::Metrics;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::WebhookError;
use crate::signature;
use crate::target::{is_inward, TargetPolicy};

/// The durable consumer's name before scoping.
pub const CONSUMER: &str = "webhooks";

/// Namespace of the `webhook-id`s, fixed forever.
const WEBHOOK_ID_NAMESPACE: Uuid = Uuid::from_u128(0x51d4_0c7e_93a2_4b1f_8e6d_27c5_b0f9_a3e8);

/// Largest body sent; an event's payload beyond it is left out (`"data": null`) and said so.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Tuning of the worker.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Longest one attempt may take, connection included.
    pub attempt_timeout: Duration,
    /// Attempts before a delivery is given up on.
    pub max_attempts: i32,
    /// Wait before the second attempt; doubled each time.
    pub retry_base: Duration,
    /// Longest wait between attempts.
    pub retry_max: Duration,
    /// Endpoints served at once.
    pub concurrency: usize,
    /// How often pending deliveries are looked for when nothing wakes the dispatcher.
    pub poll: Duration,
    /// SSRF protection.
    pub policy: TargetPolicy,
}

impl WorkerOptions {
    /// The defaults, with the given target policy.
    pub fn with_policy(policy: TargetPolicy) -> Self {
        Self {
            attempt_timeout: Duration::from_secs(10),
            max_attempts: 8,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(3600),
            concurrency: 64,
            poll: Duration::from_millis(500),
            policy,
        }
    }

    /// The wait after failed attempt number `attempts`.
    pub fn backoff(&self, attempts: i32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).clamp(0, 20) as u32);
        self.retry_base.saturating_mul(factor).min(self.retry_max)
    }
}

/// Delivers webhooks; part of the `automation` role.
#[derive(Debug, Clone)]
pub struct WebhookWorker {
    jetstream: async_nats::jetstream::Context,
    naming: Naming,
    pool: PgPool,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
    options: WorkerOptions,
    wake: Arc<Notify>,
}

/// The head of one endpoint's line.
#[derive(Debug, sqlx::FromRow)]
struct Due {
    endpoint_id: Uuid,
    position: i64,
    webhook_id: String,
    body: Vec<u8>,
    attempts: i32,
    url: String,
    secret: String,
    /// Its next attempt is due now.
    ready: bool,
}

impl WebhookWorker {
    /// A worker over the stream named by `naming` and the tables in `pool`.
    pub fn new(
        jetstream: async_nats::jetstream::Context,
        naming: Naming,
        pool: PgPool,
        metrics: Arc<Metrics>,
        options: WorkerOptions,
    ) -> Result<Self, WebhookError> {
        let http = reqwest::Client::builder()
            .dns_resolver(options.policy.resolver())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(options.attempt_timeout)
            .connect_timeout(options.attempt_timeout.min(Duration::from_secs(5)))
            .user_agent("taskmaster-webhooks/1")
            .build()
            .map_err(|e| WebhookError::Target(e.to_string()))?;
        Ok(Self {
            jetstream,
            naming,
            pool,
            http,
            metrics,
            options,
            wake: Arc::new(Notify::new()),
        })
    }

    /// The `webhook-id` of an event's delivery to an endpoint: the same on every attempt.
    pub fn webhook_id(endpoint: Uuid, position: u64) -> String {
        let id = Uuid::new_v5(
            &WEBHOOK_ID_NAMESPACE,
            format!("{endpoint}\n{position}").as_bytes(),
        );
        format!("msg_{}", id.simple())
    }

    /// Creates the durable consumer if missing (at the stream's end), so events from now on
    /// are delivered even before the first worker runs.
    pub async fn ensure_consumer(&self) -> Result<PullConsumer, WebhookError> {
        let stream = self
            .jetstream
            .get_stream(self.naming.stream())
            .await
            .map_err(|e| WebhookError::Stream(e.to_string()))?;
        let name = self.naming.scoped(CONSUMER);
        stream
            .get_or_create_consumer(
                &name,
                pull::Config {
                    durable_name: Some(name.clone()),
                    description: Some("webhook intake: events to deliveries".into()),
                    deliver_policy: DeliverPolicy::New,
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(30),
                    max_ack_pending: 1_000,
                    filter_subject: self.naming.all_events(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| WebhookError::Stream(e.to_string()))
    }

    /// Runs the intake and the dispatcher until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let intake = tokio::spawn(self.clone().intake(shutdown.clone()));
        self.dispatch(shutdown).await;
        let _ = intake.await;
        tracing::info!("webhook worker stopped");
    }

    async fn intake(self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            match self.consume(&shutdown).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "webhook intake interrupted; reopening its consumer");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn consume(&self, shutdown: &CancellationToken) -> Result<(), WebhookError> {
        let consumer = self.ensure_consumer().await?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| WebhookError::Stream(e.to_string()))?;
        let mut lag_tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = lag_tick.tick() => {
                    if let Ok(info) = consumer.get_info().await {
                        self.metrics
                            .consumer_lag
                            .get_or_create(&ConsumerLabels { consumer: CONSUMER })
                            .set(info.num_pending as i64);
                    }
                }
                next = messages.next() => {
                    let message = match next {
                        Some(Ok(message)) => message,
                        Some(Err(error)) => return Err(WebhookError::Stream(error.to_string())),
                        None => return Err(WebhookError::Stream("the consumer closed".into())),
                    };
                    let event = RawEvent::from_consumer(&message).map(|raw| raw.decode(&self.naming));
                    let ack = match event {
                        Some(Ok(event)) => match self.enqueue(&event).await {
                            Ok(()) => AckKind::Ack,
                            Err(error) => {
                                tracing::warn!(%error, position = event.position, "recording webhook deliveries failed; retrying");
                                AckKind::Nak(Some(Duration::from_secs(1)))
                            }
                        },
                        // Undecodable: the projector dead-letters it; nothing to deliver.
                        _ => AckKind::Ack,
                    };
                    let _ = message.ack_with(ack).await;
                }
            }
        }
    }

    /// Records one delivery per endpoint of the event's owner that wants its type.
    async fn enqueue(&self, event: &RecordedEvent) -> Result<(), WebhookError> {
        let endpoints: Vec<(Uuid, Vec<String>)> =
            sqlx::query_as("SELECT id, event_types FROM webhook_endpoints WHERE owner_id = $1")
                .bind(event.owner.as_str())
                .fetch_all(&self.pool)
                .await?;
        let wanted: Vec<Uuid> = endpoints
            .into_iter()
            .filter(|(_, types)| types.is_empty() || types.contains(&event.event_type))
            .map(|(id, _)| id)
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let body = body(event);
        let ids: Vec<String> = wanted
            .iter()
            .map(|endpoint| Self::webhook_id(*endpoint, event.position))
            .collect();
        sqlx::query(
            "INSERT INTO webhook_deliveries (endpoint_id, position, webhook_id, event_type, body)
             SELECT e, $2, w, $3, $4 FROM UNNEST($1::uuid[], $5::text[]) AS u(e, w)
             ON CONFLICT (endpoint_id, position) DO NOTHING",
        )
        .bind(&wanted)
        .bind(event.position as i64)
        .bind(&event.event_type)
        .bind(&body)
        .bind(&ids)
        .execute(&self.pool)
        .await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Serves every endpoint with a delivery due, one turn per endpoint at a time.
    async fn dispatch(&self, shutdown: CancellationToken) {
        let mut serving: HashSet<Uuid> = HashSet::new();
        let mut turns: JoinSet<Uuid> = JoinSet::new();
        loop {
            let due: Result<Vec<Uuid>, sqlx::Error> = sqlx::query_scalar(
                "SELECT DISTINCT endpoint_id FROM webhook_deliveries
                  WHERE status = 'pending' AND next_attempt_at <= now()
                  LIMIT 1000",
            )
            .fetch_all(&self.pool)
            .await;
            match due {
                Ok(endpoints) => {
                    for endpoint in endpoints {
                        if serving.len() >= self.options.concurrency {
                            break;
                        }
                        if serving.insert(endpoint) {
                            let this = self.clone();
                            turns.spawn(async move {
                                if let Err(error) = this.turn(endpoint).await {
                                    tracing::warn!(%error, %endpoint, "a webhook turn failed");
                                }
                                endpoint
                            });
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "reading pending webhook deliveries failed"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(done) = turns.join_next(), if !turns.is_empty() => {
                    if let Ok(endpoint) = done {
                        serving.remove(&endpoint);
                    }
                }
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.options.poll) => {}
            }
            // Collect every finished turn before looking again.
            while let Some(done) = turns.try_join_next() {
                if let Ok(endpoint) = done {
                    serving.remove(&endpoint);
                }
            }
        }
        turns.abort_all();
    }

    /// One endpoint's turn: under its advisory lock (so one process serves it at a time),
    /// sends its due deliveries in order until one fails or none is due.
    async fn turn(&self, endpoint: Uuid) -> Result<(), WebhookError> {
        let mut connection = self.pool.acquire().await?;
        let (high, low) = endpoint.as_u64_pair();
        let key = (high ^ low) as i64;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut *connection)
            .await?;
        if !locked {
            return Ok(());
        }
        let result = async {
            for _ in 0..1_000 {
                // The head, and whether its next attempt is due: the ones behind it wait for it.
                let due: Option<Due> = sqlx::query_as(
                    "SELECT d.endpoint_id, d.position, d.webhook_id, d.body, d.attempts, e.url,
                            e.secret, d.next_attempt_at <= now() AS ready
                       FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
                      WHERE d.endpoint_id = $1 AND d.status = 'pending'
                      ORDER BY d.position LIMIT 1",
                )
                .bind(endpoint)
                .fetch_optional(&mut *connection)
                .await?;
                let Some(due) = due.filter(|due| due.ready) else {
                    break;
                };
                let outcome = self.send(&due).await;
                let delivered = outcome.is_ok();
                self.settle(&mut connection, &due, outcome).await?;
                if !delivered {
                    break;
                }
            }
            Ok::<(), WebhookError>(())
        }
        .await;
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(key)
            .execute(&mut *connection)
            .await;
        result
    }

    /// One attempt: `Ok(status)` on 2xx, `Err((status, error))` otherwise.
    async fn send(&self, due: &Due) -> Result<u16, (Option<u16>, String)> {
        let url = reqwest::Url::parse(&due.url).map_err(|e| (None, e.to_string()))?;
        if !self.options.policy.allow_private {
            let literal = url
                .host_str()
                .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
                .and_then(|h| h.parse::<std::net::IpAddr>().ok());
            if literal.is_some_and(is_inward) {
                return Err((None, "the URL points at an internal address".into()));
            }
        }
        let timestamp = Utc::now().timestamp();
        let signature = signature::sign(&due.secret, &due.webhook_id, timestamp, &due.body);
        let response = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &due.webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(due.body.clone())
            .send()
            .await
            .map_err(|e| (None, e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            Ok(status.as_u16())
        } else {
            Err((Some(status.as_u16()), format!("answered {status}")))
        }
    }

    /// Records an attempt's outcome.
    async fn settle(
        &self,
        connection: &mut sqlx::PgConnection,
        due: &Due,
        outcome: Result<u16, (Option<u16>, String)>,
    ) -> Result<(), WebhookError> {
        let attempts = due.attempts + 1;
        let label = match outcome {
            Ok(status) => {
                sqlx::query(
                    "UPDATE webhook_deliveries
                        SET status = 'delivered', attempts = $3, last_status = $4,
                            last_error = NULL, delivered_at = now()
                      WHERE endpoint_id = $1 AND position = $2",
                )
                .bind(due.endpoint_id)
                .bind(due.position)
                .bind(attempts)
                .bind(i32::from(status))
                .execute(&mut *connection)
                .await?;
                "delivered"
            }
            Err((status, error)) => {
                let give_up = attempts >= self.options.max_attempts;
                let next: DateTime<Utc> = Utc::now()
                    + chrono::Duration::from_std(self.options.backoff(attempts))
                        .unwrap_or_default();
                sqlx::query(
                    "UPDATE webhook_deliveries
                        SET status = CASE WHEN $5 THEN 'failed' ELSE 'pending' END,
                            attempts = $3, last_status = $4, last_error = $6, next_attempt_at = $7
                      WHERE endpoint_id = $1 AND position = $2",
                )
                .bind(due.endpoint_id)
                .bind(due.position)
                .bind(attempts)
                .bind(status.map(i32::from))
                .bind(give_up)
                .bind(error.chars().take(500).collect::<String>())
                .bind(next)
                .execute(&mut *connection)
                .await?;
                if give_up {
                    tracing::warn!(endpoint = %due.endpoint_id, position = due.position, "a webhook delivery was given up on");
                    "failed"
                } else {
                    "retried"
                }
            }
        };
        self.metrics
            .webhook_deliveries
            .get_or_create(&OutcomeLabels { outcome: label })
            .inc();
        Ok(())
    }
}

/// The body of an event's delivery: `{"type", "timestamp", "data"}`, `data` being the event's
/// payload with its task's owner; left out when it would pass [`MAX_BODY_BYTES`].
fn body(event: &RecordedEvent) -> Vec<u8> {
    let mut data = event.event.to_json();
    if let Some(object) = data.as_object_mut() {
        object.insert("owner_id".into(), serde_json::json!(event.owner.as_str()));
        object.insert("position".into(), serde_json::json!(event.position));
    }
    let full = serde_json::json!({
        "type": event.event_type,
        "timestamp": event.recorded_at.to_rfc3339(),
        "data": data,
    });
    let bytes = serde_json::to_vec(&full).unwrap_or_default();
    if bytes.len() <= MAX_BODY_BYTES {
        return bytes;
    }
    serde_json::to_vec(&serde_json::json!({
        "type": event.event_type,
        "timestamp": event.recorded_at.to_rfc3339(),
        "data": null,
        "truncated": true,
    }))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_failed_attempts_then_the_wait_doubles_up_to_an_hour() {
        let options = WorkerOptions::with_policy(TargetPolicy {
            allow_private: false,
        });
        assert_eq!(options.backoff(1), Duration::from_secs(1));
        assert_eq!(options.backoff(4), Duration::from_secs(8));
        assert_eq!(options.backoff(40), Duration::from_secs(3600));
    }

    #[test]
    fn given_an_endpoint_and_an_event_then_the_webhook_id_is_stable() {
        let endpoint = Uuid::from_u128(7);
        assert_eq!(
            WebhookWorker::webhook_id(endpoint, 42),
            WebhookWorker::webhook_id(endpoint, 42)
        );
        assert_ne!(
            WebhookWorker::webhook_id(endpoint, 42),
            WebhookWorker::webhook_id(endpoint, 43)
        );
        assert!(WebhookWorker::webhook_id(endpoint, 42).starts_with("msg_"));
    }
}
