//! Test isolation on the machine's shared services.
//!
//! Tests run in parallel against one Postgres, one NATS and one Redis, so each test gets its
//! own database ([`TestDatabase`]) and its own name prefix ([`NatsScope`], whose Redis keys
//! [`RedisKeys`] removes), and all are removed when the guard drops, also when the test fails. Cleanup runs on a separate thread with its
//! own runtime so it works from `Drop` inside `#[tokio::test]`.
//!
//! The services are found through the same variables the application reads (`DATABASE_URL`'s
//! server, `TASKMASTER_NATS_URL`, `REDIS_URL`), defaulting to the local ones.

use futures::TryStreamExt;
use sqlx::{Connection, Executor, PgConnection};

/// The NATS server the tests use.
pub fn nats_url() -> String {
    std::env::var("TASKMASTER_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// The Redis server the tests use.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The Postgres server the tests use, as a URL without a database name.
pub fn postgres_server_url() -> String {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/taskmaster".into());
    match url.rsplit_once('/') {
        Some((server, _db)) if server.contains("://") && !server.ends_with('/') => server.into(),
        _ => url,
    }
}

/// A short unique token for names: `t` followed by 12 hex digits.
pub fn unique_token() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

fn run_detached<F>(work: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let handle = std::thread::spawn(move || {
        if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            runtime.block_on(work);
        }
    });
    let _ = handle.join();
}

/// A database created for one test and dropped afterwards.
#[derive(Debug)]
pub struct TestDatabase {
    /// The database's name.
    pub name: String,
    /// A URL that reaches it.
    pub url: String,
}

impl TestDatabase {
    /// Creates an empty database with a unique name.
    pub async fn create() -> Self {
        let name = format!("tm_{}", unique_token());
        let server = postgres_server_url();
        let mut admin = PgConnection::connect(&format!("{server}/postgres"))
            .await
            .expect("Postgres must be running (see README: starting the services)");
        admin
            .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
            .await
            .expect("create test database");
        Self {
            url: format!("{server}/{name}"),
            name,
        }
    }

    /// A URL for a database that does not exist yet, but is dropped with this guard; for
    /// tests of "created if missing".
    pub fn planned() -> Self {
        let name = format!("tm_{}", unique_token());
        Self {
            url: format!("{}/{name}", postgres_server_url()),
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let server = postgres_server_url();
        run_detached(async move {
            if let Ok(mut admin) = PgConnection::connect(&format!("{server}/postgres")).await {
                let _ = admin
                    .execute(format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#).as_str())
                    .await;
            }
        });
    }
}

/// A NATS name prefix owned by one test; every stream, KV bucket and object store under it is
/// deleted when the guard drops.
#[derive(Debug)]
pub struct NatsScope {
    /// The prefix to pass as `TASKMASTER_NATS_PREFIX`.
    pub prefix: String,
}

impl NatsScope {
    /// A fresh prefix.
    pub fn new() -> Self {
        Self {
            prefix: unique_token(),
        }
    }

    /// A connected client to the test NATS server.
    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(nats_url())
            .await
            .expect("NATS must be running (see README: starting the services)")
    }
}

impl Default for NatsScope {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NatsScope {
    fn drop(&mut self) {
        let scope = format!("{}_", self.prefix);
        run_detached(async move {
            let Ok(client) = async_nats::connect(nats_url()).await else {
                return;
            };
            let jetstream = async_nats::jetstream::new(client);
            let names: Vec<String> = match jetstream.stream_names().try_collect().await {
                Ok(names) => names,
                Err(_) => return,
            };
            // KV buckets and object stores are streams named KV_<bucket> and OBJ_<bucket>.
            for name in names {
                let ours = name.starts_with(&scope)
                    || name
                        .strip_prefix("KV_")
                        .or_else(|| name.strip_prefix("OBJ_"))
                        .is_some_and(|rest| rest.starts_with(&scope));
                if ours {
                    let _ = jetstream.delete_stream(&name).await;
                }
            }
        });
    }
}

/// The Redis keys an application writes under a prefix (`taskmaster:<prefix>:…`), deleted when
/// the guard drops, so tests sharing one Redis leave nothing behind.
#[derive(Debug)]
pub struct RedisKeys {
    /// The prefix (the test's `TASKMASTER_NATS_PREFIX`).
    pub prefix: String,
}

impl RedisKeys {
    /// Guards the keys of `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }
}

impl Drop for RedisKeys {
    fn drop(&mut self) {
        let pattern = format!("taskmaster:{}:*", self.prefix);
        run_detached(async move {
            let Ok(client) = redis::Client::open(redis_url()) else {
                return;
            };
            let Ok(mut connection) = client.get_multiplexed_async_connection().await else {
                return;
            };
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(&pattern)
                .query_async(&mut connection)
                .await
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: Result<i64, _> = redis::cmd("DEL")
                    .arg(keys)
                    .query_async(&mut connection)
                    .await;
            }
        });
    }
}
