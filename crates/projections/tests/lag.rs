//! The sampled lag: how far each partition's checkpoint is behind the stream's head, and the
//! dead letters still waiting, read from the log and the database, so they show even while no
//! projector applies anything.

mod common;

use std::sync::Arc;

use common::{projector_with, start, wait_for_checkpoint, world, write_history};
use domain::UserId;
use projections::{lag, layout, Layout, ProjectorOptions, TASKS_PROJECTION};
use telemetry::Metrics;

fn partition_lags(metrics: &Metrics) -> Vec<(String, i64)> {
    let text = metrics.encode();
    let mut lags: Vec<(String, i64)> = text
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("taskmaster_projection_lag_events{")?;
            let (labels, value) = rest.split_once("} ")?;
            let partition = labels
                .split(',')
                .find_map(|l| l.strip_prefix("partition=\""))?
                .trim_end_matches('"')
                .to_owned();
            Some((partition, value.parse().ok()?))
        })
        .collect();
    lags.sort();
    lags
}

fn dead_letters_pending(metrics: &Metrics) -> Option<i64> {
    metrics.encode().lines().find_map(|line| {
        line.strip_prefix(r#"taskmaster_dead_letters_pending{projection="tasks"} "#)?
            .parse()
            .ok()
    })
}

#[tokio::test]
async fn every_partition_reports_the_events_after_its_checkpoint_and_the_dead_letters_waiting() {
    let world = world().await;
    let layout = Layout::new(projections::TASKS_PROJECTION_VERSION, 3).unwrap();
    layout::ensure(&world.pool, TASKS_PROJECTION, layout)
        .await
        .unwrap();
    let owner = UserId::parse("lagging").unwrap();
    let appended = write_history(world.store.clone(), owner, 6, 2).await;
    let jetstream = world.store.jetstream();

    // Nobody has projected anything: every partition is behind by the whole log.
    let metrics = Metrics::new();
    lag::sample(&world.pool, jetstream, &world.naming, &metrics)
        .await
        .unwrap();
    let behind: Vec<(String, i64)> = ["0", "1", "2"]
        .iter()
        .map(|p| (p.to_string(), appended as i64))
        .collect();
    assert_eq!(partition_lags(&metrics), behind);
    assert_eq!(dead_letters_pending(&metrics), Some(0));

    // Projected: nothing left behind.
    let running = start(projector_with(
        &world,
        ProjectorOptions {
            partitions: 3,
            ..ProjectorOptions::default()
        },
    ));
    wait_for_checkpoint(&world.pool, world.store.head_position().await.unwrap()).await;
    running.stop().await;
    lag::sample(&world.pool, jetstream, &world.naming, &metrics)
        .await
        .unwrap();
    let caught_up: Vec<(String, i64)> =
        ["0", "1", "2"].iter().map(|p| (p.to_string(), 0)).collect();
    assert_eq!(partition_lags(&metrics), caught_up);

    // A dead letter waiting for a retry is counted until it is retried or discarded.
    sqlx::query(
        "INSERT INTO dead_letters (projection, position, subject, error, payload)
         VALUES ($1, 1, 'tasks.events.x.y', 'simulated', '\\x00')",
    )
    .bind(TASKS_PROJECTION)
    .execute(&world.pool)
    .await
    .unwrap();
    lag::sample(&world.pool, jetstream, &world.naming, &metrics)
        .await
        .unwrap();
    assert_eq!(dead_letters_pending(&metrics), Some(1));
}

#[tokio::test]
async fn a_sample_without_the_stream_fails_and_leaves_the_last_values() {
    let world = world().await;
    let metrics = Arc::new(Metrics::new());
    let other = eventstore::Naming::new(&format!("{}gone", world.nats.prefix)).unwrap();
    let error = lag::sample(&world.pool, world.store.jetstream(), &other, &metrics)
        .await
        .unwrap_err();
    assert!(
        matches!(error, projections::ProjectionError::Stream(_)),
        "{error}"
    );
    assert!(partition_lags(&metrics).is_empty());
}
