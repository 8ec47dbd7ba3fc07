//! Partition ownership: which projector process applies which partitions, through leases in a
//! NATS KV bucket.
//!
//! Each partition is a key (`<projection>.<total>.<partition>`) whose value names its owner.
//! A process takes a free partition with `create` (which only succeeds when the key is absent),
//! keeps it by renewing with `update` against the revision it holds (compare-and-set), and gives
//! it back with a revision-checked delete. The bucket's `max_age` is the lease TTL: a lease not
//! renewed in time disappears on its own, so the partitions of a process that died move to the
//! survivors within the TTL plus one renewal interval.
//!
//! A create or renewal whose answer was lost (the bucket's leader died mid-request) may still
//! have been stored; a key whose live value names this process is therefore taken as its own,
//! at the stored revision, rather than given up or waited out.
//!
//! Processes also keep a heartbeat key (`members.<projection>.<id>`, same TTL); each one aims at
//! `ceil(partitions / members)` partitions, takes free ones when under, and hands back its
//! highest ones when over, so the work spreads out as processes join and leave.
//!
//! Leases are an efficiency measure, not what keeps the read model exact: a process that lost
//! its lease without noticing (a long pause) can at worst commit one batch, and only if the
//! checkpoint is still where it read it, because every batch compares-and-sets the checkpoints
//! of its partitions in Postgres. Per-task order holds because a partition has one writer at a
//! time under that lock.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use bytes::Bytes;
use eventstore::Naming;
use futures::TryStreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::ProjectionError;

/// Lease timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseOptions {
    /// How long a lease lives without renewal: the bound on how long a dead process's
    /// partitions stay unowned. Renewal (and rebalancing) runs five times per TTL.
    pub ttl: Duration,
    /// Stream replicas of the lease bucket (3 on a cluster).
    pub replicas: usize,
}

impl Default for LeaseOptions {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(5),
            replicas: 1,
        }
    }
}

impl LeaseOptions {
    fn tick(&self) -> Duration {
        (self.ttl / 5).max(Duration::from_millis(50))
    }
}

/// The checked-in definition of the lease bucket's stream.
pub const PROJECTOR_LEASES_JSON: &str = include_str!("../../../nats/buckets/projector_leases.json");

/// The KV bucket of the leases of one deployment.
pub fn bucket_name(naming: &Naming) -> String {
    naming.scoped("projector_leases")
}

/// One process's claim on partitions of one projection.
pub struct PartitionLeases {
    kv: kv::Store,
    projection: &'static str,
    member: String,
    options: LeaseOptions,
}

impl std::fmt::Debug for PartitionLeases {
    // The store's own Debug prints the whole connection state; the names say enough.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionLeases")
            .field("bucket", &self.kv.name)
            .field("projection", &self.projection)
            .field("member", &self.member)
            .field("options", &self.options)
            .finish()
    }
}

impl PartitionLeases {
    /// Opens (creating or updating) the lease bucket; `member` names this process.
    pub async fn open(
        jetstream: &async_nats::jetstream::Context,
        naming: &Naming,
        projection: &'static str,
        member: String,
        options: LeaseOptions,
    ) -> Result<Self, ProjectionError> {
        // The bucket's stream is applied from its checked-in definition rather than through
        // `create_key_value`, which cannot read NATS 2.9's account info.
        let bucket = bucket_name(naming);
        let mut config: async_nats::jetstream::stream::Config =
            serde_json::from_str(PROJECTOR_LEASES_JSON)
                .map_err(|e| ProjectionError::Config(format!("nats/buckets: {e}")))?;
        config.name = format!("KV_{bucket}");
        config.subjects = vec![format!("$KV.{bucket}.>")];
        config.max_age = options.ttl;
        config.duplicate_window = options.ttl;
        config.num_replicas = options.replicas.max(1);
        jetstream
            .create_or_update_stream(config)
            .await
            .map_err(|e| ProjectionError::Leases(format!("applying bucket {bucket}: {e}")))?;
        let kv = jetstream
            .get_key_value(&bucket)
            .await
            .map_err(|e| ProjectionError::Leases(format!("opening bucket {bucket}: {e}")))?;
        Ok(Self {
            kv,
            projection,
            member,
            options,
        })
    }

    fn key(&self, total: u16, partition: u16) -> String {
        format!("{}.{total}.{partition}", self.projection)
    }

    fn member_prefix(&self) -> String {
        format!("members.{}.", self.projection)
    }

    /// Keeps this process's share of `total` partitions until `shutdown`, publishing the set it
    /// owns on `owned` whenever it changes; gives every lease back on the way out.
    pub async fn run(
        self,
        total: u16,
        owned: watch::Sender<BTreeSet<u16>>,
        shutdown: CancellationToken,
    ) {
        // Partition -> (revision held, last successful renewal).
        let mut held: BTreeMap<u16, (u64, Instant)> = BTreeMap::new();
        let tick = self.options.tick();
        let member_key = format!("{}{}", self.member_prefix(), self.member);
        // Start looking for free partitions at a place of our own, so joining processes do not
        // all race for partition 0.
        let offset = crate::layout::partition_of(&self.member, total);
        loop {
            self.renew(total, &mut held).await;
            let members = match self.heartbeat_and_count(&member_key).await {
                Ok(members) => members.max(1),
                Err(error) => {
                    tracing::warn!(%error, "partition leases: cannot reach the lease bucket");
                    0
                }
            };
            if members > 0 {
                let target = total.div_ceil(members).max(1) as usize;
                while held.len() > target {
                    let Some((partition, (revision, _))) = held.pop_last() else {
                        break;
                    };
                    publish(&owned, &held);
                    tracing::info!(partition, "handing a partition over to another process");
                    let _ = self
                        .kv
                        .delete_expect_revision(self.key(total, partition), Some(revision))
                        .await;
                }
                for step in 0..total {
                    if held.len() >= target {
                        break;
                    }
                    let partition = (offset + step) % total;
                    if held.contains_key(&partition) {
                        continue;
                    }
                    let value = Bytes::from(self.member.clone());
                    let key = self.key(total, partition);
                    match self.kv.create(&key, value).await {
                        Ok(revision) => {
                            tracing::info!(partition, "took over a partition");
                            held.insert(partition, (revision, Instant::now()));
                        }
                        // Taken, and by this process: an earlier create was stored but its
                        // answer lost (the bucket's leader died mid-request).
                        Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => {
                            if let Some(revision) = self.own_revision(&key).await {
                                tracing::info!(partition, "took over a partition");
                                held.insert(partition, (revision, Instant::now()));
                            }
                        }
                        Err(_) => {}
                    }
                }
            }
            publish(&owned, &held);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(tick) => {}
            }
        }
        self.release_all(total, &mut held, &owned, &member_key)
            .await;
    }

    /// Gives back every lease (and the heartbeat) so survivors take over at once.
    async fn release_all(
        &self,
        total: u16,
        held: &mut BTreeMap<u16, (u64, Instant)>,
        owned: &watch::Sender<BTreeSet<u16>>,
        member_key: &str,
    ) {
        let released: Vec<(u16, u64)> = held.iter().map(|(p, (r, _))| (*p, *r)).collect();
        held.clear();
        publish(owned, held);
        for (partition, revision) in released {
            let _ = self
                .kv
                .delete_expect_revision(self.key(total, partition), Some(revision))
                .await;
        }
        let _ = self.kv.delete(member_key).await;
    }

    /// Renews every lease held; drops those lost (someone else's now, or expired) and those
    /// that could not be renewed for so long that they may have expired.
    async fn renew(&self, total: u16, held: &mut BTreeMap<u16, (u64, Instant)>) {
        let give_up_after = self.options.ttl.saturating_sub(self.options.tick());
        let mut lost = Vec::new();
        for (&partition, (revision, renewed)) in held.iter_mut() {
            let value = Bytes::from(self.member.clone());
            match self
                .kv
                .update(self.key(total, partition), value, *revision)
                .await
            {
                Ok(next) => {
                    *revision = next;
                    *renewed = Instant::now();
                }
                Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    match self.own_revision(&self.key(total, partition)).await {
                        // An earlier renewal was stored but its answer was lost (as when the
                        // bucket's leader dies mid-request): the lease is still ours.
                        Some(current) => *revision = current,
                        None => {
                            tracing::warn!(partition, "lost the lease of a partition");
                            lost.push(partition);
                        }
                    }
                }
                Err(error) if renewed.elapsed() >= give_up_after => {
                    tracing::warn!(partition, %error, "could not renew a lease in time; letting the partition go");
                    lost.push(partition);
                }
                Err(_) => {}
            }
        }
        for partition in lost {
            held.remove(&partition);
        }
    }

    /// The revision of `key` when its live value names this process.
    async fn own_revision(&self, key: &str) -> Option<u64> {
        match self.kv.entry(key).await {
            Ok(Some(entry))
                if entry.operation == kv::Operation::Put
                    && entry.value.as_ref() == self.member.as_bytes() =>
            {
                Some(entry.revision)
            }
            _ => None,
        }
    }

    /// Refreshes this process's heartbeat and counts the live processes.
    async fn heartbeat_and_count(&self, member_key: &str) -> Result<u16, ProjectionError> {
        self.kv
            .put(member_key, Bytes::from(self.member.clone()))
            .await
            .map_err(leases_error)?;
        let prefix = self.member_prefix();
        let keys = keys_under(&self.kv, &prefix).await?;
        Ok(keys.len() as u16)
    }
}

/// Who holds which partition lease of `projection` right now: lease key
/// (`<projection>.<partitions>.<partition>`) to owner (`<pid>-<id>`). Empty while no projector
/// has opened the bucket. For operators and tests; projectors never need it.
pub async fn holders(
    jetstream: &async_nats::jetstream::Context,
    naming: &Naming,
    projection: &str,
) -> Result<BTreeMap<String, String>, ProjectionError> {
    let Ok(kv) = jetstream.get_key_value(bucket_name(naming)).await else {
        return Ok(BTreeMap::new());
    };
    let mut holders = BTreeMap::new();
    for key in keys_under(&kv, &format!("{projection}.")).await? {
        if let Some(owner) = kv.get(&key).await.map_err(leases_error)? {
            holders.insert(key, String::from_utf8_lossy(&owner).into_owned());
        }
    }
    Ok(holders)
}

/// The live keys of the bucket that start with `prefix`.
async fn keys_under(kv: &kv::Store, prefix: &str) -> Result<Vec<String>, ProjectionError> {
    let keys: Vec<String> = kv
        .keys()
        .await
        .map_err(leases_error)?
        .try_collect()
        .await
        .map_err(leases_error)?;
    Ok(keys.into_iter().filter(|k| k.starts_with(prefix)).collect())
}

fn leases_error(error: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::Leases(error.to_string())
}

fn publish(owned: &watch::Sender<BTreeSet<u16>>, held: &BTreeMap<u16, (u64, Instant)>) {
    let now: BTreeSet<u16> = held.keys().copied().collect();
    owned.send_if_modified(|current| {
        let changed = *current != now;
        if changed {
            *current = now;
        }
        changed
    });
}
