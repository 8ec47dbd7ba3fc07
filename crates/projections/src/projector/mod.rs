//! The projector: reads the task stream in order from its checkpoints and applies the events of
//! the partitions it owns to the read model in batched transactions.
//!
//! One process reads the stream once, whatever number of partitions it owns: each event goes to
//! its task's partition ([`crate::layout::partition_of`]) and is applied only when this process
//! owns that partition and the partition's checkpoint is behind it; every batch then moves all
//! owned checkpoints to the batch's last sequence. Ownership comes from leases
//! ([`crate::leases`]) or, for a single projector, is simply every partition.
//!
//! Batches form by themselves: after the first message arrives, everything the client has
//! already buffered joins the batch without waiting, so an idle system applies each event at
//! once and a busy one applies hundreds per transaction. On any failure (Postgres or NATS down,
//! a checkpoint that moved) the projector backs off and restarts from the stored checkpoints;
//! since rows and checkpoints commit together, restarting is always safe.
//!
//! The same projector, pointed at a shadow schema, is what a rebuild runs ([`crate::replay`]):
//! live projection and replay share every line from the batch to the commit.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull::OrderedError;
use eventstore::envelope::RawEvent;
use eventstore::{Naming, RecordedEvent};
use futures::{FutureExt, StreamExt};
use sqlx::PgPool;
use telemetry::metrics::ProjectionLabels;
use telemetry::Metrics;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::checkpoint::{self, Positions};
use crate::error::ProjectionError;
use crate::layout::{self, Layout};
use crate::leases::{LeaseOptions, PartitionLeases};
use crate::{dead_letters, task_rows, TASKS_PROJECTION, TASKS_PROJECTION_VERSION};

mod lanes;

use lanes::{Batch, Envelope, Lanes};

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
    /// Partitions of a read model this projector creates, and of the rebuild it starts when
    /// the stored layout differs. A running read model keeps its stored count.
    pub partitions: u16,
    /// How partitions are shared between processes: `None` makes this projector the owner of
    /// every partition (one projector process; tests); `Some` takes leases in NATS KV.
    pub leases: Option<LeaseOptions>,
    /// Whether a stored layout other than the code's (projection version, partitions) makes
    /// this process rebuild the read model blue/green while the live one keeps serving.
    pub rebuild_on_layout_change: bool,
    /// While the stored layout differs and another process holds the rebuild, how often to
    /// check whether that process is still at it (the lock frees when it dies).
    pub rebuild_retry: Duration,
    /// How many groups of owned partitions commit in parallel (each holds a connection while
    /// it commits). One suits a live projector: an event is visible once every partition has
    /// passed it, and with more lanes that is several commits (and fsyncs) instead of one,
    /// which doubled the answer-to-read-model lag at 5,000 commands/s. Rebuilds, where
    /// throughput is all that counts, use [`REBUILD_LANES`] at least.
    pub lanes: usize,
    /// How long the stream's consumer may deliver nothing while the stream holds events past
    /// what it delivered before the projector reads the stream again. An ordered consumer
    /// lives on one server: when that server dies, the client library notices only after two
    /// missed idle heartbeats (30 s each), and until then the read model stands still (seen
    /// when a 3-node cluster lost the server hosting it). Quiet time with nothing to deliver
    /// costs one lookup per period.
    pub stall_check: Duration,
}

impl Default for ProjectorOptions {
    fn default() -> Self {
        Self {
            max_batch: 5_000,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            attempts_before_dead_letter: 3,
            partitions: 1,
            leases: None,
            rebuild_on_layout_change: false,
            rebuild_retry: crate::replay::REBUILD_RETRY,
            lanes: 1,
            stall_check: Duration::from_secs(2),
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
    /// Whether commits announce positions to waiting readers: yes for the live read model, no
    /// for a rebuild's shadow, whose positions mean nothing to readers until it is swapped in.
    announce: bool,
    /// Whether a busy lane merges the small batches queued behind its commit into its next
    /// one. Live: yes, it halved the read-your-writes lag (p50 about 10 -> 4 ms at 5,000
    /// commands/s). Rebuild: no, its batches are large already and merging them cost about 8%
    /// of the replay's throughput.
    merge_queued: bool,
}

/// Lanes of a rebuild: enough to keep a 2-core machine's Postgres busy on both cores while this
/// process reads and decodes (1M events, replay pass alone: one lane about 65k events/s, two
/// 89-90k, three 94k).
pub const REBUILD_LANES: usize = 3;

/// Events per batch of a rebuild: nobody reads the shadow before the swap, so batches can be
/// as large as memory allows; the larger they are, the fewer rows are written more than once
/// (a task whose events straddle two batches is written in both).
pub const REBUILD_BATCH: usize = 20_000;

/// How long a catching-up projector waits for the next messages before committing a batch.
const CATCH_UP_LINGER: Duration = Duration::from_millis(20);

const LABELS: ProjectionLabels = ProjectionLabels {
    projection: TASKS_PROJECTION,
};

/// Why [`Projector::follow`] returned without an error.
enum Stop {
    Shutdown,
    OwnershipChanged,
    Reached,
}

/// When [`Projector::follow`] should return.
struct Until<'a> {
    shutdown: &'a CancellationToken,
    owned: Option<&'a mut watch::Receiver<BTreeSet<u16>>>,
    position: Option<u64>,
}

impl Projector {
    /// A projector over the stream named by `naming`, writing the live read model.
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
            announce: true,
            merge_queued: true,
        }
    }

    /// The same projector writing through another pool (a rebuild's shadow schema), silently.
    pub(crate) fn for_shadow(&self, pool: PgPool) -> Self {
        Self {
            pool,
            announce: false,
            merge_queued: false,
            options: ProjectorOptions {
                leases: None,
                rebuild_on_layout_change: false,
                lanes: self.shadow_lanes(),
                max_batch: self.options.max_batch.max(REBUILD_BATCH),
                ..self.options.clone()
            },
            ..self.clone()
        }
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The lanes of this projector's rebuilds (each holds a shadow connection).
    pub(crate) fn shadow_lanes(&self) -> usize {
        self.options.lanes.max(REBUILD_LANES)
    }

    pub(crate) fn jetstream(&self) -> &async_nats::jetstream::Context {
        &self.jetstream
    }

    pub(crate) fn naming(&self) -> &Naming {
        &self.naming
    }

    /// The layout this code builds: its projection version and the configured partitions.
    pub fn wanted_layout(&self) -> Result<Layout, ProjectionError> {
        Layout::new(TASKS_PROJECTION_VERSION, self.options.partitions)
    }

    /// Runs until `shutdown` is cancelled; the batch in flight is committed first. Failures
    /// never end the loop: they are logged and retried with backoff.
    pub async fn run(&self, shutdown: CancellationToken) {
        // The live read model's lag is sampled from the log and the stored checkpoints, so it
        // shows even while this process applies nothing (see `crate::lag`).
        let _sampler = self.announce.then(|| {
            AbortOnDropHandle::new(tokio::spawn(crate::lag::run(
                self.pool.clone(),
                self.jetstream.clone(),
                self.naming.clone(),
                self.metrics.clone(),
                crate::lag::SAMPLE_EVERY,
                shutdown.child_token(),
            )))
        });
        let mut backoff = self.options.min_backoff;
        let mut rebuild: Option<tokio::task::JoinHandle<()>> = None;
        while !shutdown.is_cancelled() {
            match self.run_layout(&shutdown, &mut rebuild, &mut backoff).await {
                Ok(()) => break,
                Err(error) => {
                    if !self.back_off(&error, &mut backoff, &shutdown).await {
                        break;
                    }
                }
            }
        }
        if let Some(rebuild) = rebuild {
            let _ = rebuild.await;
        }
        tracing::info!("projector stopped");
    }

    /// Projects under the stored layout until shutdown, or until a rebuild swaps in another
    /// layout (then returns [`ProjectionError::LayoutChanged`] so [`Self::run`] starts over).
    async fn run_layout(
        &self,
        shutdown: &CancellationToken,
        rebuild: &mut Option<tokio::task::JoinHandle<()>>,
        backoff: &mut Duration,
    ) -> Result<(), ProjectionError> {
        let wanted = self.wanted_layout()?;
        let layout = layout::ensure(&self.pool, TASKS_PROJECTION, wanted).await?;
        let idle = rebuild.as_ref().is_none_or(|r| r.is_finished());
        if layout != wanted && idle {
            let rebuilding = self.options.rebuild_on_layout_change;
            tracing::warn!(
                stored_version = layout.version,
                stored_partitions = layout.partitions,
                version = wanted.version,
                partitions = wanted.partitions,
                rebuilding,
                "the read model was built by another layout; it keeps serving until a rebuild \
                 (automatic when `rebuilding`, else `taskmaster replay tasks`) swaps a new one in"
            );
            if rebuilding {
                *rebuild = Some(crate::replay::spawn_rebuild(
                    self.clone(),
                    shutdown.clone(),
                    self.options.rebuild_retry,
                ));
            }
        }

        let (owned_tx, mut owned_rx) = watch::channel(BTreeSet::new());
        let stop_leases = shutdown.child_token();
        let keeper = match self.options.leases {
            None => {
                owned_tx.send_replace(layout.all_partitions().into_iter().collect());
                None
            }
            Some(options) => {
                let member = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
                let leases = PartitionLeases::open(
                    &self.jetstream,
                    &self.naming,
                    TASKS_PROJECTION,
                    member,
                    options,
                )
                .await?;
                let stop = stop_leases.clone();
                // Aborted if this future is dropped (the task running the projector aborted),
                // so leases are never renewed on behalf of a projector that is gone.
                Some(AbortOnDropHandle::new(tokio::spawn(leases.run(
                    layout.partitions,
                    owned_tx,
                    stop,
                ))))
            }
        };
        let outcome = loop {
            let owned = owned_rx.borrow_and_update().clone();
            if owned.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => break Ok(()),
                    changed = owned_rx.changed() => {
                        if changed.is_err() { break Ok(()) }
                        continue;
                    }
                }
            }
            let until = Until {
                shutdown,
                owned: Some(&mut owned_rx),
                position: None,
            };
            match self.follow(layout, &owned, until, backoff).await {
                Ok(Stop::Shutdown) => break Ok(()),
                Ok(Stop::OwnershipChanged | Stop::Reached) => continue,
                Err(error @ ProjectionError::LayoutChanged(_)) => break Err(error),
                Err(error) if error.is_transient() => {
                    if !self.back_off(&error, backoff, shutdown).await {
                        break Ok(());
                    }
                }
                Err(error) => break Err(error),
            }
        };
        stop_leases.cancel();
        if let Some(keeper) = keeper {
            let _ = keeper.await;
        }
        outcome
    }

    /// Logs an interruption and waits `backoff` (doubled for next time, up to the maximum)
    /// before resuming from the stored checkpoints; `false` when `shutdown` came first.
    async fn back_off(
        &self,
        error: &ProjectionError,
        backoff: &mut Duration,
        shutdown: &CancellationToken,
    ) -> bool {
        tracing::warn!(%error, retry_in = ?backoff, "projector interrupted; resuming from the checkpoint");
        let waited = tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(*backoff) => true,
        };
        *backoff = (*backoff * 2).min(self.options.max_backoff);
        waited
    }

    /// Applies every partition of the stored layout up to at least `position`, then returns
    /// the lowest checkpoint reached. What a rebuild runs against its shadow schema.
    pub(crate) async fn catch_up(
        &self,
        position: u64,
        shutdown: &CancellationToken,
    ) -> Result<u64, ProjectionError> {
        let mut backoff = self.options.min_backoff;
        loop {
            let layout = layout::load(&self.pool, TASKS_PROJECTION)
                .await?
                .ok_or_else(|| ProjectionError::LayoutChanged(TASKS_PROJECTION.into()))?;
            let owned: BTreeSet<u16> = layout.all_partitions().into_iter().collect();
            let until = Until {
                shutdown,
                owned: None,
                position: Some(position),
            };
            match self.follow(layout, &owned, until, &mut backoff).await {
                Ok(Stop::Reached) => return checkpoint::load(&self.pool, TASKS_PROJECTION).await,
                Ok(_) => return Err(ProjectionError::Stream("interrupted".into())),
                Err(error) if error.is_transient() => {
                    if !self.back_off(&error, &mut backoff, shutdown).await {
                        return Err(error);
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Follows the stream for the `owned` partitions from their stored checkpoints until
    /// `until` says stop or an error.
    async fn follow(
        &self,
        layout: Layout,
        owned: &BTreeSet<u16>,
        mut until: Until<'_>,
        backoff: &mut Duration,
    ) -> Result<Stop, ProjectionError> {
        if layout::load(&self.pool, TASKS_PROJECTION).await? != Some(layout) {
            return Err(ProjectionError::LayoutChanged(TASKS_PROJECTION.into()));
        }
        let stored = checkpoint::load_partitions(&self.pool, TASKS_PROJECTION).await?;
        let positions: Positions = owned
            .iter()
            .map(|p| (*p, stored.get(p).copied().unwrap_or(0)))
            .collect();
        let reached = |positions: &Positions| positions.values().copied().min().unwrap_or(0);
        if until.position.is_some_and(|p| reached(&positions) >= p) {
            return Ok(Stop::Reached);
        }
        self.metrics
            .projection_position
            .get_or_create(&LABELS)
            .set(reached(&positions) as i64);
        let stream = self
            .jetstream
            .get_stream(self.naming.stream())
            .await
            .map_err(|e| ProjectionError::Stream(e.to_string()))?;
        let from = reached(&positions) + 1;
        let (_, mut messages) =
            eventstore::ordered_messages(&stream, self.naming.all_events(), from)
                .await
                .map_err(|e| ProjectionError::Stream(e.to_string()))?;
        tracing::info!(from, partitions = ?owned, "projector following the stream");
        let mut lanes = Lanes::start(self, layout, positions);
        let mut lanes_reached = lanes.reached.clone();
        // The first stream sequence not delivered yet, for the stall check.
        let mut next_expected = from;
        loop {
            let ownership = async {
                match until.owned.as_mut() {
                    Some(rx) => rx.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            let target = until.position;
            let all_reached = async {
                match target {
                    Some(p) => {
                        let _ = lanes_reached
                            .wait_for(|r| r.iter().all(|&at| at >= p))
                            .await;
                    }
                    None => std::future::pending().await,
                }
            };
            let first = tokio::select! {
                _ = until.shutdown.cancelled() => {
                    lanes.finish().await?;
                    return Ok(Stop::Shutdown);
                }
                changed = ownership => {
                    lanes.finish().await?;
                    return Ok(if changed { Stop::OwnershipChanged } else { Stop::Shutdown });
                }
                _ = all_reached => {
                    lanes.finish().await?;
                    return Ok(Stop::Reached);
                }
                failure = lanes.failure() => return Err(failure),
                next = messages.next() => next,
                _ = tokio::time::sleep(self.options.stall_check) => {
                    if self.stream_holds_from(&stream, next_expected).await {
                        lanes.finish().await?;
                        return Err(ProjectionError::Stream(format!(
                            "the stream holds events from {next_expected} on but none arrived \
                             in {:?}; reading it again from the checkpoints",
                            self.options.stall_check
                        )));
                    }
                    continue;
                }
            };
            let first = self.envelope(layout, first)?;
            let mut behind = first.as_ref().map_or(0, |e| e.pending);
            let mut envelopes: Vec<Envelope> = Vec::with_capacity(self.options.max_batch);
            envelopes.extend(first);
            let mut taken = 1;
            // Take whatever is already buffered. While the stream holds more than we have
            // (catching up, replaying), also wait briefly for the next pull to arrive, so each
            // transaction (and its commit fsync) carries a large batch; once caught up, commit
            // at once so a live event is visible without delay.
            while taken < self.options.max_batch {
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
                taken += 1;
                let next = self.envelope(layout, next)?;
                behind = next.as_ref().map_or(0, |e| e.pending);
                envelopes.extend(next);
            }
            let Some(newest) = envelopes.last() else {
                continue;
            };
            let batch = Batch {
                last: newest.sequence,
                envelopes,
            };
            next_expected = batch.last + 1;
            lanes.send(Arc::new(batch)).await?;
            *backoff = self.options.min_backoff;
        }
    }

    /// Whether the stream holds an event at or after `sequence`, asked of its leader. An
    /// error (no leader yet, say) counts as no: the next check asks again.
    async fn stream_holds_from(
        &self,
        stream: &async_nats::jetstream::stream::Stream,
        sequence: u64,
    ) -> bool {
        stream
            .raw_message_builder()
            .sequence(sequence)
            .next_by_subject(self.naming.all_events())
            .send()
            .await
            .is_ok()
    }

    /// Applies consecutive batches of stream messages in one go; returns the new checkpoints.
    ///
    /// The whole batch goes in one transaction. If that fails for a reason other than an
    /// outage, some event in it is poison: the batch is replayed one event at a time, each
    /// retried with backoff, and an event that still fails becomes a dead letter.
    #[tracing::instrument(skip_all, fields(batches = batches.len()), err)]
    async fn apply(
        &self,
        layout: Layout,
        positions: Positions,
        batches: &[Arc<Batch>],
    ) -> Result<Positions, ProjectionError> {
        let started = Instant::now();
        let Some(newest) = batches.last() else {
            return Ok(positions);
        };
        let last = newest.last;
        let mut items = Vec::new();
        for envelope in batches.iter().flat_map(|b| &b.envelopes) {
            let behind = positions
                .get(&envelope.partition)
                .is_some_and(|&at| envelope.sequence > at);
            if !behind {
                continue;
            }
            let raw = envelope.raw();
            let decoded = raw.decode(&self.naming).map_err(|e| e.to_string());
            items.push(Item { raw, decoded });
        }
        if positions.values().all(|&at| at >= last) {
            return Ok(positions);
        }
        // Ended (and exported) when this function returns, after the commit.
        let _event_spans = event_spans(&items);
        let mut at = positions;
        match self.commit(layout, &at, last, &items, None).await {
            Ok(()) => {}
            Err(error) if error.is_transient() => return Err(error),
            Err(error) => {
                tracing::warn!(%error, "a batch failed; applying its events one by one");
                for item in &items {
                    at = self.apply_one(layout, at, item).await?;
                }
                self.commit(layout, &at, last, &[], None).await?;
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
            .projection_batch_duration
            .get_or_create(&LABELS)
            .observe(started.elapsed().as_secs_f64());
        Ok(advance(&at, last))
    }

    /// What the lanes need of a delivered message, parsed once here: its sequence, storage
    /// time, what the stream holds after it, and its partition. `None` for a message without
    /// JetStream metadata (never one of the stream's).
    fn envelope(
        &self,
        layout: Layout,
        next: Option<Result<async_nats::jetstream::Message, OrderedError>>,
    ) -> Result<Option<Envelope>, ProjectionError> {
        let message = match next {
            Some(Ok(message)) => message,
            Some(Err(e)) => return Err(ProjectionError::Stream(e.to_string())),
            None => return Err(ProjectionError::Stream("the consumer closed".into())),
        };
        let Ok(info) = message.info() else {
            return Ok(None);
        };
        let (sequence, published, pending) = (info.stream_sequence, info.published, info.pending);
        let partition =
            layout::partition_of_subject(&self.naming, message.subject.as_str(), layout.partitions);
        Ok(Some(Envelope {
            message,
            sequence,
            published,
            pending,
            partition,
        }))
    }

    /// Applies one event, retrying with backoff; dead-letters it when it keeps failing.
    async fn apply_one(
        &self,
        layout: Layout,
        positions: Positions,
        item: &Item<'_>,
    ) -> Result<Positions, ProjectionError> {
        let to = item.raw.sequence;
        let mut backoff = self.options.min_backoff;
        let mut attempt = 1;
        loop {
            let error = match self
                .commit(layout, &positions, to, std::slice::from_ref(item), None)
                .await
            {
                Ok(()) => return Ok(advance(&positions, to)),
                Err(error) if error.is_transient() => return Err(error),
                Err(error) => error,
            };
            if attempt >= self.options.attempts_before_dead_letter {
                let dead = (item, error.to_string(), attempt as i32);
                self.commit(layout, &positions, to, &[], Some(dead)).await?;
                return Ok(advance(&positions, to));
            }
            tracing::warn!(sequence = to, attempt, %error, "applying an event failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.options.max_backoff);
            attempt += 1;
        }
    }

    /// One transaction: lock the checkpoints at `from`, dead-letter what cannot be decoded (and
    /// `dead`, if given), apply the rest except quarantined tasks, move the checkpoints to `to`.
    async fn commit(
        &self,
        layout: Layout,
        from: &Positions,
        to: u64,
        items: &[Item<'_>],
        dead: Option<(&Item<'_>, String, i32)>,
    ) -> Result<(), ProjectionError> {
        let mut tx = self.pool.begin().await?;
        checkpoint::lock_at(&mut tx, TASKS_PROJECTION, layout, from).await?;
        let mut quarantined = dead_letters::quarantined(&mut tx, TASKS_PROJECTION).await?;
        let mut failures: Vec<(&Item<'_>, String, i32)> = dead.into_iter().collect();
        let mut events = Vec::with_capacity(items.len());
        for item in items.iter().filter(|i| i.raw.sequence <= to) {
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
        let partitions: Vec<u16> = from.keys().copied().collect();
        checkpoint::set(&mut tx, TASKS_PROJECTION, &partitions, to).await?;
        if self.announce {
            checkpoint::notify(
                &mut tx,
                TASKS_PROJECTION,
                layout.partitions,
                &partitions,
                to,
            )
            .await?;
        }
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

/// Batches of at most this many events get a span per event. Live batches are small (one to a
/// few dozen events), and each event's span continues the trace of the command that appended
/// it, so a trace shows when its event reached the read model. Larger batches are a catch-up
/// or a rebuild: the commands' traces ended long ago, and a span per event (a million of them
/// in a rebuild) would cost throughput and flood the collector; the batch's own span covers
/// them.
const TRACED_BATCH_EVENTS: usize = 64;

/// A `projection.apply` span per event of a small batch, each a child of the span that
/// appended the event (its `traceparent`) and linked to the batch's span; they end when
/// dropped, after the batch has committed.
fn event_spans(items: &[Item<'_>]) -> Vec<tracing::Span> {
    if items.len() > TRACED_BATCH_EVENTS {
        return Vec::new();
    }
    let batch = tracing::Span::current();
    items
        .iter()
        .filter_map(|item| {
            let traceparent = item.raw.header(eventstore::headers::TRACEPARENT)?;
            let span = tracing::info_span!(
                parent: None,
                "projection.apply",
                otel.name = "project tasks",
                otel.kind = "consumer",
                projection = TASKS_PROJECTION,
                messaging.system = "nats",
                messaging.destination.name = item.raw.subject,
                position = item.raw.sequence,
                batch_events = items.len(),
            );
            telemetry::trace_context::continue_trace(&span, traceparent);
            span.follows_from(&batch);
            Some(span)
        })
        .collect()
}

/// Every partition moved forward to `to` (a partition already past it stays where it is).
fn advance(positions: &Positions, to: u64) -> Positions {
    positions
        .iter()
        .map(|(p, at)| (*p, (*at).max(to)))
        .collect()
}

/// A stream message and what decoding it gave.
struct Item<'a> {
    raw: RawEvent<'a>,
    decoded: Result<RecordedEvent, String>,
}
