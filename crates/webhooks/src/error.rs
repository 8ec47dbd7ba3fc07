//! The one error enum of the webhooks crate.

/// Why a webhook operation failed.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The URL may not be called (scheme, or an address SSRF protection refuses).
    #[error("{0}")]
    Target(String),
    /// PostgreSQL failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The stream could not be read.
    #[error("webhook consumer: {0}")]
    Stream(String),
}
