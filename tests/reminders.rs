//! Reminders over HTTP with the scheduler of the automation role, on the real services: a
//! reminder fires once as a `ReminderDue` event (in the history and on the live feed), two
//! schedulers fire it once, one that was down fires it late on recovery, a completed task's
//! reminder is dropped, a lead time moves with the due date, and bad reminders are refused.

mod common;

use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use common::{problem, test_settings, RunningApp, TestApp};
use futures::StreamExt;
use serde_json::{json, Value};
use taskmaster::Roles;

fn in_seconds(seconds: i64) -> String {
    (Utc::now() + chrono::Duration::seconds(seconds)).to_rfc3339_opts(SecondsFormat::Millis, true)
}

async fn created(app: &TestApp, token: &str, body: Value) -> String {
    let response = app.create(token, body).await;
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn history(app: &TestApp, token: &str, id: &str) -> Vec<Value> {
    app.history(token, id).await["items"]
        .as_array()
        .unwrap()
        .clone()
}

fn reminders_due(events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["event_type"] == "ReminderDue")
        .map(|e| e["data"].clone())
        .collect()
}

/// Waits (at most `within`) until the task's history holds `count` reminders due.
async fn until_fired(
    app: &TestApp,
    token: &str,
    id: &str,
    count: usize,
    within: u64,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(within);
    loop {
        let due = reminders_due(&history(app, token, id).await);
        if due.len() >= count {
            return due;
        }
        assert!(
            Instant::now() < deadline,
            "{id}: {} reminders fired, expected {count}",
            due.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn api_and_projector() -> Roles {
    Roles {
        api: true,
        projector: true,
        ..Roles::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_fires_once_on_the_feed_even_with_two_schedulers() {
    let app = TestApp::spawn().await;
    // A second scheduler (and runtime) on the same database and prefix.
    let second = RunningApp::start(
        &test_settings([
            ("DATABASE_URL", app.database_url().to_owned()),
            ("TASKMASTER_NATS_PREFIX", app.prefix.clone()),
        ]),
        Roles {
            automation: true,
            ..Roles::default()
        },
    )
    .await;
    let token = app.token("remy");
    let feed = app
        .http
        .get(app.url("/v1/events"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), 200);
    let id = created(
        &app,
        &token,
        json!({
            "title": "Call the bank",
            "due_at": in_seconds(3600 + 3),
            "reminders": [{"at": in_seconds(2)}, {"before_due_minutes": 60}]
        }),
    )
    .await;
    let fired = until_fired(&app, &token, &id, 2, 20).await;
    // Settle, then: each instant exactly once, on time.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let fired_again = reminders_due(&history(&app, &token, &id).await);
    assert_eq!(fired_again.len(), 2, "{fired_again:?}");
    assert_ne!(fired[0]["remind_at"], fired[1]["remind_at"]);
    assert!(fired.iter().all(|f| f.get("late").is_none()), "{fired:?}");

    // The live feed carried them.
    let mut stream = feed.bytes_stream();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.matches("event: ReminderDue").count() < 2 {
        assert!(Instant::now() < deadline, "feed: {seen}");
        if let Ok(Some(Ok(chunk))) =
            tokio::time::timeout(Duration::from_secs(1), stream.next()).await
        {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_missed_while_the_scheduler_was_down_fires_late_on_recovery() {
    let app =
        TestApp::spawn_roles(testkit::TestDatabase::planned(), api_and_projector(), &[]).await;
    let token = app.token("lena");
    let id = created(
        &app,
        &token,
        json!({"title": "Renew the passport", "reminders": [{"at": in_seconds(1)}]}),
    )
    .await;
    let done = created(
        &app,
        &token,
        json!({"title": "Already done", "reminders": [{"at": in_seconds(1)}]}),
    )
    .await;
    let complete = app
        .http
        .post(app.url(&format!("/v1/tasks/{done}/complete")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(complete.status(), 200);
    // Past the reminders' time and the five seconds of grace, with no scheduler running.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(reminders_due(&history(&app, &token, &id).await).is_empty());
    let scheduler = RunningApp::start(
        &test_settings([
            ("DATABASE_URL", app.database_url().to_owned()),
            ("TASKMASTER_NATS_PREFIX", app.prefix.clone()),
        ]),
        Roles {
            automation: true,
            ..Roles::default()
        },
    )
    .await;
    let fired = until_fired(&app, &token, &id, 1, 20).await;
    assert_eq!(fired[0]["late"], true, "{fired:?}");
    // The completed task's reminder was dropped.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(reminders_due(&history(&app, &token, &done).await).is_empty());
    scheduler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lead_time_moves_with_the_due_date_and_bad_reminders_are_refused() {
    let app =
        TestApp::spawn_roles(testkit::TestDatabase::planned(), api_and_projector(), &[]).await;
    let token = app.token("moss");
    let id = created(
        &app,
        &token,
        json!({"title": "Dentist", "due_at": "2030-05-01T10:00:00Z", "reminders": [{"before_due_minutes": 30}]}),
    )
    .await;
    let moved = app
        .http
        .patch(app.url(&format!("/v1/tasks/{id}")))
        .bearer_auth(&token)
        .json(&json!({"due_at": "2030-05-02T15:00:00Z"}))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), 200);
    let position = moved.json::<Value>().await.unwrap()["position"]
        .as_u64()
        .unwrap();
    let task: Value = app
        .http
        .get(app.url(&format!("/v1/tasks/{id}")))
        .bearer_auth(&token)
        .header("Tm-Min-Position", position.to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(task["next_reminder_at"], "2030-05-02T14:30:00Z");
    assert_eq!(task["reminders"], json!([{"before_due_minutes": 30}]));

    let eleven: Vec<Value> = (0..11).map(|m| json!({"before_due_minutes": m})).collect();
    for (body, why) in [
        (
            json!({"title": "x", "reminders": [{"at": "2020-01-01T00:00:00Z"}]}),
            "in the past",
        ),
        (
            json!({"title": "x", "reminders": [{"before_due_minutes": 10}]}),
            "no due date",
        ),
        (
            json!({"title": "x", "due_at": "2030-01-01T00:00:00Z", "reminders": eleven}),
            "eleven",
        ),
        (
            json!({"title": "x", "due_at": "2030-01-01T00:00:00Z", "reminders": [{"before_due_minutes": 600000}]}),
            "over a year",
        ),
    ] {
        let body = problem(app.create(&token, body).await, 422).await;
        let fields: Vec<&str> = body["errors"]
            .as_array()
            .map(|e| e.iter().filter_map(|e| e["field"].as_str()).collect())
            .unwrap_or_default();
        assert!(
            fields.iter().any(|f| f.starts_with("reminders")),
            "{why}: {body}"
        );
    }
    let past = app
        .http
        .patch(app.url(&format!("/v1/tasks/{id}")))
        .bearer_auth(&token)
        .json(&json!({"reminders": [{"at": "2021-01-01T00:00:00Z"}]}))
        .send()
        .await
        .unwrap();
    problem(past, 422).await;
}
