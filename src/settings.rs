//! The one `Settings` of taskmaster, read once from the environment in `main` and passed down.
//!
//! Every variable has a default that reaches the local services, so `taskmaster dev` works on
//! a fresh machine. A production setting (`TASKMASTER_ENV=production`) refuses to start with
//! the development secret (or a short one) whenever HS256 is on; with a JWKS and no secret it
//! needs no secret at all.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use api::auth::{ClaimRules, JwksSource, DEFAULT_LEEWAY_SECONDS, MAX_LEEWAY_SECONDS};
use telemetry::LogFormat;

/// The JWT secret used when none is configured. Fine on a laptop, refused in production.
pub const DEV_JWT_SECRET: &str = "taskmaster-development-secret-change-me-in-production";

/// Longest insights TTL accepted: a week. Beyond that, numbers that move with the clock
/// (overdue, streak, windows) would be served stale for too long after a missed refresh.
pub const MAX_INSIGHTS_TTL_SECS: u64 = 7 * 24 * 3600;
/// Longest insights debounce accepted: a minute, so a refresh is never put off for long.
pub const MAX_INSIGHTS_DEBOUNCE_MS: u64 = 60_000;

/// Default `TASKMASTER_RATE_LIMIT_USER`: far above what a person's client sends, low enough
/// that one runaway script cannot take a replica's capacity from everyone else.
pub const DEFAULT_RATE_LIMIT_USER: &str = "1200/1m";
/// Default `TASKMASTER_RATE_LIMIT_IP`.
pub const DEFAULT_RATE_LIMIT_IP: &str = "6000/1m";

/// A secret value that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Where the process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// A laptop or CI: development secrets allowed.
    Development,
    /// Anything users depend on: development secrets refused.
    Production,
}

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct SettingsError {
    /// The environment variable.
    pub variable: &'static str,
    /// What is wrong.
    pub message: String,
}

/// Every setting of the process.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `TASKMASTER_ENV`: `development` (default) or `production`.
    pub environment: Environment,
    /// `TASKMASTER_HTTP_ADDR`.
    pub http_addr: SocketAddr,
    /// `TASKMASTER_NATS_URL`, as given (for messages).
    pub nats_url: String,
    /// The servers of `TASKMASTER_NATS_URL`, a comma-separated list: a cluster's clients name
    /// several so the first connection works while one is down. Once connected the client also
    /// learns the cluster's other servers from them, and reconnects to any of them.
    pub nats_servers: Vec<async_nats::ServerAddr>,
    /// `TASKMASTER_NATS_PREFIX`: scopes every stream, subject, consumer and bucket name.
    pub nats_prefix: String,
    /// `TASKMASTER_NATS_REPLICAS`: stream replicas (3 on a cluster).
    pub nats_replicas: usize,
    /// `DATABASE_URL` (may hold a password, hence secret).
    pub database_url: Secret,
    /// `TASKMASTER_DATABASE_MAX_CONNECTIONS`: the size of each pool (the primary's, and the
    /// replica's when one is configured).
    pub database_max_connections: u32,
    /// `TASKMASTER_DATABASE_REPLICA_URL` (optional, may hold a password): a streaming replica
    /// of `DATABASE_URL` that answers the read model's queries, taking their load off the
    /// primary the projector writes. Everything else stays on the primary.
    pub database_replica_url: Option<Secret>,
    /// `REDIS_URL`.
    pub redis_url: Secret,
    /// `TASKMASTER_JWT_SECRET`: the HS256 secret, or none when HS256 is off. The rule: without
    /// `TASKMASTER_JWKS`, HS256 is on with this secret or, in development, [`DEV_JWT_SECRET`];
    /// with `TASKMASTER_JWKS`, HS256 is on only when this is set explicitly too.
    pub jwt_secret: Option<Secret>,
    /// `TASKMASTER_JWKS`: a file path or an http(s) URL of a JSON Web Key Set whose RS256 and
    /// Ed25519 keys verify tokens, for an identity provider that signs with private keys.
    pub jwks: Option<JwksSource>,
    /// `TASKMASTER_JWT_LEEWAY_SECS` (default 30, at most 300): clock skew tolerated on `exp`
    /// and `nbf`; `TASKMASTER_JWT_ISSUER` and `TASKMASTER_JWT_AUDIENCE` (optional): the `iss`
    /// and `aud` every token must carry when set.
    pub jwt_claims: ClaimRules,
    /// `TASKMASTER_READ_WAIT_MS`: how long `Tm-Min-Position` waits before 504.
    pub read_wait_timeout: Duration,
    /// `TASKMASTER_STATE_CACHE`: task states kept in memory by the API.
    pub state_cache_capacity: usize,
    /// `TASKMASTER_PROJECTION_PARTITIONS`: partitions of a new read model (and of the rebuild a
    /// different stored count triggers); the most projector processes that can share the work.
    pub projection_partitions: u16,
    /// `TASKMASTER_PROJECTION_LEASE_TTL_MS`: how long a partition lease lives unrenewed, so
    /// the bound on how long a dead projector's partitions wait for a new owner.
    pub projection_lease_ttl: Duration,
    /// `TASKMASTER_ML_RETRAIN_AFTER` (new completions, default 200) and
    /// `TASKMASTER_ML_RETRAIN_INTERVAL_SECS` (default 3600): when the ml role retrains;
    /// `TASKMASTER_ML_HOLDOUT` (default 0.2): the newest share of completions held out.
    pub ml: ml::WorkerOptions,
    /// `TASKMASTER_INSIGHTS_TTL_SECS`: how long cached insights live in Redis; bounds how stale
    /// a value can be when a refresh was missed, and the drift of time-based numbers.
    pub insights_ttl: Duration,
    /// `TASKMASTER_INSIGHTS_DEBOUNCE_MS`: quiet time after a user's last event before the
    /// insights worker refreshes their cached insights (a burst gives one refresh).
    pub insights_debounce: Duration,
    /// `TASKMASTER_WEBHOOKS_ALLOW_PRIVATE`: webhooks may target loopback, private and
    /// link-local addresses (default: yes in development, where receivers run locally; no in
    /// production, against SSRF).
    pub webhooks_allow_private: bool,
    /// `TASKMASTER_WEBHOOKS_MAX_ATTEMPTS` (1 to 20, default 8): attempts of a delivery before it
    /// is given up on (a dead letter the owner can redeliver).
    pub webhooks_max_attempts: i32,
    /// `TASKMASTER_WEBHOOKS_RETRY_BASE_MS` (10 to 60000, default 1000): the wait before a
    /// delivery's second attempt, doubled for each further one (at most an hour).
    pub webhooks_retry_base: Duration,
    /// `TASKMASTER_RATE_LIMIT_USER` (+ `_BURST`): requests per authenticated user, default
    /// `1200/1m` (20 a second sustained, bursts of 1200); `0` turns the limit off.
    pub rate_limit_user: Option<api::rate_limit::Quota>,
    /// `TASKMASTER_RATE_LIMIT_IP` (+ `_BURST`): requests per client address on every `/v1`
    /// route, with or without a valid token, default `6000/1m`; higher than the user's
    /// because one address can front many users (an office behind NAT); `0` turns it off.
    pub rate_limit_ip: Option<api::rate_limit::Quota>,
    /// `TASKMASTER_TRUSTED_PROXIES`: comma-separated CIDRs of the proxies whose
    /// `X-Forwarded-For` names the client; empty (default): only the socket peer is used.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `TASKMASTER_LOG_FORMAT`: `text` (default) or `json`.
    pub log_format: LogFormat,
    /// `RUST_LOG`.
    pub log_filter: String,
    /// Where traces go over OTLP/HTTP: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`; none when neither is set, or when `OTEL_SDK_DISABLED=true`
    /// or `OTEL_TRACES_EXPORTER=none` (the standard switches). The exporter reads the rest of
    /// the standard `OTEL_EXPORTER_OTLP_*` variables (headers, timeout) itself.
    pub otlp_endpoint: Option<String>,
    /// `OTEL_SERVICE_NAME`.
    pub service_name: String,
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        fn parse<T: std::str::FromStr>(
            variable: &'static str,
            value: Option<String>,
            default: T,
        ) -> Result<T, SettingsError> {
            match value {
                None => Ok(default),
                Some(raw) => raw.trim().parse().map_err(|_| SettingsError {
                    variable,
                    message: format!("cannot parse {raw:?}"),
                }),
            }
        }
        let environment = match get("TASKMASTER_ENV").as_deref() {
            None | Some("development") | Some("dev") => Environment::Development,
            Some("production") | Some("prod") => Environment::Production,
            Some(other) => {
                return Err(SettingsError {
                    variable: "TASKMASTER_ENV",
                    message: format!("must be development or production, not {other:?}"),
                })
            }
        };
        let jwks = get("TASKMASTER_JWKS")
            .map(|raw| JwksSource::parse(&raw))
            .transpose()
            .map_err(|message| SettingsError {
                variable: "TASKMASTER_JWKS",
                message,
            })?;
        let jwt_secret = match (get("TASKMASTER_JWT_SECRET"), &jwks) {
            (Some(secret), _) => Some(secret),
            (None, None) => Some(DEV_JWT_SECRET.to_owned()),
            (None, Some(_)) => None,
        };
        if environment == Environment::Production {
            if jwt_secret.as_deref() == Some(DEV_JWT_SECRET) {
                return Err(SettingsError {
                    variable: "TASKMASTER_JWT_SECRET",
                    message: "production refuses the development secret; set a random secret of at least 32 bytes, or TASKMASTER_JWKS".into(),
                });
            }
            if jwt_secret.as_ref().is_some_and(|s| s.len() < 32) {
                return Err(SettingsError {
                    variable: "TASKMASTER_JWT_SECRET",
                    message: "production needs a secret of at least 32 bytes".into(),
                });
            }
            // Keys fetched over plain HTTP can be swapped by anyone on the path, who could then
            // sign tokens for any user.
            if matches!(&jwks, Some(JwksSource::Url(url)) if url.scheme() != "https") {
                return Err(SettingsError {
                    variable: "TASKMASTER_JWKS",
                    message: "production fetches the key set over https only (or from a file)"
                        .into(),
                });
            }
        }
        let leeway_seconds: u64 = parse(
            "TASKMASTER_JWT_LEEWAY_SECS",
            get("TASKMASTER_JWT_LEEWAY_SECS"),
            DEFAULT_LEEWAY_SECONDS,
        )?;
        if leeway_seconds > MAX_LEEWAY_SECONDS {
            return Err(SettingsError {
                variable: "TASKMASTER_JWT_LEEWAY_SECS",
                message: format!(
                    "must be between 0 and {MAX_LEEWAY_SECONDS}, not {leeway_seconds}"
                ),
            });
        }
        let jwt_claims = ClaimRules {
            leeway_seconds,
            issuer: get("TASKMASTER_JWT_ISSUER").map(|v| v.trim().to_owned()),
            audience: get("TASKMASTER_JWT_AUDIENCE").map(|v| v.trim().to_owned()),
        };
        let log_format = match get("TASKMASTER_LOG_FORMAT").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(SettingsError {
                    variable: "TASKMASTER_LOG_FORMAT",
                    message: format!("must be text or json, not {other:?}"),
                })
            }
        };
        let nats_url = get("TASKMASTER_NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".into());
        let nats_servers = parse_nats_servers(&nats_url).map_err(|message| SettingsError {
            variable: "TASKMASTER_NATS_URL",
            message,
        })?;
        let nats_prefix = get("TASKMASTER_NATS_PREFIX").unwrap_or_default();
        eventstore::Naming::new(&nats_prefix).map_err(|e| SettingsError {
            variable: "TASKMASTER_NATS_PREFIX",
            message: e.to_string(),
        })?;
        let projection_partitions: u16 = parse(
            "TASKMASTER_PROJECTION_PARTITIONS",
            get("TASKMASTER_PROJECTION_PARTITIONS"),
            8,
        )?;
        if !(1..=projections::layout::MAX_PARTITIONS).contains(&projection_partitions) {
            return Err(SettingsError {
                variable: "TASKMASTER_PROJECTION_PARTITIONS",
                message: format!(
                    "must be between 1 and {}, not {projection_partitions}",
                    projections::layout::MAX_PARTITIONS
                ),
            });
        }
        let lease_ttl_ms: u64 = parse(
            "TASKMASTER_PROJECTION_LEASE_TTL_MS",
            get("TASKMASTER_PROJECTION_LEASE_TTL_MS"),
            5_000,
        )?;
        if lease_ttl_ms < 500 {
            return Err(SettingsError {
                variable: "TASKMASTER_PROJECTION_LEASE_TTL_MS",
                message: format!("must be at least 500, not {lease_ttl_ms}"),
            });
        }
        let ml = ml::WorkerOptions {
            retrain_after: parse(
                "TASKMASTER_ML_RETRAIN_AFTER",
                get("TASKMASTER_ML_RETRAIN_AFTER"),
                200,
            )?,
            retrain_interval: Duration::from_secs(parse(
                "TASKMASTER_ML_RETRAIN_INTERVAL_SECS",
                get("TASKMASTER_ML_RETRAIN_INTERVAL_SECS"),
                3600,
            )?),
            holdout: parse("TASKMASTER_ML_HOLDOUT", get("TASKMASTER_ML_HOLDOUT"), 0.2)?,
        };
        if !(0.05..=0.5).contains(&ml.holdout) {
            return Err(SettingsError {
                variable: "TASKMASTER_ML_HOLDOUT",
                message: format!("must be between 0.05 and 0.5, not {}", ml.holdout),
            });
        }
        if ml.retrain_after == 0 || ml.retrain_interval.is_zero() {
            return Err(SettingsError {
                variable: "TASKMASTER_ML_RETRAIN_AFTER",
                message: "TASKMASTER_ML_RETRAIN_AFTER and TASKMASTER_ML_RETRAIN_INTERVAL_SECS must be positive".into(),
            });
        }
        let database_replica_url = get("TASKMASTER_DATABASE_REPLICA_URL");
        if let Some(url) = &database_replica_url {
            // The URL may hold a password: the message never repeats it.
            let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
            if !postgres || sqlx::postgres::PgConnectOptions::from_str(url).is_err() {
                return Err(SettingsError {
                    variable: "TASKMASTER_DATABASE_REPLICA_URL",
                    message:
                        "must be a PostgreSQL URL, e.g. postgres://user@replica:5432/taskmaster"
                            .into(),
                });
            }
        }
        let insights_ttl_secs: u64 = parse(
            "TASKMASTER_INSIGHTS_TTL_SECS",
            get("TASKMASTER_INSIGHTS_TTL_SECS"),
            3_600,
        )?;
        if !(1..=MAX_INSIGHTS_TTL_SECS).contains(&insights_ttl_secs) {
            return Err(SettingsError {
                variable: "TASKMASTER_INSIGHTS_TTL_SECS",
                message: format!(
                    "must be between 1 and {MAX_INSIGHTS_TTL_SECS} (a week), not {insights_ttl_secs}"
                ),
            });
        }
        let webhooks_allow_private: bool = parse(
            "TASKMASTER_WEBHOOKS_ALLOW_PRIVATE",
            get("TASKMASTER_WEBHOOKS_ALLOW_PRIVATE"),
            environment != Environment::Production,
        )?;
        let webhooks_max_attempts: i32 = parse(
            "TASKMASTER_WEBHOOKS_MAX_ATTEMPTS",
            get("TASKMASTER_WEBHOOKS_MAX_ATTEMPTS"),
            8,
        )?;
        if !(1..=20).contains(&webhooks_max_attempts) {
            return Err(SettingsError {
                variable: "TASKMASTER_WEBHOOKS_MAX_ATTEMPTS",
                message: format!("must be between 1 and 20, not {webhooks_max_attempts}"),
            });
        }
        let webhooks_retry_base_ms: u64 = parse(
            "TASKMASTER_WEBHOOKS_RETRY_BASE_MS",
            get("TASKMASTER_WEBHOOKS_RETRY_BASE_MS"),
            1_000,
        )?;
        if !(10..=60_000).contains(&webhooks_retry_base_ms) {
            return Err(SettingsError {
                variable: "TASKMASTER_WEBHOOKS_RETRY_BASE_MS",
                message: format!("must be between 10 and 60000, not {webhooks_retry_base_ms}"),
            });
        }
        let insights_debounce_ms: u64 = parse(
            "TASKMASTER_INSIGHTS_DEBOUNCE_MS",
            get("TASKMASTER_INSIGHTS_DEBOUNCE_MS"),
            1_000,
        )?;
        if insights_debounce_ms > MAX_INSIGHTS_DEBOUNCE_MS {
            return Err(SettingsError {
                variable: "TASKMASTER_INSIGHTS_DEBOUNCE_MS",
                message: format!(
                    "must be at most {MAX_INSIGHTS_DEBOUNCE_MS} (a minute), not {insights_debounce_ms}"
                ),
            });
        }
        let quota = |variable: &'static str, burst: &'static str, default: &str| {
            let raw = get(variable).unwrap_or_else(|| default.to_owned());
            api::rate_limit::Quota::parse(&raw, get(burst).as_deref()).map_err(|message| {
                SettingsError {
                    variable,
                    message: message.replace('\n', " "),
                }
            })
        };
        let rate_limit_user = quota(
            "TASKMASTER_RATE_LIMIT_USER",
            "TASKMASTER_RATE_LIMIT_USER_BURST",
            DEFAULT_RATE_LIMIT_USER,
        )?;
        let rate_limit_ip = quota(
            "TASKMASTER_RATE_LIMIT_IP",
            "TASKMASTER_RATE_LIMIT_IP_BURST",
            DEFAULT_RATE_LIMIT_IP,
        )?;
        let trusted_proxies = api::rate_limit::parse_trusted_proxies(
            &get("TASKMASTER_TRUSTED_PROXIES").unwrap_or_default(),
        )
        .map_err(|message| SettingsError {
            variable: "TASKMASTER_TRUSTED_PROXIES",
            message,
        })?;
        Ok(Settings {
            environment,
            rate_limit_user,
            rate_limit_ip,
            trusted_proxies,
            ml,
            insights_ttl: Duration::from_secs(insights_ttl_secs),
            insights_debounce: Duration::from_millis(insights_debounce_ms),
            webhooks_allow_private,
            webhooks_max_attempts,
            webhooks_retry_base: Duration::from_millis(webhooks_retry_base_ms),
            projection_partitions,
            projection_lease_ttl: Duration::from_millis(lease_ttl_ms),
            http_addr: parse(
                "TASKMASTER_HTTP_ADDR",
                get("TASKMASTER_HTTP_ADDR"),
                SocketAddr::from(([127, 0, 0, 1], 8080)),
            )?,
            nats_url,
            nats_servers,
            nats_prefix,
            nats_replicas: parse(
                "TASKMASTER_NATS_REPLICAS",
                get("TASKMASTER_NATS_REPLICAS"),
                1,
            )?,
            database_url: Secret::new(
                get("DATABASE_URL")
                    .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/taskmaster".into()),
            ),
            database_replica_url: database_replica_url.map(Secret::new),
            database_max_connections: parse(
                "TASKMASTER_DATABASE_MAX_CONNECTIONS",
                get("TASKMASTER_DATABASE_MAX_CONNECTIONS"),
                16,
            )?,
            redis_url: Secret::new(
                get("REDIS_URL").unwrap_or_else(|| "redis://127.0.0.1:6379".into()),
            ),
            jwt_secret: jwt_secret.map(Secret::new),
            jwks,
            jwt_claims,
            read_wait_timeout: Duration::from_millis(parse(
                "TASKMASTER_READ_WAIT_MS",
                get("TASKMASTER_READ_WAIT_MS"),
                5_000,
            )?),
            state_cache_capacity: parse(
                "TASKMASTER_STATE_CACHE",
                get("TASKMASTER_STATE_CACHE"),
                100_000,
            )?,
            log_format,
            log_filter: get("RUST_LOG").unwrap_or_else(|| "info,sqlx=warn,async_nats=warn".into()),
            otlp_endpoint: otlp_endpoint(&get),
            service_name: get("OTEL_SERVICE_NAME").unwrap_or_else(|| "taskmaster".into()),
        })
    }
}

/// The OTLP endpoint traces are exported to, if export is on (see [`Settings::otlp_endpoint`]).
fn otlp_endpoint(get: &impl Fn(&str) -> Option<String>) -> Option<String> {
    let disabled = get("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || get("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
    if disabled {
        return None;
    }
    get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .or_else(|| get("OTEL_EXPORTER_OTLP_ENDPOINT"))
        .filter(|v| !v.trim().is_empty())
}

/// Parses a comma-separated list of NATS server URLs (`nats://host:port`, or `host:port`).
/// The client library takes one URL per string, so without the split a cluster's list would be
/// refused as one malformed URL.
pub fn parse_nats_servers(raw: &str) -> Result<Vec<async_nats::ServerAddr>, String> {
    let servers = raw
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| {
            url.parse::<async_nats::ServerAddr>()
                .map_err(|e| format!("{e} in {:?}", without_credentials(url)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if servers.is_empty() {
        return Err("name at least one server, e.g. nats://127.0.0.1:4222".into());
    }
    Ok(servers)
}

/// A URL (or a comma-separated list of them, as `TASKMASTER_NATS_URL` may be) without the
/// `user:password@` parts, for messages.
pub(crate) fn without_credentials(urls: &str) -> String {
    urls.split(',')
        .map(|url| match (url.find("://"), url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}{}", &url[..scheme + 3], &url[at + 1..])
            }
            _ => url.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_reach_the_local_services() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(s.nats_url, "nats://127.0.0.1:4222");
        assert_eq!(
            s.database_url.expose(),
            "postgres://postgres@127.0.0.1:5432/taskmaster"
        );
        assert_eq!(s.redis_url.expose(), "redis://127.0.0.1:6379");
        assert_eq!(s.nats_prefix, "");
        assert_eq!(s.projection_partitions, 8);
        assert_eq!(s.projection_lease_ttl, Duration::from_secs(5));
        assert_eq!(s.insights_ttl, Duration::from_secs(3600));
        assert_eq!(s.insights_debounce, Duration::from_secs(1));
        assert_eq!(s.otlp_endpoint, None);
    }

    #[test]
    fn traces_go_to_the_signal_endpoint_first_and_the_standard_switches_turn_export_off() {
        let endpoint = |vars: &[(&str, &str)]| settings(vars).unwrap().otlp_endpoint;
        let generic = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        let traces = (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://tempo:4318/v1/traces",
        );
        assert_eq!(
            endpoint(&[generic]).as_deref(),
            Some("http://collector:4318")
        );
        assert_eq!(
            endpoint(&[generic, traces]).as_deref(),
            Some("http://tempo:4318/v1/traces")
        );
        assert_eq!(endpoint(&[generic, ("OTEL_SDK_DISABLED", "TRUE")]), None);
        assert_eq!(endpoint(&[generic, ("OTEL_TRACES_EXPORTER", "none")]), None);
        assert_eq!(endpoint(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]), None);
    }

    #[test]
    fn the_nats_url_may_list_the_servers_of_a_cluster() {
        let s = settings(&[(
            "TASKMASTER_NATS_URL",
            "nats://127.0.0.1:4301, nats://127.0.0.1:4302,127.0.0.1:4303",
        )])
        .unwrap();
        let servers: Vec<(String, u16)> = s
            .nats_servers
            .iter()
            .map(|a| (a.host().to_owned(), a.port()))
            .collect();
        assert_eq!(
            servers,
            [4301, 4302, 4303].map(|port| ("127.0.0.1".to_owned(), port))
        );
        assert_eq!(settings(&[]).unwrap().nats_servers.len(), 1);
        for bad in ["nats://127.0.0.1:4301,http://127.0.0.1:4302", " , "] {
            let error = settings(&[("TASKMASTER_NATS_URL", bad)]).unwrap_err();
            assert_eq!(error.variable, "TASKMASTER_NATS_URL", "{bad}");
        }
        let error = settings(&[(
            "TASKMASTER_NATS_URL",
            "nats://u:hunter2@a:1,ftp://u:hunter2@b:2",
        )])
        .unwrap_err();
        assert!(!error.message.contains("hunter2"), "{}", error.message);
    }

    #[test]
    fn insights_ttl_and_debounce_are_read_and_bounded() {
        let s = settings(&[
            ("TASKMASTER_INSIGHTS_TTL_SECS", "60"),
            ("TASKMASTER_INSIGHTS_DEBOUNCE_MS", "0"),
        ])
        .unwrap();
        assert_eq!(s.insights_ttl, Duration::from_secs(60));
        assert_eq!(s.insights_debounce, Duration::ZERO);
        for (variable, value) in [
            ("TASKMASTER_INSIGHTS_TTL_SECS", "0"),
            ("TASKMASTER_INSIGHTS_TTL_SECS", "604801"),
            ("TASKMASTER_INSIGHTS_TTL_SECS", "an hour"),
            ("TASKMASTER_INSIGHTS_DEBOUNCE_MS", "60001"),
            ("TASKMASTER_INSIGHTS_DEBOUNCE_MS", "-1"),
        ] {
            assert_eq!(
                settings(&[(variable, value)]).unwrap_err().variable,
                variable,
                "{value}"
            );
        }
    }

    #[test]
    fn a_replica_url_is_optional_read_once_and_must_be_postgres() {
        assert!(settings(&[]).unwrap().database_replica_url.is_none());
        assert!(settings(&[("TASKMASTER_DATABASE_REPLICA_URL", "  ")])
            .unwrap()
            .database_replica_url
            .is_none());
        let s = settings(&[(
            "TASKMASTER_DATABASE_REPLICA_URL",
            "postgres://reader:hunter2-hunter2@replica:5433/taskmaster",
        )])
        .unwrap();
        assert_eq!(
            s.database_replica_url.as_ref().map(Secret::expose),
            Some("postgres://reader:hunter2-hunter2@replica:5433/taskmaster")
        );
        assert!(!format!("{s:?}").contains("hunter2"));
        for value in [
            "replica:5433/taskmaster",
            "redis://127.0.0.1:6379",
            "postgres://replica:notaport/taskmaster",
        ] {
            let error = settings(&[("TASKMASTER_DATABASE_REPLICA_URL", value)]).unwrap_err();
            assert_eq!(error.variable, "TASKMASTER_DATABASE_REPLICA_URL", "{value}");
            assert!(!error.message.contains(value), "{value}");
        }
    }

    #[test]
    fn production_refuses_the_development_secret() {
        let error = settings(&[("TASKMASTER_ENV", "production")]).unwrap_err();
        assert_eq!(error.variable, "TASKMASTER_JWT_SECRET");
        assert!(settings(&[
            ("TASKMASTER_ENV", "production"),
            ("TASKMASTER_JWT_SECRET", "short")
        ])
        .is_err());
        assert!(settings(&[
            ("TASKMASTER_ENV", "production"),
            ("TASKMASTER_JWT_SECRET", "0123456789abcdef0123456789abcdef")
        ])
        .is_ok());
    }

    #[test]
    fn bad_values_name_their_variable() {
        assert_eq!(
            settings(&[("TASKMASTER_HTTP_ADDR", "nowhere")])
                .unwrap_err()
                .variable,
            "TASKMASTER_HTTP_ADDR"
        );
        assert_eq!(
            settings(&[("TASKMASTER_NATS_PREFIX", "a.b")])
                .unwrap_err()
                .variable,
            "TASKMASTER_NATS_PREFIX"
        );
        for (variable, value) in [
            ("TASKMASTER_PROJECTION_PARTITIONS", "0"),
            ("TASKMASTER_PROJECTION_PARTITIONS", "5000"),
            ("TASKMASTER_PROJECTION_LEASE_TTL_MS", "10"),
            ("TASKMASTER_ML_HOLDOUT", "0.9"),
            ("TASKMASTER_ML_HOLDOUT", "most"),
            ("TASKMASTER_ML_RETRAIN_AFTER", "0"),
        ] {
            assert_eq!(
                settings(&[(variable, value)]).unwrap_err().variable,
                variable
            );
        }
        assert_eq!(
            settings(&[("TASKMASTER_ENV", "staging")])
                .unwrap_err()
                .variable,
            "TASKMASTER_ENV"
        );
    }

    #[test]
    fn rate_limits_have_defaults_zero_turns_them_off_and_bad_values_are_one_line() {
        let s = settings(&[]).unwrap();
        let user = s.rate_limit_user.unwrap();
        assert_eq!(
            (user.limit, user.period, user.burst),
            (1200, Duration::from_secs(60), 1200)
        );
        assert_eq!(s.rate_limit_ip.unwrap().limit, 6000);
        assert!(s.trusted_proxies.is_empty());
        let s = settings(&[
            ("TASKMASTER_RATE_LIMIT_USER", "3/1s"),
            ("TASKMASTER_RATE_LIMIT_USER_BURST", "1"),
            ("TASKMASTER_RATE_LIMIT_IP", "0"),
            ("TASKMASTER_TRUSTED_PROXIES", "10.0.0.0/8,::1"),
        ])
        .unwrap();
        let user = s.rate_limit_user.unwrap();
        assert_eq!(
            (user.limit, user.period, user.burst),
            (3, Duration::from_secs(1), 1)
        );
        assert_eq!(s.rate_limit_ip, None);
        assert_eq!(s.trusted_proxies.len(), 2);
        for (variable, value) in [
            ("TASKMASTER_RATE_LIMIT_USER", "fast"),
            ("TASKMASTER_RATE_LIMIT_USER", "10/fortnight"),
            ("TASKMASTER_RATE_LIMIT_USER_BURST", "0"),
            ("TASKMASTER_RATE_LIMIT_IP", "-5"),
            ("TASKMASTER_RATE_LIMIT_IP_BURST", "lots"),
            ("TASKMASTER_TRUSTED_PROXIES", "10.0.0.0/8,proxy.local"),
        ] {
            let error = settings(&[(variable, value)]).unwrap_err();
            let variable = variable.trim_end_matches("_BURST");
            assert_eq!(error.variable, variable, "{value}");
            let line = error.to_string();
            assert!(!line.contains('\n') && line.starts_with(variable), "{line}");
        }
    }

    #[test]
    fn secrets_never_print() {
        let s = settings(&[
            ("TASKMASTER_JWT_SECRET", "hunter2-hunter2"),
            ("DATABASE_URL", "postgres://u:hunter2-db@db:5432/x"),
            ("REDIS_URL", "redis://:hunter2-redis@cache:6379"),
            (
                "TASKMASTER_JWKS",
                "https://u:hunter2-jwks@id.example/jwks?key=hunter2-query",
            ),
        ])
        .unwrap();
        let debug = format!("{s:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("Secret([redacted])"), "{debug}");
    }

    #[test]
    fn hs256_is_on_by_default_and_off_with_a_jwks_unless_a_secret_is_set_too() {
        let s = settings(&[]).unwrap();
        assert_eq!(
            s.jwt_secret.as_ref().map(Secret::expose),
            Some(DEV_JWT_SECRET)
        );
        assert_eq!(s.jwks, None);
        let s = settings(&[("TASKMASTER_JWKS", "/etc/taskmaster/jwks.json")]).unwrap();
        assert!(s.jwt_secret.is_none());
        assert_eq!(
            s.jwks,
            Some(JwksSource::File("/etc/taskmaster/jwks.json".into()))
        );
        let s = settings(&[
            (
                "TASKMASTER_JWKS",
                "https://id.example/.well-known/jwks.json",
            ),
            ("TASKMASTER_JWT_SECRET", "explicit-secret"),
        ])
        .unwrap();
        assert_eq!(
            s.jwt_secret.as_ref().map(Secret::expose),
            Some("explicit-secret")
        );
        assert!(matches!(s.jwks, Some(JwksSource::Url(_))));
        assert_eq!(
            settings(&[("TASKMASTER_JWKS", "ftp://id.example/jwks")])
                .unwrap_err()
                .variable,
            "TASKMASTER_JWKS"
        );
    }

    #[test]
    fn production_with_a_jwks_needs_no_secret_but_still_refuses_a_weak_one() {
        let jwks = ("TASKMASTER_JWKS", "https://id.example/jwks");
        let production = ("TASKMASTER_ENV", "production");
        assert!(settings(&[production, jwks]).unwrap().jwt_secret.is_none());
        for weak in [DEV_JWT_SECRET, "short"] {
            let error = settings(&[production, jwks, ("TASKMASTER_JWT_SECRET", weak)]).unwrap_err();
            assert_eq!(error.variable, "TASKMASTER_JWT_SECRET", "{weak}");
        }
    }

    #[test]
    fn production_refuses_a_key_set_fetched_over_plain_http() {
        let production = ("TASKMASTER_ENV", "production");
        let error =
            settings(&[production, ("TASKMASTER_JWKS", "http://id.example/jwks")]).unwrap_err();
        assert_eq!(error.variable, "TASKMASTER_JWKS");
        assert!(error.message.contains("https"), "{}", error.message);
        assert!(settings(&[production, ("TASKMASTER_JWKS", "/etc/taskmaster/jwks.json")]).is_ok());
        assert!(settings(&[("TASKMASTER_JWKS", "http://127.0.0.1:9/jwks")]).is_ok());
    }

    #[test]
    fn the_leeway_is_bounded_and_issuer_and_audience_are_optional() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.jwt_claims, ClaimRules::default());
        assert_eq!(s.jwt_claims.leeway_seconds, 30);
        let s = settings(&[
            ("TASKMASTER_JWT_LEEWAY_SECS", "0"),
            ("TASKMASTER_JWT_ISSUER", "https://id.example"),
            ("TASKMASTER_JWT_AUDIENCE", "taskmaster"),
        ])
        .unwrap();
        assert_eq!(s.jwt_claims.leeway_seconds, 0);
        assert_eq!(s.jwt_claims.issuer.as_deref(), Some("https://id.example"));
        assert_eq!(s.jwt_claims.audience.as_deref(), Some("taskmaster"));
        for value in ["301", "-1", "half a minute"] {
            assert_eq!(
                settings(&[("TASKMASTER_JWT_LEEWAY_SECS", value)])
                    .unwrap_err()
                    .variable,
                "TASKMASTER_JWT_LEEWAY_SECS",
                "{value}"
            );
        }
    }
}
