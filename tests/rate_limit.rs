//! Rate limiting end to end, on real Redis: per user and per client address, the 429 answer and
//! its headers, the window passing, and a Redis outage (own `redis-server`, killed) that leaves
//! requests served, counted and quick.

mod common;

use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use common::{header, problem, TestApp};
use reqwest::Response;
use serde_json::Value;

/// `GET /v1/tasks` as `token` (anonymous without one).
async fn list(app: &TestApp, token: Option<&str>) -> Response {
    let mut request = app.http.get(app.url("/v1/tasks"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

fn number(response: &Response, name: &str) -> u64 {
    header(response, name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .parse()
        .unwrap()
}

/// The value of one counter sample in an exposition, 0 when absent.
fn sample(exposition: &str, series: &str) -> u64 {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(series))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or(0)
}

fn decisions(exposition: &str, outcome: &str) -> u64 {
    sample(
        exposition,
        &format!("taskmaster_rate_limit_decisions_total{{outcome=\"{outcome}\"}}"),
    )
}

#[tokio::test]
async fn a_user_over_the_limit_gets_429_with_headers_other_users_do_not_and_the_window_passes() {
    let app = TestApp::spawn_with(&[
        ("TASKMASTER_RATE_LIMIT_USER", "2/2s"),
        ("TASKMASTER_RATE_LIMIT_IP", "0"),
    ])
    .await;
    let alice = app.token("alice");
    let bob = app.token("bob");

    let first = list(&app, Some(&alice)).await;
    assert_eq!(first.status(), 200);
    assert_eq!(number(&first, "ratelimit-limit"), 2);
    assert_eq!(number(&first, "ratelimit-remaining"), 1);
    assert!((1..=2).contains(&number(&first, "ratelimit-reset")));
    assert_eq!(
        header(&first, "ratelimit-policy").as_deref(),
        Some("2;w=2;burst=2;scope=user")
    );
    let second = list(&app, Some(&alice)).await;
    assert_eq!(second.status(), 200);
    assert_eq!(number(&second, "ratelimit-remaining"), 0);

    let refused = list(&app, Some(&alice)).await;
    let retry_after = number(&refused, "retry-after");
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(number(&refused, "ratelimit-limit"), 2);
    assert_eq!(number(&refused, "ratelimit-remaining"), 0);
    assert!(number(&refused, "ratelimit-reset") >= 1);
    let body = problem(refused, 429).await;
    assert_eq!(body["type"], "/problems/rate-limited");

    // Bob has his own quota; alice's refusal took nothing from it.
    let theirs = list(&app, Some(&bob)).await;
    assert_eq!(theirs.status(), 200);
    assert_eq!(number(&theirs, "ratelimit-remaining"), 1);

    // A refused request does not push the window on: after Retry-After alice is served.
    tokio::time::sleep(Duration::from_secs(retry_after) + Duration::from_millis(50)).await;
    let again = list(&app, Some(&alice)).await;
    assert_eq!(again.status(), 200);

    let metrics = app.metrics().await;
    assert_eq!(decisions(&metrics, "limited"), 1, "{metrics}");
    assert_eq!(decisions(&metrics, "allowed"), 4, "{metrics}");
    assert_eq!(decisions(&metrics, "unavailable"), 0, "{metrics}");
    app.stop().await;
}

#[tokio::test]
async fn an_address_limit_applies_to_unauthenticated_requests_and_not_to_operations() {
    let app = TestApp::spawn_with(&[
        ("TASKMASTER_RATE_LIMIT_USER", "0"),
        ("TASKMASTER_RATE_LIMIT_IP", "3/1m"),
    ])
    .await;
    // Token guessing: every attempt counts against the address, valid token or not.
    for remaining in [2, 1, 0] {
        let guess = app
            .http
            .get(app.url("/v1/tasks"))
            .bearer_auth("not-a-token")
            .send()
            .await
            .unwrap();
        assert_eq!(number(&guess, "ratelimit-remaining"), remaining);
        problem(guess, 401).await;
    }
    let anonymous = list(&app, None).await;
    assert!(number(&anonymous, "retry-after") >= 1);
    assert_eq!(
        header(&anonymous, "ratelimit-policy").as_deref(),
        Some("3;w=60;burst=3;scope=ip")
    );
    let body = problem(anonymous, 429).await;
    assert!(body["detail"].as_str().unwrap().contains("client address"));
    // A valid token from the same address is refused too: the limit is the address's.
    let token = app.token("mallory");
    problem(list(&app, Some(&token)).await, 429).await;

    // Operational routes are never limited and carry no RateLimit headers.
    for path in ["/health/live", "/health/ready", "/metrics", "/openapi.json"] {
        for _ in 0..3 {
            let response = app.http.get(app.url(path)).send().await.unwrap();
            assert!(response.status().as_u16() < 400, "{path}");
            assert!(header(&response, "ratelimit-limit").is_none(), "{path}");
        }
    }

    // The document says so: 429 on the limited routes, not on the operational ones.
    let spec: Value = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let limited = &spec["paths"]["/v1/tasks"]["post"]["responses"]["429"];
    assert!(limited["headers"]["Retry-After"].is_object(), "{limited}");
    assert!(
        limited["headers"]["RateLimit-Remaining"].is_object(),
        "{limited}"
    );
    assert!(
        limited["content"]["application/problem+json"].is_object(),
        "{limited}"
    );
    assert!(spec["paths"]["/v1/tasks/{id}"]["get"]["responses"]["429"].is_object());
    assert!(spec["paths"]["/health/live"]["get"]["responses"]["429"].is_null());
    assert!(spec["paths"]["/metrics"]["get"]["responses"]["429"].is_null());
    app.stop().await;
}

#[tokio::test]
async fn with_redis_dead_requests_are_served_unlimited_quickly_and_counted_then_limits_return() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let app = TestApp::spawn_with(&[
        ("REDIS_URL", url.as_str()),
        ("TASKMASTER_RATE_LIMIT_USER", "1/1m"),
        ("TASKMASTER_RATE_LIMIT_IP", "0"),
    ])
    .await;
    let token = app.token("dora");
    assert_eq!(list(&app, Some(&token)).await.status(), 200);
    problem(list(&app, Some(&token)).await, 429).await;

    // Redis dies: the limit cannot be enforced, so it is not; no request fails or waits.
    redis.kill();
    for _ in 0..5 {
        let started = Instant::now();
        let response = list(&app, Some(&token)).await;
        let elapsed = started.elapsed();
        assert_eq!(response.status(), 200);
        assert!(header(&response, "ratelimit-limit").is_none());
        // Bounded: the limiter's 250 ms at most, plus the query; far under a connect timeout.
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    }
    let metrics = app.metrics().await;
    assert_eq!(decisions(&metrics, "unavailable"), 5, "{metrics}");
    assert_eq!(
        sample(
            &metrics,
            "taskmaster_http_requests_total{method=\"GET\",route=\"/v1/tasks\",status=\"500\"}"
        ) + sample(
            &metrics,
            "taskmaster_http_requests_total{method=\"GET\",route=\"/v1/tasks\",status=\"503\"}"
        ),
        0
    );

    // Redis is back (empty, same port): limits are enforced again.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let response = list(&app, Some(&token)).await;
        assert!(response.status().as_u16() < 500);
        if response.status() == 429 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the limit was not enforced again within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_address_limit() {
    // The test client connects from loopback: here that is the proxy.
    let app = TestApp::spawn_with(&[
        ("TASKMASTER_RATE_LIMIT_USER", "0"),
        ("TASKMASTER_RATE_LIMIT_IP", "1/1m"),
        ("TASKMASTER_TRUSTED_PROXIES", "127.0.0.0/8,::1"),
    ])
    .await;
    let token = app.token("pat");
    let through = |client: &'static str| {
        app.http
            .get(app.url("/v1/tasks"))
            .bearer_auth(&token)
            .header("X-Forwarded-For", client)
            .send()
    };
    assert_eq!(through("203.0.113.1").await.unwrap().status(), 200);
    problem(through("203.0.113.1").await.unwrap(), 429).await;
    // Another client behind the same proxy is not held back by the first one.
    assert_eq!(through("203.0.113.2").await.unwrap().status(), 200);
    // What the client put left of the proxy's entry does not pick the key.
    problem(through("6.6.6.6, 203.0.113.2").await.unwrap(), 429).await;
    app.stop().await;
}
