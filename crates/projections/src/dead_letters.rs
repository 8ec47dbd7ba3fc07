//! Dead letters: events a projection could not apply.
//!
//! An undecodable event, or one whose projection still fails after retries with backoff, is
//! recorded here in the same transaction that moves the checkpoint past it, so the projection
//! goes on. Its task is then *quarantined*: the projection skips that task's later events
//! rather than fold them onto a state that misses one. Retrying a dead letter rebuilds the
//! whole task from the log, up to the checkpoint, with the code deployed now; on success the
//! task leaves quarantine with a row that is exactly what its events imply.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use eventstore::{EventStore, StoreError};
use serde::Serialize;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::checkpoint;
use crate::error::ProjectionError;
use crate::task_rows::{self, TaskRecord};

/// One dead letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct DeadLetter {
    /// The projection that failed.
    pub projection: String,
    /// The event's stream sequence.
    pub position: i64,
    /// Its subject.
    pub subject: String,
    /// Its task, when the subject names one.
    pub task_id: Option<Uuid>,
    /// `Tm-Event-Type`, if present.
    pub event_type: Option<String>,
    /// `Tm-Event-Version`, if present and numeric.
    pub event_version: Option<i32>,
    /// The last error.
    pub error: String,
    /// The raw payload.
    #[serde(skip)]
    pub payload: Vec<u8>,
    /// The trace id of the request that appended it.
    pub trace_id: Option<String>,
    /// How often applying it failed (including retries by an operator).
    pub attempts: i32,
    /// When it last failed.
    pub failed_at: DateTime<Utc>,
}

/// What to record about a failed event.
#[derive(Debug, Clone)]
pub struct Failure<'a> {
    /// Stream sequence.
    pub position: u64,
    /// Subject.
    pub subject: &'a str,
    /// Task, when known.
    pub task_id: Option<Uuid>,
    /// Event type header.
    pub event_type: Option<&'a str>,
    /// Event version header.
    pub event_version: Option<i32>,
    /// Payload.
    pub payload: &'a [u8],
    /// Trace id from `traceparent`.
    pub trace_id: Option<&'a str>,
    /// The error.
    pub error: String,
    /// Attempts made.
    pub attempts: i32,
}

/// Records a dead letter inside the caller's transaction.
pub async fn record(
    tx: &mut Transaction<'_, Postgres>,
    projection: &str,
    failure: &Failure<'_>,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "INSERT INTO dead_letters (projection, position, subject, task_id, event_type,
                                   event_version, error, payload, trace_id, attempts)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (projection, position) DO UPDATE
            SET error = EXCLUDED.error, attempts = dead_letters.attempts + EXCLUDED.attempts,
                failed_at = now()",
    )
    .bind(projection)
    .bind(failure.position as i64)
    .bind(failure.subject)
    .bind(failure.task_id)
    .bind(failure.event_type)
    .bind(failure.event_version)
    .bind(&failure.error)
    .bind(failure.payload)
    .bind(failure.trace_id)
    .bind(failure.attempts)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The tasks of a projection that have dead letters (their events are skipped).
pub async fn quarantined(
    tx: &mut Transaction<'_, Postgres>,
    projection: &str,
) -> Result<HashSet<Uuid>, ProjectionError> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT DISTINCT task_id FROM dead_letters WHERE projection = $1 AND task_id IS NOT NULL",
    )
    .bind(projection)
    .fetch_all(&mut **tx)
    .await?;
    Ok(ids.into_iter().collect())
}

/// Every dead letter of a projection, oldest first.
pub async fn list(pool: &PgPool, projection: &str) -> Result<Vec<DeadLetter>, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT projection, position, subject, task_id, event_type, event_version, error,
                payload, trace_id, attempts, failed_at
           FROM dead_letters WHERE projection = $1 ORDER BY position",
    )
    .bind(projection)
    .fetch_all(pool)
    .await?)
}

/// Drops a dead letter for good. If it was its task's last, the task leaves quarantine: later
/// events apply on top of the row as it is. Returns whether one was removed.
pub async fn discard(
    pool: &PgPool,
    projection: &str,
    position: u64,
) -> Result<bool, ProjectionError> {
    let mut tx = pool.begin().await?;
    checkpoint::lock_all(&mut tx, projection).await?;
    let removed = sqlx::query("DELETE FROM dead_letters WHERE projection = $1 AND position = $2")
        .bind(projection)
        .bind(position as i64)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(removed == 1)
}

/// The outcome of a retry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetryReport {
    /// Tasks rebuilt; their dead letters are gone.
    pub rebuilt_tasks: Vec<Uuid>,
    /// Dead letters that failed again (still listed, with the new error).
    pub still_failing: Vec<i64>,
}

/// Retries dead letters (one position, or all): each affected task is rebuilt from its events
/// up to the checkpoint. The checkpoint lock keeps the projector out meanwhile.
pub async fn retry(
    pool: &PgPool,
    store: &EventStore,
    projection: &str,
    only: Option<u64>,
) -> Result<RetryReport, ProjectionError> {
    let mut report = RetryReport::default();
    let letters: Vec<DeadLetter> = list(pool, projection)
        .await?
        .into_iter()
        .filter(|l| only.is_none_or(|p| l.position == p as i64))
        .collect();
    let mut done: HashSet<Uuid> = HashSet::new();
    for letter in &letters {
        let Some(task_id) = letter.task_id else {
            report.still_failing.push(letter.position);
            continue;
        };
        if !done.insert(task_id) {
            continue;
        }
        let mut tx = pool.begin().await?;
        // Rebuilt up to the checkpoint of the task's own partition.
        let positions = checkpoint::lock_all(&mut tx, projection).await?;
        let partition = crate::layout::partition_of_subject(
            store.naming(),
            &letter.subject,
            positions.len().max(1) as u16,
        );
        let position = positions.get(&partition).copied().unwrap_or(0);
        match rebuild_task(store, &letter.subject, position).await {
            Ok(record) => {
                task_rows::replace(&mut tx, domain::TaskId(task_id), record.as_ref()).await?;
                sqlx::query("DELETE FROM dead_letters WHERE projection = $1 AND task_id = $2")
                    .bind(projection)
                    .bind(task_id)
                    .execute(&mut *tx)
                    .await?;
                report.rebuilt_tasks.push(task_id);
            }
            Err(error) if error.is_transient() => return Err(error),
            Err(error) => {
                sqlx::query(
                    "UPDATE dead_letters SET attempts = attempts + 1, error = $3, failed_at = now()
                      WHERE projection = $1 AND task_id = $2",
                )
                .bind(projection)
                .bind(task_id)
                .bind(error.to_string())
                .execute(&mut *tx)
                .await?;
                report.still_failing.extend(
                    letters
                        .iter()
                        .filter(|l| l.task_id == Some(task_id))
                        .map(|l| l.position),
                );
            }
        }
        tx.commit().await?;
    }
    Ok(report)
}

/// Folds a task's events up to `until` with the code deployed now.
async fn rebuild_task(
    store: &EventStore,
    subject: &str,
    until: u64,
) -> Result<Option<TaskRecord>, ProjectionError> {
    let (owner, task_id) = store
        .naming()
        .parse_subject(subject)
        .ok_or_else(|| ProjectionError::Stream(format!("{subject:?} is not a task subject")))?;
    let events = store.history(&owner, task_id).await.map_err(|e| match e {
        StoreError::Unavailable(cause) => ProjectionError::Stream(cause),
        other => ProjectionError::Undecodable(other.to_string()),
    })?;
    let mut task = None;
    let mut position = 0;
    for recorded in events.iter().filter(|e| e.position <= until) {
        task = domain::evolve(task, &recorded.event);
        position = recorded.position;
    }
    Ok(task.map(|task| TaskRecord { task, position }))
}
