//! Installs the process-wide tracing subscriber (logs on stderr, so stdout stays for what a
//! command prints): a log layer (text for people, JSON for log
//! shippers) and an OpenTelemetry layer. The OpenTelemetry layer is installed even without an
//! exporter, so every span has real trace and span ids to stamp on events as `traceparent`.

use std::io::IsTerminal;

use opentelemetry::trace::{TraceContextExt as _, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OtelData;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// What the telemetry needs from the settings.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// Log line format.
    pub log_format: LogFormat,
    /// `RUST_LOG`-style filter, e.g. `info,taskmaster=debug`.
    pub log_filter: String,
    /// OTLP/HTTP endpoint for traces; `None` exports nothing.
    pub otlp_endpoint: Option<String>,
}

/// Failures while installing telemetry.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The log filter did not parse.
    #[error("invalid log filter: {0}")]
    Filter(String),
    /// The OTLP exporter could not be built.
    #[error("OTLP exporter: {0}")]
    Exporter(String),
    /// A global subscriber was already installed.
    #[error("tracing subscriber already installed: {0}")]
    AlreadyInstalled(String),
}

/// Flushes and shuts down the exporter when dropped, so the last spans are not lost on exit.
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl TelemetryGuard {
    /// Exports every finished span now instead of at the next batch interval (tests, and
    /// before a short command exits).
    pub fn flush(&self) -> Result<(), TelemetryError> {
        self.provider
            .force_flush()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// Installs the global subscriber. Call once, from `main`.
pub fn init(config: &TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    let filter = EnvFilter::try_new(&config.log_filter)
        .map_err(|e| TelemetryError::Filter(e.to_string()))?;
    let resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = &config.otlp_endpoint {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .map_err(|e| TelemetryError::Exporter(format!("{endpoint}: {e}")))?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    // Each layer has its own filter: the log filter says which lines are written, and must
    // not decide which spans exist, or `RUST_LOG=warn` would silently switch tracing off.
    // Spans are recorded from INFO up, whatever the log level.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("taskmaster"))
        .with_filter(LevelFilter::INFO);
    let registry = tracing_subscriber::registry().with(otel);
    let installed = match config.log_format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_filter(filter),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(json_layer(std::io::stderr).with_filter(filter))
            .try_init(),
    };
    installed.map_err(|e| TelemetryError::AlreadyInstalled(e.to_string()))?;
    Ok(TelemetryGuard { provider })
}

/// The JSON log layer: one object per line, the event's fields flattened, and the
/// OpenTelemetry `trace_id` and `span_id` of the span it happened in, so a log line can be
/// joined to its trace in the tracing backend.
fn json_layer<S, W>(writer: W) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .event_format(JsonWithTraceIds {
            inner: tracing_subscriber::fmt::format().json().flatten_event(true),
        })
        .with_writer(writer)
}

/// tracing-subscriber's JSON lines plus the trace and span ids of the current span.
///
/// The ids live in the OpenTelemetry layer's span extension, which the JSON formatter does not
/// know about; the line is formatted by it and the two fields are appended before its closing
/// brace, so every other field stays exactly as tracing-subscriber writes it.
struct JsonWithTraceIds {
    inner: Format<Json>,
}

impl<S, N> FormatEvent<S, N> for JsonWithTraceIds
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let ids = ctx.lookup_current().and_then(|span| {
            let extensions = span.extensions();
            let data = extensions.get::<OtelData>()?;
            let span_id = data.builder.span_id?;
            let trace_id = data
                .builder
                .trace_id
                .unwrap_or_else(|| data.parent_cx.span().span_context().trace_id());
            (trace_id != TraceId::INVALID).then_some((trace_id, span_id))
        });
        let mut line = String::with_capacity(256);
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let object = line.trim_end().strip_suffix('}');
        match (ids, object) {
            (Some((trace_id, span_id)), Some(open)) => {
                let separator = if open.ends_with('{') { "" } else { "," };
                writeln!(
                    writer,
                    "{open}{separator}\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"}}"
                )
            }
            _ => writer.write_str(&line),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Collects what the layer writes.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(with_otel: bool, log: impl FnOnce()) -> Vec<serde_json::Value> {
        let lines = Lines::default();
        let writer = {
            let lines = lines.clone();
            move || lines.clone()
        };
        let provider = SdkTracerProvider::builder().build();
        let otel =
            with_otel.then(|| tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let subscriber = tracing_subscriber::registry()
            .with(otel)
            .with(json_layer(writer));
        tracing::subscriber::with_default(subscriber, log);
        let bytes = lines.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        String::from_utf8(bytes)
            .expect("utf-8")
            .lines()
            .map(|line| serde_json::from_str(line).expect("each line is one JSON object"))
            .collect()
    }

    #[test]
    fn json_lines_carry_the_trace_and_span_ids_of_their_span() {
        let mut seen = None;
        let lines = logged(true, || {
            let span = tracing::info_span!("request");
            let _entered = span.enter();
            let context = tracing_opentelemetry::OpenTelemetrySpanExt::context(&span);
            let span_context = context.span().span_context().clone();
            seen = Some((
                span_context.trace_id().to_string(),
                span_context.span_id().to_string(),
            ));
            tracing::info!(answer = 42, "inside");
        });
        let (trace_id, span_id) = seen.expect("the span had a context");
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["message"], "inside");
        assert_eq!(lines[0]["answer"], 42);
        assert_eq!(lines[0]["trace_id"], trace_id.as_str());
        assert_eq!(lines[0]["span_id"], span_id.as_str());
    }

    #[test]
    fn json_lines_outside_any_span_or_without_the_otel_layer_have_no_ids() {
        let outside = logged(true, || tracing::info!("alone"));
        let untraced = logged(false, || {
            let _entered = tracing::info_span!("request").entered();
            tracing::info!("untraced");
        });
        for line in outside.iter().chain(&untraced) {
            assert!(line.get("trace_id").is_none(), "{line}");
            assert!(line.get("message").is_some(), "{line}");
        }
        assert_eq!(outside.len() + untraced.len(), 2);
    }
}
