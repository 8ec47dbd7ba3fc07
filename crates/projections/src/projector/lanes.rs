//! Lanes: the owned partitions dealt round-robin into groups, each a task that applies every
//! batch to its own partitions and commits on its own connection, fed by the one stream reader.
//!
//! Partitions are independent (their own checkpoint rows, a task's events all in one), so lanes
//! commit in parallel without ever waiting on each other's locks, and Postgres works on as many
//! batches at once as there are lanes, while the reader already gathers (and the lanes decode)
//! the next batch. A task's events stay in order: one partition, one lane, one batch at a time.

use std::sync::Arc;

use eventstore::envelope::RawEvent;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::Projector;
use crate::checkpoint::Positions;
use crate::error::ProjectionError;
use crate::layout::Layout;

/// The lanes of one `Projector::follow`.
pub(super) struct Lanes {
    senders: Vec<mpsc::Sender<Arc<Batch>>>,
    /// Aborted on drop, so lanes never outlive the projector that started them.
    tasks: JoinSet<Result<(), ProjectionError>>,
    /// Per lane, the lowest checkpoint of its partitions.
    pub(super) reached: watch::Receiver<Vec<u64>>,
}

/// A delivered message with what every lane needs of it, parsed once by the reader.
pub(super) struct Envelope {
    pub(super) message: async_nats::jetstream::Message,
    pub(super) sequence: u64,
    pub(super) published: chrono::DateTime<chrono::Utc>,
    pub(super) pending: u64,
    pub(super) partition: u16,
}

impl Envelope {
    pub(super) fn raw(&self) -> RawEvent<'_> {
        RawEvent {
            subject: self.message.subject.as_str(),
            sequence: self.sequence,
            headers: self.message.headers.as_ref(),
            payload: &self.message.payload,
            time: self.published,
        }
    }
}

/// One batch of the stream, shared by every lane; each applies its own partitions' events.
pub(super) struct Batch {
    pub(super) envelopes: Vec<Envelope>,
    /// The sequence of its last message: where every lane's checkpoints move.
    pub(super) last: u64,
}

/// Batches waiting for a lane while it commits; it takes them all at once for its next commit.
const LANE_QUEUE: usize = 4;

impl Lanes {
    pub(super) fn start(projector: &Projector, layout: Layout, positions: Positions) -> Self {
        let count = projector.options.lanes.clamp(1, positions.len().max(1));
        let mut groups = vec![Positions::new(); count];
        for (i, (partition, at)) in positions.into_iter().enumerate() {
            groups[i % count].insert(partition, at);
        }
        let lowest = |p: &Positions| p.values().copied().min().unwrap_or(0);
        let (reached_tx, reached) = watch::channel(groups.iter().map(lowest).collect::<Vec<_>>());
        let mut senders = Vec::with_capacity(count);
        let mut tasks = JoinSet::new();
        for (lane, mut positions) in groups.into_iter().enumerate() {
            let (sender, mut batches) = mpsc::channel::<Arc<Batch>>(LANE_QUEUE);
            senders.push(sender);
            let projector = projector.clone();
            let reached_tx = reached_tx.clone();
            let merge_up_to = if projector.merge_queued {
                projector.options.max_batch
            } else {
                0
            };
            tasks.spawn(async move {
                while let Some(first) = batches.recv().await {
                    // Small batches queued while the last commit ran go into this one, so a
                    // busy live lane commits fewer, larger transactions instead of falling
                    // behind one small commit (and fsync) at a time.
                    let mut size = first.envelopes.len();
                    let mut taken = vec![first];
                    while size < merge_up_to {
                        let Ok(more) = batches.try_recv() else { break };
                        size += more.envelopes.len();
                        taken.push(more);
                    }
                    positions = projector.apply(layout, positions, &taken).await?;
                    let at = lowest(&positions);
                    reached_tx.send_modify(|r| r[lane] = at);
                }
                Ok(())
            });
        }
        Self {
            senders,
            tasks,
            reached,
        }
    }

    /// Hands a batch to every lane (each applies its own partitions' events from it), waiting
    /// while they are busy; fails with a lane's error if one has stopped.
    pub(super) async fn send(&mut self, batch: Arc<Batch>) -> Result<(), ProjectionError> {
        for sender in &self.senders {
            if sender.send(batch.clone()).await.is_err() {
                return Err(self.failure().await);
            }
        }
        Ok(())
    }

    /// Completes when a lane stops, which only an error makes it do while batches may come.
    pub(super) async fn failure(&mut self) -> ProjectionError {
        match self.tasks.join_next().await {
            Some(Ok(Err(error))) => error,
            Some(Err(panicked)) => ProjectionError::Stream(format!("a lane failed: {panicked}")),
            Some(Ok(Ok(()))) => ProjectionError::Stream("a lane stopped".into()),
            None => std::future::pending().await,
        }
    }

    /// Lets every lane apply the batches it holds, then stops them.
    pub(super) async fn finish(mut self) -> Result<(), ProjectionError> {
        self.senders.clear();
        while let Some(done) = self.tasks.join_next().await {
            done.map_err(|e| ProjectionError::Stream(format!("a lane failed: {e}")))??;
        }
        Ok(())
    }
}
