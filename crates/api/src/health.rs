//! Readiness checks of the dependencies, each bounded in time and reported separately.
//!
//! NATS and Postgres are required: without them the process is not ready (503). Redis only
//! caches, so a Redis outage reports `degraded` but keeps the process ready. A read replica,
//! when configured, is optional the same way: while it is down, queries are answered by the
//! primary, so the process stays ready and reports `degraded`.

use std::time::{Duration, Instant};

use projections::ReadSource;
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
    /// Where queries read, when this process answers them: its replica, if configured, is
    /// checked and reported.
    pub reads: Option<ReadSource>,
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
    /// A replica only: how many events its read model is behind the primary's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_events: Option<u64>,
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
    /// The read replica, when one is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<Check>,
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
        lag_events: None,
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
        let replica = async {
            let reads = self.reads.as_ref().filter(|reads| reads.has_replica())?;
            let mut lag_events = None;
            let mut check = check(false, async {
                match reads.check_replica().await {
                    Some(Ok(status)) => {
                        lag_events = Some(status.lag_events);
                        Ok(())
                    }
                    Some(Err(error)) => Err(error.to_string()),
                    None => Ok(()),
                }
            })
            .await;
            check.lag_events = lag_events;
            Some(check)
        };
        let (nats, postgres, redis, replica) = tokio::join!(nats, postgres, redis, replica);
        let mut checks = vec![&nats, &postgres, &redis];
        checks.extend(replica.as_ref());
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
            replica,
        }
    }
}
