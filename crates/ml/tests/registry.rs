//! The model registry on a real NATS: versions round-trip through the object store, a
//! follower hot-swaps to each new version, and a version that cannot be read never replaces
//! the one being served.

use std::time::{Duration, Instant};

use ml::dataset::EffortExample;
use ml::features::{feature_row, text_vector, OwnerHistory, TaskInput};
use ml::{Holdout, Model, ModelRegistry, ServingModel, TrainingSet};
use testkit::NatsScope;
use tokio_util::sync::CancellationToken;

fn trained_model() -> Model {
    let mut set = TrainingSet::default();
    for i in 0..60u64 {
        let input = TaskInput {
            title: if i % 2 == 0 {
                "Write the report"
            } else {
                "Fix the bug"
            }
            .into(),
            description: None,
            tags: vec![],
            priority: None,
            estimate_minutes: Some(30),
            due_at: None,
            created_at: chrono::DateTime::UNIX_EPOCH,
        };
        let text = text_vector(&input);
        set.effort.push(EffortExample {
            position: i + 1,
            owner: domain::UserId::parse("ann").unwrap(),
            row: feature_row(&input, &text, &OwnerHistory::default()),
            text,
            actual_minutes: if i % 2 == 0 { 60 } else { 30 },
        });
    }
    ml::train(&set, Holdout::Fraction(0.2), chrono::Utc::now())
        .unwrap()
        .model
}

async fn registry(scope: &NatsScope) -> (async_nats::jetstream::Context, ModelRegistry) {
    let client = async_nats::connect(testkit::nats_url()).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let naming = eventstore::Naming::new(&scope.prefix).unwrap();
    let registry = ModelRegistry::open(&jetstream, &naming, 1).await.unwrap();
    (jetstream, registry)
}

async fn served_version(serving: &ServingModel, version: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while serving.get().map(|m| m.version) != Some(version) {
        assert!(
            Instant::now() < deadline,
            "version {version} not served within 10 s (serving {:?})",
            serving.get().map(|m| m.version)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn published_versions_round_trip_and_a_follower_swaps_to_each() {
    let scope = NatsScope::new();
    let (_, registry) = registry(&scope).await;
    assert!(registry.current().await.unwrap().is_none());

    let serving = ServingModel::default();
    let shutdown = CancellationToken::new();
    let follower = tokio::spawn(serving.clone().follow(registry.clone(), shutdown.clone()));

    let model = trained_model();
    let first = registry.publish(model.clone()).await.unwrap();
    assert_eq!(first.version, 1);
    assert_eq!(first.object, "model-v1");
    let loaded = registry.load(1).await.unwrap();
    assert_eq!(
        loaded,
        Model {
            version: 1,
            ..model.clone()
        }
    );
    served_version(&serving, 1).await;

    let second = registry.publish(model).await.unwrap();
    assert_eq!(second.version, 2);
    served_version(&serving, 2).await;
    // Every version stays in the store.
    assert_eq!(registry.load(1).await.unwrap().version, 1);

    shutdown.cancel();
    follower.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_version_that_cannot_be_read_is_reported_and_never_served() {
    let scope = NatsScope::new();
    let (jetstream, registry) = registry(&scope).await;
    let serving = ServingModel::default();
    let shutdown = CancellationToken::new();
    let follower = tokio::spawn(serving.clone().follow(registry.clone(), shutdown.clone()));
    registry.publish(trained_model()).await.unwrap();
    served_version(&serving, 1).await;

    // A second version whose object is garbage (written by an incompatible release, say).
    let models = jetstream
        .get_object_store(format!("{}_models", scope.prefix))
        .await
        .unwrap();
    models
        .put("model-v2", &mut b"not a model".as_slice())
        .await
        .unwrap();
    let error = registry.load(2).await.unwrap_err();
    assert!(matches!(error, ml::MlError::Corrupt { .. }), "{error}");
    let pointer = jetstream
        .get_key_value(format!("{}_model_pointer", scope.prefix))
        .await
        .unwrap();
    let mut summary: serde_json::Value =
        serde_json::to_value(registry.pointer().await.unwrap().unwrap().0).unwrap();
    summary["version"] = 2.into();
    summary["object"] = "model-v2".into();
    pointer
        .put("current", serde_json::to_vec(&summary).unwrap().into())
        .await
        .unwrap();

    // The follower keeps serving version 1.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(serving.get().unwrap().version, 1);
    assert!(registry.current().await.is_err());

    shutdown.cancel();
    follower.await.unwrap().unwrap();
}
