//! Rate limiting per user and per client address, in Redis so the limits hold across replicas.
//!
//! # Algorithm
//! GCRA (the generic cell rate algorithm, a leaky bucket kept as one timestamp per key): a key
//! stores its *theoretical arrival time*; a request is allowed when it does not come earlier
//! than that time minus the burst tolerance, and moves the time on by one emission interval
//! (`period / limit`). It needs one small value per key, no counters to sweep, and gives exact
//! `remaining` and `retry after` figures for the `RateLimit-*` headers.
//!
//! It runs as one Lua script ([`GCRA`], sent with `EVALSHA`, loaded on `NOSCRIPT`) so a request's
//! user and address limits are checked and taken in one round trip and atomically: a request
//! refused by one limit does not consume the other. The clock is Redis's (`TIME`), so replicas
//! whose clocks drift still share one timeline. The `redis-cell` module would do the same in
//! Redis natively but is not available on the servers we target; in-process crates (`governor`)
//! keep their state per process, so N replicas would allow N times the limit.
//!
//! # Failure
//! Redis only enforces a limit here; it must never be why a request fails or hangs. So the
//! limiter fails open: every call is bounded (250 ms), the connection is the insights cache's
//! kind ([`LazyRedis`]: made lazily; once Redis is found unreachable, not asked again for
//! [`RECONNECT_PAUSE`], so requests meanwhile pay nothing), and when Redis cannot answer the
//! request is served without `RateLimit-*` headers, counted as
//! `taskmaster_rate_limit_decisions_total{outcome="unavailable"}` and logged as a warning at
//! most once per [`WARN_INTERVAL`].
//!
//! # Client address
//! The socket peer (axum `ConnectInfo`), unless it is one of `TASKMASTER_TRUSTED_PROXIES`: then
//! `X-Forwarded-For` is read from the right, skipping trusted proxies, and the first other
//! address is the client's. A header from an untrusted peer is ignored, so a client cannot
//! pick its own key. IPv6 clients are keyed by their /64, which one subscriber usually holds
//! whole, so rotating addresses inside it does not multiply the limit.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::UserId;
use insights::redis_link::LazyRedis;
use ipnet::IpNet;
use telemetry::metrics::OutcomeLabels;
use telemetry::Metrics;

use crate::auth::{bearer_token, AuthUser, TokenVerifier};
use crate::problem::ApiError;
use crate::state::AppState;

/// Default bound on one Redis call: a dead Redis adds at most this to a request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);
pub use insights::redis_link::RECONNECT_PAUSE;
/// Shortest time between two warnings that the limiter cannot reach Redis.
pub const WARN_INTERVAL: Duration = Duration::from_secs(30);

/// `RateLimit-Limit`: the quota of the policy that decided.
pub const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
/// `RateLimit-Remaining`: requests left before the limit is hit.
pub const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
/// `RateLimit-Reset`: seconds until the quota is whole again.
pub const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
/// `RateLimit-Policy`: `<limit>;w=<window seconds>;burst=<burst>;scope=<user|ip>`.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// GCRA over every key of the call, all or nothing.
///
/// `KEYS[i]` holds a theoretical arrival time in microseconds of Redis's clock;
/// `ARGV[2i-1]` is the emission interval and `ARGV[2i]` the burst tolerance of key `i`, both
/// in microseconds. The request is allowed only if every key allows it, and only then are the
/// keys moved on (each expiring when it would be back to a full bucket). Returns
/// `{allowed, remaining_1, reset_us_1, retry_us_1, remaining_2, ...}`.
pub const GCRA: &str = r#"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local allowed = 1
local state = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - tolerance
  state[i] = { interval, tat, new_tat, allow_at }
  if now < allow_at then allowed = 0 end
end
local out = { allowed }
for i = 1, #KEYS do
  local interval, tat, new_tat, allow_at = unpack(state[i])
  if allowed == 1 then
    redis.call('SET', KEYS[i], string.format('%.0f', new_tat),
      'PX', math.max(1, math.ceil((new_tat - now) / 1000)))
    table.insert(out, math.floor((now - allow_at) / interval))
    table.insert(out, new_tat - now)
    table.insert(out, 0)
  elseif now < allow_at then
    table.insert(out, 0)
    table.insert(out, tat - now)
    table.insert(out, allow_at - now)
  else
    table.insert(out, math.floor((now - allow_at) / interval) + 1)
    table.insert(out, tat - now)
    table.insert(out, 0)
  end
end
return out
"#;

/// A quota: `limit` requests per `period`, of which up to `burst` may come at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Requests per period (the sustained rate).
    pub limit: u32,
    /// The period of `limit`.
    pub period: Duration,
    /// Requests that may arrive back to back after a quiet spell (at least 1).
    pub burst: u32,
}

impl Quota {
    /// Parses `N` (requests per minute) or `N/PERIOD` with `PERIOD` like `1s`, `500ms`, `1m`,
    /// `1h` (`s`, `m`, `h` alone mean one of them). `0` means no limit (`None`). The burst is
    /// `burst`, or `N` when not given.
    pub fn parse(raw: &str, burst: Option<&str>) -> Result<Option<Quota>, String> {
        let raw = raw.trim();
        let (count, period) = match raw.split_once('/') {
            Some((count, period)) => (count.trim(), parse_period(period.trim())?),
            None => (raw, Duration::from_secs(60)),
        };
        let limit: u32 = count.parse().map_err(|_| {
            format!(
                "expected requests per minute (e.g. 600) or per period (e.g. 600/1m), not {raw:?}"
            )
        })?;
        if limit == 0 {
            return Ok(None);
        }
        let burst = match burst.map(str::trim) {
            None => limit,
            Some(value) => match value.parse::<u32>() {
                Ok(burst) if burst >= 1 => burst,
                _ => {
                    return Err(format!(
                        "the burst must be a positive integer, not {value:?}"
                    ))
                }
            },
        };
        let quota = Quota {
            limit,
            period,
            burst,
        };
        if quota.interval_micros() < 1 {
            return Err(format!("{raw:?} is more than one request per microsecond"));
        }
        Ok(Some(quota))
    }

    /// Time between two requests at the sustained rate, in microseconds.
    pub fn interval_micros(&self) -> u64 {
        (self.period.as_micros() / u128::from(self.limit)) as u64
    }

    /// How far ahead of the sustained rate a client may be, in microseconds.
    fn tolerance_micros(&self) -> u64 {
        self.interval_micros() * u64::from(self.burst)
    }

    /// The `RateLimit-Policy` value.
    fn policy(&self, scope: Scope) -> String {
        let window = self.period.as_secs().max(1);
        format!(
            "{};w={window};burst={};scope={}",
            self.limit,
            self.burst,
            scope.as_str()
        )
    }
}

fn parse_period(raw: &str) -> Result<Duration, String> {
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let number: u64 = if number.is_empty() {
        1
    } else {
        number.parse().map_err(|_| format!("bad period {raw:?}"))?
    };
    let period = match unit {
        "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" | "min" => Duration::from_secs(number * 60),
        "h" => Duration::from_secs(number * 3600),
        _ => {
            return Err(format!(
                "the period must be like 500ms, 1s, 1m or 1h, not {raw:?}"
            ))
        }
    };
    if period.is_zero() {
        return Err(format!("the period must be positive, not {raw:?}"));
    }
    Ok(period)
}

/// Which limit a decision is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The authenticated user (the token's subject).
    User,
    /// The client's address.
    Ip,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::Ip => "ip",
        }
    }
}

/// Settings of the limiter.
#[derive(Debug, Clone)]
pub struct RateLimitOptions {
    /// `TASKMASTER_NATS_PREFIX`: keys are `taskmaster:<prefix>:ratelimit:…` (or
    /// `taskmaster:ratelimit:…`), like the insights cache, so runs sharing a Redis stay apart.
    pub prefix: String,
    /// `TASKMASTER_RATE_LIMIT_USER`: per authenticated user; `None` for no limit.
    pub user: Option<Quota>,
    /// `TASKMASTER_RATE_LIMIT_IP`: per client address, on every limited request (also those
    /// without a valid token, so guessing tokens is limited too); `None` for no limit.
    pub ip: Option<Quota>,
    /// `TASKMASTER_TRUSTED_PROXIES`: peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Bound on each Redis call.
    pub timeout: Duration,
}

impl Default for RateLimitOptions {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            user: None,
            ip: None,
            trusted_proxies: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Parses `TASKMASTER_TRUSTED_PROXIES`: comma-separated CIDRs or single addresses.
pub fn parse_trusted_proxies(raw: &str) -> Result<Vec<IpNet>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{item:?} is not a CIDR (e.g. 10.0.0.0/8) or an address"))
        })
        .collect()
}

/// One limit's figures for the headers.
#[derive(Debug, Clone, Copy)]
struct Figures {
    scope: Scope,
    quota: Quota,
    remaining: u64,
    reset_micros: u64,
    retry_micros: u64,
}

/// What the limiter decided for one request.
#[derive(Debug, Clone, Copy)]
enum Decision {
    /// Served; the figures of the tightest limit.
    Allowed(Figures),
    /// Refused; the figures of the limit that refused.
    Limited(Figures),
}

/// The Redis-backed limiter shared by the request handlers of one process.
pub struct RateLimiter {
    connection: LazyRedis,
    script: redis::Script,
    namespace: String,
    options: RateLimitOptions,
    metrics: Arc<Metrics>,
    last_warning: StdMutex<Option<Instant>>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("namespace", &self.namespace)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn unavailable(cause: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable {
        dependency: "redis",
        cause: cause.to_string(),
    }
}

impl RateLimiter {
    /// A limiter on `client`; nothing is connected until the first limited request.
    pub fn new(client: redis::Client, options: RateLimitOptions, metrics: Arc<Metrics>) -> Self {
        let namespace = if options.prefix.is_empty() {
            "taskmaster:ratelimit".to_owned()
        } else {
            format!("taskmaster:{}:ratelimit", options.prefix)
        };
        Self {
            connection: LazyRedis::new(client, options.timeout),
            script: redis::Script::new(GCRA),
            namespace,
            options,
            metrics,
            last_warning: StdMutex::new(None),
        }
    }

    /// Whether any limit is configured (when none is, requests never touch Redis).
    pub fn is_enabled(&self) -> bool {
        self.options.user.is_some() || self.options.ip.is_some()
    }

    /// The Redis key of a user's limit.
    pub fn user_key(&self, user: &UserId) -> String {
        format!("{}:user:{user}", self.namespace)
    }

    /// The Redis key of a client address's limit.
    pub fn ip_key(&self, ip: IpAddr) -> String {
        format!("{}:ip:{}", self.namespace, ip_bucket(ip))
    }

    /// The client address of a request from `peer`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        client_ip(peer, headers, &self.options.trusted_proxies)
    }

    /// Checks and takes one request from each applicable limit. `None` when no limit applies.
    /// Errors are logged at debug only: [`Self::warn_unavailable`] says it once per interval.
    #[tracing::instrument(name = "rate_limit.decide", skip_all, fields(user = user.map(|u| u.as_str())), err(level = "debug"))]
    async fn decide(
        &self,
        user: Option<&UserId>,
        ip: Option<IpAddr>,
    ) -> Result<Option<Decision>, ApiError> {
        let mut limits: Vec<(Scope, Quota, String)> = Vec::with_capacity(2);
        if let (Some(quota), Some(user)) = (self.options.user, user) {
            limits.push((Scope::User, quota, self.user_key(user)));
        }
        if let (Some(quota), Some(ip)) = (self.options.ip, ip) {
            limits.push((Scope::Ip, quota, self.ip_key(ip)));
        }
        if limits.is_empty() {
            return Ok(None);
        }
        let mut invocation = self.script.prepare_invoke();
        for (_, quota, key) in &limits {
            invocation
                .key(key.as_str())
                .arg(quota.interval_micros())
                .arg(quota.tolerance_micros());
        }
        let answer = self
            .connection
            .call(|mut connection| async move {
                invocation.invoke_async::<Vec<i64>>(&mut connection).await
            })
            .await
            .map_err(unavailable)?;
        if answer.len() != 1 + 3 * limits.len() {
            return Err(unavailable(format!("unexpected script answer {answer:?}")));
        }
        let allowed = answer[0] == 1;
        let figures =
            limits
                .iter()
                .zip(answer[1..].chunks(3))
                .map(|((scope, quota, _), values)| Figures {
                    scope: *scope,
                    quota: *quota,
                    remaining: values[0].max(0) as u64,
                    reset_micros: values[1].max(0) as u64,
                    retry_micros: values[2].max(0) as u64,
                });
        // Allowed: the tightest limit speaks for the answer. Refused: the limit that refused
        // (the longest wait when both did).
        let decision = if allowed {
            figures.min_by_key(|f| f.remaining).map(Decision::Allowed)
        } else {
            figures
                .max_by_key(|f| f.retry_micros)
                .map(Decision::Limited)
        };
        Ok(decision)
    }

    fn count(&self, outcome: &'static str) {
        self.metrics
            .rate_limit_decisions
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    fn warn_unavailable(&self, error: &ApiError) {
        let mut last = self
            .last_warning
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if last.is_none_or(|at| at.elapsed() >= WARN_INTERVAL) {
            *last = Some(Instant::now());
            tracing::warn!(%error, "rate limiting is off while Redis cannot answer (fail-open); requests are served unlimited");
        }
    }
}

/// The key of an address: itself for IPv4, its /64 for IPv6 (IPv4-mapped ones as IPv4).
fn ip_bucket(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

/// The client address of a request from `peer` (see the crate docs on trusted proxies).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(&ip.to_canonical()));
    let peer = peer.to_canonical();
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            // Garbage in the chain: nothing left of it can be believed.
            break;
        };
        client = ip.to_canonical();
        if !is_trusted(&client) {
            break;
        }
    }
    client
}

/// The subject of the request's bearer token, if it carries a valid one. Requests without
/// one are limited by address only; the handler's extractor answers their 401.
fn token_subject(headers: &HeaderMap, verifier: &TokenVerifier) -> Option<UserId> {
    verifier.verify(bearer_token(headers).ok()?).ok()
}

fn seconds_up(micros: u64) -> u64 {
    micros.div_ceil(1_000_000)
}

fn set_headers(headers: &mut HeaderMap, figures: &Figures) {
    let number = |n: u64| HeaderValue::from_str(&n.to_string()).ok();
    let pairs = [
        (RATELIMIT_LIMIT, number(u64::from(figures.quota.limit))),
        (RATELIMIT_REMAINING, number(figures.remaining)),
        (RATELIMIT_RESET, number(seconds_up(figures.reset_micros))),
        (
            RATELIMIT_POLICY,
            HeaderValue::from_str(&figures.quota.policy(figures.scope)).ok(),
        ),
    ];
    for (name, value) in pairs {
        if let Some(value) = value {
            headers.insert(name, value);
        }
    }
}

/// The middleware of the limited routes (every `/v1` route; the operational ones are not).
///
/// Answers 429 over the limit and adds the `RateLimit-*` headers to every decided answer; when
/// Redis cannot answer, serves the request as if unlimited (see the module docs).
pub async fn enforce(State(app): State<AppState>, mut request: Request, next: Next) -> Response {
    let limiter = &app.rate_limiter;
    if !limiter.is_enabled() {
        return next.run(request).await;
    }
    let user = token_subject(request.headers(), &app.verifier);
    if let Some(user) = &user {
        // The handler's `AuthUser` takes it from here instead of verifying the token again.
        request.extensions_mut().insert(AuthUser(user.clone()));
    }
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| limiter.client_ip(peer.ip(), request.headers()));
    match limiter.decide(user.as_ref(), ip).await {
        Ok(None) => next.run(request).await,
        Ok(Some(Decision::Allowed(figures))) => {
            limiter.count("allowed");
            let mut response = next.run(request).await;
            set_headers(response.headers_mut(), &figures);
            response
        }
        Ok(Some(Decision::Limited(figures))) => {
            limiter.count("limited");
            let mut response = ApiError::RateLimited {
                scope: figures.scope.as_str(),
                retry_after_secs: seconds_up(figures.retry_micros).max(1),
            }
            .into_response();
            set_headers(response.headers_mut(), &figures);
            response
        }
        Err(error) => {
            limiter.count("unavailable");
            limiter.warn_unavailable(&error);
            next.run(request).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_parse_per_minute_or_per_period_and_zero_disables() {
        let q = Quota::parse("600", None).unwrap().unwrap();
        assert_eq!(
            (q.limit, q.period, q.burst),
            (600, Duration::from_secs(60), 600)
        );
        assert_eq!(q.interval_micros(), 100_000);
        let q = Quota::parse("5/2s", Some("2")).unwrap().unwrap();
        assert_eq!((q.limit, q.period, q.burst), (5, Duration::from_secs(2), 2));
        assert_eq!(
            Quota::parse("10/m", None).unwrap().unwrap().period,
            Duration::from_secs(60)
        );
        assert_eq!(
            Quota::parse("10/500ms", None).unwrap().unwrap().period,
            Duration::from_millis(500)
        );
        assert_eq!(Quota::parse("0", None).unwrap(), None);
        for bad in ["lots", "5/0s", "5/2d", "-1", "5/", "2000000/1s"] {
            let error = Quota::parse(bad, None).unwrap_err();
            assert!(!error.contains('\n'), "{error}");
        }
        assert!(Quota::parse("5", Some("0")).is_err());
        assert!(Quota::parse("5", Some("many")).is_err());
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let trusted = parse_trusted_proxies("10.0.0.0/8, 192.168.1.1").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 203.0.113.7, 10.1.2.3"),
        );
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let stranger: IpAddr = "198.51.100.9".parse().unwrap();
        // Through trusted proxies: the right-most address that is not one of them.
        assert_eq!(
            client_ip(proxy, &headers, &trusted),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        // A client sending the header itself picks nothing.
        assert_eq!(client_ip(stranger, &headers, &trusted), stranger);
        assert_eq!(client_ip(proxy, &headers, &[]), proxy);
        // A trusted peer without the header is the client.
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy);
        assert!(parse_trusted_proxies("10.0.0.0/33").is_err());
        assert!(parse_trusted_proxies("").unwrap().is_empty());
    }

    #[test]
    fn ipv6_clients_share_their_64_and_mapped_ipv4_is_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_bucket(a), ip_bucket(b));
        assert_ne!(ip_bucket(a), ip_bucket(other));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(ip_bucket(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }
}
