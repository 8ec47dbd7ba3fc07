//! `verify`: recomputes every task from the event log through the domain's `evolve` and
//! compares it with the read model, field by field.
//!
//! The read model is read in one repeatable-read snapshot together with its checkpoints, and
//! the log is folded, partition by partition, up to exactly those checkpoints, so projectors
//! running meanwhile cannot produce false differences.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, SubsecRound, Utc};

use domain::{Task, TaskId};
use eventstore::{EventStore, StoreError};
use futures::StreamExt;
use serde::Serialize;
use sqlx::PgPool;

use crate::error::ProjectionError;
use crate::task_rows::{self, TaskRecord};
use crate::{checkpoint, layout, TASKS_PROJECTION};

/// One field that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldDifference {
    /// The field.
    pub field: &'static str,
    /// What the log implies.
    pub expected: String,
    /// What the read model holds.
    pub actual: String,
}

/// How one task differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Difference {
    /// The log has the task; the read model does not.
    Missing {
        /// The task.
        task_id: uuid::Uuid,
    },
    /// The read model has a task the log does not imply.
    Unexpected {
        /// The task.
        task_id: uuid::Uuid,
    },
    /// Both have it, with different fields.
    Fields {
        /// The task.
        task_id: uuid::Uuid,
        /// The fields that differ.
        fields: Vec<FieldDifference>,
    },
}

/// The outcome of a verification.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The checkpoint compared at.
    pub position: u64,
    /// Events folded.
    pub events: u64,
    /// Tasks the log implies.
    pub tasks: usize,
    /// Every difference, by task id.
    pub differences: Vec<Difference>,
    /// Stream positions of events that could not be decoded.
    pub undecodable: Vec<u64>,
}

impl VerifyReport {
    /// Whether the read model is exactly what the log implies.
    pub fn is_clean(&self) -> bool {
        self.differences.is_empty() && self.undecodable.is_empty()
    }
}

/// Compares two states of one task, field by field.
pub fn compare(expected: &TaskRecord, actual: &TaskRecord) -> Vec<FieldDifference> {
    let mut out = Vec::new();
    let mut field = |name: &'static str, e: String, a: String| {
        if e != a {
            out.push(FieldDifference {
                field: name,
                expected: e,
                actual: a,
            });
        }
    };
    let (e, a): (&Task, &Task) = (&expected.task, &actual.task);
    // Postgres keeps microseconds; events written before the API rounded its clock may carry
    // nanoseconds. Instants are compared at the precision the read model can hold.
    let instant = |t: &DateTime<Utc>| t.trunc_subsecs(6).to_rfc3339();
    let maybe =
        |t: &Option<DateTime<Utc>>| t.as_ref().map(instant).unwrap_or_else(|| "None".into());
    field("owner", format!("{:?}", e.owner), format!("{:?}", a.owner));
    field("title", format!("{:?}", e.title), format!("{:?}", a.title));
    field(
        "description",
        format!("{:?}", e.description),
        format!("{:?}", a.description),
    );
    field(
        "priority",
        format!("{:?}", e.priority),
        format!("{:?}", a.priority),
    );
    field("due_at", maybe(&e.due_at), maybe(&a.due_at));
    field(
        "estimate_minutes",
        format!("{:?}", e.estimate_minutes),
        format!("{:?}", a.estimate_minutes),
    );
    field("tags", format!("{:?}", e.tags), format!("{:?}", a.tags));
    field(
        "time_zone",
        format!("{:?}", e.time_zone),
        format!("{:?}", a.time_zone),
    );
    field(
        "status",
        format!("{:?}", e.status),
        format!("{:?}", a.status),
    );
    field("created_at", instant(&e.created_at), instant(&a.created_at));
    field("updated_at", instant(&e.updated_at), instant(&a.updated_at));
    field("started_at", maybe(&e.started_at), maybe(&a.started_at));
    field(
        "tracked_seconds",
        e.tracked_seconds.to_string(),
        a.tracked_seconds.to_string(),
    );
    field(
        "completed_at",
        maybe(&e.completed_at),
        maybe(&a.completed_at),
    );
    field(
        "actual_minutes",
        format!("{:?}", e.actual_minutes),
        format!("{:?}", a.actual_minutes),
    );
    field("archived_at", maybe(&e.archived_at), maybe(&a.archived_at));
    field("starts_at", maybe(&e.starts_at), maybe(&a.starts_at));
    field(
        "cancelled_at",
        maybe(&e.cancelled_at),
        maybe(&a.cancelled_at),
    );
    field(
        "cancel_reason",
        format!("{:?}", e.cancel_reason),
        format!("{:?}", a.cancel_reason),
    );
    field(
        "parent_id",
        format!("{:?}", e.parent_id),
        format!("{:?}", a.parent_id),
    );
    field(
        "recurrence",
        format!("{:?}", e.recurrence),
        format!("{:?}", a.recurrence),
    );
    field(
        "series",
        format!("{:?}", e.series),
        format!("{:?}", a.series),
    );
    field("version", e.version.to_string(), a.version.to_string());
    field(
        "position",
        expected.position.to_string(),
        actual.position.to_string(),
    );
    out
}

/// Verifies the tasks read model against the log.
#[tracing::instrument(skip_all, err)]
pub async fn verify(pool: &PgPool, store: &EventStore) -> Result<VerifyReport, ProjectionError> {
    let mut snapshot = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *snapshot)
        .await?;
    let position = checkpoint::load(&mut *snapshot, TASKS_PROJECTION).await?;
    let partitions = layout::load(&mut *snapshot, TASKS_PROJECTION)
        .await?
        .map(|l| l.partitions)
        .unwrap_or(1);
    let positions = checkpoint::load_partitions(&mut *snapshot, TASKS_PROJECTION).await?;
    let rows = task_rows::load_all(&mut *snapshot).await?;
    snapshot.commit().await?;
    // Each partition is compared at its own checkpoint.
    let furthest = positions.values().copied().max().unwrap_or(0);
    let applied_in_partition = |subject: &str, sequence: u64| {
        let partition = layout::partition_of_subject(store.naming(), subject, partitions);
        positions.get(&partition).is_some_and(|&at| sequence <= at)
    };

    let mut report = VerifyReport {
        position,
        ..VerifyReport::default()
    };
    let mut expected: HashMap<TaskId, TaskRecord> = HashMap::new();
    if furthest > 0 {
        let events = store.read_from(None, 1).await.map_err(stream_error)?;
        futures::pin_mut!(events);
        while let Some(item) = events.next().await {
            let (sequence, recorded) = match item {
                Ok(recorded) => (recorded.position, Some(recorded)),
                Err(StoreError::Corrupt { sequence, .. }) => (sequence, None),
                Err(other) => return Err(stream_error(other)),
            };
            if sequence > furthest {
                break;
            }
            match recorded {
                Some(recorded) => {
                    let subject = store
                        .naming()
                        .task_subject(&recorded.owner, recorded.task_id);
                    if !applied_in_partition(&subject, sequence) {
                        continue;
                    }
                    report.events += 1;
                    let current = expected.remove(&recorded.task_id).map(|r| r.task);
                    if let Some(task) = domain::evolve(current, &recorded.event) {
                        expected.insert(
                            recorded.task_id,
                            TaskRecord {
                                task,
                                position: recorded.position,
                            },
                        );
                    }
                }
                None => {
                    report.events += 1;
                    report.undecodable.push(sequence);
                }
            }
            if sequence == furthest {
                break;
            }
        }
    }
    report.tasks = expected.len();
    let mut differences: BTreeMap<uuid::Uuid, Difference> = BTreeMap::new();
    for (id, want) in &expected {
        match rows.get(id) {
            None => {
                differences.insert(id.0, Difference::Missing { task_id: id.0 });
            }
            Some(have) => {
                let fields = compare(want, have);
                if !fields.is_empty() {
                    differences.insert(
                        id.0,
                        Difference::Fields {
                            task_id: id.0,
                            fields,
                        },
                    );
                }
            }
        }
    }
    for id in rows.keys().filter(|id| !expected.contains_key(id)) {
        differences.insert(id.0, Difference::Unexpected { task_id: id.0 });
    }
    report.differences = differences.into_values().collect();
    Ok(report)
}

fn stream_error(error: StoreError) -> ProjectionError {
    ProjectionError::Stream(error.to_string())
}
