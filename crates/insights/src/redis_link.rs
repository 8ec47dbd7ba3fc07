//! A Redis connection for callers to whom Redis only saves work (the insights cache, the
//! rate limiter), built never to be the reason a request waits:
//! - it is made lazily, on first use, so a process whose Redis was down at start comes up
//!   anyway;
//! - after a failed attempt the next one waits [`RECONNECT_PAUSE`], so requests during an
//!   outage fail at once instead of each paying a connection timeout;
//! - once made, [`ConnectionManager`] reconnects by itself after Redis comes back.

use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::Mutex;

/// How long after a failed connection attempt calls fail at once instead of trying again.
pub const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// The connection, once made, and when the last attempt failed.
#[derive(Default)]
struct State {
    manager: Option<ConnectionManager>,
    failed_at: Option<Instant>,
}

/// A lazily made, bounded Redis connection (see the module docs).
pub struct LazyRedis {
    client: redis::Client,
    /// Bound on connecting and on each response.
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

impl LazyRedis {
    /// A connection to `client`, made on first use, each step bounded by `timeout`.
    pub fn new(client: redis::Client, timeout: Duration) -> Self {
        Self {
            client,
            timeout,
            state: Mutex::new(State::default()),
        }
    }

    /// The connection, made now if there is none (and the last attempt is not too recent);
    /// the error says why there is none.
    pub async fn connection(&self) -> Result<ConnectionManager, String> {
        let mut state = self.state.lock().await;
        if let Some(manager) = &state.manager {
            return Ok(manager.clone());
        }
        if state
            .failed_at
            .is_some_and(|at| at.elapsed() < RECONNECT_PAUSE)
        {
            return Err("not connected (last attempt failed just now)".into());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout)
            .set_number_of_retries(1)
            .set_factor(50)
            .set_max_delay(1_000);
        let connecting = ConnectionManager::new_with_config(self.client.clone(), config);
        let outcome = match tokio::time::timeout(self.timeout, connecting).await {
            Ok(Ok(manager)) => Ok(manager),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("no connection within {:?}", self.timeout)),
        };
        match &outcome {
            Ok(manager) => {
                state.manager = Some(manager.clone());
                state.failed_at = None;
            }
            Err(_) => state.failed_at = Some(Instant::now()),
        }
        outcome
    }
}
