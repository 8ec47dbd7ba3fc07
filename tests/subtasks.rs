//! Subtasks over HTTP, on the real services: `parent_id` on create, the depth limit and cycle
//! refusals, another user's parent, `POST /v1/tasks/{id}/move`, the `parent` and `subtree`
//! filters, child counts and progress on reads, the 409 naming open subtasks, and `verify`
//! clean afterwards.

mod common;

use common::{problem, TestApp};
use serde_json::{json, Value};

async fn post(app: &TestApp, token: &str, path: &str, body: Value) -> reqwest::Response {
    app.http
        .post(app.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
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

async fn subtask(app: &TestApp, token: &str, title: &str, parent: &str) -> (String, u64) {
    created(app, token, json!({"title": title, "parent_id": parent})).await
}

async fn listed(app: &TestApp, token: &str, query: &str, position: u64) -> Vec<String> {
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

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

async fn position_of(response: reqwest::Response) -> u64 {
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["position"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn subtasks_nest_four_deep_and_no_deeper_and_never_under_themselves() {
    let app = TestApp::spawn().await;
    let token = app.token("nina");
    let (l1, _) = created(&app, &token, json!({"title": "project"})).await;
    let (l2, _) = subtask(&app, &token, "task", &l1).await;
    let (l3, _) = subtask(&app, &token, "step", &l2).await;
    let (l4, position) = subtask(&app, &token, "item", &l3).await;

    let task: Value = app
        .get_task(&token, &l4, position)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(task["parent_id"], l3.as_str());
    assert_eq!(task["subtasks"], Value::Null);

    // Level 5 is refused, naming the field.
    let too_deep = app
        .create(&token, json!({"title": "too deep", "parent_id": l4}))
        .await;
    let body = problem(too_deep, 422).await;
    assert_eq!(body["errors"][0]["field"], "parent_id");
    assert!(
        body["detail"].as_str().unwrap().contains("4 levels"),
        "{body}"
    );

    // A task cannot go under itself, nor under its own descendant.
    for parent in [&l2, &l4] {
        let cycle = post(
            &app,
            &token,
            &format!("/v1/tasks/{l2}/move"),
            json!({"parent_id": parent}),
        )
        .await;
        let body = problem(cycle, 422).await;
        assert_eq!(body["errors"][0]["field"], "parent_id", "{body}");
    }

    // Moving a subtree counts its height: l2's subtree spans 3 levels, so it fits under a
    // top-level task (levels 2 to 4) but not under l3's sibling at level 3.
    let (other_root, _) = created(&app, &token, json!({"title": "other project"})).await;
    let (other_l2, _) = subtask(&app, &token, "other task", &other_root).await;
    let deep = post(
        &app,
        &token,
        &format!("/v1/tasks/{l2}/move"),
        json!({"parent_id": other_l2}),
    )
    .await;
    assert_eq!(problem(deep, 422).await["errors"][0]["field"], "parent_id");
    let moved = post(
        &app,
        &token,
        &format!("/v1/tasks/{l2}/move"),
        json!({"parent_id": other_root}),
    )
    .await;
    let position = position_of(moved).await;
    let task: Value = app
        .get_task(&token, &l2, position)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(task["parent_id"], other_root.as_str());
    assert_eq!(task["version"], 2);

    // To the top level, then the same move again changes nothing.
    let top = post(
        &app,
        &token,
        &format!("/v1/tasks/{l2}/move"),
        json!({"parent_id": null}),
    )
    .await;
    let position = position_of(top).await;
    let again = post(
        &app,
        &token,
        &format!("/v1/tasks/{l2}/move"),
        json!({"parent_id": null}),
    )
    .await;
    let answer: Value = again.json().await.unwrap();
    assert_eq!(answer["version"], 3);
    assert_eq!(answer["position"], position);
    assert_eq!(
        listed(&app, &token, "parent=none", position).await,
        sorted(vec![l1.clone(), l2.clone(), other_root.clone()])
    );

    // The history names the move.
    let history = app.history(&token, &l2).await;
    let types: Vec<&str> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["TaskCreated", "TaskMoved", "TaskMoved"]);
    assert_eq!(history["items"][0]["event_version"], 5);
    assert_eq!(history["items"][0]["data"]["parent_id"], l1.as_str());
    assert_eq!(history["items"][2]["data"]["parent_id"], Value::Null);

    app.assert_verify_clean();
    app.stop().await;
}

#[tokio::test]
async fn a_parent_must_be_one_of_your_own_live_tasks() {
    let app = TestApp::spawn().await;
    let (owner, stranger) = (app.token("olga"), app.token("pete"));
    let (theirs, _) = created(&app, &owner, json!({"title": "olga's"})).await;
    let (mine, _) = created(&app, &stranger, json!({"title": "pete's"})).await;

    // Another user's task, and a task that does not exist, are the same: no such task.
    for parent in [theirs.clone(), uuid::Uuid::now_v7().to_string()] {
        let refused = app
            .create(&stranger, json!({"title": "sneaky", "parent_id": parent}))
            .await;
        let body = problem(refused, 422).await;
        assert_eq!(body["errors"][0]["field"], "parent_id");
        assert_eq!(body["errors"][0]["message"], "no such task");
        let refused = post(
            &app,
            &stranger,
            &format!("/v1/tasks/{mine}/move"),
            json!({"parent_id": parent}),
        )
        .await;
        assert_eq!(
            problem(refused, 422).await["errors"][0]["field"],
            "parent_id"
        );
    }

    // Malformed ids and a missing field name the field.
    let refused = app
        .create(&stranger, json!({"title": "x", "parent_id": "not-a-uuid"}))
        .await;
    assert_eq!(
        problem(refused, 422).await["errors"][0]["field"],
        "parent_id"
    );
    let refused = post(
        &app,
        &stranger,
        &format!("/v1/tasks/{mine}/move"),
        json!({}),
    )
    .await;
    assert_eq!(
        problem(refused, 422).await["errors"][0]["field"],
        "parent_id"
    );

    // An archived parent takes no subtasks.
    let archived = post(
        &app,
        &stranger,
        &format!("/v1/tasks/{mine}/archive"),
        json!(null),
    )
    .await;
    assert_eq!(archived.status(), 200);
    let refused = app
        .create(&stranger, json!({"title": "late", "parent_id": mine}))
        .await;
    let body = problem(refused, 422).await;
    assert!(
        body["detail"].as_str().unwrap().contains("archived"),
        "{body}"
    );

    // Nothing refused was written.
    let position = app.create_ok(&stranger, "probe").await.2;
    assert_eq!(listed(&app, &stranger, "", position).await.len(), 2);
    app.assert_verify_clean();
    app.stop().await;
}

#[tokio::test]
async fn reads_carry_child_counts_and_lists_filter_by_parent_and_subtree() {
    let app = TestApp::spawn().await;
    let token = app.token("quinn");
    let (root, _) = created(&app, &token, json!({"title": "move house"})).await;
    let (pack, _) = subtask(&app, &token, "pack", &root).await;
    let (boxes, _) = subtask(&app, &token, "buy boxes", &pack).await;
    let (van, _) = subtask(&app, &token, "book van", &root).await;
    let (plants, _) = subtask(&app, &token, "give plants away", &root).await;
    let (elsewhere, _) = created(&app, &token, json!({"title": "unrelated"})).await;

    let done = post(
        &app,
        &token,
        &format!("/v1/tasks/{van}/complete"),
        json!({}),
    )
    .await;
    assert_eq!(done.status(), 200);
    let cancelled = post(
        &app,
        &token,
        &format!("/v1/tasks/{plants}/cancel"),
        json!({}),
    )
    .await;
    let position = position_of(cancelled).await;

    let task: Value = app
        .get_task(&token, &root, position)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        task["subtasks"],
        json!({"total": 3, "open": 1, "completed": 1, "cancelled": 1, "progress": 0.5})
    );
    assert_eq!(
        listed(&app, &token, &format!("parent={root}"), position).await,
        sorted(vec![pack.clone(), van.clone(), plants.clone()])
    );
    assert_eq!(
        listed(&app, &token, &format!("subtree={root}"), position).await,
        sorted(vec![
            root.clone(),
            pack.clone(),
            boxes.clone(),
            van.clone(),
            plants.clone()
        ])
    );
    assert_eq!(
        listed(
            &app,
            &token,
            &format!("subtree={pack}&status=open"),
            position
        )
        .await,
        sorted(vec![pack.clone(), boxes.clone()])
    );
    assert_eq!(
        listed(&app, &token, "parent=none", position).await,
        sorted(vec![root.clone(), elsewhere])
    );
    // Another user's subtree is empty, not an error.
    let stranger = app.token("rosa");
    assert!(
        listed(&app, &stranger, &format!("subtree={root}"), position)
            .await
            .is_empty()
    );

    // Lists carry the counts too.
    let page: Value = app
        .http
        .get(app.url(&format!("/v1/tasks?subtree={root}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pack_item = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == pack.as_str())
        .unwrap();
    assert_eq!(pack_item["subtasks"]["open"], 1);

    for (query, field) in [("parent=nope", "parent"), ("subtree=1", "subtree")] {
        let response = app
            .http
            .get(app.url(&format!("/v1/tasks?{query}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(problem(response, 422).await["errors"][0]["field"], field);
    }
    app.stop().await;
}

#[tokio::test]
async fn completing_a_parent_with_open_subtasks_is_a_409_naming_them() {
    let app = TestApp::spawn().await;
    let token = app.token("sven");
    let (root, _) = created(&app, &token, json!({"title": "release"})).await;
    let (notes, _) = subtask(&app, &token, "notes", &root).await;
    let (tag, _) = subtask(&app, &token, "tag", &root).await;

    let refused = post(
        &app,
        &token,
        &format!("/v1/tasks/{root}/complete"),
        json!({}),
    )
    .await;
    let body = problem(refused, 409).await;
    assert_eq!(body["type"], "/problems/open-subtasks");
    let mut open: Vec<String> = body["open_subtasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    open.sort();
    assert_eq!(open, sorted(vec![notes.clone(), tag.clone()]));

    // Once they are done (or dropped), the parent completes.
    assert_eq!(
        post(
            &app,
            &token,
            &format!("/v1/tasks/{notes}/complete"),
            json!({})
        )
        .await
        .status(),
        200
    );
    let still = post(
        &app,
        &token,
        &format!("/v1/tasks/{root}/complete"),
        json!({}),
    )
    .await;
    assert_eq!(problem(still, 409).await["open_subtasks"], json!([tag]));
    assert_eq!(
        post(&app, &token, &format!("/v1/tasks/{tag}/cancel"), json!({}))
            .await
            .status(),
        200
    );
    let completed = post(
        &app,
        &token,
        &format!("/v1/tasks/{root}/complete"),
        json!({}),
    )
    .await;
    let position = position_of(completed).await;
    let task: Value = app
        .get_task(&token, &root, position)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(task["status"], "completed");
    assert_eq!(task["version"], 2);

    app.assert_verify_clean();
    app.stop().await;
}
