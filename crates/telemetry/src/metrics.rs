//! The Prometheus metrics of one taskmaster process.
//!
//! A registry per process instead of a global recorder: tests start several applications in
//! one process and each must count only its own traffic.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of an HTTP request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// Method, e.g. `POST`.
    pub method: String,
    /// The route template, e.g. `/v1/tasks/{id}` (never the raw path: bounded cardinality).
    pub route: String,
    /// Status code.
    pub status: u16,
}

/// Labels of an HTTP latency observation.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Method.
    pub method: String,
    /// Route template.
    pub route: String,
}

/// Labels of a command execution.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    /// The command, e.g. `CreateTask`.
    pub command: &'static str,
    /// `appended`, `unchanged`, `rejected`, `conflict` or `unavailable`.
    pub outcome: &'static str,
}

/// Labels of a projection.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProjectionLabels {
    /// The projection, e.g. `tasks`.
    pub projection: &'static str,
}

/// Labels of a projection partition.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    /// The projection, e.g. `tasks`.
    pub projection: &'static str,
    /// The partition number (a label value, so a string).
    pub partition: String,
}

/// Labels of a durable consumer of the task stream.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerLabels {
    /// `insights`, `ml` or `automation`.
    pub consumer: &'static str,
}

/// Labels of an automation's latency.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AutomationLabels {
    /// The automation (`recurrence`, `cascade`).
    pub automation: &'static str,
}

/// Labels of an automation's reactions.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AutomationOutcomeLabels {
    /// The automation (`recurrence`, `cascade`).
    pub automation: &'static str,
    /// `done`, `retried` or `dead_lettered`.
    pub outcome: &'static str,
}

/// Labels of an insights counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InsightsLabels {
    /// Cache requests: `hit`, `miss` or `bypass` (Redis failed). Refreshes: `stored`,
    /// `superseded` (the cache held a later position), `cache_unavailable`,
    /// `read_model_behind` or `failed`.
    pub outcome: &'static str,
}

/// Labels of a read-model query.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadLabels {
    /// Which database answered: `primary` (no replica configured), `replica`, or
    /// `primary_fallback` (a replica is configured but was down, failed this query, or had
    /// not replayed the position the query must see).
    pub source: &'static str,
}

fn latency_histogram() -> Histogram {
    // 0.1 ms .. ~3.3 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// Every metric of the process, and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests by method, route and status.
    pub http_requests: Family<HttpLabels, Counter>,
    /// Request latency by method and route.
    pub http_duration: Family<RouteLabels, Histogram>,
    /// Commands by type and outcome.
    pub commands: Family<CommandLabels, Counter>,
    /// The stream sequence each projection has applied (its checkpoint).
    pub projection_position: Family<ProjectionLabels, Gauge>,
    /// Events in the stream after each partition's checkpoint: how far the partition is
    /// behind the log, sampled from the stream's head and the stored checkpoints, so a stuck
    /// or unowned partition shows up even when no projector is applying it.
    pub projection_lag: Family<PartitionLabels, Gauge>,
    /// Dead letters currently recorded (not yet retried or discarded) per projection: a gauge
    /// so an alert can fire while any are waiting, not only when new ones appear.
    pub dead_letters_pending: Family<ProjectionLabels, Gauge>,
    /// Events in the stream a durable consumer (`insights`, `ml`) has not handled yet.
    pub consumer_lag: Family<ConsumerLabels, Gauge>,
    /// Time from sending an event to JetStream until its acknowledgement, by outcome
    /// (`appended`, `duplicate`, `wrong_last_sequence`, `failed`).
    pub append_duration: Family<OutcomeLabels, Histogram>,
    /// Events applied by each projection.
    pub projection_events: Family<ProjectionLabels, Counter>,
    /// Events each projection could not apply and recorded as dead letters.
    pub projection_dead_letters: Family<ProjectionLabels, Counter>,
    /// Duration of each projection batch transaction.
    pub projection_batch_duration: Family<ProjectionLabels, Histogram>,
    /// Insights requests by where the answer came from: the cache (`hit`), computed and cached
    /// (`miss`), or computed without the cache because Redis failed (`bypass`).
    pub insights_cache_requests: Family<InsightsLabels, Counter>,
    /// Refreshes of cached insights by the insights worker, by outcome.
    pub insights_refreshes: Family<InsightsLabels, Counter>,
    /// Time to compute one user's insights from the read model.
    pub insights_compute_duration: Histogram,
    /// Read-model queries (tasks, lists, insights) by the database that answered them; a
    /// rising `primary_fallback` means the read replica is down or lagging.
    pub read_queries: Family<ReadLabels, Counter>,
    /// The model version this process serves (0: none yet).
    pub model_version: Gauge,
    /// Holdout metrics of the served model: `mae`, `mdae` (minutes), `sa` (%), and the
    /// `median_baseline_mae` it is compared with.
    pub model_holdout: Family<ModelMetricLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Training rounds of the ml role by outcome: `published`, `kept` (the serving version
    /// stayed) or `failed`.
    pub model_trainings: Family<OutcomeLabels, Counter>,
    /// Rate-limit decisions by outcome: `allowed`, `limited` (answered 429) or `unavailable`
    /// (Redis could not answer and the request was served unlimited); a rising `unavailable`
    /// means the limits are not being enforced.
    pub rate_limit_decisions: Family<OutcomeLabels, Counter>,
    /// Reactions of the automation runtime by automation and outcome.
    pub automation_reactions: Family<AutomationOutcomeLabels, Counter>,
    /// Time from an event's append to the end of an automation's reaction to it.
    pub automation_lag: Family<AutomationLabels, Histogram>,
    /// Webhook delivery attempts by outcome: `delivered`, `retried` or `failed` (given up on).
    pub webhook_deliveries: Family<OutcomeLabels, Counter>,
}

/// Labels of a model holdout metric.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelMetricLabels {
    /// `mae`, `mdae`, `sa` or `median_baseline_mae`.
    pub metric: &'static str,
}

/// Labels of an outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// What happened.
    pub outcome: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("taskmaster");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration =
            Family::<RouteLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        let commands = Family::<CommandLabels, Counter>::default();
        let projection_position = Family::<ProjectionLabels, Gauge>::default();
        let projection_lag = Family::<PartitionLabels, Gauge>::default();
        let dead_letters_pending = Family::<ProjectionLabels, Gauge>::default();
        let consumer_lag = Family::<ConsumerLabels, Gauge>::default();
        let append_duration = Family::<OutcomeLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> _,
        );
        let projection_events = Family::<ProjectionLabels, Counter>::default();
        let projection_dead_letters = Family::<ProjectionLabels, Counter>::default();
        let projection_batch_duration = Family::<ProjectionLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> _,
        );
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method and route",
            http_duration.clone(),
        );
        registry.register("commands", "Commands by type and outcome", commands.clone());
        registry.register(
            "projection_position",
            "Stream sequence applied by the projection (its checkpoint)",
            projection_position.clone(),
        );
        registry.register(
            "projection_lag_events",
            "Events in the stream after the partition's checkpoint (sampled)",
            projection_lag.clone(),
        );
        registry.register(
            "dead_letters_pending",
            "Dead letters recorded and not yet retried or discarded",
            dead_letters_pending.clone(),
        );
        registry.register(
            "consumer_lag_events",
            "Events in the stream a durable consumer (insights, ml) has not handled yet",
            consumer_lag.clone(),
        );
        registry.register(
            "eventstore_append_duration_seconds",
            "Time from sending an event to JetStream until its acknowledgement, by outcome",
            append_duration.clone(),
        );
        registry.register(
            "projection_events",
            "Events applied by the projection",
            projection_events.clone(),
        );
        registry.register(
            "projection_dead_letters",
            "Events the projection could not apply and recorded as dead letters",
            projection_dead_letters.clone(),
        );
        registry.register(
            "projection_batch_duration_seconds",
            "Duration of a projection batch transaction",
            projection_batch_duration.clone(),
        );
        let insights_cache_requests = Family::<InsightsLabels, Counter>::default();
        let insights_refreshes = Family::<InsightsLabels, Counter>::default();
        let insights_compute_duration = latency_histogram();
        registry.register(
            "insights_cache_requests",
            "Insights requests by cache outcome: hit, miss, or bypass (Redis failed)",
            insights_cache_requests.clone(),
        );
        registry.register(
            "insights_refreshes",
            "Refreshes of cached insights by the insights worker, by outcome",
            insights_refreshes.clone(),
        );
        registry.register(
            "insights_compute_duration_seconds",
            "Time to compute one user's insights from the read model",
            insights_compute_duration.clone(),
        );
        let read_queries = Family::<ReadLabels, Counter>::default();
        registry.register(
            "read_queries",
            "Read-model queries by the database that answered: primary, replica or primary_fallback",
            read_queries.clone(),
        );
        let model_version = Gauge::default();
        let model_holdout =
            Family::<ModelMetricLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let model_trainings = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "model_version",
            "The model version this process serves (0: none yet)",
            model_version.clone(),
        );
        registry.register(
            "model_holdout",
            "Holdout metrics of the served effort model (mae, mdae in minutes, sa in %, median_baseline_mae)",
            model_holdout.clone(),
        );
        registry.register(
            "model_trainings",
            "Training rounds of the ml role by outcome: published, kept or failed",
            model_trainings.clone(),
        );
        let rate_limit_decisions = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "rate_limit_decisions",
            "Rate-limit decisions by outcome: allowed, limited or unavailable (Redis down: served unlimited)",
            rate_limit_decisions.clone(),
        );
        let automation_reactions = Family::<AutomationOutcomeLabels, Counter>::default();
        let automation_lag = Family::<AutomationLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> _,
        );
        registry.register(
            "automation_reactions",
            "Reactions of the automation runtime by automation and outcome: done, retried or dead_lettered",
            automation_reactions.clone(),
        );
        registry.register(
            "automation_lag_seconds",
            "Time from an event's append to the end of an automation's reaction to it",
            automation_lag.clone(),
        );
        let webhook_deliveries = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts by outcome: delivered, retried or failed (given up on)",
            webhook_deliveries.clone(),
        );
        Self {
            registry,
            webhook_deliveries,
            automation_reactions,
            automation_lag,
            rate_limit_decisions,
            model_version,
            model_holdout,
            model_trainings,
            http_requests,
            http_duration,
            commands,
            projection_position,
            projection_lag,
            dead_letters_pending,
            consumer_lag,
            append_duration,
            projection_events,
            projection_dead_letters,
            projection_batch_duration,
            insights_cache_requests,
            insights_refreshes,
            insights_compute_duration,
            read_queries,
        }
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_family_under_the_taskmaster_prefix() {
        let metrics = Metrics::new();
        metrics
            .commands
            .get_or_create(&CommandLabels {
                command: "CreateTask",
                outcome: "appended",
            })
            .inc();
        metrics
            .projection_position
            .get_or_create(&ProjectionLabels {
                projection: "tasks",
            })
            .set(7);
        metrics
            .insights_cache_requests
            .get_or_create(&InsightsLabels { outcome: "bypass" })
            .inc();
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"taskmaster_commands_total{command="CreateTask",outcome="appended"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"taskmaster_projection_position{projection="tasks"} 7"#),
            "{text}"
        );
        assert!(
            text.contains(r#"taskmaster_insights_cache_requests_total{outcome="bypass"} 1"#),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
