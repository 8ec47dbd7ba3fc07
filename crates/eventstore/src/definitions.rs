//! Stream definitions, kept as JSON in `nats/streams/` (the format of the NATS API and the
//! `nats` CLI, so operators can read and apply them by hand), applied idempotently by
//! `taskmaster nats apply` and on startup.

use async_nats::jetstream::{self, stream};

use crate::error::StoreError;
use crate::naming::Naming;

/// The task stream definition, as checked in.
pub const TASKS_STREAM_JSON: &str = include_str!("../../../nats/streams/tasks.json");

/// What a deployment may change in the checked-in definitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamOptions {
    /// Replicas of each stream: 1 on a single server, 3 on a 3-node cluster.
    pub replicas: usize,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self { replicas: 1 }
    }
}

/// The task stream's configuration for this deployment: the checked-in definition with the
/// prefix applied to its name and subjects.
pub fn tasks_stream_config(
    naming: &Naming,
    options: StreamOptions,
) -> Result<stream::Config, StoreError> {
    let mut config: stream::Config = serde_json::from_str(TASKS_STREAM_JSON)
        .map_err(|e| StoreError::Config(format!("nats/streams/tasks.json: {e}")))?;
    config.name = naming.stream().to_owned();
    config.subjects = vec![naming.all_events()];
    config.num_replicas = options.replicas.max(1);
    Ok(config)
}

/// Creates the streams, or updates them when their definition changed. Safe to run any number
/// of times, by any number of processes.
#[tracing::instrument(skip_all, fields(stream = naming.stream()), err)]
pub async fn apply_stream_definitions(
    jetstream: &jetstream::Context,
    naming: &Naming,
    options: StreamOptions,
) -> Result<stream::Info, StoreError> {
    let config = tasks_stream_config(naming, options)?;
    jetstream
        .create_or_update_stream(config)
        .await
        .map_err(|e| StoreError::Unavailable(format!("applying stream {}: {e}", naming.stream())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_in_definition_parses_and_keeps_its_guarantees() {
        let config =
            tasks_stream_config(&Naming::new("t1").unwrap(), StreamOptions::default()).unwrap();
        assert_eq!(config.name, "t1_TASKS");
        assert_eq!(config.subjects, vec!["t1.tasks.events.>".to_owned()]);
        assert!(config.allow_direct, "state loading relies on direct gets");
        assert!(config.deny_delete, "events are never deleted one by one");
        assert!(!config.allow_rollup, "a rollup would rewrite history");
        assert_eq!(config.max_age, std::time::Duration::ZERO, "kept forever");
        assert!(config.duplicate_window >= std::time::Duration::from_secs(60));
    }
}
