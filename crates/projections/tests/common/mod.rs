//! Helpers shared by the projector's integration tests: an isolated database and NATS prefix,
//! a writer of realistic task histories, and what the log implies.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use domain::*;
use eventstore::store::StoreOptions;
use eventstore::{apply_stream_definitions, CommandMeta, EventStore, Naming, StreamOptions};
use projections::task_rows::TaskRecord;
use projections::{checkpoint, database, Projector, ProjectorOptions, TASKS_PROJECTION};
use sqlx::PgPool;
use testkit::{NatsScope, TestDatabase};
use tokio_util::sync::CancellationToken;

pub struct World {
    pub pool: PgPool,
    pub store: Arc<EventStore>,
    pub naming: Naming,
    pub db: TestDatabase,
    pub nats: NatsScope,
}

pub async fn world() -> World {
    let db = TestDatabase::create().await;
    let nats = NatsScope::new();
    let pool = database::connect(&db.url, 8).await.unwrap();
    database::migrate(&pool).await.unwrap();
    let naming = Naming::new(&nats.prefix).unwrap();
    let client = nats.client().await;
    apply_stream_definitions(
        &async_nats::jetstream::new(client.clone()),
        &naming,
        StreamOptions::default(),
    )
    .await
    .unwrap();
    let store = Arc::new(
        EventStore::open(client, naming.clone(), StoreOptions::default())
            .await
            .unwrap(),
    );
    World {
        pool,
        store,
        naming,
        db,
        nats,
    }
}

pub fn new_projector(world: &World) -> Projector {
    projector_with(
        world,
        ProjectorOptions {
            max_batch: 50,
            ..ProjectorOptions::default()
        },
    )
}

/// A projector on the world's database and stream with `options` (fast backoff for tests).
pub fn projector_with(world: &World, options: ProjectorOptions) -> Projector {
    Projector::new(
        world.pool.clone(),
        world.store.jetstream().clone(),
        world.naming.clone(),
        Arc::new(telemetry::Metrics::new()),
        ProjectorOptions {
            min_backoff: Duration::from_millis(10),
            ..options
        },
    )
}

/// Asserts that the read model is exactly what the log implies.
pub async fn assert_verify_clean(world: &World) {
    let report = projections::verify::verify(&world.pool, &world.store)
        .await
        .unwrap();
    assert!(report.is_clean(), "{report:?}");
}

pub fn meta() -> CommandMeta {
    CommandMeta {
        command_id: uuid::Uuid::new_v4().to_string(),
        correlation_id: uuid::Uuid::new_v4().to_string(),
        traceparent: None,
        client_supplied_id: false,
    }
}

pub fn at(step: i64) -> Timestamp {
    Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(step)
}

/// Drives `tasks` tasks through `rounds` rounds of life-cycle commands.
pub async fn write_history(
    store: Arc<EventStore>,
    owner: UserId,
    tasks: usize,
    rounds: i64,
) -> u64 {
    let ids: Vec<TaskId> = (0..tasks).map(|_| TaskId(uuid::Uuid::now_v7())).collect();
    let mut appended = 0;
    for (i, id) in ids.iter().enumerate() {
        let create = TaskCommand::Create(CreateTask {
            task_id: *id,
            owner: owner.clone(),
            title: TaskTitle::parse(&format!("task {i}")).unwrap(),
            description: None,
            priority: Some(Priority::ALL[i % 4]),
            due_at: None,
            estimate_minutes: EffortMinutes::parse(30 + i as i64, "estimate_minutes").ok(),
            tags: Tag::parse_list(&["load"]).unwrap(),
            starts_at: None,
            time_zone: TimeZoneName::utc(),
            at: at(0),
            placement: None,
            recurrence: None,
            series: None,
            reminders: Vec::new(),
        });
        store
            .execute(&owner, *id, &create, None, &meta())
            .await
            .unwrap();
        appended += 1;
    }
    for round in 1..=rounds {
        for (i, id) in ids.iter().enumerate() {
            let step = round * 100 + i as i64;
            let command = match (round + i as i64) % 5 {
                0 => TaskCommand::Start(StartTask { at: at(step) }),
                1 => TaskCommand::Pause(PauseTask { at: at(step) }),
                2 => TaskCommand::Update(UpdateTask {
                    changes: TaskChanges {
                        title: Some(TaskTitle::parse(&format!("task {i} round {round}")).unwrap()),
                        ..TaskChanges::default()
                    },
                    at: at(step),
                }),
                3 => TaskCommand::Complete(CompleteTask {
                    actual_minutes: None,
                    at: at(step),
                    open_children: Vec::new(),
                    cascade: false,
                }),
                _ => TaskCommand::Reopen(ReopenTask { at: at(step) }),
            };
            if let Ok(outcome) = store.execute(&owner, *id, &command, None, &meta()).await {
                appended += u64::from(outcome.appended);
            }
        }
    }
    appended
}

/// What the event log implies: every task folded from its events.
pub async fn fold_log(
    store: &EventStore,
    owner: &UserId,
    ids: &[TaskId],
) -> HashMap<TaskId, TaskRecord> {
    let mut expected = HashMap::new();
    for id in ids {
        let history = store.history(owner, *id).await.unwrap();
        let position = history.last().map(|e| e.position).unwrap_or(0);
        if let Some(task) = replay(history.iter().map(|e| &e.event)) {
            expected.insert(*id, TaskRecord { task, position });
        }
    }
    expected
}

/// A projector running in the background until stopped (or killed).
pub struct Running {
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

/// Starts `projector` in the background.
pub fn start(projector: Projector) -> Running {
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { projector.run(shutdown).await }
    });
    Running { shutdown, handle }
}

impl Running {
    /// Stops it gracefully: the batch in flight commits, leases are handed back.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.handle.await.unwrap();
    }

    /// Kills it: nothing is committed or handed back (as for a process that dies).
    pub async fn kill(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }
}

/// Runs a projector until the checkpoint reaches `position`, then stops it gracefully.
pub async fn project_until(world: &World, position: u64) {
    let running = start(new_projector(world));
    wait_for_checkpoint(&world.pool, position).await;
    running.stop().await;
}

/// Waits (up to 10 s) until the read model's stored layout is `wanted`; whether it got there.
pub async fn wait_for_layout(world: &World, wanted: projections::Layout) -> bool {
    for _ in 0..200 {
        let stored = projections::layout::load(&world.pool, TASKS_PROJECTION)
            .await
            .unwrap();
        if stored == Some(wanted) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

pub async fn wait_for_checkpoint(pool: &PgPool, position: u64) {
    for _ in 0..200 {
        if checkpoint::load(pool, TASKS_PROJECTION).await.unwrap() >= position {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the projector did not reach position {position}");
}
