//! Reading what the computation needs from the tasks read model.
//!
//! Bounded per user: the unfinished tasks (open, in progress, paused) and the tasks completed
//! in the last [`HISTORY_DAYS`], which is all any metric looks at. The first half is served by
//! the index on `(owner_id, status)`, the second by the partial index on
//! `(owner_id, completed_at)` (migration `…_insights_completed_index`), so a user with years of
//! history costs the same as one with three months.
//!
//! Everything is read in one `REPEATABLE READ` snapshot together with the checkpoint, so the
//! position reported is one the rows have certainly reached (rows and checkpoints commit in
//! the same transaction).

use chrono::{DateTime, Duration, Utc};
use domain::{TaskStatus, UserId};
use projections::{checkpoint, TASKS_PROJECTION};
use sqlx::PgPool;

use crate::compute::{TaskFacts, HISTORY_DAYS};
use crate::error::InsightsError;

/// A user's rows as of one read-model position.
#[derive(Debug, Clone, PartialEq)]
pub struct UserHistory {
    /// Unfinished tasks and tasks completed in the last [`HISTORY_DAYS`].
    pub tasks: Vec<TaskFacts>,
    /// The zone of the user's most recently created task ("UTC" without tasks).
    pub time_zone: String,
    /// The read-model position the rows reflect.
    pub position: u64,
}

/// The rows of user `$1`: unfinished, or completed after `$2`.
pub const HISTORY_SQL: &str =
    "SELECT status, tags, due_at, estimate_minutes, actual_minutes, created_at, completed_at
       FROM tasks
      WHERE owner_id = $1
        AND (status IN ('open', 'in_progress', 'paused') OR completed_at > $2)";

#[derive(sqlx::FromRow)]
struct FactsRow {
    status: String,
    tags: Vec<String>,
    due_at: Option<DateTime<Utc>>,
    estimate_minutes: Option<i32>,
    actual_minutes: Option<i32>,
    created_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
}

fn minutes(value: Option<i32>) -> Option<u32> {
    value.and_then(|m| u32::try_from(m).ok())
}

/// Loads `owner`'s rows as of `now`.
#[tracing::instrument(skip_all, fields(owner = %owner), err)]
pub async fn load_history(
    pool: &PgPool,
    owner: &UserId,
    now: DateTime<Utc>,
) -> Result<UserHistory, InsightsError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let position = checkpoint::load(&mut *tx, TASKS_PROJECTION).await?;
    let rows: Vec<FactsRow> = sqlx::query_as(HISTORY_SQL)
        .bind(owner.as_str())
        .bind(now - Duration::days(HISTORY_DAYS))
        .fetch_all(&mut *tx)
        .await?;
    let time_zone: Option<String> = sqlx::query_scalar(
        "SELECT time_zone FROM tasks WHERE owner_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    .bind(owner.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    let tasks = rows
        .into_iter()
        .filter_map(|row| {
            // The table's CHECK constraint allows only known statuses; a row that still does
            // not parse was written by a newer version and is left out rather than failing.
            let status = TaskStatus::parse(&row.status)?;
            Some(TaskFacts {
                status,
                tags: row.tags,
                due_at: row.due_at,
                estimate_minutes: minutes(row.estimate_minutes),
                actual_minutes: minutes(row.actual_minutes),
                created_at: row.created_at,
                completed_at: row.completed_at,
            })
        })
        .collect();
    Ok(UserHistory {
        tasks,
        time_zone: time_zone.unwrap_or_else(|| "UTC".into()),
        position,
    })
}
