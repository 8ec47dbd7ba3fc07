//! End to end: completions over HTTP train a model in the ml role, the API serves its
//! predictions for drafts and open tasks, and a newly published version is served without a
//! restart.

mod common;

use std::time::{Duration, Instant};

use common::{problem, TestApp};
use serde_json::{json, Value};

async fn predict(app: &TestApp, token: &str, draft: Value) -> reqwest::Response {
    app.http
        .post(app.url("/v1/predictions"))
        .bearer_auth(token)
        .json(&draft)
        .send()
        .await
        .unwrap()
}

/// Polls until a draft prediction comes from at least `version`.
async fn prediction_from(app: &TestApp, token: &str, draft: Value, version: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let response = predict(app, token, draft.clone()).await;
        if response.status() == 200 {
            let body: Value = response.json().await.unwrap();
            if body["model_version"].as_u64().unwrap() >= version {
                return body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no prediction from model version {version} within 90 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn completions_train_a_model_whose_predictions_the_api_serves_and_hot_swaps() {
    let app = TestApp::spawn_with(&[("TASKMASTER_ML_RETRAIN_AFTER", "10")]).await;
    let token = app.token("nina");
    let report =
        json!({"title": "Write the weekly report", "estimate_minutes": 60, "tags": ["writing"]});
    let bug = json!({"title": "Fix the login bug", "estimate_minutes": 30, "tags": ["bug"]});

    // Before any model: a clear 503, never a made-up number; and bad drafts are refused.
    let none = predict(&app, &token, report.clone()).await;
    assert_eq!(none.headers()["retry-after"], "60");
    let body = problem(none, 503).await;
    assert_eq!(body["type"], "/problems/no-model-yet");
    assert!(body["detail"].as_str().unwrap().contains("completed"));
    problem(predict(&app, &token, json!({"title": ""})).await, 422).await;
    let anonymous = app
        .http
        .post(app.url("/v1/predictions"))
        .json(&report)
        .send()
        .await
        .unwrap();
    problem(anonymous, 401).await;

    // given nina's history: reports take twice her estimate, bugs take what she says
    for round in 0..20 {
        let (draft, actual) = if round % 2 == 0 {
            (report.clone(), 120)
        } else {
            (bug.clone(), 30)
        };
        app.create_and_complete(&token, draft, actual).await;
    }
    let (open, _, position) = app.create_ok(&token, "Write the monthly report").await;

    // then the ml role publishes a model, and the API predicts from it
    let first = prediction_from(&app, &token, report.clone(), 1).await;
    let version = first["model_version"].as_u64().unwrap();
    let report_minutes = first["effort_minutes"].as_u64().unwrap();
    let bug_minutes = prediction_from(&app, &token, bug.clone(), version).await["effort_minutes"]
        .as_u64()
        .unwrap();
    assert!(
        report_minutes >= 80,
        "reports ran 2x over their 60 min estimate: {report_minutes}"
    );
    assert!(bug_minutes <= 45, "bugs took their 30 min: {bug_minutes}");

    let task: Value = app
        .get_task(&token, &open, position)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(task["prediction"]["model_version"], version);
    assert!(task["prediction"]["effort_minutes"].as_u64().unwrap() >= 1);
    // Lists carry no prediction; done tasks neither.
    let listed: Value = app
        .http
        .get(app.url("/v1/tasks"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(listed["items"][0]["prediction"].is_null());

    // when another version is published (here: the same model again, as a release would)
    let client = async_nats::connect(testkit::nats_url()).await.unwrap();
    let naming = eventstore::Naming::new(&app.prefix).unwrap();
    let registry = ml::ModelRegistry::open(&async_nats::jetstream::new(client), &naming, 1)
        .await
        .unwrap();
    let current = registry.current().await.unwrap().unwrap();
    let published = registry.publish(current).await.unwrap();
    assert!(published.version > version);

    // then the running API serves it, without a restart
    let swapped = prediction_from(&app, &token, report, published.version).await;
    assert_eq!(swapped["model_version"], published.version);
    assert_eq!(swapped["effort_minutes"], first["effort_minutes"]);

    // and /metrics says which version is served, how it did, and that training published
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(&format!("taskmaster_model_version {}", published.version)),
        "{metrics}"
    );
    assert!(metrics.contains("taskmaster_model_holdout{metric=\"mae\"}"));
    assert!(metrics.contains("taskmaster_model_trainings_total{outcome=\"published\"}"));
}
