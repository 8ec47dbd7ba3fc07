//! The Redis cache and the service in front of it, on the real Redis and Postgres.

mod common;

use std::time::{Duration, Instant};

use common::{user, world};
use insights::compute::{compute, InsightsInput};
use insights::{CacheOptions, CacheOutcome, Insights, InsightsCache, InsightsError};
use testkit::RedisKeys;

fn insights_at(position: u64) -> Insights {
    compute(&InsightsInput {
        tasks: &[],
        time_zone: "UTC",
        now: chrono::Utc::now(),
        position,
    })
}

fn cache(prefix: &str) -> InsightsCache {
    InsightsCache::new(
        redis::Client::open(testkit::redis_url()).unwrap(),
        CacheOptions {
            prefix: prefix.to_owned(),
            ttl: Duration::from_secs(120),
            ..CacheOptions::default()
        },
    )
}

async fn raw(command: &mut redis::Cmd) -> redis::Value {
    let client = redis::Client::open(testkit::redis_url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    command.query_async(&mut connection).await.unwrap()
}

#[tokio::test]
async fn a_stored_value_is_read_back_and_expires_with_the_ttl() {
    let keys = RedisKeys::new(&testkit::unique_token());
    let cache = cache(&keys.prefix);
    let alice = user("alice");
    assert_eq!(cache.get(&alice).await.unwrap(), None);
    let value = insights_at(7);
    assert!(cache.store(&alice, &value).await.unwrap());
    assert_eq!(cache.get(&alice).await.unwrap(), Some(value));
    assert_eq!(
        cache.key(&alice),
        format!("taskmaster:{}:insights:v1:alice", keys.prefix)
    );
    let ttl = raw(redis::cmd("TTL").arg(cache.key(&alice))).await;
    let redis::Value::Int(ttl) = ttl else {
        panic!("TTL answered {ttl:?}")
    };
    assert!((1..=120).contains(&ttl), "{ttl}");
    cache.forget(&alice).await.unwrap();
    assert_eq!(cache.get(&alice).await.unwrap(), None);
}

#[tokio::test]
async fn an_older_position_never_replaces_a_newer_value() {
    let keys = RedisKeys::new(&testkit::unique_token());
    let cache = cache(&keys.prefix);
    let alice = user("alice");
    assert!(cache.store(&alice, &insights_at(10)).await.unwrap());
    assert!(!cache.store(&alice, &insights_at(9)).await.unwrap());
    assert_eq!(cache.get(&alice).await.unwrap().unwrap().position, 10);
    let same = insights_at(10);
    assert!(cache.store(&alice, &same).await.unwrap());
    assert_eq!(cache.get(&alice).await.unwrap(), Some(same));
    assert!(cache.store(&alice, &insights_at(11)).await.unwrap());
    assert_eq!(cache.get(&alice).await.unwrap().unwrap().position, 11);
}

#[tokio::test]
async fn an_undecodable_value_counts_as_absent_and_is_replaced() {
    let keys = RedisKeys::new(&testkit::unique_token());
    let cache = cache(&keys.prefix);
    let alice = user("alice");
    raw(redis::cmd("SET").arg(cache.key(&alice)).arg("{not json")).await;
    assert_eq!(cache.get(&alice).await.unwrap(), None);
    assert!(cache.store(&alice, &insights_at(3)).await.unwrap());
    assert_eq!(cache.get(&alice).await.unwrap().unwrap().position, 3);
}

#[tokio::test]
async fn prefixes_and_users_keep_their_values_apart() {
    let (first, second) = (
        RedisKeys::new(&testkit::unique_token()),
        RedisKeys::new(&testkit::unique_token()),
    );
    let (one, two) = (cache(&first.prefix), cache(&second.prefix));
    one.store(&user("alice"), &insights_at(5)).await.unwrap();
    assert_eq!(two.get(&user("alice")).await.unwrap(), None);
    assert_eq!(one.get(&user("bob")).await.unwrap(), None);
}

#[tokio::test]
async fn an_unreachable_redis_fails_fast_and_later_calls_fail_at_once() {
    // Nothing listens on loopback port 1.
    let cache = InsightsCache::new(
        redis::Client::open("redis://127.0.0.1:1").unwrap(),
        CacheOptions::default(),
    );
    let alice = user("alice");
    let started = Instant::now();
    let error = cache.get(&alice).await.unwrap_err();
    assert!(
        matches!(error, InsightsError::CacheUnavailable(_)),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    let started = Instant::now();
    assert!(cache
        .store(&alice, &insights_at(1))
        .await
        .unwrap_err()
        .is_cache());
    assert!(cache.forget(&alice).await.unwrap_err().is_cache());
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_service_misses_then_hits_and_never_serves_a_value_older_than_asked() {
    let world = world().await;
    let service = world.service(world.cache()).await;
    let alice = user("alice");
    let (task, _) = world.create(&alice, &["bug"]).await;
    let position = world.complete(&alice, task, 30).await;
    let projector = world.start_projector();
    world.projected_to(position).await;

    let first = service.get(&alice, None).await.unwrap();
    assert_eq!(first.cache, CacheOutcome::Miss);
    assert_eq!(first.insights.completion_rate_30d.completed, 1);
    assert_eq!(first.insights.position, position);
    let second = service.get(&alice, Some(position)).await.unwrap();
    assert_eq!(second.cache, CacheOutcome::Hit);
    assert_eq!(second.insights, first.insights);

    // A later event: a client that asks for it gets a fresh computation, not the cache.
    let (_, later) = world.create(&alice, &[]).await;
    world.projected_to(later).await;
    let fresh = service.get(&alice, Some(later)).await.unwrap();
    assert_eq!(fresh.cache, CacheOutcome::Miss);
    assert_eq!(fresh.insights.completion_rate_30d.still_open, 1);
    assert_eq!(
        service.get(&alice, Some(later)).await.unwrap().cache,
        CacheOutcome::Hit
    );
    assert_eq!(
        world.metric(r#"taskmaster_insights_cache_requests_total{outcome="miss"} "#),
        2
    );
    projector.cancel();
}

#[tokio::test]
async fn with_redis_down_the_service_computes_from_postgres_and_says_bypass() {
    let world = world().await;
    let service = world.service(world.cache_at("redis://127.0.0.1:1")).await;
    let alice = user("alice");
    let (task, _) = world.create(&alice, &[]).await;
    let position = world.complete(&alice, task, 30).await;
    let projector = world.start_projector();
    world.projected_to(position).await;
    for _ in 0..3 {
        let answer = service.get(&alice, Some(position)).await.unwrap();
        assert_eq!(answer.cache, CacheOutcome::Bypass);
        assert_eq!(answer.insights.completion_rate_30d.completed, 1);
    }
    assert!(service
        .refresh(&alice, position)
        .await
        .unwrap_err()
        .is_cache());
    assert_eq!(
        world.metric(r#"taskmaster_insights_cache_requests_total{outcome="bypass"} "#),
        3
    );
    projector.cancel();
}
