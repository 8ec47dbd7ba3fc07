//! Projection checkpoints: the stream sequence of the last event a projection applied, stored
//! in the same transaction as the rows it wrote.

use sqlx::{PgExecutor, Postgres, Transaction};

use crate::error::ProjectionError;
use crate::POSITION_CHANNEL;

/// The checkpoint of a projection (0 when it has applied nothing).
pub async fn load<'e>(
    executor: impl PgExecutor<'e>,
    projection: &str,
) -> Result<u64, ProjectionError> {
    let position: Option<i64> =
        sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE projection = $1")
            .bind(projection)
            .fetch_optional(executor)
            .await?;
    Ok(position.unwrap_or(0).max(0) as u64)
}

/// Moves the checkpoint from `from` to `to` inside the batch's transaction, and announces the
/// new position to waiting readers (delivered on commit). Fails with
/// [`ProjectionError::CheckpointMoved`] when the stored checkpoint is not `from`, which means
/// another projector applied events meanwhile.
pub async fn advance(
    tx: &mut Transaction<'_, Postgres>,
    projection: &str,
    from: u64,
    to: u64,
) -> Result<(), ProjectionError> {
    let moved = sqlx::query(
        "INSERT INTO projection_checkpoints (projection, position, updated_at)
         VALUES ($1, $3, now())
         ON CONFLICT (projection) DO UPDATE
            SET position = EXCLUDED.position, updated_at = now()
          WHERE projection_checkpoints.position = $2",
    )
    .bind(projection)
    .bind(from as i64)
    .bind(to as i64)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if moved != 1 {
        return Err(ProjectionError::CheckpointMoved {
            projection: projection.to_owned(),
            expected: from,
        });
    }
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(POSITION_CHANNEL)
        .bind(format!("{projection}:{to}"))
        .execute(&mut **tx)
        .await?;
    Ok(())
}
