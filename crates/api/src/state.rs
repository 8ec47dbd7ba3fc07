//! Shared state of the HTTP handlers. Built once by the application and cloned per request
//! (every field is a cheap handle).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use eventstore::EventStore;
use insights::InsightsService;
use projections::ReadSource;
use telemetry::Metrics;

use crate::auth::TokenVerifier;
use crate::health::HealthProbes;
use crate::rate_limit::RateLimiter;

/// Timeouts of the API. (Its limits on input are constants in [`crate::limits`], which the
/// OpenAPI document states.)
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// How long a query with `Tm-Min-Position` waits for the read model before answering 504.
    pub read_wait_timeout: Duration,
    /// Which webhook URLs may be registered (SSRF protection).
    pub webhook_targets: webhooks::TargetPolicy,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            read_wait_timeout: Duration::from_secs(5),
            webhook_targets: webhooks::TargetPolicy {
                allow_private: false,
            },
        }
    }
}

/// State of the task endpoints.
#[derive(Debug, Clone)]
pub struct AppState {
    /// How commands are executed: the path the automation runtime shares.
    pub commands: commands::CommandPath,
    /// The event store, for what reads the log directly (history, time travel).
    pub store: Arc<EventStore>,
    /// The model version this process serves, swapped when a better one is published.
    pub models: ml::ServingModel,
    /// Where queries read (the primary, or a replica in front of it) and the position
    /// `Tm-Min-Position` waits on there.
    pub reads: ReadSource,
    /// Insights: the Redis cache in front of the computation from the read model.
    pub insights: Arc<InsightsService>,
    /// Bearer token verification.
    pub verifier: Arc<TokenVerifier>,
    /// Metrics of the process.
    pub metrics: Arc<Metrics>,
    /// Request limits per user and per client address, shared across replicas in Redis.
    pub rate_limiter: Arc<RateLimiter>,
    /// Limits and timeouts.
    pub config: Arc<ApiConfig>,
    /// Cancelled when the process shuts down: ends long-lived responses (the live feed), so
    /// a graceful shutdown does not wait on them forever.
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl FromRef<AppState> for Arc<TokenVerifier> {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

/// State of the operational endpoints, which every role serves.
#[derive(Debug, Clone)]
pub struct OpsState {
    /// Metrics of the process.
    pub metrics: Arc<Metrics>,
    /// Readiness checks of the dependencies.
    pub health: Arc<HealthProbes>,
    /// The OpenAPI document, rendered once.
    pub openapi: Arc<String>,
}
