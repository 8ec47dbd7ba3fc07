//! How a projection is laid out: its partitions, and the version of the code that built it.
//!
//! A task's events belong to exactly one partition, derived from its subject, so one owner per
//! partition keeps every task's events in order while several projector processes share the
//! work. The partition count is fixed per read model: it is stored with the rows
//! (`projection_layouts`) and only a rebuild changes it, because checkpoints are per partition.
//! The stored layout governs the running projectors; the configured one is what the next
//! rebuild uses, and a difference (or a new projection version in the code) triggers that
//! rebuild on deploy.

use eventstore::Naming;
use sqlx::PgExecutor;

use crate::error::ProjectionError;

/// The most partitions a projection may have (each is a checkpoint row and a lease).
pub const MAX_PARTITIONS: u16 = 1024;

/// The partition a task's events belong to, from the part of its subject after the stream's
/// subject root (`<owner_id>.<task_id>`). The prefix is left out so an export imported under
/// another prefix lands in the same partitions.
///
/// FNV-1a (64-bit), reduced modulo the count: stable across releases and platforms (it is
/// part of the stored layout), cheap (no allocation, a few ns per subject), and well mixed even
/// though v7 task ids share their leading time bits.
pub fn partition_of(task_key: &str, partitions: u16) -> u16 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in task_key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % u64::from(partitions.max(1))) as u16
}

/// The partition of a task subject (whatever the deployment's prefix), as every reader of the
/// layout must compute it: the projector, dead-letter retries, verify.
pub fn partition_of_subject(naming: &Naming, subject: &str, partitions: u16) -> u16 {
    if partitions <= 1 {
        return 0;
    }
    partition_of(naming.task_key(subject).unwrap_or(subject), partitions)
}

/// What a read model was built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The projection code's version ([`crate::TASKS_PROJECTION_VERSION`] for tasks).
    pub version: u32,
    /// How many partitions its checkpoints are kept in.
    pub partitions: u16,
}

impl Layout {
    /// Checks a configured partition count.
    pub fn new(version: u32, partitions: u16) -> Result<Self, ProjectionError> {
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(ProjectionError::Config(format!(
                "projection partitions must be between 1 and {MAX_PARTITIONS}, not {partitions}"
            )));
        }
        Ok(Self {
            version,
            partitions,
        })
    }

    /// Every partition of this layout.
    pub fn all_partitions(&self) -> Vec<u16> {
        (0..self.partitions).collect()
    }
}

/// The stored layout of a projection, if it has one.
pub async fn load<'e>(
    executor: impl PgExecutor<'e>,
    projection: &str,
) -> Result<Option<Layout>, ProjectionError> {
    let row: Option<(i32, i32)> =
        sqlx::query_as("SELECT version, partitions FROM projection_layouts WHERE projection = $1")
            .bind(projection)
            .fetch_optional(executor)
            .await?;
    Ok(row.map(|(version, partitions)| Layout {
        version: version.max(1) as u32,
        partitions: partitions.clamp(1, i32::from(MAX_PARTITIONS)) as u16,
    }))
}

/// The stored layout; a projection that has none yet (a new read model) takes `wanted`.
pub async fn ensure(
    pool: &sqlx::PgPool,
    projection: &str,
    wanted: Layout,
) -> Result<Layout, ProjectionError> {
    sqlx::query(
        "INSERT INTO projection_layouts (projection, version, partitions) VALUES ($1, $2, $3)
         ON CONFLICT (projection) DO NOTHING",
    )
    .bind(projection)
    .bind(wanted.version as i32)
    .bind(i32::from(wanted.partitions))
    .execute(pool)
    .await?;
    Ok(load(pool, projection).await?.unwrap_or(wanted))
}

/// Records the layout a rebuild produced (inside the swap's transaction).
pub async fn store<'e>(
    executor: impl PgExecutor<'e>,
    projection: &str,
    layout: Layout,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "INSERT INTO projection_layouts (projection, version, partitions, built_at)
         VALUES ($1, $2, $3, now())
         ON CONFLICT (projection) DO UPDATE
            SET version = EXCLUDED.version, partitions = EXCLUDED.partitions, built_at = now()",
    )
    .bind(projection)
    .bind(layout.version as i32)
    .bind(i32::from(layout.partitions))
    .execute(executor)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_always_lands_in_the_same_partition() {
        let key = "alice.0193a1b2-0000-7000-8000-000000000001";
        assert_eq!(partition_of(key, 8), partition_of(key, 8));
        // Pinned: the function is part of every stored layout.
        assert_eq!(
            partition_of("a.b", 1024),
            (0xe61d_9919_0466_522c_u64 % 1024) as u16
        );
        assert_eq!(partition_of(key, 1), 0);
    }

    #[test]
    fn a_task_keeps_its_partition_under_any_prefix() {
        let owner = domain::UserId::parse("alice").unwrap();
        let task = domain::TaskId(uuid::Uuid::now_v7());
        let partition = |prefix: &str| {
            let naming = Naming::new(prefix).unwrap();
            partition_of_subject(&naming, &naming.task_subject(&owner, task), 8)
        };
        assert_eq!(partition(""), partition("ci7"));
        assert_eq!(partition(""), partition_of(&format!("alice.{}", task.0), 8));
        let naming = Naming::new("").unwrap();
        assert_eq!(partition_of_subject(&naming, "anything", 1), 0);
    }

    #[test]
    fn tasks_spread_evenly_over_partitions() {
        let mut counts = [0u32; 8];
        for i in 0..8_000 {
            let key = format!("user{}.{}", i % 7, uuid::Uuid::now_v7());
            counts[partition_of(&key, 8) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn partition_counts_outside_the_range_are_refused() {
        assert!(Layout::new(1, 0).is_err());
        assert!(Layout::new(1, MAX_PARTITIONS + 1).is_err());
        assert_eq!(Layout::new(2, 8).unwrap().all_partitions().len(), 8);
    }
}
