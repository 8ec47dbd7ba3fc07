//! Projection checkpoints: the stream sequence of the last event a projection applied, stored
//! in the same transaction as the rows it wrote.
//!
//! Every writer of a projection (a projector batch, a dead-letter retry) starts its transaction
//! by locking the checkpoint row ([`lock_at`]), so writers of one projection are serialized and
//! a projector whose checkpoint moved underneath it (another projector, a lost lease) fails
//! instead of applying events twice.

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

/// Makes sure the projection has a checkpoint row (at 0 when new), so it can be locked.
pub async fn ensure<'e>(
    executor: impl PgExecutor<'e>,
    projection: &str,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "INSERT INTO projection_checkpoints (projection, position) VALUES ($1, 0)
         ON CONFLICT (projection) DO NOTHING",
    )
    .bind(projection)
    .execute(executor)
    .await?;
    Ok(())
}

/// Locks the checkpoint row for the rest of the transaction and returns the position. The
/// row is created (at 0) only when missing, so a projector batch pays one statement here.
pub async fn lock(
    tx: &mut Transaction<'_, Postgres>,
    projection: &str,
) -> Result<u64, ProjectionError> {
    let select = "SELECT position FROM projection_checkpoints WHERE projection = $1 FOR UPDATE";
    let mut position: Option<i64> = sqlx::query_scalar(select)
        .bind(projection)
        .fetch_optional(&mut **tx)
        .await?;
    if position.is_none() {
        ensure(&mut **tx, projection).await?;
        position = sqlx::query_scalar(select)
            .bind(projection)
            .fetch_optional(&mut **tx)
            .await?;
    }
    Ok(position.unwrap_or(0).max(0) as u64)
}

/// Locks the checkpoint and checks that it is still at `expected`; fails with
/// [`ProjectionError::CheckpointMoved`] otherwise.
pub async fn lock_at(
    tx: &mut Transaction<'_, Postgres>,
    projection: &str,
    expected: u64,
) -> Result<(), ProjectionError> {
    if lock(tx, projection).await? != expected {
        return Err(ProjectionError::CheckpointMoved {
            projection: projection.to_owned(),
            expected,
        });
    }
    Ok(())
}

/// Moves the locked checkpoint to `to` and announces it to waiting readers (Postgres delivers
/// the notification on commit only).
pub async fn set(
    tx: &mut Transaction<'_, Postgres>,
    projection: &str,
    to: u64,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "UPDATE projection_checkpoints SET position = $2, updated_at = now() WHERE projection = $1",
    )
    .bind(projection)
    .bind(to as i64)
    .execute(&mut **tx)
    .await?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(POSITION_CHANNEL)
        .bind(format!("{projection}:{to}"))
        .execute(&mut **tx)
        .await?;
    Ok(())
}
