//! Given/when/then specifications of reminders: what may be set, when one is pending, and
//! that each resolved instant fires once.

use chrono::{Duration, TimeZone, Utc};
use domain::*;
use uuid::Uuid;

const ID: TaskId = TaskId(Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_00bb));

fn t(minutes: i64) -> Timestamp {
    Utc.with_ymd_and_hms(2030, 3, 1, 9, 0, 0).unwrap() + Duration::minutes(minutes)
}

fn create(due: Option<i64>, reminders: Vec<Reminder>) -> TaskCommand {
    TaskCommand::Create(CreateTask {
        task_id: ID,
        owner: UserId::parse("alice").unwrap(),
        title: TaskTitle::parse("Call the bank").unwrap(),
        description: None,
        priority: None,
        due_at: due.map(t),
        starts_at: None,
        estimate_minutes: None,
        tags: Vec::new(),
        time_zone: TimeZoneName::utc(),
        placement: None,
        recurrence: None,
        series: None,
        reminders,
        at: t(0),
    })
}

fn given(commands: &[TaskCommand]) -> Option<Task> {
    commands.iter().fold(None, |state, command| {
        let event = decide(state.as_ref(), command)
            .expect("accepted")
            .expect("an event");
        evolve(state, &event)
    })
}

fn fire(remind_at: i64, at: i64) -> TaskCommand {
    TaskCommand::FireReminder(FireReminder {
        remind_at: t(remind_at),
        at: t(at),
    })
}

#[test]
fn given_nothing_when_a_reminder_lies_in_the_past_then_the_create_is_refused() {
    assert_eq!(
        decide(None, &create(Some(60), vec![Reminder::At(t(-1))])),
        Err(TaskError::ReminderInPast)
    );
    // A lead time that reaches back before now is in the past too.
    assert_eq!(
        decide(
            None,
            &create(Some(60), vec![Reminder::BeforeDueMinutes(90)])
        ),
        Err(TaskError::ReminderInPast)
    );
}

#[test]
fn given_nothing_when_a_lead_time_has_no_due_date_then_the_create_is_refused() {
    assert_eq!(
        decide(None, &create(None, vec![Reminder::BeforeDueMinutes(10)])),
        Err(TaskError::ReminderWithoutDue)
    );
}

#[test]
fn given_two_reminders_when_the_first_fires_then_it_is_due_once_and_the_second_stays_pending() {
    let task = given(&[create(
        Some(120),
        vec![Reminder::At(t(30)), Reminder::BeforeDueMinutes(15)],
    )])
    .unwrap();
    assert_eq!(
        task.pending_reminders().collect::<Vec<_>>(),
        [t(30), t(105)]
    );
    let event = decide(Some(&task), &fire(30, 30)).unwrap().unwrap();
    assert_eq!(
        event,
        TaskEvent::ReminderDue(ReminderDue {
            task_id: ID,
            remind_at: t(30),
            late: false,
            occurred_at: t(30),
        })
    );
    let task = evolve(Some(task), &event).unwrap();
    assert_eq!(task.next_reminder(), Some(t(105)));
    assert_eq!(
        decide(Some(&task), &fire(30, 31)),
        Err(TaskError::ReminderNotPending)
    );
}

#[test]
fn given_a_reminder_when_it_fires_minutes_late_then_it_is_marked_late() {
    let task = given(&[create(Some(120), vec![Reminder::At(t(30))])]).unwrap();
    let Ok(Some(TaskEvent::ReminderDue(due))) = decide(Some(&task), &fire(30, 45)) else {
        panic!("a reminder")
    };
    assert!(due.late);
}

#[test]
fn given_a_lead_time_when_the_due_date_moves_then_the_reminder_moves_with_it() {
    let moved = TaskCommand::Update(UpdateTask {
        changes: TaskChanges {
            due_at: Some(Some(t(300))),
            ..TaskChanges::default()
        },
        at: t(1),
    });
    let task = given(&[
        create(Some(120), vec![Reminder::BeforeDueMinutes(60)]),
        moved,
    ])
    .unwrap();
    assert_eq!(task.next_reminder(), Some(t(240)));
    assert_eq!(
        decide(Some(&task), &fire(60, 60)),
        Err(TaskError::ReminderNotPending),
        "the old instant is gone"
    );
}

#[test]
fn given_a_completed_or_cancelled_task_then_its_reminders_are_dropped() {
    let complete = TaskCommand::Complete(CompleteTask {
        actual_minutes: None,
        open_children: Vec::new(),
        cascade: false,
        at: t(1),
    });
    let task = given(&[create(Some(120), vec![Reminder::At(t(30))]), complete]).unwrap();
    assert_eq!(task.next_reminder(), None);
    assert_eq!(
        decide(Some(&task), &fire(30, 30)),
        Err(TaskError::ReminderNotPending)
    );
    let cancel = TaskCommand::Cancel(CancelTask {
        reason: None,
        at: t(1),
    });
    let task = given(&[create(Some(120), vec![Reminder::At(t(30))]), cancel]).unwrap();
    assert_eq!(task.next_reminder(), None);
}

#[test]
fn given_reminders_when_replaced_then_only_new_ones_must_lie_ahead() {
    let task = given(&[create(Some(120), vec![Reminder::At(t(30))])]).unwrap();
    let replace = |reminders: Vec<Reminder>, at: i64| {
        TaskCommand::Update(UpdateTask {
            changes: TaskChanges {
                reminders: Some(reminders),
                ..TaskChanges::default()
            },
            at: t(at),
        })
    };
    // At minute 40 the old reminder (minute 30) is kept as it was; a new one must lie ahead.
    assert!(decide(
        Some(&task),
        &replace(vec![Reminder::At(t(30)), Reminder::At(t(50))], 40)
    )
    .is_ok());
    assert_eq!(
        decide(Some(&task), &replace(vec![Reminder::At(t(35))], 40)),
        Err(TaskError::ReminderInPast)
    );
    // A list of eleven is refused as input.
    let eleven: Vec<Reminder> = (0..11).map(Reminder::BeforeDueMinutes).collect();
    assert!(Reminder::parse_list(&eleven).is_err());
    assert!(Reminder::parse_list(&[Reminder::BeforeDueMinutes(525_601)]).is_err());
}
