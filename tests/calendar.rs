//! The calendar feed end to end, on the real services: feed tokens minted, listed and revoked
//! over HTTP; `GET /v1/calendar.ics` parsed by an outside parser (the PyPI `icalendar`
//! package, pinned and installed by `.ci/run`) with every field checked; a revoked token
//! reads nothing; one user's token never shows another's tasks.
//!
//! `icalendar` comes from `TASKMASTER_TEST_ICALENDAR_DIR` (a `pip install --target` directory)
//! or else from the `python3` on `PATH`; the test fails, never skips, when it is missing.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{problem, TestApp};
use serde_json::{json, Value};

/// The release `.ci/run` installs.
const ICALENDAR_VERSION: &str = "7.3.0";

/// Reads an iCalendar object on stdin with `icalendar` and prints, as JSON, the calendar's
/// properties, the parser's complaints, and each VTODO's properties decoded (instants in UTC).
const PARSE: &str = r#"
import datetime, json, sys
import icalendar

def utc(value):
    """An instant in UTC (`…Z`), or a floating wall-clock time as it is (no `Z`)."""
    if value is None:
        return None
    if not isinstance(value, datetime.datetime):
        return "not a date-time: %r" % (value,)
    if value.tzinfo is None:
        return value.strftime("%Y-%m-%dT%H:%M:%S")
    return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

calendar = icalendar.Calendar.from_ical(sys.stdin.buffer.read())
errors = [[c.name, str(e)] for c in calendar.walk() for e in c.errors]
todos = []
for todo in calendar.walk("VTODO"):
    related = todo.get("RELATED-TO")
    categories = todo.get("CATEGORIES")
    todos.append({
        "uid": str(todo.get("UID")),
        "dtstamp": utc(todo.decoded("DTSTAMP", None)),
        "created": utc(todo.decoded("CREATED", None)),
        "last_modified": utc(todo.decoded("LAST-MODIFIED", None)),
        "summary": str(todo.get("SUMMARY")),
        "description": None if "DESCRIPTION" not in todo else str(todo.get("DESCRIPTION")),
        "dtstart": utc(todo.decoded("DTSTART", None)),
        "due": utc(todo.decoded("DUE", None)),
        "rrule": None if "RRULE" not in todo else todo.get("RRULE").to_ical().decode(),
        "related_to": None if related is None else str(related),
        "reltype": None if related is None else related.params.get("RELTYPE"),
        "status": str(todo.get("STATUS")),
        "priority": todo.decoded("PRIORITY", None),
        "percent_complete": todo.decoded("PERCENT-COMPLETE", None),
        "categories": [] if categories is None else [str(c) for c in categories.cats],
    })
print(json.dumps({
    "icalendar": icalendar.__version__,
    "version": str(calendar.get("VERSION")),
    "prodid": str(calendar.get("PRODID")),
    "name": str(calendar.get("NAME")),
    "errors": errors,
    "todos": todos,
}))
"#;

/// `python3` with `icalendar` on its path, or a failure saying how to install it.
fn python() -> Command {
    let mut command = Command::new("python3");
    if let Some(dir) = std::env::var_os("TASKMASTER_TEST_ICALENDAR_DIR") {
        command.env("PYTHONPATH", dir);
    }
    command
}

fn require_icalendar() {
    let install = format!(
        "the calendar test parses the feed with the PyPI package icalendar {ICALENDAR_VERSION}: \
         install it with `python3 -m pip install icalendar=={ICALENDAR_VERSION}` (or run .ci/run, \
         which puts it beside the build cache and sets TASKMASTER_TEST_ICALENDAR_DIR)"
    );
    let output = python()
        .args(["-c", "import icalendar; print(icalendar.__version__)"])
        .output()
        .unwrap_or_else(|error| panic!("python3 cannot be run ({error}): {install}"));
    let version = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && version.trim() == ICALENDAR_VERSION,
        "icalendar {ICALENDAR_VERSION} is needed, found {:?} {}: {install}",
        version.trim(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

/// The feed as `icalendar` reads it.
fn parse(ics: &str) -> Value {
    let mut child = python()
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(ics.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "icalendar could not read the feed: {}\n{ics}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

async fn post(app: &TestApp, token: &str, path: &str, body: Value) -> reqwest::Response {
    app.http
        .post(app.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Creates a task and returns its id.
async fn created(app: &TestApp, token: &str, body: Value) -> String {
    let response = app.create(token, body).await;
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Runs a transition (`start`, `complete`…) and returns its position.
async fn transition(app: &TestApp, token: &str, id: &str, name: &str, body: Value) -> u64 {
    let response = post(app, token, &format!("/v1/tasks/{id}/{name}"), body).await;
    assert_eq!(response.status(), 200, "{name} {id}");
    response.json::<Value>().await.unwrap()["position"]
        .as_u64()
        .unwrap()
}

/// Waits until the read model has applied `position` (the feed itself takes no
/// `Tm-Min-Position`: calendar clients never send one).
async fn caught_up(app: &TestApp, token: &str, position: u64) {
    let response = app
        .http
        .get(app.url("/v1/tasks?limit=1"))
        .bearer_auth(token)
        .header("Tm-Min-Position", position.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// Mints a feed token and returns the answer.
async fn mint(app: &TestApp, token: &str, body: Option<Value>) -> reqwest::Response {
    let mut request = app
        .http
        .post(app.url("/v1/calendar/tokens"))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

async fn feed(app: &TestApp, query: &str) -> reqwest::Response {
    app.http
        .get(app.url(&format!("/v1/calendar.ics{query}")))
        .send()
        .await
        .unwrap()
}

/// The feed of `feed_path`, asserting a 200 calendar.
async fn feed_text(app: &TestApp, feed_path: &str) -> String {
    let response = app.http.get(app.url(feed_path)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        common::header(&response, "content-type").as_deref(),
        Some("text/calendar; charset=utf-8")
    );
    assert_eq!(
        common::header(&response, "cache-control").as_deref(),
        Some("private, no-cache")
    );
    response.text().await.unwrap()
}

fn todo<'a>(parsed: &'a Value, uid: &str) -> &'a Value {
    parsed["todos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["uid"] == uid)
        .unwrap_or_else(|| panic!("no VTODO {uid} in {parsed}"))
}

fn uids(parsed: &Value) -> Vec<String> {
    let mut uids: Vec<String> = parsed["todos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["uid"].as_str().unwrap().to_owned())
        .collect();
    uids.sort();
    uids
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[tokio::test]
async fn the_feed_of_unfinished_tasks_parses_with_icalendar_and_carries_every_field() {
    require_icalendar();
    let app = TestApp::spawn().await;
    let token = app.token("cal_ann");

    let minted = mint(&app, &token, Some(json!({"label": "  phone  "}))).await;
    assert_eq!(minted.status(), 201);
    let minted: Value = minted.json().await.unwrap();
    let secret = minted["token"].as_str().unwrap();
    assert_eq!(secret.len(), 43, "{minted}");
    assert_eq!(minted["label"], "phone");
    let feed_path = minted["feed_path"].as_str().unwrap().to_owned();
    assert_eq!(feed_path, format!("/v1/calendar.ics?token={secret}"));

    // The list shows it, never its secret.
    let list = app
        .http
        .get(app.url("/v1/calendar/tokens"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    let list: Value = list.json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["id"], minted["id"]);
    assert_eq!(list["items"][0]["label"], "phone");
    assert_eq!(list["items"][0]["last_used_at"], Value::Null);
    assert!(!list.to_string().contains(secret));

    // A parent due and starting, urgent, tagged, with a description that needs escaping and
    // a title long enough (and non-ASCII enough) to be folded.
    let description = "Boxes: kitchen; books, then the rest.\nKeys back by noon \\ no later.";
    let title = format!("Move house — déménagement {}", "très ".repeat(20));
    let parent = created(
        &app,
        &token,
        json!({
            "title": title,
            "description": description,
            "priority": "urgent",
            "due_at": "2030-03-31T17:00:00+02:00",
            "starts_at": "2030-03-01T08:00:00Z",
            "tags": ["home", "big, heavy"],
        }),
    )
    .await;
    // Its subtasks: one completed, one cancelled, one open (so 1 of 2 that will be done).
    let packed = created(
        &app,
        &token,
        json!({"title": "Pack books", "parent_id": parent, "priority": "high"}),
    )
    .await;
    let dropped = created(
        &app,
        &token,
        json!({"title": "Sell the piano", "parent_id": parent}),
    )
    .await;
    let van = created(
        &app,
        &token,
        json!({"title": "Book a van", "parent_id": parent, "priority": "low",
               "due_at": "2030-03-20T09:00:00Z"}),
    )
    .await;
    transition(
        &app,
        &token,
        &packed,
        "complete",
        json!({"actual_minutes": 90}),
    )
    .await;
    transition(&app, &token, &dropped, "cancel", json!({})).await;
    // Started, and started then paused: both IN-PROCESS.
    let started = created(
        &app,
        &token,
        json!({"title": "Write report", "priority": "medium"}),
    )
    .await;
    transition(&app, &token, &started, "start", json!({})).await;
    let paused = created(&app, &token, json!({"title": "Read a book"})).await;
    transition(&app, &token, &paused, "start", json!({})).await;
    transition(&app, &token, &paused, "pause", json!({})).await;
    // A repeating one: its rule travels with it.
    let weekly = created(
        &app,
        &token,
        json!({"title": "Team sync", "due_at": "2030-03-04T09:00:00Z",
               "recurrence": {"rule": "FREQ=WEEKLY;BYDAY=MO", "mode": "fixed"}}),
    )
    .await;
    // A repeating one of someone in Tokyo: Monday 08:00 there is Sunday 23:00 UTC, so its
    // dates are Tokyo's wall clock, or BYDAY=MO would land on the wrong day.
    let tokyo = created(
        &app,
        &token,
        json!({"title": "Weekly plan", "due_at": "2030-03-03T23:00:00Z", "time_zone": "Asia/Tokyo",
               "recurrence": {"rule": "FREQ=WEEKLY;BYDAY=MO", "mode": "fixed"}}),
    )
    .await;
    // Finished ones stay out.
    let done = created(&app, &token, json!({"title": "Done already"})).await;
    transition(
        &app,
        &token,
        &done,
        "complete",
        json!({"actual_minutes": 5}),
    )
    .await;
    let archived = created(&app, &token, json!({"title": "Put away"})).await;
    let position = transition(&app, &token, &archived, "archive", json!({})).await;
    caught_up(&app, &token, position).await;

    let ics = feed_text(&app, &feed_path).await;
    // Every line ends in CRLF and is at most 75 octets; the long title was folded.
    assert!(ics.ends_with("\r\n"));
    for line in ics.split("\r\n") {
        assert!(line.len() <= 75, "{line:?} is {} octets", line.len());
        assert!(!line.contains('\n') && !line.contains('\r'), "{line:?}");
    }
    assert!(ics.contains("\r\n "), "nothing was folded:\n{ics}");

    let parsed = parse(&ics);
    assert_eq!(parsed["icalendar"], ICALENDAR_VERSION);
    assert_eq!(parsed["errors"], json!([]), "{ics}");
    assert_eq!(parsed["version"], "2.0");
    assert_eq!(parsed["prodid"], "-//taskmaster//calendar feed 1.0//EN");
    assert_eq!(parsed["name"], "taskmaster");
    assert_eq!(
        uids(&parsed),
        sorted(vec![
            parent.clone(),
            van.clone(),
            started.clone(),
            paused.clone(),
            weekly.clone(),
            tokyo.clone()
        ])
    );

    // Each field as the API itself reports the task.
    for id in [&parent, &van, &started, &paused] {
        let task: Value = app.get_task(&token, id, 0).await.json().await.unwrap();
        let todo = todo(&parsed, id);
        let instant = |field: &str| {
            task[field].as_str().map(|text| {
                chrono::DateTime::parse_from_rfc3339(text)
                    .unwrap()
                    .with_timezone(&chrono::Utc)
                    .format("%Y-%m-%dT%H:%M:%SZ")
                    .to_string()
            })
        };
        assert_eq!(todo["summary"], task["title"], "{id}");
        assert_eq!(todo["dtstamp"].as_str(), instant("updated_at").as_deref());
        assert_eq!(
            todo["last_modified"].as_str(),
            instant("updated_at").as_deref()
        );
        assert_eq!(todo["created"].as_str(), instant("created_at").as_deref());
        assert_eq!(todo["due"].as_str(), instant("due_at").as_deref(), "{id}");
        assert_eq!(
            todo["dtstart"].as_str(),
            instant("starts_at").as_deref(),
            "{id}"
        );
        assert_eq!(todo["rrule"], Value::Null);
        assert_eq!(todo["categories"], task["tags"], "{id}");
    }

    let move_house = todo(&parsed, &parent);
    assert_eq!(move_house["summary"], title.trim());
    assert_eq!(move_house["description"], description);
    assert_eq!(move_house["due"], "2030-03-31T15:00:00Z");
    assert_eq!(move_house["dtstart"], "2030-03-01T08:00:00Z");
    assert_eq!(move_house["status"], "NEEDS-ACTION");
    assert_eq!(move_house["priority"], 1);
    assert_eq!(move_house["percent_complete"], 50);
    assert_eq!(move_house["related_to"], Value::Null);
    assert_eq!(
        sorted(
            move_house["categories"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_owned())
                .collect()
        ),
        ["big, heavy", "home"]
    );

    let book_van = todo(&parsed, &van);
    assert_eq!(book_van["related_to"], parent.as_str());
    assert_eq!(book_van["reltype"], "PARENT");
    assert_eq!(book_van["priority"], 7);
    assert_eq!(book_van["percent_complete"], 0);
    assert_eq!(book_van["due"], "2030-03-20T09:00:00Z");
    assert_eq!(book_van["dtstart"], Value::Null);
    assert_eq!(book_van["status"], "NEEDS-ACTION");

    let report = todo(&parsed, &started);
    assert_eq!(report["status"], "IN-PROCESS");
    assert_eq!(report["priority"], 5);
    assert_eq!(report["categories"], json!([]));
    assert_eq!(report["description"], Value::Null);

    let team_sync = todo(&parsed, &weekly);
    assert_eq!(team_sync["rrule"], "FREQ=WEEKLY;BYDAY=MO");
    assert_eq!(team_sync["due"], "2030-03-04T09:00:00Z");
    assert_eq!(team_sync["status"], "NEEDS-ACTION");

    let weekly_plan = todo(&parsed, &tokyo);
    assert_eq!(weekly_plan["rrule"], "FREQ=WEEKLY;BYDAY=MO");
    assert_eq!(weekly_plan["due"], "2030-03-04T08:00:00");

    let book = todo(&parsed, &paused);
    assert_eq!(book["status"], "IN-PROCESS");
    assert_eq!(book["priority"], 0);

    // Reading the feed is recorded on the token.
    let list: Value = app
        .http
        .get(app.url("/v1/calendar/tokens"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(list["items"][0]["last_used_at"].is_string(), "{list}");

    // Nothing changed: the same bytes again (DTSTAMP is the last revision, not the fetch).
    assert_eq!(feed_text(&app, &feed_path).await, ics);
}

#[tokio::test]
async fn a_revoked_token_reads_nothing_and_another_users_token_never_shows_your_tasks() {
    require_icalendar();
    let app = TestApp::spawn().await;
    let ann = app.token("cal_ann");
    let bob = app.token("cal_bob");
    let ann_task = created(&app, &ann, json!({"title": "Ann's secret"})).await;
    let bob_task = created(&app, &bob, json!({"title": "Bob's errand"})).await;
    let (_, _, position) = app.create_ok(&bob, "Bob's other errand").await;
    caught_up(&app, &bob, position).await;

    let ann_minted: Value = mint(&app, &ann, None).await.json().await.unwrap();
    let bob_minted: Value = mint(&app, &bob, None).await.json().await.unwrap();
    let ann_path = ann_minted["feed_path"].as_str().unwrap();
    let bob_path = bob_minted["feed_path"].as_str().unwrap();

    let ann_feed = parse(&feed_text(&app, ann_path).await);
    assert_eq!(uids(&ann_feed), std::slice::from_ref(&ann_task));
    let bob_feed = parse(&feed_text(&app, bob_path).await);
    assert_eq!(bob_feed["todos"].as_array().unwrap().len(), 2);
    assert!(!uids(&bob_feed).contains(&ann_task));
    assert!(uids(&bob_feed).contains(&bob_task));

    // Bob can neither see nor revoke Ann's token.
    let bobs: Value = app
        .http
        .get(app.url("/v1/calendar/tokens"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bobs["items"].as_array().unwrap().len(), 1);
    assert_eq!(bobs["items"][0]["id"], bob_minted["id"]);
    let ann_token_id = ann_minted["id"].as_str().unwrap();
    let revoke = |token: String, id: String| {
        app.http
            .delete(app.url(&format!("/v1/calendar/tokens/{id}")))
            .bearer_auth(token)
            .send()
    };
    problem(
        revoke(bob.clone(), ann_token_id.to_owned()).await.unwrap(),
        404,
    )
    .await;
    assert_eq!(
        feed(&app, &ann_path["/v1/calendar.ics".len()..])
            .await
            .status(),
        200
    );

    // Ann revokes it: her feed answers 401 from then on, and a second revocation 404.
    let revoked = revoke(ann.clone(), ann_token_id.to_owned()).await.unwrap();
    assert_eq!(revoked.status(), 204);
    let refused = problem(feed(&app, &ann_path["/v1/calendar.ics".len()..]).await, 401).await;
    assert!(!refused.to_string().contains(&ann_task));
    problem(
        revoke(ann.clone(), ann_token_id.to_owned()).await.unwrap(),
        404,
    )
    .await;
    let anns: Value = app
        .http
        .get(app.url("/v1/calendar/tokens"))
        .bearer_auth(&ann)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(anns["items"], json!([]));
    // Bob's feed is untouched.
    assert_eq!(
        app.http
            .get(app.url(bob_path))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // No token, a malformed one, an unknown one: 401 alike, without a bearer token being any
    // use (the feed is read with a feed token only).
    let unknown = "A".repeat(43);
    for query in [
        String::new(),
        "?token=".to_owned(),
        "?token=short".to_owned(),
        format!("?token={unknown}"),
        format!("?token={}", "A".repeat(44)),
    ] {
        problem(feed(&app, &query).await, 401).await;
    }
    let with_bearer = app
        .http
        .get(app.url("/v1/calendar.ics"))
        .bearer_auth(&ann)
        .send()
        .await
        .unwrap();
    problem(with_bearer, 401).await;
    // Unknown query parameters are refused like everywhere else.
    let body = problem(feed(&app, &format!("?token={unknown}&x=1")).await, 422).await;
    assert_eq!(body["errors"][0]["field"], "x");

    // The token routes need the bearer token; ids must be UUIDs.
    let anonymous = app
        .http
        .post(app.url("/v1/calendar/tokens"))
        .send()
        .await
        .unwrap();
    problem(anonymous, 401).await;
    problem(
        revoke(ann.clone(), "not-a-uuid".to_owned()).await.unwrap(),
        400,
    )
    .await;
}

#[tokio::test]
async fn a_user_holds_at_most_twenty_live_feed_tokens_and_labels_are_checked() {
    let app = TestApp::spawn_with(&[("TASKMASTER_RATE_LIMIT_USER", "0")]).await;
    let token = app.token("cal_many");
    let body = problem(
        mint(&app, &token, Some(json!({"label": "x".repeat(101)}))).await,
        422,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "label");
    let body = problem(
        mint(&app, &token, Some(json!({"label": "a\u{7}"}))).await,
        422,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "label");
    let body = problem(
        mint(&app, &token, Some(json!({"lable": "typo"}))).await,
        422,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "lable");

    let mut first = None;
    for n in 0..20 {
        let label = if n == 0 {
            json!("x".repeat(100))
        } else {
            json!("   ")
        };
        let minted = mint(&app, &token, Some(json!({ "label": label }))).await;
        assert_eq!(minted.status(), 201, "token {n}");
        let minted: Value = minted.json().await.unwrap();
        if n > 0 {
            assert_eq!(minted["label"], Value::Null, "a blank label is none");
        }
        first.get_or_insert(minted["id"].as_str().unwrap().to_owned());
    }
    let body = problem(mint(&app, &token, None).await, 409).await;
    assert_eq!(body["type"], "/problems/too-many-feed-tokens");
    // Revoking one makes room for one.
    let revoked = app
        .http
        .delete(app.url(&format!("/v1/calendar/tokens/{}", first.unwrap())))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    assert_eq!(mint(&app, &token, None).await.status(), 201);
    problem(mint(&app, &token, None).await, 409).await;
}
