//! Given/when/then specifications of the Task aggregate, plus property tests over any sequence
//! of commands.

use chrono::{Duration, TimeZone, Utc};
use domain::*;
use proptest::prelude::*;
use uuid::Uuid;

/// A specification: `given(events).when(command).then_expect(...)`.
struct Given(Vec<TaskEvent>);

fn given(events: impl IntoIterator<Item = TaskEvent>) -> Given {
    Given(events.into_iter().collect())
}

struct When {
    state: Option<Task>,
    outcome: Result<Option<TaskEvent>, TaskError>,
}

impl Given {
    fn when(self, command: TaskCommand) -> When {
        let state = replay(&self.0);
        let outcome = decide(state.as_ref(), &command);
        When { state, outcome }
    }
}

impl When {
    #[track_caller]
    fn then_expect(self, event: TaskEvent) -> Task {
        assert_eq!(self.outcome, Ok(Some(event.clone())));
        evolve(self.state, &event).expect("the event applies")
    }

    #[track_caller]
    fn then_nothing(self) {
        assert_eq!(self.outcome, Ok(None));
    }

    #[track_caller]
    fn then_refuse(self, error: TaskError) {
        assert_eq!(self.outcome, Err(error));
    }
}

const ID: TaskId = TaskId(Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0001));

fn t(minutes: i64) -> Timestamp {
    Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap() + Duration::minutes(minutes)
}

fn owner() -> UserId {
    UserId::parse("alice").unwrap()
}

fn create_command() -> CreateTask {
    CreateTask {
        task_id: ID,
        owner: owner(),
        title: TaskTitle::parse("Write the report").unwrap(),
        description: Description::parse("quarterly numbers").unwrap(),
        priority: Some(Priority::High),
        due_at: Some(t(24 * 60)),
        starts_at: Some(t(60)),
        estimate_minutes: Some(EffortMinutes::parse(90, "estimate_minutes").unwrap()),
        tags: Tag::parse_list(&["work", "writing"]).unwrap(),
        time_zone: TimeZoneName::parse("Europe/Paris").unwrap(),
        placement: None,
        recurrence: None,
        series: None,
        reminders: Vec::new(),
        at: t(0),
    }
}

fn created() -> TaskEvent {
    let c = create_command();
    TaskEvent::Created(TaskCreated {
        task_id: ID,
        owner_id: c.owner,
        title: c.title,
        description: c.description,
        priority: c.priority,
        due_at: c.due_at,
        starts_at: c.starts_at,
        estimate_minutes: c.estimate_minutes,
        tags: c.tags,
        time_zone: c.time_zone,
        occurred_at: t(0),
        parent_id: None,
        recurrence: None,
        series: None,
        reminders: Vec::new(),
    })
}

fn started(at: i64) -> TaskEvent {
    TaskEvent::Started(TaskStarted {
        task_id: ID,
        occurred_at: t(at),
    })
}

fn paused(at: i64) -> TaskEvent {
    TaskEvent::Paused(TaskPaused {
        task_id: ID,
        occurred_at: t(at),
    })
}

fn completed(at: i64, minutes: Option<u32>) -> TaskEvent {
    TaskEvent::Completed(TaskCompleted {
        task_id: ID,
        actual_minutes: minutes.map(|m| EffortMinutes::parse(m.into(), "actual_minutes").unwrap()),
        occurred_at: t(at),
        cascade: false,
    })
}

fn reopened(at: i64) -> TaskEvent {
    TaskEvent::Reopened(TaskReopened {
        task_id: ID,
        occurred_at: t(at),
    })
}

fn archived(at: i64) -> TaskEvent {
    TaskEvent::Archived(TaskArchived {
        task_id: ID,
        occurred_at: t(at),
    })
}

fn cancelled(at: i64, reason: Option<&str>) -> TaskEvent {
    TaskEvent::Cancelled(TaskCancelled {
        task_id: ID,
        reason: reason.and_then(|r| CancelReason::parse(r).unwrap()),
        occurred_at: t(at),
    })
}

fn cancel(at: i64, reason: Option<&str>) -> TaskCommand {
    TaskCommand::Cancel(CancelTask {
        reason: reason.and_then(|r| CancelReason::parse(r).unwrap()),
        at: t(at),
    })
}

fn start(at: i64) -> TaskCommand {
    TaskCommand::Start(StartTask { at: t(at) })
}
fn pause(at: i64) -> TaskCommand {
    TaskCommand::Pause(PauseTask { at: t(at) })
}
fn complete(at: i64, minutes: Option<u32>) -> TaskCommand {
    TaskCommand::Complete(CompleteTask {
        actual_minutes: minutes.map(|m| EffortMinutes::parse(m.into(), "actual_minutes").unwrap()),
        at: t(at),
        open_children: Vec::new(),
        cascade: false,
    })
}
fn reopen(at: i64) -> TaskCommand {
    TaskCommand::Reopen(ReopenTask { at: t(at) })
}
fn archive(at: i64) -> TaskCommand {
    TaskCommand::Archive(ArchiveTask { at: t(at) })
}
fn update(changes: TaskChanges, at: i64) -> TaskCommand {
    TaskCommand::Update(UpdateTask { changes, at: t(at) })
}

// ---- CreateTask ----------------------------------------------------------------------------

#[test]
fn creating_a_new_task_records_every_given_field() {
    let task = given([])
        .when(TaskCommand::Create(create_command()))
        .then_expect(created());
    assert_eq!(task.status, TaskStatus::Open);
    assert_eq!(task.version, 1);
    assert_eq!(task.title.as_str(), "Write the report");
    assert_eq!(task.owner, owner());
}

#[test]
fn creating_a_task_that_already_exists_is_refused() {
    given([created()])
        .when(TaskCommand::Create(create_command()))
        .then_refuse(TaskError::AlreadyExists);
}

// ---- UpdateTask ----------------------------------------------------------------------------

#[test]
fn updating_keeps_only_the_fields_that_change() {
    let changes = TaskChanges {
        title: Some(TaskTitle::parse("Write the report").unwrap()),
        priority: Some(Some(Priority::Low)),
        description: Some(None),
        ..TaskChanges::default()
    };
    let task = given([created()])
        .when(update(changes, 5))
        .then_expect(TaskEvent::Updated(TaskUpdated {
            task_id: ID,
            title: None,
            description: Some(None),
            priority: Some(Some(Priority::Low)),
            due_at: None,
            starts_at: None,
            estimate_minutes: None,
            tags: None,
            reminders: None,
            occurred_at: t(5),
        }));
    assert_eq!(task.priority, Some(Priority::Low));
    assert_eq!(task.description, None);
    assert_eq!(task.version, 2);
    assert_eq!(task.updated_at, t(5));
}

#[test]
fn an_update_that_changes_nothing_yields_no_event() {
    let same = TaskChanges {
        priority: Some(Some(Priority::High)),
        tags: Some(Tag::parse_list(&["work", "writing"]).unwrap()),
        ..TaskChanges::default()
    };
    given([created()]).when(update(same, 5)).then_nothing();
    given([created()])
        .when(update(TaskChanges::default(), 5))
        .then_nothing();
}

#[test]
fn updating_a_missing_task_is_refused_as_not_found() {
    given([])
        .when(update(TaskChanges::default(), 1))
        .then_refuse(TaskError::NotFound);
}

#[test]
fn updating_an_archived_task_is_refused() {
    let changes = TaskChanges {
        priority: Some(None),
        ..TaskChanges::default()
    };
    given([created(), archived(1)])
        .when(update(changes, 2))
        .then_refuse(TaskError::Archived);
}

#[test]
fn a_completed_task_can_still_be_edited() {
    let changes = TaskChanges {
        tags: Some(vec![]),
        ..TaskChanges::default()
    };
    let task = given([created(), completed(10, Some(5))])
        .when(update(changes, 11))
        .then_expect(TaskEvent::Updated(TaskUpdated {
            task_id: ID,
            title: None,
            description: None,
            priority: None,
            due_at: None,
            starts_at: None,
            estimate_minutes: None,
            tags: Some(vec![]),
            reminders: None,
            occurred_at: t(11),
        }));
    assert_eq!(task.status, TaskStatus::Completed);
}

// ---- StartTask -----------------------------------------------------------------------------

#[test]
fn starting_an_open_task_puts_it_in_progress() {
    let task = given([created()]).when(start(3)).then_expect(started(3));
    assert_eq!(task.status, TaskStatus::InProgress);
    assert_eq!(task.started_at, Some(t(3)));
}

#[test]
fn starting_a_paused_task_resumes_it() {
    let task = given([created(), started(1), paused(11)])
        .when(start(20))
        .then_expect(started(20));
    assert_eq!(task.tracked_seconds, 600);
}

#[test]
fn starting_a_task_in_progress_is_refused() {
    given([created(), started(1)])
        .when(start(2))
        .then_refuse(TaskError::AlreadyStarted);
}

#[test]
fn starting_a_completed_task_is_refused() {
    given([created(), completed(1, None)])
        .when(start(2))
        .then_refuse(TaskError::AlreadyCompleted);
}

#[test]
fn starting_an_archived_task_is_refused() {
    given([created(), archived(1)])
        .when(start(2))
        .then_refuse(TaskError::Archived);
}

#[test]
fn starting_a_missing_task_is_refused_as_not_found() {
    given([]).when(start(0)).then_refuse(TaskError::NotFound);
}

// ---- PauseTask -----------------------------------------------------------------------------

#[test]
fn pausing_a_started_task_adds_the_session_to_tracked_time() {
    let task = given([created(), started(10)])
        .when(pause(25))
        .then_expect(paused(25));
    assert_eq!(task.status, TaskStatus::Paused);
    assert_eq!(task.tracked_seconds, 15 * 60);
    assert_eq!(task.started_at, None);
}

#[test]
fn pausing_a_task_that_is_not_started_is_refused() {
    given([created()])
        .when(pause(1))
        .then_refuse(TaskError::NotStarted);
    given([created(), started(1), paused(2)])
        .when(pause(3))
        .then_refuse(TaskError::NotStarted);
    given([created(), completed(1, None)])
        .when(pause(3))
        .then_refuse(TaskError::NotStarted);
}

#[test]
fn pausing_an_archived_task_is_refused() {
    given([created(), started(1), archived(2)])
        .when(pause(3))
        .then_refuse(TaskError::Archived);
}

// ---- CompleteTask --------------------------------------------------------------------------

#[test]
fn completing_with_a_reported_effort_keeps_that_effort() {
    let task = given([created(), started(0), paused(30)])
        .when(complete(40, Some(45)))
        .then_expect(completed(40, Some(45)));
    assert_eq!(task.actual_minutes.map(EffortMinutes::get), Some(45));
    assert_eq!(task.completed_at, Some(t(40)));
}

#[test]
fn completing_without_an_effort_derives_it_from_tracked_time() {
    // 20 minutes in a finished session plus 10 in the running one.
    let task = given([created(), started(0), paused(20), started(30)])
        .when(complete(40, None))
        .then_expect(completed(40, Some(30)));
    assert_eq!(task.tracked_seconds, 30 * 60);
    assert_eq!(task.status, TaskStatus::Completed);
}

#[test]
fn completing_an_untracked_task_without_an_effort_leaves_it_unknown() {
    let task = given([created()])
        .when(complete(5, None))
        .then_expect(completed(5, None));
    assert_eq!(task.actual_minutes, None);
}

#[test]
fn completing_a_completed_task_is_refused() {
    given([created(), completed(1, None)])
        .when(complete(2, None))
        .then_refuse(TaskError::AlreadyCompleted);
}

#[test]
fn completing_an_archived_task_is_refused() {
    given([created(), archived(1)])
        .when(complete(2, None))
        .then_refuse(TaskError::Archived);
}

// ---- ReopenTask ----------------------------------------------------------------------------

#[test]
fn reopening_a_completed_task_opens_it_again() {
    let task = given([created(), completed(1, Some(3))])
        .when(reopen(2))
        .then_expect(reopened(2));
    assert_eq!(task.status, TaskStatus::Open);
    assert_eq!(task.completed_at, None);
    assert_eq!(task.actual_minutes, None);
}

#[test]
fn reopening_a_task_that_is_not_completed_is_refused() {
    given([created()])
        .when(reopen(1))
        .then_refuse(TaskError::NotCompleted);
    given([created(), started(1)])
        .when(reopen(2))
        .then_refuse(TaskError::NotCompleted);
}

#[test]
fn reopening_an_archived_task_is_refused() {
    given([created(), completed(1, None), archived(2)])
        .when(reopen(3))
        .then_refuse(TaskError::Archived);
}

// ---- ArchiveTask ---------------------------------------------------------------------------

#[test]
fn archiving_stops_a_running_session_and_freezes_the_task() {
    let task = given([created(), started(0)])
        .when(archive(15))
        .then_expect(archived(15));
    assert_eq!(task.status, TaskStatus::Archived);
    assert_eq!(task.tracked_seconds, 15 * 60);
    assert_eq!(task.archived_at, Some(t(15)));
}

#[test]
fn archiving_an_archived_task_is_refused() {
    given([created(), archived(1)])
        .when(archive(2))
        .then_refuse(TaskError::Archived);
}

#[test]
fn archiving_a_missing_task_is_refused_as_not_found() {
    given([]).when(archive(1)).then_refuse(TaskError::NotFound);
}

// ---- Start dates ---------------------------------------------------------------------------

#[test]
fn a_start_date_is_recorded_apart_from_the_due_date() {
    let task = given([])
        .when(TaskCommand::Create(create_command()))
        .then_expect(created());
    assert_eq!(task.starts_at, Some(t(60)));
    assert_eq!(task.due_at, Some(t(24 * 60)));
}

#[test]
fn a_start_date_can_be_moved_and_cleared() {
    let moved = TaskChanges {
        starts_at: Some(Some(t(120))),
        ..TaskChanges::default()
    };
    let task = given([created()])
        .when(update(moved, 5))
        .then_expect(TaskEvent::Updated(TaskUpdated {
            task_id: ID,
            title: None,
            description: None,
            priority: None,
            due_at: None,
            starts_at: Some(Some(t(120))),
            estimate_minutes: None,
            tags: None,
            reminders: None,
            occurred_at: t(5),
        }));
    assert_eq!(task.starts_at, Some(t(120)));
    let cleared = TaskChanges {
        starts_at: Some(None),
        ..TaskChanges::default()
    };
    let event = decide(Some(&task), &update(cleared, 6)).unwrap().unwrap();
    assert_eq!(evolve(Some(task), &event).unwrap().starts_at, None);
}

#[test]
fn a_start_date_that_does_not_change_yields_no_event() {
    let same = TaskChanges {
        starts_at: Some(Some(t(60))),
        ..TaskChanges::default()
    };
    given([created()]).when(update(same, 5)).then_nothing();
}

// ---- CancelTask ----------------------------------------------------------------------------

#[test]
fn cancelling_an_open_task_records_the_reason_and_no_effort() {
    let task = given([created()])
        .when(cancel(5, Some("  not needed any more ")))
        .then_expect(cancelled(5, Some("not needed any more")));
    assert_eq!(task.status, TaskStatus::Cancelled);
    assert_eq!(task.cancelled_at, Some(t(5)));
    assert_eq!(
        task.cancel_reason.as_ref().map(CancelReason::as_str),
        Some("not needed any more")
    );
    assert_eq!(task.completed_at, None);
    assert_eq!(task.actual_minutes, None);
}

#[test]
fn cancelling_a_task_in_progress_closes_its_work_session() {
    let task = given([created(), started(1)])
        .when(cancel(11, None))
        .then_expect(cancelled(11, None));
    assert_eq!(task.started_at, None);
    assert_eq!(task.tracked_seconds, 600);
}

#[test]
fn a_cancelled_task_can_be_reopened_and_then_worked_on() {
    let task = given([created(), cancelled(5, Some("later"))])
        .when(reopen(6))
        .then_expect(reopened(6));
    assert_eq!(task.status, TaskStatus::Open);
    assert_eq!(task.cancelled_at, None);
    assert_eq!(task.cancel_reason, None);
    given([created(), cancelled(5, None), reopened(6)])
        .when(start(7))
        .then_expect(started(7));
}

#[test]
fn a_cancelled_task_refuses_work_until_reopened() {
    let history = || [created(), cancelled(5, None)];
    given(history())
        .when(start(6))
        .then_refuse(TaskError::Cancelled);
    given(history())
        .when(pause(6))
        .then_refuse(TaskError::Cancelled);
    given(history())
        .when(complete(6, Some(3)))
        .then_refuse(TaskError::Cancelled);
    given(history())
        .when(cancel(6, None))
        .then_refuse(TaskError::Cancelled);
}

#[test]
fn a_cancelled_task_can_still_be_edited_and_archived() {
    let changes = TaskChanges {
        priority: Some(None),
        ..TaskChanges::default()
    };
    let task = given([created(), cancelled(5, None)])
        .when(update(changes, 6))
        .then_expect(TaskEvent::Updated(TaskUpdated {
            task_id: ID,
            title: None,
            description: None,
            priority: Some(None),
            due_at: None,
            starts_at: None,
            estimate_minutes: None,
            tags: None,
            reminders: None,
            occurred_at: t(6),
        }));
    assert_eq!(task.status, TaskStatus::Cancelled);
    let task = given([created(), cancelled(5, None)])
        .when(archive(7))
        .then_expect(archived(7));
    assert_eq!(task.cancelled_at, Some(t(5)));
}

#[test]
fn cancelling_a_completed_task_is_refused() {
    given([created(), completed(5, Some(3))])
        .when(cancel(6, None))
        .then_refuse(TaskError::CancelCompleted);
}

#[test]
fn cancelling_an_archived_or_missing_task_is_refused() {
    given([created(), archived(1)])
        .when(cancel(2, None))
        .then_refuse(TaskError::Archived);
    given([])
        .when(cancel(1, None))
        .then_refuse(TaskError::NotFound);
}

#[test]
fn a_cancel_reason_is_trimmed_bounded_and_free_of_control_characters() {
    assert_eq!(CancelReason::parse("   ").unwrap(), None);
    assert!(CancelReason::parse(&"x".repeat(500)).unwrap().is_some());
    assert_eq!(
        CancelReason::parse(&"x".repeat(501)).unwrap_err().field,
        "reason"
    );
    assert!(CancelReason::parse("a\u{0}b").is_err());
}

// ---- evolve is total -----------------------------------------------------------------------

#[test]
fn events_before_the_creation_are_ignored_by_evolve() {
    assert_eq!(replay(&[started(0), paused(1)]), None);
    let task = replay(&[created(), created()]).unwrap();
    assert_eq!(task.version, 1);
}

// ---- properties ----------------------------------------------------------------------------

fn arb_changes() -> impl Strategy<Value = TaskChanges> {
    (
        proptest::option::of("[a-z]{1,12}"),
        proptest::option::of(proptest::option::of(0usize..4)),
        proptest::option::of(proptest::option::of(1i64..500)),
        proptest::option::of(proptest::collection::vec("[a-c]{1,3}", 0..4)),
    )
        .prop_map(|(title, priority, estimate, tags)| TaskChanges {
            title: title.map(|t| TaskTitle::parse(&t).unwrap()),
            priority: priority.map(|p| p.map(|i| Priority::ALL[i])),
            estimate_minutes: estimate
                .map(|e| e.map(|m| EffortMinutes::parse(m, "estimate_minutes").unwrap())),
            tags: tags.map(|t| Tag::parse_list(&t).unwrap()),
            ..TaskChanges::default()
        })
}

/// Any command, at a time offset in minutes that may even go backwards.
fn arb_command() -> impl Strategy<Value = TaskCommand> {
    let at = -5i64..600;
    prop_oneof![
        at.clone().prop_map(|m| TaskCommand::Create(CreateTask {
            at: t(m),
            ..create_command()
        })),
        (arb_changes(), at.clone()).prop_map(|(c, m)| update(c, m)),
        at.clone().prop_map(start),
        at.clone().prop_map(pause),
        (at.clone(), proptest::option::of(1u32..1000)).prop_map(|(m, a)| complete(m, a)),
        at.clone().prop_map(reopen),
        (at.clone(), proptest::option::of("[a-z ]{0,12}"))
            .prop_map(|(m, r)| cancel(m, r.as_deref().filter(|r| !r.trim().is_empty()))),
        at.clone().prop_map(archive),
        (at.clone(), proptest::bool::ANY)
            .prop_map(|(m, top)| move_to((!top).then(|| under(PARENT, &[GRANDPARENT], 1)), m)),
        (at, proptest::bool::ANY).prop_map(|(m, cascade)| complete_with(vec![CHILD], cascade, m)),
    ]
}

// ---- Subtasks: placement, moves, completion with open subtasks -------------------------------

const PARENT: TaskId = TaskId(Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_00a1));
const GRANDPARENT: TaskId = TaskId(Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_00a2));
const CHILD: TaskId = TaskId(Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_00a3));

fn under(parent: TaskId, parent_ancestors: &[TaskId], subtree_height: usize) -> Placement {
    Placement {
        parent_id: parent,
        parent_ancestors: parent_ancestors.to_vec(),
        parent_archived: false,
        subtree_height,
    }
}

fn create_under(placement: Placement) -> TaskCommand {
    TaskCommand::Create(CreateTask {
        placement: Some(placement),
        recurrence: None,
        series: None,
        reminders: Vec::new(),
        ..create_command()
    })
}

fn move_to(placement: Option<Placement>, at: i64) -> TaskCommand {
    TaskCommand::Move(MoveTask {
        placement,
        at: t(at),
    })
}

fn moved(parent: Option<TaskId>, at: i64) -> TaskEvent {
    TaskEvent::Moved(TaskMoved {
        task_id: ID,
        parent_id: parent,
        occurred_at: t(at),
    })
}

fn created_under(parent: TaskId) -> TaskEvent {
    let TaskEvent::Created(mut event) = created() else {
        unreachable!("created() is a creation")
    };
    event.parent_id = Some(parent);
    TaskEvent::Created(event)
}

fn complete_with(open_children: Vec<TaskId>, cascade: bool, at: i64) -> TaskCommand {
    TaskCommand::Complete(CompleteTask {
        actual_minutes: None,
        open_children,
        cascade,
        at: t(at),
    })
}

#[test]
fn creating_a_subtask_records_its_parent() {
    let task = given([])
        .when(create_under(under(PARENT, &[], 1)))
        .then_expect(created_under(PARENT));
    assert_eq!(task.parent_id, Some(PARENT));
}

#[test]
fn a_subtask_at_the_deepest_level_is_accepted() {
    // The parent sits at level 3 (two ancestors), so the new task is at level 4.
    given([])
        .when(create_under(under(PARENT, &[GRANDPARENT, CHILD], 1)))
        .then_expect(created_under(PARENT));
}

#[test]
fn a_subtask_below_the_deepest_level_is_refused() {
    let ancestors = [GRANDPARENT, CHILD, TaskId(Uuid::from_u128(7))];
    given([])
        .when(create_under(under(PARENT, &ancestors, 1)))
        .then_refuse(TaskError::TooDeep { max: MAX_DEPTH });
}

#[test]
fn a_subtask_of_an_archived_task_is_refused() {
    let placement = Placement {
        parent_archived: true,
        ..under(PARENT, &[], 1)
    };
    given([])
        .when(create_under(placement))
        .then_refuse(TaskError::ParentArchived);
}

#[test]
fn a_task_cannot_be_its_own_parent() {
    given([created()])
        .when(move_to(Some(under(ID, &[], 1)), 5))
        .then_refuse(TaskError::ParentCycle);
}

#[test]
fn moving_a_task_under_its_own_descendant_is_refused() {
    // PARENT is a grandchild of ID: ID appears among PARENT's ancestors.
    given([created()])
        .when(move_to(Some(under(PARENT, &[CHILD, ID], 3)), 5))
        .then_refuse(TaskError::ParentCycle);
}

#[test]
fn moving_a_subtree_counts_its_own_depth() {
    // The parent is at level 2, so the task lands at level 3; its subtree of height 2 reaches
    // level 4 (accepted) and one of height 3 would reach level 5 (refused).
    given([created()])
        .when(move_to(Some(under(PARENT, &[GRANDPARENT], 2)), 5))
        .then_expect(moved(Some(PARENT), 5));
    given([created()])
        .when(move_to(Some(under(PARENT, &[GRANDPARENT], 3)), 5))
        .then_refuse(TaskError::TooDeep { max: MAX_DEPTH });
}

#[test]
fn moving_a_subtask_to_the_top_level_clears_its_parent() {
    let task = given([created_under(PARENT)])
        .when(move_to(None, 5))
        .then_expect(moved(None, 5));
    assert_eq!(task.parent_id, None);
    assert_eq!(task.version, 2);
}

#[test]
fn moving_a_task_where_it_already_is_yields_no_event() {
    given([created_under(PARENT)])
        .when(move_to(Some(under(PARENT, &[], 1)), 5))
        .then_nothing();
    given([created()]).when(move_to(None, 5)).then_nothing();
}

#[test]
fn moving_an_archived_task_is_refused() {
    given([created(), archived(3)])
        .when(move_to(Some(under(PARENT, &[], 1)), 5))
        .then_refuse(TaskError::Archived);
}

#[test]
fn completing_with_open_subtasks_is_refused_naming_them() {
    given([created()])
        .when(complete_with(vec![CHILD, PARENT], false, 5))
        .then_refuse(TaskError::OpenChildren(vec![CHILD, PARENT]));
}

#[test]
fn completing_with_open_subtasks_and_a_cascade_records_the_cascade() {
    let task = given([created()])
        .when(complete_with(vec![CHILD], true, 5))
        .then_expect(TaskEvent::Completed(TaskCompleted {
            task_id: ID,
            actual_minutes: None,
            cascade: true,
            occurred_at: t(5),
        }));
    assert_eq!(task.status, TaskStatus::Completed);
}

#[test]
fn completing_without_open_subtasks_needs_no_cascade() {
    given([created()])
        .when(complete_with(vec![], false, 5))
        .then_expect(completed(5, None));
}

proptest! {
    /// Whatever commands arrive, evolve never panics, the state only ever moves by the events
    /// decide produced, and a task rebuilt from those events equals the state decide saw.
    #[test]
    fn a_task_rebuilt_from_its_events_equals_the_state_decide_saw(
        commands in proptest::collection::vec(arb_command(), 0..40)
    ) {
        let mut state: Option<Task> = None;
        let mut log: Vec<TaskEvent> = Vec::new();
        for command in &commands {
            prop_assert_eq!(&replay(&log), &state);
            if let Ok(Some(event)) = decide(state.as_ref(), command) {
                state = evolve(state, &event);
                log.push(event);
                let task = state.as_ref().expect("an accepted event leaves a task");
                prop_assert_eq!(task.version as usize, log.len());
                prop_assert!(task.tracked_seconds >= 0);
            }
        }
        prop_assert_eq!(replay(&log), state);
    }

    /// Every event decide produces survives the JSON round trip through its own type and
    /// version, so what is stored is exactly what was decided.
    #[test]
    fn every_decided_event_decodes_back_to_itself(
        commands in proptest::collection::vec(arb_command(), 0..20)
    ) {
        let mut state: Option<Task> = None;
        for command in &commands {
            if let Ok(Some(event)) = decide(state.as_ref(), command) {
                let back = TaskEvent::decode(event.event_type(), event.event_version(), &event.encode());
                prop_assert_eq!(back.as_ref().ok(), Some(&event));
                state = evolve(state, &event);
            }
        }
    }
}
