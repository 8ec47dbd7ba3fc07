//! W3C trace context (`traceparent`) for requests and events.
//!
//! An event's `traceparent` lets an outside consumer join the trace of the request that caused
//! it. It comes from the current span when the OpenTelemetry layer is installed; otherwise it
//! continues the caller's trace (same trace id, new span id) or starts a new one, so every event
//! carries a valid value either way.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Makes `span` a child of the caller's trace named by a `traceparent` header.
pub fn continue_trace(span: &tracing::Span, traceparent: &str) {
    let mut carrier = HashMap::with_capacity(1);
    carrier.insert("traceparent".to_owned(), traceparent.to_owned());
    let parent = TraceContextPropagator::new().extract(&carrier);
    if parent.span().span_context().is_valid() {
        span.set_parent(parent);
    }
}

/// The `traceparent` to store on an event appended by the current span.
pub fn traceparent_for_event(incoming: Option<&str>) -> String {
    let context = tracing::Span::current().context();
    if context.span().span_context().is_valid() {
        let mut carrier = HashMap::with_capacity(2);
        TraceContextPropagator::new().inject_context(&context, &mut carrier);
        if let Some(value) = carrier.remove("traceparent") {
            return value;
        }
    }
    let span_id = random_hex(8);
    match incoming.and_then(parse_trace_id) {
        Some(trace_id) => format!("00-{trace_id}-{span_id}-01"),
        None => format!("00-{}-{span_id}-01", random_hex(16)),
    }
}

/// The trace id of a well-formed `traceparent`, `None` otherwise.
pub fn parse_trace_id(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (version, trace_id, span_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace_id, 32)
        && trace_id.bytes().any(|b| b != b'0')
        && hex(span_id, 16)
        && span_id.bytes().any(|b| b != b'0')
        && hex(flags, 2);
    valid.then_some(trace_id)
}

fn random_hex(bytes: usize) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes * 2);
    let random = opentelemetry_sdk::trace::RandomIdGenerator::default();
    use opentelemetry_sdk::trace::IdGenerator;
    let source = if bytes == 16 {
        random.new_trace_id().to_bytes().to_vec()
    } else {
        random.new_span_id().to_bytes().to_vec()
    };
    for b in source.iter().take(bytes) {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_traceparent_is_well_formed() {
        let value = traceparent_for_event(None);
        assert!(parse_trace_id(&value).is_some(), "{value}");
    }

    #[test]
    fn an_incoming_trace_is_continued() {
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let value = traceparent_for_event(Some(incoming));
        assert_eq!(
            parse_trace_id(&value),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_ne!(value, incoming);
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        for bad in [
            "",
            "00-xyz-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(parse_trace_id(bad).is_none(), "{bad}");
        }
    }
}
