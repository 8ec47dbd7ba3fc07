//! Rebuild benchmark (not a test): generates events through the event store (creates, updates,
//! starts, completions, with realistic payloads), then measures
//! 1. a live projector starting from zero (8 partitions, one process), and
//! 2. `taskmaster replay tasks`: the blue/green rebuild into a shadow schema, swapped in.
//!
//! Live projection and replay run the same code; the rebuild differs in building the secondary
//! indexes once at the end and committing asynchronously into the shadow.
//!
//!     cargo bench --bench rebuild -- --events 1000000 [--lanes 2]

#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use domain::*;
use eventstore::store::StoreOptions;
use eventstore::{apply_stream_definitions, CommandMeta, EventStore, Naming, StreamOptions};
use projections::replay::{self, Progress, Stage};
use projections::{checkpoint, database, Projector, ProjectorOptions, TASKS_PROJECTION};
use tokio_util::sync::CancellationToken;

/// See `load.rs`: mimalloc for the multi-threaded allocation pattern.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn meta() -> CommandMeta {
    CommandMeta {
        command_id: uuid::Uuid::now_v7().to_string(),
        correlation_id: uuid::Uuid::now_v7().to_string(),
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        client_supplied_id: false,
    }
}

/// One writer: tasks of 5 events each (create, update, start, pause, complete).
async fn write(store: Arc<EventStore>, writer: usize, events: u64) {
    let owner = UserId::parse(&format!("user{}", writer % 50)).expect("user");
    let mut written = 0;
    while written < events {
        let id = TaskId(uuid::Uuid::now_v7());
        let commands = [
            TaskCommand::Create(CreateTask {
                task_id: id,
                owner: owner.clone(),
                title: TaskTitle::parse("Prepare the quarterly planning review").expect("title"),
                description: Description::parse(
                    "Collect the numbers from every team and draft the slides for Thursday.",
                )
                .expect("description"),
                priority: Some(Priority::High),
                due_at: Some(Utc::now() + chrono::Duration::days(3)),
                estimate_minutes: EffortMinutes::parse(90, "estimate_minutes").ok(),
                tags: Tag::parse_list(&["planning", "q3"]).expect("tags"),
                starts_at: None,
                time_zone: TimeZoneName::parse("Europe/Paris").expect("zone"),
                at: Utc::now(),
                placement: None,
                recurrence: None,
                series: None,
                reminders: Vec::new(),
            }),
            TaskCommand::Update(UpdateTask {
                changes: TaskChanges {
                    priority: Some(Some(Priority::Urgent)),
                    ..TaskChanges::default()
                },
                at: Utc::now(),
            }),
            TaskCommand::Start(StartTask { at: Utc::now() }),
            TaskCommand::Pause(PauseTask { at: Utc::now() }),
            TaskCommand::Complete(CompleteTask {
                actual_minutes: None,
                at: Utc::now(),
                open_children: Vec::new(),
                cascade: false,
            }),
        ];
        for command in &commands {
            if written >= events {
                break;
            }
            store
                .execute(&owner, id, command, None, &meta())
                .await
                .expect("append");
            written += 1;
        }
    }
}

fn main() {
    let events = arg("--events", 1_000_000);
    let lanes = arg("--lanes", ProjectorOptions::default().lanes as u64) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let db = testkit::TestDatabase::create().await;
        let nats = testkit::NatsScope::new();
        let pool = database::connect(&db.url, 8).await.expect("pool");
        database::migrate(&pool).await.expect("migrate");
        let naming = Naming::new(&nats.prefix).expect("naming");
        let client = nats.client().await;
        let jetstream = async_nats::jetstream::new(client.clone());
        apply_stream_definitions(&jetstream, &naming, StreamOptions::default()).await.expect("stream");
        let store = Arc::new(EventStore::open(client, naming.clone(), StoreOptions::default()).await.expect("store"));

        let writers = 64;
        let started = Instant::now();
        let handles: Vec<_> = (0..writers)
            .map(|w| tokio::spawn(write(store.clone(), w, events / writers as u64)))
            .collect();
        for handle in handles {
            handle.await.expect("writer");
        }
        let head = store.head_position().await.expect("head");
        let generated = started.elapsed();

        let shutdown = CancellationToken::new();
        let projector = Projector::new(
            pool.clone(),
            jetstream,
            naming,
            Arc::new(telemetry::Metrics::new()),
            ProjectorOptions {
                partitions: 8,
                lanes,
                ..ProjectorOptions::default()
            },
        );
        let rebuilder = projector.clone();
        let started = Instant::now();
        let running = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { projector.run(shutdown).await }
        });
        loop {
            if checkpoint::load(&pool, TASKS_PROJECTION).await.expect("checkpoint") >= head {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let rebuilt = started.elapsed();
        shutdown.cancel();
        running.await.expect("projector");
        let (progress, _) = tokio::sync::watch::channel(Progress { stage: Stage::Replaying, position: 0, head: 0 });
        let report = replay::rebuild(&rebuilder, &CancellationToken::new(), &progress).await.expect("rebuild");
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks").fetch_one(&pool).await.expect("count");

        println!();
        println!("generated {head} events through the event store in {:.1} s ({:.0} events/s, 64 writers)",
            generated.as_secs_f64(), head as f64 / generated.as_secs_f64());
        println!("live projector (8 partitions in {lanes} lanes, one process) built the tasks read model ({rows} rows) from position 0 in {:.1} s: {:.0} events/s",
            rebuilt.as_secs_f64(), head as f64 / rebuilt.as_secs_f64());
        let seconds = report.elapsed_ms as f64 / 1000.0;
        println!("taskmaster replay tasks (blue/green: shadow schema, indexes, swap) rebuilt {} rows at position {} in {:.1} s: {:.0} events/s",
            report.tasks, report.position, seconds, report.position as f64 / seconds);
        println!("  of which replaying the log {:.1} s ({:.0} events/s), building indexes {:.1} s, catching up and swapping {:.1} s",
            report.replay_ms as f64 / 1000.0, report.position as f64 * 1000.0 / report.replay_ms.max(1) as f64,
            report.index_ms as f64 / 1000.0, report.swap_ms as f64 / 1000.0);
    });
}
