//! The loader against a real read model: bounded to what the metrics need, one owner only, in
//! one snapshot with the checkpoint.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::user;
use domain::TaskStatus;
use insights::load::load_history;
use projections::database;
use sqlx::PgPool;
use testkit::TestDatabase;

async fn read_model() -> (TestDatabase, PgPool) {
    let db = TestDatabase::create().await;
    let pool = database::connect(&db.url, 4).await.unwrap();
    database::migrate(&pool).await.unwrap();
    (db, pool)
}

struct Row<'a> {
    owner: &'a str,
    status: &'a str,
    created_days_ago: i64,
    completed_days_ago: Option<i64>,
    time_zone: &'a str,
}

async fn insert(pool: &PgPool, now: DateTime<Utc>, row: Row<'_>) {
    let created_at = now - Duration::days(row.created_days_ago);
    sqlx::query(
        "INSERT INTO tasks (id, owner_id, title, status, created_at, updated_at, completed_at,
                            tags, estimate_minutes, actual_minutes, time_zone, version, position)
         VALUES ($1, $2, 'x', $3, $4, $4, $5, '{work}', 60, 45, $6, 1, 1)",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(row.owner)
    .bind(row.status)
    .bind(created_at)
    .bind(row.completed_days_ago.map(|d| now - Duration::days(d)))
    .bind(row.time_zone)
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn the_loader_reads_the_owners_unfinished_and_recently_completed_tasks_at_the_checkpoint() {
    let (_db, pool) = read_model().await;
    let now = Utc::now();
    let row = |owner, status, created_days_ago, completed_days_ago| Row {
        owner,
        status,
        created_days_ago,
        completed_days_ago,
        time_zone: "UTC",
    };
    // Included: unfinished whatever their age, completed within 90 days (archived or not).
    insert(&pool, now, row("alice", "open", 400, None)).await;
    insert(&pool, now, row("alice", "in_progress", 3, None)).await;
    insert(&pool, now, row("alice", "paused", 3, None)).await;
    insert(&pool, now, row("alice", "completed", 20, Some(10))).await;
    insert(&pool, now, row("alice", "archived", 20, Some(5))).await;
    // Left out: completed long ago, archived unfinished, someone else's.
    insert(&pool, now, row("alice", "completed", 200, Some(100))).await;
    insert(&pool, now, row("alice", "archived", 2, None)).await;
    insert(&pool, now, row("bob", "open", 1, None)).await;
    // The newest task's zone is the user's.
    insert(
        &pool,
        now,
        Row {
            time_zone: "Asia/Tokyo",
            ..row("alice", "open", 0, None)
        },
    )
    .await;
    sqlx::query(
        "INSERT INTO projection_layouts (projection, version, partitions) VALUES ('tasks', 1, 1)",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO projection_checkpoints (projection, partition, position, version, partitions)
         VALUES ('tasks', 0, 17, 1, 1)",
    )
    .execute(&pool)
    .await
    .unwrap();

    let history = load_history(&pool, &user("alice"), now).await.unwrap();
    assert_eq!(history.position, 17);
    assert_eq!(history.time_zone, "Asia/Tokyo");
    let mut statuses: Vec<&str> = history.tasks.iter().map(|t| t.status.as_str()).collect();
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [
            "archived",
            "completed",
            "in_progress",
            "open",
            "open",
            "paused"
        ]
    );
    let archived = history
        .tasks
        .iter()
        .find(|t| t.status == TaskStatus::Archived)
        .unwrap();
    assert!(archived.completed_at.is_some());
    assert_eq!(archived.tags, ["work"]);
    assert_eq!(archived.estimate_minutes, Some(60));
    assert_eq!(archived.actual_minutes, Some(45));
}

#[tokio::test]
async fn a_user_without_tasks_gets_utc_and_an_empty_history() {
    let (_db, pool) = read_model().await;
    let history = load_history(&pool, &user("nobody"), Utc::now())
        .await
        .unwrap();
    assert!(history.tasks.is_empty());
    assert_eq!(history.time_zone, "UTC");
    assert_eq!(history.position, 0);
}

#[tokio::test]
async fn a_long_history_is_not_scanned_thanks_to_the_completed_index() {
    let (_db, pool) = read_model().await;
    // Alice: years of completed tasks and a handful of unfinished ones; others alike.
    sqlx::query(
        "INSERT INTO tasks (id, owner_id, title, status, created_at, updated_at, completed_at,
                            version, position)
         SELECT gen_random_uuid(), 'user' || (n % 20), 'x', 'completed',
                now() - make_interval(days => 400 + n % 1000), now(),
                now() - make_interval(days => 100 + n % 1000), 2, n
           FROM generate_series(1, 20000) AS n",
    )
    .execute(&pool)
    .await
    .unwrap();
    for _ in 0..5 {
        insert(
            &pool,
            Utc::now(),
            Row {
                owner: "user1",
                status: "open",
                created_days_ago: 1,
                completed_days_ago: None,
                time_zone: "UTC",
            },
        )
        .await;
    }
    sqlx::query("ANALYZE tasks").execute(&pool).await.unwrap();
    let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {}", insights::load::HISTORY_SQL))
        .bind("user1")
        .bind(Utc::now() - Duration::days(90))
        .fetch_all(&pool)
        .await
        .unwrap();
    let plan = plan.join("\n");
    assert!(plan.contains("tasks_owner_completed"), "{plan}");
    assert!(!plan.contains("Seq Scan"), "{plan}");
}

#[tokio::test]
async fn a_database_that_is_gone_is_an_error_not_an_empty_answer() {
    let (db, pool) = read_model().await;
    pool.close().await;
    let error = load_history(&pool, &user("alice"), Utc::now())
        .await
        .unwrap_err();
    assert!(
        matches!(error, insights::InsightsError::Database(_)),
        "{error}"
    );
    drop(db);
}
