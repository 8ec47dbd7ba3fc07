//! Read-your-writes: waiting until the read model has applied a given stream position.
//!
//! The projector's transaction sends `NOTIFY taskmaster_projection_position,
//! 'tasks:<n>:<total>:<partitions>'`, which Postgres delivers only when the transaction commits,
//! so a notification means the rows are visible. The read model has reached `n` once every
//! partition has, so one listener per process keeps each partition's position and feeds the
//! lowest into a `watch` channel that any number of requests wait on. A slow poll of the
//! checkpoints covers notifications lost while reconnecting.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::Announcement;
use crate::error::ProjectionError;
use crate::{checkpoint, layout, POSITION_CHANNEL};

/// How often the checkpoint is read even without notifications.
const POLL_EVERY: Duration = Duration::from_millis(500);

/// The read model's position, kept current in the background.
#[derive(Debug, Clone)]
pub struct PositionWatch {
    rx: watch::Receiver<u64>,
}

/// The read model did not reach the requested position in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Behind {
    /// The position the read model has reached.
    pub current: u64,
}

impl PositionWatch {
    /// Starts following the checkpoint of `projection` until `shutdown`.
    pub async fn start(
        pool: PgPool,
        projection: &'static str,
        shutdown: CancellationToken,
    ) -> Result<Self, ProjectionError> {
        let initial = checkpoint::load(&pool, projection).await?;
        let (tx, rx) = watch::channel(initial);
        tokio::spawn(follow(pool, projection, tx, shutdown));
        Ok(Self { rx })
    }

    /// The position the read model has reached, as last seen.
    pub fn current(&self) -> u64 {
        *self.rx.borrow()
    }

    /// Waits until the read model has applied `position`, at most `timeout`.
    pub async fn wait_for(&self, position: u64, timeout: Duration) -> Result<u64, Behind> {
        let mut rx = self.rx.clone();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|p| *p >= position)).await;
        match reached {
            Ok(Ok(p)) => Ok(*p),
            _ => Err(Behind {
                current: self.current(),
            }),
        }
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

async fn follow(
    pool: PgPool,
    projection: &'static str,
    tx: watch::Sender<u64>,
    shutdown: CancellationToken,
) {
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
    while !shutdown.is_cancelled() {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(mut listener) => match listener.listen(POSITION_CHANNEL).await {
                Ok(()) => Some(listener),
                Err(_) => None,
            },
            Err(_) => None,
        };
        let mut poll = tokio::time::interval(POLL_EVERY);
        loop {
            let notified = async {
                match listener.as_mut() {
                    Some(l) => l.recv().await.map(Some),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = poll.tick() => {
                    if seen.poll(&pool, projection).await.is_ok() {
                        publish(&seen);
                    }
                    if listener.is_none() {
                        break; // try to listen again
                    }
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
