//! Redis killed mid-load and started again (empty, as a cache restarts).

use std::time::{Duration, Instant};

use testkit::{NatsScope, RedisKeys, TestDatabase};

use crate::common::load::{check_all, client_token, Load};
use crate::common::redis_server::RedisServer;
use crate::{assert_clean, secs, serve, Probe, RunningApp, CLIENTS, SERIAL};

/// How long Redis stays down.
const OUTAGE: Duration = Duration::from_secs(10);

/// The value of the metric line starting with `series` (0 when absent).
fn sample(exposition: &str, series: &str) -> u64 {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

async fn rate_limit_decisions(app: &RunningApp, outcome: &str) -> u64 {
    let exposition = reqwest::get(app.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    sample(
        &exposition,
        &format!("taskmaster_rate_limit_decisions_total{{outcome=\"{outcome}\"}}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_mid_load_serves_insights_from_postgres_and_fails_rate_limits_open_with_no_5xx()
{
    let _serial = SERIAL.lock().await;
    let mut redis = RedisServer::start();
    let db = TestDatabase::planned();
    let nats = NatsScope::new();
    let _keys = RedisKeys::new(&nats.prefix);
    let app = serve(&[
        ("DATABASE_URL", db.url.clone()),
        ("TASKMASTER_NATS_PREFIX", nats.prefix.clone()),
        ("REDIS_URL", redis.url()),
        // Limits on, so every request asks Redis, but high enough that the load stays under.
        ("TASKMASTER_RATE_LIMIT_USER", "1000000/1m".into()),
        ("TASKMASTER_RATE_LIMIT_IP", "1000000/1m".into()),
    ])
    .await;
    let every = Duration::from_millis(200);
    let token = client_token(0);
    let readiness = Probe::start(app.url("/health/ready"), None, every);
    let insights = Probe::start(app.url("/v1/insights"), Some(token.clone()), every);
    let queries = Probe::start(app.url("/v1/tasks?limit=5"), Some(token), every);
    let load = Load::start(app.address, CLIENTS);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        load.accepted() > 0,
        "no command succeeded before the outage"
    );
    let unavailable_before = rate_limit_decisions(&app, "unavailable").await;

    redis.kill();
    let killed = Instant::now();
    tokio::time::sleep(OUTAGE).await;
    let unavailable_during = rate_limit_decisions(&app, "unavailable").await - unavailable_before;
    // Samples up to here saw the service down; from the restart on, it may be up.
    let restarting = Instant::now();
    redis.restart();
    let restarted = Instant::now();

    // Back: insights come from the cache again and the limiter decides with Redis again.
    let cached_again = insights
        .until(restarted, Duration::from_secs(30), |s| {
            s.status == Some(200) && s.cache.as_deref() != Some("bypass")
        })
        .await
        .expect("insights never used the cache again");
    let limited_again = queries
        .until(restarted, Duration::from_secs(30), |s| {
            s.rate_limit.is_some()
        })
        .await
        .expect("the rate limiter never used Redis again");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let journal = load.stop().await;
    let readiness = readiness.stop().await;
    let insights = insights.stop().await;
    let queries = queries.stop().await;

    // No request failed at all: Redis only caches and counts.
    let accepted_during = journal.assert_unaffected(killed, restarting, "Redis");
    let limit = Duration::from_secs(3);
    assert_clean("insights", &insights, limit);
    assert_clean("queries", &queries, limit);
    let within = |s: &&crate::Sample| {
        s.sent > killed + Duration::from_millis(300) && s.sent + s.took < restarting
    };
    let insights_during: Vec<_> = insights.iter().filter(within).collect();
    assert!(!insights_during.is_empty());
    for sample in &insights_during {
        assert_eq!(sample.status, Some(200), "{sample:?}");
        assert_eq!(sample.cache.as_deref(), Some("bypass"), "{sample:?}");
    }
    let queries_during: Vec<_> = queries.iter().filter(within).collect();
    for sample in &queries_during {
        assert_eq!(sample.status, Some(200), "{sample:?}");
        assert!(
            sample.rate_limit.is_none(),
            "a limit enforced without Redis: {sample:?}"
        );
    }
    assert!(
        unavailable_during > 0,
        "the limiter never noticed Redis was down"
    );
    let slowest_insights = insights_during.iter().map(|s| s.took).max().unwrap();
    // Readiness: degraded, never unready, for a cache.
    let readiness_during: Vec<_> = readiness.iter().filter(within).collect();
    assert!(!readiness_during.is_empty());
    for sample in &readiness_during {
        assert_eq!(sample.status, Some(200), "{sample:?}");
        assert_eq!(sample.body["status"], "degraded", "{sample:?}");
        assert_eq!(sample.body["redis"]["status"], "down", "{sample:?}");
    }

    // Nothing lost, nothing doubled.
    let checked = check_all(&journal, &testkit::nats_url(), &nats.prefix, &db.url).await;

    eprintln!(
        "FIGURES redis: down {}; while down {} commands accepted (none failed), {} insights \
         answers all 200 bypass (slowest {}), {} queries all 200 without rate-limit headers, \
         {unavailable_during} rate-limit decisions failed open, /health/ready 200 degraded; \
         after the restart: insights cached again after {}, rate limits enforced again after \
         {}; {} commands accepted, {} events, lost 0, doubled 0",
        secs(OUTAGE),
        accepted_during,
        insights_during.len(),
        secs(slowest_insights),
        queries_during.len(),
        secs(cached_again - restarted),
        secs(limited_again - restarted),
        journal.accepted.len(),
        checked.events,
    );
    app.stop().await;
}
