//! Poison events: the projector records them as dead letters, skips their task and goes on;
//! a retry after the fix rebuilds the task from the log.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::{start, world};
use domain::*;
use eventstore::{CommandMeta, EventStore};
use projections::dead_letters;
use projections::task_rows;
use projections::{checkpoint, Projector, ProjectorOptions, TASKS_PROJECTION};

/// With a trace context, so a dead letter can name the trace that appended it.
fn meta() -> CommandMeta {
    CommandMeta {
        command_id: uuid::Uuid::new_v4().to_string(),
        correlation_id: uuid::Uuid::new_v4().to_string(),
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        client_supplied_id: false,
    }
}

async fn create(store: &EventStore, owner: &UserId, title: &str) -> TaskId {
    let id = TaskId(uuid::Uuid::now_v7());
    let command = TaskCommand::Create(CreateTask {
        task_id: id,
        owner: owner.clone(),
        title: TaskTitle::parse(title).unwrap(),
        description: None,
        priority: None,
        due_at: None,
        estimate_minutes: None,
        tags: vec![],
        starts_at: None,
        time_zone: TimeZoneName::utc(),
        at: Utc::now(),
        placement: None,
        recurrence: None,
        series: None,
        reminders: Vec::new(),
    });
    store
        .execute(owner, id, &command, None, &meta())
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn poison_events_are_dead_lettered_the_projector_goes_on_and_a_retry_after_the_fix_applies_them(
) {
    let world = world().await;
    let (pool, store, naming) = (&world.pool, &world.store, &world.naming);
    let jetstream = store.jetstream().clone();

    // A projection bug, simulated: the read model refuses titles equal to 'poison'.
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$
         BEGIN IF NEW.title = 'poison' THEN RAISE EXCEPTION 'poison title'; END IF; RETURN NEW; END
         $$ LANGUAGE plpgsql;
         CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON tasks
           FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
    )
    .execute(pool)
    .await
    .unwrap();

    // Three partitions: dead letters and their retry work per task, whatever its partition.
    let metrics = Arc::new(telemetry::Metrics::new());
    let projector = Projector::new(
        pool.clone(),
        jetstream.clone(),
        naming.clone(),
        metrics.clone(),
        ProjectorOptions {
            partitions: 3,
            min_backoff: Duration::from_millis(10),
            ..ProjectorOptions::default()
        },
    );
    let running = start(projector);

    let owner = UserId::parse("zed").unwrap();
    let before = create(store, &owner, "before").await;
    // An undecodable event: right headers, payload that is not the event.
    let garbage_task = TaskId(uuid::Uuid::now_v7());
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Tm-Event-Type", "TaskCreated");
    headers.insert("Tm-Event-Version", "1");
    jetstream
        .publish_with_headers(
            naming.task_subject(&owner, garbage_task),
            headers,
            "{not json".into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    // A well-formed event whose projection fails, then a later event of the same task.
    let poison = create(store, &owner, "poison").await;
    store
        .execute(
            &owner,
            poison,
            &TaskCommand::Start(StartTask { at: Utc::now() }),
            None,
            &meta(),
        )
        .await
        .unwrap();
    let after = create(store, &owner, "after").await;

    let head = store.head_position().await.unwrap();
    for _ in 0..200 {
        if checkpoint::load(pool, TASKS_PROJECTION).await.unwrap() >= head {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        checkpoint::load(pool, TASKS_PROJECTION).await.unwrap(),
        head,
        "the projector went on"
    );
    let rows = task_rows::load_all(pool).await.unwrap();
    assert!(rows.contains_key(&before) && rows.contains_key(&after));
    assert!(
        !rows.contains_key(&poison),
        "the poison task is quarantined"
    );

    let letters = dead_letters::list(pool, TASKS_PROJECTION).await.unwrap();
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert_eq!(letters[0].task_id, Some(garbage_task.0));
    assert!(
        letters[0].error.contains("malformed"),
        "{}",
        letters[0].error
    );
    assert_eq!(letters[1].task_id, Some(poison.0));
    assert!(
        letters[1].error.contains("poison title"),
        "{}",
        letters[1].error
    );
    assert_eq!(
        letters[1].attempts, 3,
        "retried with backoff before giving up"
    );
    assert_eq!(
        letters[1].trace_id.as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    let exposition = metrics.encode();
    assert!(
        exposition.contains(r#"taskmaster_projection_dead_letters_total{projection="tasks"} 2"#),
        "{exposition}"
    );

    // verify sees both: the undecodable event, and the quarantined task missing its row.
    let report = projections::verify::verify(pool, store).await.unwrap();
    assert_eq!(report.undecodable, vec![letters[0].position as u64]);
    assert_eq!(
        report.differences,
        vec![projections::verify::Difference::Missing { task_id: poison.0 }]
    );

    // The fix is deployed; a retry rebuilds the poison task from its events, start included.
    sqlx::raw_sql("DROP TRIGGER refuse_poison ON tasks")
        .execute(pool)
        .await
        .unwrap();
    let report = dead_letters::retry(pool, store, TASKS_PROJECTION, None)
        .await
        .unwrap();
    assert_eq!(report.rebuilt_tasks, vec![poison.0]);
    let letters = dead_letters::list(pool, TASKS_PROJECTION).await.unwrap();
    assert_eq!(letters.len(), 1, "the undecodable event is still there");
    assert_eq!(report.still_failing, vec![letters[0].position]);
    let rows = task_rows::load_all(pool).await.unwrap();
    let rebuilt = &rows[&poison].task;
    assert_eq!(
        (rebuilt.version, rebuilt.status),
        (2, TaskStatus::InProgress)
    );

    // Out of quarantine: the task's next events apply live again.
    let paused = store
        .execute(
            &owner,
            poison,
            &TaskCommand::Pause(PauseTask { at: Utc::now() }),
            None,
            &meta(),
        )
        .await
        .unwrap();
    for _ in 0..200 {
        if checkpoint::load(pool, TASKS_PROJECTION).await.unwrap() >= paused.position {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let rows = task_rows::load_all(pool).await.unwrap();
    assert_eq!(rows[&poison].task.status, TaskStatus::Paused);

    assert!(
        dead_letters::discard(pool, TASKS_PROJECTION, letters[0].position as u64)
            .await
            .unwrap()
    );
    assert!(dead_letters::list(pool, TASKS_PROJECTION)
        .await
        .unwrap()
        .is_empty());
    assert!(
        !dead_letters::discard(pool, TASKS_PROJECTION, letters[0].position as u64)
            .await
            .unwrap()
    );

    running.stop().await;
}
