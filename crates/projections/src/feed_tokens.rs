//! Calendar feed tokens: the revocable secrets of `GET /v1/calendar.ics` subscriptions.
//!
//! This is state of its own, not a read model: no event records a feed token, so nothing in
//! the log implies these rows. Replay (which rebuilds the `tasks` table alone) and `verify`
//! (which compares `tasks` with the log) leave the table alone; erasure deletes a user's rows
//! with their tasks ([`crate::erasure`]).
//!
//! Only a SHA-256 hash of a token is stored; making the token and hashing it is the API's
//! part. Every query here runs on the primary: a token minted a moment ago must work at once,
//! and one revoked a moment ago must stop working at once, which a lagging replica cannot
//! promise.

use chrono::{DateTime, Utc};
use domain::{FromTrusted, UserId};
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::ProjectionError;

/// A feed token as its owner may see it: never the secret, which only its hash stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedToken {
    /// What revocation names.
    pub id: Uuid,
    /// What the user called it, to tell subscriptions apart.
    pub label: Option<String>,
    /// When it was minted.
    pub created_at: DateTime<Utc>,
    /// When a feed was last read with it (to the minute), if ever: tells a user which
    /// subscriptions are still alive before revoking one.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// How often the use of one token is recorded at most: a calendar polling every few minutes
/// should not turn every read of its feed into a write.
pub const LAST_USED_GRANULARITY_SECONDS: i64 = 60;

/// Stores a new token of `owner` unless they already hold `max_live` live ones (then `None`).
///
/// The count and the insert run under a transaction-scoped advisory lock on the owner, so two
/// concurrent mints cannot both pass the cap.
#[tracing::instrument(skip_all, fields(owner = %owner), err)]
pub async fn insert(
    pool: &PgPool,
    owner: &UserId,
    id: Uuid,
    label: Option<&str>,
    token_hash: &[u8; 32],
    now: DateTime<Utc>,
    max_live: u32,
) -> Result<Option<FeedToken>, ProjectionError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('calendar_feed_tokens:' || $1, 0))")
        .bind(owner.as_str())
        .execute(&mut *tx)
        .await?;
    let live: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM calendar_feed_tokens WHERE owner_id = $1 AND revoked_at IS NULL",
    )
    .bind(owner.as_str())
    .fetch_one(&mut *tx)
    .await?;
    if live >= i64::from(max_live) {
        return Ok(None);
    }
    sqlx::query(
        "INSERT INTO calendar_feed_tokens (id, owner_id, label, token_hash, created_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(owner.as_str())
    .bind(label)
    .bind(&token_hash[..])
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(FeedToken {
        id,
        label: label.map(str::to_owned),
        created_at: now,
        last_used_at: None,
    }))
}

/// The live (unrevoked) tokens of `owner`, oldest first.
#[tracing::instrument(skip_all, fields(owner = %owner), err)]
pub async fn list(pool: &PgPool, owner: &UserId) -> Result<Vec<FeedToken>, ProjectionError> {
    let rows: Vec<FeedTokenRow> = sqlx::query_as(
        "SELECT id, label, created_at, last_used_at FROM calendar_feed_tokens
          WHERE owner_id = $1 AND revoked_at IS NULL
          ORDER BY created_at, id",
    )
    .bind(owner.as_str())
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| FeedToken {
            id: row.id,
            label: row.label,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
        })
        .collect())
}

/// A row of the list, as selected.
#[derive(sqlx::FromRow)]
struct FeedTokenRow {
    id: Uuid,
    label: Option<String>,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
}

/// Revokes token `id` of `owner`. `false` when they hold no live token of that id (someone
/// else's, unknown, or revoked already): the caller answers 404 for all three alike.
#[tracing::instrument(skip_all, fields(owner = %owner, token_id = %id), err)]
pub async fn revoke(
    pool: &PgPool,
    owner: &UserId,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, ProjectionError> {
    let revoked = sqlx::query(
        "UPDATE calendar_feed_tokens SET revoked_at = $3
          WHERE id = $1 AND owner_id = $2 AND revoked_at IS NULL",
    )
    .bind(id)
    .bind(owner.as_str())
    .bind(now)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(revoked > 0)
}

/// The owner of the live token whose hash is `token_hash`, recording its use (at most once per
/// [`LAST_USED_GRANULARITY_SECONDS`]); `None` for an unknown or revoked token.
#[tracing::instrument(skip_all, err)]
pub async fn resolve(
    pool: &PgPool,
    token_hash: &[u8; 32],
    now: DateTime<Utc>,
) -> Result<Option<UserId>, ProjectionError> {
    let found: Option<(Uuid, String, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT id, owner_id, last_used_at FROM calendar_feed_tokens
          WHERE token_hash = $1 AND revoked_at IS NULL",
    )
    .bind(&token_hash[..])
    .fetch_optional(pool)
    .await?;
    let Some((id, owner, last_used_at)) = found else {
        return Ok(None);
    };
    let stale =
        last_used_at.is_none_or(|at| (now - at).num_seconds() >= LAST_USED_GRANULARITY_SECONDS);
    if stale {
        sqlx::query(
            "UPDATE calendar_feed_tokens SET last_used_at = $2
              WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
        )
        .bind(id)
        .bind(now)
        .execute(pool)
        .await?;
    }
    Ok(Some(UserId::from_trusted(owner)))
}

/// Deletes every token of `owner`, revoked ones included (erasure), in `tx`.
pub(crate) async fn delete_owner(
    tx: &mut sqlx::PgConnection,
    owner: &UserId,
) -> Result<u64, ProjectionError> {
    Ok(
        sqlx::query("DELETE FROM calendar_feed_tokens WHERE owner_id = $1")
            .bind(owner.as_str())
            .execute(tx)
            .await?
            .rows_affected(),
    )
}
