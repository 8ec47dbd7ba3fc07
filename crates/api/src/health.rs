//! Readiness checks of the three dependencies, each bounded in time and reported separately.
//!
//! NATS and Postgres are required: without them the process is not ready (503). Redis only
//! caches, so a Redis outage reports `degraded` but keeps the process ready.

use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

/// How long one check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Handles to the dependencies.
#[derive(Debug, Clone)]
pub struct HealthProbes {
    /// NATS.
    pub nats: async_nats::Client,
    /// Postgres.
    pub postgres: PgPool,
    /// Redis.
    pub redis: redis::Client,
}

/// The result of one check.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Check {
    /// `up` or `down`.
    pub status: &'static str,
    /// Whether readiness depends on it.
    pub required: bool,
    /// How long the check took.
    pub latency_ms: f64,
    /// Why it is down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The readiness report.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready`, `degraded` (an optional dependency is down) or `unavailable`.
    pub status: &'static str,
    /// NATS JetStream.
    pub nats: Check,
    /// PostgreSQL.
    pub postgres: Check,
    /// Redis.
    pub redis: Check,
}

async fn check<F, E>(required: bool, probe: F) -> Check
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let started = Instant::now();
    let result = tokio::time::timeout(CHECK_TIMEOUT, probe).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let error = match result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("no answer within {CHECK_TIMEOUT:?}")),
    };
    Check {
        status: if error.is_none() { "up" } else { "down" },
        required,
        latency_ms,
        error,
    }
}

impl HealthProbes {
    /// Checks every dependency concurrently.
    pub async fn readiness(&self) -> Readiness {
        let nats = check(true, async {
            if self.nats.connection_state() != async_nats::connection::State::Connected {
                return Err("not connected".to_owned());
            }
            self.nats.flush().await.map_err(|e| e.to_string())
        });
        let postgres = check(true, async {
            sqlx::query("SELECT 1")
                .execute(&self.postgres)
                .await
                .map(|_| ())
        });
        let redis = check(false, async {
            let mut connection = self.redis.get_multiplexed_async_connection().await?;
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
                .map(|_| ())
        });
        let (nats, postgres, redis) = tokio::join!(nats, postgres, redis);
        let checks = [&nats, &postgres, &redis];
        let status = if checks.iter().any(|c| c.required && c.error.is_some()) {
            "unavailable"
        } else if checks.iter().any(|c| c.error.is_some()) {
            "degraded"
        } else {
            "ready"
        };
        Readiness {
            status,
            nats,
            postgres,
            redis,
        }
    }
}
