//! A Redis connection for callers to whom Redis only saves work (the insights cache, the
//! rate limiter), built never to be the reason a request waits:
//! - it is made lazily, on first use, so a process whose Redis was down at start comes up
//!   anyway;
//! - every call is bounded by a timeout ([`LazyRedis::call`]);
//! - a call that finds Redis unreachable (refused, dropped, timed out) opens a breaker: for
//!   [`RECONNECT_PAUSE`] every call fails at once instead of each waiting out its timeout,
//!   then one call tries again (and opens it again if Redis is still away). Without it, a
//!   Redis outage under load cost each request the full timeout, and the API's throughput
//!   fell from thousands of commands a second to a few dozen;
//! - once made, [`ConnectionManager`] reconnects by itself after Redis comes back.

use std::future::Future;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::Mutex;

/// How long after a failure calls fail at once instead of trying Redis again.
pub const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// The connection, once made, and when Redis was last found unreachable.
#[derive(Default)]
struct State {
    manager: Option<ConnectionManager>,
    /// Set by a failure; calls fail at once until [`RECONNECT_PAUSE`] has passed since.
    failed_at: Option<Instant>,
}

/// Why a call failed, as far as the breaker is concerned.
#[derive(Debug)]
enum Failure {
    /// The breaker refused the call: Redis was not asked.
    Refused,
    /// Redis could not be reached, or did not answer in time: opens the breaker.
    Unreachable(String),
    /// Redis answered, with an error (a script error, say): it is there, so the breaker
    /// closes.
    Answered(String),
}

impl State {
    /// Whether the breaker is open at `now`. When it has just closed, it is opened again for
    /// everyone but the caller, who tries Redis: one probe per pause, not a stampede.
    fn refuses(&mut self, now: Instant) -> bool {
        match self.failed_at {
            Some(at) if now.duration_since(at) < RECONNECT_PAUSE => true,
            Some(_) => {
                self.failed_at = Some(now);
                false
            }
            None => false,
        }
    }

    /// Records how a call that was let through went (a refused call leaves the breaker as it
    /// is): Redis unreachable opens it, any answer closes it.
    fn settle(&mut self, failure: Option<&Failure>, now: Instant) {
        match failure {
            Some(Failure::Refused) => {}
            Some(Failure::Unreachable(_)) => self.failed_at = Some(now),
            Some(Failure::Answered(_)) | None => self.failed_at = None,
        }
    }
}

/// A lazily made, bounded Redis connection (see the module docs).
pub struct LazyRedis {
    client: redis::Client,
    /// Bound on connecting and on each call.
    timeout: Duration,
    state: Mutex<State>,
}

impl std::fmt::Debug for LazyRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the client: its connection info may hold a password.
        f.debug_struct("LazyRedis")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Whether a failed call means Redis is unreachable (rather than, say, a script error).
fn unreachable(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
}

impl LazyRedis {
    /// A connection to `client`, made on first use, each step bounded by `timeout`.
    pub fn new(client: redis::Client, timeout: Duration) -> Self {
        Self {
            client,
            timeout,
            state: Mutex::new(State::default()),
        }
    }

    /// Runs `call` on the connection, bounded by the timeout. Fails at once while the breaker
    /// is open; a failure that says Redis is unreachable, or no answer in time, opens it.
    pub async fn call<T, F, Fut>(&self, call: F) -> Result<T, String>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, redis::RedisError>>,
    {
        let bounded = async {
            let connection = self.connection().await?;
            call(connection).await.map_err(|error| {
                if unreachable(&error) {
                    Failure::Unreachable(error.to_string())
                } else {
                    Failure::Answered(error.to_string())
                }
            })
        };
        let outcome = match tokio::time::timeout(self.timeout, bounded).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Failure::Unreachable(format!(
                "no answer within {:?}",
                self.timeout
            ))),
        };
        self.state
            .lock()
            .await
            .settle(outcome.as_ref().err(), Instant::now());
        outcome.map_err(|failure| match failure {
            Failure::Refused => "Redis unreachable a moment ago; not asking again yet".into(),
            Failure::Unreachable(error) | Failure::Answered(error) => error,
        })
    }

    /// The connection, made now if there is none; [`Failure::Refused`] while the breaker is
    /// open (the failure's cause is already logged by whoever met it).
    async fn connection(&self) -> Result<ConnectionManager, Failure> {
        let mut state = self.state.lock().await;
        if state.refuses(Instant::now()) {
            return Err(Failure::Refused);
        }
        if let Some(manager) = &state.manager {
            return Ok(manager.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout)
            .set_number_of_retries(1)
            .set_factor(50)
            .set_max_delay(1_000);
        let connecting = ConnectionManager::new_with_config(self.client.clone(), config);
        match tokio::time::timeout(self.timeout, connecting).await {
            Ok(Ok(manager)) => {
                state.manager = Some(manager.clone());
                Ok(manager)
            }
            Ok(Err(error)) => Err(Failure::Unreachable(error.to_string())),
            Err(_) => Err(Failure::Unreachable(format!(
                "no connection within {:?}",
                self.timeout
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_refuses_for_a_pause_after_a_failure_then_lets_one_caller_try() {
        let start = Instant::now();
        let mut state = State::default();
        assert!(!state.refuses(start), "closed until something fails");
        state.failed_at = Some(start);
        assert!(state.refuses(start + RECONNECT_PAUSE / 2));
        let later = start + RECONNECT_PAUSE;
        assert!(
            !state.refuses(later),
            "the first caller after the pause tries"
        );
        assert!(
            state.refuses(later + Duration::from_millis(1)),
            "the others wait for its outcome"
        );
    }

    #[test]
    fn unreachable_opens_the_breaker_an_answer_closes_it_and_a_refusal_leaves_it() {
        let start = Instant::now();
        let mut state = State::default();
        state.settle(Some(&Failure::Unreachable("refused".into())), start);
        assert!(state.refuses(start));
        state.settle(Some(&Failure::Refused), start);
        assert_eq!(state.failed_at, Some(start), "a refused call asked nobody");
        // The probe after the pause finds Redis there, if answering with an error.
        let probe = start + RECONNECT_PAUSE;
        assert!(!state.refuses(probe));
        state.settle(Some(&Failure::Answered("NOSCRIPT".into())), probe);
        assert!(!state.refuses(probe), "Redis answered: closed");
        state.settle(Some(&Failure::Unreachable("timeout".into())), probe);
        state.settle(None, probe);
        assert!(!state.refuses(probe), "a success closes it too");
    }
}
