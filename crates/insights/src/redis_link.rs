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
                let opens = unreachable(&error);
                (error.to_string(), opens)
            })
        };
        let outcome = match tokio::time::timeout(self.timeout, bounded).await {
            Ok(outcome) => outcome,
            Err(_) => Err((format!("no answer within {:?}", self.timeout), true)),
        };
        let mut state = self.state.lock().await;
        match outcome {
            Ok(value) => {
                state.failed_at = None;
                Ok(value)
            }
            Err((error, opens)) => {
                if opens {
                    state.failed_at = Some(Instant::now());
                }
                Err(error)
            }
        }
    }

    /// The connection, made now if there is none; an error while the breaker is open (the
    /// failure's cause is already logged by whoever met it).
    async fn connection(&self) -> Result<ConnectionManager, (String, bool)> {
        let mut state = self.state.lock().await;
        if state.refuses(Instant::now()) {
            return Err((
                "Redis unreachable a moment ago; not asking again yet".into(),
                false,
            ));
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
            Ok(Err(error)) => Err((error.to_string(), true)),
            Err(_) => Err((format!("no connection within {:?}", self.timeout), true)),
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
}
