//! Read-your-writes: waiting until the read model has applied a given stream position.
//!
//! On the primary, the projector's transaction sends `NOTIFY taskmaster_projection_position,
//! 'tasks:<n>:<total>:<partitions>'`, which Postgres delivers only when the transaction commits,
//! so a notification means the rows are visible. The read model has reached `n` once every
//! partition has, so one follower per process keeps each partition's position and feeds the
//! lowest into a `watch` channel that any number of requests wait on. A slow poll of the
//! checkpoints covers notifications lost while reconnecting.
//!
//! A hot standby delivers no notifications (`LISTEN` is refused in recovery), so a watch on a
//! replica ([`Follow::Polling`]) reads the replica's own copy of the checkpoints instead: fast
//! while a request is waiting, slowly otherwise. Both are the same follower loop with another
//! [`Cadence`]; only where wake-ups come from differs. A checkpoint that the replica shows has
//! been replayed together with the rows of its transaction, so any query that starts after the
//! watch saw it reads those rows.
//!
//! The follower also records whether its last read of the checkpoints succeeded
//! ([`PositionWatch::is_reachable`]): for a replica, that is what routes queries to it or
//! away from it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::Announcement;
use crate::error::ProjectionError;
use crate::{checkpoint, layout, POSITION_CHANNEL};

/// How often the checkpoint is read when nobody waits (and, on the primary, at all: there the
/// notifications carry the news and the poll only covers lost ones).
const POLL_EVERY: Duration = Duration::from_millis(500);

/// How often a replica's checkpoint is read while a request waits on it: the most this adds
/// to a read-your-writes answer, for two small indexed reads per interval per process.
pub const REPLICA_POLL_WHILE_WAITING: Duration = Duration::from_millis(10);

/// Where a watch learns that the checkpoints moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// The primary: commit-time notifications, plus a slow poll for those lost while the
    /// listener reconnects.
    Notifications,
    /// A hot standby, which delivers no notifications: polling its copy of the checkpoints,
    /// every [`REPLICA_POLL_WHILE_WAITING`] while a request waits, else every 500 ms.
    Polling,
}

/// The timing of one kind of follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cadence {
    /// Whether to `LISTEN` for the projector's notifications.
    listen: bool,
    /// Between polls while nobody waits.
    idle: Duration,
    /// Between polls while a request waits.
    while_waiting: Duration,
}

impl Follow {
    fn cadence(self) -> Cadence {
        match self {
            Follow::Notifications => Cadence {
                listen: true,
                idle: POLL_EVERY,
                while_waiting: POLL_EVERY,
            },
            Follow::Polling => Cadence {
                listen: false,
                idle: POLL_EVERY,
                while_waiting: REPLICA_POLL_WHILE_WAITING,
            },
        }
    }

    /// How logs name the database followed.
    fn source(self) -> &'static str {
        match self {
            Follow::Notifications => "primary",
            Follow::Polling => "replica",
        }
    }
}

/// What requests and the follower share besides the position itself.
#[derive(Debug)]
struct Shared {
    /// Requests waiting for a position not reached yet: a polling follower polls fast while
    /// there are any.
    waiting: AtomicUsize,
    /// Wakes the follower when a request starts waiting, so its first fast poll is not put
    /// off by a slow one already scheduled.
    arrived: Notify,
    /// Whether the last read of the checkpoints (or a query on the same database) succeeded.
    reachable: watch::Sender<bool>,
}

/// Counts a waiting request for as long as it lives (also when its future is dropped).
struct Waiting<'a>(&'a Shared);

impl<'a> Waiting<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.waiting.fetch_add(1, Ordering::SeqCst);
        shared.arrived.notify_one();
        Self(shared)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The read model's position on one database, kept current in the background.
#[derive(Debug, Clone)]
pub struct PositionWatch {
    rx: watch::Receiver<u64>,
    shared: Arc<Shared>,
}

/// The read model did not reach the requested position in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Behind {
    /// The position the read model has reached.
    pub current: u64,
}

impl PositionWatch {
    /// Starts following the checkpoint of `projection` on the primary (notifications plus a
    /// slow poll) until `shutdown`. Fails when the checkpoint cannot be read at all.
    pub async fn start(
        pool: PgPool,
        projection: &'static str,
        shutdown: CancellationToken,
    ) -> Result<Self, ProjectionError> {
        let initial = checkpoint::load(&pool, projection).await?;
        Ok(Self::spawn(
            pool,
            projection,
            Follow::Notifications,
            initial,
            shutdown,
        ))
    }

    /// Starts following the checkpoint of `projection` as `follow` says, until `shutdown`.
    /// Never fails: a database that cannot be read yet (a replica that is down, or has not
    /// replayed the database's creation) starts at position 0, unreachable, and is polled
    /// until it answers.
    pub async fn start_with(
        pool: PgPool,
        projection: &'static str,
        follow: Follow,
        shutdown: CancellationToken,
    ) -> Self {
        let initial = match checkpoint::load(&pool, projection).await {
            Ok(position) => Some(position),
            Err(error) => {
                tracing::warn!(source = follow.source(), %error, "the read model's checkpoint cannot be read yet; following it anyway");
                None
            }
        };
        let watch = Self::spawn(pool, projection, follow, initial.unwrap_or(0), shutdown);
        watch.shared.reachable.send_replace(initial.is_some());
        watch
    }

    fn spawn(
        pool: PgPool,
        projection: &'static str,
        follow: Follow,
        initial: u64,
        shutdown: CancellationToken,
    ) -> Self {
        let (tx, rx) = watch::channel(initial);
        let shared = Arc::new(Shared {
            waiting: AtomicUsize::new(0),
            arrived: Notify::new(),
            reachable: watch::channel(true).0,
        });
        tokio::spawn(run_follower(
            pool,
            projection,
            follow,
            tx,
            shared.clone(),
            shutdown,
        ));
        Self { rx, shared }
    }

    /// The position the read model has reached, as last seen.
    pub fn current(&self) -> u64 {
        *self.rx.borrow()
    }

    /// Waits until the read model has applied `position`, at most `timeout`.
    pub async fn wait_for(&self, position: u64, timeout: Duration) -> Result<u64, Behind> {
        let current = self.current();
        if current >= position {
            return Ok(current);
        }
        let _waiting = Waiting::new(&self.shared);
        let mut rx = self.rx.clone();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|p| *p >= position)).await;
        match reached {
            Ok(Ok(p)) => Ok(*p),
            _ => Err(Behind {
                current: self.current(),
            }),
        }
    }

    /// Whether the last read of the checkpoints on this database succeeded (and no query
    /// failed on it since).
    pub fn is_reachable(&self) -> bool {
        *self.shared.reachable.borrow()
    }

    /// Follows [`Self::is_reachable`]: for switching away from a database that stops
    /// answering while a request waits on it.
    pub fn reachability(&self) -> watch::Receiver<bool> {
        self.shared.reachable.subscribe()
    }

    /// Records that a query on this database failed: it counts as unreachable until the
    /// follower's next successful read of the checkpoints (at most 500 ms away when it is up).
    pub fn mark_unreachable(&self) {
        self.shared.reachable.send_replace(false);
    }

    /// Records that a check of this database (a readiness probe) succeeded.
    pub fn mark_reachable(&self) {
        self.shared.reachable.send_replace(true);
    }
}

/// What the follower knows of the partitions' checkpoints.
#[derive(Debug, Default)]
struct Seen {
    /// Partitions of the stored layout (0 until one is known).
    total: u16,
    positions: HashMap<u16, u64>,
}

impl Seen {
    fn merge(&mut self, partition: u16, position: u64) {
        let entry = self.positions.entry(partition).or_insert(0);
        *entry = (*entry).max(position);
    }

    /// The lowest checkpoint over the layout's partitions, once each has one.
    fn reached(&self) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        (0..self.total)
            .map(|p| self.positions.get(&p).copied())
            .collect::<Option<Vec<u64>>>()?
            .into_iter()
            .min()
    }

    async fn poll(&mut self, pool: &PgPool, projection: &str) -> Result<(), ProjectionError> {
        if let Some(layout) = layout::load(pool, projection).await? {
            self.total = layout.partitions;
        }
        for (partition, position) in checkpoint::load_partitions(pool, projection).await? {
            self.merge(partition, position);
        }
        Ok(())
    }
}

async fn run_follower(
    pool: PgPool,
    projection: &'static str,
    follow: Follow,
    tx: watch::Sender<u64>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let cadence = follow.cadence();
    let mut seen = Seen::default();
    let publish = |seen: &Seen| {
        let Some(position) = seen.reached() else {
            return;
        };
        tx.send_if_modified(|current| {
            let newer = position > *current;
            if newer {
                *current = position;
            }
            newer
        });
    };
    let report = |result: &Result<(), ProjectionError>| {
        let up = result.is_ok();
        let was = shared.reachable.send_replace(up);
        match result {
            Err(error) if was => {
                tracing::warn!(source = follow.source(), %error, "the read model's checkpoint cannot be read");
            }
            Ok(()) if !was => {
                tracing::info!(
                    source = follow.source(),
                    "the read model's checkpoint can be read again"
                );
            }
            _ => {}
        }
    };
    let pause = || {
        if shared.waiting.load(Ordering::SeqCst) > 0 {
            cadence.while_waiting
        } else {
            cadence.idle
        }
    };
    // The first poll is at once; after a lost listener, the next one keeps its cadence, so a
    // database that refuses connections is not retried in a tight loop.
    let mut last_poll = Instant::now();
    let mut next_poll = last_poll;
    while !shutdown.is_cancelled() {
        let mut listener = if cadence.listen {
            match PgListener::connect_with(&pool).await {
                Ok(mut listener) => match listener.listen(POSITION_CHANNEL).await {
                    Ok(()) => Some(listener),
                    Err(_) => None,
                },
                Err(_) => None,
            }
        } else {
            None
        };
        if listener.is_some() {
            // Listening (again): read the checkpoints at once for what was missed meanwhile.
            next_poll = Instant::now();
        }
        loop {
            let notified = async {
                match listener.as_mut() {
                    Some(l) => l.recv().await.map(Some),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(next_poll) => {
                    let polled = seen.poll(&pool, projection).await;
                    report(&polled);
                    if polled.is_ok() {
                        publish(&seen);
                    }
                    last_poll = Instant::now();
                    next_poll = last_poll + pause();
                    if cadence.listen && listener.is_none() {
                        break; // try to listen again
                    }
                }
                _ = shared.arrived.notified() => {
                    // A request started waiting: poll at the waiting cadence from now on.
                    next_poll = next_poll.min(last_poll + pause());
                }
                received = notified => match received {
                    Ok(Some(n)) => {
                        if let Some(a) = Announcement::parse(projection, n.payload()) {
                            seen.total = a.total;
                            for partition in a.partitions {
                                seen.merge(partition, a.position);
                            }
                            publish(&seen);
                        }
                    }
                    _ => break,
                },
            }
        }
    }
}
