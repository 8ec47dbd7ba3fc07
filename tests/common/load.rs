//! Clients that keep sending commands while a test breaks something under them, and the checks
//! of what they were told against the event log and the read model.
//!
//! Each client creates a task, starts it and completes it, again and again, as fast as it can.
//! It retries a command the way a well-behaved client does: after a 503, or when no answer came
//! (the connection was refused or cut), it sends the same command again with the same
//! `Idempotency-Key` after a short pause, so an attempt that was in fact stored is answered from
//! the log instead of appending a second event. Every attempt is journaled; the checks then hold
//! the answers against the log: every 2xx answer's event is there exactly once, where the answer
//! said, and nothing is there that no answer accounts for.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventstore::{EventStore, RecordedEvent};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// Longest any one HTTP request may take before a test calls it a hang. The store bounds each
/// JetStream request at 5 s, the database pool each connection wait at 3 s, and a command
/// makes at most a few of them.
pub const REQUEST_LIMIT: Duration = Duration::from_secs(20);

/// Pause before a client sends a failed command again.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// How long a client keeps retrying one command before giving up on its task.
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// One HTTP attempt of a command, as the client saw it.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub sent: Instant,
    pub answered: Instant,
    /// The status, or `None` when no answer came (transport error or [`REQUEST_LIMIT`]).
    pub status: Option<u16>,
    /// Whether an error answer was problem+json.
    pub problem_json: bool,
    /// The `Retry-After` header of the answer, if any.
    pub retry_after: Option<String>,
    /// The command's `Idempotency-Key` (which names it) and, for an error, the answer's body.
    pub key: String,
    pub body: Option<Value>,
    /// When the answer came, by the clock JetStream stamps events with.
    pub answered_at: chrono::DateTime<chrono::Utc>,
}

impl Attempt {
    /// Answered 2xx.
    pub fn succeeded(&self) -> bool {
        matches!(self.status, Some(200 | 201))
    }
}

/// A command answered 2xx.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The client that sent it (its user is `user<client>`).
    pub client: usize,
    /// The command's `Idempotency-Key`.
    pub key: String,
    pub task: String,
    pub event_type: &'static str,
    pub version: u64,
    pub position: u64,
    pub answered: Instant,
}

/// Everything the clients sent and were told.
#[derive(Debug, Default)]
pub struct Journal {
    pub attempts: Vec<Attempt>,
    pub accepted: Vec<Accepted>,
    /// Commands given up on (a 409, or an answer that is not 2xx/503), by task.
    pub abandoned: BTreeSet<String>,
}

impl Journal {
    /// Attempts by status (`"no answer"` for none), for the test's report.
    pub fn by_status(&self) -> BTreeMap<String, usize> {
        let mut by_status = BTreeMap::new();
        for attempt in &self.attempts {
            let status = attempt
                .status
                .map_or("no answer".to_owned(), |s| s.to_string());
            *by_status.entry(status).or_default() += 1;
        }
        by_status
    }

    /// The attempts that did not succeed.
    pub fn failed(&self) -> Vec<&Attempt> {
        self.attempts.iter().filter(|a| !a.succeeded()).collect()
    }

    /// The longest any attempt waited for its answer.
    pub fn slowest(&self) -> Duration {
        self.attempts
            .iter()
            .map(|a| a.answered - a.sent)
            .max()
            .unwrap_or_default()
    }

    /// How many commands were accepted with an answer that came after `instant`.
    pub fn accepted_after(&self, instant: Instant) -> usize {
        self.accepted
            .iter()
            .filter(|a| a.answered > instant)
            .count()
    }

    /// Asserts that commands went on as if nothing happened between `from` and `until` (while
    /// `what` was down): no attempt failed at all, and some were accepted meanwhile. Returns how
    /// many were.
    pub fn assert_unaffected(&self, from: Instant, until: Instant, what: &str) -> usize {
        assert!(
            self.failed().is_empty(),
            "commands failed while {what} was down: {:?}",
            self.by_status()
        );
        let during = self.accepted_after(from) - self.accepted_after(until);
        assert!(during > 0, "no command was accepted while {what} was down");
        during
    }

    /// The first attempt sent at or after `instant` that succeeded, as time after `instant`.
    pub fn first_success_sent_after(&self, instant: Instant) -> Option<Duration> {
        self.attempts
            .iter()
            .filter(|a| a.sent >= instant && a.succeeded())
            .map(|a| a.answered - instant)
            .min()
    }

    /// Every attempt of the task `attempt` belongs to, with times relative to `origin`: what
    /// to print when an attempt fails an assertion.
    pub fn story(&self, attempt: &Attempt, origin: Instant) -> Vec<String> {
        let task = attempt.key.rsplit_once('-').map_or("", |(task, _)| task);
        let at = |t: Instant| match t.checked_duration_since(origin) {
            Some(after) => format!("+{after:?}"),
            None => format!("-{:?}", origin - t),
        };
        self.attempts
            .iter()
            .filter(|a| a.key.starts_with(task))
            .map(|a| {
                format!(
                    "{} sent {} answered {} status {:?}",
                    a.key,
                    at(a.sent),
                    at(a.answered),
                    a.status
                )
            })
            .collect()
    }
}

/// Sends one command until it is answered 2xx, retrying a 503 or a missing answer with the same
/// `Idempotency-Key` after a short pause; returns the answer body, or `None` when the command
/// was refused otherwise or never succeeded.
pub async fn command(
    journal: &Mutex<Journal>,
    request: impl Fn() -> reqwest::RequestBuilder,
    key: &str,
) -> Option<Value> {
    let give_up = Instant::now() + GIVE_UP_AFTER;
    while Instant::now() < give_up {
        let sent = Instant::now();
        let outcome = request()
            .header("Idempotency-Key", key)
            .timeout(REQUEST_LIMIT)
            .send()
            .await;
        let answered = Instant::now();
        let (status, problem_json, retry_after, body) = match outcome {
            Ok(response) => {
                let status = response.status().as_u16();
                let header = |name: &str| super::header(&response, name);
                let problem_json =
                    header("content-type").as_deref() == Some("application/problem+json");
                let retry_after = header("retry-after");
                (
                    Some(status),
                    problem_json,
                    retry_after,
                    response.json::<Value>().await.ok(),
                )
            }
            Err(_) => (None, false, None, None),
        };
        journal.lock().unwrap().attempts.push(Attempt {
            sent,
            answered,
            status,
            problem_json,
            retry_after,
            key: key.to_owned(),
            body: body.clone().filter(|_| !matches!(status, Some(200 | 201))),
            answered_at: chrono::Utc::now(),
        });
        match status {
            Some(200 | 201) => return body,
            Some(503) | None => tokio::time::sleep(RETRY_PAUSE).await,
            _ => return None,
        }
    }
    None
}

/// A token of `user<client>`, signed with the tests' HS256 secret.
pub fn client_token(client: usize) -> String {
    let user = domain::UserId::parse(&format!("user{client}")).unwrap();
    api::auth::mint_hs256(
        super::SECRET.as_bytes(),
        &user,
        chrono::Utc::now().timestamp(),
        3600,
    )
}

/// One client: creates a task, starts it, completes it, and again, until `stop`.
pub async fn client_loop(
    address: SocketAddr,
    client: usize,
    journal: Arc<Mutex<Journal>>,
    stop: CancellationToken,
) {
    let http = reqwest::Client::new();
    let token = client_token(client);
    let url = |path: &str| format!("http://{address}{path}");
    let mut n = 0;
    while !stop.is_cancelled() {
        n += 1;
        let create_key = format!("c{client}-t{n}-create");
        let create = command(
            &journal,
            || {
                http.post(url("/v1/tasks"))
                    .bearer_auth(&token)
                    .json(&json!({ "title": format!("task {n} of client {client}"), "estimate_minutes": 30 }))
            },
            &create_key,
        )
        .await;
        let Some(created) = create else { continue };
        let id = created["id"].as_str().unwrap().to_owned();
        let record = |body: &Value, event_type: &'static str, key: &str| Accepted {
            client,
            key: key.to_owned(),
            task: id.clone(),
            event_type,
            version: body["version"].as_u64().unwrap(),
            position: body["position"].as_u64().unwrap(),
            answered: Instant::now(),
        };
        journal
            .lock()
            .unwrap()
            .accepted
            .push(record(&created, "TaskCreated", &create_key));
        for (action, event_type, body) in [
            ("start", "TaskStarted", None),
            (
                "complete",
                "TaskCompleted",
                Some(json!({ "actual_minutes": 25 })),
            ),
        ] {
            let key = format!("c{client}-t{n}-{action}");
            let answer = command(
                &journal,
                || {
                    let request = http
                        .post(url(&format!("/v1/tasks/{id}/{action}")))
                        .bearer_auth(&token);
                    match &body {
                        Some(body) => request.json(body),
                        None => request,
                    }
                },
                &key,
            )
            .await;
            match answer {
                Some(answer) => journal
                    .lock()
                    .unwrap()
                    .accepted
                    .push(record(&answer, event_type, &key)),
                None => {
                    journal.lock().unwrap().abandoned.insert(id.clone());
                    break;
                }
            }
        }
    }
}

/// `clients` client loops against `address`, journaling into one journal until stopped.
pub struct Load {
    pub journal: Arc<Mutex<Journal>>,
    stop: CancellationToken,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(address: SocketAddr, clients: usize) -> Self {
        let journal = Arc::new(Mutex::new(Journal::default()));
        let stop = CancellationToken::new();
        let clients = (0..clients)
            .map(|client| tokio::spawn(client_loop(address, client, journal.clone(), stop.clone())))
            .collect();
        Self {
            journal,
            stop,
            clients,
        }
    }

    /// How many commands have been accepted so far.
    pub fn accepted(&self) -> usize {
        self.journal.lock().unwrap().accepted.len()
    }

    /// Waits until `count` commands answered after `instant` have been accepted, at most
    /// `limit`; false when they were not.
    pub async fn until_accepted_after(
        &self,
        instant: Instant,
        count: usize,
        limit: Duration,
    ) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.journal.lock().unwrap().accepted_after(instant) >= count {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Stops the clients (each finishes the command it is on) and hands over the journal.
    pub async fn stop(self) -> Journal {
        self.stop.cancel();
        for client in self.clients {
            client.await.unwrap();
        }
        let mut journal = self.journal.lock().unwrap();
        std::mem::take(&mut *journal)
    }
}

/// The whole log up to `head`, by position; retried for up to 30 s while the store is not
/// answering (a server just restarted or elected).
pub async fn read_log(store: &EventStore, head: u64) -> BTreeMap<u64, RecordedEvent> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut logged = BTreeMap::new();
        let read = async {
            let mut events = Box::pin(store.read_from(None, 1).await?);
            while logged.len() < head as usize {
                match tokio::time::timeout(Duration::from_secs(5), events.next()).await {
                    Ok(Some(event)) => {
                        let event = event?;
                        logged.insert(event.position, event);
                    }
                    _ => return Err(eventstore::StoreError::Unavailable("no next event".into())),
                }
            }
            Ok::<_, eventstore::StoreError>(())
        };
        match read.await {
            Ok(()) => return logged,
            Err(error) => {
                assert!(Instant::now() < deadline, "reading the log: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// What [`check_log`] found beyond its assertions.
#[derive(Debug, Default)]
pub struct LogCheck {
    /// Events in the log.
    pub events: u64,
    /// Accepted commands that had already been stored by an earlier attempt answered with an
    /// error or not at all: the retry was answered from the log, and appended nothing.
    pub absorbed: usize,
}

/// Holds the journal against the log: no gap, no command appended twice, every accepted
/// command's event where its answer said (position, type, the task's version), and the log
/// holding exactly what was accepted for every task (only a task given up on may hold more,
/// after what was accepted).
pub fn check_log(journal: &Journal, logged: &BTreeMap<u64, RecordedEvent>, head: u64) -> LogCheck {
    assert_eq!(logged.len() as u64, head, "no gaps in the stream");
    let command_ids: BTreeSet<&str> = logged
        .values()
        .filter_map(|e| e.command_id.as_deref())
        .collect();
    assert_eq!(command_ids.len(), logged.len(), "a command appended twice");
    let mut per_task: BTreeMap<String, Vec<&RecordedEvent>> = BTreeMap::new();
    for event in logged.values() {
        per_task
            .entry(event.task_id.to_string())
            .or_default()
            .push(event);
    }
    for accepted in &journal.accepted {
        let event = logged
            .get(&accepted.position)
            .unwrap_or_else(|| panic!("accepted but not in the log: {accepted:?}"));
        assert_eq!(event.task_id.to_string(), accepted.task, "{accepted:?}");
        assert_eq!(event.event_type, accepted.event_type, "{accepted:?}");
        let task_events = &per_task[&accepted.task];
        assert_eq!(
            task_events[accepted.version as usize - 1].position,
            accepted.position,
            "the answer's version is the event's place in the task: {accepted:?}"
        );
    }
    let mut accepted_per_task: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for accepted in &journal.accepted {
        accepted_per_task
            .entry(&accepted.task)
            .or_default()
            .push(accepted.position);
    }
    for (task, positions) in &accepted_per_task {
        let in_log: Vec<u64> = per_task[*task].iter().map(|e| e.position).collect();
        if journal.abandoned.contains(*task) {
            assert!(
                in_log.starts_with(positions),
                "{task}: {in_log:?} vs {positions:?}"
            );
        } else {
            assert_eq!(
                &in_log, positions,
                "{task}: the log holds what was accepted"
            );
        }
    }
    // A create stored by an attempt whose answer was lost, then given up on, would leave a task
    // nobody was told about; the clients retry until they succeed, so there is none.
    assert_eq!(
        per_task.len(),
        accepted_per_task.len(),
        "a task in the log that no create was accepted for"
    );
    let absorbed = journal
        .accepted
        .iter()
        .filter(|accepted| {
            let stored = logged[&accepted.position].recorded_at;
            journal
                .attempts
                .iter()
                .any(|a| a.key == accepted.key && !a.succeeded() && a.answered_at > stored)
        })
        .count();
    LogCheck {
        events: head,
        absorbed,
    }
}

/// Waits (at most `limit`) until the read model of `pool` has applied the log up to
/// `position` (its lowest partition checkpoint); how long that took.
pub async fn wait_for_read_model(pool: &sqlx::PgPool, position: u64, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let reached = projections::checkpoint::load(pool, projections::TASKS_PROJECTION)
            .await
            .unwrap_or(0);
        if reached >= position {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "the projector did not reach {position} within {limit:?}: partitions at {:?}",
            projections::checkpoint::load_partitions(pool, projections::TASKS_PROJECTION).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The log's head now (through `nats_url`, under `prefix`), and how long the read model of
/// `database_url` then takes to reach it (at most `limit`): how far a recovering projector is
/// behind, in time.
pub async fn catch_up(
    nats_url: &str,
    prefix: &str,
    database_url: &str,
    limit: Duration,
) -> (u64, Duration) {
    let client = async_nats::connect(nats_url).await.unwrap();
    let naming = eventstore::Naming::new(prefix).unwrap();
    let store = EventStore::open(client, naming, eventstore::store::StoreOptions::default())
        .await
        .unwrap();
    let head = store.head_position().await.unwrap();
    let pool = projections::database::connect(database_url, 2)
        .await
        .unwrap();
    let took = wait_for_read_model(&pool, head, limit).await;
    pool.close().await;
    (head, took)
}

/// Waits (at most `limit`) until the read model of `pool` has applied the log up to `head`,
/// then holds it against the log: one row version per event (so none was applied twice or
/// skipped) and `verify` clean, through the library and through the `taskmaster verify`
/// command `verify_cli` (already pointed at the database and NATS).
pub async fn check_read_model(
    pool: &sqlx::PgPool,
    store: &EventStore,
    head: u64,
    limit: Duration,
    mut verify_cli: std::process::Command,
) {
    wait_for_read_model(pool, head, limit).await;
    let rows = projections::task_rows::load_all(pool).await.unwrap();
    let applied: u64 = rows.values().map(|r| r.task.version).sum();
    assert_eq!(applied, head, "every event applied exactly once");
    let report = projections::verify::verify(pool, store).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.differences);
    let verify = verify_cli.arg("verify").output().unwrap();
    assert!(
        verify.status.success(),
        "taskmaster verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

/// The whole check after a fault: the log read from `nats_url` (one server, or a cluster's
/// comma-separated list) under `prefix` against the journal ([`check_log`]), then the read
/// model of `database_url` against the log ([`check_read_model`], `taskmaster verify` run on
/// the same servers).
pub async fn check_all(
    journal: &Journal,
    nats_url: &str,
    prefix: &str,
    database_url: &str,
) -> LogCheck {
    let servers: Vec<&str> = nats_url.split(',').collect();
    let client = async_nats::ConnectOptions::new()
        .name("test-checks")
        .connect(servers)
        .await
        .unwrap();
    let naming = eventstore::Naming::new(prefix).unwrap();
    let store = EventStore::open(client, naming, eventstore::store::StoreOptions::default())
        .await
        .unwrap();
    let head = store.head_position().await.unwrap();
    let logged = read_log(&store, head).await;
    let checked = check_log(journal, &logged, head);
    let pool = projections::database::connect(database_url, 2)
        .await
        .unwrap();
    let mut verify = super::cli(database_url, prefix);
    verify.env("TASKMASTER_NATS_URL", nats_url);
    check_read_model(&pool, &store, head, Duration::from_secs(60), verify).await;
    pool.close().await;
    checked
}
