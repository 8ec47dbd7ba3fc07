//! The HTTP API of taskmaster: a thin axum layer that turns requests into domain commands
//! (executed by the event store) and answers queries from the read model.
//!
//! # Layout
//! - [`tasks`]: the task endpoints (`commands`, `queries`, their `dto`s).
//! - [`insights`]: the caller's productivity insights, cached in Redis, never failing on it.
//! - [`live`]: the user's events as server-sent events.
//! - [`webhooks`]: webhook endpoints and their failed deliveries.
//! - [`calendar`]: the iCalendar feed of the user's tasks and its revocable feed tokens.
//! - [`predictions`]: the learning side's answers for a draft task and for stored tasks.
//! - [`ops`]: liveness, readiness, metrics and the OpenAPI document, served by every role.
//! - [`rate_limit`]: limits per user and per client address, kept in Redis (GCRA), failing open.
//! - [`auth`]: bearer JWT verification (HS256 with a secret, RS256/EdDSA with the keys of a
//!   JWKS file or URL) and minting of development tokens.
//! - [`extract`]: extractors that fail with problem+json (JSON bodies, command headers,
//!   `Tm-Min-Position`).
//! - [`limits`]: every limit on input as the OpenAPI document states it (text schemas,
//!   documented parameters and headers), from the constants the checks use.
//! - [`problem`]: [`ApiError`], the one error type, answered as `application/problem+json`.
//! - [`health`], [`middleware`], [`state`]: readiness probes, request observation and the
//!   refusal of undocumented query parameters, shared state.
//!
//! The router and the OpenAPI document come from the same registrations (utoipa-axum), so the
//! document cannot list a route that is not served, or miss one that is.

pub mod auth;
pub mod calendar;
pub mod extract;
pub mod health;
pub mod insights;
pub mod limits;
pub mod live;
pub mod middleware;
pub mod ops;
pub mod predictions;
pub mod problem;
pub mod rate_limit;
pub mod state;
pub mod tasks;
pub mod webhooks;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use telemetry::Metrics;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use problem::ApiError;
pub use state::{ApiConfig, AppState, OpsState};

/// Largest request body accepted (413 beyond).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "taskmaster",
        description = "Event-sourced task manager. Commands answer `{id, version, position}`; \
                       send `position` as `Tm-Min-Position` to read your own writes, and `version` \
                       as `If-Match` to guard against concurrent changes. Errors are \
                       `application/problem+json`: 400 a request that cannot be read \
                       (malformed JSON, a malformed header, task id or query string), 422 a \
                       body field or query parameter that is invalid. Unknown JSON fields and \
                       unknown query parameters are refused with 422 naming them, so a typo \
                       is never ignored. Every string, list and number a client sends has its \
                       limits stated here (maxLength, pattern, maxItems, minimum, maximum), \
                       and the server enforces exactly those."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "commands", description = "Changes to tasks; each appends at most one event"),
        (name = "queries", description = "Reads from the read model and the event log"),
        (name = "calendar", description = "The iCalendar feed of your tasks, and its feed tokens"),
        (name = "webhooks", description = "Your webhook endpoints: signed deliveries of your events"),
        (name = "operations", description = "Health, metrics and this document"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(tasks::router())
        .merge(insights::router())
        .merge(live::router())
        .merge(predictions::router())
        .merge(calendar::router())
        .merge(webhooks::router())
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> Response {
    let mut response =
        ApiError::BadRequest("method not allowed on this endpoint".into()).into_response();
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
}

fn panic_answer(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::Internal("a request handler panicked".into()).into_response()
}

/// The HTTP router of one process: the operational endpoints always, the task endpoints when
/// the process runs the `api` role (`app` is `Some`).
pub fn router(app: Option<AppState>, ops: OpsStateParts) -> Router {
    let (api_router, mut spec) = api_routes().split_for_parts();
    document_rate_limits(&mut spec);
    document_unknown_query_parameters(&mut spec);
    let documented_queries = Arc::new(middleware::DocumentedQueries::from_spec(&spec));
    let (ops_router, ops_spec) = ops::router().split_for_parts();
    spec.merge(ops_spec);
    let openapi = Arc::new(spec.to_pretty_json().unwrap_or_default());
    let metrics = ops.metrics.clone();
    let mut router = ops_router.with_state(OpsState {
        metrics: ops.metrics,
        health: ops.health,
        openapi,
    });
    if let Some(app) = app {
        let limited = api_router
            .with_state(app.clone())
            .layer(axum::middleware::from_fn_with_state(
                documented_queries,
                middleware::refuse_unknown_query_parameters,
            ))
            .layer(axum::middleware::from_fn_with_state(
                app,
                rate_limit::enforce,
            ));
        router = router.merge(limited);
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            middleware::observe,
        ))
        .layer(CatchPanicLayer::custom(panic_answer))
}

/// Adds the 429 answer and the `RateLimit-*` headers to every operation of `spec` (the
/// limited routes; the operational ones are merged in afterwards and are not limited).
fn document_rate_limits(spec: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::Type;
    let header = |description: &str| {
        HeaderBuilder::new()
            .schema(utoipa::openapi::ObjectBuilder::new().schema_type(Type::Integer))
            .description(Some(description))
            .build()
    };
    let policy = HeaderBuilder::new()
        .schema(utoipa::openapi::ObjectBuilder::new().schema_type(Type::String))
        .description(Some(
            "The limit that decided: `<limit>;w=<window s>;burst=<n>;scope=user|ip`",
        ))
        .build();
    let limited = problem_answer(
        "Too many requests: the user (the token's subject) or the client address is over its \
         rate limit. Retry after `Retry-After` seconds.",
    )
    .header(
        "Retry-After",
        header("Seconds until a request would be allowed"),
    )
    .header(
        "RateLimit-Limit",
        header("Requests per window of the deciding limit"),
    )
    .header(
        "RateLimit-Remaining",
        header("Requests left in the window (0 here)"),
    )
    .header(
        "RateLimit-Reset",
        header("Seconds until the quota is whole again"),
    )
    .header("RateLimit-Policy", policy)
    .build();
    for operation in operations_mut(spec) {
        operation
            .responses
            .responses
            .insert("429".to_owned(), limited.clone().into());
    }
}

/// Adds the 422 answer to every operation of `spec` (the API routes) that does not list one
/// yet: any of them refuses an unknown query parameter with it.
fn document_unknown_query_parameters(spec: &mut utoipa::openapi::OpenApi) {
    let refused =
        problem_answer("A query parameter is unknown (each is named in `errors`)").build();
    for operation in operations_mut(spec) {
        operation
            .responses
            .responses
            .entry("422".to_owned())
            .or_insert_with(|| refused.clone().into());
    }
}

/// An answer of `description` with a problem+json body.
fn problem_answer(description: &str) -> utoipa::openapi::ResponseBuilder {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    ResponseBuilder::new().description(description).content(
        problem::PROBLEM_JSON,
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build(),
    )
}

/// Every operation of `spec`.
fn operations_mut(
    spec: &mut utoipa::openapi::OpenApi,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    spec.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
    })
}

/// What the operational endpoints need.
#[derive(Debug, Clone)]
pub struct OpsStateParts {
    /// Metrics of the process.
    pub metrics: Arc<Metrics>,
    /// Readiness probes.
    pub health: Arc<health::HealthProbes>,
}
