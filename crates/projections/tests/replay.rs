//! Blue/green rebuilds against the real services: the shadow is built while the live model
//! keeps serving and projecting, the swap loses no query, and the result is what the log
//! implies.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use domain::*;
use projections::replay::{self, Progress, Stage};
use projections::{
    checkpoint, layout, task_rows, Layout, ProjectionError, Projector, ProjectorOptions,
    TASKS_PROJECTION, TASKS_PROJECTION_VERSION,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

fn projector_on(world: &World, partitions: u16, rebuild_on_layout_change: bool) -> Projector {
    projector_with(
        world,
        ProjectorOptions {
            max_batch: 200,
            partitions,
            rebuild_on_layout_change,
            ..ProjectorOptions::default()
        },
    )
}

fn progress() -> (watch::Sender<Progress>, watch::Receiver<Progress>) {
    watch::channel(Progress {
        stage: Stage::Replaying,
        position: 0,
        head: 0,
    })
}

#[tokio::test]
async fn a_rebuild_swaps_in_a_model_equal_to_the_log_while_queries_and_the_live_projector_go_on() {
    let world = world().await;
    let owner = UserId::parse("sam").unwrap();
    write_history(world.store.clone(), owner.clone(), 40, 6).await;

    // The live side: a projector on 2 partitions, and readers querying without pause.
    let shutdown = CancellationToken::new();
    let live = projector_on(&world, 2, false);
    let live_run = tokio::spawn({
        let shutdown = shutdown.clone();
        let live = live.clone();
        async move { live.run(shutdown).await }
    });
    let head = world.store.head_position().await.unwrap();
    wait_for_checkpoint(&world.pool, head).await;
    let answered = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let pool = world.pool.clone();
            let shutdown = shutdown.clone();
            let answered = answered.clone();
            let owner = owner.clone();
            tokio::spawn(async move {
                // Every query answers, from a model that never goes backwards.
                let mut failures = Vec::new();
                let mut last = 40;
                while !shutdown.is_cancelled() {
                    let count: Result<i64, _> =
                        sqlx::query_scalar("SELECT count(*) FROM tasks WHERE owner_id = $1")
                            .bind(owner.as_str())
                            .fetch_one(&pool)
                            .await;
                    match count {
                        Ok(n) if n >= last => {
                            last = n;
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        other => failures.push(format!("{other:?} after {last}")),
                    }
                }
                failures
            })
        })
        .collect();
    // Events keep arriving during the rebuild.
    let writer = tokio::spawn(write_history(world.store.clone(), owner.clone(), 40, 3));

    // Rebuild with 4 partitions instead of 2.
    let rebuilder = projector_on(&world, 4, false);
    let (sender, watching) = progress();
    let report = replay::rebuild(&rebuilder, &shutdown, &sender)
        .await
        .unwrap();
    assert_eq!(watching.borrow().stage, Stage::Done);
    assert_eq!(report.layout.partitions, 4);
    assert_eq!(report.replaced.map(|l| l.partitions), Some(2));
    assert!(report.position >= head);

    let appended = writer.await.unwrap();
    assert!(appended > 40);
    let head = world.store.head_position().await.unwrap();
    // The live projector noticed the swap, moved to the new layout and carries on.
    wait_for_checkpoint(&world.pool, head).await;
    let answered_before_stop = answered.load(Ordering::Relaxed);
    shutdown.cancel();
    live_run.await.unwrap();
    for reader in readers {
        let failures = reader.await.unwrap();
        assert!(
            failures.is_empty(),
            "queries failed during the rebuild: {failures:?}"
        );
    }
    assert!(answered_before_stop > 10);

    assert_eq!(
        layout::load(&world.pool, TASKS_PROJECTION).await.unwrap(),
        Some(Layout::new(TASKS_PROJECTION_VERSION, 4).unwrap())
    );
    let partitions = checkpoint::load_partitions(&world.pool, TASKS_PROJECTION)
        .await
        .unwrap();
    assert_eq!(
        partitions.keys().copied().collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    let rows = task_rows::load_all(&world.pool).await.unwrap();
    let ids: Vec<TaskId> = rows.keys().copied().collect();
    assert_eq!(rows.len(), 80);
    assert_eq!(rows, fold_log(&world.store, &owner, &ids).await);
    assert_verify_clean(&world).await;
    // The swapped-in table has every index of the migrated one, under the same names.
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'tasks'
          ORDER BY 1",
    )
    .fetch_all(&world.pool)
    .await
    .unwrap();
    assert_eq!(
        indexes,
        [
            "tasks_next_reminder",
            "tasks_owner_completed",
            "tasks_owner_created",
            "tasks_owner_due",
            "tasks_owner_priority",
            "tasks_owner_starts",
            "tasks_owner_status",
            "tasks_owner_updated",
            "tasks_parent",
            "tasks_pkey",
            "tasks_search",
            "tasks_series",
            "tasks_tags"
        ]
    );
    let leftovers: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'taskmaster_%'")
            .fetch_one(&world.pool)
            .await
            .unwrap();
    assert_eq!(leftovers, 0, "the shadow and retired schemas are gone");
}

#[tokio::test]
async fn a_read_model_built_by_another_projection_version_is_rebuilt_when_a_projector_starts() {
    let world = world().await;
    let owner = UserId::parse("tess").unwrap();
    write_history(world.store.clone(), owner.clone(), 10, 3).await;
    let head = world.store.head_position().await.unwrap();
    project_until(&world, head).await;
    // As if an older release (another version of the projection code) built it, and left a
    // row that release's bug got wrong.
    for table in ["projection_layouts", "projection_checkpoints"] {
        sqlx::query(&format!(
            "UPDATE {table} SET version = $1 WHERE projection = $2"
        ))
        .bind(TASKS_PROJECTION_VERSION as i32 + 1)
        .bind(TASKS_PROJECTION)
        .execute(&world.pool)
        .await
        .unwrap();
    }
    sqlx::query("UPDATE tasks SET title = 'what the old code wrote'")
        .execute(&world.pool)
        .await
        .unwrap();
    assert!(!projections::verify::verify(&world.pool, &world.store)
        .await
        .unwrap()
        .is_clean());

    let running = start(projector_on(&world, 3, true));
    let wanted = Layout::new(TASKS_PROJECTION_VERSION, 3).unwrap();
    let rebuilt = wait_for_layout(&world, wanted).await;
    assert!(rebuilt, "the projector did not rebuild the read model");
    write_history(world.store.clone(), owner, 2, 1).await;
    let head = world.store.head_position().await.unwrap();
    wait_for_checkpoint(&world.pool, head).await;
    running.stop().await;
    assert_verify_clean(&world).await;
}

#[tokio::test]
async fn a_second_rebuild_is_refused_while_one_runs_and_leftovers_of_an_interrupted_one_are_cleared(
) {
    let world = world().await;
    write_history(world.store.clone(), UserId::parse("uma").unwrap(), 5, 1).await;
    let head = world.store.head_position().await.unwrap();
    project_until(&world, head).await;
    let rebuilder = projector_on(&world, 2, false);

    // Another session holds the rebuild lock: refused, and the live model is untouched.
    let mut other = world.pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(x'746d2d7265627569'::bigint)")
        .execute(&mut *other)
        .await
        .unwrap();
    let (sender, _) = progress();
    let refused = replay::rebuild(&rebuilder, &CancellationToken::new(), &sender).await;
    assert!(
        matches!(refused, Err(ProjectionError::RebuildRunning(_))),
        "{refused:?}"
    );
    sqlx::query("SELECT pg_advisory_unlock(x'746d2d7265627569'::bigint)")
        .execute(&mut *other)
        .await
        .unwrap();
    drop(other);

    // A shadow schema left by a rebuild that died half-way is dropped by the next one.
    sqlx::raw_sql(
        "CREATE SCHEMA taskmaster_rebuild_tasks; CREATE TABLE taskmaster_rebuild_tasks.tasks (junk int);",
    )
    .execute(&world.pool)
    .await
    .unwrap();
    let report = replay::rebuild(&rebuilder, &CancellationToken::new(), &sender)
        .await
        .unwrap();
    assert_eq!(report.tasks, 5);
    assert_verify_clean(&world).await;
}

#[tokio::test]
async fn a_rebuild_that_fails_leaves_the_live_model_serving_and_no_shadow_behind() {
    let world = world().await;
    write_history(world.store.clone(), UserId::parse("vera").unwrap(), 4, 1).await;
    let head = world.store.head_position().await.unwrap();
    project_until(&world, head).await;
    // The event stream is gone (deleted under us): the rebuild cannot read the log.
    world
        .store
        .jetstream()
        .delete_stream(world.naming.stream())
        .await
        .unwrap();
    let (sender, _) = progress();
    let failed = replay::rebuild(
        &projector_on(&world, 2, false),
        &CancellationToken::new(),
        &sender,
    )
    .await;
    assert!(failed.is_err());
    let rows = task_rows::load_all(&world.pool).await.unwrap();
    assert_eq!(rows.len(), 4, "the live model still serves");
    let leftovers: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'taskmaster_%'")
            .fetch_one(&world.pool)
            .await
            .unwrap();
    assert_eq!(leftovers, 0);
}

#[tokio::test]
async fn a_swap_blocked_by_a_long_query_gives_up_its_locks_and_tries_again_once_the_query_ends() {
    let world = world().await;
    write_history(world.store.clone(), UserId::parse("wes").unwrap(), 6, 2).await;
    let head = world.store.head_position().await.unwrap();
    project_until(&world, head).await;

    // A long report holds the live table for longer than the swap is willing to wait.
    let mut report = world.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE tasks IN ACCESS SHARE MODE")
        .execute(&mut *report)
        .await
        .unwrap();
    let rebuilder = projector_on(&world, 2, false);
    let (sender, watching) = progress();
    let rebuilding = tokio::spawn(async move {
        replay::rebuild(&rebuilder, &CancellationToken::new(), &sender).await
    });
    // While the swap waits for the long query, a new query queues behind the swap's lock
    // request. The swap gives up within its lock timeout (1 s) and tries again later, so the
    // new query is answered while the long one still holds the table: without that, it would
    // wait for the long query too.
    let mut swapping = watching.clone();
    swapping
        .wait_for(|p| p.stage == Stage::Swapping)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let queued = tokio::spawn({
        let pool = world.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM tasks")
                .fetch_one(&pool)
                .await
        }
    });
    let answered = tokio::time::timeout(Duration::from_secs(4), queued).await;
    assert!(
        matches!(answered, Ok(Ok(Ok(6)))),
        "a query arriving during the swap was held: {answered:?}"
    );
    assert!(
        !rebuilding.is_finished(),
        "the swap waited for the long query"
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks")
        .fetch_one(&mut *report)
        .await
        .unwrap();
    assert_eq!(count, 6, "the long query read the old table undisturbed");
    report.commit().await.unwrap();

    let report = rebuilding.await.unwrap().unwrap();
    assert_eq!(report.layout.partitions, 2);
    assert_verify_clean(&world).await;
}

#[tokio::test]
async fn a_rebuild_on_deploy_that_another_process_began_and_abandoned_is_taken_over() {
    let world = world().await;
    write_history(world.store.clone(), UserId::parse("xena").unwrap(), 5, 2).await;
    let head = world.store.head_position().await.unwrap();
    project_until(&world, head).await;

    // Another process holds the rebuild when this one starts...
    let mut other = world.pool.acquire().await.unwrap().detach();
    sqlx::query("SELECT pg_advisory_lock(x'746d2d7265627569'::bigint)")
        .execute(&mut other)
        .await
        .unwrap();
    let running = start(projector_with(
        &world,
        ProjectorOptions {
            partitions: 3,
            rebuild_on_layout_change: true,
            rebuild_retry: Duration::from_millis(100),
            ..ProjectorOptions::default()
        },
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stored = layout::load(&world.pool, TASKS_PROJECTION).await.unwrap();
    assert_eq!(
        stored.map(|l| l.partitions),
        Some(1),
        "it left the rebuild to the other"
    );

    // ...and dies (its connection, and with it the lock, is gone).
    use sqlx::Connection;
    other.close().await.unwrap();
    let wanted = Layout::new(TASKS_PROJECTION_VERSION, 3).unwrap();
    let rebuilt = wait_for_layout(&world, wanted).await;
    assert!(rebuilt, "nobody took the abandoned rebuild over");
    running.stop().await;
    assert_verify_clean(&world).await;
}
