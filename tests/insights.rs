//! Insights end to end: the app runs api, projector and insights against its own
//! `redis-server`, which the tests kill and restart to show that a Redis outage slows
//! `GET /v1/insights` down to a computation from Postgres and never fails it.

mod common;

use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use common::{problem, TestApp};
use serde_json::{json, Value};

/// An app with every role on `redis`, refreshing 100 ms after a user's last event.
async fn app_on(redis: &RedisServer, extra: &[(&str, &str)]) -> TestApp {
    let url = redis.url();
    let mut vars = vec![
        ("REDIS_URL", url.as_str()),
        ("TASKMASTER_INSIGHTS_DEBOUNCE_MS", "100"),
    ];
    vars.extend_from_slice(extra);
    TestApp::spawn_with(&vars).await
}

/// `GET /v1/insights`: asserts 200 and returns the `Tm-Cache` header and the body.
async fn insights(app: &TestApp, token: &str, min_position: Option<u64>) -> (String, Value) {
    let mut request = app.http.get(app.url("/v1/insights")).bearer_auth(token);
    if let Some(position) = min_position {
        request = request.header("Tm-Min-Position", position.to_string());
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "GET /v1/insights");
    let cache = response.headers()["tm-cache"].to_str().unwrap().to_owned();
    (cache, response.json().await.unwrap())
}

fn completed_30d(body: &Value) -> u64 {
    body["completion_rate_30d"]["completed"].as_u64().unwrap()
}

/// Polls `GET /v1/insights` until `wanted` holds for an answer, at most `within`.
async fn eventually(
    app: &TestApp,
    token: &str,
    within: Duration,
    wanted: impl Fn(&str, &Value) -> bool,
) -> (String, Value) {
    let deadline = Instant::now() + within;
    loop {
        let (cache, body) = insights(app, token, None).await;
        if wanted(&cache, &body) {
            return (cache, body);
        }
        assert!(
            Instant::now() < deadline,
            "no answer matched within {within:?}; last: Tm-Cache {cache}, {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The Prometheus exposition of `app`.
async fn exposition(app: &TestApp) -> String {
    let response = app.http.get(app.url("/metrics")).send().await.unwrap();
    response.text().await.unwrap()
}

fn task(title: &str) -> Value {
    json!({ "title": title, "estimate_minutes": 60, "tags": ["work"] })
}

#[tokio::test]
async fn insights_are_cached_refreshed_by_events_and_answered_from_postgres_while_redis_is_dead() {
    let mut redis = RedisServer::start();
    let app = app_on(&redis, &[]).await;
    let token = app.token("alice");

    // Nothing cached yet: computed and stored; then served from the cache.
    let (cache, empty) = insights(&app, &token, None).await;
    assert_eq!(cache, "miss");
    assert_eq!(completed_30d(&empty), 0);
    assert!(empty["productivity_score"].is_null());
    let (cache, again) = insights(&app, &token, None).await;
    assert_eq!(cache, "hit");
    assert_eq!(again["computed_at"], empty["computed_at"]);

    // New completions: the worker refreshes the cached value, no TTL involved.
    app.create_and_complete(&token, task("one"), 60).await;
    app.create_and_complete(&token, task("two"), 60).await;
    let (_, refreshed) = eventually(&app, &token, Duration::from_secs(10), |cache, body| {
        cache == "hit" && completed_30d(body) == 2
    })
    .await;
    assert_eq!(refreshed["estimation"]["overall"]["samples"], 2);

    // Reading your own write: a cached value older than Tm-Min-Position is not served.
    let position = app.create_and_complete(&token, task("three"), 60).await;
    let (_, fresh) = insights(&app, &token, Some(position)).await;
    assert_eq!(completed_30d(&fresh), 3);
    assert!(fresh["position"].as_u64().unwrap() >= position);

    let metrics = exposition(&app).await;
    assert!(
        metrics.contains(r#"taskmaster_insights_refreshes_total{outcome="stored"}"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"taskmaster_insights_cache_requests_total{outcome="hit"}"#));

    // Redis dies: answers keep coming, computed from Postgres, quickly, and say so.
    redis.kill();
    for _ in 0..5 {
        let started = Instant::now();
        let (cache, body) = insights(&app, &token, None).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(cache, "bypass");
        assert_eq!(completed_30d(&body), 3);
    }
    // Writes go on; the numbers from Postgres include them.
    let position = app.create_and_complete(&token, task("four"), 90).await;
    let started = Instant::now();
    let (cache, body) = insights(&app, &token, Some(position)).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(cache, "bypass");
    assert_eq!(completed_30d(&body), 4);
    assert_eq!(body["estimation"]["overall"]["samples"], 4);
    let metrics = exposition(&app).await;
    assert!(metrics.contains(r#"taskmaster_insights_cache_requests_total{outcome="bypass"} 6"#));

    // Redis is back (empty, on the same port): caching resumes.
    redis.restart();
    let (_, cached) = eventually(&app, &token, Duration::from_secs(15), |cache, _| {
        cache == "hit"
    })
    .await;
    assert_eq!(completed_30d(&cached), 4);

    // The worker survived the outage and refreshes again.
    app.create_and_complete(&token, task("five"), 60).await;
    eventually(&app, &token, Duration::from_secs(10), |cache, body| {
        cache == "hit" && completed_30d(body) == 5
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_users_insights_never_include_another_users_tasks() {
    let redis = RedisServer::start();
    let app = app_on(&redis, &[]).await;
    let alice = app.token("alice");
    let bob = app.token("bob");
    // Alice: five bugs that each took 40% longer than estimated.
    for i in 0..5 {
        let bug = json!({ "title": format!("bug {i}"), "estimate_minutes": 60, "tags": ["bug"] });
        app.create_and_complete(&alice, bug, 84).await;
    }
    // Bob: one task in progress, one open and overdue.
    let (started, _, _) = app.create_ok(&bob, "started").await;
    let start = app
        .http
        .post(app.url(&format!("/v1/tasks/{started}/start")))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 200);
    let overdue = app
        .create(
            &bob,
            json!({ "title": "late", "due_at": "2020-01-01T00:00:00Z" }),
        )
        .await;
    let position = overdue.json::<Value>().await.unwrap()["position"]
        .as_u64()
        .unwrap();

    let (_, mine) = insights(&app, &alice, Some(position)).await;
    assert_eq!(completed_30d(&mine), 5);
    assert_eq!(mine["completion_rate_30d"]["still_open"], 0);
    assert_eq!(mine["work_in_progress"]["total"], 0);
    assert_eq!(mine["overdue"], 0);
    assert_eq!(mine["estimation"]["by_tag"][0]["tag"], "bug");
    assert_eq!(mine["estimation"]["by_tag"][0]["bias_percent"], 40.0);
    let advice: Vec<&str> = mine["advice"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        advice
            .iter()
            .any(|a| a.starts_with("You underestimate tasks tagged bug by 40%")),
        "{advice:?}"
    );

    let (_, theirs) = insights(&app, &bob, Some(position)).await;
    assert_eq!(completed_30d(&theirs), 0);
    assert_eq!(theirs["completion_rate_30d"]["still_open"], 2);
    assert_eq!(theirs["work_in_progress"]["in_progress"], 1);
    assert_eq!(theirs["overdue"], 1);
    assert_eq!(theirs["estimation"]["overall"]["samples"], 0);
    assert!(theirs["advice"].as_array().unwrap().is_empty());

    // Each user's cached value is theirs alone.
    let (cache, mine_again) = insights(&app, &alice, None).await;
    assert_eq!(cache, "hit");
    assert_eq!(completed_30d(&mine_again), 5);
    app.stop().await;
}

#[tokio::test]
async fn insights_answer_even_when_redis_is_down_at_start_and_cache_once_it_comes_up() {
    let mut redis = RedisServer::reserve();
    let app = app_on(&redis, &[]).await;
    let token = app.token("carol");
    let position = app.create_and_complete(&token, task("done"), 30).await;
    let (cache, body) = insights(&app, &token, Some(position)).await;
    assert_eq!(cache, "bypass");
    assert_eq!(completed_30d(&body), 1);

    redis.restart();
    let (_, cached) = eventually(&app, &token, Duration::from_secs(15), |cache, _| {
        cache == "hit"
    })
    .await;
    assert_eq!(completed_30d(&cached), 1);
    app.stop().await;
}

#[tokio::test]
async fn insights_need_a_token_and_refuse_a_position_past_the_end_of_the_log() {
    let redis = RedisServer::start();
    let app = app_on(&redis, &[("TASKMASTER_READ_WAIT_MS", "300")]).await;
    let anonymous = app.http.get(app.url("/v1/insights")).send().await.unwrap();
    problem(anonymous, 401).await;

    let token = app.token("dave");
    let malformed = app
        .http
        .get(app.url("/v1/insights"))
        .bearer_auth(&token)
        .header("Tm-Min-Position", "soon")
        .send()
        .await
        .unwrap();
    problem(malformed, 400).await;

    let ahead = app
        .http
        .get(app.url("/v1/insights"))
        .bearer_auth(&token)
        .header("Tm-Min-Position", "1000000")
        .send()
        .await
        .unwrap();
    // Past the end of the log: refused at once, since waiting cannot reach it.
    let body = problem(ahead, 409).await;
    assert_eq!(body["type"], "/problems/position-past-end");
    assert_eq!(body["requested_position"], 1_000_000);

    // The document describes the answer, the score's definition and the header.
    let spec: Value = app.openapi().await;
    let ok = &spec["paths"]["/v1/insights"]["get"]["responses"]["200"];
    assert!(ok["headers"]["Tm-Cache"].is_object(), "{ok}");
    let schema = &spec["components"]["schemas"]["Insights"];
    let description = schema["description"].as_str().unwrap_or_default();
    assert!(description.contains("productivity_score"), "{schema}");
    for field in [
        "productivity_score",
        "completion_rate_7d",
        "estimation",
        "focus_hours",
        "advice",
        "position",
    ] {
        assert!(
            schema["properties"][field].is_object(),
            "{field} in {schema}"
        );
    }
}

#[tokio::test]
async fn erasing_a_user_drops_their_cached_insights() {
    let redis = RedisServer::start();
    let app = app_on(&redis, &[]).await;
    let token = app.token("erin");
    let position = app.create_and_complete(&token, task("mine"), 10).await;
    let (_, body) = insights(&app, &token, Some(position)).await;
    assert_eq!(completed_30d(&body), 1);
    let key = format!("taskmaster:{}:insights:v1:erin", app.prefix);
    assert!(redis.exists(&key).await);
    // The insights worker refreshes the user once their events go quiet; let that happen
    // first, so it cannot write the value back after the erasure removed it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !exposition(&app)
        .await
        .contains(r#"taskmaster_insights_refreshes_total{outcome="stored"}"#)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no insights refresh within 15 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let output = app
        .cli()
        .env("REDIS_URL", redis.url())
        .args(["erase-user", "erin"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!redis.exists(&key).await);
    let (cache, after) = insights(&app, &token, None).await;
    assert_ne!(cache, "bypass");
    assert_eq!(completed_30d(&after), 0);
}
