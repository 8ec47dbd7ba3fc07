//! The projector against the real Postgres and NATS: exactly-once application across crashes.

mod common;

use std::time::Duration;

use common::*;
use domain::*;
use projections::task_rows;
use projections::{checkpoint, TASKS_PROJECTION};

#[tokio::test]
async fn a_projector_aborted_mid_batch_and_restarted_matches_the_log_exactly() {
    let world = world().await;
    let owner = UserId::parse("erin").unwrap();
    let writer = tokio::spawn(write_history(world.store.clone(), owner.clone(), 20, 12));

    // Kill the projector at arbitrary moments while events keep arriving.
    let mut kills = 0;
    while !writer.is_finished() || kills < 5 {
        let running = start(new_projector(&world));
        tokio::time::sleep(Duration::from_millis(7 + (kills * 13) % 40)).await;
        running.kill().await;
        kills += 1;
    }
    let appended = writer.await.unwrap();
    assert!(appended > 20, "the writer appended {appended} events");

    let head = world.store.head_position().await.unwrap();
    project_until(&world, head).await;

    let rows = task_rows::load_all(&world.pool).await.unwrap();
    let ids: Vec<TaskId> = rows.keys().copied().collect();
    assert_eq!(ids.len(), 20);
    let expected = fold_log(&world.store, &owner, &ids).await;
    // Versions count applied events: a doubled event would show as a higher version.
    assert_eq!(rows, expected);
    let total_versions: u64 = rows.values().map(|r| r.task.version).sum();
    assert_eq!(
        total_versions, head,
        "every event in the stream applied exactly once"
    );
}

#[tokio::test]
async fn a_stopped_projector_commits_its_batch_and_resumes_where_it_left_off() {
    let world = world().await;
    let owner = UserId::parse("frank").unwrap();
    write_history(world.store.clone(), owner.clone(), 5, 2).await;
    let first_head = world.store.head_position().await.unwrap();

    project_until(&world, first_head).await;
    assert_eq!(
        checkpoint::load(&world.pool, TASKS_PROJECTION)
            .await
            .unwrap(),
        first_head
    );

    // More history while no projector runs; a new one starts from the checkpoint.
    write_history(world.store.clone(), owner.clone(), 5, 2).await;
    let head = world.store.head_position().await.unwrap();
    project_until(&world, head).await;

    let rows = task_rows::load_all(&world.pool).await.unwrap();
    let ids: Vec<TaskId> = rows.keys().copied().collect();
    assert_eq!(rows.len(), 10);
    assert_eq!(rows, fold_log(&world.store, &owner, &ids).await);
}

#[tokio::test]
async fn a_second_projector_racing_on_the_checkpoint_cannot_apply_a_batch_twice() {
    let world = world().await;
    let owner = UserId::parse("grace").unwrap();
    write_history(world.store.clone(), owner.clone(), 8, 3).await;
    let head = world.store.head_position().await.unwrap();

    // Two projectors on the same checkpoint at once: the compare-and-set lets one win each
    // batch; the other fails its commit and resumes from the new checkpoint.
    let runs: Vec<Running> = (0..2).map(|_| start(new_projector(&world))).collect();
    wait_for_checkpoint(&world.pool, head).await;
    for run in runs {
        run.stop().await;
    }
    let rows = task_rows::load_all(&world.pool).await.unwrap();
    let total_versions: u64 = rows.values().map(|r| r.task.version).sum();
    assert_eq!(total_versions, head);
}

#[tokio::test]
async fn verify_names_every_tampered_missing_and_stray_row() {
    let world = world().await;
    let owner = UserId::parse("heidi").unwrap();
    write_history(world.store.clone(), owner.clone(), 4, 2).await;
    let head = world.store.head_position().await.unwrap();
    project_until(&world, head).await;
    assert_verify_clean(&world).await;

    let rows = task_rows::load_all(&world.pool).await.unwrap();
    let mut ids: Vec<TaskId> = rows.keys().copied().collect();
    ids.sort();
    sqlx::query("UPDATE tasks SET title = 'tampered', tracked_seconds = 7 WHERE id = $1")
        .bind(ids[0].0)
        .execute(&world.pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM tasks WHERE id = $1")
        .bind(ids[1].0)
        .execute(&world.pool)
        .await
        .unwrap();
    let stray = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO tasks (id, owner_id, title, status, created_at, updated_at, version, position)
         SELECT $1, owner_id, 'stray', status, created_at, updated_at, 1, position FROM tasks WHERE id = $2",
    )
    .bind(stray)
    .bind(ids[2].0)
    .execute(&world.pool)
    .await
    .unwrap();

    let report = projections::verify::verify(&world.pool, &world.store)
        .await
        .unwrap();
    assert!(!report.is_clean());
    use projections::verify::Difference;
    let fields_of = |id: uuid::Uuid| {
        report.differences.iter().find_map(|d| match d {
            Difference::Fields { task_id, fields } if *task_id == id => {
                Some(fields.iter().map(|f| f.field).collect::<Vec<_>>())
            }
            _ => None,
        })
    };
    assert_eq!(fields_of(ids[0].0), Some(vec!["title", "tracked_seconds"]));
    assert!(report
        .differences
        .contains(&Difference::Missing { task_id: ids[1].0 }));
    assert!(report
        .differences
        .contains(&Difference::Unexpected { task_id: stray }));
    assert_eq!(report.differences.len(), 3);
}

#[tokio::test]
async fn erasure_without_a_running_projector_still_removes_the_user_and_says_it_did_not_wait() {
    let world = world().await;
    let ivan = UserId::parse("ivan").unwrap();
    let judy = UserId::parse("judy").unwrap();
    write_history(world.store.clone(), ivan.clone(), 3, 1).await;
    let ivan_rows_head = world.store.head_position().await.unwrap();
    project_until(&world, ivan_rows_head).await;
    // Judy's events arrive while no projector runs: the checkpoint stays behind the purge.
    write_history(world.store.clone(), judy.clone(), 2, 1).await;

    let report = projections::erasure::erase_user(
        &world.pool,
        &world.store,
        &ivan,
        Duration::from_millis(100),
    )
    .await
    .unwrap();
    assert!(!report.projector_caught_up);
    assert_eq!(report.task_rows, 3);
    assert!(report.events >= 3);
    let (left_in_log, _) = world.store.raw_messages(Some(&ivan), 1).await.unwrap();
    assert_eq!(left_in_log, 0, "none of ivan's events remain in the log");
    let rows = task_rows::load_all(&world.pool).await.unwrap();
    assert!(rows.values().all(|r| r.task.owner != ivan));

    // A projector started later never sees the purged events, and Judy's rows are complete.
    let head = world.store.head_position().await.unwrap();
    project_until(&world, head).await;
    let rows = task_rows::load_all(&world.pool).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.values().all(|r| r.task.owner == judy));
    assert_verify_clean(&world).await;
}

#[tokio::test]
async fn processes_starting_together_all_find_the_database_one_of_them_created() {
    let planned = testkit::TestDatabase::planned();
    let attempts: Vec<_> = (0..4)
        .map(|_| {
            let url = planned.url.clone();
            tokio::spawn(async move { projections::database::ensure_database(&url).await })
        })
        .collect();
    let mut created = 0;
    for attempt in attempts {
        if attempt
            .await
            .unwrap()
            .expect("no process fails on the race")
        {
            created += 1;
        }
    }
    assert!(created <= 1, "{created} processes claim to have created it");
    let pool = projections::database::connect(&planned.url, 1)
        .await
        .unwrap();
    projections::database::migrate(&pool).await.unwrap();
}
