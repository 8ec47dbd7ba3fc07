//! What the API reads from the tasks read model: one task, and filtered, sorted, cursor-paged
//! lists. Every query is scoped to an owner, so another user's task is simply not found.

use base64::Engine;
use chrono::{DateTime, Utc};
use domain::{Priority, TaskId, TaskStatus, UserId};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Postgres, QueryBuilder};

use crate::error::ProjectionError;
use crate::task_rows::{TaskRecord, TaskRow, TASK_COLUMNS};

/// One task of `owner`, if it exists and is theirs.
#[tracing::instrument(skip_all, fields(task_id = %id), err)]
pub async fn get_task(
    pool: &PgPool,
    owner: &UserId,
    id: TaskId,
) -> Result<Option<TaskRecord>, ProjectionError> {
    let row: Option<TaskRow> = sqlx::query_as(&format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1 AND owner_id = $2"
    ))
    .bind(id.0)
    .bind(owner.as_str())
    .fetch_optional(pool)
    .await?;
    row.map(TaskRecord::try_from).transpose()
}

/// The orders a list can be sorted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortKey {
    /// Creation time.
    CreatedAt,
    /// Time of the last change.
    UpdatedAt,
    /// Due date; tasks without one come last in ascending order.
    DueAt,
    /// Priority; tasks without one rank below `low`.
    Priority,
}

impl SortKey {
    /// Parses the query-string name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "created_at" => SortKey::CreatedAt,
            "updated_at" => SortKey::UpdatedAt,
            "due_at" => SortKey::DueAt,
            "priority" => SortKey::Priority,
            _ => return None,
        })
    }

    fn expression(self) -> &'static str {
        match self {
            SortKey::CreatedAt => "created_at",
            SortKey::UpdatedAt => "updated_at",
            SortKey::DueAt => "coalesce(due_at, 'infinity'::timestamptz)",
            SortKey::Priority => "priority_rank",
        }
    }

    fn cast(self) -> &'static str {
        match self {
            SortKey::Priority => "::text::smallint",
            _ => "::text::timestamptz",
        }
    }

    fn value_of(self, record: &TaskRecord) -> String {
        let task = &record.task;
        match self {
            SortKey::CreatedAt => task.created_at.to_rfc3339(),
            SortKey::UpdatedAt => task.updated_at.to_rfc3339(),
            SortKey::DueAt => task
                .due_at
                .map(|d| d.to_rfc3339())
                .unwrap_or_else(|| "infinity".into()),
            SortKey::Priority => task
                .priority
                .map(|p| Priority::ALL.iter().position(|x| *x == p).unwrap_or(0) + 1)
                .unwrap_or(0)
                .to_string(),
        }
    }
}

/// The `available` filter: a task is available when it is unfinished (open, in progress or
/// paused) and its start date, if any, has come. The instant comes with the query, so the
/// read model never reads a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Availability {
    /// `true`: only available tasks; `false`: only unfinished tasks whose start is still ahead.
    pub available: bool,
    /// The instant "has come" is judged at.
    pub at: DateTime<Utc>,
}

/// The `parent` filter of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParentFilter {
    /// Only top-level tasks.
    TopLevel,
    /// Only the direct subtasks of this task.
    Of(TaskId),
}

/// Filters, order and page of a list.
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// Any of these statuses (all when empty).
    pub statuses: Vec<TaskStatus>,
    /// Any of these priorities (all when empty).
    pub priorities: Vec<Priority>,
    /// Every one of these tags.
    pub tags: Vec<String>,
    /// Due at or after.
    pub due_after: Option<DateTime<Utc>>,
    /// Due before.
    pub due_before: Option<DateTime<Utc>>,
    /// Only tasks that can (or, with `false`, cannot yet) be worked on as of an instant.
    pub available: Option<Availability>,
    /// Full-text search over title and description (web-search syntax: words, "phrases", -not).
    pub text: Option<String>,
    /// Only top-level tasks, or only the direct subtasks of one task.
    pub parent: Option<ParentFilter>,
    /// Only this task and everything below it.
    pub subtree: Option<TaskId>,
    /// Only the occurrences of this series (named by its first occurrence).
    pub series: Option<TaskId>,
    /// Order.
    pub sort: SortKey,
    /// Descending order.
    pub descending: bool,
    /// Page size.
    pub limit: u32,
    /// Where the previous page ended.
    pub after: Option<Cursor>,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            statuses: Vec::new(),
            priorities: Vec::new(),
            tags: Vec::new(),
            due_after: None,
            due_before: None,
            available: None,
            text: None,
            parent: None,
            subtree: None,
            series: None,
            sort: SortKey::CreatedAt,
            descending: true,
            limit: 50,
            after: None,
        }
    }
}

/// An opaque position in a sorted list: the sort value and id of the last item of a page.
/// It also records the order it was issued for, so it cannot be used with another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    #[serde(rename = "s")]
    sort: SortKey,
    #[serde(rename = "d")]
    descending: bool,
    #[serde(rename = "v")]
    value: String,
    #[serde(rename = "i")]
    id: uuid::Uuid,
}

impl Cursor {
    /// The URL-safe text form.
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    /// Parses the text form.
    pub fn decode(text: &str) -> Result<Self, ProjectionError> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| ProjectionError::InvalidCursor)?;
        let cursor: Cursor =
            serde_json::from_slice(&bytes).map_err(|_| ProjectionError::InvalidCursor)?;
        let plausible = match cursor.sort {
            SortKey::Priority => cursor.value.parse::<i16>().is_ok(),
            _ => cursor.value == "infinity" || DateTime::parse_from_rfc3339(&cursor.value).is_ok(),
        };
        plausible
            .then_some(cursor)
            .ok_or(ProjectionError::InvalidCursor)
    }
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct Page {
    /// The tasks of this page.
    pub items: Vec<TaskRecord>,
    /// The cursor of the next page, `None` on the last.
    pub next: Option<Cursor>,
}

/// Lists `owner`'s tasks.
#[tracing::instrument(skip_all, err)]
pub async fn list_tasks(
    pool: &PgPool,
    owner: &UserId,
    query: &ListQuery,
) -> Result<Page, ProjectionError> {
    let mut sql: QueryBuilder<Postgres> = QueryBuilder::new(format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE owner_id = "
    ));
    sql.push_bind(owner.as_str());
    if !query.statuses.is_empty() {
        let names: Vec<&str> = query.statuses.iter().map(|s| s.as_str()).collect();
        sql.push(" AND status = ANY(").push_bind(names).push(")");
    }
    if !query.priorities.is_empty() {
        let names: Vec<&str> = query.priorities.iter().map(|p| p.as_str()).collect();
        sql.push(" AND priority = ANY(").push_bind(names).push(")");
    }
    if !query.tags.is_empty() {
        sql.push(" AND tags @> ").push_bind(query.tags.clone());
    }
    if let Some(after) = query.due_after {
        sql.push(" AND due_at >= ").push_bind(after);
    }
    if let Some(before) = query.due_before {
        sql.push(" AND due_at < ").push_bind(before);
    }
    if let Some(availability) = query.available {
        sql.push(" AND status IN ('open', 'in_progress', 'paused')");
        if availability.available {
            sql.push(" AND (starts_at IS NULL OR starts_at <= ")
                .push_bind(availability.at)
                .push(")");
        } else {
            sql.push(" AND starts_at > ").push_bind(availability.at);
        }
    }
    if let Some(text) = &query.text {
        sql.push(" AND search @@ websearch_to_tsquery('english', ")
            .push_bind(text.clone())
            .push(")");
    }
    match query.parent {
        Some(ParentFilter::TopLevel) => {
            sql.push(" AND parent_id IS NULL");
        }
        Some(ParentFilter::Of(parent)) => {
            sql.push(" AND parent_id = ").push_bind(parent.0);
        }
        None => {}
    }
    if let Some(series) = query.series {
        sql.push(" AND series_id = ").push_bind(series.0);
    }
    if let Some(root) = query.subtree {
        // The walk is bounded by the depth limit, so even a cycle a race let through (the
        // command path repairs those) cannot make it run away.
        sql.push(" AND id IN (WITH RECURSIVE subtree(id, depth) AS (SELECT id, 1 FROM tasks WHERE id = ")
            .push_bind(root.0)
            .push(" AND owner_id = ")
            .push_bind(owner.as_str())
            .push(" UNION ALL SELECT t.id, s.depth + 1 FROM tasks t JOIN subtree s ON t.parent_id = s.id WHERE s.depth < ")
            .push_bind(domain::MAX_DEPTH as i32)
            .push(") SELECT id FROM subtree)");
    }
    let expression = query.sort.expression();
    let (direction, comparison) = if query.descending {
        ("DESC", "<")
    } else {
        ("ASC", ">")
    };
    if let Some(cursor) = &query.after {
        if cursor.sort != query.sort || cursor.descending != query.descending {
            return Err(ProjectionError::InvalidCursor);
        }
        sql.push(format!(" AND ({expression}, id) {comparison} ("))
            .push_bind(cursor.value.clone())
            .push(query.sort.cast())
            .push(", ")
            .push_bind(cursor.id)
            .push(")");
    }
    sql.push(format!(
        " ORDER BY {expression} {direction}, id {direction} LIMIT "
    ))
    .push_bind(i64::from(query.limit) + 1);

    let rows: Vec<TaskRow> = sql.build_query_as().fetch_all(pool).await?;
    let mut items: Vec<TaskRecord> = rows
        .into_iter()
        .map(TaskRecord::try_from)
        .collect::<Result<_, _>>()?;
    let next = if items.len() > query.limit as usize {
        items.truncate(query.limit as usize);
        items.last().map(|last| Cursor {
            sort: query.sort,
            descending: query.descending,
            value: query.sort.value_of(last),
            id: last.task.id.0,
        })
    } else {
        None
    };
    Ok(Page { items, next })
}

/// How a task's direct subtasks stand. Archived subtasks are left out: they are put away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChildCounts {
    /// Every subtask that is not archived.
    pub total: u32,
    /// Open, in progress or paused.
    pub open: u32,
    /// Completed.
    pub completed: u32,
    /// Cancelled.
    pub cancelled: u32,
}

impl ChildCounts {
    /// The share of the subtasks that will be done which are done (cancelled ones will not
    /// be, so they count on neither side); `None` when there are none.
    pub fn progress(&self) -> Option<f64> {
        let relevant = self.total.saturating_sub(self.cancelled);
        (relevant > 0).then(|| f64::from(self.completed) / f64::from(relevant))
    }
}

/// The subtask counts of each of `ids` (owned by `owner`) that has subtasks, in one query.
#[tracing::instrument(skip_all, fields(tasks = ids.len()), err)]
pub async fn child_counts(
    pool: &PgPool,
    owner: &UserId,
    ids: &[TaskId],
) -> Result<std::collections::HashMap<TaskId, ChildCounts>, ProjectionError> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.0).collect();
    let rows: Vec<(uuid::Uuid, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT parent_id,
                count(*),
                count(*) FILTER (WHERE status IN ('open', 'in_progress', 'paused')),
                count(*) FILTER (WHERE status = 'completed'),
                count(*) FILTER (WHERE status = 'cancelled')
           FROM tasks
          WHERE parent_id = ANY($1) AND owner_id = $2 AND status <> 'archived'
          GROUP BY parent_id",
    )
    .bind(&ids)
    .bind(owner.as_str())
    .fetch_all(pool)
    .await?;
    let count = |n: i64| u32::try_from(n).unwrap_or(u32::MAX);
    Ok(rows
        .into_iter()
        .map(|(parent, total, open, completed, cancelled)| {
            (
                TaskId(parent),
                ChildCounts {
                    total: count(total),
                    open: count(open),
                    completed: count(completed),
                    cancelled: count(cancelled),
                },
            )
        })
        .collect())
}

/// The direct subtasks of `id` that are still to be done (open, in progress or paused),
/// oldest first.
#[tracing::instrument(skip_all, fields(task_id = %id), err)]
pub async fn open_children(
    pool: &PgPool,
    owner: &UserId,
    id: TaskId,
) -> Result<Vec<TaskId>, ProjectionError> {
    let rows: Vec<(uuid::Uuid,)> = sqlx::query_as(
        "SELECT id FROM tasks
          WHERE parent_id = $1 AND owner_id = $2 AND status IN ('open', 'in_progress', 'paused')
          ORDER BY created_at, id",
    )
    .bind(id.0)
    .bind(owner.as_str())
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(id,)| TaskId(id)).collect())
}

/// How many levels the subtree under `id` spans, the task itself included (1 for a task
/// without subtasks). Archived subtasks count: they still sit in the tree.
#[tracing::instrument(skip_all, fields(task_id = %id), err)]
pub async fn subtree_height(
    pool: &PgPool,
    owner: &UserId,
    id: TaskId,
) -> Result<usize, ProjectionError> {
    let height: Option<i32> = sqlx::query_scalar(
        "WITH RECURSIVE subtree(id, depth) AS (
             SELECT $1::uuid, 1
             UNION ALL
             SELECT t.id, s.depth + 1 FROM tasks t JOIN subtree s ON t.parent_id = s.id
              WHERE t.owner_id = $2 AND s.depth <= $3)
         SELECT max(depth) FROM subtree",
    )
    .bind(id.0)
    .bind(owner.as_str())
    .bind(domain::MAX_DEPTH as i32)
    .fetch_one(pool)
    .await?;
    Ok(height.unwrap_or(1).max(1) as usize)
}

/// Every task below `id` that is not archived, parents before their subtasks (by depth, then
/// creation): what a repeating task's next occurrence copies. The walk stops at the depth
/// limit, so a cycle a race let through cannot loop.
#[tracing::instrument(skip_all, fields(task_id = %id), err)]
pub async fn descendants(
    pool: &PgPool,
    owner: &UserId,
    id: TaskId,
) -> Result<Vec<TaskRecord>, ProjectionError> {
    let sql = format!(
        "WITH RECURSIVE subtree(id, depth) AS (
             SELECT t.id, 1 FROM tasks t WHERE t.parent_id = $1 AND t.owner_id = $2
             UNION ALL
             SELECT t.id, s.depth + 1 FROM tasks t JOIN subtree s ON t.parent_id = s.id
              WHERE t.owner_id = $2 AND s.depth < $3)
         SELECT {TASK_COLUMNS} FROM tasks JOIN (SELECT id, min(depth) AS depth FROM subtree
                                                GROUP BY id) d USING (id)
          WHERE status <> 'archived'
          ORDER BY d.depth, created_at, id"
    );
    let rows: Vec<TaskRow> = sqlx::query_as(&sql)
        .bind(id.0)
        .bind(owner.as_str())
        .bind(domain::MAX_DEPTH as i32)
        .fetch_all(pool)
        .await?;
    rows.into_iter().map(TaskRecord::try_from).collect()
}

/// The pending reminders due at or before `until`, earliest first, at most `limit`: the
/// scheduler's next window. Served by the partial index on `next_reminder_at`, so the cost
/// does not grow with the number of reminders pending further ahead.
#[tracing::instrument(skip_all, err)]
pub async fn due_reminders(
    pool: &PgPool,
    until: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<(TaskId, UserId, DateTime<Utc>)>, ProjectionError> {
    let rows: Vec<(uuid::Uuid, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT id, owner_id, next_reminder_at FROM tasks
          WHERE next_reminder_at <= $1
          ORDER BY next_reminder_at, id
          LIMIT $2",
    )
    .bind(until)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, owner, at)| (TaskId(id), domain::FromTrusted::from_trusted(owner), at))
        .collect())
}

/// The tasks of `owner` still to be done (open, in progress or paused), at most `limit`: what
/// the calendar feed exports. When there are more, the ones due (or, without a due date,
/// starting) soonest are kept, then the oldest, since those are what a calendar shows first.
#[tracing::instrument(skip_all, fields(limit), err)]
pub async fn unfinished_tasks(
    pool: &PgPool,
    owner: &UserId,
    limit: u32,
) -> Result<Vec<TaskRecord>, ProjectionError> {
    let rows: Vec<TaskRow> = sqlx::query_as(&format!(
        "SELECT {TASK_COLUMNS} FROM tasks
          WHERE owner_id = $1 AND status IN ('open', 'in_progress', 'paused')
          ORDER BY coalesce(due_at, starts_at, 'infinity'::timestamptz), created_at, id
          LIMIT $2"
    ))
    .bind(owner.as_str())
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(TaskRecord::try_from).collect()
}
