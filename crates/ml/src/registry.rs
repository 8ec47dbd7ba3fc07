//! Model versions in JetStream: every version an object in the object store `models`
//! (`model-v<N>`, postcard-encoded [`Model`]), the serving version named by the key `current`
//! of the KV bucket `model_pointer`.
//!
//! Publishing writes the object first and then moves the pointer with a revision-checked
//! update, so a pointer never names a missing object and two trainers cannot both think they
//! published version N. Readers ([`ServingModel::follow`]) watch the pointer and swap the
//! model they serve without a restart; a request in flight keeps the model it started with.
//!
//! Both buckets' streams are applied from `nats/buckets/` rather than through the client's
//! helpers, which cannot read NATS 2.9's account info.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use async_nats::jetstream::{self, kv, object_store::ObjectStore};
use eventstore::Naming;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use crate::model::{EffortMetrics, Model, PriorityMetrics};
use crate::MlError;

/// The checked-in definition of the models object store's stream.
pub const MODELS_JSON: &str = include_str!("../../../nats/buckets/models.json");
/// The checked-in definition of the pointer bucket's stream.
pub const MODEL_POINTER_JSON: &str = include_str!("../../../nats/buckets/model_pointer.json");
const CURRENT: &str = "current";

/// What the pointer says: the serving version and a summary of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pointer {
    /// The version.
    pub version: u64,
    /// Its object in the models store.
    pub object: String,
    /// The last stream sequence it learnt from.
    pub trained_through: u64,
    /// When it was trained.
    pub trained_at: chrono::DateTime<chrono::Utc>,
    /// Effort holdout metrics.
    pub effort: EffortMetrics,
    /// Priority holdout metrics.
    pub priority: Option<PriorityMetrics>,
}

/// The model store and pointer of one deployment.
#[derive(Clone)]
pub struct ModelRegistry {
    objects: ObjectStore,
    pointer: kv::Store,
}

impl std::fmt::Debug for ModelRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelRegistry")
            .field("pointer", &self.pointer.name)
            .finish_non_exhaustive()
    }
}

fn object_name(version: u64) -> String {
    format!("model-v{version}")
}

async fn apply_bucket_stream(
    jetstream: &jetstream::Context,
    definition: &str,
    stream: String,
    subjects: Vec<String>,
    replicas: usize,
) -> Result<(), MlError> {
    let mut config: jetstream::stream::Config = serde_json::from_str(definition)
        .map_err(|e| MlError::Registry(format!("nats/buckets: {e}")))?;
    config.name = stream;
    config.subjects = subjects;
    config.num_replicas = replicas.max(1);
    jetstream
        .create_or_update_stream(config)
        .await
        .map(|_| ())
        .map_err(|e| MlError::Registry(format!("applying the model buckets: {e}")))
}

impl ModelRegistry {
    /// Opens (creating as needed) the object store and the pointer bucket.
    pub async fn open(
        jetstream: &jetstream::Context,
        naming: &Naming,
        replicas: usize,
    ) -> Result<Self, MlError> {
        let models = naming.scoped("models");
        let pointer = naming.scoped("model_pointer");
        apply_bucket_stream(
            jetstream,
            MODELS_JSON,
            format!("OBJ_{models}"),
            vec![format!("$O.{models}.C.>"), format!("$O.{models}.M.>")],
            replicas,
        )
        .await?;
        apply_bucket_stream(
            jetstream,
            MODEL_POINTER_JSON,
            format!("KV_{pointer}"),
            vec![format!("$KV.{pointer}.>")],
            replicas,
        )
        .await?;
        Ok(Self {
            objects: jetstream
                .get_object_store(&models)
                .await
                .map_err(MlError::registry)?,
            pointer: jetstream
                .get_key_value(&pointer)
                .await
                .map_err(MlError::registry)?,
        })
    }

    /// The pointer and its revision, if any version was published.
    pub async fn pointer(&self) -> Result<Option<(Pointer, u64)>, MlError> {
        match self
            .pointer
            .entry(CURRENT)
            .await
            .map_err(MlError::registry)?
        {
            Some(entry) if entry.operation == kv::Operation::Put => {
                let pointer =
                    serde_json::from_slice(&entry.value).map_err(|e| MlError::Corrupt {
                        object: CURRENT.into(),
                        reason: e.to_string(),
                    })?;
                Ok(Some((pointer, entry.revision)))
            }
            _ => Ok(None),
        }
    }

    /// Loads one version.
    pub async fn load(&self, version: u64) -> Result<Model, MlError> {
        let name = object_name(version);
        let mut object = self
            .objects
            .get(&name)
            .await
            .map_err(|e| MlError::Registry(format!("{name}: {e}")))?;
        let mut bytes = Vec::new();
        object
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| MlError::Registry(format!("{name}: {e}")))?;
        postcard::from_bytes(&bytes).map_err(|e| MlError::Corrupt {
            object: name,
            reason: e.to_string(),
        })
    }

    /// The serving model, if any version was published.
    pub async fn current(&self) -> Result<Option<Model>, MlError> {
        match self.pointer().await? {
            Some((pointer, _)) => Ok(Some(self.load(pointer.version).await?)),
            None => Ok(None),
        }
    }

    /// Stores `model` as the next version and points the API at it.
    #[tracing::instrument(skip_all, fields(trained_through = model.trained_through), err)]
    pub async fn publish(&self, mut model: Model) -> Result<Pointer, MlError> {
        let current = self.pointer().await?;
        model.version = current.as_ref().map_or(1, |(p, _)| p.version + 1);
        let name = object_name(model.version);
        let bytes = postcard::to_stdvec(&model).map_err(|e| MlError::Corrupt {
            object: name.clone(),
            reason: e.to_string(),
        })?;
        let meta = jetstream::object_store::ObjectMetadata {
            name: name.clone(),
            description: Some(format!(
                "trained through {}, effort MAE {:.3} on {} held out, params {:?}",
                model.trained_through,
                model.effort_metrics.mae,
                model.effort_metrics.holdout,
                model.effort.params
            )),
            ..Default::default()
        };
        self.objects
            .put(meta, &mut bytes.as_slice())
            .await
            .map_err(|e| MlError::Registry(format!("{name}: {e}")))?;
        let pointer = Pointer {
            version: model.version,
            object: name,
            trained_through: model.trained_through,
            trained_at: model.trained_at,
            effort: model.effort_metrics,
            priority: model.priority_metrics,
        };
        let value = serde_json::to_vec(&pointer).map_err(MlError::registry)?;
        let moved = match &current {
            Some((_, revision)) => self
                .pointer
                .update(CURRENT, value.into(), *revision)
                .await
                .is_err(),
            None => self.pointer.create(CURRENT, value.into()).await.is_err(),
        };
        if moved {
            let now = self.pointer().await?.map_or(0, |(p, _)| p.version);
            return Err(MlError::PointerMoved(now));
        }
        tracing::info!(
            version = pointer.version,
            mae = pointer.effort.mae,
            "published a model version"
        );
        Ok(pointer)
    }
}

/// The model an API process serves, swapped in place when the pointer moves.
#[derive(Debug, Clone, Default)]
pub struct ServingModel {
    current: Arc<ArcSwapOption<Model>>,
    metrics: Option<Arc<telemetry::Metrics>>,
}

impl ServingModel {
    /// A serving slot that reports the served version and its holdout metrics.
    pub fn with_metrics(metrics: Arc<telemetry::Metrics>) -> Self {
        Self {
            current: Arc::default(),
            metrics: Some(metrics),
        }
    }

    /// The model of this moment (`None` before any version was published).
    pub fn get(&self) -> Option<Arc<Model>> {
        self.current.load_full()
    }

    /// Serves `model` from now on.
    pub fn set(&self, model: Model) {
        if let Some(metrics) = &self.metrics {
            metrics.model_version.set(model.version as i64);
            let m = model.effort_metrics;
            for (metric, value) in [
                ("mae", m.mae),
                ("mdae", m.mdae),
                ("sa", m.sa),
                ("median_baseline_mae", m.median_baseline_mae),
            ] {
                metrics
                    .model_holdout
                    .get_or_create(&telemetry::metrics::ModelMetricLabels { metric })
                    .set(value);
            }
        }
        self.current.store(Some(Arc::new(model)));
    }

    /// Follows the pointer until `shutdown`: loads the current version, then every new one.
    /// A version that cannot be loaded is logged and the previous one kept serving.
    pub async fn follow(
        self,
        registry: ModelRegistry,
        shutdown: CancellationToken,
    ) -> Result<(), MlError> {
        loop {
            let mut watch = match registry.pointer.watch_with_history(CURRENT).await {
                Ok(watch) => watch,
                Err(error) => {
                    tracing::warn!(%error, "cannot watch the model pointer; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                    }
                }
            };
            loop {
                let entry = tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    entry = watch.next() => entry,
                };
                let Some(Ok(entry)) = entry else { break };
                let Ok(pointer) = serde_json::from_slice::<Pointer>(&entry.value) else {
                    continue;
                };
                if self.get().is_some_and(|m| m.version >= pointer.version) {
                    continue;
                }
                match registry.load(pointer.version).await {
                    Ok(model) => {
                        tracing::info!(version = model.version, "serving a new model version");
                        self.set(model);
                    }
                    Err(error) => tracing::error!(%error, "cannot load a published model"),
                }
            }
        }
    }
}
