//! The insights worker on the real stream, read model and Redis: debounced refreshes, a read
//! model that lags, and Redis down.

mod common;

use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use common::{until, user, world, World};
use insights::{InsightsCache, InsightsWorker, WorkerOptions};
use tokio_util::sync::CancellationToken;

/// Starts a worker on `world` with `cache`; cancel the token to stop it.
async fn start_worker(
    world: &World,
    cache: InsightsCache,
    options: WorkerOptions,
) -> CancellationToken {
    let shutdown = CancellationToken::new();
    let worker = InsightsWorker::new(
        world.service(cache).await,
        world.store.jetstream().clone(),
        world.naming.clone(),
        world.metrics.clone(),
        options,
    );
    tokio::spawn(worker.run(shutdown.clone()));
    // The durable consumer delivers new messages only: wait until it exists.
    let consumer = InsightsWorker::consumer_name(&world.naming);
    let jetstream = world.store.jetstream().clone();
    let stream = world.naming.stream().to_owned();
    assert!(
        until(Duration::from_secs(10), async || {
            let Ok(stream) = jetstream.get_stream(&stream).await else {
                return false;
            };
            stream
                .get_consumer::<async_nats::jetstream::consumer::pull::Config>(&consumer)
                .await
                .is_ok()
        })
        .await,
        "the worker created its consumer"
    );
    shutdown
}

/// Waits (up to `within`) until `user`'s cached insights reflect `position`; the value then.
async fn cached_at(
    cache: &InsightsCache,
    user: &domain::UserId,
    position: u64,
    within: Duration,
) -> Option<insights::Insights> {
    let reached = until(within, async || {
        cache
            .get(user)
            .await
            .unwrap()
            .is_some_and(|i| i.position >= position)
    })
    .await;
    if reached {
        cache.get(user).await.unwrap()
    } else {
        None
    }
}

fn refreshes(world: &World, outcome: &str) -> u64 {
    world.metric(&format!(
        r#"taskmaster_insights_refreshes_total{{outcome="{outcome}"}} "#
    ))
}

/// Asserts the durable consumer has delivered every message and holds none unacked.
async fn assert_all_acked(world: &World) {
    let mut consumer: PullConsumer = world
        .store
        .jetstream()
        .get_stream(world.naming.stream())
        .await
        .unwrap()
        .get_consumer(&InsightsWorker::consumer_name(&world.naming))
        .await
        .unwrap();
    let info = consumer.info().await.unwrap();
    assert_eq!(info.num_ack_pending, 0);
    assert_eq!(info.num_pending, 0);
}

#[tokio::test]
async fn a_burst_of_events_for_one_user_gives_one_refresh_that_covers_them_all() {
    let world = world().await;
    let projector = world.start_projector();
    let options = WorkerOptions::with_debounce(Duration::from_millis(300));
    let worker = start_worker(&world, world.cache(), options).await;
    let (alice, bob) = (user("alice"), user("bob"));

    let (task, _) = world.create(&alice, &["bug"]).await;
    for i in 0..3 {
        world.retitle(&alice, task, &format!("title {i}")).await;
    }
    let last = world.complete(&alice, task, 90).await;
    world.create(&bob, &[]).await;

    let cache = world.cache();
    let refreshed = cached_at(&cache, &alice, last, Duration::from_secs(10))
        .await
        .expect("alice's insights were refreshed");
    assert_eq!(refreshed.completion_rate_30d.completed, 1);
    assert_eq!(refreshed.estimation.overall.median_ratio, Some(1.5));
    assert!(
        until(Duration::from_secs(10), async || cache
            .get(&bob)
            .await
            .unwrap()
            .is_some())
        .await
    );
    // Quiet for longer than the debounce: still one refresh each, every message acked.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(refreshes(&world, "stored"), 2);
    assert_all_acked(&world).await;
    worker.cancel();
    projector.cancel();
}

#[tokio::test]
async fn when_the_read_model_lags_the_cached_value_is_dropped_and_refreshed_once_it_catches_up() {
    let world = world().await;
    let alice = user("alice");
    let cache = world.cache();
    // A value cached before the event, which the read model will not reach for a while.
    let stale = insights::compute::compute(&insights::compute::InsightsInput {
        tasks: &[],
        time_zone: "UTC",
        now: chrono::Utc::now(),
        position: 0,
    });
    cache.store(&alice, &stale).await.unwrap();
    let options = WorkerOptions {
        read_model_wait: Duration::from_millis(300),
        retry_after: Duration::from_millis(300),
        ..WorkerOptions::with_debounce(Duration::from_millis(50))
    };
    let worker = start_worker(&world, world.cache(), options).await;

    let (_, position) = world.create(&alice, &[]).await;
    assert!(
        until(Duration::from_secs(10), async || refreshes(
            &world,
            "read_model_behind"
        ) >= 1)
        .await
    );
    assert_eq!(
        cache.get(&alice).await.unwrap(),
        None,
        "the stale value is gone"
    );

    // The projector runs again: the redelivered message refreshes the value.
    let projector = world.start_projector();
    let refreshed = cached_at(&cache, &alice, position, Duration::from_secs(15))
        .await
        .expect("refreshed after the read model caught up");
    assert_eq!(refreshed.completion_rate_30d.still_open, 1);
    worker.cancel();
    projector.cancel();
}

#[tokio::test]
async fn with_redis_down_the_worker_acks_and_keeps_consuming() {
    let world = world().await;
    let projector = world.start_projector();
    let options = WorkerOptions::with_debounce(Duration::from_millis(50));
    let worker = start_worker(&world, world.cache_at("redis://127.0.0.1:1"), options).await;
    let alice = user("alice");
    let (task, _) = world.create(&alice, &[]).await;
    assert!(
        until(Duration::from_secs(10), async || refreshes(
            &world,
            "cache_unavailable"
        ) >= 1)
        .await
    );
    // Still alive: the next event is consumed too, and nothing is left unacked.
    world.complete(&alice, task, 10).await;
    assert!(
        until(Duration::from_secs(10), async || refreshes(
            &world,
            "cache_unavailable"
        ) >= 2)
        .await
    );
    assert_all_acked(&world).await;
    worker.cancel();
    projector.cancel();
}

#[tokio::test]
async fn two_workers_share_the_durable_consumer() {
    let world = world().await;
    let projector = world.start_projector();
    let options = WorkerOptions::with_debounce(Duration::from_millis(50));
    let first = start_worker(&world, world.cache(), options.clone()).await;
    let second = start_worker(&world, world.cache(), options).await;
    let users: Vec<_> = (0..6).map(|i| user(&format!("u{i}"))).collect();
    let mut last = Vec::new();
    for u in &users {
        last.push(world.create(u, &[]).await.1);
    }
    let cache = world.cache();
    for (u, position) in users.iter().zip(last) {
        let refreshed = cached_at(&cache, u, position, Duration::from_secs(10)).await;
        assert!(refreshed.is_some(), "{u} refreshed");
    }
    // Each message went to one worker: one refresh per user, not two.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        refreshes(&world, "stored") + refreshes(&world, "superseded"),
        6
    );
    first.cancel();
    second.cancel();
    projector.cancel();
}
