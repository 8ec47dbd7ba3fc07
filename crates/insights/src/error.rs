//! The one error enum of the insights crate.

/// What can go wrong while loading, caching or refreshing insights.
#[derive(Debug, thiserror::Error)]
pub enum InsightsError {
    /// Postgres failed or is unreachable: insights cannot be computed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The read model could not be read (its checkpoint, or a row that does not fit).
    #[error("read model: {0}")]
    ReadModel(#[from] projections::ProjectionError),
    /// Redis failed, timed out or is unreachable. Never fatal: callers compute from Postgres
    /// instead, and the TTL bounds how long a value missed by a refresh can live.
    #[error("cache unavailable: {0}")]
    CacheUnavailable(String),
    /// The event stream or its durable consumer could not be read.
    #[error("event stream: {0}")]
    Stream(String),
}

impl InsightsError {
    /// Whether the failure is the cache's (callers then carry on without it).
    pub fn is_cache(&self) -> bool {
        matches!(self, InsightsError::CacheUnavailable(_))
    }
}

impl projections::ReadFailure for InsightsError {
    fn is_database(&self) -> bool {
        match self {
            InsightsError::Database(_) => true,
            InsightsError::ReadModel(error) => error.is_database(),
            _ => false,
        }
    }
}
