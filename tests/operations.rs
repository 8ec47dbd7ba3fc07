//! Operational endpoints and the OpenAPI document, end to end.

mod common;

use common::TestApp;
use serde_json::Value;

#[tokio::test]
async fn readiness_reports_nats_postgres_and_redis_separately() {
    let app = TestApp::spawn().await;
    let live = app.http.get(app.url("/health/live")).send().await.unwrap();
    assert_eq!(live.status(), 200);
    let ready = app.http.get(app.url("/health/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    for dependency in ["nats", "postgres", "redis"] {
        assert_eq!(body[dependency]["status"], "up", "{dependency}");
    }
}

#[tokio::test]
async fn readiness_says_degraded_when_redis_is_unreachable() {
    // Port 1 on loopback: nothing listens there.
    let app = TestApp::spawn_with(&[("REDIS_URL", "redis://127.0.0.1:1")]).await;
    let ready = app.http.get(app.url("/health/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["redis"]["status"], "down");
    assert!(body["redis"]["error"].is_string());
    assert_eq!(body["nats"]["status"], "up");
}

#[tokio::test]
async fn metrics_count_requests_commands_and_the_projection() {
    let app = TestApp::spawn().await;
    let token = app.token("judy");
    let (id, _, position) = app.create_ok(&token, "measured").await;
    assert_eq!(app.get_task(&token, &id, position).await.status(), 200);
    let response = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = response.text().await.unwrap();
    for expected in [
        r#"taskmaster_commands_total{command="CreateTask",outcome="appended"} 1"#,
        r#"taskmaster_http_requests_total{method="POST",route="/v1/tasks",status="201"} 1"#,
        r#"taskmaster_http_request_duration_seconds_count{method="GET",route="/v1/tasks/{id}"} 1"#,
        r#"taskmaster_projection_position{projection="tasks"}"#,
        r#"taskmaster_eventstore_append_duration_seconds_count{outcome="appended"} 1"#,
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
    // Sampled ones appear within a sampling interval: the lag of every partition, the dead
    // letters waiting, and the lag of the two durable consumers.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let sampled = [
        r#"taskmaster_projection_lag_events{projection="tasks",partition="0"} 0"#,
        r#"taskmaster_projection_lag_events{projection="tasks",partition="7"} 0"#,
        r#"taskmaster_dead_letters_pending{projection="tasks"} 0"#,
        r#"taskmaster_consumer_lag_events{consumer="insights"} 0"#,
        r#"taskmaster_consumer_lag_events{consumer="ml"} 0"#,
    ];
    loop {
        let text = app.metrics().await;
        let missing: Vec<&str> = sampled
            .iter()
            .copied()
            .filter(|m| !text.contains(m))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "missing {missing:?} in\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn every_operation_in_the_openapi_document_is_a_served_route_and_vice_versa() {
    let app = TestApp::spawn().await;
    let spec: Value = app.openapi().await;
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    let paths = spec["paths"].as_object().unwrap();
    let mut operations = Vec::new();
    for (path, item) in paths {
        for method in ["get", "post", "patch", "put", "delete"] {
            if item.get(method).is_some() {
                operations.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    operations.sort();
    let mut expected = vec![
        "GET /health/live",
        "GET /health/ready",
        "GET /metrics",
        "GET /openapi.json",
        "GET /v1/events",
        "GET /v1/insights",
        "POST /v1/predictions",
        "GET /v1/tasks",
        "POST /v1/tasks",
        "GET /v1/tasks/{id}",
        "PATCH /v1/tasks/{id}",
        "GET /v1/tasks/{id}/history",
        "POST /v1/tasks/{id}/start",
        "POST /v1/tasks/{id}/pause",
        "POST /v1/tasks/{id}/complete",
        "POST /v1/tasks/{id}/reopen",
        "POST /v1/tasks/{id}/archive",
        "POST /v1/tasks/{id}/cancel",
        "POST /v1/tasks/{id}/move",
        "POST /v1/tasks/parse",
        "GET /v1/calendar.ics",
        "GET /v1/calendar/tokens",
        "POST /v1/calendar/tokens",
        "DELETE /v1/calendar/tokens/{id}",
        "GET /v1/webhooks",
        "POST /v1/webhooks",
        "DELETE /v1/webhooks/{id}",
        "GET /v1/webhooks/{id}/failures",
        "POST /v1/webhooks/{id}/failures/{position}/redeliver",
    ];
    expected.sort();
    assert_eq!(operations, expected);

    // Each documented operation is routed: never the 404/405 of an unknown route.
    let id = uuid::Uuid::now_v7().to_string();
    for operation in &operations {
        let (method, path) = operation.split_once(' ').unwrap();
        let url = app.url(&path.replace("{id}", &id));
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let status = app
            .http
            .request(method, url)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        assert!(
            status != 404 && status != 405,
            "{operation} answered {status}"
        );
    }
}
