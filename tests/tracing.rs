//! One command, one trace: the HTTP request's span continues through decide and the JetStream
//! append, and the projector, insights and ml workers that handle its event continue the same
//! trace from the event's `traceparent` header. The spans are exported over OTLP/HTTP, as in
//! production, to a receiver inside this test that decodes the protobuf requests.
//!
//! Its own test binary: the telemetry is the process's global subscriber, installed once.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{header, StatusCode};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;

use common::TestApp;

/// A received span with the `service.name` of the resource that sent it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    span: Span,
}

/// An OTLP/HTTP trace receiver on a free loopback port: what a collector would be.
struct Receiver {
    endpoint: String,
    spans: Arc<Mutex<Vec<Received>>>,
    requests: Arc<Mutex<u32>>,
}

impl Receiver {
    async fn start() -> Self {
        let spans: Arc<Mutex<Vec<Received>>> = Arc::default();
        let requests: Arc<Mutex<u32>> = Arc::default();
        let handler = {
            let (spans, requests) = (spans.clone(), requests.clone());
            move |body: Bytes| {
                let (spans, requests) = (spans.clone(), requests.clone());
                async move {
                    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                        return (StatusCode::BAD_REQUEST, Vec::new());
                    };
                    *requests.lock().unwrap() += 1;
                    let mut spans = spans.lock().unwrap();
                    for resource_spans in request.resource_spans {
                        let service = resource_spans
                            .resource
                            .iter()
                            .flat_map(|r| &r.attributes)
                            .find(|a| a.key == "service.name")
                            .and_then(|a| a.value.as_ref()?.value.as_ref())
                            .map(|v| match v {
                                AnyValue::StringValue(s) => s.clone(),
                                other => format!("{other:?}"),
                            })
                            .unwrap_or_default();
                        for scope in resource_spans.scope_spans {
                            spans.extend(scope.spans.into_iter().map(|span| Received {
                                service: service.clone(),
                                span,
                            }));
                        }
                    }
                    (
                        StatusCode::OK,
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
                }
            }
        };
        let router = axum::Router::new().route(
            "/v1/traces",
            post(move |body: Bytes| {
                let handler = handler.clone();
                async move {
                    let (status, body) = handler(body).await;
                    (
                        status,
                        [(header::CONTENT_TYPE, "application/x-protobuf")],
                        body,
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            endpoint,
            spans,
            requests,
        }
    }

    /// The spans of one trace received so far.
    fn trace(&self, trace_id: &[u8]) -> Vec<Received> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.span.trace_id == trace_id)
            .cloned()
            .collect()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    let value = span
        .attributes
        .iter()
        .find(|a| a.key == key)?
        .value
        .as_ref()?;
    Some(match value.value.as_ref()? {
        AnyValue::StringValue(s) => s.clone(),
        AnyValue::IntValue(i) => i.to_string(),
        other => format!("{other:?}"),
    })
}

/// Waits until `/metrics` shows both event consumers following live events: the insights
/// consumer exists (it starts with new events) and the ml worker has finished its replay (live
/// events get spans, replayed ones do not).
async fn wait_until_workers_follow(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = app.metrics().await;
        let following = ["insights", "ml"].iter().all(|consumer| {
            text.contains(&format!(
                "taskmaster_consumer_lag_events{{consumer=\"{consumer}\"}}"
            ))
        });
        if following {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the workers never reported their consumer lag:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_command_is_one_trace_from_the_http_request_through_every_worker() {
    let receiver = Receiver::start().await;
    // What an operator sets; the OTLP exporter reads the standard variables itself.
    std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint);
    std::env::set_var("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
    let telemetry = telemetry::init(&telemetry::TelemetryConfig {
        service_name: "taskmaster-trace-test".into(),
        log_format: telemetry::LogFormat::Text,
        log_filter: "warn".into(),
        otlp_endpoint: Some(receiver.endpoint.clone()),
    })
    .expect("telemetry installs");

    let app = TestApp::spawn_with(&[("TASKMASTER_INSIGHTS_DEBOUNCE_MS", "0")]).await;
    wait_until_workers_follow(&app).await;
    let token = app.token("tracer");

    // The client's own trace context: the whole tree hangs below its span.
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let client_span = &uuid::Uuid::new_v4().simple().to_string()[..16];
    let response = app
        .http
        .post(app.url("/v1/tasks"))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{trace_id}-{client_span}-01"))
        .json(&json!({ "title": "Trace me", "priority": "high" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let answer: serde_json::Value = response.json().await.unwrap();
    let position = answer["position"].as_u64().unwrap();

    // The event carries the append span's context under the client's trace id.
    let history = app.history(&token, answer["id"].as_str().unwrap()).await;
    let stored = history["items"][0]["traceparent"]
        .as_str()
        .map(str::to_owned);

    let wanted = [
        "POST /v1/tasks",
        "execute",
        "decide",
        "publish TaskCreated",
        "project tasks",
        "refresh insights",
        "learn event",
    ];
    let trace_bytes = unhex(&trace_id);
    let deadline = Instant::now() + Duration::from_secs(30);
    let spans = loop {
        telemetry.flush().expect("the exporter flushes");
        let spans = receiver.trace(&trace_bytes);
        let names: Vec<&str> = spans.iter().map(|r| r.span.name.as_str()).collect();
        if wanted.iter().all(|w| names.contains(w)) {
            break spans;
        }
        assert!(
            Instant::now() < deadline,
            "spans of the trace after 30 s: {names:?} ({} export requests)",
            *receiver.requests.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let by_name: HashMap<&str, &Span> = spans
        .iter()
        .map(|r| (r.span.name.as_str(), &r.span))
        .collect();
    let id = |name: &str| by_name[name].span_id.clone();
    let parent = |name: &str| by_name[name].parent_span_id.clone();
    assert!(spans.iter().all(|r| r.service == "taskmaster-trace-test"));

    // HTTP → command → decide and publish.
    assert_eq!(hex(&parent("POST /v1/tasks")), client_span);
    let http = by_name["POST /v1/tasks"];
    assert_eq!(http.kind, SpanKind::Server as i32);
    assert_eq!(attribute(http, "http.route").as_deref(), Some("/v1/tasks"));
    assert_eq!(
        attribute(http, "http.response.status_code").as_deref(),
        Some("201")
    );
    assert_eq!(parent("execute"), id("POST /v1/tasks"));
    assert_eq!(parent("decide"), id("execute"));
    assert_eq!(parent("publish TaskCreated"), id("execute"));
    assert_eq!(
        by_name["publish TaskCreated"].kind,
        SpanKind::Producer as i32
    );

    // The event names the publish span as its parent...
    let publish = hex(&id("publish TaskCreated"));
    assert_eq!(
        stored,
        Some(format!("00-{trace_id}-{publish}-01")),
        "the stored traceparent"
    );
    // ...and every worker continues from it.
    for consumer in ["project tasks", "refresh insights", "learn event"] {
        assert_eq!(
            hex(&parent(consumer)),
            publish,
            "{consumer} is a child of the append"
        );
        assert_eq!(by_name[consumer].kind, SpanKind::Consumer as i32);
    }
    assert_eq!(
        attribute(by_name["project tasks"], "position").as_deref(),
        Some(position.to_string().as_str())
    );
    // A worker's span starts after the append it continues.
    for consumer in ["project tasks", "refresh insights", "learn event"] {
        assert!(
            by_name[consumer].start_time_unix_nano
                >= by_name["publish TaskCreated"].start_time_unix_nano
        );
    }
    app.stop().await;
}
