//! NATS killed for 10 s mid-load, then started again on the same store.

use std::time::{Duration, Instant};

use testkit::{RedisKeys, TestDatabase};

use crate::common::load::{check_all, client_token, Load, REQUEST_LIMIT};
use crate::common::nats_server::NatsServer;
use crate::{secs, serve, Probe, CLIENTS, SERIAL};

/// How long NATS stays down.
const OUTAGE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_down_for_ten_seconds_mid_load_answers_503_and_recovers_without_a_restart_losing_nothing(
) {
    let _serial = SERIAL.lock().await;
    let mut nats = NatsServer::start();
    let db = TestDatabase::planned();
    let prefix = testkit::unique_token();
    let _redis = RedisKeys::new(&prefix);
    let app = serve(&[
        ("DATABASE_URL", db.url.clone()),
        ("TASKMASTER_NATS_URL", nats.url()),
        ("TASKMASTER_NATS_PREFIX", prefix.clone()),
        // Six clients flat out from one address: the test is about NATS, not about limits.
        ("TASKMASTER_RATE_LIMIT_USER", "0".into()),
        ("TASKMASTER_RATE_LIMIT_IP", "0".into()),
    ])
    .await;
    let every = Duration::from_millis(200);
    let readiness = Probe::start(app.url("/health/ready"), None, every);
    let queries = Probe::start(app.url("/v1/tasks?limit=5"), Some(client_token(0)), every);
    let load = Load::start(app.address, CLIENTS);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = load.accepted();
    assert!(before > 0, "no command succeeded before the outage");

    nats.kill();
    let killed = Instant::now();
    tokio::time::sleep(OUTAGE).await;
    // Samples up to here saw the service down; from the restart on, it may be up.
    let restarting = Instant::now();
    nats.restart();
    let restarted = Instant::now();

    // Back without restarting taskmaster: commands succeed and readiness is green again.
    assert!(
        load.until_accepted_after(restarted, 30, Duration::from_secs(60))
            .await,
        "commands did not succeed again after NATS came back:\n{}",
        nats.log_tail()
    );
    let ready_again = readiness
        .until(restarted, Duration::from_secs(30), |s| {
            s.status == Some(200)
        })
        .await
        .expect("/health/ready did not answer 200 again");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let journal = load.stop().await;
    let readiness = readiness.stop().await;
    let queries = queries.stop().await;

    // While NATS was down, every command failed cleanly: a 503 problem+json naming NATS, with
    // Retry-After, within a bounded time; never a 500, never without an answer.
    let failed = journal.failed();
    for attempt in &failed {
        assert!(
            attempt.status == Some(503)
                && attempt.problem_json
                && attempt.retry_after.is_some()
                && attempt
                    .body
                    .as_ref()
                    .is_some_and(|b| b["dependency"] == "nats"),
            "a command failed other than with a 503 problem+json naming NATS: {attempt:?}; \
             the task's attempts, relative to the kill: {:#?}",
            journal.story(attempt, killed)
        );
    }
    let during: Vec<_> = journal
        .attempts
        .iter()
        .filter(|a| a.sent >= killed && a.answered <= restarting)
        .collect();
    assert!(
        !during.is_empty(),
        "no command was sent while NATS was down"
    );
    assert!(
        during.iter().all(|a| a.status == Some(503)),
        "a command sent while NATS was down was not answered 503"
    );
    let slowest = journal.slowest();
    assert!(slowest < REQUEST_LIMIT, "a command took {slowest:?}");
    let slowest_during = during.iter().map(|a| a.answered - a.sent).max().unwrap();

    // Readiness said NATS was down, and was itself answered promptly.
    let down_reported = readiness.iter().any(|s| {
        s.sent > killed
            && s.sent + s.took < restarting
            && s.status == Some(503)
            && s.body["nats"]["status"] == "down"
            && s.body["postgres"]["status"] == "up"
    });
    assert!(down_reported, "/health/ready never reported NATS down");
    for sample in &readiness {
        assert!(
            matches!(sample.status, Some(200 | 503)) && sample.took < Duration::from_secs(5),
            "/health/ready: {sample:?}"
        );
    }
    // Queries read PostgreSQL, which stayed up: they were answered all along.
    for sample in &queries {
        assert_eq!(
            sample.status,
            Some(200),
            "a query during the NATS outage: {sample:?}"
        );
    }
    let queries_during = queries
        .iter()
        .filter(|s| s.sent > killed && s.sent < restarting)
        .count();

    // Nothing lost, nothing doubled: the log holds every accepted command's event once, and the
    // read model equals the log.
    let checked = check_all(&journal, &nats.url(), &prefix, &db.url).await;

    let first_success = journal.first_success_sent_after(restarted).unwrap();
    eprintln!(
        "FIGURES nats: down {}; {} commands accepted before; while down {} command attempts, all \
         503 (slowest {}), {queries_during} queries all 200; after the restart: first command \
         sent answered 2xx in {}, /health/ready 200 after {}; attempts by status {:?}; slowest \
         attempt {}; {} commands accepted, {} events, lost 0, doubled 0 ({} retries answered \
         from the log)",
        secs(OUTAGE),
        before,
        during.len(),
        secs(slowest_during),
        secs(first_success),
        secs(ready_again - restarted),
        journal.by_status(),
        secs(slowest),
        journal.accepted.len(),
        checked.events,
        checked.absorbed,
    );
    app.stop().await;
}
