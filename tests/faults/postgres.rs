//! PostgreSQL crashed mid-projection and started again.

use std::time::{Duration, Instant};

use testkit::{NatsScope, RedisKeys};

use crate::common::load::{catch_up, check_all, client_token, Load};
use crate::common::postgres_server::PostgresServer;
use crate::{assert_clean, secs, serve, Probe, CLIENTS, SERIAL};

/// How long PostgreSQL stays down.
const OUTAGE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crashing_mid_projection_pauses_the_projector_which_resumes_from_its_checkpoints()
{
    let _serial = SERIAL.lock().await;
    let postgres = PostgresServer::start().await;
    let database_url = postgres.url("taskmaster");
    let nats = NatsScope::new();
    let _redis = RedisKeys::new(&nats.prefix);
    let app = serve(&[
        ("DATABASE_URL", database_url.clone()),
        ("TASKMASTER_NATS_PREFIX", nats.prefix.clone()),
        ("TASKMASTER_RATE_LIMIT_USER", "0".into()),
        ("TASKMASTER_RATE_LIMIT_IP", "0".into()),
    ])
    .await;
    let every = Duration::from_millis(200);
    let token = client_token(0);
    let readiness = Probe::start(app.url("/health/ready"), None, every);
    let queries = Probe::start(app.url("/v1/tasks?limit=5"), Some(token.clone()), every);
    let load = Load::start(app.address, CLIENTS);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = load.accepted();
    assert!(before > 0, "no command succeeded before the crash");

    postgres.stop("immediate");
    let crashed = Instant::now();
    tokio::time::sleep(OUTAGE).await;
    // Samples up to here saw the service down; from the restart on, it may be up.
    let restarting = Instant::now();
    postgres.resume().await;
    let restarted = Instant::now();

    // The projector catches up with what was appended meanwhile, on its own.
    let (head_at_restart, _) = catch_up(
        &testkit::nats_url(),
        &nats.prefix,
        &database_url,
        Duration::from_secs(60),
    )
    .await;
    let caught_up = restarted.elapsed();
    let queries_again = queries
        .until(restarted, Duration::from_secs(30), |s| {
            s.status == Some(200)
        })
        .await
        .expect("queries were not answered 200 again");
    let ready_again = readiness
        .until(restarted, Duration::from_secs(30), |s| {
            s.status == Some(200)
        })
        .await
        .expect("/health/ready did not answer 200 again");

    // Reading one's own writes works again (the position watch listens once more): a task
    // created by the load after the restart, read with its answer's position.
    let created = {
        let journal = load.journal.lock().unwrap();
        journal
            .accepted
            .iter()
            .rev()
            .find(|a| a.event_type == "TaskCreated" && a.answered > queries_again)
            .cloned()
    };
    let created = match created {
        Some(created) => created,
        None => {
            assert!(
                load.until_accepted_after(queries_again, 3, Duration::from_secs(30))
                    .await
            );
            let journal = load.journal.lock().unwrap();
            journal.accepted.last().cloned().unwrap()
        }
    };
    let read = reqwest::Client::new()
        .get(app.url(&format!("/v1/tasks/{}", created.task)))
        .bearer_auth(client_token(created.client))
        .header("Tm-Min-Position", created.position.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200, "read-your-writes after the crash");

    tokio::time::sleep(Duration::from_secs(1)).await;
    let journal = load.stop().await;
    let readiness = readiness.stop().await;
    let queries = queries.stop().await;

    // Commands never needed PostgreSQL: none failed.
    let accepted_during = journal.assert_unaffected(crashed, restarting, "PostgreSQL");
    // Queries answered 503 problem+json naming PostgreSQL, promptly; never a 500.
    assert_clean("queries", &queries, Duration::from_secs(5));
    let during: Vec<_> = queries
        .iter()
        .filter(|s| s.sent > crashed + Duration::from_millis(500) && s.sent + s.took < restarting)
        .collect();
    assert!(!during.is_empty(), "no query was sent during the crash");
    for sample in &during {
        assert_eq!(
            sample.status,
            Some(503),
            "a query during the crash: {sample:?}"
        );
        assert_eq!(sample.body["dependency"], "postgres", "{sample:?}");
    }
    let slowest_query = during.iter().map(|s| s.took).max().unwrap();
    assert!(
        readiness.iter().any(|s| s.sent > crashed
            && s.sent + s.took < restarting
            && s.status == Some(503)
            && s.body["postgres"]["status"] == "down"
            && s.body["nats"]["status"] == "up"),
        "/health/ready never reported PostgreSQL down"
    );

    // Nothing lost, nothing applied twice.
    let checked = check_all(&journal, &testkit::nats_url(), &nats.prefix, &database_url).await;

    eprintln!(
        "FIGURES postgres: down {}; while down {accepted_during} commands accepted (none \
         failed), {} queries all 503 (slowest {}); after the restart: read model caught up with \
         the {head_at_restart} events appended by then in {}, queries 200 after {}, \
         /health/ready 200 after {}; {} commands accepted, {} events, lost 0, applied twice 0",
        secs(OUTAGE),
        during.len(),
        secs(slowest_query),
        secs(caught_up),
        secs(queries_again - restarted),
        secs(ready_again - restarted),
        journal.accepted.len(),
        checked.events,
    );
    app.stop().await;
}
