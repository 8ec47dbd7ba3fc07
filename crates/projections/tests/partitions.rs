//! Several projectors sharing the partitions through NATS KV leases, against the real services:
//! every event applied exactly once, in order per task, also when one of them dies holding
//! leases (its task aborted, so nothing is handed back and the leases must expire).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use domain::*;
use projections::leases::{self, LeaseOptions, PartitionLeases};
use projections::{checkpoint, layout, task_rows, Projector, ProjectorOptions, TASKS_PROJECTION};
use tokio::sync::watch;
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

/// Waits (up to 10 s from `since`) until every partition is leased, by exactly `owners`
/// distinct projectors; how long it took.
async fn wait_for_spread(world: &World, owners: usize, since: Instant) -> Duration {
    loop {
        let holders = leases::holders(world.store.jetstream(), &world.naming, TASKS_PROJECTION)
            .await
            .unwrap();
        let distinct: BTreeSet<&String> = holders.values().collect();
        if holders.len() == PARTITIONS as usize && distinct.len() == owners {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "partitions not spread over {owners} projectors: {holders:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

    let mut runs: Vec<Running> = (0..3).map(|_| start(leased_projector(&world))).collect();
    wait_for_spread(&world, 3, Instant::now()).await;

    // One projector dies mid-load without handing anything back; its leases expire and the
    // two survivors take every partition over.
    runs.remove(0).kill().await;
    let failover = wait_for_spread(&world, 2, Instant::now()).await;
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

    for run in runs {
        run.stop().await;
    }
    // Graceful stops hand their leases back.
    let left = leases::holders(world.store.jetstream(), &world.naming, TASKS_PROJECTION)
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");

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
    let running = start(leased_projector(&world));
    write_history(world.store.clone(), UserId::parse("rosa").unwrap(), 3, 1).await;
    let head = world.store.head_position().await.unwrap();
    wait_for_checkpoint(&world.pool, head).await;
    running.stop().await;
    let stored = layout::load(&world.pool, TASKS_PROJECTION).await.unwrap();
    assert_eq!(stored.map(|l| l.partitions), Some(1));
    assert_verify_clean(&world).await;
}

#[tokio::test]
async fn a_lease_someone_else_holds_now_is_given_up_at_the_next_renewal_and_taken_back_when_it_lapses(
) {
    let world = world().await;
    let jetstream = world.store.jetstream().clone();
    let options = LeaseOptions {
        ttl: Duration::from_millis(1_000),
        replicas: 1,
    };
    let keeper = PartitionLeases::open(
        &jetstream,
        &world.naming,
        TASKS_PROJECTION,
        "alone".into(),
        options,
    )
    .await
    .unwrap();
    let (owned_tx, mut owned) = watch::channel(BTreeSet::new());
    let stop = CancellationToken::new();
    let running = tokio::spawn(keeper.run(2, owned_tx, stop.clone()));
    let both: BTreeSet<u16> = [0, 1].into();
    owned.wait_for(|o| *o == both).await.unwrap();

    // Another process holds partition 0 now (as after this one paused past its TTL).
    let kv = jetstream
        .get_key_value(leases::bucket_name(&world.naming))
        .await
        .unwrap();
    kv.put("tasks.2.0", "intruder".into()).await.unwrap();
    let only_one: BTreeSet<u16> = [1].into();
    tokio::time::timeout(Duration::from_secs(3), owned.wait_for(|o| *o == only_one))
        .await
        .expect("the lost lease was given up")
        .unwrap();
    // The intruder's lease is never renewed: once it lapses, the partition comes back.
    tokio::time::timeout(Duration::from_secs(5), owned.wait_for(|o| *o == both))
        .await
        .expect("the lapsed lease was taken back")
        .unwrap();
    stop.cancel();
    running.await.unwrap();
    assert!(owned.borrow().is_empty(), "stopping hands everything back");
}

#[tokio::test]
async fn a_renewal_stored_but_whose_answer_was_lost_keeps_the_lease() {
    let world = world().await;
    let jetstream = world.store.jetstream().clone();
    let options = LeaseOptions {
        ttl: Duration::from_millis(1_000),
        replicas: 1,
    };
    let keeper = PartitionLeases::open(
        &jetstream,
        &world.naming,
        TASKS_PROJECTION,
        "alone".into(),
        options,
    )
    .await
    .unwrap();
    let (owned_tx, mut owned) = watch::channel(BTreeSet::new());
    let stop = CancellationToken::new();
    let running = tokio::spawn(keeper.run(2, owned_tx, stop.clone()));
    let both: BTreeSet<u16> = [0, 1].into();
    owned.wait_for(|o| *o == both).await.unwrap();

    // What a renewal leaves when the bucket stored it and the answer never came back (the
    // bucket's leader died): a newer revision of the lease, still naming this process.
    let kv = jetstream
        .get_key_value(leases::bucket_name(&world.naming))
        .await
        .unwrap();
    let stored = kv.put("tasks.2.0", "alone".into()).await.unwrap();
    // Several renewals (one per 200 ms) later, the process still holds both partitions and
    // has renewed the lease past that revision.
    let changed = tokio::time::timeout(Duration::from_millis(1_500), async {
        owned.wait_for(|o| *o != both).await.map(|o| o.clone())
    })
    .await;
    assert!(changed.is_err(), "the lease was given up: {changed:?}");
    let entry = kv.entry("tasks.2.0").await.unwrap().unwrap();
    assert!(entry.revision > stored, "renewed after the stored one");
    assert_eq!(entry.value.as_ref(), b"alone");
    stop.cancel();
    running.await.unwrap();
}

#[tokio::test]
async fn a_take_over_stored_but_whose_answer_was_lost_is_owned_at_once() {
    let world = world().await;
    let jetstream = world.store.jetstream().clone();
    let options = LeaseOptions {
        ttl: Duration::from_secs(5),
        replicas: 1,
    };
    let keeper = PartitionLeases::open(
        &jetstream,
        &world.naming,
        TASKS_PROJECTION,
        "alone".into(),
        options,
    )
    .await
    .unwrap();
    // What a create leaves when the bucket stored it and the answer never came back: the
    // lease names this process, which does not know it holds it.
    let kv = jetstream
        .get_key_value(leases::bucket_name(&world.naming))
        .await
        .unwrap();
    kv.create("tasks.2.0", "alone".into()).await.unwrap();
    let (owned_tx, mut owned) = watch::channel(BTreeSet::new());
    let stop = CancellationToken::new();
    let running = tokio::spawn(keeper.run(2, owned_tx, stop.clone()));
    // Both partitions are this process's well before that lease could lapse (5 s).
    let both: BTreeSet<u16> = [0, 1].into();
    tokio::time::timeout(Duration::from_secs(2), owned.wait_for(|o| *o == both))
        .await
        .expect("the stored lease was recognised as this process's")
        .unwrap();
    stop.cancel();
    running.await.unwrap();
    assert!(owned.borrow().is_empty(), "stopping hands everything back");
    assert!(
        kv.get("tasks.2.0").await.unwrap().is_none(),
        "and deletes it"
    );
}
