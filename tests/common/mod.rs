//! A taskmaster instance per test: real NATS (own prefix), real Postgres (own database,
//! created by the application itself), served on a free port.

#![allow(dead_code)]

pub mod load;
pub mod nats_server;
pub mod postgres_server;
pub mod redis_server;

use std::collections::HashMap;
use std::net::SocketAddr;

use serde_json::{json, Value};
use taskmaster::{Application, Roles, Settings};
use testkit::{NatsScope, RedisKeys, TestDatabase};
use tokio::sync::oneshot;

/// The `taskmaster` binary, pointed at a database and a NATS prefix.
pub fn cli(database_url: &str, prefix: &str) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_taskmaster"));
    command
        .env_remove("TASKMASTER_ENV")
        .env("DATABASE_URL", database_url)
        .env("TASKMASTER_NATS_PREFIX", prefix)
        .env("TASKMASTER_NATS_URL", testkit::nats_url());
    command
}

pub const SECRET: &str = "end-to-end-test-secret-0123456789abcdef";

pub struct TestApp {
    pub address: SocketAddr,
    pub http: reqwest::Client,
    pub prefix: String,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _db: TestDatabase,
    _nats: NatsScope,
    /// The insights the instance cached in the shared Redis, removed afterwards.
    _redis: RedisKeys,
}

/// Settings of a test instance: the shared NATS and Redis, a free port, the tests' secret, a
/// small pool, then `vars` over them: the test's own database (always), prefix or servers,
/// and its options.
pub fn test_settings<'a>(vars: impl IntoIterator<Item = (&'a str, String)>) -> Settings {
    let mut all: HashMap<String, String> = HashMap::from([
        ("TASKMASTER_NATS_URL".into(), testkit::nats_url()),
        ("REDIS_URL".into(), testkit::redis_url()),
        ("TASKMASTER_HTTP_ADDR".into(), "127.0.0.1:0".into()),
        ("TASKMASTER_JWT_SECRET".into(), SECRET.into()),
        ("TASKMASTER_READ_WAIT_MS".into(), "5000".into()),
        // Tests run in parallel against one Postgres: keep each instance's pool small.
        ("TASKMASTER_DATABASE_MAX_CONNECTIONS".into(), "4".into()),
    ]);
    for (name, value) in vars {
        all.insert(name.into(), value);
    }
    Settings::from_lookup(|name| all.get(name).cloned()).expect("test settings")
}

pub fn settings_for(db: &TestDatabase, nats: &NatsScope, extra: &[(&str, &str)]) -> Settings {
    test_settings(
        [
            ("DATABASE_URL", db.url.clone()),
            ("TASKMASTER_NATS_PREFIX", nats.prefix.clone()),
        ]
        .into_iter()
        .chain(
            extra
                .iter()
                .map(|(name, value)| (*name, (*value).to_owned())),
        ),
    )
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    pub async fn spawn_with(extra: &[(&str, &str)]) -> Self {
        // A database that does not exist yet: the application creates it.
        Self::spawn_on(TestDatabase::planned(), extra).await
    }

    /// An instance on `db` (planned or created), for tests that must know its name before
    /// the application starts (a replica's URL names it too).
    pub async fn spawn_on(db: TestDatabase, extra: &[(&str, &str)]) -> Self {
        Self::spawn_roles(db, Roles::all(), extra).await
    }

    pub async fn spawn_roles(db: TestDatabase, roles: Roles, extra: &[(&str, &str)]) -> Self {
        let nats = NatsScope::new();
        let settings = settings_for(&db, &nats, extra);
        let app = Application::build(&settings, roles)
            .await
            .expect("the application builds");
        let address = app.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Self {
            address,
            http: reqwest::Client::new(),
            prefix: nats.prefix.clone(),
            stop: Some(stop),
            server: Some(server),
            _redis: RedisKeys::new(&nats.prefix),
            _db: db,
            _nats: nats,
        }
    }

    /// The `taskmaster` binary on this instance's database and prefix.
    pub fn cli(&self) -> std::process::Command {
        cli(&self._db.url, &self.prefix)
    }

    /// The URL of this instance's database.
    pub fn database_url(&self) -> &str {
        &self._db.url
    }

    /// The metrics exposition of this instance.
    pub async fn metrics(&self) -> String {
        let response = self.http.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    }

    /// The OpenAPI document this instance serves.
    pub async fn openapi(&self) -> Value {
        let response = self
            .http
            .get(self.url("/openapi.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub fn token(&self, user: &str) -> String {
        let user = domain::UserId::parse(user).unwrap();
        api::auth::mint_hs256(
            SECRET.as_bytes(),
            &user,
            chrono::Utc::now().timestamp(),
            3600,
        )
    }

    pub async fn create(&self, token: &str, body: Value) -> reqwest::Response {
        self.http
            .post(self.url("/v1/tasks"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Creates a task and returns `(id, version, position)`.
    pub async fn create_ok(&self, token: &str, title: &str) -> (String, u64, u64) {
        let response = self.create(token, json!({ "title": title })).await;
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        (
            body["id"].as_str().unwrap().to_owned(),
            body["version"].as_u64().unwrap(),
            body["position"].as_u64().unwrap(),
        )
    }

    /// Creates a task from `body`, completes it with `actual_minutes`, and returns the
    /// completion's position.
    pub async fn create_and_complete(&self, token: &str, body: Value, actual_minutes: u32) -> u64 {
        let created = self.create(token, body).await;
        assert_eq!(created.status(), 201);
        let id = created.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let done = self
            .http
            .post(self.url(&format!("/v1/tasks/{id}/complete")))
            .bearer_auth(token)
            .json(&json!({ "actual_minutes": actual_minutes }))
            .send()
            .await
            .unwrap();
        assert_eq!(done.status(), 200);
        done.json::<Value>().await.unwrap()["position"]
            .as_u64()
            .unwrap()
    }

    pub async fn get_task(&self, token: &str, id: &str, min_position: u64) -> reqwest::Response {
        self.http
            .get(self.url(&format!("/v1/tasks/{id}")))
            .bearer_auth(token)
            .header("Tm-Min-Position", min_position.to_string())
            .send()
            .await
            .unwrap()
    }

    /// A task's history, as JSON (asserting 200).
    pub async fn history(&self, token: &str, id: &str) -> Value {
        let response = self
            .http
            .get(self.url(&format!("/v1/tasks/{id}/history")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Runs `taskmaster verify` on this instance and asserts the read model equals the log.
    pub fn assert_verify_clean(&self) {
        let verify = self.cli().arg("verify").output().unwrap();
        assert!(
            verify.status.success(),
            "verify: {}{}",
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        );
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// Roles of taskmaster in the test's process on `settings` (their own services and ports, as
/// a deployment would have them), served until [`RunningApp::stop`].
pub struct RunningApp {
    pub address: SocketAddr,
    stop: tokio_util::sync::CancellationToken,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningApp {
    pub async fn start(settings: &Settings, roles: Roles) -> Self {
        let app = Application::build(settings, roles)
            .await
            .expect("taskmaster builds");
        let address = app.local_addr().unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(app.run_until_stopped({
            let stop = stop.clone();
            async move { stop.cancelled().await }
        }));
        Self {
            address,
            stop,
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Stops it gracefully; the stop must succeed (every role ends cleanly).
    pub async fn stop(self) {
        self.stop.cancel();
        self.server
            .await
            .unwrap()
            .expect("taskmaster stops cleanly");
    }
}

/// A header of `response` as text, if present and readable.
pub fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `path` opened for appending (created if missing): the log file of a process a test runs.
pub fn append_log(path: &std::path::Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
}

/// SIGKILLs the process in `child`, if any, and reaps it: gone at once, without a goodbye to
/// anyone.
pub fn kill(child: &mut Option<std::process::Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The last `lines` lines of the log at `path`, for failure messages.
pub fn log_tail(path: &std::path::Path, lines: usize) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Asserts a problem+json answer with the given status and returns its body.
pub async fn problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status, "unexpected status");
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(body["type"].is_string() && body["title"].is_string() && body["detail"].is_string());
    body
}
