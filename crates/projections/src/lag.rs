//! How far the read model is behind the log, sampled for the metrics.
//!
//! The projector sets its owned partitions' lag after every batch, but a partition nobody is
//! applying (its owner died and the lease has not moved yet, or Postgres is down and every
//! projector is backing off) would keep its last value. The sampler reads the truth instead:
//! the stream's head against each partition's stored checkpoint, plus the dead letters still
//! waiting, every few seconds, from every projector process (the values agree; dashboards take
//! the maximum).

use std::sync::Arc;
use std::time::Duration;

use eventstore::Naming;
use sqlx::PgPool;
use telemetry::metrics::{PartitionLabels, ProjectionLabels};
use telemetry::Metrics;
use tokio_util::sync::CancellationToken;

use crate::{checkpoint, layout, ProjectionError, TASKS_PROJECTION};

/// How often [`run`] samples.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Reads the stream's head, the checkpoints of the stored layout's partitions and the number
/// of dead letters, and sets `taskmaster_projection_lag_events{partition}` and
/// `taskmaster_dead_letters_pending`.
#[tracing::instrument(skip_all, err(level = "debug"))]
pub async fn sample(
    pool: &PgPool,
    jetstream: &async_nats::jetstream::Context,
    naming: &Naming,
    metrics: &Metrics,
) -> Result<(), ProjectionError> {
    let head = jetstream
        .get_stream_no_info(naming.stream())
        .await
        .map_err(|e| ProjectionError::Stream(e.to_string()))?
        .get_info()
        .await
        .map_err(|e| ProjectionError::Stream(e.to_string()))?
        .state
        .last_sequence;
    let Some(layout) = layout::load(pool, TASKS_PROJECTION).await? else {
        return Ok(());
    };
    let stored = checkpoint::load_partitions(pool, TASKS_PROJECTION).await?;
    for partition in layout.all_partitions() {
        let at = stored.get(&partition).copied().unwrap_or(0);
        metrics
            .projection_lag
            .get_or_create(&PartitionLabels {
                projection: TASKS_PROJECTION,
                partition: partition.to_string(),
            })
            .set(head.saturating_sub(at) as i64);
    }
    let (dead,): (i64,) = sqlx::query_as("SELECT count(*) FROM dead_letters WHERE projection = $1")
        .bind(TASKS_PROJECTION)
        .fetch_one(pool)
        .await?;
    metrics
        .dead_letters_pending
        .get_or_create(&ProjectionLabels {
            projection: TASKS_PROJECTION,
        })
        .set(dead);
    Ok(())
}

/// Samples every `every` until `shutdown`; a failed sample (a dependency down) leaves the last
/// values and is tried again next time: the projector itself reports the outage.
pub async fn run(
    pool: PgPool,
    jetstream: async_nats::jetstream::Context,
    naming: Naming,
    metrics: Arc<Metrics>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                let _ = sample(&pool, &jetstream, &naming, &metrics).await;
            }
        }
    }
}
