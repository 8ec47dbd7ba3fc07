//! Several projectors sharing the partitions through NATS KV leases, against the real services:
//! every event applied exactly once, in order per task, also when one of them dies holding
//! leases (its task aborted, so nothing is handed back and the leases must expire).

mod common;

use std::time::{Duration, Instant};

use common::*;
use domain::*;
use futures::TryStreamExt;
use projections::leases::{self, LeaseOptions};
use projections::{checkpoint, layout, task_rows, Projector, ProjectorOptions, TASKS_PROJECTION};
use tokio_util::sync::CancellationToken;

const PARTITIONS: u16 = 6;
const TTL: Duration = Duration::from_millis(1_500);

fn leased_projector(world: &World) -> Projector {
    projector_with(
        world,
        ProjectorOptions {
            max_batch: 40,
            partitions: PARTITIONS,
            leases: Some(LeaseOptions {
                ttl: TTL,
                replicas: 1,
            }),
            ..ProjectorOptions::default()
        },
    )
}

/// The partition leases currently held: key -> owner.
async fn lease_holders(world: &World) -> Vec<(String, String)> {
    let Ok(kv) = world
        .store
        .jetstream()
        .get_key_value(leases::bucket_name(&world.naming))
        .await
    else {
        return Vec::new(); // no projector has opened the bucket yet
    };
    let keys: Vec<String> = kv.keys().await.unwrap().try_collect().await.unwrap();
    let mut out = Vec::new();
    for key in keys.into_iter().filter(|k| k.starts_with("tasks.")) {
        if let Some(value) = kv.get(&key).await.unwrap() {
            out.push((key, String::from_utf8_lossy(&value).into_owned()));
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn three_projectors_share_the_partitions_and_when_one_dies_the_others_finish_its_work_exactly_once(
) {
    let world = world().await;
    let owner = UserId::parse("pat").unwrap();
    // A writer that keeps appending (new tasks and their histories) until told to stop.
    let writing = CancellationToken::new();
    let writer = tokio::spawn({
        let store = world.store.clone();
        let owner = owner.clone();
        let writing = writing.clone();
        async move {
            let mut appended = 0;
            while !writing.is_cancelled() {
                appended += write_history(store.clone(), owner.clone(), 3, 4).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            appended
        }
    });

    let shutdown = CancellationToken::new();
    let mut runs: Vec<_> = (0..3)
        .map(|_| {
            let projector = leased_projector(&world);
            let shutdown = shutdown.clone();
            tokio::spawn(async move { projector.run(shutdown).await })
        })
        .collect();

    // Wait until the work is spread: every partition leased, by more than one process.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let holders = lease_holders(&world).await;
        let mut owners: Vec<&String> = holders.iter().map(|(_, o)| o).collect();
        owners.sort();
        owners.dedup();
        if holders.len() == PARTITIONS as usize && owners.len() == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "partitions never spread: {holders:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // One projector dies mid-load without handing anything back; its leases expire and the
    // two survivors take every partition over.
    let killed = runs.remove(0);
    killed.abort();
    let _ = killed.await;
    let died = Instant::now();
    loop {
        let holders = lease_holders(&world).await;
        let mut owners: Vec<&String> = holders.iter().map(|(_, o)| o).collect();
        owners.sort();
        owners.dedup();
        if holders.len() == PARTITIONS as usize && owners.len() == 2 {
            break;
        }
        assert!(
            died.elapsed() < Duration::from_secs(10),
            "the dead projector's partitions did not move: {holders:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let failover = died.elapsed();
    assert!(
        failover >= TTL / 2,
        "moved after {failover:?}: before the leases could expire?"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    writing.cancel();
    let appended = writer.await.unwrap();
    assert!(appended > 100, "the writer appended {appended} events");
    let head = world.store.head_position().await.unwrap();
    wait_for_checkpoint(&world.pool, head).await;

    shutdown.cancel();
    for run in runs {
        run.await.unwrap();
    }
    // Graceful stops hand their leases back.
    assert!(lease_holders(&world).await.is_empty());

    let rows = task_rows::load_all(&world.pool).await.unwrap();
    let ids: Vec<TaskId> = rows.keys().copied().collect();
    assert_eq!(rows, fold_log(&world.store, &owner, &ids).await);
    let total_versions: u64 = rows.values().map(|r| r.task.version).sum();
    assert_eq!(total_versions, head, "every event applied exactly once");
    let partitions = checkpoint::load_partitions(&world.pool, TASKS_PROJECTION)
        .await
        .unwrap();
    assert_eq!(partitions.len(), PARTITIONS as usize);
    assert!(partitions.values().all(|&p| p == head), "{partitions:?}");
    assert_verify_clean(&world).await;
}

#[tokio::test]
async fn a_new_read_model_takes_the_configured_partitions_and_a_running_one_keeps_its_own() {
    let world = world().await;
    let owner = UserId::parse("quinn").unwrap();
    write_history(world.store.clone(), owner, 6, 2).await;
    let head = world.store.head_position().await.unwrap();
    project_until(&world, head).await;
    let stored = layout::load(&world.pool, TASKS_PROJECTION).await.unwrap();
    assert_eq!(stored.map(|l| l.partitions), Some(1));

    // A projector configured for 6 partitions but not allowed to rebuild keeps projecting
    // under the stored layout, so the read model stays current.
    let projector = leased_projector(&world);
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { projector.run(shutdown).await }
    });
    write_history(world.store.clone(), UserId::parse("rosa").unwrap(), 3, 1).await;
    let head = world.store.head_position().await.unwrap();
    wait_for_checkpoint(&world.pool, head).await;
    shutdown.cancel();
    running.await.unwrap();
    let stored = layout::load(&world.pool, TASKS_PROJECTION).await.unwrap();
    assert_eq!(stored.map(|l| l.partitions), Some(1));
    assert_verify_clean(&world).await;
}
