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
            starts_at: Some(t(60)),
            estimate_minutes: Some(EffortMinutes::parse(45, "estimate_minutes").unwrap()),
            tags: Tag::parse_list(&["a", "b"]).unwrap(),
            time_zone: TimeZoneName::parse("Asia/Tokyo").unwrap(),
            at: t(0),
            placement: None,
            recurrence: None,
            series: None,
            reminders: Vec::new(),
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
            open_children: Vec::new(),
            cascade: false,
        }),
        TaskCommand::Reopen(ReopenTask { at: t(5) }),
        TaskCommand::Cancel(CancelTask {
            reason: CancelReason::parse("not needed").unwrap(),
            at: t(6),
        }),
        TaskCommand::Archive(ArchiveTask { at: t(7) }),
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

/// Any valid version 1 `TaskCreated` payload, as producers wrote them before time zones were
/// recorded: every optional field absent, `null` where v1 wrote `null`, or any valid value.
fn arb_v1_created() -> impl Strategy<Value = Value> {
    let text =
        |max: usize| proptest::string::string_regex(&format!("[^\\p{{Cc}}]{{1,{max}}}")).unwrap();
    let instant = (0i64..8_000_000_000).prop_map(|s| {
        Value::from(
            Utc.timestamp_opt(s, 0)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        )
    });
    (
        any::<u128>(),
        "[A-Za-z0-9_-]{1,64}",
        text(200),
        proptest::option::of(proptest::option::of(text(400))),
        proptest::option::of(proptest::sample::select(vec![
            "low", "medium", "high", "urgent",
        ])),
        proptest::option::of(instant.clone()),
        proptest::option::of(1u32..=100_000),
        proptest::option::of(proptest::collection::vec(text(32), 0..=20)),
        instant,
    )
        .prop_map(
            |(id, owner, title, description, priority, due_at, estimate, tags, occurred_at)| {
                let mut payload = serde_json::json!({
                    "task_id": uuid::Uuid::from_u128(id),
                    "owner_id": owner,
                    "title": title,
                    "occurred_at": occurred_at,
                });
                let object = payload.as_object_mut().unwrap();
                if let Some(description) = description {
                    object.insert(
                        "description".into(),
                        description.map_or(Value::Null, Value::from),
                    );
                }
                if let Some(priority) = priority {
                    object.insert("priority".into(), priority.into());
                }
                if let Some(due_at) = due_at {
                    object.insert("due_at".into(), due_at);
                }
                if let Some(estimate) = estimate {
                    object.insert("estimate_minutes".into(), estimate.into());
                }
                if let Some(tags) = tags {
                    object.insert("tags".into(), tags.into());
                }
                payload
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Upcasting is total over what v1 producers wrote: every valid v1 creation decodes as the
    /// current `TaskCreated` in UTC with its fields unchanged, and the task it creates takes
    /// the rest of a life (every later event type) without a panic.
    #[test]
    fn every_valid_v1_creation_upcasts_in_utc_and_folds(payload in arb_v1_created()) {
        let bytes = serde_json::to_vec(&payload).unwrap();
        let decoded = TaskEvent::decode("TaskCreated", 1, &bytes);
        let Ok(TaskEvent::Created(created)) = decoded else {
            panic!("a valid v1 payload was refused: {decoded:?}\n{payload}");
        };
        prop_assert_eq!(created.time_zone.as_str(), "UTC");
        let mut current: Value = serde_json::from_slice(&TaskEvent::Created(created.clone()).encode()).unwrap();
        let current = current.as_object_mut().unwrap();
        prop_assert_eq!(current.remove("time_zone"), Some(Value::from("UTC")));
        for (field, value) in payload.as_object().unwrap() {
            if !value.is_null() {
                prop_assert_eq!(current.get(field), Some(value), "field {}", field);
            }
        }
        let task = evolve(None, &TaskEvent::Created(created));
        prop_assert!(task.is_some());
        let mut state = task;
        for later in valid_history().iter().skip(1) {
            state = evolve(state, later);
        }
    }

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
