//! The tasks read model: one row per task holding the domain's folded [`Task`] and the stream
//! position it reflects.
//!
//! [`apply_batch`] is the projection: load the touched rows once, fold the batch's events into
//! them with [`domain::evolve`], write the changed rows back with one bulk upsert
//! (`INSERT … SELECT FROM UNNEST … ON CONFLICT`). The live projector and replay both call it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::{
    CancelReason, Description, EffortMinutes, FromTrusted, Priority, Recurrence, RecurrenceMode,
    SeriesLink, Tag, Task, TaskId, TaskStatus, TaskTitle, TimeZoneName, UserId,
};
use eventstore::RecordedEvent;
use sqlx::{PgExecutor, Postgres, Transaction};
use uuid::Uuid;

use crate::error::ProjectionError;

/// The columns of `tasks`, as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TaskRow {
    /// Task id.
    pub id: Uuid,
    /// Owner.
    pub owner_id: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: Option<String>,
    /// Priority name.
    pub priority: Option<String>,
    /// Due date.
    pub due_at: Option<DateTime<Utc>>,
    /// Estimate in minutes.
    pub estimate_minutes: Option<i32>,
    /// Tags.
    pub tags: Vec<String>,
    /// The owner's time zone.
    pub time_zone: String,
    /// Status name.
    pub status: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Time of the last event.
    pub updated_at: DateTime<Utc>,
    /// Start of the running work session.
    pub started_at: Option<DateTime<Utc>>,
    /// Tracked seconds of finished sessions.
    pub tracked_seconds: i64,
    /// Completion time.
    pub completed_at: Option<DateTime<Utc>>,
    /// Actual effort.
    pub actual_minutes: Option<i32>,
    /// Archive time.
    pub archived_at: Option<DateTime<Utc>>,
    /// Start date.
    pub starts_at: Option<DateTime<Utc>>,
    /// Cancellation time.
    pub cancelled_at: Option<DateTime<Utc>>,
    /// Why it was cancelled.
    pub cancel_reason: Option<String>,
    /// The parent task.
    pub parent_id: Option<Uuid>,
    /// The RRULE value of a repeating task.
    pub recurrence_rule: Option<String>,
    /// How the next occurrence is placed (`fixed`, `after_completion`).
    pub recurrence_mode: Option<String>,
    /// The series of an occurrence: its first occurrence's id.
    pub series_id: Option<Uuid>,
    /// The occurrence's number in its series.
    pub series_occurrence: Option<i32>,
    /// The due date of the series' first occurrence.
    pub series_anchor: Option<DateTime<Utc>>,
    /// The reminders, as their JSON.
    pub reminders: serde_json::Value,
    /// Reminder instants already fired.
    pub reminders_fired: Vec<DateTime<Utc>>,
    /// Number of events.
    pub version: i64,
    /// Stream sequence of the last applied event.
    pub position: i64,
}

/// The columns every query selects, in [`TaskRow`] order.
pub const TASK_COLUMNS: &str = "id, owner_id, title, description, priority, due_at, \
    estimate_minutes, tags, time_zone, status, created_at, updated_at, started_at, tracked_seconds, \
    completed_at, actual_minutes, archived_at, starts_at, cancelled_at, cancel_reason, parent_id, \
    recurrence_rule, recurrence_mode, series_id, series_occurrence, series_anchor, reminders, \
    reminders_fired, version, position";

/// A task as the read model holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    /// The folded state.
    pub task: Task,
    /// The stream sequence of its last event.
    pub position: u64,
}

impl TryFrom<TaskRow> for TaskRecord {
    type Error = ProjectionError;

    fn try_from(row: TaskRow) -> Result<Self, Self::Error> {
        let invalid = |reason: &str| ProjectionError::InvalidRow {
            task_id: row.id,
            reason: reason.to_owned(),
        };
        let status = TaskStatus::parse(&row.status).ok_or_else(|| invalid("unknown status"))?;
        let priority = match &row.priority {
            Some(name) => Some(Priority::parse(name).map_err(|_| invalid("unknown priority"))?),
            None => None,
        };
        let minutes = |value: Option<i32>| -> Result<Option<EffortMinutes>, ProjectionError> {
            value
                .map(|m| u32::try_from(m).map(EffortMinutes::from_trusted))
                .transpose()
                .map_err(|_| invalid("negative minutes"))
        };
        let task = Task {
            id: TaskId(row.id),
            owner: UserId::from_trusted(row.owner_id.clone()),
            title: TaskTitle::from_trusted(row.title.clone()),
            description: row.description.clone().map(Description::from_trusted),
            priority,
            due_at: row.due_at,
            estimate_minutes: minutes(row.estimate_minutes)?,
            tags: row.tags.iter().cloned().map(Tag::from_trusted).collect(),
            time_zone: TimeZoneName::from_trusted(row.time_zone.clone()),
            parent_id: row.parent_id.map(TaskId),
            recurrence: match (&row.recurrence_rule, &row.recurrence_mode) {
                (Some(rule), Some(mode)) => Some(Recurrence {
                    rule: rule.clone(),
                    mode: match mode.as_str() {
                        "fixed" => RecurrenceMode::Fixed,
                        "after_completion" => RecurrenceMode::AfterCompletion,
                        _ => return Err(invalid("unknown recurrence mode")),
                    },
                }),
                (None, None) => None,
                _ => return Err(invalid("half a recurrence")),
            },
            series: match (row.series_id, row.series_occurrence, row.series_anchor) {
                (Some(series_id), Some(occurrence), Some(anchor)) => Some(SeriesLink {
                    series_id: TaskId(series_id),
                    occurrence: u32::try_from(occurrence)
                        .map_err(|_| invalid("negative occurrence"))?,
                    anchor,
                }),
                (None, None, None) => None,
                _ => return Err(invalid("half a series")),
            },
            reminders: serde_json::from_value(row.reminders.clone())
                .map_err(|_| invalid("unreadable reminders"))?,
            reminders_fired: row.reminders_fired.clone(),
            status,
            created_at: row.created_at,
            updated_at: row.updated_at,
            started_at: row.started_at,
            tracked_seconds: row.tracked_seconds,
            completed_at: row.completed_at,
            actual_minutes: minutes(row.actual_minutes)?,
            archived_at: row.archived_at,
            starts_at: row.starts_at,
            cancelled_at: row.cancelled_at,
            cancel_reason: row.cancel_reason.clone().map(CancelReason::from_trusted),
            version: row.version.max(0) as u64,
        };
        Ok(TaskRecord {
            task,
            position: row.position.max(0) as u64,
        })
    }
}

/// Loads the rows of the given tasks.
pub async fn load_rows<'e>(
    executor: impl PgExecutor<'e>,
    ids: &[Uuid],
) -> Result<HashMap<TaskId, TaskRecord>, ProjectionError> {
    let rows: Vec<TaskRow> = sqlx::query_as(&format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE id = ANY($1)"
    ))
    .bind(ids)
    .fetch_all(executor)
    .await?;
    rows.into_iter()
        .map(|row| TaskRecord::try_from(row).map(|r| (r.task.id, r)))
        .collect()
}

/// Every row of the read model (for `verify` and tests; not for request paths).
pub async fn load_all<'e>(
    executor: impl PgExecutor<'e>,
) -> Result<HashMap<TaskId, TaskRecord>, ProjectionError> {
    let rows: Vec<TaskRow> = sqlx::query_as(&format!("SELECT {TASK_COLUMNS} FROM tasks"))
        .fetch_all(executor)
        .await?;
    rows.into_iter()
        .map(|row| TaskRecord::try_from(row).map(|r| (r.task.id, r)))
        .collect()
}

/// Folds a batch of events (in stream order) into the tasks read model, inside the caller's
/// transaction. An event at or below a row's position is skipped, so even a replayed batch
/// cannot apply an event twice. Returns how many rows were written.
pub async fn apply_batch(
    tx: &mut Transaction<'_, Postgres>,
    events: &[&RecordedEvent],
) -> Result<usize, ProjectionError> {
    if events.is_empty() {
        return Ok(0);
    }
    let mut ids: Vec<Uuid> = events.iter().map(|e| e.task_id.0).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut rows = load_rows(&mut **tx, &ids).await?;
    let mut dirty: Vec<TaskId> = Vec::with_capacity(ids.len());
    for recorded in events {
        let current = rows.remove(&recorded.task_id);
        let position = current.as_ref().map(|r| r.position).unwrap_or(0);
        if recorded.position <= position {
            if let Some(current) = current {
                rows.insert(recorded.task_id, current);
            }
            continue;
        }
        match domain::evolve(current.map(|r| r.task), &recorded.event) {
            Some(task) => {
                rows.insert(
                    recorded.task_id,
                    TaskRecord {
                        task,
                        position: recorded.position,
                    },
                );
                if !dirty.contains(&recorded.task_id) {
                    dirty.push(recorded.task_id);
                }
            }
            // An event before its task's creation: nothing to store.
            None => continue,
        }
    }
    let changed: Vec<&TaskRecord> = dirty.iter().filter_map(|id| rows.get(id)).collect();
    upsert(tx, &changed).await?;
    Ok(changed.len())
}

/// Replaces one task's row with `record` (or removes it when the task has no state), for
/// rebuilding a single task from its events.
pub async fn replace(
    tx: &mut Transaction<'_, Postgres>,
    task_id: TaskId,
    record: Option<&TaskRecord>,
) -> Result<(), ProjectionError> {
    match record {
        Some(record) => upsert(tx, &[record]).await,
        None => {
            sqlx::query("DELETE FROM tasks WHERE id = $1")
                .bind(task_id.0)
                .execute(&mut **tx)
                .await?;
            Ok(())
        }
    }
}

/// Writes rows with one `INSERT … SELECT FROM UNNEST … ON CONFLICT DO UPDATE`.
async fn upsert(
    tx: &mut Transaction<'_, Postgres>,
    records: &[&TaskRecord],
) -> Result<(), ProjectionError> {
    if records.is_empty() {
        return Ok(());
    }
    let n = records.len();
    let mut id = Vec::with_capacity(n);
    let mut owner = Vec::with_capacity(n);
    let mut title = Vec::with_capacity(n);
    let mut description = Vec::with_capacity(n);
    let mut priority = Vec::with_capacity(n);
    let mut due_at = Vec::with_capacity(n);
    let mut estimate = Vec::with_capacity(n);
    let mut tags = Vec::with_capacity(n);
    let mut time_zone = Vec::with_capacity(n);
    let mut status = Vec::with_capacity(n);
    let mut created_at = Vec::with_capacity(n);
    let mut updated_at = Vec::with_capacity(n);
    let mut started_at = Vec::with_capacity(n);
    let mut tracked = Vec::with_capacity(n);
    let mut completed_at = Vec::with_capacity(n);
    let mut actual = Vec::with_capacity(n);
    let mut archived_at = Vec::with_capacity(n);
    let mut starts_at = Vec::with_capacity(n);
    let mut cancelled_at = Vec::with_capacity(n);
    let mut cancel_reason = Vec::with_capacity(n);
    let mut parent = Vec::with_capacity(n);
    let mut rule = Vec::with_capacity(n);
    let mut mode = Vec::with_capacity(n);
    let mut series_id = Vec::with_capacity(n);
    let mut occurrence = Vec::with_capacity(n);
    let mut anchor = Vec::with_capacity(n);
    let mut reminders = Vec::with_capacity(n);
    let mut fired = Vec::with_capacity(n);
    let mut next_reminder = Vec::with_capacity(n);
    let mut version = Vec::with_capacity(n);
    let mut position = Vec::with_capacity(n);
    for record in records {
        let task = &record.task;
        id.push(task.id.0);
        owner.push(task.owner.as_str().to_owned());
        title.push(task.title.as_str().to_owned());
        description.push(task.description.as_ref().map(|d| d.as_str().to_owned()));
        priority.push(task.priority.map(|p| p.as_str()));
        due_at.push(task.due_at);
        estimate.push(task.estimate_minutes.map(|m| m.get() as i32));
        tags.push(serde_json::Value::from(
            task.tags.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
        ));
        time_zone.push(task.time_zone.as_str().to_owned());
        status.push(task.status.as_str());
        created_at.push(task.created_at);
        updated_at.push(task.updated_at);
        started_at.push(task.started_at);
        tracked.push(task.tracked_seconds);
        completed_at.push(task.completed_at);
        actual.push(task.actual_minutes.map(|m| m.get() as i32));
        archived_at.push(task.archived_at);
        starts_at.push(task.starts_at);
        cancelled_at.push(task.cancelled_at);
        cancel_reason.push(task.cancel_reason.as_ref().map(|r| r.as_str().to_owned()));
        parent.push(task.parent_id.map(|p| p.0));
        rule.push(task.recurrence.as_ref().map(|r| r.rule.clone()));
        mode.push(task.recurrence.as_ref().map(|r| r.mode.as_str()));
        series_id.push(task.series.map(|s| s.series_id.0));
        occurrence.push(task.series.map(|s| s.occurrence as i32));
        anchor.push(task.series.map(|s| s.anchor));
        reminders.push(serde_json::to_value(&task.reminders).unwrap_or_default());
        fired.push(serde_json::to_value(&task.reminders_fired).unwrap_or_default());
        next_reminder.push(task.next_reminder());
        version.push(task.version as i64);
        position.push(record.position as i64);
    }
    sqlx::query(
        "INSERT INTO tasks (id, owner_id, title, description, priority, due_at, estimate_minutes,
                            tags, status, created_at, updated_at, started_at, tracked_seconds,
                            completed_at, actual_minutes, archived_at, version, position,
                            time_zone, starts_at, cancelled_at, cancel_reason, parent_id,
                            recurrence_rule, recurrence_mode, series_id, series_occurrence,
                            series_anchor, reminders, reminders_fired, next_reminder_at)
         SELECT u.id, u.owner_id, u.title, u.description, u.priority, u.due_at, u.estimate_minutes,
                ARRAY(SELECT jsonb_array_elements_text(u.tags)), u.status, u.created_at,
                u.updated_at, u.started_at, u.tracked_seconds, u.completed_at, u.actual_minutes,
                u.archived_at, u.version, u.position, u.time_zone, u.starts_at, u.cancelled_at,
                u.cancel_reason, u.parent_id, u.recurrence_rule, u.recurrence_mode, u.series_id,
                u.series_occurrence, u.series_anchor, u.reminders,
                ARRAY(SELECT jsonb_array_elements_text(u.fired)::timestamptz), u.next_reminder_at
           FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                       $6::timestamptz[], $7::int4[], $8::jsonb[], $9::text[], $10::timestamptz[],
                       $11::timestamptz[], $12::timestamptz[], $13::int8[], $14::timestamptz[],
                       $15::int4[], $16::timestamptz[], $17::int8[], $18::int8[], $19::text[],
                       $20::timestamptz[], $21::timestamptz[], $22::text[], $23::uuid[],
                       $24::text[], $25::text[], $26::uuid[], $27::int4[], $28::timestamptz[],
                       $29::jsonb[], $30::jsonb[], $31::timestamptz[])
             AS u(id, owner_id, title, description, priority, due_at, estimate_minutes, tags,
                  status, created_at, updated_at, started_at, tracked_seconds, completed_at,
                  actual_minutes, archived_at, version, position, time_zone, starts_at,
                  cancelled_at, cancel_reason, parent_id, recurrence_rule, recurrence_mode,
                  series_id, series_occurrence, series_anchor, reminders, fired, next_reminder_at)
         ON CONFLICT (id) DO UPDATE SET
             owner_id = EXCLUDED.owner_id, title = EXCLUDED.title,
             description = EXCLUDED.description, priority = EXCLUDED.priority,
             due_at = EXCLUDED.due_at, estimate_minutes = EXCLUDED.estimate_minutes,
             tags = EXCLUDED.tags, status = EXCLUDED.status, created_at = EXCLUDED.created_at,
             updated_at = EXCLUDED.updated_at, started_at = EXCLUDED.started_at,
             tracked_seconds = EXCLUDED.tracked_seconds, completed_at = EXCLUDED.completed_at,
             actual_minutes = EXCLUDED.actual_minutes, archived_at = EXCLUDED.archived_at,
             version = EXCLUDED.version, position = EXCLUDED.position,
             time_zone = EXCLUDED.time_zone, starts_at = EXCLUDED.starts_at,
             cancelled_at = EXCLUDED.cancelled_at, cancel_reason = EXCLUDED.cancel_reason,
             parent_id = EXCLUDED.parent_id, recurrence_rule = EXCLUDED.recurrence_rule,
             recurrence_mode = EXCLUDED.recurrence_mode, series_id = EXCLUDED.series_id,
             series_occurrence = EXCLUDED.series_occurrence,
             series_anchor = EXCLUDED.series_anchor, reminders = EXCLUDED.reminders,
             reminders_fired = EXCLUDED.reminders_fired,
             next_reminder_at = EXCLUDED.next_reminder_at",
    )
    .bind(id)
    .bind(owner)
    .bind(title)
    .bind(description)
    .bind(priority)
    .bind(due_at)
    .bind(estimate)
    .bind(tags)
    .bind(status)
    .bind(created_at)
    .bind(updated_at)
    .bind(started_at)
    .bind(tracked)
    .bind(completed_at)
    .bind(actual)
    .bind(archived_at)
    .bind(version)
    .bind(position)
    .bind(time_zone)
    .bind(starts_at)
    .bind(cancelled_at)
    .bind(cancel_reason)
    .bind(parent)
    .bind(rule)
    .bind(mode)
    .bind(series_id)
    .bind(occurrence)
    .bind(anchor)
    .bind(reminders)
    .bind(fired)
    .bind(next_reminder)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
