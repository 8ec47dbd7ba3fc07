//! Webhooks end to end on the real services, with a receiver on loopback that checks every
//! signature: events arrive signed and in order per endpoint, a failing receiver gets the same
//! `webhook-id` on each retry, repeated failure makes a dead letter that can be redelivered,
//! filters by event type hold, and production's SSRF rules refuse inward URLs.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::{problem, TestApp};
use serde_json::{json, Value};

/// What the receiver saw: each request's `webhook-id`, type and task, in arrival order.
#[derive(Default)]
struct Seen {
    requests: Vec<(String, String, String)>,
    bad_signatures: usize,
}

/// A receiver on a free loopback port that answers 500 to the first `fail_first` requests
/// and then 204; it checks each signature with the secret once it knows it.
async fn receiver(fail_first: usize) -> (String, Arc<Mutex<Seen>>, Arc<Mutex<Option<String>>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let secret: Arc<Mutex<Option<String>>> = Arc::default();
    let app = axum::Router::new().route(
        "/hook",
        post({
            let (seen, secret) = (seen.clone(), secret.clone());
            move |headers: HeaderMap, body: Bytes| {
                let (seen, secret) = (seen.clone(), secret.clone());
                async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    let id = header("webhook-id");
                    let timestamp: i64 = header("webhook-timestamp").parse().unwrap_or(0);
                    let signature = header("webhook-signature");
                    let valid = secret.lock().unwrap().as_deref().is_some_and(|secret| {
                        webhooks::signature::verify(secret, &id, timestamp, &body, &signature)
                    });
                    let event: Value = serde_json::from_slice(&body).unwrap_or_default();
                    let mut seen = seen.lock().unwrap();
                    if !valid {
                        seen.bad_signatures += 1;
                    }
                    seen.requests.push((
                        id,
                        event["type"].as_str().unwrap_or_default().to_owned(),
                        event["data"]["task_id"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    ));
                    if seen.requests.len() <= fail_first {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::NO_CONTENT
                    }
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}/hook"), seen, secret)
}

fn snapshot(seen: &Arc<Mutex<Seen>>) -> Seen {
    let guard = seen.lock().unwrap();
    Seen {
        requests: guard.requests.clone(),
        bad_signatures: guard.bad_signatures,
    }
}

async fn register(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.http
        .post(app.url("/v1/webhooks"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn until<F: Fn(&Seen) -> bool>(seen: &Arc<Mutex<Seen>>, what: &str, done: F) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(&seen.lock().unwrap()) {
        assert!(
            Instant::now() < deadline,
            "{what}: {:?}",
            seen.lock().unwrap().requests
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_signed_in_order_and_a_retry_keeps_its_webhook_id() {
    let app = TestApp::spawn_with(&[("TASKMASTER_WEBHOOKS_RETRY_BASE_MS", "50")]).await;
    let token = app.token("wes");
    let (url, seen, secret) = receiver(2).await;
    let created = register(&app, &token, json!({"url": url})).await;
    assert_eq!(created.status(), 201);
    let endpoint: Value = created.json().await.unwrap();
    let key = endpoint["secret"].as_str().unwrap().to_owned();
    assert!(key.starts_with("whsec_"));
    *secret.lock().unwrap() = Some(key);

    let task = app.create(&token, json!({"title": "Ship it"})).await;
    let id = task.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for step in ["start", "pause", "complete"] {
        let response = app
            .http
            .post(app.url(&format!("/v1/tasks/{id}/{step}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    // Four events; the first two attempts failed and were retried.
    until(&seen, "four events delivered", |s| s.requests.len() >= 6).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = snapshot(&seen);
    assert_eq!(seen.bad_signatures, 0);
    let (first, _, _) = &seen.requests[0];
    assert!(
        seen.requests[..3].iter().all(|(w, _, _)| w == first),
        "the same id on each retry"
    );
    let mut delivered: Vec<(String, String)> = Vec::new();
    for (webhook_id, kind, task) in &seen.requests {
        assert_eq!(task, &id);
        if delivered.last().map(|(w, _)| w) != Some(webhook_id) {
            delivered.push((webhook_id.clone(), kind.clone()));
        }
    }
    let kinds: Vec<&str> = delivered.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(
        kinds,
        ["TaskCreated", "TaskStarted", "TaskPaused", "TaskCompleted"]
    );

    // Listed without the secret; deleted.
    let list: Value = app
        .http
        .get(app.url("/v1/webhooks"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(list["items"][0].get("secret").is_none());
    let gone = app
        .http
        .delete(app.url(&format!(
            "/v1/webhooks/{}",
            endpoint["id"].as_str().unwrap()
        )))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 204);
    // Another user cannot see or delete it.
    let other = app
        .http
        .delete(app.url(&format!(
            "/v1/webhooks/{}",
            endpoint["id"].as_str().unwrap()
        )))
        .bearer_auth(app.token("mallory"))
        .send()
        .await
        .unwrap();
    problem(other, 404).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failure_makes_a_dead_letter_that_redelivery_sends_again() {
    let app = TestApp::spawn_with(&[
        ("TASKMASTER_WEBHOOKS_RETRY_BASE_MS", "20"),
        ("TASKMASTER_WEBHOOKS_MAX_ATTEMPTS", "3"),
    ])
    .await;
    let token = app.token("dana");
    let (url, seen, secret) = receiver(3).await;
    let created = register(
        &app,
        &token,
        json!({"url": url, "event_types": ["TaskCreated"]}),
    )
    .await;
    assert_eq!(created.status(), 201);
    let endpoint: Value = created.json().await.unwrap();
    *secret.lock().unwrap() = Some(endpoint["secret"].as_str().unwrap().to_owned());
    let endpoint_id = endpoint["id"].as_str().unwrap().to_owned();

    let task = app.create(&token, json!({"title": "Flaky"})).await;
    let id = task.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Not wanted: only TaskCreated is.
    app.http
        .post(app.url(&format!("/v1/tasks/{id}/start")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    until(&seen, "three failed attempts", |s| s.requests.len() >= 3).await;
    let failures = |app: &TestApp| {
        let request = app
            .http
            .get(app.url(&format!("/v1/webhooks/{endpoint_id}/failures")))
            .bearer_auth(&token);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let failed = loop {
        let failed = failures(&app).await;
        if failed["items"].as_array().is_some_and(|i| !i.is_empty()) {
            break failed;
        }
        assert!(Instant::now() < deadline, "no dead letter: {failed}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let item = &failed["items"][0];
    assert_eq!(item["attempts"], 3);
    assert_eq!(item["last_status"], 500);
    let position = item["position"].as_i64().unwrap();
    let redeliver = app
        .http
        .post(app.url(&format!(
            "/v1/webhooks/{endpoint_id}/failures/{position}/redeliver"
        )))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(redeliver.status(), 202);
    until(&seen, "the redelivery", |s| s.requests.len() >= 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = snapshot(&seen);
    assert_eq!(seen.bad_signatures, 0);
    assert!(
        seen.requests
            .iter()
            .all(|(_, kind, _)| kind == "TaskCreated"),
        "filtered by type"
    );
    assert_eq!(seen.requests.len(), 4);
    assert!(failures(&app).await["items"].as_array().unwrap().is_empty());
    // Redelivering what is not failed is a 404.
    let again = app
        .http
        .post(app.url(&format!(
            "/v1/webhooks/{endpoint_id}/failures/{position}/redeliver"
        )))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    problem(again, 404).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_rules_refuse_inward_and_non_http_urls_and_unknown_event_types() {
    let app = TestApp::spawn_with(&[("TASKMASTER_WEBHOOKS_ALLOW_PRIVATE", "false")]).await;
    let token = app.token("sid");
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/",
        "http://[::1]/",
        "ftp://example.com/hook",
        "not a url",
    ] {
        let body = problem(register(&app, &token, json!({"url": url})).await, 422).await;
        assert_eq!(body["errors"][0]["field"], "url", "{url}: {body}");
    }
    let body = problem(
        register(
            &app,
            &token,
            json!({"url": "https://93.184.216.34/", "event_types": ["TaskExploded"]}),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "event_types");
    let list: Value = app
        .http
        .get(app.url("/v1/webhooks"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        list["items"].as_array().unwrap().is_empty(),
        "nothing was written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_holds_at_most_twenty_endpoints_and_malformed_ids_are_refused() {
    let app = TestApp::spawn().await;
    // This user creates no task, so nothing is ever delivered to loopback's discard port.
    let token = app.token("cap");
    for n in 0..20 {
        let created = register(
            &app,
            &token,
            json!({"url": format!("http://127.0.0.1:9/hook/{n}")}),
        )
        .await;
        assert_eq!(created.status(), 201, "endpoint {n}");
    }
    let body = problem(
        register(&app, &token, json!({"url": "http://127.0.0.1:9/hook/20"})).await,
        409,
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("20"), "{body}");
    // Another user is not limited by this one's endpoints.
    let other = register(
        &app,
        &app.token("free"),
        json!({"url": "http://127.0.0.1:9/other"}),
    )
    .await;
    assert_eq!(other.status(), 201);

    let id = uuid::Uuid::now_v7();
    for (path, status) in [
        ("/v1/webhooks/not-a-uuid/failures".to_owned(), 400),
        (format!("/v1/webhooks/{id}/failures"), 404),
    ] {
        let response = app
            .http
            .get(app.url(&path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        problem(response, status).await;
    }
    let response = app
        .http
        .post(app.url(&format!("/v1/webhooks/{id}/failures/-1/redeliver")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    problem(response, 400).await;
}
