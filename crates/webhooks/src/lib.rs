//! Webhooks: a user registers endpoints (a URL and the event types wanted), and their events
//! are delivered there, signed, at least once, in order per endpoint.
//!
//! # Delivery
//! The **intake** reads the task stream through a durable consumer (`webhooks`) and, for each
//! event, records one delivery per matching endpoint of its owner in PostgreSQL
//! (`webhook_deliveries`, keyed by endpoint and stream position, so a redelivered event adds
//! nothing) before acknowledging it. The **dispatcher** sends, per endpoint, the oldest pending
//! delivery, and the next only once that one succeeded or was given up on: per-endpoint order.
//! A failure (no answer within 10 s, a status other than 2xx) is retried after 1 s, doubling up
//! to an hour, with the same `webhook-id`; after 8 attempts the delivery is a dead letter
//! (status `failed`), listed by `GET /v1/webhooks/{id}/failures` and sent again by
//! `POST /v1/webhooks/{id}/failures/{position}/redeliver`.
//!
//! # The request ([Standard Webhooks](https://www.standardwebhooks.com))
//! `POST` with `webhook-id` (`msg_` and a UUID derived from the endpoint and the event, the
//! same on every attempt), `webhook-timestamp` (seconds) and `webhook-signature`
//! (`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` with the endpoint's secret,
//! `whsec_<base64>`). The body is `{"type", "timestamp", "data"}` with the event's payload,
//! at most 64 KiB; redirects are not followed.
//!
//! # SSRF
//! A URL must be `http` or `https`. Unless private targets are allowed (the default outside
//! production, for local receivers and tests), an endpoint whose host is, or resolves to, a
//! loopback, private, link-local, unique-local, shared (CGNAT), multicast or unspecified
//! address is refused when registered, and the addresses are checked again at every delivery
//! by the client's resolver, so a name that later resolves inward (DNS rebinding) is not
//! reached either.
//!
//! # Layout
//! - [`signature`]: signing as Standard Webhooks specifies.
//! - [`target`]: which URLs and addresses may be called.
//! - [`store`]: endpoints and deliveries in PostgreSQL.
//! - [`worker`]: the intake and the dispatcher.
//! - [`error`]: the crate's one error enum.

pub mod error;
pub mod signature;
pub mod store;
pub mod target;
pub mod worker;

pub use error::WebhookError;
pub use store::{Delivery, Endpoint, NewEndpoint};
pub use target::TargetPolicy;
pub use worker::{WebhookWorker, WorkerOptions};
