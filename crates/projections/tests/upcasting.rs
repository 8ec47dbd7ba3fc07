//! Schema evolution: a stream holding TaskCreated v1 and v2 events projects to the same read
//! model as a stream holding only v2 events. Stored events are never rewritten; v1 is upcast
//! when read.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use domain::event::v1;
use domain::*;
use eventstore::{apply_stream_definitions, Naming, StreamOptions};
use projections::task_rows::{self, TaskRecord};
use projections::{checkpoint, database, Projector, ProjectorOptions, TASKS_PROJECTION};
use sqlx::PgPool;
use testkit::{NatsScope, TestDatabase};
use tokio_util::sync::CancellationToken;

fn at(minute: i64) -> Timestamp {
    Utc.with_ymd_and_hms(2025, 2, 1, 9, 0, 0).unwrap() + chrono::Duration::minutes(minute)
}

/// The history of `n` tasks: a creation (in UTC), a start and a completion each.
fn history(n: usize) -> Vec<(UserId, TaskEvent)> {
    let owner = UserId::parse("vera").unwrap();
    let mut events = Vec::new();
    for i in 0..n {
        let task_id = TaskId(uuid::Uuid::from_u128(
            0x0190_0000_0000_7000_8000_0000_0000_0000 + i as u128,
        ));
        events.push(TaskEvent::Created(TaskCreated {
            task_id,
            owner_id: owner.clone(),
            title: TaskTitle::parse(&format!("legacy task {i}")).unwrap(),
            description: Description::parse("from before time zones").unwrap(),
            priority: Some(Priority::ALL[i % 4]),
            due_at: Some(at(1000 + i as i64)),
            starts_at: None,
            estimate_minutes: EffortMinutes::parse(10 + i as i64, "estimate_minutes").ok(),
            tags: Tag::parse_list(&["legacy"]).unwrap(),
            time_zone: TimeZoneName::utc(),
            occurred_at: at(i as i64),
            parent_id: None,
            recurrence: None,
            series: None,
            reminders: Vec::new(),
        }));
        events.push(TaskEvent::Started(TaskStarted {
            task_id,
            occurred_at: at(100 + i as i64),
        }));
        events.push(TaskEvent::Completed(TaskCompleted {
            task_id,
            actual_minutes: EffortMinutes::parse(20, "actual_minutes").ok(),
            occurred_at: at(200 + i as i64),
            cascade: false,
        }));
    }
    events.into_iter().map(|e| (owner.clone(), e)).collect()
}

/// The v1 payload a v2 creation would have had before time zones existed.
fn as_v1(created: &TaskCreated) -> Vec<u8> {
    serde_json::to_vec(&v1::TaskCreated {
        task_id: created.task_id,
        owner_id: created.owner_id.clone(),
        title: created.title.clone(),
        description: created.description.clone(),
        priority: created.priority,
        due_at: created.due_at,
        estimate_minutes: created.estimate_minutes,
        tags: created.tags.clone(),
        occurred_at: created.occurred_at,
    })
    .unwrap()
}

/// Publishes the history into a fresh stream (v1 creations where `legacy` says so), projects
/// it into a fresh database and returns the read model.
async fn project(
    events: &[(UserId, TaskEvent)],
    legacy: impl Fn(usize) -> bool,
) -> HashMap<TaskId, TaskRecord> {
    let db = TestDatabase::create().await;
    let nats = NatsScope::new();
    let pool: PgPool = database::connect(&db.url, 4).await.unwrap();
    database::migrate(&pool).await.unwrap();
    let naming = Naming::new(&nats.prefix).unwrap();
    let jetstream = async_nats::jetstream::new(nats.client().await);
    apply_stream_definitions(&jetstream, &naming, StreamOptions::default())
        .await
        .unwrap();

    let mut created = 0;
    let mut last = 0;
    for (owner, event) in events {
        let (version, payload) = match event {
            TaskEvent::Created(c) => {
                created += 1;
                if legacy(created - 1) {
                    (1, as_v1(c))
                } else {
                    (2, event.encode())
                }
            }
            other => (other.event_version(), other.encode()),
        };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Tm-Event-Type", event.event_type());
        headers.insert("Tm-Event-Version", version.to_string().as_str());
        last = jetstream
            .publish_with_headers(
                naming.task_subject(owner, event.task_id()),
                headers,
                payload.into(),
            )
            .await
            .unwrap()
            .await
            .unwrap()
            .sequence;
    }

    let shutdown = CancellationToken::new();
    let projector = Projector::new(
        pool.clone(),
        jetstream,
        naming,
        Arc::new(telemetry::Metrics::new()),
        ProjectorOptions::default(),
    );
    let running = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { projector.run(shutdown).await }
    });
    for _ in 0..200 {
        if checkpoint::load(&pool, TASKS_PROJECTION).await.unwrap() >= last {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    shutdown.cancel();
    running.await.unwrap();
    assert_eq!(
        checkpoint::load(&pool, TASKS_PROJECTION).await.unwrap(),
        last
    );
    task_rows::load_all(&pool).await.unwrap()
}

#[tokio::test]
async fn a_stream_of_v1_and_v2_creations_projects_like_an_all_v2_stream() {
    let events = history(12);
    let mixed = project(&events, |i| i % 2 == 0).await;
    let all_v2 = project(&events, |_| false).await;
    assert_eq!(mixed.len(), 12);
    assert_eq!(mixed, all_v2);
    assert!(mixed
        .values()
        .all(|r| r.task.time_zone == TimeZoneName::utc()));
    assert!(mixed
        .values()
        .all(|r| r.task.status == TaskStatus::Completed && r.task.version == 3));
}
