//! The projector: reads the task stream in order from the checkpoint and applies it to the
//! read model in batched transactions.
//!
//! Batches form by themselves: after the first message arrives, everything the client has
//! already buffered joins the batch without waiting, so an idle system applies each event at
//! once and a busy one applies hundreds per transaction. On any failure (Postgres or NATS down,
//! a checkpoint that moved) the projector backs off and restarts from the stored checkpoint;
//! since rows and checkpoint commit together, restarting is always safe.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{self, pull::OrderedConfig};
use eventstore::envelope::RawEvent;
use eventstore::{Naming, RecordedEvent};
use futures::{FutureExt, StreamExt};
use sqlx::PgPool;
use telemetry::metrics::ProjectionLabels;
use telemetry::Metrics;
use tokio_util::sync::CancellationToken;

use crate::error::ProjectionError;
use crate::{checkpoint, task_rows, TASKS_PROJECTION};

/// Tuning of the projector.
#[derive(Debug, Clone)]
pub struct ProjectorOptions {
    /// Most events applied in one transaction.
    pub max_batch: usize,
    /// First delay after a failure; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest delay between restarts.
    pub max_backoff: Duration,
}

impl Default for ProjectorOptions {
    fn default() -> Self {
        Self {
            max_batch: 1_000,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Projects the task stream into the `tasks` read model.
#[derive(Debug, Clone)]
pub struct Projector {
    pool: PgPool,
    jetstream: async_nats::jetstream::Context,
    naming: Naming,
    metrics: Arc<Metrics>,
    options: ProjectorOptions,
}

const LABELS: ProjectionLabels = ProjectionLabels {
    projection: TASKS_PROJECTION,
};

impl Projector {
    /// A projector over the stream named by `naming`.
    pub fn new(
        pool: PgPool,
        jetstream: async_nats::jetstream::Context,
        naming: Naming,
        metrics: Arc<Metrics>,
        options: ProjectorOptions,
    ) -> Self {
        Self {
            pool,
            jetstream,
            naming,
            metrics,
            options,
        }
    }

    /// Runs until `shutdown` is cancelled; the batch in flight is committed first. Failures
    /// never end the loop: they are logged and retried with backoff.
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut backoff = self.options.min_backoff;
        while !shutdown.is_cancelled() {
            match self.follow(&shutdown, &mut backoff).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "projector interrupted; resuming from the checkpoint");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.options.max_backoff);
                }
            }
        }
        tracing::info!("projector stopped");
    }

    /// Follows the stream from the stored checkpoint until cancelled or an error.
    async fn follow(
        &self,
        shutdown: &CancellationToken,
        backoff: &mut Duration,
    ) -> Result<(), ProjectionError> {
        let mut position = checkpoint::load(&self.pool, TASKS_PROJECTION).await?;
        self.metrics
            .projection_position
            .get_or_create(&LABELS)
            .set(position as i64);
        let stream = self
            .jetstream
            .get_stream(self.naming.stream())
            .await
            .map_err(|e| ProjectionError::Stream(e.to_string()))?;
        let deliver_policy = if position == 0 {
            consumer::DeliverPolicy::All
        } else {
            consumer::DeliverPolicy::ByStartSequence {
                start_sequence: position + 1,
            }
        };
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject: self.naming.all_events(),
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|e| ProjectionError::Stream(e.to_string()))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| ProjectionError::Stream(e.to_string()))?;
        tracing::info!(position, "projector following the stream");
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                next = messages.next() => next,
            };
            let mut batch = vec![first];
            // Take whatever is already buffered, without waiting for more.
            while batch.len() < self.options.max_batch {
                match messages.next().now_or_never() {
                    Some(next) => batch.push(next),
                    None => break,
                }
            }
            let mut raw = Vec::with_capacity(batch.len());
            for next in batch {
                match next {
                    Some(Ok(message)) => raw.push(message),
                    Some(Err(e)) => return Err(ProjectionError::Stream(e.to_string())),
                    None => return Err(ProjectionError::Stream("the consumer closed".into())),
                }
            }
            position = self.apply(position, &raw).await?;
            *backoff = self.options.min_backoff;
        }
    }

    /// Applies one batch of stream messages in one transaction; returns the new checkpoint.
    #[tracing::instrument(skip_all, fields(from = position, size = messages.len()), err)]
    async fn apply(
        &self,
        position: u64,
        messages: &[async_nats::jetstream::Message],
    ) -> Result<u64, ProjectionError> {
        let started = Instant::now();
        let mut events: Vec<RecordedEvent> = Vec::with_capacity(messages.len());
        let mut last = position;
        let mut pending = 0;
        for message in messages {
            let Some(raw) = RawEvent::from_consumer(message) else {
                continue;
            };
            if raw.sequence <= position {
                continue;
            }
            last = last.max(raw.sequence);
            pending = message.info().map(|i| i.pending).unwrap_or(0);
            match raw.decode(&self.naming) {
                Ok(event) => events.push(event),
                Err(error) => {
                    tracing::error!(sequence = raw.sequence, subject = raw.subject, %error, "skipping an event the projection cannot decode");
                    self.metrics.projection_skipped.get_or_create(&LABELS).inc();
                }
            }
        }
        if last == position {
            return Ok(position);
        }
        let mut tx = self.pool.begin().await?;
        task_rows::apply_batch(&mut tx, &events).await?;
        checkpoint::advance(&mut tx, TASKS_PROJECTION, position, last).await?;
        tx.commit().await?;

        self.metrics
            .projection_events
            .get_or_create(&LABELS)
            .inc_by(events.len() as u64);
        self.metrics
            .projection_position
            .get_or_create(&LABELS)
            .set(last as i64);
        self.metrics
            .projection_lag
            .get_or_create(&LABELS)
            .set(pending as i64);
        self.metrics
            .projection_batch_duration
            .get_or_create(&LABELS)
            .observe(started.elapsed().as_secs_f64());
        Ok(last)
    }
}
