//! The `ml` role and `taskmaster replay ml`.
//!
//! The worker replays the log from the start into a [`TrainingSet`], trains, and publishes the
//! result when it beats the serving version (or when there is none). It then keeps reading
//! the same ordered consumer: every new event is learnt as it arrives (the training set and
//! every owner's history stay current, so a retrain never re-reads the log), and after
//! `retrain_after` new completions, or `retrain_interval` with at least one, it retrains fully
//! (re-tuning on the newest holdout) and publishes under the same rule.

use std::time::{Duration, Instant};

use eventstore::EventStore;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::registry::{ModelRegistry, Pointer};
use crate::train::{train, Comparison, Holdout, Trained, TrainingSet};
use crate::MlError;

/// How the worker learns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkerOptions {
    /// New completions that trigger a full retrain.
    pub retrain_after: usize,
    /// Longest time between retrains while completions arrive.
    pub retrain_interval: Duration,
    /// Share of the newest completions held out.
    pub holdout: f64,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            retrain_after: 200,
            retrain_interval: Duration::from_secs(3600),
            holdout: 0.2,
        }
    }
}

/// What a training round decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Published as this version.
    Published(Pointer),
    /// The serving version stays: the candidate did not beat it.
    Kept(Comparison),
}

/// What one training round did and how long it took.
#[derive(Debug, Clone)]
pub struct RoundReport {
    /// Events read from the log in this round (0 for a live retrain).
    pub events: u64,
    /// Completions learnt from in all.
    pub completions: usize,
    /// Time spent reading and folding events.
    pub replay: Duration,
    /// Time spent tuning and fitting.
    pub training: Duration,
    /// Holdout metrics of the candidate, as JSON-friendly numbers.
    pub candidate: crate::model::EffortMetrics,
    /// What happened to the candidate.
    pub decision: Decision,
}

/// The `ml` role.
#[derive(Debug, Clone)]
pub struct MlWorker {
    store: std::sync::Arc<EventStore>,
    registry: ModelRegistry,
    options: WorkerOptions,
    metrics: Option<std::sync::Arc<telemetry::Metrics>>,
}

/// Reads the log from the start up to its current head into a fresh training set; calls
/// `progress(done, total)` now and then.
pub async fn replay_log(
    store: &EventStore,
    mut progress: impl FnMut(u64, u64),
) -> Result<(TrainingSet, u64), MlError> {
    let head = store.head_position().await?;
    let mut set = TrainingSet::default();
    let mut events = 0u64;
    if head == 0 {
        return Ok((set, 0));
    }
    let messages = store.read_from(None, 1).await?;
    futures::pin_mut!(messages);
    while let Some(item) = messages.next().await {
        match item {
            Ok(event) => {
                let position = event.position;
                set.observe(&event);
                events += 1;
                if events % 50_000 == 0 {
                    progress(position, head);
                }
                if position >= head {
                    break;
                }
            }
            // An event no release can decode teaches nothing; the projector dead-letters it.
            Err(eventstore::StoreError::Corrupt { .. }) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    progress(head, head);
    Ok((set, events))
}

/// Trains on `set` off the async runtime (it is CPU work) and hands the set back.
async fn train_blocking(
    set: TrainingSet,
    holdout: Holdout,
) -> Result<(TrainingSet, Result<Trained, MlError>), MlError> {
    tokio::task::spawn_blocking(move || {
        let trained = train(&set, holdout, chrono::Utc::now());
        (set, trained)
    })
    .await
    .map_err(|e| MlError::Training(format!("training task: {e}")))
}

/// Publishes `trained` if there is no serving version or it beats the serving one.
pub async fn decide(registry: &ModelRegistry, trained: Trained) -> Result<Decision, MlError> {
    match registry.current().await? {
        Some(current) => {
            let comparison = Comparison::of(&trained, &current);
            if comparison.candidate_wins() {
                Ok(Decision::Published(registry.publish(trained.model).await?))
            } else {
                tracing::info!(?comparison, "the serving model stays");
                Ok(Decision::Kept(comparison))
            }
        }
        None => Ok(Decision::Published(registry.publish(trained.model).await?)),
    }
}

/// The span of learning one live event: a child of the span that appended it, so a command's
/// trace shows the learner taking it in. Only live events get one: the replay at start (up to
/// millions of events, from commands whose traces ended long ago) runs without.
fn learn_span(event: &eventstore::RecordedEvent) -> tracing::Span {
    let span = tracing::info_span!(
        parent: None,
        "ml.learn",
        otel.name = "learn event",
        otel.kind = "consumer",
        event_type = %event.event_type,
        position = event.position,
    );
    if let Some(traceparent) = &event.traceparent {
        telemetry::trace_context::continue_trace(&span, traceparent);
    }
    span
}

impl MlWorker {
    /// A worker over `store`, publishing to `registry`.
    pub fn new(
        store: std::sync::Arc<EventStore>,
        registry: ModelRegistry,
        options: WorkerOptions,
    ) -> Self {
        Self {
            store,
            registry,
            options,
            metrics: None,
        }
    }

    /// Counts training rounds by outcome in `metrics`.
    pub fn with_metrics(mut self, metrics: std::sync::Arc<telemetry::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Sets `taskmaster_consumer_lag_events{consumer="ml"}`: events in the stream after the
    /// last one learnt. Set first when the worker starts following live events, so the gauge
    /// also tells that the initial replay is done.
    async fn sample_lag(&self, learnt: u64) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        if let Ok(head) = self.store.head_position().await {
            metrics
                .consumer_lag
                .get_or_create(&telemetry::metrics::ConsumerLabels { consumer: "ml" })
                .set(head.saturating_sub(learnt) as i64);
        }
    }

    /// One full round as `taskmaster replay ml` runs it: replay from the start, train,
    /// publish if better.
    pub async fn rebuild(&self, progress: impl FnMut(u64, u64)) -> Result<RoundReport, MlError> {
        let started = Instant::now();
        let (set, events) = replay_log(&self.store, progress).await?;
        let replay = started.elapsed();
        self.round(set, events, replay).await?.1
    }

    /// Trains and decides; the training set comes back whatever happened, so a failed round
    /// (the registry unreachable, say) costs no replay.
    async fn round(
        &self,
        set: TrainingSet,
        events: u64,
        replay: Duration,
    ) -> Result<(TrainingSet, Result<RoundReport, MlError>), MlError> {
        let started = Instant::now();
        let completions = set.completions();
        let (set, trained) = train_blocking(set, Holdout::Fraction(self.options.holdout)).await?;
        let training = started.elapsed();
        let report = match trained {
            Ok(trained) => {
                let candidate = trained.model.effort_metrics;
                decide(&self.registry, trained)
                    .await
                    .map(|decision| RoundReport {
                        events,
                        completions,
                        replay,
                        training,
                        candidate,
                        decision,
                    })
            }
            Err(error) => Err(error),
        };
        if let Some(metrics) = &self.metrics {
            let outcome = match &report {
                Ok(RoundReport {
                    decision: Decision::Published(_),
                    ..
                }) => "published",
                Ok(_) => "kept",
                Err(_) => "failed",
            };
            metrics
                .model_trainings
                .get_or_create(&telemetry::metrics::OutcomeLabels { outcome })
                .inc();
        }
        Ok((set, report))
    }

    /// Runs the role until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), MlError> {
        let started = Instant::now();
        let (mut set, events) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            replayed = replay_log(&self.store, |_, _| {}) => replayed?,
        };
        tracing::info!(events, completions = set.completions(), elapsed = ?started.elapsed(), "ml: replayed the log");
        let mut since_retrain = 0usize;
        if set.completions() > 0 {
            let (kept, report) = self.round(set, events, started.elapsed()).await?;
            set = kept;
            if let Err(error) = report {
                tracing::error!(%error, "ml: training failed; retrying with the next events");
                since_retrain = self.options.retrain_after;
            }
        }
        let mut last_retrain = Instant::now();
        let messages = self
            .store
            .follow(None, set.position() + 1, eventstore::follow::STALL_CHECK)
            .await?;
        futures::pin_mut!(messages);
        let mut tick =
            tokio::time::interval(Duration::from_secs(5).min(self.options.retrain_interval));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tick.tick() => self.sample_lag(set.position()).await,
                item = messages.next() => match item {
                    Some(Ok(event)) => {
                        let before = set.completions();
                        learn_span(&event).in_scope(|| set.observe(&event));
                        since_retrain += set.completions() - before;
                    }
                    Some(Err(eventstore::StoreError::Corrupt { .. })) => {}
                    Some(Err(error)) => return Err(error.into()),
                    None => return Ok(()),
                },
            }
            let due = since_retrain >= self.options.retrain_after
                || (since_retrain > 0 && last_retrain.elapsed() >= self.options.retrain_interval);
            if due {
                let (kept, report) = self.round(set, 0, Duration::ZERO).await?;
                set = kept;
                last_retrain = Instant::now();
                match report {
                    Ok(report) => {
                        tracing::info!(decision = ?report.decision, "ml: retrained");
                        since_retrain = 0;
                    }
                    Err(error) => tracing::error!(%error, "ml: retraining failed; will retry"),
                }
            }
        }
    }
}
