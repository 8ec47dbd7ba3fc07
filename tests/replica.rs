//! Queries on a real streaming replica of the local PostgreSQL: read-your-writes waits on the
//! replica's own checkpoint, the replica really answers, and a stopped replica sends queries
//! to the primary while `/health/ready` reports it.
//!
//! Each test makes its replica with `pg_basebackup -R -X stream` from the primary at
//! 127.0.0.1:5432 and runs it on a free port as the `postgres` OS user (PostgreSQL refuses to
//! run as root), in a temporary directory that [`Replica`]'s drop stops and removes, also when
//! the test fails. The primary's `pg_hba.conf` must allow replication connections from
//! 127.0.0.1 (`host replication all 127.0.0.1/32 trust`; `.ci/run` adds it).

mod common;

use std::time::{Duration, Instant};

use common::postgres_server::{as_postgres, hand_to_postgres, run, until, PostgresServer, PRIMARY};
use common::TestApp;
use projections::read_source::REPLICA_APPLICATION_NAME;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};
use testkit::TestDatabase;

/// A streaming replica of the local primary, stopped and deleted on drop.
struct Replica {
    server: PostgresServer,
}

impl Replica {
    /// Takes a base backup of the primary and starts it as a hot standby; returns once it
    /// accepts connections and is in recovery.
    async fn start() -> Self {
        let mut primary = PgConnection::connect(&format!("{PRIMARY}/postgres"))
            .await
            .expect("the local PostgreSQL must be running");
        let replication_allowed: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_hba_file_rules
                             WHERE 'replication' = ANY(database) AND error IS NULL)",
        )
        .fetch_one(&mut primary)
        .await
        .unwrap();
        assert!(
            replication_allowed,
            "the primary's pg_hba.conf allows no replication connections: add \
             `host replication all 127.0.0.1/32 trust` and reload (see .ci/run)"
        );
        let server = PostgresServer::allocate("tm-replica").await;
        let started = Instant::now();
        // The primary is shared with every other test, and a copy can be cut off by what they
        // do to it (a database dropped WITH (FORCE) ends its sessions): a cut-off copy removes
        // its directory, and is taken again, a few times at most.
        for attempt in 1..=3 {
            let mut backup = as_postgres(server.bin(), "pg_basebackup");
            backup
                .args(["-h", "127.0.0.1", "-p", "5432", "-U", "postgres", "-D"])
                .arg(server.data())
                // -R: standby.signal and primary_conninfo; -c fast: do not wait for a spread
                // checkpoint (minutes) before copying.
                .args(["-R", "-X", "stream", "-c", "fast"]);
            if attempt == 3 {
                run(backup, "pg_basebackup");
                break;
            }
            let output = backup.output().expect("pg_basebackup runs");
            if output.status.success() {
                break;
            }
            eprintln!(
                "pg_basebackup attempt {attempt} failed, taking it again: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let _ = std::fs::remove_dir_all(server.data());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Debian keeps the configuration outside the data directory: the copy has none.
        std::fs::write(
            server.data().join("postgresql.conf"),
            server.settings("hot_standby = on\nshared_buffers = 16MB\nmax_connections = 100\n"),
        )
        .unwrap();
        std::fs::write(
            server.data().join("pg_hba.conf"),
            "local all all trust\nhost all all 127.0.0.1/32 trust\n",
        )
        .unwrap();
        hand_to_postgres(server.dir());
        let replica = Self { server };
        replica.resume().await;
        eprintln!(
            "replica {} ready in {:?} (base backup included)",
            replica.url(""),
            started.elapsed()
        );
        replica
    }

    /// A URL of `database` on the replica.
    fn url(&self, database: &str) -> String {
        self.server.url(database)
    }

    async fn connect(&self, database: &str) -> Result<PgConnection, sqlx::Error> {
        PgConnection::connect(&self.url(database)).await
    }

    /// Starts (again) the stopped replica and waits until it answers in recovery.
    async fn resume(&self) {
        self.server.resume().await;
        let in_recovery = until(Duration::from_secs(30), async || {
            let Ok(mut connection) = self.connect("postgres").await else {
                return false;
            };
            sqlx::query_scalar::<_, bool>("SELECT pg_is_in_recovery()")
                .fetch_one(&mut connection)
                .await
                .unwrap_or(false)
        })
        .await;
        assert!(in_recovery, "the replica never answered in recovery");
    }

    /// Stops the replica (fast: sessions are cut, as when a replica dies).
    fn stop(&self) {
        self.server.stop("fast");
    }
}

/// The value of the counter line starting with `series` (0 when absent).
fn counter(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

const FROM_REPLICA: &str = r#"taskmaster_read_queries_total{source="replica"}"#;
const FROM_PRIMARY_INSTEAD: &str = r#"taskmaster_read_queries_total{source="primary_fallback"}"#;

async fn readiness(app: &TestApp) -> (u16, Value) {
    let response = app.http.get(app.url("/health/ready")).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// An application on a fresh database of the primary whose queries read `replica`; returns
/// once the replica has replayed the database's creation and the application uses it.
async fn app_on(replica: &Replica, extra: &[(&str, &str)]) -> TestApp {
    let db = TestDatabase::planned();
    let replica_url = replica.url(&db.name);
    let mut vars = vec![
        ("TASKMASTER_DATABASE_REPLICA_URL", replica_url.as_str()),
        // The insights worker reads the read model too: keep its refreshes out of the counts.
        ("TASKMASTER_INSIGHTS_DEBOUNCE_MS", "60000"),
    ];
    vars.extend_from_slice(extra);
    let app = TestApp::spawn_on(db, &vars).await;
    let ready = until(Duration::from_secs(10), async || {
        let (status, body) = readiness(&app).await;
        status == 200 && body["replica"]["status"] == "up"
    })
    .await;
    assert!(ready, "the application never reported the replica up");
    app
}

async fn create(app: &TestApp, token: &str, title: &str) -> (String, u64) {
    let response = app.create(token, json!({ "title": title })).await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    (
        body["id"].as_str().unwrap().to_owned(),
        body["position"].as_u64().unwrap(),
    )
}

/// The sessions of `database` named `application_name` on the server at `url`.
async fn sessions(url: &str, database: &str, application_name: &str) -> i64 {
    let mut connection = PgConnection::connect(&format!("{url}/postgres"))
        .await
        .unwrap();
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = $2",
    )
    .bind(database)
    .bind(application_name)
    .fetch_one(&mut connection)
    .await
    .unwrap()
}

#[tokio::test]
async fn queries_read_their_own_writes_from_the_replica_and_wait_on_its_checkpoint() {
    let replica = Replica::start().await;
    let app = app_on(&replica, &[("TASKMASTER_READ_WAIT_MS", "1500")]).await;
    let database = app.database_url().rsplit('/').next().unwrap().to_owned();
    let token = app.token("rita");

    // A command, then a read of it that waits on the replica.
    let (id, position) = create(&app, &token, "read me from the replica").await;
    let read = app.get_task(&token, &id, position).await;
    assert_eq!(read.status(), 200);
    let task: Value = read.json().await.unwrap();
    assert_eq!(task["title"], "read me from the replica");

    // Many rounds of create → read-your-writes, each answered by the replica.
    let rounds = 60;
    let mut waits = Vec::new();
    for round in 0..rounds {
        let title = format!("round {round}");
        let (id, position) = create(&app, &token, &title).await;
        let asked = Instant::now();
        let read = app.get_task(&token, &id, position).await;
        waits.push(asked.elapsed());
        assert_eq!(read.status(), 200, "round {round}");
        let task: Value = read.json().await.unwrap();
        assert_eq!(task["title"], title.as_str(), "round {round}");
        assert_eq!(task["position"], position, "round {round}");
    }
    let list = app
        .http
        .get(app.url("/v1/tasks?limit=200"))
        .bearer_auth(&token)
        .header("Tm-Min-Position", position.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    let list: Value = list.json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), rounds + 1);
    waits.sort();
    eprintln!(
        "read-your-writes on the replica over {rounds} rounds: p50 {:?}, max {:?}",
        waits[waits.len() / 2],
        waits[waits.len() - 1]
    );

    // The replica answered every query (two per read: the task or page, then its subtask
    // counts), and the application's sessions are on the replica, not on the primary.
    let metrics = app.metrics().await;
    assert_eq!(
        counter(&metrics, FROM_REPLICA),
        2 * (rounds as u64 + 2),
        "{metrics}"
    );
    assert_eq!(counter(&metrics, FROM_PRIMARY_INSTEAD), 0, "{metrics}");
    let replica_server = format!("postgres://postgres@127.0.0.1:{}", replica.server.port());
    assert!(sessions(&replica_server, &database, REPLICA_APPLICATION_NAME).await > 0);
    assert_eq!(
        sessions(PRIMARY, &database, REPLICA_APPLICATION_NAME).await,
        0
    );

    // With replay paused on the replica, a write the primary has cannot be read: the wait is
    // on the replica's checkpoint, and its bound answers 504 with the replica's position.
    let mut standby = replica.connect("postgres").await.unwrap();
    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&mut standby)
        .await
        .unwrap();
    let (paused_id, paused_at) = create(&app, &token, "written while replay is paused").await;
    let mut primary = PgConnection::connect(app.database_url()).await.unwrap();
    let on_primary = until(Duration::from_secs(5), async || {
        projections::checkpoint::load(&mut primary, projections::TASKS_PROJECTION)
            .await
            .unwrap()
            >= paused_at
    })
    .await;
    assert!(
        on_primary,
        "the primary's read model never reached the write"
    );
    let behind = common::problem(app.get_task(&token, &paused_id, paused_at).await, 504).await;
    assert_eq!(behind["requested_position"], paused_at);
    assert!(behind["current_position"].as_u64().unwrap() < paused_at);
    // Resumed, the same read succeeds, from the replica.
    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&mut standby)
        .await
        .unwrap();
    let read = app.get_task(&token, &paused_id, paused_at).await;
    assert_eq!(read.status(), 200);
    let metrics = app.metrics().await;
    assert_eq!(
        counter(&metrics, FROM_REPLICA),
        2 * (rounds as u64 + 3),
        "{metrics}"
    );
    assert_eq!(counter(&metrics, FROM_PRIMARY_INSTEAD), 0, "{metrics}");

    // How far the replica trails the primary, as the primary measures it.
    let lag: Option<(Option<f64>, Option<f64>)> = sqlx::query_as(
        "SELECT extract(epoch FROM write_lag)::float8, extract(epoch FROM replay_lag)::float8
           FROM pg_stat_replication WHERE application_name = $1",
    )
    .bind(replica.server.cluster_name())
    .fetch_optional(&mut primary)
    .await
    .unwrap();
    eprintln!("replica lag (write, replay) in seconds: {lag:?}");
}

#[tokio::test]
async fn a_stopped_replica_sends_queries_to_the_primary_and_readiness_reports_it() {
    let replica = Replica::start().await;
    let app = app_on(&replica, &[]).await;
    let token = app.token("sam");
    let (id, position) = create(&app, &token, "before the outage").await;
    assert_eq!(app.get_task(&token, &id, position).await.status(), 200);
    // Two queries: the task, and its subtask counts.
    assert_eq!(counter(&app.metrics().await, FROM_REPLICA), 2);

    // The replica dies; queries keep working, answered by the primary, read-your-writes
    // included (the wait moves to the primary's checkpoint).
    replica.stop();
    let answered_by_replica = counter(&app.metrics().await, FROM_REPLICA);
    for round in 0..5 {
        let title = format!("during the outage {round}");
        let (id, position) = create(&app, &token, &title).await;
        let read = app.get_task(&token, &id, position).await;
        assert_eq!(read.status(), 200, "round {round}");
        let task: Value = read.json().await.unwrap();
        assert_eq!(task["title"], title.as_str());
    }
    let list = app
        .http
        .get(app.url("/v1/tasks"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    assert_eq!(
        list.json::<Value>().await.unwrap()["items"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    let insights = app
        .http
        .get(app.url("/v1/insights"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(insights.status(), 200);
    let metrics = app.metrics().await;
    assert_eq!(
        counter(&metrics, FROM_REPLICA),
        answered_by_replica,
        "{metrics}"
    );
    // Five reads and the list, each with its subtask counts, and the insights.
    assert_eq!(counter(&metrics, FROM_PRIMARY_INSTEAD), 13, "{metrics}");

    // Readiness: still ready (the primary answers), degraded, the replica reported down.
    let (status, body) = readiness(&app).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["replica"]["status"], "down", "{body}");
    assert_eq!(body["replica"]["required"], false, "{body}");
    assert!(body["replica"]["error"].is_string(), "{body}");
    assert_eq!(body["postgres"]["status"], "up", "{body}");

    // Back up, it catches up by streaming and answers queries again.
    replica.resume().await;
    let back = until(Duration::from_secs(10), async || {
        let (_, body) = readiness(&app).await;
        body["replica"]["status"] == "up"
    })
    .await;
    assert!(back, "the application never saw the replica back");
    let (id, position) = create(&app, &token, "after the outage").await;
    assert_eq!(app.get_task(&token, &id, position).await.status(), 200);
    assert_eq!(
        counter(&app.metrics().await, FROM_REPLICA),
        answered_by_replica + 2
    );
}
