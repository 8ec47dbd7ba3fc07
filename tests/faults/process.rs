//! The taskmaster process itself SIGKILLed mid-load and started again.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use testkit::{NatsScope, RedisKeys, TestDatabase};

use crate::common::load::{catch_up, check_all, Load};
use crate::common::postgres_server::free_port;
use crate::{secs, SERIAL};

/// `taskmaster serve` (every role) as its own process on a fixed port, logging to a file;
/// SIGKILLed on drop.
struct Server {
    db_url: String,
    prefix: String,
    address: SocketAddr,
    log: PathBuf,
    child: Option<Child>,
}

impl Server {
    /// Starts the process and waits until `/health/ready` answers 200.
    async fn start(&mut self) {
        assert!(self.child.is_none());
        let log = crate::common::append_log(&self.log);
        let child = crate::common::cli(&self.db_url, &self.prefix)
            .args(["serve", "--roles", "api,projector,insights,ml,automation"])
            .env("TASKMASTER_HTTP_ADDR", self.address.to_string())
            .env("TASKMASTER_JWT_SECRET", crate::common::SECRET)
            .env("REDIS_URL", testkit::redis_url())
            .env("TASKMASTER_DATABASE_MAX_CONNECTIONS", "4")
            .env("TASKMASTER_ML_RETRAIN_AFTER", "1000000")
            .env("TASKMASTER_RATE_LIMIT_USER", "0")
            .env("TASKMASTER_RATE_LIMIT_IP", "0")
            .env("RUST_LOG", "info,sqlx=warn,async_nats=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the taskmaster binary starts");
        self.child = Some(child);
        let http = reqwest::Client::new();
        let url = format!("http://{}/health/ready", self.address);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = http
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ready {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("taskmaster exited with {status}:\n{}", self.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "taskmaster was not ready within 60 s:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no graceful stop, no batch committed, no lease handed back.
    fn kill(&mut self) {
        crate::common::kill(&mut self.child);
    }

    fn log_tail(&self) -> String {
        crate::common::log_tail(&self.log, 30)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taskmaster_sigkilled_mid_load_and_restarted_loses_no_acknowledged_command_and_applies_none_twice(
) {
    let _serial = SERIAL.lock().await;
    let db = TestDatabase::planned();
    let nats = NatsScope::new();
    let _keys = RedisKeys::new(&nats.prefix);
    let mut server = Server {
        db_url: db.url.clone(),
        prefix: nats.prefix.clone(),
        address: SocketAddr::from(([127, 0, 0, 1], free_port())),
        log: std::env::temp_dir().join(format!("taskmaster-{}.log", nats.prefix)),
        child: None,
    };
    server.start().await;
    let load = Load::start(server.address, crate::CLIENTS);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = load.accepted();
    assert!(before > 0, "no command succeeded before the kill");

    server.kill();
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let restarting = Instant::now();
    server.start().await;
    let ready = Instant::now();
    // The read model waits for the killed process's partition leases to lapse, then catches up
    // with everything appended until now.
    let (head_at_restart, _) = catch_up(
        &testkit::nats_url(),
        &nats.prefix,
        &db.url,
        Duration::from_secs(60),
    )
    .await;
    let caught_up_after_kill = killed.elapsed();
    assert!(
        load.until_accepted_after(ready, 30, Duration::from_secs(60))
            .await,
        "commands did not succeed again after the restart:\n{}",
        server.log_tail()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let journal = load.stop().await;

    // While the process was gone, requests found nobody (no answer); once it was back, they
    // succeeded; a 503 is allowed only while it was starting. Never a 500.
    for attempt in journal.failed() {
        assert!(
            attempt.status.is_none() || (attempt.status == Some(503) && attempt.problem_json),
            "a command failed with {:?}: {attempt:?}; its task's attempts: {:#?}",
            attempt.status,
            journal.story(attempt, killed)
        );
    }
    let unanswered = journal
        .attempts
        .iter()
        .filter(|a| a.status.is_none())
        .count();
    let first_success = journal.first_success_sent_after(killed).unwrap();

    // Every acknowledged command is in the log exactly once and in the read model; no event
    // was applied twice, although the killed process's last batch and leases were cut off.
    let checked = check_all(&journal, &testkit::nats_url(), &nats.prefix, &db.url).await;
    let pool = projections::database::connect(&db.url, 2).await.unwrap();
    let rows = projections::task_rows::load_all(&pool).await.unwrap();
    for accepted in &journal.accepted {
        let row = rows
            .values()
            .find(|r| r.task.id.to_string() == accepted.task)
            .unwrap_or_else(|| panic!("an accepted task is not in the read model: {accepted:?}"));
        assert!(row.task.version >= accepted.version, "{accepted:?}");
    }
    pool.close().await;

    eprintln!(
        "FIGURES process: SIGKILLed after {before} accepted commands, started again after 1 s; \
         ready {} after the new start ({} after the kill); first command sent after the kill \
         answered 2xx after {}; {unanswered} attempts unanswered while it was down, attempts \
         by status {:?}; the read model caught up with the {head_at_restart} events appended \
         until the restart {} after the kill (the killed process's partition leases lapse \
         first); {} commands accepted, {} events, \
         lost 0, doubled 0 ({} retries answered from the log)",
        secs(ready - restarting),
        secs(ready - killed),
        secs(first_success),
        journal.by_status(),
        secs(caught_up_after_kill),
        journal.accepted.len(),
        checked.events,
        checked.absorbed,
    );
}
