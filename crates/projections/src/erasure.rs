//! Erasing a user: their events leave the log, their rows leave the read models.
//!
//! Order matters. The events are purged first, so nothing can bring the user back; then we wait
//! (bounded) until the projector has passed the stream position of the purge, because a running
//! projector may still hold some of the user's events it read before; then the rows and dead
//! letters are deleted under the checkpoint lock, so no batch interleaves. The user's calendar
//! feed tokens go in the same transaction: they are not derived from the log, so nothing else
//! would remove them.

use std::time::{Duration, Instant};

use domain::UserId;
use eventstore::EventStore;
use serde::Serialize;
use sqlx::PgPool;

use crate::error::ProjectionError;
use crate::{checkpoint, TASKS_PROJECTION};

/// What an erasure removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ErasureReport {
    /// Events purged from the stream.
    pub events: u64,
    /// Rows deleted from the tasks read model.
    pub task_rows: u64,
    /// Dead letters deleted.
    pub dead_letters: u64,
    /// Calendar feed tokens deleted, revoked ones included.
    pub feed_tokens: u64,
    /// Whether the projector had caught up with the purge before rows were deleted (when not,
    /// no projector was running, so none could bring rows back).
    pub projector_caught_up: bool,
}

/// Erases every trace of `owner` from the log and the read models.
#[tracing::instrument(skip_all, fields(owner = %owner), err)]
pub async fn erase_user(
    pool: &PgPool,
    store: &EventStore,
    owner: &UserId,
    wait_for_projector: Duration,
) -> Result<ErasureReport, ProjectionError> {
    let (events, head) = store
        .purge_owner(owner)
        .await
        .map_err(|e| ProjectionError::Stream(e.to_string()))?;
    let deadline = Instant::now() + wait_for_projector;
    let mut caught_up = checkpoint::load(pool, TASKS_PROJECTION).await? >= head;
    while !caught_up && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        caught_up = checkpoint::load(pool, TASKS_PROJECTION).await? >= head;
    }
    let mut tx = pool.begin().await?;
    checkpoint::lock_all(&mut tx, TASKS_PROJECTION).await?;
    let task_rows = sqlx::query("DELETE FROM tasks WHERE owner_id = $1")
        .bind(owner.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    // `_` is a LIKE wildcard and may appear in user ids: escape it.
    let escaped = owner.as_str().replace('_', "\\_");
    let pattern = format!("%.tasks.events.{escaped}.%");
    let exact = format!("tasks.events.{escaped}.%");
    let dead_letters = sqlx::query(
        "DELETE FROM dead_letters WHERE subject LIKE $1 ESCAPE '\\' OR subject LIKE $2 ESCAPE '\\'",
    )
    .bind(pattern)
    .bind(exact)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    // The automation runtime's dead letters name the owner too (and carry error text that may
    // quote their data).
    let automation_dead_letters =
        sqlx::query("DELETE FROM automation_dead_letters WHERE owner_id = $1")
            .bind(owner.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
    let feed_tokens = crate::feed_tokens::delete_owner(&mut tx, owner).await?;
    tx.commit().await?;
    Ok(ErasureReport {
        events,
        task_rows,
        dead_letters: dead_letters + automation_dead_letters,
        feed_tokens,
        projector_caught_up: caught_up,
    })
}
