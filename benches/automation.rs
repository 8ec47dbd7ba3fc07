//! Benchmarks of the automation role (not tests): process-manager lag, reminder firing with a
//! large queue pending, and webhook fan-out. Each phase runs taskmaster in this process on the
//! local services (its own database and NATS prefix, removed afterwards).
//!
//!     cargo bench --bench automation -- recurrence --rate 1000 --seconds 5
//!     cargo bench --bench automation -- reminders --pending 100000 --due 1000
//!     cargo bench --bench automation -- webhooks --endpoints 4 --events 2000
//!
//! Times are the stream's own timestamps (JetStream's, one clock), so a figure is what the log
//! shows, not what a client saw.

#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use domain::TaskEvent;
use futures::StreamExt;
use serde_json::{json, Value};
use taskmaster::{Application, Roles, Settings};
use tokio::sync::Semaphore;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SECRET: &str = "bench-secret-0123456789abcdef0123456789";

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

struct Running {
    url: String,
    token: String,
    http: reqwest::Client,
    prefix: String,
    _db: testkit::TestDatabase,
    _nats: testkit::NatsScope,
    stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(extra: &[(&str, &str)]) -> Running {
    let db = testkit::TestDatabase::planned();
    let nats = testkit::NatsScope::new();
    let mut vars: HashMap<String, String> = HashMap::from([
        ("DATABASE_URL".into(), db.url.clone()),
        ("TASKMASTER_NATS_PREFIX".into(), nats.prefix.clone()),
        ("TASKMASTER_HTTP_ADDR".into(), "127.0.0.1:0".into()),
        ("TASKMASTER_JWT_SECRET".into(), SECRET.into()),
        ("TASKMASTER_NATS_URL".into(), testkit::nats_url()),
        ("TASKMASTER_RATE_LIMIT_USER".into(), "0".into()),
        ("TASKMASTER_RATE_LIMIT_IP".into(), "0".into()),
    ]);
    for (k, v) in extra {
        vars.insert((*k).into(), (*v).into());
    }
    let settings = Settings::from_lookup(|name| vars.get(name).cloned()).expect("settings");
    let roles = Roles {
        api: true,
        projector: true,
        automation: true,
        ..Roles::default()
    };
    let app = Application::build(&settings, roles).await.expect("app");
    let address = app.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let user = domain::UserId::parse("bench").expect("user");
    Running {
        url: format!("http://{address}"),
        token: api::auth::mint_hs256(SECRET.as_bytes(), &user, Utc::now().timestamp(), 7200),
        http: reqwest::Client::new(),
        prefix: nats.prefix.clone(),
        _db: db,
        _nats: nats,
        stop,
    }
}

impl Running {
    async fn post(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("request");
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap_or(Value::Null)
    }

    /// Runs `n` requests, `parallel` at a time, each made by `make(i)`.
    async fn many<F, Fut>(&self, n: usize, parallel: usize, make: F)
    where
        F: Fn(usize) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        futures::stream::iter(0..n)
            .map(make)
            .buffer_unordered(parallel)
            .collect::<Vec<()>>()
            .await;
    }

    async fn store(&self) -> eventstore::EventStore {
        let client = async_nats::connect(testkit::nats_url())
            .await
            .expect("nats");
        let naming = eventstore::Naming::new(&self.prefix).expect("naming");
        eventstore::EventStore::open(client, naming, Default::default())
            .await
            .expect("store")
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(name: &str, mut millis: Vec<f64>) {
    millis.sort_by(f64::total_cmp);
    println!(
        "{name}: n={} p50={:.1} ms p99={:.1} ms max={:.1} ms",
        millis.len(),
        percentile(&millis, 0.5),
        percentile(&millis, 0.99),
        millis.last().copied().unwrap_or(f64::NAN)
    );
}

/// Completions at `rate`/s for `seconds`; the lag from each completion's append to its next
/// occurrence's append.
async fn recurrence(rate: u64, seconds: u64) {
    let app = start(&[]).await;
    let n = (rate * seconds) as usize;
    let ids: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    app.many(n, 64, |i| {
        let (app, ids) = (&app, ids.clone());
        async move {
            let created = app
                .post(
                    "/v1/tasks",
                    json!({"title": format!("Chore {i}"), "due_at": "2030-01-07T09:00:00Z",
                           "recurrence": {"rule": "FREQ=WEEKLY"}}),
                )
                .await;
            ids.lock()
                .unwrap()
                .push(created["id"].as_str().unwrap().to_owned());
        }
    })
    .await;
    let ids = ids.lock().unwrap().clone();
    let store = app.store().await;
    let head = store.head_position().await.expect("head");
    let mut events = Box::pin(
        store
            .follow(None, head + 1, Duration::from_secs(2))
            .await
            .expect("follow"),
    );
    let follower = tokio::spawn(async move {
        let mut completed: HashMap<domain::TaskId, DateTime<Utc>> = HashMap::new();
        let mut lags = Vec::new();
        while lags.len() < n {
            let Some(Ok(event)) = events.next().await else {
                break;
            };
            match &event.event {
                TaskEvent::Completed(_) => {
                    completed.insert(event.task_id, event.recorded_at);
                }
                TaskEvent::Created(c) => {
                    if let Some(done) = c.series.and_then(|s| completed.get(&s.series_id)) {
                        lags.push(
                            (event.recorded_at - *done).num_microseconds().unwrap_or(0) as f64
                                / 1000.0,
                        );
                    }
                }
                _ => {}
            }
        }
        lags
    });
    let started = Instant::now();
    let pace = Duration::from_secs_f64(1.0 / rate as f64);
    let permits = Arc::new(Semaphore::new(256));
    for (i, id) in ids.iter().enumerate() {
        tokio::time::sleep_until((started + pace * i as u32).into()).await;
        let permit = permits.clone().acquire_owned().await.unwrap();
        let (http, url, token, id) = (
            app.http.clone(),
            app.url.clone(),
            app.token.clone(),
            id.clone(),
        );
        tokio::spawn(async move {
            let _ = http
                .post(format!("{url}/v1/tasks/{id}/complete"))
                .bearer_auth(token)
                .send()
                .await;
            drop(permit);
        });
    }
    let sent = started.elapsed();
    let lags = tokio::time::timeout(Duration::from_secs(120), follower)
        .await
        .expect("every next occurrence within 2 minutes")
        .expect("follower");
    println!(
        "recurrence: {n} completions sent in {:.1} s ({:.0}/s)",
        sent.as_secs_f64(),
        n as f64 / sent.as_secs_f64()
    );
    report("completion -> next occurrence (append to append)", lags);
    let _ = app.stop.send(());
}

/// `pending` reminders an hour or more ahead, and `due` more spread over the next seconds:
/// how late after its time each of those fires.
async fn reminders(pending: u64, due: u64) {
    let app = start(&[]).await;
    let soon = Utc::now() + chrono::Duration::seconds(30 + (pending / 5_000) as i64);
    println!("reminders: creating {pending} tasks with a reminder an hour ahead…");
    let made = Instant::now();
    app.many(pending as usize, 64, |i| {
        let app = &app;
        async move {
            let at = Utc::now() + chrono::Duration::seconds(3600 + i as i64);
            app.post(
                "/v1/tasks",
                json!({"title": format!("Later {i}"), "reminders": [{"at": at.to_rfc3339()}]}),
            )
            .await;
        }
    })
    .await;
    println!("  created in {:.1} s", made.elapsed().as_secs_f64());
    let store = app.store().await;
    let head = store.head_position().await.expect("head");
    app.many(due as usize, 64, |i| {
        let app = &app;
        async move {
            let at = soon + chrono::Duration::milliseconds((i * 10_000 / due as usize) as i64);
            app.post(
                "/v1/tasks",
                json!({"title": format!("Soon {i}"), "reminders": [{"at": at.to_rfc3339()}]}),
            )
            .await;
        }
    })
    .await;
    let rss_before = rss_kib();
    let mut events = Box::pin(
        store
            .follow(None, head + 1, Duration::from_secs(2))
            .await
            .expect("follow"),
    );
    let mut late = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120 + (pending / 2_000));
    while (late.len() as u64) < due {
        let next = tokio::time::timeout_at(deadline, events.next()).await;
        let Ok(Some(Ok(event))) = next else { break };
        if let TaskEvent::ReminderDue(r) = &event.event {
            late.push(
                (event.recorded_at - r.remind_at)
                    .num_microseconds()
                    .unwrap_or(0) as f64
                    / 1000.0,
            );
        }
    }
    println!(
        "reminders: {pending} pending ahead, {} of {due} fired; process RSS {} MiB before the window, {} MiB after",
        late.len(),
        rss_before / 1024,
        rss_kib() / 1024
    );
    report("reminder time -> ReminderDue append", late);
    let _ = app.stop.send(());
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// `endpoints` endpoints of one user and `events` events: deliveries per second at a local
/// receiver that checks every signature.
async fn webhook_fanout(endpoints: u64, events: u64) {
    let app = start(&[("TASKMASTER_WEBHOOKS_ALLOW_PRIVATE", "true")]).await;
    let received = Arc::new(AtomicUsize::new(0));
    let bad = Arc::new(AtomicUsize::new(0));
    let secrets: Arc<std::sync::RwLock<HashMap<String, String>>> = Arc::default();
    let receiver = axum::Router::new().route(
        "/hook/{n}",
        axum::routing::post({
            let (received, bad, secrets) = (received.clone(), bad.clone(), secrets.clone());
            move |axum::extract::Path(n): axum::extract::Path<String>,
                  headers: axum::http::HeaderMap,
                  body: axum::body::Bytes| {
                let (received, bad, secrets) = (received.clone(), bad.clone(), secrets.clone());
                async move {
                    let h = |k: &str| {
                        headers
                            .get(k)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    let secret = secrets.read().unwrap().get(&n).cloned().unwrap_or_default();
                    let ok = webhooks::signature::verify(
                        &secret,
                        &h("webhook-id"),
                        h("webhook-timestamp").parse().unwrap_or(0),
                        &body,
                        &h("webhook-signature"),
                    );
                    if !ok {
                        bad.fetch_add(1, Ordering::Relaxed);
                    }
                    received.fetch_add(1, Ordering::Relaxed);
                    axum::http::StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, receiver).await });
    for n in 0..endpoints {
        let created = app
            .post(
                "/v1/webhooks",
                json!({"url": format!("http://{address}/hook/{n}")}),
            )
            .await;
        secrets.write().unwrap().insert(
            n.to_string(),
            created["secret"].as_str().unwrap().to_owned(),
        );
    }
    let started = Instant::now();
    app.many(events as usize, 64, |i| {
        let app = &app;
        async move {
            app.post("/v1/tasks", json!({"title": format!("Event {i}")}))
                .await;
        }
    })
    .await;
    let appended = started.elapsed();
    let expected = (endpoints * events) as usize;
    let deadline = Instant::now() + Duration::from_secs(300);
    while received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    let got = received.load(Ordering::Relaxed);
    println!(
        "webhooks: {got} of {expected} deliveries to {endpoints} endpoints in {:.2} s ({:.0}/s; events appended in {:.2} s); {} bad signatures",
        took.as_secs_f64(),
        got as f64 / took.as_secs_f64(),
        appended.as_secs_f64(),
        bad.load(Ordering::Relaxed)
    );
    let _ = app.stop.send(());
}

fn main() {
    let phase = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-') && a.parse::<f64>().is_err())
        .unwrap_or_else(|| "all".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        if phase == "recurrence" || phase == "all" {
            recurrence(arg("--rate", 1000), arg("--seconds", 5)).await;
        }
        if phase == "reminders" || phase == "all" {
            reminders(arg("--pending", 100_000), arg("--due", 1000)).await;
        }
        if phase == "webhooks" || phase == "all" {
            webhook_fanout(arg("--endpoints", 4), arg("--events", 2000)).await;
        }
    });
}
