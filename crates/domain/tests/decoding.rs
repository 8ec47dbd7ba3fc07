//! Decoding stored events is total: whatever bytes a stream holds under whatever type and
//! version headers (a bug in another producer, a hand-edited import, a version from the
//! future), [`TaskEvent::decode`] answers `Ok` or `Err` and never panics, and an event it
//! accepts can be folded by `evolve` without panicking either. The projector and every reader
//! rely on that to dead-letter a bad event instead of crashing on it.

use chrono::{Duration, TimeZone, Utc};
use domain::*;
use proptest::prelude::*;
use serde_json::Value;

fn t(minutes: i64) -> Timestamp {
    Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap() + Duration::minutes(minutes)
}

/// One valid event of every type, as decide produces them, with the task they apply to.
fn valid_history() -> Vec<TaskEvent> {
    let commands = [
        TaskCommand::Create(CreateTask {
            task_id: TaskId(uuid::Uuid::from_u128(7)),
            owner: UserId::parse("fuzz").unwrap(),
            title: TaskTitle::parse("Decode me").unwrap(),
            description: Description::parse("with a description").unwrap(),
            priority: Some(Priority::Urgent),
            due_at: Some(t(600)),
            estimate_minutes: Some(EffortMinutes::parse(45, "estimate_minutes").unwrap()),
            tags: Tag::parse_list(&["a", "b"]).unwrap(),
            time_zone: TimeZoneName::parse("Asia/Tokyo").unwrap(),
            at: t(0),
        }),
        TaskCommand::Update(UpdateTask {
            changes: TaskChanges {
                title: Some(TaskTitle::parse("Decoded").unwrap()),
                ..TaskChanges::default()
            },
            at: t(1),
        }),
        TaskCommand::Start(StartTask { at: t(2) }),
        TaskCommand::Pause(PauseTask { at: t(3) }),
        TaskCommand::Complete(CompleteTask {
            actual_minutes: None,
            at: t(4),
        }),
        TaskCommand::Reopen(ReopenTask { at: t(5) }),
        TaskCommand::Archive(ArchiveTask { at: t(6) }),
    ];
    let mut state = None;
    let mut events = Vec::new();
    for command in &commands {
        let event = decide(state.as_ref(), command)
            .expect("the history is valid")
            .expect("every command changes something");
        state = evolve(state, &event);
        events.push(event);
    }
    events
}

/// Any JSON value, nested a little.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
        Just(Value::String("x".repeat(20_000))),
        Just(Value::from(u64::MAX)),
        Just(Value::from(-1)),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Type headers: the known ones, near misses, and anything.
fn arb_event_type() -> impl Strategy<Value = String> {
    let known: Vec<String> = domain::event::CURRENT_VERSIONS
        .iter()
        .map(|(t, _)| (*t).to_owned())
        .collect();
    prop_oneof![
        proptest::sample::select(known),
        Just("taskcreated".to_owned()),
        Just(String::new()),
        ".{0,30}",
    ]
}

/// Folds `event` onto no task and onto every state of the valid history: must not panic.
fn fold_everywhere(event: &TaskEvent, history: &[TaskEvent]) {
    let _ = evolve(None, event);
    let mut state = None;
    for past in history {
        state = evolve(state, past);
        let _ = evolve(state.clone(), event);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_under_any_type_and_version_never_panic(
        event_type in arb_event_type(),
        version in prop_oneof![0u32..4, any::<u32>()],
        payload in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        if let Ok(event) = TaskEvent::decode(&event_type, version, &payload) {
            fold_everywhere(&event, &valid_history());
        }
    }

    /// A valid payload with one field replaced by any JSON value, one field removed, or an
    /// unknown field added: decoded or refused, never a panic; what decodes folds.
    #[test]
    fn a_valid_payload_with_one_field_changed_decodes_or_is_refused(
        which in 0usize..7,
        field in any::<prop::sample::Index>(),
        replacement in arb_json(),
        edit in 0u8..3,
        old_version in any::<bool>(),
    ) {
        let history = valid_history();
        let event = &history[which];
        let mut payload: Value = serde_json::from_slice(&event.encode()).unwrap();
        let object = payload.as_object_mut().expect("events are JSON objects");
        let keys: Vec<String> = object.keys().cloned().collect();
        let key = keys[field.index(keys.len())].clone();
        match edit {
            0 => { object.insert(key, replacement); }
            1 => { object.remove(&key); }
            _ => { object.insert(format!("{key}_extra"), replacement); }
        }
        let version = if old_version && event.event_type() == "TaskCreated" { 1 } else { event.event_version() };
        let bytes = serde_json::to_vec(&payload).unwrap();
        if let Ok(decoded) = TaskEvent::decode(event.event_type(), version, &bytes) {
            fold_everywhere(&decoded, &history);
        }
    }
}

#[test]
fn every_valid_event_of_the_fixture_decodes_to_itself() {
    // The mutation test above starts from these; they must be the real thing.
    for event in valid_history() {
        let back = TaskEvent::decode(event.event_type(), event.event_version(), &event.encode());
        assert_eq!(back.ok().as_ref(), Some(&event));
    }
}
