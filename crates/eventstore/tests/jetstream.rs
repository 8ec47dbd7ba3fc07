//! The event store against the real NATS server, one prefix per test.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use domain::*;
use eventstore::store::StoreOptions;
use eventstore::{
    apply_stream_definitions, CommandMeta, EventStore, Naming, StoreError, StreamOptions,
};
use futures::StreamExt;
use testkit::NatsScope;

async fn open_store(scope: &NatsScope) -> EventStore {
    let client = scope.client().await;
    let naming = Naming::new(&scope.prefix).unwrap();
    let jetstream = async_nats::jetstream::new(client.clone());
    apply_stream_definitions(&jetstream, &naming, StreamOptions::default())
        .await
        .unwrap();
    EventStore::open(client, naming, StoreOptions::default())
        .await
        .unwrap()
}

fn meta() -> CommandMeta {
    CommandMeta {
        command_id: uuid::Uuid::new_v4().to_string(),
        correlation_id: uuid::Uuid::new_v4().to_string(),
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        client_supplied_id: false,
    }
}

fn at(minute: i64) -> Timestamp {
    Utc.with_ymd_and_hms(2026, 5, 1, 8, 0, 0).unwrap() + chrono::Duration::minutes(minute)
}

fn create(owner: &UserId, id: TaskId) -> TaskCommand {
    TaskCommand::Create(CreateTask {
        task_id: id,
        owner: owner.clone(),
        title: TaskTitle::parse("Ship the release").unwrap(),
        description: Description::parse("with notes").unwrap(),
        priority: Some(Priority::Urgent),
        due_at: Some(at(600)),
        estimate_minutes: Some(EffortMinutes::parse(120, "estimate_minutes").unwrap()),
        tags: Tag::parse_list(&["release"]).unwrap(),
        starts_at: None,
        time_zone: TimeZoneName::utc(),
        at: at(0),
        placement: None,
        recurrence: None,
        series: None,
        reminders: Vec::new(),
    })
}

fn retitle(title: &str, minute: i64) -> TaskCommand {
    TaskCommand::Update(UpdateTask {
        changes: TaskChanges {
            title: Some(TaskTitle::parse(title).unwrap()),
            ..TaskChanges::default()
        },
        at: at(minute),
    })
}

#[tokio::test]
async fn an_append_with_a_stale_expected_version_is_a_version_conflict() {
    let scope = NatsScope::new();
    let store = open_store(&scope).await;
    let owner = UserId::parse("alice").unwrap();
    let id = TaskId(uuid::Uuid::now_v7());

    let created = store
        .execute(&owner, id, &create(&owner, id), None, &meta())
        .await
        .unwrap();
    assert_eq!((created.version, created.appended), (1, true));
    let updated = store
        .execute(&owner, id, &retitle("Ship it", 1), Some(1), &meta())
        .await
        .unwrap();
    assert_eq!(updated.version, 2);
    assert!(updated.position > created.position);

    let stale = store
        .execute(&owner, id, &retitle("Ship it now", 2), Some(1), &meta())
        .await;
    assert!(matches!(
        stale,
        Err(StoreError::VersionConflict {
            expected: 1,
            actual: 2
        })
    ));
}

#[tokio::test]
async fn a_repeated_command_id_appends_once_and_answers_the_same() {
    let scope = NatsScope::new();
    let store = open_store(&scope).await;
    let owner = UserId::parse("bob").unwrap();
    let id = TaskId(uuid::Uuid::now_v7());
    store
        .execute(&owner, id, &create(&owner, id), None, &meta())
        .await
        .unwrap();

    let repeat = CommandMeta {
        client_supplied_id: true,
        ..meta()
    };
    let start = TaskCommand::Start(StartTask { at: at(5) });
    let first = store
        .execute(&owner, id, &start, None, &repeat)
        .await
        .unwrap();
    // The same start again would be refused (already started), but it is the same command.
    let second = store
        .execute(&owner, id, &start, None, &repeat)
        .await
        .unwrap();
    assert_eq!(
        (second.version, second.position),
        (first.version, first.position)
    );
    assert!(!second.appended);

    // A second process, with a cold cache, answers the same too.
    let other = open_store_on(&scope).await;
    let third = other
        .execute(&owner, id, &start, None, &repeat)
        .await
        .unwrap();
    assert_eq!(
        (third.version, third.position),
        (first.version, first.position)
    );
    assert_eq!(store.history(&owner, id).await.unwrap().len(), 2);
}

async fn open_store_on(scope: &NatsScope) -> EventStore {
    EventStore::open(
        scope.client().await,
        Naming::new(&scope.prefix).unwrap(),
        StoreOptions::default(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn concurrent_writers_each_land_at_their_own_version() {
    let scope = NatsScope::new();
    let store = Arc::new(open_store(&scope).await);
    // A second store instance (as a second API process) with its own cache.
    let other = Arc::new(open_store_on(&scope).await);
    let owner = UserId::parse("carol").unwrap();
    let id = TaskId(uuid::Uuid::now_v7());
    store
        .execute(&owner, id, &create(&owner, id), None, &meta())
        .await
        .unwrap();

    let mut writers = Vec::new();
    for i in 0..16 {
        let store = if i % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        let owner = owner.clone();
        writers.push(tokio::spawn(async move {
            store
                .execute(
                    &owner,
                    id,
                    &retitle(&format!("title {i}"), i + 1),
                    None,
                    &meta(),
                )
                .await
        }));
    }
    let mut versions = Vec::new();
    for writer in writers {
        match writer.await.unwrap() {
            Ok(outcome) => versions.push(outcome.version),
            Err(StoreError::Concurrency) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    versions.sort_unstable();
    let history = store.history(&owner, id).await.unwrap();
    assert_eq!(
        history.len(),
        versions.len() + 1,
        "one event per accepted writer"
    );
    assert_eq!(versions, (2..=history.len() as u64).collect::<Vec<_>>());
    // Both caches converge on the log.
    let state = replay(history.iter().map(|e| &e.event));
    assert_eq!(store.load(&owner, id).await.unwrap().task, state);
    assert_eq!(other.load(&owner, id).await.unwrap().task, state);
}

#[tokio::test]
async fn someone_elses_task_does_not_exist_for_you() {
    let scope = NatsScope::new();
    let store = open_store(&scope).await;
    let alice = UserId::parse("alice").unwrap();
    let mallory = UserId::parse("mallory").unwrap();
    let id = TaskId(uuid::Uuid::now_v7());
    store
        .execute(&alice, id, &create(&alice, id), None, &meta())
        .await
        .unwrap();

    assert!(store.history(&mallory, id).await.unwrap().is_empty());
    let refused = store
        .execute(&mallory, id, &retitle("mine", 1), None, &meta())
        .await;
    assert!(matches!(
        refused,
        Err(StoreError::Rejected(TaskError::NotFound))
    ));
}

#[tokio::test]
async fn an_outside_consumer_sees_every_event_with_headers_and_a_valid_payload() {
    let scope = NatsScope::new();
    let store = open_store(&scope).await;
    let naming = store.naming().clone();

    let owner = UserId::parse("dave").unwrap();
    let id = TaskId(uuid::Uuid::now_v7());
    let commands = vec![
        create(&owner, id),
        TaskCommand::Update(UpdateTask {
            changes: TaskChanges {
                description: Some(None),
                priority: Some(Some(Priority::Low)),
                tags: Some(vec![]),
                ..TaskChanges::default()
            },
            at: at(1),
        }),
        TaskCommand::Start(StartTask { at: at(2) }),
        TaskCommand::Pause(PauseTask { at: at(30) }),
        TaskCommand::Complete(CompleteTask {
            actual_minutes: None,
            at: at(31),
            open_children: Vec::new(),
            cascade: false,
        }),
        TaskCommand::Reopen(ReopenTask { at: at(40) }),
        TaskCommand::Archive(ArchiveTask { at: at(50) }),
    ];
    let mut metas = Vec::new();
    for command in &commands {
        let meta = meta();
        store
            .execute(&owner, id, command, None, &meta)
            .await
            .unwrap();
        metas.push(meta);
    }

    // The outside consumer: plain async-nats, an ordered JetStream consumer on the stream. (A
    // core subscription would also see appends JetStream refused, e.g. on a version conflict.)
    let outside = async_nats::jetstream::new(scope.client().await);
    let stream = outside.get_stream(naming.stream()).await.unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: naming.all_events(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut subscriber = consumer.messages().await.unwrap();
    let events_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events");
    let mut seen_types = Vec::new();
    for meta in &metas {
        let message = tokio::time::timeout(std::time::Duration::from_secs(5), subscriber.next())
            .await
            .expect("the event arrives")
            .unwrap()
            .unwrap();
        assert_eq!(message.subject.as_str(), naming.task_subject(&owner, id));
        let headers = message.headers.as_ref().expect("events carry headers");
        let get = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
        let event_type = get("Tm-Event-Type").unwrap();
        let version = get("Tm-Event-Version").unwrap();
        assert_eq!(get("Tm-Command-Id").as_ref(), Some(&meta.command_id));
        assert_eq!(get("Nats-Msg-Id").as_ref(), Some(&meta.command_id));
        assert_eq!(
            get("Tm-Correlation-Id").as_ref(),
            Some(&meta.correlation_id)
        );
        // The event carries the context of the span that appended it: the caller's trace,
        // a span of its own.
        let traceparent = get("traceparent").expect("every event carries a traceparent");
        let caller = meta.traceparent.as_deref().unwrap();
        assert_eq!(
            telemetry::trace_context::parse_trace_id(&traceparent),
            telemetry::trace_context::parse_trace_id(caller)
        );
        assert_ne!(traceparent, caller);

        let schema_path = events_dir.join(format!("{event_type}.v{version}.json"));
        let schema: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&schema_path).unwrap()).unwrap();
        let payload: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&payload)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{event_type}: {errors:?} in {payload}");
        seen_types.push(event_type);
    }
    assert_eq!(
        seen_types,
        [
            "TaskCreated",
            "TaskUpdated",
            "TaskStarted",
            "TaskPaused",
            "TaskCompleted",
            "TaskReopened",
            "TaskArchived"
        ]
    );
}

#[tokio::test]
async fn applying_the_stream_definitions_twice_changes_nothing() {
    let scope = NatsScope::new();
    let client = scope.client().await;
    let naming = Naming::new(&scope.prefix).unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let first = apply_stream_definitions(&jetstream, &naming, StreamOptions::default())
        .await
        .unwrap();
    let second = apply_stream_definitions(&jetstream, &naming, StreamOptions::default())
        .await
        .unwrap();
    assert_eq!(first.config, second.config);
    assert_eq!(first.config.name, format!("{}_TASKS", scope.prefix));
}
