//! Read-your-writes: waiting until the read model has applied a given stream position.
//!
//! The projector's transaction sends `NOTIFY taskmaster_projection_position, 'tasks:<n>'`,
//! which Postgres delivers only when the transaction commits, so a notification means the rows
//! are visible. One listener per process feeds a `watch` channel that any number of requests
//! wait on. A slow poll of the checkpoint covers notifications lost while reconnecting.

use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::ProjectionError;
use crate::{checkpoint, POSITION_CHANNEL};

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

async fn follow(
    pool: PgPool,
    projection: &'static str,
    tx: watch::Sender<u64>,
    shutdown: CancellationToken,
) {
    let prefix = format!("{projection}:");
    let publish = |position: u64| {
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
                    if let Ok(position) = checkpoint::load(&pool, projection).await {
                        publish(position);
                    }
                    if listener.is_none() {
                        break; // try to listen again
                    }
                }
                received = notified => match received {
                    Ok(Some(n)) => {
                        if let Some(position) = n.payload().strip_prefix(&prefix).and_then(|p| p.parse().ok()) {
                            publish(position);
                        }
                    }
                    _ => break,
                },
            }
        }
    }
}
