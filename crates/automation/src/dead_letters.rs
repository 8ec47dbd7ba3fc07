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

/// What a retry did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RetryReport {
    /// `(automation, position)` of the dead letters that went through and were removed.
    pub succeeded: Vec<(String, u64)>,
    /// `(automation, position, error)` of those still failing (kept, with the new error).
    pub still_failing: Vec<(String, u64, String)>,
}

/// Runs the automations of the dead letters again (all, or those at `position`) with the code
/// deployed now, reading each event back from the log; the ones that go through are removed.
/// Safe to repeat: reactions derive their ids from the event, as on first delivery.
pub async fn retry(
    context: &crate::Context,
    automations: &[std::sync::Arc<dyn crate::Automation>],
    position: Option<u64>,
) -> Result<RetryReport, AutomationError> {
    let pool = context.reads.primary();
    let store = context.store();
    let mut report = RetryReport::default();
    for letter in list(pool).await? {
        let at = letter.position.max(0) as u64;
        if position.is_some_and(|p| p != at) {
            continue;
        }
        let Some(automation) = automations.iter().find(|a| a.name() == letter.automation) else {
            report.still_failing.push((
                letter.automation.clone(),
                at,
                "no such automation in this build".into(),
            ));
            continue;
        };
        let message = store
            .stream()
            .get_raw_message(at)
            .await
            .map_err(eventstore::StoreError::unavailable)?;
        let event = eventstore::envelope::RawEvent::from(&message).decode(store.naming())?;
        match automation.handle(context, &event).await {
            Ok(()) => {
                remove(pool, &letter.automation, at).await?;
                report.succeeded.push((letter.automation, at));
            }
            Err(error) => {
                let text = error.to_string();
                record(
                    pool,
                    &letter.automation,
                    &event,
                    &text,
                    letter.attempts as u32 + 1,
                )
                .await?;
                report.still_failing.push((letter.automation, at, text));
            }
        }
    }
    Ok(report)
}
