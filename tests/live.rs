//! The live feed: a user's events as server-sent events, resumable without gaps or duplicates.

mod common;

use std::time::Duration;

use common::{problem, TestApp};
use futures::StreamExt;
use serde_json::Value;

/// Reads server-sent events from a response until `count` have arrived.
async fn read_events(response: reqwest::Response, count: usize) -> Vec<(u64, String, Value)> {
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    while events.len() < count {
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect("an event arrives in time")
            .expect("the stream stays open")
            .unwrap();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut id, mut name, mut data) = (None, String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if let Some(id) = id {
                events.push((id, name, serde_json::from_str(&data).unwrap()));
            }
        }
    }
    events
}

#[tokio::test]
async fn the_feed_streams_only_your_events_and_resumes_after_last_event_id() {
    let app = TestApp::spawn().await;
    let alice = app.token("alice");
    let bob = app.token("bob");
    let feed = app
        .http
        .get(app.url("/v1/events"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), 200);
    assert!(feed.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));

    let (first, _, _) = app.create_ok(&alice, "one").await;
    app.create_ok(&bob, "not for alice").await;
    let (second, _, _) = app.create_ok(&alice, "two").await;
    let started: Value = app
        .http
        .post(app.url(&format!("/v1/tasks/{first}/start")))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    let events = read_events(feed, 3).await;
    let ids: Vec<u64> = events.iter().map(|e| e.0).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_eq!(events[0].1, "TaskCreated");
    assert_eq!(events[0].2["task_id"], first.as_str());
    assert_eq!(events[0].2["data"]["title"], "one");
    assert_eq!(events[1].2["task_id"], second.as_str());
    assert_eq!(events[2].1, "TaskStarted");
    assert_eq!(events[2].0, started["position"].as_u64().unwrap());
    assert!(events
        .iter()
        .all(|e| e.2["data"]["title"] != "not for alice"));

    // Reconnect after the first event: the next two come again, nothing else.
    let resumed = app
        .http
        .get(app.url("/v1/events"))
        .bearer_auth(&alice)
        .header("Last-Event-ID", events[0].0.to_string())
        .send()
        .await
        .unwrap();
    let again = read_events(resumed, 2).await;
    assert_eq!(
        again.iter().map(|e| e.0).collect::<Vec<_>>(),
        ids[1..].to_vec()
    );

    let bad = app
        .http
        .get(app.url("/v1/events"))
        .bearer_auth(&alice)
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .unwrap();
    problem(bad, 400).await;
    let anonymous = app.http.get(app.url("/v1/events")).send().await.unwrap();
    problem(anonymous, 401).await;
}

#[tokio::test]
async fn an_open_feed_does_not_hold_up_a_graceful_shutdown() {
    let app = TestApp::spawn().await;
    let token = app.token("carl");
    let feed = app
        .http
        .get(app.url("/v1/events"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), 200);
    tokio::time::timeout(Duration::from_secs(10), app.stop())
        .await
        .expect("the server stops while a feed is open");
    drop(feed);
}
