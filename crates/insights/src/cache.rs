//! The Redis cache of computed insights: one JSON value per user with a TTL.
//!
//! Redis only saves work here, so the cache is built never to be the reason a request fails
//! or hangs:
//! - every call is bounded by a short timeout (250 ms by default) and reports
//!   [`InsightsError::CacheUnavailable`] instead of waiting;
//! - the connection is a [`LazyRedis`]: made on first use; once Redis is found unreachable,
//!   calls fail at once and Redis is asked again at most once per [`RECONNECT_PAUSE`], so an
//!   outage costs a request nothing rather than a timeout each.
//!
//! Writes never move a value backwards: [`InsightsCache::store`] replaces a cached value only
//! if it reflects the same or an older read-model position (a small Lua script compares them
//! in Redis), so a slow API miss cannot overwrite what the worker refreshed a moment later.

use std::time::Duration;

use domain::UserId;

use crate::compute::Insights;
use crate::error::InsightsError;
use crate::redis_link::LazyRedis;
pub use crate::redis_link::RECONNECT_PAUSE;

/// Default bound on one Redis call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);
/// Default lifetime of a cached value: the bound on how stale a value can be when a refresh
/// was missed (Redis down while the user's events arrived) and on time-based drift (overdue
/// counts, streaks and windows move with the clock, not only with events).
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// The version of the cached JSON, part of the key: a release that changes [`Insights`] reads
/// and writes new keys, and the old ones expire with their TTL.
const SCHEMA_VERSION: u32 = 1;

/// Sets `KEYS[1]` to `ARGV[1]` for `ARGV[3]` seconds unless it holds a value whose `position`
/// is greater than `ARGV[2]`. Returns 1 when written, 0 when a newer value was kept. A value
/// that cannot be decoded (corrupt) is overwritten.
const STORE_IF_NOT_OLDER: &str = r#"
local current = redis.call('GET', KEYS[1])
if current then
  local ok, decoded = pcall(cjson.decode, current)
  if ok and type(decoded) == 'table' then
    local position = tonumber(decoded['position'])
    if position and position > tonumber(ARGV[2]) then
      return 0
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return 1
"#;

/// Settings of the cache.
#[derive(Debug, Clone)]
pub struct CacheOptions {
    /// `TASKMASTER_NATS_PREFIX`: keys are `taskmaster:<prefix>:insights:…` (or
    /// `taskmaster:insights:…` without a prefix), so environments and test runs sharing a
    /// Redis never see each other's values.
    pub prefix: String,
    /// Lifetime of a cached value.
    pub ttl: Duration,
    /// Bound on each Redis call.
    pub timeout: Duration,
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            ttl: DEFAULT_TTL,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Cached insights per user in Redis.
pub struct InsightsCache {
    connection: LazyRedis,
    namespace: String,
    options: CacheOptions,
}

impl std::fmt::Debug for InsightsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InsightsCache")
            .field("namespace", &self.namespace)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn unavailable(error: impl std::fmt::Display) -> InsightsError {
    InsightsError::CacheUnavailable(error.to_string())
}

impl InsightsCache {
    /// A cache on `client`; nothing is connected until the first call.
    pub fn new(client: redis::Client, options: CacheOptions) -> Self {
        let namespace = if options.prefix.is_empty() {
            "taskmaster:insights".to_owned()
        } else {
            format!("taskmaster:{}:insights", options.prefix)
        };
        Self {
            connection: LazyRedis::new(client, options.timeout),
            namespace,
            options,
        }
    }

    /// The key of `user`'s insights.
    pub fn key(&self, user: &UserId) -> String {
        format!("{}:v{SCHEMA_VERSION}:{user}", self.namespace)
    }

    /// The lifetime of a cached value.
    pub fn ttl(&self) -> Duration {
        self.options.ttl
    }

    /// Runs one command, bounded by the timeout (and failing at once while Redis was just
    /// found unreachable).
    async fn run<T: redis::FromRedisValue>(
        &self,
        command: &redis::Cmd,
    ) -> Result<T, InsightsError> {
        self.connection
            .call(|mut connection| async move { command.query_async::<T>(&mut connection).await })
            .await
            .map_err(unavailable)
    }

    /// `user`'s cached insights, if any. A value that does not decode (written by another
    /// version, or corrupt) counts as absent; the next store replaces it.
    #[tracing::instrument(skip_all, fields(user = %user), err(level = "warn"))]
    pub async fn get(&self, user: &UserId) -> Result<Option<Insights>, InsightsError> {
        let value: Option<String> = self.run(redis::cmd("GET").arg(self.key(user))).await?;
        Ok(value.and_then(|json| match serde_json::from_str(&json) {
            Ok(insights) => Some(insights),
            Err(error) => {
                tracing::warn!(%error, "ignoring an undecodable cached insights value");
                None
            }
        }))
    }

    /// Caches `insights` for `user` with the TTL, unless the cache already holds a value of a
    /// later position. Returns whether it was written.
    #[tracing::instrument(skip_all, fields(user = %user, position = insights.position), err(level = "warn"))]
    pub async fn store(&self, user: &UserId, insights: &Insights) -> Result<bool, InsightsError> {
        let json = serde_json::to_string(insights).map_err(unavailable)?;
        let written: i64 = self
            .run(
                redis::cmd("EVAL")
                    .arg(STORE_IF_NOT_OLDER)
                    .arg(1)
                    .arg(self.key(user))
                    .arg(json)
                    .arg(insights.position)
                    .arg(self.options.ttl.as_secs().max(1)),
            )
            .await?;
        Ok(written == 1)
    }

    /// Drops `user`'s cached insights (after an erasure, or when a refresh cannot be made).
    #[tracing::instrument(skip_all, fields(user = %user), err(level = "warn"))]
    pub async fn forget(&self, user: &UserId) -> Result<(), InsightsError> {
        let _: i64 = self.run(redis::cmd("DEL").arg(self.key(user))).await?;
        Ok(())
    }
}
