//! Where queries read: the primary, or a streaming replica of it.
//!
//! Commands, the projector, migrations, `verify` and erasure always use the primary; only the
//! read model's queries (a task, lists, insights) may go to a replica, to take their load off
//! the database that the projector writes.
//!
//! A replica lags the primary, so `Tm-Min-Position` is waited for on the replica's own copy
//! of the checkpoints ([`crate::position::Follow::Polling`]: hot standbys deliver no
//! notifications), and a query that must see a position reads the replica only once its watch
//! has seen it there. Since the primary is always at least as far as any replica of it, a
//! query can always move *to* the primary without losing a write it must see, never the
//! other way.
//!
//! A replica that is down does not fail queries: they are answered by the primary, with a log
//! when it goes down (and comes back) and the metric
//! `taskmaster_read_queries_total{source="primary_fallback"}`. It counts as down from the
//! first failed query or checkpoint read until a read of its checkpoints succeeds again
//! (polled every 500 ms), so a dead replica costs one failed query, not one per request.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use telemetry::metrics::ReadLabels;
use telemetry::Metrics;

use crate::error::ProjectionError;
use crate::position::{Behind, PositionWatch};
use crate::{checkpoint, TASKS_PROJECTION};

/// The `application_name` of the replica's connections (unless its URL names one), so they
/// can be told apart in the replica's `pg_stat_activity`.
pub const REPLICA_APPLICATION_NAME: &str = "taskmaster-replica-reads";

/// An error a query can fail with, told apart by whether the database caused it: then the
/// replica may be at fault and the primary is worth asking. Other failures (a client's bad
/// cursor, a row that does not fit) would fail the same way there.
pub trait ReadFailure {
    /// Whether the database (connection, statement) failed.
    fn is_database(&self) -> bool;
}

impl ReadFailure for ProjectionError {
    fn is_database(&self) -> bool {
        matches!(self, ProjectionError::Database(_))
    }
}

/// The read model on a replica.
#[derive(Debug, Clone)]
struct Replica {
    pool: PgPool,
    /// The replica's own checkpoints, polled.
    positions: PositionWatch,
}

/// Where the queries of one process read, and the position they wait on. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ReadSource {
    primary: PgPool,
    /// The primary's checkpoints, followed by notifications.
    positions: PositionWatch,
    replica: Option<Replica>,
    metrics: Arc<Metrics>,
}

/// How a replica's readiness check went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// The position the replica's read model has reached.
    pub position: u64,
    /// How far the primary's read model is ahead of it, in events (as last seen by both
    /// watches).
    pub lag_events: u64,
}

impl ReadSource {
    /// Queries read `primary`, whose checkpoints `positions` follows.
    pub fn new(primary: PgPool, positions: PositionWatch, metrics: Arc<Metrics>) -> Self {
        Self {
            primary,
            positions,
            replica: None,
            metrics,
        }
    }

    /// Queries read the replica behind `pool` whenever it is up and has replayed what they
    /// must see; `positions` must follow the replica's checkpoints
    /// ([`crate::position::Follow::Polling`]).
    pub fn with_replica(mut self, pool: PgPool, positions: PositionWatch) -> Self {
        self.replica = Some(Replica { pool, positions });
        self
    }

    /// Whether a replica is configured.
    pub fn has_replica(&self) -> bool {
        self.replica.is_some()
    }

    /// Whether queries go to the replica now (configured and not known to be down).
    pub fn replica_in_use(&self) -> bool {
        self.live_replica().is_some()
    }

    fn live_replica(&self) -> Option<&Replica> {
        self.replica
            .as_ref()
            .filter(|replica| replica.positions.is_reachable())
    }

    /// The primary database: where the command path reads facts that must be current.
    pub fn primary(&self) -> &PgPool {
        &self.primary
    }

    /// Whether the primary's checkpoint could be read last time it was looked at.
    pub fn primary_reachable(&self) -> bool {
        self.positions.is_reachable()
    }

    /// Waits until the primary has applied `position`, at most `timeout`.
    pub async fn wait_for_primary(&self, position: u64, timeout: Duration) -> Result<u64, Behind> {
        self.positions.wait_for(position, timeout).await
    }

    /// The position the database that queries read has reached, as last seen.
    pub fn current(&self) -> u64 {
        match self.live_replica() {
            Some(replica) => replica.positions.current(),
            None => self.positions.current(),
        }
    }

    /// Waits until the database queries read has applied `position`, at most `timeout`:
    /// the replica while it is up (if it goes down meanwhile, the primary for the time left),
    /// else the primary. A replica that is up but too far behind answers [`Behind`] with its
    /// own position, as the primary would.
    pub async fn wait_for(&self, position: u64, timeout: Duration) -> Result<u64, Behind> {
        let started = Instant::now();
        if let Some(replica) = self.live_replica() {
            let mut reachability = replica.positions.reachability();
            let went_down = async {
                let _ = reachability.wait_for(|up| !*up).await;
            };
            tokio::select! {
                reached = replica.positions.wait_for(position, timeout) => return reached,
                () = went_down => {}
            }
        }
        let left = timeout.saturating_sub(started.elapsed());
        self.positions.wait_for(position, left).await
    }

    /// Runs one query (`run`, given a pool) on the replica when it is up and has reached
    /// `at_least` (the position the caller waited for, if any), else on the primary; a
    /// database failure on the replica marks it down and runs the query again on the primary.
    pub async fn query<T, E, F, Fut>(&self, at_least: Option<u64>, run: F) -> Result<T, E>
    where
        F: Fn(PgPool) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: ReadFailure + Display,
    {
        let Some(replica) = &self.replica else {
            self.count("primary");
            return run(self.primary.clone()).await;
        };
        let reached = at_least.is_none_or(|p| replica.positions.current() >= p);
        if replica.positions.is_reachable() && reached {
            match run(replica.pool.clone()).await {
                Ok(value) => {
                    self.count("replica");
                    return Ok(value);
                }
                Err(error) if error.is_database() => {
                    replica.positions.mark_unreachable();
                    tracing::warn!(%error, "a query failed on the read replica; answering from the primary until the replica's checkpoint can be read again");
                }
                Err(error) => return Err(error),
            }
        }
        self.count("primary_fallback");
        run(self.primary.clone()).await
    }

    /// Checks the replica, when one is configured, by reading its checkpoint: what
    /// `/health/ready` reports. The result also routes queries (a success brings a replica
    /// that was down back into use at once, a failure takes it out).
    pub async fn check_replica(&self) -> Option<Result<ReplicaStatus, ProjectionError>> {
        let replica = self.replica.as_ref()?;
        let checked = checkpoint::load(&replica.pool, TASKS_PROJECTION).await;
        Some(match checked {
            Ok(position) => {
                replica.positions.mark_reachable();
                Ok(ReplicaStatus {
                    position,
                    lag_events: self.positions.current().saturating_sub(position),
                })
            }
            Err(error) => {
                replica.positions.mark_unreachable();
                Err(error)
            }
        })
    }

    fn count(&self, source: &'static str) {
        self.metrics
            .read_queries
            .get_or_create(&ReadLabels { source })
            .inc();
    }
}
