//! Start dates and cancellation over HTTP, on the real services: `starts_at` separate from
//! `due_at`, the list's `available` filter, `POST /v1/tasks/{id}/cancel` with its refusals,
//! reopening a cancelled task, and `verify` clean afterwards.

mod common;

use common::{problem, TestApp};
use serde_json::{json, Value};

async fn post(app: &TestApp, token: &str, path: &str, body: Option<Value>) -> reqwest::Response {
    let request = app.http.post(app.url(path)).bearer_auth(token);
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    request.send().await.unwrap()
}

async fn ids_listed(app: &TestApp, token: &str, query: &str, position: u64) -> Vec<String> {
    let response = app
        .http
        .get(app.url(&format!("/v1/tasks?{query}")))
        .bearer_auth(token)
        .header("Tm-Min-Position", position.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{query}");
    let page: Value = response.json().await.unwrap();
    let mut ids: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

async fn created(app: &TestApp, token: &str, body: Value) -> (String, u64) {
    let response = app.create(token, body).await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    (
        body["id"].as_str().unwrap().to_owned(),
        body["position"].as_u64().unwrap(),
    )
}

#[tokio::test]
async fn a_start_date_is_kept_apart_from_the_due_date_and_drives_the_available_filter() {
    let app = TestApp::spawn().await;
    let token = app.token("sam");
    let (now, _) = created(&app, &token, json!({"title": "now"})).await;
    let (later, _) = created(
        &app,
        &token,
        json!({"title": "later", "starts_at": "2999-01-01T09:00:00Z",
               "due_at": "2999-02-01T17:00:00Z"}),
    )
    .await;
    let (past, _) = created(
        &app,
        &token,
        json!({"title": "begun", "starts_at": "2020-01-01T09:00:00Z"}),
    )
    .await;
    let (dropped, _) = created(&app, &token, json!({"title": "dropped"})).await;
    let cancel = post(&app, &token, &format!("/v1/tasks/{dropped}/cancel"), None).await;
    assert_eq!(cancel.status(), 200);
    let position = cancel.json::<Value>().await.unwrap()["position"]
        .as_u64()
        .unwrap();

    let task: Value = app
        .get_task(&token, &later, position)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(task["starts_at"], "2999-01-01T09:00:00Z");
    assert_eq!(task["due_at"], "2999-02-01T17:00:00Z");

    let mut available = vec![now.clone(), past.clone()];
    available.sort();
    assert_eq!(
        ids_listed(&app, &token, "available=true", position).await,
        available
    );
    assert_eq!(
        ids_listed(&app, &token, "available=false", position).await,
        vec![later.clone()]
    );

    // Moving the start date into the past makes it available; clearing it too.
    let moved = app
        .http
        .patch(app.url(&format!("/v1/tasks/{later}")))
        .bearer_auth(&token)
        .json(&json!({"starts_at": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), 200);
    let position = moved.json::<Value>().await.unwrap()["position"]
        .as_u64()
        .unwrap();
    assert!(ids_listed(&app, &token, "available=false", position)
        .await
        .is_empty());
    let history = app.history(&token, &later).await;
    assert_eq!(history["items"][1]["event_type"], "TaskUpdated");
    assert_eq!(history["items"][1]["event_version"], 3);
    assert_eq!(history["items"][1]["data"]["starts_at"], Value::Null);

    // Bad values name their field, and nothing is written.
    let refused = problem(
        app.create(&token, json!({"title": "x", "starts_at": "soon"}))
            .await,
        422,
    )
    .await;
    assert_eq!(refused["errors"][0]["field"], "starts_at", "{refused}");
    let refused = problem(
        app.http
            .get(app.url("/v1/tasks?available=maybe"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;
    assert!(refused.to_string().contains("available"), "{refused}");
    app.stop().await;
}

#[tokio::test]
async fn a_cancelled_task_keeps_its_reason_refuses_work_and_can_be_reopened() {
    let app = TestApp::spawn().await;
    let token = app.token("cat");
    let (id, _) = created(
        &app,
        &token,
        json!({"title": "maybe", "estimate_minutes": 30}),
    )
    .await;
    assert_eq!(
        post(&app, &token, &format!("/v1/tasks/{id}/start"), None)
            .await
            .status(),
        200
    );

    // A reason that is too long is refused before anything is appended.
    let long = problem(
        post(
            &app,
            &token,
            &format!("/v1/tasks/{id}/cancel"),
            Some(json!({"reason": "x".repeat(501)})),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(long["errors"][0]["field"], "reason", "{long}");
    let unknown = post(
        &app,
        &token,
        &format!("/v1/tasks/{id}/cancel"),
        Some(json!({"why": "typo"})),
    )
    .await;
    assert_eq!(unknown.status(), 422);

    let cancelled = post(
        &app,
        &token,
        &format!("/v1/tasks/{id}/cancel"),
        Some(json!({"reason": " plans changed "})),
    )
    .await;
    assert_eq!(cancelled.status(), 200);
    let body: Value = cancelled.json().await.unwrap();
    assert_eq!(body["version"], 3);
    let task: Value = app
        .get_task(&token, &id, body["position"].as_u64().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(task["status"], "cancelled");
    assert_eq!(task["cancel_reason"], "plans changed");
    assert!(task["cancelled_at"].is_string());
    assert!(task["started_at"].is_null(), "the work session is closed");
    assert!(task["completed_at"].is_null());
    assert!(task["actual_minutes"].is_null());
    assert!(task["prediction"].is_null());

    for action in ["start", "pause", "complete", "cancel"] {
        let refused = problem(
            post(&app, &token, &format!("/v1/tasks/{id}/{action}"), None).await,
            409,
        )
        .await;
        assert_eq!(refused["type"], "/problems/state-conflict", "{action}");
    }
    let listed = ids_listed(
        &app,
        &token,
        "status=cancelled",
        body["position"].as_u64().unwrap(),
    )
    .await;
    assert_eq!(listed, vec![id.clone()]);

    let reopened = post(&app, &token, &format!("/v1/tasks/{id}/reopen"), None).await;
    assert_eq!(reopened.status(), 200);
    let position = reopened.json::<Value>().await.unwrap()["position"]
        .as_u64()
        .unwrap();
    let task: Value = app
        .get_task(&token, &id, position)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(task["status"], "open");
    assert!(task["cancel_reason"].is_null());

    // A completed task cannot be cancelled; someone else's task is not found.
    let (done, _) = created(&app, &token, json!({"title": "done"})).await;
    assert_eq!(
        post(&app, &token, &format!("/v1/tasks/{done}/complete"), None)
            .await
            .status(),
        200
    );
    problem(
        post(&app, &token, &format!("/v1/tasks/{done}/cancel"), None).await,
        409,
    )
    .await;
    let other = app.token("dan");
    problem(
        post(&app, &other, &format!("/v1/tasks/{id}/cancel"), None).await,
        404,
    )
    .await;

    let history = app.history(&token, &id).await;
    let types: Vec<&str> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "TaskCreated",
            "TaskStarted",
            "TaskCancelled",
            "TaskReopened"
        ]
    );
    assert_eq!(history["items"][0]["event_version"], 5);
    assert_eq!(history["items"][2]["data"]["reason"], "plans changed");

    let verify = app.cli().arg("verify").output().unwrap();
    assert!(
        verify.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    app.stop().await;
}
