//! Creating the database when it is missing and applying the migrations in `migrations/`.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, PgPool};
use std::str::FromStr;
use std::time::Duration;

use crate::error::ProjectionError;

/// The migrations of every read model, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Creates the database named in `url` if it does not exist yet (connecting to the server's
/// `postgres` database to do so). Returns whether it was created.
#[tracing::instrument(skip_all, err)]
pub async fn ensure_database(url: &str) -> Result<bool, ProjectionError> {
    let options = PgConnectOptions::from_str(url)?;
    let name = options.get_database().unwrap_or("postgres").to_owned();
    let mut admin = options.clone().database("postgres").connect().await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if exists {
        return Ok(false);
    }
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    let created = match admin
        .execute(format!("CREATE DATABASE {quoted}").as_str())
        .await
    {
        Ok(_) => Ok(true),
        // Another process created it between our check and our create: 42P04 when theirs had
        // committed, 23505 (on pg_database's name index) when both creates ran at once, as
        // when several processes of a deployment start together.
        Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("42P04" | "23505")) => {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    };
    let _ = admin.close().await;
    created
}

/// A connection pool with bounded connect and acquire times, so a dead database turns into a
/// prompt error rather than a hung request.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, ProjectionError> {
    let options = PgConnectOptions::from_str(url)?;
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(3))
        .connect_with(options)
        .await?;
    Ok(pool)
}

/// A pool on a read replica, connecting lazily: a replica that is down, or has not replayed
/// the database's creation yet, never keeps the process from starting (its queries go to the
/// primary meanwhile, see [`crate::read_source`]). Its connections are named
/// `application_name` unless `url` names them.
pub fn connect_lazy(
    url: &str,
    max_connections: u32,
    application_name: &str,
) -> Result<PgPool, ProjectionError> {
    let mut options = PgConnectOptions::from_str(url)?;
    if options.get_application_name().is_none() {
        options = options.application_name(application_name);
    }
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy_with(options))
}

/// Applies every pending migration. Safe to run concurrently from several processes: sqlx
/// takes an advisory lock.
#[tracing::instrument(skip_all, err)]
pub async fn migrate(pool: &PgPool) -> Result<(), ProjectionError> {
    MIGRATOR.run(pool).await?;
    Ok(())
}
