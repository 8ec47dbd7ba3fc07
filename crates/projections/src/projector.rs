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

use eventstore::envelope::RawEvent;
use eventstore::{Naming, RecordedEvent};
use futures::{FutureExt, StreamExt};
use sqlx::PgPool;
use telemetry::metrics::ProjectionLabels;
use telemetry::Metrics;
use tokio_util::sync::CancellationToken;

use crate::error::ProjectionError;
use crate::{checkpoint, dead_letters, task_rows, TASKS_PROJECTION};

/// Tuning of the projector.
#[derive(Debug, Clone)]
pub struct ProjectorOptions {
    /// Most events applied in one transaction.
    pub max_batch: usize,
    /// First delay after a failure; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest delay between restarts.
    pub max_backoff: Duration,
    /// How often one event is tried before it becomes a dead letter.
    pub attempts_before_dead_letter: u32,
}

impl Default for ProjectorOptions {
    fn default() -> Self {
        Self {
            max_batch: 5_000,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            attempts_before_dead_letter: 3,
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

/// How long a catching-up projector waits for the next messages before committing a batch.
const CATCH_UP_LINGER: Duration = Duration::from_millis(20);

/// How many matching messages the stream still holds after this one.
fn pending_after(
    next: &Option<
        Result<async_nats::jetstream::Message, async_nats::jetstream::consumer::pull::OrderedError>,
    >,
) -> u64 {
    match next {
        Some(Ok(message)) => message.info().map(|i| i.pending).unwrap_or(0),
        _ => 0,
    }
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
        checkpoint::ensure(&self.pool, TASKS_PROJECTION).await?;
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
        let (_, mut messages) =
            eventstore::ordered_messages(&stream, self.naming.all_events(), position + 1)
                .await
                .map_err(|e| ProjectionError::Stream(e.to_string()))?;
        tracing::info!(position, "projector following the stream");
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                next = messages.next() => next,
            };
            let mut behind = pending_after(&first);
            let mut batch = vec![first];
            // Take whatever is already buffered. While the stream holds more than we have
            // (catching up, replaying), also wait briefly for the next pull to arrive, so each
            // transaction (and its commit fsync) carries a large batch; once caught up, commit
            // at once so a live event is visible without delay.
            while batch.len() < self.options.max_batch {
                let next = match messages.next().now_or_never() {
                    Some(next) => next,
                    None if behind > 0 => {
                        match tokio::time::timeout(CATCH_UP_LINGER, messages.next()).await {
                            Ok(next) => next,
                            Err(_) => break,
                        }
                    }
                    None => break,
                };
                behind = pending_after(&next);
                batch.push(next);
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

    /// Applies one batch of stream messages; returns the new checkpoint.
    ///
    /// The whole batch goes in one transaction. If that fails for a reason other than an
    /// outage, some event in it is poison: the batch is replayed one event at a time, each
    /// retried with backoff, and an event that still fails becomes a dead letter.
    #[tracing::instrument(skip_all, fields(from = position, size = messages.len()), err)]
    async fn apply(
        &self,
        position: u64,
        messages: &[async_nats::jetstream::Message],
    ) -> Result<u64, ProjectionError> {
        let started = Instant::now();
        let mut items = Vec::with_capacity(messages.len());
        let mut pending = 0;
        for message in messages {
            let Some(raw) = RawEvent::from_consumer(message) else {
                continue;
            };
            if raw.sequence <= position {
                continue;
            }
            pending = message.info().map(|i| i.pending).unwrap_or(0);
            let decoded = raw.decode(&self.naming).map_err(|e| e.to_string());
            items.push(Item { raw, decoded });
        }
        let Some(last) = items.last().map(|i| i.raw.sequence) else {
            return Ok(position);
        };
        match self.commit(position, last, &items, None).await {
            Ok(()) => {}
            Err(error) if error.is_transient() => return Err(error),
            Err(error) => {
                tracing::warn!(%error, "a batch failed; applying its events one by one");
                let mut at = position;
                for item in &items {
                    at = self.apply_one(at, item).await?;
                }
            }
        }
        self.metrics
            .projection_events
            .get_or_create(&LABELS)
            .inc_by(items.len() as u64);
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

    /// Applies one event, retrying with backoff; dead-letters it when it keeps failing.
    async fn apply_one(&self, position: u64, item: &Item<'_>) -> Result<u64, ProjectionError> {
        let to = item.raw.sequence;
        let mut backoff = self.options.min_backoff;
        let mut attempt = 1;
        loop {
            let error = match self
                .commit(position, to, std::slice::from_ref(item), None)
                .await
            {
                Ok(()) => return Ok(to),
                Err(error) if error.is_transient() => return Err(error),
                Err(error) => error,
            };
            if attempt >= self.options.attempts_before_dead_letter {
                self.commit(
                    position,
                    to,
                    &[],
                    Some((item, error.to_string(), attempt as i32)),
                )
                .await?;
                return Ok(to);
            }
            tracing::warn!(sequence = to, attempt, %error, "applying an event failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.options.max_backoff);
            attempt += 1;
        }
    }

    /// One transaction: lock the checkpoint at `from`, dead-letter what cannot be decoded (and
    /// `dead`, if given), apply the rest except quarantined tasks, move the checkpoint to `to`.
    async fn commit(
        &self,
        from: u64,
        to: u64,
        items: &[Item<'_>],
        dead: Option<(&Item<'_>, String, i32)>,
    ) -> Result<(), ProjectionError> {
        let mut tx = self.pool.begin().await?;
        checkpoint::lock_at(&mut tx, TASKS_PROJECTION, from).await?;
        let mut quarantined = dead_letters::quarantined(&mut tx, TASKS_PROJECTION).await?;
        let mut failures: Vec<(&Item<'_>, String, i32)> = dead.into_iter().collect();
        let mut events = Vec::with_capacity(items.len());
        for item in items {
            match &item.decoded {
                Ok(event) if quarantined.contains(&event.task_id.0) => {}
                Ok(event) => events.push(event),
                Err(error) => failures.push((item, error.clone(), 1)),
            }
        }
        for (item, error, attempts) in &failures {
            let raw = &item.raw;
            let task_id = self.naming.parse_subject(raw.subject).map(|(_, t)| t.0);
            let trace_id = raw
                .header(eventstore::headers::TRACEPARENT)
                .and_then(telemetry::trace_context::parse_trace_id);
            tracing::error!(
                sequence = raw.sequence,
                subject = raw.subject,
                trace_id,
                %error,
                "dead-lettering an event the projection cannot apply; its task is skipped until retried"
            );
            dead_letters::record(
                &mut tx,
                TASKS_PROJECTION,
                &dead_letters::Failure {
                    position: raw.sequence,
                    subject: raw.subject,
                    task_id,
                    event_type: raw.header(eventstore::headers::EVENT_TYPE),
                    event_version: raw
                        .header(eventstore::headers::EVENT_VERSION)
                        .and_then(|v| v.parse().ok()),
                    payload: raw.payload,
                    trace_id,
                    error: error.clone(),
                    attempts: *attempts,
                },
            )
            .await?;
            if let Some(task_id) = task_id {
                quarantined.insert(task_id);
            }
        }
        events.retain(|e| !quarantined.contains(&e.task_id.0));
        task_rows::apply_batch(&mut tx, &events).await?;
        checkpoint::set(&mut tx, TASKS_PROJECTION, to).await?;
        tx.commit().await?;
        if !failures.is_empty() {
            self.metrics
                .projection_dead_letters
                .get_or_create(&LABELS)
                .inc_by(failures.len() as u64);
        }
        Ok(())
    }
}

/// A stream message and what decoding it gave.
struct Item<'a> {
    raw: RawEvent<'a>,
    decoded: Result<RecordedEvent, String>,
}
