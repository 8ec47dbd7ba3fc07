//! Per-request observation: a span that continues the caller's trace, the correlation id
//! echoed back, and request counts and latency by route template. And the query parameter
//! policy: a name the OpenAPI document does not list for the operation is refused.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use telemetry::metrics::{HttpLabels, RouteLabels};
use telemetry::Metrics;
use tracing::Instrument;
use utoipa::openapi::path::ParameterIn;

use crate::extract::{correlation_id, CORRELATION_ID};
use crate::problem::{ApiError, InvalidField};

/// Wraps every request in a span and records its metrics.
pub async fn observe(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let correlation = correlation_id(request.headers());
    let span = tracing::info_span!(
        "http.request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
        correlation_id = %correlation,
    );
    if let Some(traceparent) = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
    {
        telemetry::trace_context::continue_trace(&span, traceparent);
    }
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    if let Ok(value) = HeaderValue::from_str(&correlation) {
        response.headers_mut().insert(CORRELATION_ID, value);
    }
    metrics
        .http_requests
        .get_or_create(&HttpLabels {
            method: method.clone(),
            route: route.clone(),
            status,
        })
        .inc();
    metrics
        .http_duration
        .get_or_create(&RouteLabels { method, route })
        .observe(started.elapsed().as_secs_f64());
    response
}

/// The query parameters each operation documents, by method and route template, read from
/// the OpenAPI document the router serves: the one list of what a client may send.
#[derive(Debug, Default)]
pub struct DocumentedQueries(HashMap<(Method, String), Vec<String>>);

impl DocumentedQueries {
    /// Reads the query parameters of every operation of `spec`.
    pub fn from_spec(spec: &utoipa::openapi::OpenApi) -> Self {
        let mut documented = HashMap::new();
        for (path, item) in &spec.paths.paths {
            let operations = [
                (Method::GET, &item.get),
                (Method::PUT, &item.put),
                (Method::POST, &item.post),
                (Method::DELETE, &item.delete),
                (Method::PATCH, &item.patch),
            ];
            for (method, operation) in operations {
                let Some(operation) = operation else { continue };
                let names = operation
                    .parameters
                    .iter()
                    .flatten()
                    .filter(|p| p.parameter_in == ParameterIn::Query)
                    .map(|p| p.name.clone())
                    .collect();
                documented.insert((method, path.clone()), names);
            }
        }
        Self(documented)
    }
}

/// Refuses a request whose query string names a parameter its operation does not document:
/// 422 naming each one, as an unknown JSON field is (a typo such as `?limt=5` is never
/// silently ignored); 400 when the query string cannot be decoded at all.
pub async fn refuse_unknown_query_parameters(
    State(documented): State<Arc<DocumentedQueries>>,
    request: Request,
    next: Next,
) -> Response {
    // Most requests, commands above all, carry no query string: nothing to look up.
    let Some(query) = request.uri().query() else {
        return next.run(request).await;
    };
    let route = request.extensions().get::<MatchedPath>();
    let allowed = route.and_then(|route| {
        documented
            .0
            .get(&(request.method().clone(), route.as_str().to_owned()))
    });
    if let Some(allowed) = allowed {
        let Ok(pairs) = serde_urlencoded::from_str::<Vec<(String, String)>>(query) else {
            return ApiError::BadRequest("the query string is malformed".into()).into_response();
        };
        let message = if allowed.is_empty() {
            "unknown query parameter; this operation takes none".to_owned()
        } else {
            format!(
                "unknown query parameter; this operation takes {}",
                allowed.join(", ")
            )
        };
        let mut unknown: Vec<InvalidField> = Vec::new();
        for (name, _) in pairs {
            if !allowed.contains(&name) && !unknown.iter().any(|u| u.field == name) {
                unknown.push(InvalidField {
                    field: name,
                    message: message.clone(),
                });
            }
        }
        if !unknown.is_empty() {
            return ApiError::Validation(unknown).into_response();
        }
    }
    next.run(request).await
}
