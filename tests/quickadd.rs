//! The quick-add corpus of `tests/fixtures/quickadd.json`: realistic phrases, each with a fixed
//! `now` and zone and the fields a person means by it (dates and times written local to the
//! zone, as a person checks them). Every case must be read exactly: title, due and start dates,
//! tags, priority, estimate, recurrence and the words reported as unparsed. The accuracy is
//! printed either way, and each miss with what was expected.
//!
//! The parser's own tests (`crates/domain/src/quickadd.rs` and its corpus in
//! `crates/domain/tests/`) pin the grammar rule by rule; this corpus is the view from outside.
//!
//! And quick add over HTTP, on the real services: `POST /v1/tasks/parse` previews a reading
//! without creating anything, `POST /v1/tasks` with `text` creates what it reads, and the
//! refusals name their field.

mod common;

use chrono::{DateTime, Datelike, NaiveDateTime, TimeZone, Timelike, Utc};
use common::{problem, TestApp};
use domain::quickadd;
use serde::Deserialize;
use serde_json::{json, Value};

const CORPUS: &str = include_str!("fixtures/quickadd.json");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    text: String,
    now: DateTime<Utc>,
    zone: String,
    expect: Expected,
}

/// What the text means; a field left out means none (no tags, nothing unparsed).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    title: String,
    /// Local to the case's zone.
    #[serde(default)]
    due: Option<NaiveDateTime>,
    /// Local to the case's zone.
    #[serde(default)]
    start: Option<NaiveDateTime>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    priority: Option<String>,
    #[serde(default)]
    estimate_minutes: Option<u32>,
    #[serde(default)]
    recurrence: Option<serde_json::Value>,
    #[serde(default)]
    unparsed: Vec<String>,
}

/// The fields of a reading, comparable and printable.
#[derive(Debug, PartialEq)]
struct Reading {
    title: String,
    due: Option<DateTime<Utc>>,
    start: Option<DateTime<Utc>>,
    tags: Vec<String>,
    priority: Option<String>,
    estimate_minutes: Option<u32>,
    recurrence: Option<serde_json::Value>,
    unparsed: Vec<String>,
}

fn utc(zone: chrono_tz::Tz, local: NaiveDateTime) -> DateTime<Utc> {
    zone.from_local_datetime(&local)
        .single()
        .unwrap_or_else(|| panic!("{local} is not one instant in {zone}"))
        .with_timezone(&Utc)
}

#[test]
fn every_phrase_of_the_corpus_is_read_as_a_person_means_it() {
    let cases: Vec<Case> = serde_json::from_str(CORPUS).expect("the corpus is a list of cases");
    assert!(
        cases.len() >= 150,
        "the corpus holds {} phrases",
        cases.len()
    );
    let mut misses = Vec::new();
    for case in &cases {
        let zone: chrono_tz::Tz = case.zone.parse().expect("an IANA zone");
        let expected = Reading {
            title: case.expect.title.clone(),
            due: case.expect.due.map(|d| utc(zone, d)),
            start: case.expect.start.map(|d| utc(zone, d)),
            tags: case.expect.tags.clone(),
            priority: case.expect.priority.clone(),
            estimate_minutes: case.expect.estimate_minutes,
            recurrence: case.expect.recurrence.clone(),
            unparsed: case.expect.unparsed.clone(),
        };
        let got = quickadd::parse(&case.text, case.now, zone);
        let got = Reading {
            title: got.title,
            due: got.due_at,
            start: got.starts_at,
            tags: got.tags,
            priority: got.priority.map(|p| p.as_str().to_owned()),
            estimate_minutes: got.estimate_minutes,
            recurrence: got
                .recurrence
                .map(|r| serde_json::to_value(r).expect("a recurrence serializes")),
            unparsed: got.unparsed,
        };
        if got != expected {
            misses.push(format!(
                "{:?} (now {}, {})\n  expected {expected:?}\n  got      {got:?}",
                case.text, case.now, case.zone
            ));
        }
    }
    let exact = cases.len() - misses.len();
    eprintln!(
        "quick-add corpus: {exact}/{} read exactly ({:.1}%)",
        cases.len(),
        100.0 * exact as f64 / cases.len() as f64
    );
    assert!(
        misses.is_empty(),
        "{} misses:\n{}",
        misses.len(),
        misses.join("\n")
    );
}

const RENT: &str = "Pay rent every month on the 1st at 9am #home !high ~30m";

async fn post(app: &TestApp, token: &str, path: &str, body: Value) -> reqwest::Response {
    app.http
        .post(app.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// A due date as the API writes it, in Paris.
fn paris(text: &str) -> DateTime<chrono_tz::Tz> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&chrono_tz::Europe::Paris)
}

#[tokio::test]
async fn parse_answers_how_a_line_reads_and_creates_nothing() {
    let app = TestApp::spawn().await;
    let token = app.token("quick_parse");
    let response = post(
        &app,
        &token,
        "/v1/tasks/parse",
        json!({"text": RENT, "time_zone": "Europe/Paris"}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let reading: Value = response.json().await.unwrap();
    assert_eq!(reading["title"], "Pay rent");
    assert_eq!(reading["tags"], json!(["home"]));
    assert_eq!(reading["priority"], "high");
    assert_eq!(reading["estimate_minutes"], 30);
    assert_eq!(
        reading["recurrence"],
        json!({"rule": "FREQ=MONTHLY;BYMONTHDAY=1", "mode": "fixed"})
    );
    assert_eq!(reading["unparsed"], json!([]));
    assert_eq!(reading["time_zone"], "Europe/Paris");
    assert_eq!(reading["starts_at"], Value::Null);
    let due = paris(reading["due_at"].as_str().unwrap());
    assert_eq!((due.day(), due.hour(), due.minute()), (1, 9, 0), "{due}");
    assert!(due > Utc::now());

    // Words that look like syntax but are not stay in the title and are listed; without a
    // zone the text is read in UTC.
    let reading: Value = post(
        &app,
        &token,
        "/v1/tasks/parse",
        json!({"text": "Call Bob !asap tomorrow at 5pm"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(reading["title"], "Call Bob !asap");
    assert_eq!(reading["unparsed"], json!(["!asap"]));
    assert_eq!(reading["time_zone"], "UTC");
    let due = DateTime::parse_from_rfc3339(reading["due_at"].as_str().unwrap()).unwrap();
    assert_eq!((due.hour(), due.minute()), (17, 0));

    // Nothing was created.
    let list: Value = app
        .http
        .get(app.url("/v1/tasks"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"], json!([]));

    for (body, field) in [
        (json!({"text": "   "}), "text"),
        (json!({"text": "x".repeat(201)}), "text"),
        (json!({"text": "a\u{7}b"}), "text"),
        (
            json!({"text": "ok", "time_zone": "Mars/Olympus Mons"}),
            "time_zone",
        ),
        (json!({"text": "ok", "title": "no"}), "title"),
        (json!({}), "text"),
    ] {
        let refused = post(&app, &token, "/v1/tasks/parse", body.clone()).await;
        let body = problem(refused, 422).await;
        assert_eq!(body["errors"][0]["field"], field, "{body}");
    }
    let at_the_limit = post(
        &app,
        &token,
        "/v1/tasks/parse",
        json!({"text": "x".repeat(200)}),
    )
    .await;
    assert_eq!(at_the_limit.status(), 200);
}

#[tokio::test]
async fn a_create_with_text_makes_the_task_the_text_reads_as() {
    let app = TestApp::spawn().await;
    let token = app.token("quick_create");
    let preview: Value = post(
        &app,
        &token,
        "/v1/tasks/parse",
        json!({"text": RENT, "time_zone": "Europe/Paris"}),
    )
    .await
    .json()
    .await
    .unwrap();
    let created = post(
        &app,
        &token,
        "/v1/tasks",
        json!({"text": RENT, "time_zone": "Europe/Paris", "description": "Standing order?"}),
    )
    .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    let task: Value = app
        .get_task(&token, id, created["position"].as_u64().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(task["title"], "Pay rent");
    assert_eq!(task["description"], "Standing order?");
    assert_eq!(task["tags"], json!(["home"]));
    assert_eq!(task["priority"], "high");
    assert_eq!(task["estimate_minutes"], 30);
    assert_eq!(task["time_zone"], "Europe/Paris");
    assert_eq!(task["recurrence"], preview["recurrence"]);
    assert_eq!(
        paris(task["due_at"].as_str().unwrap()),
        paris(preview["due_at"].as_str().unwrap())
    );

    // A start date and unread words, as a subtask.
    let child = post(
        &app,
        &token,
        "/v1/tasks",
        json!({"text": "Find the #bank statement starting tomorrow ~lots", "parent_id": id}),
    )
    .await;
    assert_eq!(child.status(), 201);
    let child: Value = child.json().await.unwrap();
    let child: Value = app
        .get_task(
            &token,
            child["id"].as_str().unwrap(),
            child["position"].as_u64().unwrap(),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(child["title"], "Find the statement ~lots");
    assert_eq!(child["tags"], json!(["bank"]));
    assert_eq!(child["parent_id"], id);
    let start = DateTime::parse_from_rfc3339(child["starts_at"].as_str().unwrap()).unwrap();
    assert_eq!((start.hour(), start.minute()), (0, 0));
}

#[tokio::test]
async fn title_and_text_exclude_each_other_and_what_the_text_carries_cannot_be_sent_beside_it() {
    let app = TestApp::spawn().await;
    let token = app.token("quick_refusals");
    for (body, field) in [
        (json!({"title": "Pay rent", "text": RENT}), "text"),
        (json!({"description": "neither"}), "title"),
        (json!({}), "title"),
        (json!({"text": RENT, "priority": "low"}), "priority"),
        (
            json!({"text": RENT, "due_at": "2030-01-01T00:00:00Z"}),
            "due_at",
        ),
        (json!({"text": RENT, "tags": []}), "tags"),
        (
            json!({"text": RENT, "recurrence": {"rule": "FREQ=DAILY"}}),
            "recurrence",
        ),
        // Present is present, even as null: each shape refuses the other's fields.
        (json!({"text": RENT, "priority": null}), "priority"),
        (json!({"title": "Pay rent", "text": null}), "text"),
        (json!({"title": null}), "title"),
        (json!({"title": "Pay rent", "tags": null}), "tags"),
        (json!({"text": "   "}), "text"),
        (json!({"text": "x".repeat(201)}), "text"),
        (json!({"text": "ok", "texts": "typo"}), "texts"),
        (json!({"text": "ok", "time_zone": "nowhere"}), "time_zone"),
        // Read, then refused like the same field sent alone: a due date past 9999.
        (json!({"text": "Far away in 9000 years"}), "text"),
    ] {
        let refused = post(&app, &token, "/v1/tasks", body.clone()).await;
        let answer = problem(refused, 422).await;
        assert_eq!(answer["errors"][0]["field"], field, "{body} → {answer}");
    }
    // A text that is all syntax keeps itself as the title.
    let created = post(&app, &token, "/v1/tasks", json!({"text": "tomorrow #home"})).await;
    assert_eq!(created.status(), 201);
}

#[tokio::test]
async fn the_document_states_both_shapes_of_a_create_and_the_limits_of_text() {
    let app = TestApp::spawn().await;
    let spec = app.openapi().await;
    let body =
        &spec["paths"]["/v1/tasks"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    let body = match body["$ref"].as_str() {
        Some(reference) => &spec["components"]["schemas"][reference.rsplit('/').next().unwrap()],
        None => body,
    };
    let shapes = body["oneOf"].as_array().expect("oneOf the two shapes");
    assert_eq!(shapes.len(), 2, "{body}");
    let text = &spec["components"]["schemas"]["QuickAddText"];
    assert_eq!(text["maxLength"], 200);
    assert_eq!(text["minLength"], 1);
    assert!(spec["paths"]["/v1/tasks/parse"]["post"].is_object());
}
