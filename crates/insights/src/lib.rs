//! Per-user productivity insights: computed from the tasks read model, cached in Redis with a
//! TTL, refreshed by a worker when the user's events arrive.
//!
//! The numbers are a pure function of a user's task rows, their time zone and `now`
//! ([`compute::compute`]), so they are tested without any service. Around that function:
//! a bounded loader reads the rows in one snapshot with the read-model position they reflect,
//! a cache keeps the result per user, the service decides between the two, and the worker
//! keeps the cache current from the event stream.
//!
//! Redis is an optimisation only. With Redis down the API still answers, computed from
//! Postgres ([`service::CacheOutcome::Bypass`]), and every Redis call is bounded in time so a
//! dead Redis slows nothing down; the worker keeps consuming and acking.
//!
//! # Layout
//! - [`compute`]: [`Insights`] and the pure computation, with the productivity score's
//!   definition; given/when/then tests.
//! - [`advice`]: plain-language sentences from the numbers, with thresholds and minimum
//!   samples.
//! - [`load`]: a user's recent and unfinished tasks from Postgres, with the position.
//! - [`cache`]: [`InsightsCache`], one JSON value per user in Redis, bounded calls, lazy
//!   connection, never moving a value back to an older position.
//! - [`redis_link`]: [`redis_link::LazyRedis`], the lazily made, bounded Redis connection the
//!   cache and the API's rate limiter share.
//! - [`service`]: [`InsightsService`]: cache hit, or compute and store, or bypass.
//! - [`worker`]: [`InsightsWorker`], the `insights` role: durable consumer, per-user debounce,
//!   refresh after the read model has caught up.
//! - [`error`]: the crate's one error enum.

pub mod advice;
pub mod cache;
pub mod compute;
pub mod error;
pub mod load;
pub mod redis_link;
pub mod service;
pub mod worker;

pub use cache::{CacheOptions, InsightsCache};
pub use compute::{Insights, TaskFacts};
pub use error::InsightsError;
pub use service::{Answer, CacheOutcome, InsightsService};
pub use worker::{InsightsWorker, WorkerOptions};
