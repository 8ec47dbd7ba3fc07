//! Erasure: nothing of the erased user remains; other users are untouched.

mod common;

use common::{problem, TestApp};
use serde_json::Value;

#[tokio::test]
async fn erasing_a_user_removes_their_events_and_rows_and_leaves_others_untouched() {
    let app = TestApp::spawn().await;
    let alice = app.token("alice_1");
    let bob = app.token("bob");
    let (alice_task, _, _) = app.create_ok(&alice, "alice's secret").await;
    app.create_ok(&alice, "another").await;
    let (bob_task, _, position) = app.create_ok(&bob, "bob's task").await;
    assert_eq!(app.get_task(&bob, &bob_task, position).await.status(), 200);
    let bob_before: Value = app
        .get_task(&bob, &bob_task, position)
        .await
        .json()
        .await
        .unwrap();
    let bob_history_before = app.history(&bob, &bob_task).await;
    // A calendar feed token each: Alice's goes with her, Bob's stays.
    let mint = |token: String| {
        app.http
            .post(app.url("/v1/calendar/tokens"))
            .bearer_auth(token)
            .send()
    };
    let alice_feed: Value = mint(alice.clone()).await.unwrap().json().await.unwrap();
    let bob_feed: Value = mint(bob.clone()).await.unwrap().json().await.unwrap();
    let feed = |minted: &Value| app.url(minted["feed_path"].as_str().unwrap());
    assert_eq!(
        app.http
            .get(feed(&alice_feed))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let output = app.cli().args(["erase-user", "alice_1"]).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8(output.stdout).unwrap().trim(),
        "erased user alice_1: 2 event(s) purged from the log, 2 task row(s), 0 dead letter(s) and 1 calendar feed token(s) deleted"
    );

    problem(app.get_task(&alice, &alice_task, 0).await, 404).await;
    problem(app.http.get(feed(&alice_feed)).send().await.unwrap(), 401).await;
    assert_eq!(
        app.http.get(feed(&bob_feed)).send().await.unwrap().status(),
        200
    );
    let history = app
        .http
        .get(app.url(&format!("/v1/tasks/{alice_task}/history")))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    problem(history, 404).await;
    let list: Value = app
        .http
        .get(app.url("/v1/tasks"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"], serde_json::json!([]));
    let export = app
        .cli()
        .args(["events", "export", "--owner", "alice_1"])
        .output()
        .unwrap();
    assert!(export.status.success());
    assert!(
        export.stdout.is_empty(),
        "no event of alice_1 is left in the log"
    );

    // Bob is untouched, and the read model still matches the log.
    let bob_after: Value = app.get_task(&bob, &bob_task, 0).await.json().await.unwrap();
    assert_eq!(bob_after, bob_before);
    assert_eq!(app.history(&bob, &bob_task).await, bob_history_before);
    let verify = app.cli().arg("verify").output().unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}
