//! Observability of taskmaster: structured logs and spans (exported over OTLP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set), W3C trace context for the `traceparent` header of
//! every event, and the Prometheus metrics served at `/metrics`.
//!
//! # Layout
//! - [`tracing_setup`]: installs the global subscriber once, from `main`.
//! - [`trace_context`]: reads and writes `traceparent` values.
//! - [`metrics`]: one [`Metrics`] registry per process (no global), shared by every role.

pub mod metrics;
pub mod trace_context;
pub mod tracing_setup;

pub use metrics::Metrics;
pub use tracing_setup::{init, LogFormat, TelemetryConfig, TelemetryError, TelemetryGuard};
