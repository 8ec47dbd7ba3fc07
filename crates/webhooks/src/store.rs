//! Endpoints and deliveries in PostgreSQL.

use chrono::{DateTime, Utc};
use domain::UserId;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::WebhookError;

/// Most endpoints one user may register.
pub const MAX_ENDPOINTS_PER_USER: i64 = 20;

/// A registered endpoint (its secret is shown once, when created).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Endpoint {
    /// Its id.
    pub id: Uuid,
    /// Where deliveries go.
    pub url: String,
    /// The event types it wants; empty for all.
    pub event_types: Vec<String>,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

/// What registering an endpoint needs.
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    /// Where deliveries go (already checked by [`crate::TargetPolicy::check`]).
    pub url: String,
    /// The event types it wants; empty for all.
    pub event_types: Vec<String>,
}

/// A delivery as its endpoint's owner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Delivery {
    /// The event's stream position.
    pub position: i64,
    /// The `webhook-id` of every attempt.
    pub webhook_id: String,
    /// The event's type.
    pub event_type: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// Attempts so far.
    pub attempts: i32,
    /// The last HTTP status answered, if any.
    pub last_status: Option<i32>,
    /// The last failure.
    pub last_error: Option<String>,
}

/// Registers an endpoint; `None` when the owner has [`MAX_ENDPOINTS_PER_USER`] already.
pub async fn create(
    pool: &PgPool,
    owner: &UserId,
    new: &NewEndpoint,
    secret: &str,
) -> Result<Option<Endpoint>, WebhookError> {
    let mut tx = pool.begin().await?;
    // One owner's registrations in turn, so two at once cannot both pass the limit.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7411))")
        .bind(owner.as_str())
        .execute(&mut *tx)
        .await?;
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_endpoints WHERE owner_id = $1")
            .bind(owner.as_str())
            .fetch_one(&mut *tx)
            .await?;
    if count >= MAX_ENDPOINTS_PER_USER {
        return Ok(None);
    }
    let endpoint: Endpoint = sqlx::query_as(
        "INSERT INTO webhook_endpoints (id, owner_id, url, event_types, secret)
         VALUES ($1, $2, $3, $4, $5)
         RETURNING id, url, event_types, created_at",
    )
    .bind(Uuid::now_v7())
    .bind(owner.as_str())
    .bind(&new.url)
    .bind(&new.event_types)
    .bind(secret)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(endpoint))
}

/// The owner's endpoints, oldest first.
pub async fn list(pool: &PgPool, owner: &UserId) -> Result<Vec<Endpoint>, WebhookError> {
    Ok(sqlx::query_as(
        "SELECT id, url, event_types, created_at FROM webhook_endpoints
          WHERE owner_id = $1 ORDER BY created_at, id",
    )
    .bind(owner.as_str())
    .fetch_all(pool)
    .await?)
}

/// Removes an endpoint of the owner (and its deliveries); whether there was one.
pub async fn delete(pool: &PgPool, owner: &UserId, id: Uuid) -> Result<bool, WebhookError> {
    let done = sqlx::query("DELETE FROM webhook_endpoints WHERE owner_id = $1 AND id = $2")
        .bind(owner.as_str())
        .bind(id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// The deliveries of an endpoint of the owner given up on, oldest first; `None` when the
/// endpoint is not theirs.
pub async fn failures(
    pool: &PgPool,
    owner: &UserId,
    id: Uuid,
) -> Result<Option<Vec<Delivery>>, WebhookError> {
    if !owns(pool, owner, id).await? {
        return Ok(None);
    }
    Ok(Some(
        sqlx::query_as(
            "SELECT position, webhook_id, event_type, status, attempts, last_status, last_error
               FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'failed'
              ORDER BY position LIMIT 1000",
        )
        .bind(id)
        .fetch_all(pool)
        .await?,
    ))
}

/// Puts a failed delivery back in line, attempts reset; whether there was one.
pub async fn redeliver(
    pool: &PgPool,
    owner: &UserId,
    id: Uuid,
    position: i64,
) -> Result<bool, WebhookError> {
    let done = sqlx::query(
        "UPDATE webhook_deliveries d SET status = 'pending', attempts = 0, next_attempt_at = now()
           FROM webhook_endpoints e
          WHERE d.endpoint_id = e.id AND e.owner_id = $1 AND e.id = $2 AND d.position = $3
            AND d.status = 'failed'",
    )
    .bind(owner.as_str())
    .bind(id)
    .bind(position)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

async fn owns(pool: &PgPool, owner: &UserId, id: Uuid) -> Result<bool, WebhookError> {
    Ok(sqlx::query_scalar::<_, bool>(
        "SELECT EXISTS (SELECT 1 FROM webhook_endpoints WHERE owner_id = $1 AND id = $2)",
    )
    .bind(owner.as_str())
    .bind(id)
    .fetch_one(pool)
    .await?)
}

/// Deletes every endpoint (and delivery) of a user: part of erasing them.
pub async fn delete_owner(pool: &PgPool, owner: &UserId) -> Result<u64, WebhookError> {
    Ok(
        sqlx::query("DELETE FROM webhook_endpoints WHERE owner_id = $1")
            .bind(owner.as_str())
            .execute(pool)
            .await?
            .rows_affected(),
    )
}
