//! The events an automation gave up on, in Postgres (`automation_dead_letters`), for an
//! operator to look at, retry after a fix, or discard.

use chrono::{DateTime, Utc};
use eventstore::RecordedEvent;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::AutomationError;

/// One event an automation gave up on.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AutomationDeadLetter {
    /// The automation.
    pub automation: String,
    /// The event's stream position.
    pub position: i64,
    /// The event's owner.
    pub owner_id: String,
    /// The event's task.
    pub task_id: Uuid,
    /// The event's type.
    pub event_type: String,
    /// The last error.
    pub error: String,
    /// Deliveries tried.
    pub attempts: i32,
    /// When it was given up on.
    pub failed_at: DateTime<Utc>,
}

/// Records that `automation` gave up on `event` (the latest error wins on a repeat).
pub async fn record(
    pool: &PgPool,
    automation: &str,
    event: &RecordedEvent,
    error: &str,
    attempts: u32,
) -> Result<(), AutomationError> {
    sqlx::query(
        "INSERT INTO automation_dead_letters
             (automation, position, owner_id, task_id, event_type, error, attempts)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (automation, position) DO UPDATE
             SET error = EXCLUDED.error, attempts = EXCLUDED.attempts, failed_at = now()",
    )
    .bind(automation)
    .bind(event.position as i64)
    .bind(event.owner.as_str())
    .bind(event.task_id.0)
    .bind(&event.event_type)
    .bind(error)
    .bind(attempts as i32)
    .execute(pool)
    .await?;
    Ok(())
}

/// Every dead letter, oldest event first.
pub async fn list(pool: &PgPool) -> Result<Vec<AutomationDeadLetter>, AutomationError> {
    Ok(sqlx::query_as(
        "SELECT automation, position, owner_id, task_id, event_type, error, attempts, failed_at
           FROM automation_dead_letters ORDER BY position, automation",
    )
    .fetch_all(pool)
    .await?)
}

/// Removes one dead letter; whether there was one.
pub async fn remove(
    pool: &PgPool,
    automation: &str,
    position: u64,
) -> Result<bool, AutomationError> {
    let done =
        sqlx::query("DELETE FROM automation_dead_letters WHERE automation = $1 AND position = $2")
            .bind(automation)
            .bind(position as i64)
            .execute(pool)
            .await?;
    Ok(done.rows_affected() > 0)
}
