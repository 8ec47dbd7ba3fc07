//! Projection checkpoints: per partition, the stream sequence up to which a projection has
//! processed the stream (applied its partition's events, passed over the others), stored in the
//! same transaction as the rows it wrote.
//!
//! Every writer of a projection (a projector batch, a dead-letter retry, an erasure, a rebuild's
//! swap) starts its transaction by locking the checkpoint rows it depends on, in partition
//! order, so writers are serialized per partition and a projector whose checkpoint moved
//! underneath it (another owner after a lease moved, a rebuild swapped in) fails its batch
//! instead of applying events twice.
//!
//! The whole read model has reached position `n` when *every* partition has ([`load`]): that
//! is what `Tm-Min-Position` waits for.

use std::collections::BTreeMap;

use sqlx::{PgExecutor, Postgres, Transaction};

use crate::error::ProjectionError;
use crate::layout::{self, Layout};
use crate::POSITION_CHANNEL;

/// Checkpoints of some partitions of one projection, by partition.
pub type Positions = BTreeMap<u16, u64>;

/// The position the whole read model has reached: the lowest checkpoint over the stored
/// layout's partitions (0 while any of them has none, or the projection has no layout yet).
pub async fn load<'e>(
    executor: impl PgExecutor<'e>,
    projection: &str,
) -> Result<u64, ProjectionError> {
    let row: Option<(Option<i64>, i64, i32)> = sqlx::query_as(
        "SELECT min(c.position), count(c.position), l.partitions
           FROM projection_layouts l
           LEFT JOIN projection_checkpoints c
                  ON c.projection = l.projection AND c.partition < l.partitions
          WHERE l.projection = $1
          GROUP BY l.partitions",
    )
    .bind(projection)
    .fetch_optional(executor)
    .await?;
    Ok(match row {
        Some((Some(min), count, partitions)) if count >= i64::from(partitions) => min.max(0) as u64,
        _ => 0,
    })
}

/// Every stored checkpoint of a projection.
pub async fn load_partitions<'e>(
    executor: impl PgExecutor<'e>,
    projection: &str,
) -> Result<Positions, ProjectionError> {
    let rows: Vec<(i32, i64)> = sqlx::query_as(
        "SELECT partition, position FROM projection_checkpoints WHERE projection = $1",
    )
    .bind(projection)
    .fetch_all(executor)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(p, position)| (p.max(0) as u16, position.max(0) as u64))
        .collect())
}

fn as_i32(partitions: &[u16]) -> Vec<i32> {
    partitions.iter().map(|&p| i32::from(p)).collect()
}

/// Locks the checkpoint rows of `partitions` of `layout` (in partition order, so two lockers
/// of overlapping sets cannot deadlock) for the rest of the transaction and returns their
/// positions. Missing rows are created at 0 first, so a batch pays one statement here once they
/// exist. Fails with [`ProjectionError::LayoutChanged`] when a row belongs to another layout
/// (a rebuild was swapped in): the check is on the locked row itself, so it also holds for a
/// lock that waited on the swap.
pub async fn lock(
    tx: &mut Transaction<'_, Postgres>,
    projection: &str,
    layout: Layout,
    partitions: &[u16],
) -> Result<Positions, ProjectionError> {
    let wanted = as_i32(partitions);
    let select = "SELECT partition, position, version, partitions FROM projection_checkpoints
                   WHERE projection = $1 AND partition = ANY($2)
                   ORDER BY partition FOR UPDATE";
    let mut rows: Vec<(i32, i64, i32, i32)> = sqlx::query_as(select)
        .bind(projection)
        .bind(&wanted)
        .fetch_all(&mut **tx)
        .await?;
    if rows.len() < partitions.len() {
        sqlx::query(
            "INSERT INTO projection_checkpoints (projection, partition, position, version, partitions)
             SELECT $1, p, 0, $3, $4 FROM UNNEST($2::int4[]) AS p
             ON CONFLICT (projection, partition) DO NOTHING",
        )
        .bind(projection)
        .bind(&wanted)
        .bind(layout.version as i32)
        .bind(i32::from(layout.partitions))
        .execute(&mut **tx)
        .await?;
        rows = sqlx::query_as(select)
            .bind(projection)
            .bind(&wanted)
            .fetch_all(&mut **tx)
            .await?;
    }
    let ours = |version: i32, count: i32| {
        version == layout.version as i32 && count == i32::from(layout.partitions)
    };
    if rows
        .iter()
        .any(|&(_, _, version, count)| !ours(version, count))
    {
        return Err(ProjectionError::LayoutChanged(projection.to_owned()));
    }
    Ok(rows
        .into_iter()
        .map(|(p, position, _, _)| (p.max(0) as u16, position.max(0) as u64))
        .collect())
}

/// Locks every partition of the projection's stored layout (for writers outside the projector:
/// dead-letter retries, erasure, a rebuild's swap), so no projector batch interleaves with them.
pub async fn lock_all(
    tx: &mut Transaction<'_, Postgres>,
    projection: &str,
) -> Result<Positions, ProjectionError> {
    let layout = match layout::load(&mut **tx, projection).await? {
        Some(layout) => layout,
        None => Layout::new(crate::TASKS_PROJECTION_VERSION, 1)?,
    };
    lock(tx, projection, layout, &layout.all_partitions()).await
}

/// Locks the checkpoints of `expected`'s partitions and checks that each is still where the
/// caller left it, under the same layout; fails with [`ProjectionError::CheckpointMoved`] or
/// [`ProjectionError::LayoutChanged`] otherwise.
pub async fn lock_at(
    tx: &mut Transaction<'_, Postgres>,
    projection: &str,
    layout: Layout,
    expected: &Positions,
) -> Result<(), ProjectionError> {
    let partitions: Vec<u16> = expected.keys().copied().collect();
    if &lock(tx, projection, layout, &partitions).await? != expected {
        return Err(ProjectionError::CheckpointMoved {
            projection: projection.to_owned(),
            expected: expected.values().copied().min().unwrap_or(0),
        });
    }
    Ok(())
}

/// Moves the locked checkpoints of `partitions` forward to `to` (never backwards: a partition
/// an owner just took over may already be further along than the batch).
pub async fn set(
    tx: &mut Transaction<'_, Postgres>,
    projection: &str,
    partitions: &[u16],
    to: u64,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "UPDATE projection_checkpoints SET position = GREATEST(position, $3), updated_at = now()
          WHERE projection = $1 AND partition = ANY($2)",
    )
    .bind(projection)
    .bind(as_i32(partitions))
    .bind(to as i64)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Announces, on commit only (Postgres holds notifications until then), that `partitions` of
/// a layout with `total` partitions reached `to`; readers waiting for `Tm-Min-Position` wake.
pub async fn notify(
    tx: &mut Transaction<'_, Postgres>,
    projection: &str,
    total: u16,
    partitions: &[u16],
    to: u64,
) -> Result<(), ProjectionError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(POSITION_CHANNEL)
        .bind(Announcement::format(projection, to, total, partitions))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The payload of a position notification: `<projection>:<position>:<total>:<p>,<p>,…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// The position the partitions reached.
    pub position: u64,
    /// How many partitions the layout has.
    pub total: u16,
    /// The partitions that reached it.
    pub partitions: Vec<u16>,
}

impl Announcement {
    /// Formats a payload.
    pub fn format(projection: &str, to: u64, total: u16, partitions: &[u16]) -> String {
        let list: Vec<String> = partitions.iter().map(u16::to_string).collect();
        format!("{projection}:{to}:{total}:{}", list.join(","))
    }

    /// Parses a payload about `projection`; `None` for other projections or malformed ones.
    pub fn parse(projection: &str, payload: &str) -> Option<Self> {
        let rest = payload.strip_prefix(projection)?.strip_prefix(':')?;
        let mut fields = rest.splitn(3, ':');
        let position = fields.next()?.parse().ok()?;
        let total = fields.next()?.parse().ok()?;
        let partitions = fields
            .next()?
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| p.parse().ok())
            .collect::<Option<Vec<u16>>>()?;
        Some(Self {
            position,
            total,
            partitions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_round_trip_and_ignore_other_projections() {
        let payload = Announcement::format("tasks", 42, 8, &[1, 5]);
        assert_eq!(payload, "tasks:42:8:1,5");
        assert_eq!(
            Announcement::parse("tasks", &payload),
            Some(Announcement {
                position: 42,
                total: 8,
                partitions: vec![1, 5]
            })
        );
        assert_eq!(Announcement::parse("ml", &payload), None);
        assert_eq!(Announcement::parse("tasks", "tasks:x:8:1"), None);
        assert_eq!(Announcement::parse("tasks", "tasks:1:8:1,y"), None);
    }
}
