//! Helpers of the insights integration tests: an isolated database, NATS prefix and Redis key
//! space on the real services, and commands written through the real event store.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::*;
use eventstore::store::StoreOptions;
use eventstore::{apply_stream_definitions, CommandMeta, EventStore, Naming, StreamOptions};
use insights::{CacheOptions, InsightsCache, InsightsService};
use projections::{
    database, PositionWatch, Projector, ProjectorOptions, ReadSource, TASKS_PROJECTION,
};
use sqlx::PgPool;
use telemetry::Metrics;
use testkit::{NatsScope, RedisKeys, TestDatabase};
use tokio_util::sync::CancellationToken;

pub struct World {
    pub pool: PgPool,
    pub store: Arc<EventStore>,
    pub naming: Naming,
    pub metrics: Arc<Metrics>,
    // Dropped last: the keys, the prefix's streams, the database.
    pub keys: RedisKeys,
    pub nats: NatsScope,
    pub db: TestDatabase,
}

pub async fn world() -> World {
    let db = TestDatabase::create().await;
    let nats = NatsScope::new();
    let pool = database::connect(&db.url, 8).await.unwrap();
    database::migrate(&pool).await.unwrap();
    let naming = Naming::new(&nats.prefix).unwrap();
    let client = nats.client().await;
    apply_stream_definitions(
        &async_nats::jetstream::new(client.clone()),
        &naming,
        StreamOptions::default(),
    )
    .await
    .unwrap();
    let store = Arc::new(
        EventStore::open(client, naming.clone(), StoreOptions::default())
            .await
            .unwrap(),
    );
    World {
        pool,
        store,
        naming,
        metrics: Arc::new(Metrics::new()),
        keys: RedisKeys::new(&nats.prefix),
        nats,
        db,
    }
}

impl World {
    /// A cache on the shared test Redis under this world's prefix.
    pub fn cache(&self) -> InsightsCache {
        self.cache_at(&testkit::redis_url())
    }

    /// A cache on the Redis at `url` under this world's prefix.
    pub fn cache_at(&self, url: &str) -> InsightsCache {
        InsightsCache::new(
            redis::Client::open(url).unwrap(),
            CacheOptions {
                prefix: self.nats.prefix.clone(),
                ttl: Duration::from_secs(600),
                ..CacheOptions::default()
            },
        )
    }

    /// A service reading this world's database (the primary; no replica), whose position
    /// watch lives as long as the test.
    pub async fn service(&self, cache: InsightsCache) -> Arc<InsightsService> {
        let positions = PositionWatch::start(
            self.pool.clone(),
            TASKS_PROJECTION,
            CancellationToken::new(),
        )
        .await
        .unwrap();
        Arc::new(InsightsService::new(
            ReadSource::new(self.pool.clone(), positions, self.metrics.clone()),
            cache,
            self.metrics.clone(),
        ))
    }

    /// Runs a projector on this world until the returned token is cancelled.
    pub fn start_projector(&self) -> CancellationToken {
        let projector = Projector::new(
            self.pool.clone(),
            self.store.jetstream().clone(),
            self.naming.clone(),
            Arc::new(Metrics::new()),
            ProjectorOptions {
                min_backoff: Duration::from_millis(10),
                ..ProjectorOptions::default()
            },
        );
        let shutdown = CancellationToken::new();
        tokio::spawn({
            let shutdown = shutdown.clone();
            async move { projector.run(shutdown).await }
        });
        shutdown
    }

    /// Executes `command` on `task` for `owner`; returns the event's position.
    pub async fn execute(&self, owner: &UserId, task: TaskId, command: TaskCommand) -> u64 {
        self.store
            .execute(owner, task, &command, None, &meta())
            .await
            .unwrap()
            .position
    }

    /// Creates a task for `owner` with an estimate and tags; returns its id and position.
    pub async fn create(&self, owner: &UserId, tags: &[&str]) -> (TaskId, u64) {
        let id = TaskId(uuid::Uuid::now_v7());
        let position = self
            .execute(
                owner,
                id,
                TaskCommand::Create(CreateTask {
                    task_id: id,
                    owner: owner.clone(),
                    title: TaskTitle::parse("a task").unwrap(),
                    description: None,
                    priority: None,
                    due_at: None,
                    estimate_minutes: EffortMinutes::parse(60, "estimate_minutes").ok(),
                    tags: Tag::parse_list(tags).unwrap(),
                    starts_at: None,
                    time_zone: TimeZoneName::utc(),
                    at: now(),
                    placement: None,
                    recurrence: None,
                    series: None,
                    reminders: Vec::new(),
                }),
            )
            .await;
        (id, position)
    }

    /// Completes `task` with `actual` minutes; returns the position.
    pub async fn complete(&self, owner: &UserId, task: TaskId, actual: i64) -> u64 {
        self.execute(
            owner,
            task,
            TaskCommand::Complete(CompleteTask {
                actual_minutes: EffortMinutes::parse(actual, "actual_minutes").ok(),
                at: now(),
                open_children: Vec::new(),
                cascade: false,
            }),
        )
        .await
    }

    /// Retitles `task`; returns the position.
    pub async fn retitle(&self, owner: &UserId, task: TaskId, title: &str) -> u64 {
        self.execute(
            owner,
            task,
            TaskCommand::Update(UpdateTask {
                changes: TaskChanges {
                    title: Some(TaskTitle::parse(title).unwrap()),
                    ..TaskChanges::default()
                },
                at: now(),
            }),
        )
        .await
    }

    /// Waits (up to 10 s) until the read model has applied `position`.
    pub async fn projected_to(&self, position: u64) {
        let reached = until(Duration::from_secs(10), async || {
            projections::checkpoint::load(&self.pool, projections::TASKS_PROJECTION)
                .await
                .unwrap()
                >= position
        })
        .await;
        assert!(reached, "the read model did not reach position {position}");
    }

    /// The count of a labelled metric line in the exposition (0 when absent).
    pub fn metric(&self, line_prefix: &str) -> u64 {
        self.metrics
            .encode()
            .lines()
            .find_map(|line| line.strip_prefix(line_prefix))
            .and_then(|rest| rest.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// Now, to the microsecond (what Postgres keeps).
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

pub fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

pub fn meta() -> CommandMeta {
    CommandMeta {
        command_id: uuid::Uuid::new_v4().to_string(),
        correlation_id: uuid::Uuid::new_v4().to_string(),
        traceparent: None,
        client_supplied_id: false,
    }
}

/// Waits (up to `within`) until `check` holds.
pub async fn until(within: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    check().await
}
