//! [`Application`]: wires settings into running roles. `main`, `taskmaster dev` and the
//! end-to-end tests all build it the same way and drive it with a shutdown future.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use api::auth::{TokenVerifier, JWKS_REFRESH_INTERVAL};
use api::health::HealthProbes;
use api::rate_limit::{RateLimitOptions, RateLimiter};
use api::{ApiConfig, AppState, OpsStateParts};
use eventstore::store::StoreOptions;
use eventstore::{EventStore, Naming, StreamOptions};
use insights::{CacheOptions, InsightsCache, InsightsService, InsightsWorker, WorkerOptions};
use ml::{MlWorker, ModelRegistry, ServingModel};
use projections::read_source::REPLICA_APPLICATION_NAME;
use projections::{
    database, Follow, LeaseOptions, PositionWatch, Projector, ProjectorOptions, ReadSource,
    TASKS_PROJECTION,
};
use telemetry::Metrics;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::settings::{without_credentials, Settings};

/// The roles one process can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Roles {
    /// HTTP commands and queries.
    pub api: bool,
    /// Postgres read models.
    pub projector: bool,
    /// The effort estimator and priority suggester: training and publishing versions.
    pub ml: bool,
    /// Cached insights in Redis, refreshed from the event stream.
    pub insights: bool,
    /// The process-manager runtime: recurrence and cascades (see the `automation` crate).
    pub automation: bool,
}

impl Roles {
    /// Parses `api,projector,insights,ml,automation`.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut roles = Roles::default();
        for role in list.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            match role {
                "api" => roles.api = true,
                "projector" => roles.projector = true,
                "ml" => roles.ml = true,
                "insights" => roles.insights = true,
                "automation" => roles.automation = true,
                other => {
                    return Err(format!(
                    "unknown role {other:?} (expected api, projector, insights, ml or automation)"
                ))
                }
            }
        }
        if roles == Roles::default() {
            return Err("name at least one role, e.g. --roles api,projector".into());
        }
        Ok(roles)
    }

    /// Every available role, as `dev` runs them.
    pub fn all() -> Self {
        Roles {
            api: true,
            projector: true,
            ml: true,
            insights: true,
            automation: true,
        }
    }
}

/// A dependency that could not be reached, with how to start it locally.
#[derive(Debug, thiserror::Error)]
#[error("{service} is not reachable at {address}: {cause}\n  start it with: {how_to_start}")]
pub struct Unreachable {
    /// `NATS`, `PostgreSQL` or `Redis`.
    pub service: &'static str,
    /// Where it was looked for (without credentials).
    pub address: String,
    /// The error.
    pub cause: String,
    /// A command that starts it on a Debian machine.
    pub how_to_start: &'static str,
}

/// How to start each local service (the commands of the README).
pub const START_NATS: &str = "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log";
/// See [`START_NATS`].
pub const START_POSTGRES: &str =
    "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start";
/// See [`START_NATS`].
pub const START_REDIS: &str =
    "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save \"\" --appendonly no";

/// Connects to NATS, failing fast (with how to start it) when it is not there.
///
/// The client gets every server of `TASKMASTER_NATS_URL` and reconnects without end: when its
/// server goes away it moves to another one of the list, or of the cluster's servers it has
/// learnt since, and resubscribes; requests in flight on the lost connection fail with their
/// own timeouts (a 503 for a command), never hang.
pub async fn connect_nats(settings: &Settings) -> Result<async_nats::Client, Unreachable> {
    let unreachable = |cause: String| Unreachable {
        service: "NATS",
        address: without_credentials(&settings.nats_url),
        cause,
        how_to_start: START_NATS,
    };
    let connecting = async_nats::ConnectOptions::new()
        .name("taskmaster")
        .connection_timeout(Duration::from_secs(3))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(reconnect_delay)
        .connect(settings.nats_servers.clone());
    let client = connecting.await.map_err(|e| unreachable(e.to_string()))?;
    // retry_on_initial_connect returns at once; wait (bounded) for the first connection.
    for _ in 0..30 {
        if client.connection_state() == async_nats::connection::State::Connected {
            return Ok(client);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(unreachable("no connection within 3 s".into()))
}

/// The longest pause between two reconnection attempts to NATS.
const MAX_RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// The pause before the `attempts`-th reconnection to NATS: none for the first, then doubling
/// from 2 ms up to [`MAX_RECONNECT_DELAY`]. The client library's default grows to 4 s, so a
/// server back after a 10 s outage was found up to 4 s late, and every command meanwhile
/// answered 503; a dial every 500 ms costs a dead server nothing.
pub fn reconnect_delay(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let exponent = u32::try_from(attempts - 1).unwrap_or(u32::MAX).min(20);
    Duration::from_millis(1 << exponent).min(MAX_RECONNECT_DELAY)
}

/// Creates the database if missing, connects and applies migrations.
pub async fn prepare_database(settings: &Settings) -> anyhow::Result<sqlx::PgPool> {
    let url = settings.database_url.expose();
    let unreachable = |cause: String| Unreachable {
        service: "PostgreSQL",
        address: without_credentials(url),
        cause,
        how_to_start: START_POSTGRES,
    };
    let created = database::ensure_database(url)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    if created {
        tracing::info!(database = %without_credentials(url), "created the database");
    }
    let pool = database::connect(url, settings.database_max_connections)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    database::migrate(&pool)
        .await
        .context("applying migrations")?;
    Ok(pool)
}

/// Applies the stream definitions in `nats/`.
pub async fn apply_streams(
    settings: &Settings,
    client: &async_nats::Client,
) -> anyhow::Result<Naming> {
    let naming = Naming::new(&settings.nats_prefix)?;
    let jetstream = async_nats::jetstream::new(client.clone());
    eventstore::apply_stream_definitions(
        &jetstream,
        &naming,
        StreamOptions {
            replicas: settings.nats_replicas,
        },
    )
    .await
    .context(
        "applying the NATS stream definitions (is JetStream enabled? start nats-server with -js)",
    )?;
    Ok(naming)
}

/// The projector as a deployment runs it: partitions shared through leases with every other
/// projector process of the deployment, and a blue/green rebuild on start when the read model
/// was built by another projection version or partition count.
pub fn projector(
    settings: &Settings,
    pool: &sqlx::PgPool,
    client: &async_nats::Client,
    naming: &Naming,
    metrics: &Arc<Metrics>,
) -> Projector {
    Projector::new(
        pool.clone(),
        async_nats::jetstream::new(client.clone()),
        naming.clone(),
        metrics.clone(),
        ProjectorOptions {
            partitions: settings.projection_partitions,
            leases: Some(LeaseOptions {
                ttl: settings.projection_lease_ttl,
                replicas: settings.nats_replicas,
            }),
            rebuild_on_layout_change: true,
            ..ProjectorOptions::default()
        },
    )
}

/// Where the queries of a deployment read: the primary `pool`, and the replica of
/// `TASKMASTER_DATABASE_REPLICA_URL` in front of it when set. Both positions are followed
/// until `shutdown`: the primary's by notifications, the replica's by polling. The replica's
/// pool connects lazily, so a replica that is down does not keep the process from starting.
pub async fn read_source(
    settings: &Settings,
    pool: &sqlx::PgPool,
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
) -> anyhow::Result<ReadSource> {
    let positions = PositionWatch::start(pool.clone(), TASKS_PROJECTION, shutdown.clone()).await?;
    let reads = ReadSource::new(pool.clone(), positions, metrics.clone());
    let Some(url) = &settings.database_replica_url else {
        return Ok(reads);
    };
    let replica = database::connect_lazy(
        url.expose(),
        settings.database_max_connections,
        REPLICA_APPLICATION_NAME,
    )
    .context("TASKMASTER_DATABASE_REPLICA_URL")?;
    let replica_positions = PositionWatch::start_with(
        replica.clone(),
        TASKS_PROJECTION,
        Follow::Polling,
        shutdown.clone(),
    )
    .await;
    tracing::info!(replica = %without_credentials(url.expose()), "queries read the replica");
    Ok(reads.with_replica(replica, replica_positions))
}

/// What the automation CLI needs to run automations outside the runtime (retrying dead
/// letters): the event store, the read model it waits on, and the command path over both.
pub async fn automation_context(
    settings: &Settings,
    pool: &sqlx::PgPool,
) -> anyhow::Result<automation::Context> {
    let client = connect_nats(settings).await?;
    let naming = apply_streams(settings, &client).await?;
    let metrics = Arc::new(Metrics::new());
    let store = Arc::new(EventStore::open(client, naming, StoreOptions::default()).await?);
    let reads = read_source(settings, pool, &metrics, &CancellationToken::new()).await?;
    let path =
        commands::CommandPath::new(store, reads.clone(), metrics, settings.read_wait_timeout);
    Ok(automation::Context::new(
        path,
        reads,
        settings.read_wait_timeout,
    ))
}

/// The insights service of a deployment: the read model behind a Redis cache whose keys carry
/// the NATS prefix and whose values live `TASKMASTER_INSIGHTS_TTL_SECS`.
pub fn insights_service(
    settings: &Settings,
    reads: &ReadSource,
    redis: &redis::Client,
    metrics: &Arc<Metrics>,
) -> InsightsService {
    InsightsService::new(
        reads.clone(),
        insights_cache(settings, redis),
        metrics.clone(),
    )
}

/// The insights cache of a deployment (see [`insights_service`]).
pub fn insights_cache(settings: &Settings, redis: &redis::Client) -> InsightsCache {
    InsightsCache::new(
        redis.clone(),
        CacheOptions {
            prefix: settings.nats_prefix.clone(),
            ttl: settings.insights_ttl,
            ..CacheOptions::default()
        },
    )
}

/// The API's token verifier: HS256 with `TASKMASTER_JWT_SECRET` when HS256 is on, and the keys
/// of `TASKMASTER_JWKS` when set, read now so a missing file or an unreachable URL stops the
/// start with one line naming it (see [`Settings::jwt_secret`] for when HS256 is on).
pub async fn token_verifier(settings: &Settings) -> anyhow::Result<TokenVerifier> {
    let verifier = TokenVerifier::new(
        settings
            .jwt_secret
            .as_ref()
            .map(|secret| secret.expose().as_bytes()),
        settings.jwt_claims.clone(),
    );
    match &settings.jwks {
        None => Ok(verifier),
        Some(source) => {
            let verifier = verifier.with_jwks(source.clone()).await?;
            tracing::info!(jwks = %source, hs256 = settings.jwt_secret.is_some(), "verifying tokens with the JWKS");
            Ok(verifier)
        }
    }
}

/// The rate limiter of a deployment: the limits of the settings, keys under the NATS prefix
/// like the insights cache, on the same Redis.
pub fn rate_limiter(
    settings: &Settings,
    redis: &redis::Client,
    metrics: &Arc<Metrics>,
) -> RateLimiter {
    RateLimiter::new(
        redis.clone(),
        RateLimitOptions {
            prefix: settings.nats_prefix.clone(),
            user: settings.rate_limit_user,
            ip: settings.rate_limit_ip,
            trusted_proxies: settings.trusted_proxies.clone(),
            ..RateLimitOptions::default()
        },
        metrics.clone(),
    )
}

/// A built application: listener bound, dependencies connected, roles ready to run.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    projector: Option<Projector>,
    /// The API's model and where it follows the published versions from.
    serving: Option<(ServingModel, ModelRegistry)>,
    ml_worker: Option<MlWorker>,
    insights: Option<InsightsWorker>,
    automation: Option<(
        automation::Runtime,
        automation::reminders::ReminderScheduler,
        webhooks::WebhookWorker,
    )>,
    /// The API's verifier, whose JWKS (if any) is re-read in the background.
    verifier: Option<Arc<TokenVerifier>>,
    shutdown: CancellationToken,
}

impl Application {
    /// Connects the dependencies (creating the database and streams as needed) and binds the
    /// HTTP listener.
    pub async fn build(settings: &Settings, roles: Roles) -> anyhow::Result<Self> {
        // First: a bad key set is a configuration error, reported before any service is dialled.
        let verifier = if roles.api {
            Some(Arc::new(token_verifier(settings).await?))
        } else {
            None
        };
        let client = connect_nats(settings).await?;
        let pool = prepare_database(settings).await?;
        let naming = apply_streams(settings, &client).await?;
        let redis = redis::Client::open(settings.redis_url.expose())
            .context("REDIS_URL is not a valid Redis URL")?;
        let metrics = Arc::new(Metrics::new());
        let shutdown = CancellationToken::new();
        let registry = if roles.api || roles.ml {
            let jetstream = async_nats::jetstream::new(client.clone());
            Some(
                ModelRegistry::open(&jetstream, &naming, settings.nats_replicas)
                    .await
                    .context("opening the model registry (object store and pointer bucket)")?,
            )
        } else {
            None
        };
        let models = ServingModel::with_metrics(metrics.clone());
        let mut store_for_ml = None;

        let reads = if roles.api || roles.insights || roles.automation {
            Some(read_source(settings, &pool, &metrics, &shutdown).await?)
        } else {
            None
        };
        let insights = reads
            .as_ref()
            .map(|reads| Arc::new(insights_service(settings, reads, &redis, &metrics)));
        let store = if roles.api || roles.automation {
            let store = EventStore::open(
                client.clone(),
                naming.clone(),
                StoreOptions {
                    cache_capacity: settings.state_cache_capacity,
                    ..StoreOptions::default()
                },
            )
            .await?
            .with_metrics(metrics.clone());
            Some(Arc::new(store))
        } else {
            None
        };
        let command_path = match (&store, &reads) {
            (Some(store), Some(reads)) => Some(commands::CommandPath::new(
                store.clone(),
                reads.clone(),
                metrics.clone(),
                settings.read_wait_timeout,
            )),
            _ => None,
        };
        let automation = match (&command_path, &reads) {
            (Some(path), Some(reads)) if roles.automation => {
                let context = automation::Context::new(
                    path.clone(),
                    reads.clone(),
                    settings.read_wait_timeout,
                );
                let runtime = automation::Runtime::new(
                    async_nats::jetstream::new(client.clone()),
                    naming.clone(),
                    context.clone(),
                    automation::automations(),
                    metrics.clone(),
                    automation::RuntimeOptions::default(),
                );
                // The runtime's position starts now, before any command this process takes.
                runtime
                    .ensure_consumer()
                    .await
                    .context("creating the automation consumer")?;
                let scheduler = automation::reminders::ReminderScheduler::new(
                    context,
                    metrics.clone(),
                    automation::reminders::SchedulerOptions::default(),
                );
                let webhooks = webhooks::WebhookWorker::new(
                    async_nats::jetstream::new(client.clone()),
                    naming.clone(),
                    pool.clone(),
                    metrics.clone(),
                    webhooks::WorkerOptions {
                        max_attempts: settings.webhooks_max_attempts,
                        retry_base: settings.webhooks_retry_base,
                        ..webhooks::WorkerOptions::with_policy(webhooks::TargetPolicy {
                            allow_private: settings.webhooks_allow_private,
                        })
                    },
                )?;
                webhooks
                    .ensure_consumer()
                    .await
                    .context("creating the webhook consumer")?;
                Some((runtime, scheduler, webhooks))
            }
            _ => None,
        };
        let app = if roles.api {
            let store = store.clone().context("the api role has an event store")?;
            store_for_ml = Some(store.clone());
            let reads = reads.clone().context("the api role reads the read model")?;
            Some(AppState {
                commands: command_path
                    .clone()
                    .context("the api role has a command path")?,
                store,
                models: models.clone(),
                reads,
                insights: insights.clone().context("the api role has insights")?,
                verifier: verifier.clone().context("the api role verifies tokens")?,
                metrics: metrics.clone(),
                rate_limiter: Arc::new(rate_limiter(settings, &redis, &metrics)),
                config: Arc::new(ApiConfig {
                    read_wait_timeout: settings.read_wait_timeout,
                    webhook_targets: webhooks::TargetPolicy {
                        allow_private: settings.webhooks_allow_private,
                    },
                }),
                shutdown: shutdown.clone(),
            })
        } else {
            None
        };
        let projector = roles
            .projector
            .then(|| projector(settings, &pool, &client, &naming, &metrics));
        let ml_worker = match (&registry, roles.ml) {
            (Some(registry), true) => {
                let store = match store_for_ml {
                    Some(store) => store,
                    None => Arc::new(
                        EventStore::open(client.clone(), naming.clone(), StoreOptions::default())
                            .await?,
                    ),
                };
                Some(
                    MlWorker::new(store, registry.clone(), settings.ml)
                        .with_metrics(metrics.clone()),
                )
            }
            _ => None,
        };
        let serving = match registry {
            Some(registry) if roles.api => Some((models, registry)),
            _ => None,
        };
        let insights = match (roles.insights, insights) {
            (true, Some(service)) => Some(InsightsWorker::new(
                service,
                async_nats::jetstream::new(client.clone()),
                naming.clone(),
                metrics.clone(),
                WorkerOptions::with_debounce(settings.insights_debounce),
            )),
            _ => None,
        };
        let router = api::router(
            app,
            OpsStateParts {
                metrics,
                health: Arc::new(HealthProbes {
                    nats: client,
                    postgres: pool,
                    redis,
                    reads,
                }),
            },
        );
        let listener = TcpListener::bind(settings.http_addr)
            .await
            .with_context(|| format!("binding {}", settings.http_addr))?;
        Ok(Self {
            listener,
            router,
            projector,
            serving,
            ml_worker,
            insights,
            automation,
            verifier,
            shutdown,
        })
    }

    /// The address the HTTP server listens on (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `signal` completes, then stops taking requests, lets in-flight requests
    /// finish, the projector commit its batch and the insights worker hand back what it holds.
    pub async fn run_until_stopped(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let shutdown = self.shutdown.clone();
        tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                signal.await;
                shutdown.cancel();
            }
        });
        let projector = self.projector.map(|projector| {
            let shutdown = shutdown.clone();
            tokio::spawn(async move { projector.run(shutdown).await })
        });
        let follower = self
            .serving
            .map(|(models, registry)| tokio::spawn(models.follow(registry, shutdown.clone())));
        let ml_worker = self.ml_worker.map(|worker| {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                if let Err(error) = worker.run(shutdown).await {
                    tracing::error!(%error, "the ml role stopped");
                }
            })
        });
        let insights = self
            .insights
            .map(|worker| tokio::spawn(worker.run(shutdown.clone())));
        let automation = self.automation.map(|(runtime, scheduler, webhooks)| {
            let reminders = tokio::spawn(scheduler.run(shutdown.clone()));
            let deliveries = tokio::spawn(webhooks.run(shutdown.clone()));
            let runtime = tokio::spawn(runtime.run(shutdown.clone()));
            async move {
                let _ = reminders.await;
                let _ = deliveries.await;
                runtime.await
            }
        });
        let key_refresh = self.verifier.map(|verifier| {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                verifier
                    .keep_keys_fresh(JWKS_REFRESH_INTERVAL, shutdown)
                    .await
            })
        });
        // With the peer address: the rate limiter keys clients by it.
        let server = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown({
            let shutdown = shutdown.clone();
            async move { shutdown.cancelled().await }
        })
        .await;
        shutdown.cancel();
        if let Some(projector) = projector {
            projector.await.context("projector task")?;
        }
        if let Some(worker) = ml_worker {
            worker.await.context("ml task")?;
        }
        if let Some(follower) = follower {
            if let Ok(Err(error)) = follower.await {
                tracing::error!(%error, "following the model pointer failed");
            }
        }
        if let Some(insights) = insights {
            insights.await.context("insights worker task")?;
        }
        if let Some(automation) = automation {
            automation.await.context("automation runtime task")?;
        }
        if let Some(key_refresh) = key_refresh {
            key_refresh.await.context("JWKS refresh task")?;
        }
        server.context("HTTP server")?;
        Ok(())
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: no new requests, finishing the ones in flight");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_and_refuse_unknown_ones() {
        assert_eq!(
            Roles::parse("api, projector,insights,ml,automation").unwrap(),
            Roles::all()
        );
        assert_eq!(
            Roles::parse("insights").unwrap(),
            Roles {
                insights: true,
                ..Roles::default()
            }
        );
        assert!(Roles::parse("api,web").is_err());
        assert!(Roles::parse("").is_err());
    }

    #[test]
    fn reconnection_to_nats_starts_at_once_and_never_waits_more_than_half_a_second() {
        assert_eq!(reconnect_delay(0), Duration::ZERO);
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        assert_eq!(reconnect_delay(2), Duration::from_millis(2));
        assert_eq!(reconnect_delay(5), Duration::from_millis(16));
        assert_eq!(reconnect_delay(10), MAX_RECONNECT_DELAY);
        assert_eq!(reconnect_delay(usize::MAX), MAX_RECONNECT_DELAY);
    }

    #[test]
    fn credentials_are_kept_out_of_messages() {
        assert_eq!(
            without_credentials("postgres://user:pw@db:5432/x"),
            "postgres://db:5432/x"
        );
        assert_eq!(
            without_credentials("nats://127.0.0.1:4222"),
            "nats://127.0.0.1:4222"
        );
        assert_eq!(
            without_credentials("nats://a:pw@n1:4222,nats://n2:4222,nats://a:pw@n3:4222"),
            "nats://n1:4222,nats://n2:4222,nats://n3:4222"
        );
    }
}
