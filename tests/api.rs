//! End to end over HTTP: a task travels from command to JetStream event to Postgres read model
//! to query, on the real services.

mod common;

use common::{problem, TestApp};
use futures::future::join_all;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};

#[tokio::test]
async fn create_then_read_your_write_then_a_stale_if_match_is_a_409() {
    let app = TestApp::spawn().await;
    let token = app.token("alice");
    let response = app
        .create(
            &token,
            json!({"title": "  Write the report ", "priority": "high", "estimate_minutes": 90,
                   "tags": ["work", "work", "writing"], "due_at": "2030-01-02T03:04:05Z",
                   "description": "numbers", "time_zone": "Europe/Paris"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["version"], 1);
    let id = created["id"].as_str().unwrap();
    assert_eq!(location, format!("/v1/tasks/{id}"));

    let read = app
        .get_task(&token, id, created["position"].as_u64().unwrap())
        .await;
    assert_eq!(read.status(), 200);
    assert_eq!(read.headers()["etag"], "\"1\"");
    let task: Value = read.json().await.unwrap();
    assert_eq!(task["title"], "Write the report");
    assert_eq!(task["priority"], "high");
    assert_eq!(task["tags"], json!(["work", "writing"]));
    assert_eq!(task["status"], "open");
    assert_eq!(task["due_at"], "2030-01-02T03:04:05Z");
    assert_eq!(task["time_zone"], "Europe/Paris");
    assert_eq!(task["version"], 1);
    assert!(task["prediction"].is_null());

    let update = |if_match: &'static str, title: &'static str| {
        app.http
            .patch(app.url(&format!("/v1/tasks/{id}")))
            .bearer_auth(&token)
            .header("If-Match", if_match)
            .json(&json!({ "title": title }))
            .send()
    };
    let first = update("\"1\"", "Write the final report").await.unwrap();
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["version"], 2);

    let stale = problem(update("\"1\"", "Lost update").await.unwrap(), 409).await;
    assert_eq!(stale["current_version"], 2);

    let read = app
        .get_task(&token, id, first["position"].as_u64().unwrap())
        .await;
    let task: Value = read.json().await.unwrap();
    assert_eq!(task["title"], "Write the final report");
    assert_eq!(task["version"], 2);
}

#[tokio::test]
async fn twenty_concurrent_conflicting_updates_lose_nothing() {
    let app = TestApp::spawn().await;
    let token = app.token("bob");
    let (id, _, _) = app.create_ok(&token, "contended").await;

    // All twenty claim version 1: exactly one can win, the rest are 409.
    let guarded = (0..20).map(|i| {
        app.http
            .patch(app.url(&format!("/v1/tasks/{id}")))
            .bearer_auth(&token)
            .header("If-Match", "1")
            .json(&json!({ "title": format!("guarded {i}") }))
            .send()
    });
    let answers = join_all(guarded).await;
    let mut accepted = Vec::new();
    for answer in answers {
        let answer = answer.unwrap();
        match answer.status().as_u16() {
            200 => accepted.push(answer.json::<Value>().await.unwrap()),
            409 => {
                problem(answer, 409).await;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0]["version"], 2);

    // Twenty unguarded updates: each accepted one is its own event at its own version.
    let unguarded = (0..20).map(|i| {
        app.http
            .patch(app.url(&format!("/v1/tasks/{id}")))
            .bearer_auth(&token)
            .json(&json!({ "title": format!("unguarded {i}") }))
            .send()
    });
    let mut titles = Vec::new();
    let mut versions = vec![2];
    for (i, answer) in join_all(unguarded).await.into_iter().enumerate() {
        let answer = answer.unwrap();
        match answer.status().as_u16() {
            200 => {
                let body: Value = answer.json().await.unwrap();
                versions.push(body["version"].as_u64().unwrap());
                titles.push(format!("unguarded {i}"));
            }
            409 => {
                problem(answer, 409).await;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    versions.sort_unstable();
    let history: Value = app.history(&token, &id).await;
    let events = history["items"].as_array().unwrap();
    assert_eq!(
        events.len(),
        versions.len() + 1,
        "one event per accepted update"
    );
    assert_eq!(
        versions,
        (2..=events.len() as u64).collect::<Vec<_>>(),
        "every accepted update has its own version"
    );
    for title in titles {
        let found = events
            .iter()
            .filter(|e| e["data"]["title"] == title.as_str())
            .count();
        assert_eq!(found, 1, "{title} is in the log exactly once");
    }
}

#[tokio::test]
async fn the_same_idempotency_key_twice_appends_one_event_and_answers_the_same() {
    let app = TestApp::spawn().await;
    let token = app.token("carol");
    let create = || {
        app.http
            .post(app.url("/v1/tasks"))
            .bearer_auth(&token)
            .header("Idempotency-Key", "create-42")
            .json(&json!({"title": "only once"}))
            .send()
    };
    let first = create().await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let second = create().await.unwrap();
    assert_eq!(second.status(), 201);
    let second: Value = second.json().await.unwrap();
    assert_eq!(first, second);

    let id = first["id"].as_str().unwrap();
    let complete = || {
        app.http
            .post(app.url(&format!("/v1/tasks/{id}/complete")))
            .bearer_auth(&token)
            .header("Idempotency-Key", "complete-1")
            .json(&json!({"actual_minutes": 12}))
            .send()
    };
    let done: Value = complete().await.unwrap().json().await.unwrap();
    // Completing a completed task would be a 409; the same command answers as the first time.
    let again = complete().await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap(), done);

    // Another user's identical key is another command.
    let other = app
        .http
        .post(app.url("/v1/tasks"))
        .bearer_auth(app.token("dave"))
        .header("Idempotency-Key", "create-42")
        .json(&json!({"title": "only once"}))
        .send()
        .await
        .unwrap();
    let other: Value = other.json().await.unwrap();
    assert_ne!(other["id"], first["id"]);

    let history: Value = app.history(&token, id).await;
    let types: Vec<&str> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["TaskCreated", "TaskCompleted"]);
}

#[tokio::test]
async fn another_user_cannot_read_list_update_or_see_the_history_of_your_task() {
    let app = TestApp::spawn().await;
    let alice = app.token("alice");
    let mallory = app.token("mallory");
    let (id, _, position) = app.create_ok(&alice, "private").await;

    problem(app.get_task(&mallory, &id, position).await, 404).await;
    let list: Value = app
        .http
        .get(app.url("/v1/tasks"))
        .bearer_auth(&mallory)
        .header("Tm-Min-Position", position.to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"], json!([]));
    let update = app
        .http
        .patch(app.url(&format!("/v1/tasks/{id}")))
        .bearer_auth(&mallory)
        .json(&json!({"title": "mine now"}))
        .send()
        .await
        .unwrap();
    problem(update, 404).await;
    for action in ["start", "pause", "complete", "reopen", "archive"] {
        let response = app
            .http
            .post(app.url(&format!("/v1/tasks/{id}/{action}")))
            .bearer_auth(&mallory)
            .send()
            .await
            .unwrap();
        problem(response, 404).await;
    }
    let history = app
        .http
        .get(app.url(&format!("/v1/tasks/{id}/history")))
        .bearer_auth(&mallory)
        .send()
        .await
        .unwrap();
    problem(history, 404).await;

    // Alice's task is untouched.
    let task: Value = app
        .get_task(&alice, &id, position)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(task["title"], "private");
    assert_eq!(task["version"], 1);
}

/// The fields a 422 problem names, in order.
fn error_fields(problem: &Value) -> Vec<&str> {
    problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn bad_requests_get_precise_problem_answers() {
    let app = TestApp::spawn().await;
    let token = app.token("erin");
    let post = |body: Vec<u8>| {
        app.http
            .post(app.url("/v1/tasks"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    problem(post(br#"{"title": "unclosed"#.to_vec()).await.unwrap(), 400).await;

    let invalid = problem(post(br#"{"title": "   "}"#.to_vec()).await.unwrap(), 422).await;
    assert_eq!(invalid["errors"][0]["field"], "title");
    let invalid = problem(
        post(br#"{"title": "ok", "estimate_minutes": 0, "priority": "asap"}"#.to_vec())
            .await
            .unwrap(),
        422,
    )
    .await;
    assert_eq!(error_fields(&invalid), ["priority", "estimate_minutes"]);
    let unknown = problem(
        post(br#"{"title": "ok", "priorty": "high"}"#.to_vec())
            .await
            .unwrap(),
        422,
    )
    .await;
    assert_eq!(unknown["errors"][0]["field"], "priorty");
    let zone = problem(
        post(br#"{"title": "ok", "time_zone": "Mars/Olympus Mons"}"#.to_vec())
            .await
            .unwrap(),
        422,
    )
    .await;
    assert_eq!(zone["errors"][0]["field"], "time_zone");
    let wrong_type = problem(
        post(br#"{"title": "ok", "tags": "bug"}"#.to_vec())
            .await
            .unwrap(),
        422,
    )
    .await;
    assert_eq!(wrong_type["errors"][0]["field"], "tags");

    let oversize = format!(
        r#"{{"title": "big", "description": "{}"}}"#,
        "x".repeat(1024 * 1024)
    );
    problem(post(oversize.into_bytes()).await.unwrap(), 413).await;

    let not_json = app
        .http
        .post(app.url("/v1/tasks"))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body("title=x")
        .send()
        .await
        .unwrap();
    problem(not_json, 415).await;

    let unknown_task = uuid::Uuid::now_v7();
    problem(
        app.get_task(&token, &unknown_task.to_string(), 0).await,
        404,
    )
    .await;
    let start_unknown = app
        .http
        .post(app.url(&format!("/v1/tasks/{unknown_task}/start")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    problem(start_unknown, 404).await;
    problem(app.get_task(&token, "not-a-uuid", 0).await, 400).await;

    let bad_if_match = app
        .http
        .post(app.url(&format!("/v1/tasks/{unknown_task}/start")))
        .bearer_auth(&token)
        .header("If-Match", "yesterday")
        .send()
        .await
        .unwrap();
    problem(bad_if_match, 400).await;
    let bad_limit = app
        .http
        .get(app.url("/v1/tasks?limit=100000"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let bad_limit = problem(bad_limit, 422).await;
    assert_eq!(bad_limit["errors"][0]["field"], "limit");
    // serde reads a struct from an array of its fields; a body must be an object.
    problem(post(br#"["an array", null]"#.to_vec()).await.unwrap(), 400).await;
    let unknown_route = app.http.get(app.url("/v2/nothing")).send().await.unwrap();
    problem(unknown_route, 404).await;
}

#[tokio::test]
async fn missing_forged_and_expired_tokens_are_401() {
    let app = TestApp::spawn().await;
    let list = |token: Option<String>| {
        let request = app.http.get(app.url("/v1/tasks"));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
        .send()
    };
    let missing = problem(list(None).await.unwrap(), 401).await;
    assert!(missing["detail"].as_str().unwrap().contains("Bearer"));

    let user = domain::UserId::parse("frank").unwrap();
    let now = chrono::Utc::now().timestamp();
    let forged = api::auth::mint_hs256(b"not-the-server-secret-at-all-0000", &user, now, 3600);
    problem(list(Some(forged)).await.unwrap(), 401).await;
    let expired = api::auth::mint_hs256(common::SECRET.as_bytes(), &user, now - 7200, 3600);
    let expired = problem(list(Some(expired)).await.unwrap(), 401).await;
    assert!(expired["detail"].as_str().unwrap().contains("expired"));
    problem(list(Some("garbage".into())).await.unwrap(), 401).await;

    let response = list(None).await.unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
}

#[tokio::test]
async fn a_task_goes_through_its_whole_life_and_history_tells_it() {
    let app = TestApp::spawn().await;
    let token = app.token("grace");
    let (id, _, _) = app.create_ok(&token, "life").await;
    let mut position = 0;
    for (action, expected_status) in [
        ("start", "in_progress"),
        ("pause", "paused"),
        ("start", "in_progress"),
        ("complete", "completed"),
        ("reopen", "open"),
        ("archive", "archived"),
    ] {
        let response = app
            .http
            .post(app.url(&format!("/v1/tasks/{id}/{action}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{action}");
        let body: Value = response.json().await.unwrap();
        position = body["position"].as_u64().unwrap();
        let task: Value = app
            .get_task(&token, &id, position)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(task["status"], expected_status, "after {action}");
    }
    // Archived tasks refuse changes: a state conflict.
    let refused = app
        .http
        .patch(app.url(&format!("/v1/tasks/{id}")))
        .bearer_auth(&token)
        .json(&json!({"title": "too late"}))
        .send()
        .await
        .unwrap();
    let refused = problem(refused, 409).await;
    assert_eq!(refused["type"], "/problems/state-conflict");

    let history: Value = app.history(&token, &id).await;
    let items = history["items"].as_array().unwrap();
    assert_eq!(items.len(), 7);
    assert_eq!(items.last().unwrap()["position"], position);
    assert_eq!(items.last().unwrap()["version"], 7);
    assert_eq!(items[0]["event_type"], "TaskCreated");
}

#[tokio::test]
async fn lists_filter_search_sort_and_page() {
    let app = TestApp::spawn().await;
    let token = app.token("heidi");
    let mut last = 0;
    for (i, (title, priority, tag)) in [
        ("Fix the login bug", "urgent", "bug"),
        ("Write release notes", "low", "docs"),
        ("Fix flaky tests", "high", "bug"),
        ("Plan the offsite", "medium", "team"),
        ("Review pull requests", "high", "code"),
    ]
    .into_iter()
    .enumerate()
    {
        let response = app
            .create(
                &token,
                json!({"title": title, "priority": priority, "tags": [tag],
                       "due_at": format!("2030-01-0{}T00:00:00Z", i + 1)}),
            )
            .await;
        last = response.json::<Value>().await.unwrap()["position"]
            .as_u64()
            .unwrap();
    }
    let list = |query: &str| {
        let url = app.url(&format!("/v1/tasks{query}"));
        let token = token.clone();
        let http = app.http.clone();
        async move {
            let response = http
                .get(url)
                .bearer_auth(token)
                .header("Tm-Min-Position", last.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    let titles = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["title"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        titles(&list("?tag=bug&sort=due_at").await),
        ["Fix the login bug", "Fix flaky tests"]
    );
    assert_eq!(
        titles(&list("?priority=high&sort=-due_at").await),
        ["Review pull requests", "Fix flaky tests"]
    );
    assert_eq!(
        titles(&list("?q=fixing&sort=due_at").await),
        ["Fix the login bug", "Fix flaky tests"]
    );
    assert_eq!(
        titles(&list("?due_after=2030-01-04T00:00:00Z&sort=due_at").await),
        ["Plan the offsite", "Review pull requests"]
    );
    assert_eq!(
        titles(&list("?status=completed").await),
        Vec::<String>::new()
    );
    assert_eq!(
        titles(&list("?sort=-priority&limit=1").await),
        ["Fix the login bug"]
    );

    // Pages of two, in due order, walk the whole list exactly once.
    let mut seen = Vec::new();
    let mut query = "?sort=due_at&limit=2".to_owned();
    loop {
        let page = list(&query).await;
        seen.extend(titles(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("?sort=due_at&limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[0], "Fix the login bug");
    assert_eq!(seen[4], "Review pull requests");

    // A cursor is bound to its sort.
    let page = list("?sort=due_at&limit=2").await;
    let cursor = page["next_cursor"].as_str().unwrap();
    let mismatched = app
        .http
        .get(app.url(&format!("/v1/tasks?sort=-created_at&cursor={cursor}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let mismatched = problem(mismatched, 422).await;
    assert_eq!(mismatched["errors"][0]["field"], "cursor");
}

#[tokio::test]
async fn a_read_model_that_cannot_catch_up_in_time_answers_504_with_how_far_behind() {
    let app = TestApp::spawn_with(&[("TASKMASTER_READ_WAIT_MS", "200")]).await;
    let token = app.token("ivan");
    app.create_ok(&token, "before").await;
    // Hold the projector back: its writes to the read model wait for this lock (reads do not).
    let mut connection = PgConnection::connect(app.database_url()).await.unwrap();
    let mut lock = connection.begin().await.unwrap();
    sqlx::query("LOCK TABLE tasks IN EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let (id, _, position) = app.create_ok(&token, "held back").await;
    let behind = problem(app.get_task(&token, &id, position).await, 504).await;
    assert_eq!(behind["requested_position"], position);
    let current = behind["current_position"].as_u64().unwrap();
    assert!(current < position);
    assert_eq!(behind["behind_by"], position - current);
    lock.rollback().await.unwrap();
    // Released, the projector catches up (after its retry, if the wait outlived a statement).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while app.get_task(&token, &id, position).await.status() != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "no catch-up after the lock"
        );
    }
}

#[tokio::test]
async fn a_position_past_the_end_of_the_log_is_refused_at_once_with_409_not_waited_for() {
    // It was a 504 after the whole wait, with a Retry-After that no retry could satisfy.
    let app = TestApp::spawn_with(&[("TASKMASTER_READ_WAIT_MS", "5000")]).await;
    let token = app.token("ivo");
    let (id, _, position) = app.create_ok(&token, "the last event").await;
    let far = position + 1_000;
    let started = std::time::Instant::now();
    let past = problem(app.get_task(&token, &id, far).await, 409).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert_eq!(past["type"], "/problems/position-past-end");
    assert_eq!(past["requested_position"], far);
    assert_eq!(past["current_position"], position);
    for path in ["/v1/tasks", "/v1/insights"] {
        let response = app
            .http
            .get(app.url(path))
            .bearer_auth(&token)
            .header("Tm-Min-Position", far.to_string())
            .send()
            .await
            .unwrap();
        problem(response, 409).await;
    }
    // The position of the last event itself is reachable: waited for, then served.
    assert_eq!(app.get_task(&token, &id, position).await.status(), 200);
}

#[tokio::test]
async fn unknown_query_parameters_are_refused_with_422_naming_each_as_unknown_json_fields_are() {
    let app = TestApp::spawn().await;
    let token = app.token("quinn");
    let (id, _, _) = app.create_ok(&token, "typos").await;
    let send = |method: reqwest::Method, path: String| {
        app.http
            .request(method, app.url(&path))
            .bearer_auth(&token)
            .send()
    };
    let typo = problem(
        send(
            reqwest::Method::GET,
            "/v1/tasks?limt=5&bogus=1&bogus=2".into(),
        )
        .await
        .unwrap(),
        422,
    )
    .await;
    assert_eq!(error_fields(&typo), ["limt", "bogus"]);
    assert!(typo["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("limit"));
    for path in [
        format!("/v1/tasks/{id}?as_of_versoin=1"),
        format!("/v1/tasks/{id}/history?page=2"),
        "/v1/insights?fresh=1".to_owned(),
    ] {
        problem(send(reqwest::Method::GET, path).await.unwrap(), 422).await;
    }
    // A command with an unknown parameter is refused before it runs: nothing is appended.
    let forced = send(
        reqwest::Method::POST,
        format!("/v1/tasks/{id}/start?force=true"),
    );
    problem(forced.await.unwrap(), 422).await;
    assert_eq!(
        app.history(&token, &id).await["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Operational endpoints answer probes and scrapers whatever their query string.
    let live = app
        .http
        .get(app.url("/health/live?probe=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);

    // Known parameters with invalid values are 422s naming them too.
    for (query, field) in [
        ("tag=%20%20", "tag"),
        ("status=open,", "status"),
        ("sort=", "sort"),
        ("q=a%00b", "q"),
        ("due_before=2030-01-01%2010:00:00Z", "due_before"),
    ] {
        let response = send(reqwest::Method::GET, format!("/v1/tasks?{query}"));
        let body = problem(response.await.unwrap(), 422).await;
        assert_eq!(body["errors"][0]["field"], field, "{query}");
    }
}

#[tokio::test]
async fn numbers_written_as_whole_floats_and_a_null_completion_body_are_accepted() {
    // JSON Schema (and many clients) count 90.0 as an integer; a `null` body is the
    // documented "no details".
    let app = TestApp::spawn().await;
    let token = app.token("rosa");
    let created = app
        .create(&token, json!({"title": "floats", "estimate_minutes": 90.0}))
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
    assert_eq!(task["estimate_minutes"], 90);
    let fraction = app
        .create(&token, json!({"title": "floats", "estimate_minutes": 90.5}))
        .await;
    let fraction = problem(fraction, 422).await;
    assert_eq!(fraction["errors"][0]["field"], "estimate_minutes");

    let completed = app
        .http
        .post(app.url(&format!("/v1/tasks/{id}/complete")))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("null")
        .send()
        .await
        .unwrap();
    assert_eq!(completed.status(), 200);

    // A resume position past any stream is refused, not wrapped around to the start.
    let resume = app
        .http
        .get(app.url("/v1/events"))
        .bearer_auth(&token)
        .header("Last-Event-ID", u64::MAX.to_string())
        .send()
        .await
        .unwrap();
    problem(resume, 400).await;
}

#[tokio::test]
async fn time_travel_rebuilds_a_task_as_it_was_at_a_version_or_an_instant() {
    let app = TestApp::spawn().await;
    let token = app.token("olivia");
    let (id, _, _) = app.create_ok(&token, "first title").await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let between = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let patched = app
        .http
        .patch(app.url(&format!("/v1/tasks/{id}")))
        .bearer_auth(&token)
        .json(&json!({"title": "second title"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    app.http
        .post(app.url(&format!("/v1/tasks/{id}/start")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();

    let at = |query: String| {
        let request = app
            .http
            .get(app.url(&format!("/v1/tasks/{id}?{query}")))
            .bearer_auth(&token);
        async move { request.send().await.unwrap() }
    };
    let v1 = at("as_of_version=1".into()).await;
    assert_eq!(v1.headers()["etag"], "\"1\"");
    let v1: Value = v1.json().await.unwrap();
    assert_eq!(
        (v1["title"].as_str(), v1["status"].as_str()),
        (Some("first title"), Some("open"))
    );
    let v2: Value = at("as_of_version=2".into()).await.json().await.unwrap();
    assert_eq!(
        (v2["title"].as_str(), v2["status"].as_str()),
        (Some("second title"), Some("open"))
    );
    let then: Value = at(format!(
        "as_of={}",
        between
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            .replace('+', "%2B")
    ))
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(then["title"], "first title");
    assert_eq!(then["version"], 1);

    problem(at("as_of_version=9".into()).await, 404).await;
    problem(at("as_of=2000-01-01T00:00:00Z".into()).await, 404).await;
    let zero = problem(at("as_of_version=0".into()).await, 422).await;
    assert_eq!(zero["errors"][0]["field"], "as_of_version");
    problem(at("as_of=yesterday".into()).await, 422).await;
    problem(at("as_of_version=1&as_of_version=2".into()).await, 422).await;
    // Both: that version, if the task had reached it by that instant.
    let between = between
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        .replace('+', "%2B");
    let both: Value = at(format!("as_of_version=1&as_of={between}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(both["title"], "first title");
    problem(at(format!("as_of_version=2&as_of={between}")).await, 404).await;
    // Someone else cannot travel into your task either.
    let other = app
        .http
        .get(app.url(&format!("/v1/tasks/{id}?as_of_version=1")))
        .bearer_auth(app.token("mallory"))
        .send()
        .await
        .unwrap();
    problem(other, 404).await;
}
