//! Repeating tasks and cascades over HTTP, carried out by the automation runtime on the real
//! services: the next occurrence (with its subtasks) once per finished occurrence, series that
//! end, completing a parent's subtree with `cascade`, two runtimes and a restart issuing each
//! command once, the refusals of bad rules, and `verify` clean afterwards.

mod common;

use std::time::{Duration, Instant};

use common::{problem, test_settings, RunningApp, TestApp};
use serde_json::{json, Value};
use taskmaster::Roles;

async fn post(app: &TestApp, token: &str, path: &str, body: Value) -> reqwest::Response {
    app.http
        .post(app.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn created(app: &TestApp, token: &str, body: Value) -> String {
    let response = app.create(token, body).await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

async fn complete(app: &TestApp, token: &str, id: &str, body: Value) -> u64 {
    let response = post(app, token, &format!("/v1/tasks/{id}/complete"), body).await;
    assert_eq!(response.status(), 200, "completing {id}");
    response.json::<Value>().await.unwrap()["position"]
        .as_u64()
        .unwrap()
}

async fn list(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let response = app
        .http
        .get(app.url(&format!("/v1/tasks?{query}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{query}");
    let page: Value = response.json().await.unwrap();
    page["items"].as_array().unwrap().clone()
}

/// Reads a task once the read model has it (the projection follows the log).
async fn get(app: &TestApp, token: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = app
            .http
            .get(app.url(&format!("/v1/tasks/{id}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        if response.status() == 200 || Instant::now() > deadline {
            assert_eq!(response.status(), 200, "reading {id}");
            return response.json().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn history(app: &TestApp, token: &str, id: &str) -> Vec<Value> {
    app.history(token, id).await["items"]
        .as_array()
        .unwrap()
        .clone()
}

/// Polls `query` until it lists `count` tasks (within 15 s), and returns them.
async fn until_listed(app: &TestApp, token: &str, query: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let items = list(app, token, query).await;
        if items.len() >= count {
            return items;
        }
        assert!(
            Instant::now() < deadline,
            "{query}: {} tasks after 15 s, expected {count}",
            items.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sum of a counter's samples whose labels contain every one of `labels`.
fn counter(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until the automation runtime has reacted `count` times with `automation`.
async fn until_reactions(app: &TestApp, automation: &str, count: f64) {
    let label = format!("automation=\"{automation}\"");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let metrics = app.metrics().await;
        let done = counter(
            &metrics,
            "taskmaster_automation_reactions_total",
            &[&label, "outcome=\"done\""],
        );
        if done >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{automation}: {done} reactions after 15 s, expected {count}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn count_of(events: &[Value], event_type: &str) -> usize {
    events
        .iter()
        .filter(|e| e["event_type"] == event_type)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_occurrence_brings_the_next_one_with_its_subtasks_once() {
    let app = TestApp::spawn().await;
    let token = app.token("rita");
    // Monday 4 March 2030 at 09:00 in Paris; weekly on Mondays.
    let first = created(
        &app,
        &token,
        json!({
            "title": "Weekly review",
            "due_at": "2030-03-04T08:00:00Z",
            "starts_at": "2030-03-04T07:00:00Z",
            "time_zone": "Europe/Paris",
            "priority": "high",
            "estimate_minutes": 45,
            "tags": ["work", "ritual"],
            "recurrence": {"rule": "FREQ=WEEKLY;BYDAY=MO", "mode": "fixed"}
        }),
    )
    .await;
    let inbox = created(
        &app,
        &token,
        json!({"title": "Empty the inbox", "parent_id": first}),
    )
    .await;
    let _mail = created(&app, &token, json!({"title": "Mail", "parent_id": inbox})).await;
    let _notes = created(
        &app,
        &token,
        json!({"title": "Read notes", "parent_id": first}),
    )
    .await;

    let read = get(&app, &token, &first).await;
    assert_eq!(
        read["recurrence"],
        json!({"rule": "FREQ=WEEKLY;BYDAY=MO", "mode": "fixed"})
    );
    assert_eq!(read["series"], json!({"id": first, "occurrence": 1}));

    complete(&app, &token, &first, json!({"cascade": true})).await;
    let series = until_listed(&app, &token, &format!("series={first}"), 2).await;
    let next = series
        .iter()
        .find(|t| t["series"]["occurrence"] == 2)
        .expect("occurrence 2");
    assert_eq!(next["title"], "Weekly review");
    assert_eq!(next["status"], "open");
    assert_eq!(next["priority"], "high");
    assert_eq!(next["estimate_minutes"], 45);
    assert_eq!(next["tags"], json!(["work", "ritual"]));
    assert_eq!(next["due_at"], "2030-03-11T08:00:00Z");
    assert_eq!(
        next["starts_at"], "2030-03-11T07:00:00Z",
        "an hour before, as before"
    );
    assert_eq!(next["series"]["id"], first.as_str());
    let next_id = next["id"].as_str().unwrap().to_owned();

    // Its subtasks came along, open, in the same shape.
    let subtree = until_listed(&app, &token, &format!("subtree={next_id}"), 4).await;
    let mut titles: Vec<&str> = subtree
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    titles.sort();
    assert_eq!(
        titles,
        ["Empty the inbox", "Mail", "Read notes", "Weekly review"]
    );
    assert!(subtree
        .iter()
        .filter(|t| t["id"] != next_id.as_str())
        .all(|t| t["status"] == "open"));
    let copied_inbox = subtree
        .iter()
        .find(|t| t["title"] == "Empty the inbox")
        .unwrap();
    assert_eq!(copied_inbox["parent_id"], next_id.as_str());
    let copied_mail = subtree.iter().find(|t| t["title"] == "Mail").unwrap();
    assert_eq!(copied_mail["parent_id"], copied_inbox["id"]);

    // The history links the occurrences.
    let events = history(&app, &token, &next_id).await;
    assert_eq!(events[0]["data"]["series"]["series_id"], first.as_str());
    assert_eq!(events[0]["data"]["series"]["occurrence"], 2);

    // Reopening and completing occurrence 1 again does not fork the series.
    let reopened = post(
        &app,
        &token,
        &format!("/v1/tasks/{first}/reopen"),
        json!({}),
    )
    .await;
    assert_eq!(reopened.status(), 200);
    complete(&app, &token, &first, json!({"cascade": true})).await;
    until_reactions(&app, "recurrence", 2.0).await;
    let series = list(&app, &token, &format!("series={first}")).await;
    assert_eq!(series.len(), 2, "still one occurrence 2: {series:?}");
    let subtree = list(&app, &token, &format!("subtree={next_id}")).await;
    assert_eq!(subtree.len(), 4, "its subtasks copied once");
    app.assert_verify_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_brings_the_next_occurrence_too_and_a_count_ends_the_series() {
    let app = TestApp::spawn().await;
    let token = app.token("carl");
    let first = created(
        &app,
        &token,
        json!({
            "title": "Stretch",
            "due_at": "2026-05-04T06:00:00Z",
            "time_zone": "UTC",
            "recurrence": {"rule": "FREQ=DAILY;COUNT=2", "mode": "after_completion"}
        }),
    )
    .await;
    let cancelled = post(
        &app,
        &token,
        &format!("/v1/tasks/{first}/cancel"),
        json!({}),
    )
    .await;
    assert_eq!(cancelled.status(), 200);
    let series = until_listed(&app, &token, &format!("series={first}"), 2).await;
    let second = series
        .iter()
        .find(|t| t["series"]["occurrence"] == 2)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    complete(&app, &token, &second, json!({})).await;
    until_reactions(&app, "recurrence", 2.0).await;
    let series = list(&app, &token, &format!("series={first}")).await;
    assert_eq!(series.len(), 2, "COUNT=2: the series ended");
    app.assert_verify_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completing_a_parent_with_cascade_completes_each_open_subtask_exactly_once() {
    let app = TestApp::spawn().await;
    let token = app.token("cass");
    let parent = created(&app, &token, json!({"title": "Move house"})).await;
    let van = created(
        &app,
        &token,
        json!({"title": "Book a van", "parent_id": parent}),
    )
    .await;
    let quote = created(
        &app,
        &token,
        json!({"title": "Get quotes", "parent_id": van}),
    )
    .await;
    let boxes = created(
        &app,
        &token,
        json!({"title": "Buy boxes", "parent_id": parent}),
    )
    .await;
    complete(&app, &token, &boxes, json!({})).await;
    let other = created(&app, &token, json!({"title": "Unrelated"})).await;

    // Without cascade: a 409 naming the open subtask.
    let refused = post(
        &app,
        &token,
        &format!("/v1/tasks/{parent}/complete"),
        json!({}),
    )
    .await;
    let body = problem(refused, 409).await;
    assert_eq!(body["open_subtasks"], json!([van]));

    complete(&app, &token, &parent, json!({"cascade": true})).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let done = list(&app, &token, &format!("subtree={parent}&status=completed")).await;
        if done.len() == 4 {
            break;
        }
        assert!(Instant::now() < deadline, "cascade incomplete: {done:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for id in [&parent, &van, &quote, &boxes] {
        let events = history(&app, &token, id).await;
        assert_eq!(count_of(&events, "TaskCompleted"), 1, "{id} completed once");
    }
    assert_eq!(get(&app, &token, &other).await["status"], "open");
    app.assert_verify_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runtimes_and_a_restart_issue_each_next_occurrence_once() {
    // The first instance runs no automation: its completions wait in the log.
    let app = TestApp::spawn_roles(
        testkit::TestDatabase::planned(),
        Roles {
            api: true,
            projector: true,
            ..Roles::default()
        },
        &[],
    )
    .await;
    let token = app.token("tess");
    let mut firsts = Vec::new();
    for n in 0..12 {
        let id = created(
            &app,
            &token,
            json!({
                "title": format!("Chore {n}"),
                "due_at": "2026-06-01T09:00:00Z",
                "recurrence": {"rule": "FREQ=DAILY"}
            }),
        )
        .await;
        firsts.push(id);
    }
    // Two runtimes on the same database and prefix; each starts at the consumer's position,
    // created when the first one starts.
    let runtime = || {
        test_settings([
            ("DATABASE_URL", app.database_url().to_owned()),
            ("TASKMASTER_NATS_PREFIX", app.prefix.clone()),
        ])
    };
    let only_automation = Roles {
        automation: true,
        ..Roles::default()
    };
    let one = RunningApp::start(&runtime(), only_automation).await;
    let two = RunningApp::start(&runtime(), only_automation).await;
    for id in &firsts[..6] {
        complete(&app, &token, id, json!({})).await;
    }
    // One runtime stops (a restart), completions go on meanwhile, then it comes back.
    one.stop().await;
    for id in &firsts[6..] {
        complete(&app, &token, id, json!({})).await;
    }
    let one = RunningApp::start(&runtime(), only_automation).await;
    for id in &firsts {
        let series = until_listed(&app, &token, &format!("series={id}"), 2).await;
        assert_eq!(series.len(), 2);
    }
    // Settle, then check nothing was created twice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = list(&app, &token, "limit=200").await;
    assert_eq!(all.len(), 24, "12 series of 2 occurrences");
    one.stop().await;
    two.stop().await;
    app.assert_verify_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rules_are_refused_naming_the_field_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let token = app.token("bart");
    let cases = [
        (json!({"rule": "FREQ=SOMETIMES"}), "recurrence.rule"),
        (json!({"rule": "FREQ=HOURLY"}), "recurrence.rule"),
        (
            json!({"rule": "FREQ=DAILY;BYHOUR=1,2,3,4"}),
            "recurrence.rule",
        ),
        (
            json!({"rule": "DTSTART:20260101T000000Z\nRRULE:FREQ=DAILY"}),
            "recurrence.rule",
        ),
        (
            json!({"rule": "FREQ=WEEKLY;BYDAY=MO", "mode": "after_completion"}),
            "recurrence.rule",
        ),
        (
            json!({"rule": "FREQ=DAILY", "mode": "sometimes"}),
            "recurrence.mode",
        ),
        (
            json!({"rule": "FREQ=DAILY;UNTIL=20200101T000000Z"}),
            "recurrence.rule",
        ),
    ];
    for (recurrence, field) in cases {
        let response = app
            .create(
                &token,
                json!({"title": "Repeat", "recurrence": recurrence.clone()}),
            )
            .await;
        let body = problem(response, 422).await;
        let fields: Vec<&str> = body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["field"].as_str())
            .collect();
        assert!(fields.contains(&field), "{recurrence}: {body}");
    }
    assert!(list(&app, &token, "").await.is_empty());

    // Without a due date a series starts at the end of its first day.
    let id = created(
        &app,
        &token,
        json!({"title": "Daily", "time_zone": "UTC", "recurrence": {"rule": "FREQ=DAILY"}}),
    )
    .await;
    let task = get(&app, &token, &id).await;
    assert!(
        task["due_at"].as_str().unwrap().ends_with("T23:59:59Z"),
        "{task}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_automation_dead_letter_is_listed_retried_after_a_fix_and_discarded() {
    // No automation role: the completion below is never reacted to, as if the runtime had
    // given up on it.
    let app = TestApp::spawn_roles(
        testkit::TestDatabase::planned(),
        Roles {
            api: true,
            projector: true,
            ..Roles::default()
        },
        &[],
    )
    .await;
    let token = app.token("dora");
    let first = created(
        &app,
        &token,
        json!({"title": "Backup", "due_at": "2030-01-07T09:00:00Z", "recurrence": {"rule": "FREQ=WEEKLY"}}),
    )
    .await;
    let position = complete(&app, &token, &first, json!({})).await;
    let pool = sqlx::PgPool::connect(app.database_url()).await.unwrap();
    sqlx::query(
        "INSERT INTO automation_dead_letters
             (automation, position, owner_id, task_id, event_type, error, attempts)
         VALUES ('recurrence', $1, 'dora', $2::uuid, 'TaskCompleted', 'nats: timed out', 10)",
    )
    .bind(position as i64)
    .bind(&first)
    .execute(&pool)
    .await
    .unwrap();
    let run = |args: &[&str]| {
        let output = app.cli().args(args).output().unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr),
        )
    };
    let (ok, listed) = run(&["automation", "dead-letters", "list"]);
    assert!(ok, "{listed}");
    assert!(
        listed.contains("recurrence") && listed.contains("nats: timed out"),
        "{listed}"
    );

    let (ok, retried) = run(&["automation", "dead-letters", "retry"]);
    assert!(ok, "{retried}");
    assert!(retried.contains("1 went through"), "{retried}");
    let series = until_listed(&app, &token, &format!("series={first}"), 2).await;
    assert_eq!(series.len(), 2);
    let (_, listed) = run(&["automation", "dead-letters", "list"]);
    assert!(listed.contains("no automation dead letters"), "{listed}");
    // Retrying again finds nothing; discarding what is not there is an error naming it.
    let (ok, again) = run(&["automation", "dead-letters", "retry"]);
    assert!(ok && again.contains("0 went through"), "{again}");
    let (ok, refused) = run(&[
        "automation",
        "dead-letters",
        "discard",
        "--automation",
        "recurrence",
        "--position",
        &position.to_string(),
    ]);
    assert!(!ok);
    assert!(
        refused.contains("no recurrence dead letter at position"),
        "{refused}"
    );
    app.assert_verify_clean();
}
