//! [`InsightsService`]: what the API and the worker call. It answers from the cache when it can,
//! computes from Postgres when it must, and treats every Redis failure as "compute instead".

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use domain::UserId;
use projections::ReadSource;
use telemetry::metrics::InsightsLabels;
use telemetry::Metrics;

use crate::cache::InsightsCache;
use crate::compute::{compute, Insights, InsightsInput};
use crate::error::InsightsError;
use crate::load::load_history;

/// Where an answer came from; sent to clients as the `Tm-Cache` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// From the cache.
    Hit,
    /// Not cached (or cached before the requested position): computed and stored.
    Miss,
    /// Redis failed: computed from Postgres without the cache.
    Bypass,
}

impl CacheOutcome {
    /// `hit`, `miss` or `bypass`.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Bypass => "bypass",
        }
    }
}

/// Insights and where they came from.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The insights.
    pub insights: Insights,
    /// Whether the cache served them.
    pub cache: CacheOutcome,
}

/// Computing and caching insights.
#[derive(Debug)]
pub struct InsightsService {
    /// The read model (the primary, or a replica in front of it).
    reads: ReadSource,
    cache: InsightsCache,
    metrics: Arc<Metrics>,
}

impl InsightsService {
    /// A service reading `reads` and caching in `cache`.
    pub fn new(reads: ReadSource, cache: InsightsCache, metrics: Arc<Metrics>) -> Self {
        Self {
            reads,
            cache,
            metrics,
        }
    }

    /// Where the service reads, and the position to wait on before asking it for a position
    /// (the worker waits there, so it waits on the database it then reads).
    pub fn reads(&self) -> &ReadSource {
        &self.reads
    }

    /// The cache, for erasure and tests.
    pub fn cache(&self) -> &InsightsCache {
        &self.cache
    }

    /// Computes `owner`'s insights from the read model, now, reading a database that has
    /// reached `at_least` when given (see [`ReadSource::query`]).
    pub async fn compute(
        &self,
        owner: &UserId,
        at_least: Option<u64>,
    ) -> Result<Insights, InsightsError> {
        let started = Instant::now();
        let now = Utc::now();
        let history = self
            .reads
            .query(at_least, |pool| async move {
                load_history(&pool, owner, now).await
            })
            .await?;
        let insights = compute(&InsightsInput {
            tasks: &history.tasks,
            time_zone: &history.time_zone,
            now,
            position: history.position,
        });
        self.metrics
            .insights_compute_duration
            .observe(started.elapsed().as_secs_f64());
        Ok(insights)
    }

    /// `owner`'s insights reflecting at least `min_position` (the caller has waited for the
    /// read model to reach it): the cached value when it is recent enough, else computed from
    /// Postgres and cached. Fails only when Postgres does; a Redis failure gives
    /// [`CacheOutcome::Bypass`].
    pub async fn get(
        &self,
        owner: &UserId,
        min_position: Option<u64>,
    ) -> Result<Answer, InsightsError> {
        let cached = self.cache.get(owner).await;
        let outcome = match cached {
            Ok(Some(insights)) if min_position.is_none_or(|min| insights.position >= min) => {
                self.count(CacheOutcome::Hit);
                return Ok(Answer {
                    insights,
                    cache: CacheOutcome::Hit,
                });
            }
            Ok(_) => CacheOutcome::Miss,
            Err(_) => CacheOutcome::Bypass,
        };
        let insights = self.compute(owner, min_position).await?;
        let outcome = match outcome {
            // Redis just failed: do not pay its timeout a second time.
            CacheOutcome::Bypass => CacheOutcome::Bypass,
            _ => match self.cache.store(owner, &insights).await {
                Ok(_) => CacheOutcome::Miss,
                Err(_) => CacheOutcome::Bypass,
            },
        };
        self.count(outcome);
        Ok(Answer {
            insights,
            cache: outcome,
        })
    }

    /// Recomputes `owner`'s insights from a read model at `at_least` or later (the position
    /// the worker waited for) and caches them (the worker's refresh). Returns whether the
    /// value was written (`false`: the cache already held a later position). Fails with
    /// [`InsightsError::CacheUnavailable`] when Redis does.
    pub async fn refresh(&self, owner: &UserId, at_least: u64) -> Result<bool, InsightsError> {
        let insights = self.compute(owner, Some(at_least)).await?;
        self.cache.store(owner, &insights).await
    }

    fn count(&self, outcome: CacheOutcome) {
        self.metrics
            .insights_cache_requests
            .get_or_create(&InsightsLabels {
                outcome: outcome.as_str(),
            })
            .inc();
    }
}
