//! Scale-out of the projector across real OS processes of the binary: three `taskmaster serve
//! --roles projector` share the partitions through NATS KV leases; one is killed with SIGKILL
//! under load; the survivors take its partitions over within the lease TTL, and the read model
//! ends equal to the log with no event applied twice.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use domain::*;
use eventstore::store::StoreOptions;
use eventstore::{CommandMeta, EventStore, Naming, StreamOptions};
use testkit::{NatsScope, TestDatabase};
use tokio_util::sync::CancellationToken;

const PARTITIONS: &str = "6";
const LEASE_TTL_MS: u64 = 2_000;

/// Child processes killed when the test ends, whatever happens.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn meta() -> CommandMeta {
    CommandMeta {
        command_id: uuid::Uuid::now_v7().to_string(),
        correlation_id: uuid::Uuid::now_v7().to_string(),
        traceparent: None,
        client_supplied_id: false,
    }
}

/// Appends task histories (create, then start/pause rounds) until `stop`; returns how many.
async fn keep_writing(store: Arc<EventStore>, stop: CancellationToken) -> u64 {
    let mut appended = 0;
    let mut n = 0;
    while !stop.is_cancelled() {
        n += 1;
        let owner = UserId::parse(&format!("user{}", n % 5)).unwrap();
        let id = TaskId(uuid::Uuid::now_v7());
        let create = TaskCommand::Create(CreateTask {
            task_id: id,
            owner: owner.clone(),
            title: TaskTitle::parse(&format!("task {n}")).unwrap(),
            description: None,
            priority: Some(Priority::High),
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
            .execute(&owner, id, &create, None, &meta())
            .await
            .unwrap();
        appended += 1;
        for round in 0..4 {
            let command = if round % 2 == 0 {
                TaskCommand::Start(StartTask { at: Utc::now() })
            } else {
                TaskCommand::Pause(PauseTask { at: Utc::now() })
            };
            store
                .execute(&owner, id, &command, None, &meta())
                .await
                .unwrap();
            appended += 1;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    appended
}

/// Who holds the partition leases (key -> "<pid>-<id>"); empty while they cannot be read.
async fn lease_holders(
    jetstream: &async_nats::jetstream::Context,
    naming: &Naming,
) -> BTreeMap<String, String> {
    projections::leases::holders(jetstream, naming, projections::TASKS_PROJECTION)
        .await
        .unwrap_or_default()
}

/// The pids of the processes holding leases.
fn owners(holders: &BTreeMap<String, String>) -> BTreeSet<String> {
    holders
        .values()
        .map(|o| o.split('-').next().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_projector_processes_share_the_work_and_one_killed_with_sigkill_loses_and_doubles_nothing(
) {
    let db = TestDatabase::planned();
    let nats = NatsScope::new();
    let naming = Naming::new(&nats.prefix).unwrap();
    let client = nats.client().await;
    let jetstream = async_nats::jetstream::new(client.clone());
    eventstore::apply_stream_definitions(&jetstream, &naming, StreamOptions::default())
        .await
        .unwrap();
    let store = Arc::new(
        EventStore::open(client, naming.clone(), StoreOptions::default())
            .await
            .unwrap(),
    );

    let mut processes = Processes(
        (0..3)
            .map(|_| {
                common::cli(&db.url, &nats.prefix)
                    .env("TASKMASTER_HTTP_ADDR", "127.0.0.1:0")
                    .env("TASKMASTER_PROJECTION_PARTITIONS", PARTITIONS)
                    .env(
                        "TASKMASTER_PROJECTION_LEASE_TTL_MS",
                        LEASE_TTL_MS.to_string(),
                    )
                    .env("TASKMASTER_DATABASE_MAX_CONNECTIONS", "3")
                    .args(["serve", "--roles", "projector"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect(),
    );
    let stop_writing = CancellationToken::new();
    let writer = tokio::spawn(keep_writing(store.clone(), stop_writing.clone()));

    // The three processes spread the six partitions between them.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let holders = lease_holders(&jetstream, &naming).await;
        if holders.len() == 6 && owners(&holders).len() == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "partitions never spread: {holders:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // SIGKILL one of them mid-load.
    let victim = processes.0.remove(0);
    let victim_pid = victim.id().to_string();
    let mut victim = Processes(vec![victim]);
    victim.0[0].kill().unwrap();
    victim.0[0].wait().unwrap();
    let killed_at = Instant::now();
    loop {
        let holders = lease_holders(&jetstream, &naming).await;
        let owners = owners(&holders);
        if holders.len() == 6 && owners.len() == 2 && !owners.contains(&victim_pid) {
            break;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(10),
            "the killed process's partitions did not move within 10 s: {holders:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let failover = killed_at.elapsed();
    eprintln!("partitions moved {failover:?} after the SIGKILL (lease TTL {LEASE_TTL_MS} ms)");

    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_writing.cancel();
    let appended = writer.await.unwrap();
    let head = store.head_position().await.unwrap();
    assert_eq!(appended, head, "the writer's events are the stream");

    let pool = projections::database::connect(&db.url, 2).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while projections::checkpoint::load(&pool, projections::TASKS_PROJECTION)
        .await
        .unwrap()
        < head
    {
        assert!(Instant::now() < deadline, "the survivors did not catch up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows = projections::task_rows::load_all(&pool).await.unwrap();
    let applied: u64 = rows.values().map(|r| r.task.version).sum();
    assert_eq!(applied, head, "every event applied exactly once");
    let report = projections::verify::verify(&pool, &store).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.differences);
    pool.close().await;
    drop(processes);
}
