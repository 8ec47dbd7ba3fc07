//! `GET /v1/calendar.ics`: the user's unfinished tasks as VTODOs, read with a feed token.

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use domain::{Priority, Task, TaskStatus};
use projections::queries::{self, ChildCounts};

use crate::calendar::ics::{self, Todo, TodoStatus, When};
use crate::calendar::{feed_token_hash, is_feed_token_shaped};
use crate::limits::FeedParams;
use crate::problem::{ApiError, Problem};
use crate::state::AppState;

/// The most VTODOs one feed holds. Calendar clients slow to a crawl long before this (and a
/// feed of this size is about 4 MB); a user with more unfinished tasks gets the ones due or
/// starting soonest.
pub const MAX_FEED_TODOS: u32 = 10_000;

/// The media type of the feed.
pub const TEXT_CALENDAR: &str = "text/calendar; charset=utf-8";

/// The calendar's name in subscribing clients.
const CALENDAR_NAME: &str = "taskmaster";

/// `PRIORITY` (RFC 5545 §3.8.1.9): 1 is the highest, 9 the lowest, 0 undefined. The four
/// priorities spread over the scale the way clients read it (1–4 high, 5 medium, 6–9 low).
pub fn ics_priority(priority: Option<Priority>) -> u8 {
    match priority {
        Some(Priority::Urgent) => 1,
        Some(Priority::High) => 3,
        Some(Priority::Medium) => 5,
        Some(Priority::Low) => 7,
        None => 0,
    }
}

/// `PERCENT-COMPLETE`: the share of its subtasks that are done, rounded down (so 100 only
/// when all are), cancelled subtasks counting on neither side; 0 for a task without subtasks,
/// whose progress is unknown until it is completed.
pub fn percent_complete(subtasks: Option<&ChildCounts>) -> u8 {
    subtasks
        .and_then(ChildCounts::progress)
        .map_or(0, |share| (share * 100.0).floor().clamp(0.0, 100.0) as u8)
}

/// The VTODO of an unfinished task; `None` for a finished one (completed, cancelled or
/// archived), which the feed leaves out.
///
/// Instants are written in UTC, except those of a repeating task whose owner works in a zone
/// other than UTC: its rule is expanded in that zone (09:00 stays 09:00 across a change of
/// daylight saving time, and `BYDAY=MO` means the owner's Monday), which a UTC start would
/// misplace, so its dates are written as floating wall-clock times of the owner's zone, which
/// clients expand in the zone they show (the owner's, for the owner's calendar). `DTSTART` is
/// the start date, left out when it falls after the due date: RFC 5545 requires a to-do's
/// `DUE` to be no earlier than its `DTSTART`, and the due date is the firmer of the two.
pub fn todo_of(task: &Task, subtasks: Option<&ChildCounts>) -> Option<Todo> {
    let status = match task.status {
        TaskStatus::Open => TodoStatus::NeedsAction,
        TaskStatus::InProgress | TaskStatus::Paused => TodoStatus::InProcess,
        TaskStatus::Completed | TaskStatus::Cancelled | TaskStatus::Archived => return None,
    };
    let start = task
        .starts_at
        .filter(|start| task.due_at.is_none_or(|due| *start <= due));
    let rrule = task
        .recurrence
        .as_ref()
        .filter(|_| task.due_at.is_some())
        .map(|r| remaining_rule(&r.rule, task.series.as_ref()));
    let zone = task.time_zone.tz();
    let written = |instant: chrono::DateTime<chrono::Utc>| {
        if rrule.is_some() && zone != chrono_tz::UTC {
            When::Floating(instant.with_timezone(&zone).naive_local())
        } else {
            When::Utc(instant)
        }
    };
    Some(Todo {
        uid: task.id.to_string(),
        stamp: task.updated_at,
        created: task.created_at,
        last_modified: task.updated_at,
        summary: task.title.as_str().to_owned(),
        description: task.description.as_ref().map(|d| d.as_str().to_owned()),
        start: start.map(written),
        due: task.due_at.map(written),
        rrule,
        parent_uid: task.parent_id.map(|parent| parent.to_string()),
        status,
        priority: ics_priority(task.priority),
        percent_complete: percent_complete(subtasks),
        categories: task.tags.iter().map(|t| t.as_str().to_owned()).collect(),
    })
}

/// The `RRULE` of a repeating task's VTODO. The VTODO is the occurrence still to be done and
/// the rule expands from its due date, so a `COUNT`, which counts the series from its first
/// occurrence, becomes what is left of it from this one.
pub fn remaining_rule(rule: &str, series: Option<&domain::SeriesLink>) -> String {
    let done_before = series.map_or(0, |s| s.occurrence.saturating_sub(1));
    rule.split(';')
        .map(
            |part| match part.strip_prefix("COUNT=").map(str::parse::<u32>) {
                Some(Ok(count)) => format!("COUNT={}", count.saturating_sub(done_before).max(1)),
                _ => part.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join(";")
}

/// The feed token of the query string: given once, else the request is refused like a bad
/// token (401), whatever else is wrong with it.
fn feed_token(raw: Option<&str>) -> Result<String, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|_| ApiError::BadRequest("the query string is malformed".into()))?;
    let mut tokens = pairs.into_iter().filter(|(name, _)| name == "token");
    match (tokens.next(), tokens.next()) {
        (Some((_, token)), None) => Ok(token),
        (None, _) => Err(ApiError::Unauthorized(
            "the feed token is missing: subscribe to the feed_path that POST /v1/calendar/tokens answered".into(),
        )),
        (Some(_), Some(_)) => Err(ApiError::Unauthorized("give the feed token once".into())),
    }
}

/// Your unfinished tasks as an iCalendar feed.
///
/// Subscribe a calendar client to this URL with a feed token from `POST /v1/calendar/tokens`
/// (no bearer token: calendar clients cannot send one). Each open, in-progress or paused task
/// is a VTODO with UID, DTSTAMP, CREATED, LAST-MODIFIED, SUMMARY, DESCRIPTION, DTSTART (its
/// start date), DUE, RRULE (a repeating task), RELATED-TO;RELTYPE=PARENT (subtasks), STATUS (NEEDS-ACTION, or
/// IN-PROCESS once started), PRIORITY (urgent 1, high 3, medium 5, low 7, none 0),
/// PERCENT-COMPLETE (from its subtasks) and CATEGORIES (tags). Instants are in UTC, except
/// for a repeating task of an owner in another zone: its rule is expanded in that zone, so its
/// dates are floating wall-clock times of it. At most 10,000 tasks, those due or starting
/// soonest first.
#[utoipa::path(
    get, path = "/v1/calendar.ics", tag = "calendar",
    params(FeedParams),
    responses(
        (status = 200, description = "The feed (RFC 5545)", body = String, content_type = "text/calendar"),
        (status = 400, description = "Malformed query string", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "The feed token is missing, malformed, unknown or revoked", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Read model unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn calendar_feed(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let token = feed_token(raw.as_deref())?;
    let refused =
        || ApiError::Unauthorized("the feed token is not valid (unknown or revoked)".into());
    if !is_feed_token_shaped(&token) {
        return Err(refused());
    }
    // The primary: a token revoked a moment ago must not read a replica's older copy.
    let owner = projections::feed_tokens::resolve(
        state.reads.primary(),
        &feed_token_hash(&token),
        commands::now(),
    )
    .await?
    .ok_or_else(refused)?;
    let owner = &owner;
    let tasks = state
        .reads
        .query(None, |pool| async move {
            queries::unfinished_tasks(&pool, owner, MAX_FEED_TODOS).await
        })
        .await?;
    let ids: Vec<domain::TaskId> = tasks.iter().map(|r| r.task.id).collect();
    let ids = &ids;
    let counts = state
        .reads
        .query(None, |pool| async move {
            queries::child_counts(&pool, owner, ids).await
        })
        .await?;
    let todos: Vec<Todo> = tasks
        .iter()
        .filter_map(|record| todo_of(&record.task, counts.get(&record.task.id)))
        .collect();
    let body = ics::calendar(CALENDAR_NAME, &todos);
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(TEXT_CALENDAR),
    );
    // A personal feed behind a secret URL: no shared cache may keep it.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use domain::{FromTrusted, Tag, TaskId, TaskTitle, TimeZoneName, UserId};

    fn task(status: TaskStatus) -> Task {
        let at = Utc.with_ymd_and_hms(2030, 1, 1, 9, 0, 0).unwrap();
        Task {
            id: TaskId(uuid::Uuid::from_u128(1)),
            owner: UserId::from_trusted("alice".into()),
            title: TaskTitle::from_trusted("Pay rent".into()),
            description: None,
            priority: None,
            due_at: None,
            starts_at: None,
            estimate_minutes: None,
            tags: Vec::new(),
            time_zone: TimeZoneName::from_trusted("UTC".into()),
            parent_id: None,
            recurrence: None,
            series: None,
            reminders: Vec::new(),
            reminders_fired: Vec::new(),
            status,
            created_at: at,
            updated_at: at + chrono::Duration::hours(1),
            started_at: None,
            tracked_seconds: 0,
            completed_at: None,
            actual_minutes: None,
            archived_at: None,
            cancelled_at: None,
            cancel_reason: None,
            version: 1,
        }
    }

    #[test]
    fn priorities_map_onto_the_rfc_scale_and_none_is_undefined() {
        assert_eq!(ics_priority(Some(Priority::Urgent)), 1);
        assert_eq!(ics_priority(Some(Priority::High)), 3);
        assert_eq!(ics_priority(Some(Priority::Medium)), 5);
        assert_eq!(ics_priority(Some(Priority::Low)), 7);
        assert_eq!(ics_priority(None), 0);
    }

    #[test]
    fn percent_complete_counts_done_subtasks_and_ignores_cancelled_ones() {
        let counts = |total, completed, cancelled| ChildCounts {
            total,
            open: total - completed - cancelled,
            completed,
            cancelled,
        };
        assert_eq!(percent_complete(None), 0);
        assert_eq!(percent_complete(Some(&counts(3, 2, 0))), 66);
        assert_eq!(percent_complete(Some(&counts(4, 1, 2))), 50);
        assert_eq!(percent_complete(Some(&counts(3, 3, 0))), 100);
        assert_eq!(percent_complete(Some(&counts(2, 0, 2))), 0);
    }

    #[test]
    fn given_an_open_task_then_needs_action_and_started_ones_are_in_process() {
        assert_eq!(
            todo_of(&task(TaskStatus::Open), None).unwrap().status,
            TodoStatus::NeedsAction
        );
        for started in [TaskStatus::InProgress, TaskStatus::Paused] {
            assert_eq!(
                todo_of(&task(started), None).unwrap().status,
                TodoStatus::InProcess
            );
        }
        for finished in [
            TaskStatus::Completed,
            TaskStatus::Cancelled,
            TaskStatus::Archived,
        ] {
            assert_eq!(todo_of(&task(finished), None), None);
        }
    }

    #[test]
    fn given_a_full_task_then_every_field_reaches_its_property() {
        let mut full = task(TaskStatus::Open);
        full.description = Some(domain::Description::from_trusted("Before the 1st".into()));
        full.priority = Some(Priority::High);
        full.due_at = Some(Utc.with_ymd_and_hms(2030, 2, 1, 9, 0, 0).unwrap());
        full.starts_at = Some(Utc.with_ymd_and_hms(2030, 1, 28, 9, 0, 0).unwrap());
        full.parent_id = Some(TaskId(uuid::Uuid::from_u128(7)));
        full.tags = vec![Tag::from_trusted("home".into())];
        let todo = todo_of(&full, None).unwrap();
        assert_eq!(todo.uid, "00000000-0000-0000-0000-000000000001");
        assert_eq!(todo.stamp, full.updated_at);
        assert_eq!(todo.last_modified, full.updated_at);
        assert_eq!(todo.created, full.created_at);
        assert_eq!(todo.summary, "Pay rent");
        assert_eq!(todo.description.as_deref(), Some("Before the 1st"));
        assert_eq!(todo.start, full.starts_at.map(When::Utc));
        assert_eq!(todo.due, full.due_at.map(When::Utc));
        assert_eq!(
            todo.parent_uid.as_deref(),
            Some("00000000-0000-0000-0000-000000000007")
        );
        assert_eq!(todo.priority, 3);
        assert_eq!(todo.categories, ["home"]);
    }

    #[test]
    fn given_a_start_after_the_due_date_then_dtstart_is_left_out() {
        let mut late = task(TaskStatus::Open);
        late.due_at = Some(Utc.with_ymd_and_hms(2030, 1, 1, 9, 0, 0).unwrap());
        late.starts_at = Some(Utc.with_ymd_and_hms(2030, 1, 2, 9, 0, 0).unwrap());
        let todo = todo_of(&late, None).unwrap();
        assert_eq!(todo.start, None);
        assert_eq!(todo.due, late.due_at.map(When::Utc));
        // Without a due date the start stands alone.
        late.due_at = None;
        assert_eq!(
            todo_of(&late, None).unwrap().start,
            late.starts_at.map(When::Utc)
        );
    }

    #[test]
    fn given_a_repeating_task_then_its_rule_is_written_with_what_is_left_of_a_count() {
        let mut weekly = task(TaskStatus::Open);
        weekly.recurrence = Some(
            domain::Recurrence::parse(
                "FREQ=WEEKLY;BYDAY=MO;COUNT=5",
                domain::RecurrenceMode::Fixed,
            )
            .unwrap(),
        );
        // Without a due date there is nothing to expand from.
        assert_eq!(todo_of(&weekly, None).unwrap().rrule, None);
        weekly.due_at = Some(Utc.with_ymd_and_hms(2030, 1, 7, 9, 0, 0).unwrap());
        assert_eq!(
            todo_of(&weekly, None).unwrap().rrule.as_deref(),
            Some("FREQ=WEEKLY;BYDAY=MO;COUNT=5")
        );
        weekly.series = Some(domain::SeriesLink {
            series_id: TaskId(uuid::Uuid::from_u128(9)),
            occurrence: 3,
            anchor: Utc.with_ymd_and_hms(2029, 12, 24, 9, 0, 0).unwrap(),
        });
        assert_eq!(
            todo_of(&weekly, None).unwrap().rrule.as_deref(),
            Some("FREQ=WEEKLY;BYDAY=MO;COUNT=3")
        );
        assert_eq!(
            remaining_rule("FREQ=DAILY;INTERVAL=2", None),
            "FREQ=DAILY;INTERVAL=2"
        );
    }

    #[test]
    fn given_a_repeating_task_of_a_zone_then_its_dates_are_that_zones_wall_clock() {
        let mut tokyo = task(TaskStatus::Open);
        tokyo.time_zone = TimeZoneName::from_trusted("Asia/Tokyo".into());
        // Monday 08:00 in Tokyo is Sunday 23:00 in UTC: BYDAY=MO must see the Monday.
        tokyo.due_at = Some(Utc.with_ymd_and_hms(2030, 3, 3, 23, 0, 0).unwrap());
        let monday_8am = chrono::NaiveDate::from_ymd_opt(2030, 3, 4)
            .unwrap()
            .and_hms_opt(8, 0, 0)
            .unwrap();
        // Not repeating: the instant, in UTC.
        assert_eq!(
            todo_of(&tokyo, None).unwrap().due,
            tokyo.due_at.map(When::Utc)
        );
        tokyo.recurrence = Some(
            domain::Recurrence::parse("FREQ=WEEKLY;BYDAY=MO", domain::RecurrenceMode::Fixed)
                .unwrap(),
        );
        assert_eq!(
            todo_of(&tokyo, None).unwrap().due,
            Some(When::Floating(monday_8am))
        );
        // A repeating task of a UTC owner stays in UTC.
        tokyo.time_zone = TimeZoneName::from_trusted("UTC".into());
        assert_eq!(
            todo_of(&tokyo, None).unwrap().due,
            tokyo.due_at.map(When::Utc)
        );
    }

    #[test]
    fn the_token_must_be_given_exactly_once() {
        assert_eq!(feed_token(Some("token=abc")).unwrap(), "abc");
        assert!(matches!(feed_token(None), Err(ApiError::Unauthorized(_))));
        assert!(matches!(
            feed_token(Some("token=a&token=b")),
            Err(ApiError::Unauthorized(_))
        ));
    }
}
