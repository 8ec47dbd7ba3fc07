//! Given/when/then specifications of repeating tasks: how a series starts, and which
//! occurrence follows a finished one.

use chrono::{TimeZone, Utc};
use domain::*;
use uuid::Uuid;

const ID: TaskId = TaskId(Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_00aa));

fn utc(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn create(
    due_at: Option<Timestamp>,
    starts_at: Option<Timestamp>,
    rule: &str,
    mode: RecurrenceMode,
) -> TaskCommand {
    TaskCommand::Create(CreateTask {
        task_id: ID,
        owner: UserId::parse("alice").unwrap(),
        title: TaskTitle::parse("Water the plants").unwrap(),
        description: None,
        priority: Some(Priority::Medium),
        due_at,
        starts_at,
        estimate_minutes: None,
        tags: Vec::new(),
        time_zone: TimeZoneName::parse("Europe/Paris").unwrap(),
        placement: None,
        recurrence: Some(Recurrence::parse(rule, mode).unwrap()),
        series: None,
        reminders: Vec::new(),
        at: Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 0).unwrap(),
    })
}

/// The state after deciding and applying `command` on nothing.
fn created_by(command: TaskCommand) -> Task {
    let event = decide(None, &command).unwrap().expect("an event");
    evolve(None, &event).unwrap()
}

#[test]
fn given_nothing_when_a_repeating_task_is_created_then_it_is_occurrence_one_anchored_on_its_due_date(
) {
    let due = utc("2026-03-02T08:00:00Z");
    let event = decide(
        None,
        &create(
            Some(due),
            None,
            "FREQ=WEEKLY;BYDAY=MO",
            RecurrenceMode::Fixed,
        ),
    )
    .unwrap()
    .unwrap();
    let TaskEvent::Created(created) = &event else {
        panic!("a creation")
    };
    assert_eq!(
        created.series,
        Some(SeriesLink {
            series_id: ID,
            occurrence: 1,
            anchor: due
        })
    );
    assert_eq!(
        created.recurrence.as_ref().map(|r| r.rule.as_str()),
        Some("FREQ=WEEKLY;BYDAY=MO")
    );
    // It travels as version 5 and reads back the same.
    assert_eq!(event.event_version(), 5);
    assert_eq!(
        TaskEvent::decode("TaskCreated", 5, &event.encode()).unwrap(),
        event
    );
}

#[test]
fn given_nothing_when_a_repeating_task_has_no_due_date_then_it_is_refused() {
    assert_eq!(
        decide(
            None,
            &create(None, None, "FREQ=DAILY", RecurrenceMode::Fixed)
        ),
        Err(TaskError::RecurrenceWithoutDue)
    );
}

#[test]
fn given_a_weekly_monday_task_when_done_on_time_then_next_monday_at_the_same_local_time() {
    // Monday 2 March 2026, 09:00 in Paris (UTC+1).
    let task = created_by(create(
        Some(utc("2026-03-02T08:00:00Z")),
        None,
        "FREQ=WEEKLY;BYDAY=MO",
        RecurrenceMode::Fixed,
    ));
    let next = task.next_occurrence(utc("2026-03-02T07:30:00Z")).unwrap();
    assert_eq!(next.due_at, utc("2026-03-09T08:00:00Z"));
    assert_eq!(next.series.occurrence, 2);
    assert_eq!(next.series.series_id, ID);
}

#[test]
fn given_a_weekly_task_at_nine_when_the_clocks_change_then_it_stays_at_nine_local() {
    // Monday 23 March 09:00 CET; the clocks go forward on 29 March.
    let task = created_by(create(
        Some(utc("2026-03-23T08:00:00Z")),
        None,
        "FREQ=WEEKLY;BYDAY=MO",
        RecurrenceMode::Fixed,
    ));
    let next = task.next_occurrence(utc("2026-03-23T10:00:00Z")).unwrap();
    assert_eq!(next.due_at, utc("2026-03-30T07:00:00Z"), "09:00 CEST");
}

#[test]
fn given_a_fixed_task_left_open_for_weeks_when_done_then_the_missed_occurrences_are_skipped() {
    let task = created_by(create(
        Some(utc("2026-03-02T08:00:00Z")),
        None,
        "FREQ=WEEKLY;BYDAY=MO",
        RecurrenceMode::Fixed,
    ));
    // Done on Wednesday 18 March: the next Monday from then, not 9 March.
    let next = task.next_occurrence(utc("2026-03-18T12:00:00Z")).unwrap();
    assert_eq!(next.due_at, utc("2026-03-23T08:00:00Z"));
    assert_eq!(next.series.occurrence, 2);
}

#[test]
fn given_an_after_completion_task_when_done_late_then_the_next_is_an_interval_after_the_completion()
{
    let task = created_by(create(
        Some(utc("2026-03-02T08:00:00Z")),
        None,
        "FREQ=DAILY;INTERVAL=3",
        RecurrenceMode::AfterCompletion,
    ));
    // Done on 10 March in the evening: due 13 March at 09:00 local.
    let next = task.next_occurrence(utc("2026-03-10T19:00:00Z")).unwrap();
    assert_eq!(next.due_at, utc("2026-03-13T08:00:00Z"));
}

#[test]
fn given_a_start_date_a_day_before_the_due_date_when_the_next_comes_then_it_starts_a_day_before() {
    let task = created_by(create(
        Some(utc("2026-03-02T08:00:00Z")),
        Some(utc("2026-03-01T08:00:00Z")),
        "FREQ=WEEKLY",
        RecurrenceMode::Fixed,
    ));
    let next = task.next_occurrence(utc("2026-03-02T08:00:00Z")).unwrap();
    assert_eq!(next.due_at, utc("2026-03-09T08:00:00Z"));
    assert_eq!(next.starts_at, Some(utc("2026-03-08T08:00:00Z")));
}

#[test]
fn given_count_2_when_the_second_occurrence_is_done_then_the_series_ends() {
    let first = created_by(create(
        Some(utc("2026-03-02T08:00:00Z")),
        None,
        "FREQ=DAILY;COUNT=2",
        RecurrenceMode::Fixed,
    ));
    let next = first.next_occurrence(utc("2026-03-02T08:00:00Z")).unwrap();
    let second = created_by(TaskCommand::Create(CreateTask {
        due_at: Some(next.due_at),
        series: Some(next.series),
        reminders: Vec::new(),
        ..match create(
            Some(next.due_at),
            None,
            "FREQ=DAILY;COUNT=2",
            RecurrenceMode::Fixed,
        ) {
            TaskCommand::Create(c) => c,
            _ => unreachable!(),
        }
    }));
    assert_eq!(second.series.unwrap().occurrence, 2);
    assert_eq!(second.next_occurrence(utc("2026-03-03T08:00:00Z")), None);
}

#[test]
fn given_a_task_that_does_not_repeat_when_done_then_there_is_no_next() {
    let mut task = created_by(create(
        Some(utc("2026-03-02T08:00:00Z")),
        None,
        "FREQ=DAILY",
        RecurrenceMode::Fixed,
    ));
    task.recurrence = None;
    assert_eq!(task.next_occurrence(utc("2026-03-02T08:00:00Z")), None);
}

#[test]
fn given_a_version_4_creation_when_read_then_it_does_not_repeat() {
    let v4 = br#"{"task_id":"00000000-0000-0000-0000-000000000001","owner_id":"amy","title":"T","time_zone":"UTC","parent_id":"00000000-0000-0000-0000-000000000002","occurred_at":"2025-01-01T00:00:00Z"}"#;
    let TaskEvent::Created(created) = TaskEvent::decode("TaskCreated", 4, v4).unwrap() else {
        panic!("a creation")
    };
    assert_eq!(created.recurrence, None);
    assert_eq!(created.series, None);
    assert!(created.parent_id.is_some());
    // A version 4 reader refuses a payload with a recurrence rather than drop it.
    let v5 = br#"{"task_id":"00000000-0000-0000-0000-000000000001","owner_id":"amy","title":"T","time_zone":"UTC","recurrence":{"rule":"FREQ=DAILY","mode":"fixed"},"occurred_at":"2025-01-01T00:00:00Z"}"#;
    assert!(TaskEvent::decode("TaskCreated", 4, v5).is_err());
    assert!(TaskEvent::decode("TaskCreated", 5, v5).is_ok());
}
