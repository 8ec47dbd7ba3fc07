//! Blue/green rebuilds: a read model rebuilt from the log beside the live one, then swapped in
//! with one transaction, so queries never stop and never see a half-built model.
//!
//! 1. A schema of its own (`taskmaster_rebuild_tasks`) gets empty copies of the read-model
//!    tables (structure as migrated, from the live ones), with the target layout.
//! 2. The ordinary [`Projector`] runs against it through a pool whose `search_path` is that
//!    schema: the very code of live projection, over every partition, from position 1. Its
//!    commits are asynchronous (`synchronous_commit = off`: a crash loses at most the last
//!    batches, which the checkpoint in the same transaction accounts for) and the secondary
//!    indexes are built once at the end instead of row by row.
//! 3. The swap transaction locks the live checkpoints (holding the live projectors back for a
//!    moment), lets the shadow catch up to the furthest of them, then moves the shadow table
//!    into the live schema in place of the old one, carries over checkpoints, dead letters and
//!    the new layout, and announces the position. Queries in flight finish on the old table;
//!    queries arriving during the swap wait for it (milliseconds) and then read the new one.
//!    Checkpoints only move forward, so a reader waiting for its own write is never answered
//!    by a model that has not applied it. Live projectors find their checkpoints moved, start
//!    over from the new ones and carry on with the new table.
//!
//! One rebuild runs at a time per database (a session advisory lock, released if the process
//! dies); a leftover shadow schema from an interrupted one is dropped by the next.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Acquire, Executor, PgPool};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{self, Announcement};
use crate::error::ProjectionError;
use crate::layout::{self, Layout};
use crate::projector::Projector;
use crate::{POSITION_CHANNEL, TASKS_PROJECTION};

/// The schema a rebuild of the tasks read model is built in.
pub const SHADOW_SCHEMA: &str = "taskmaster_rebuild_tasks";
/// Where the replaced tables go for the instant before they are dropped.
const RETIRED_SCHEMA: &str = "taskmaster_retired_tasks";
/// The advisory lock that keeps rebuilds one at a time ("tm-rebuild" in ASCII).
const REBUILD_LOCK: i64 = 0x746d_2d72_6562_7569;
/// Secondary indexes built at once at the end of a rebuild.
const INDEX_BUILDERS: usize = 2;
/// How long the swap waits for a table lock before giving up and trying again, so queries
/// queued behind it are never held longer than this.
const SWAP_LOCK_TIMEOUT: &str = "1s";

/// Where a rebuild is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Replaying the log into the shadow schema.
    Replaying,
    /// Building the secondary indexes of the shadow table.
    Indexing,
    /// Catching up and swapping the shadow in.
    Swapping,
    /// Swapped in.
    Done,
}

/// Progress of a rebuild, as published while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// The stage.
    pub stage: Stage,
    /// The stream position the shadow has applied.
    pub position: u64,
    /// The stream's last position when last looked at.
    pub head: u64,
}

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RebuildReport {
    /// The layout the read model had before.
    pub replaced: Option<LayoutSummary>,
    /// The layout it has now.
    pub layout: LayoutSummary,
    /// The position the new read model was swapped in at.
    pub position: u64,
    /// Rows in the new read model.
    pub tasks: u64,
    /// Dead letters the rebuild recorded.
    pub dead_letters: u64,
    /// Wall time, in milliseconds.
    pub elapsed_ms: u64,
    /// Of which replaying the log into the shadow (first pass, up to the head at the start).
    pub replay_ms: u64,
    /// Of which building the secondary indexes.
    pub index_ms: u64,
    /// Of which catching up with what arrived meanwhile and swapping in.
    pub swap_ms: u64,
}

/// How long each stage of a rebuild took.
#[derive(Debug, Clone, Copy, Default)]
struct StageTimes {
    replay: Duration,
    index: Duration,
    swap: Duration,
}

/// A [`Layout`] for reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LayoutSummary {
    /// Projection version.
    pub version: u32,
    /// Partitions.
    pub partitions: u16,
}

impl From<Layout> for LayoutSummary {
    fn from(layout: Layout) -> Self {
        Self {
            version: layout.version,
            partitions: layout.partitions,
        }
    }
}

/// Rebuilds the tasks read model blue/green with `projector`'s code and configured layout,
/// publishing progress on `progress`. Fails with [`ProjectionError::RebuildRunning`] when
/// another rebuild holds the lock.
#[tracing::instrument(skip_all, err)]
pub async fn rebuild(
    projector: &Projector,
    shutdown: &CancellationToken,
    progress: &watch::Sender<Progress>,
) -> Result<RebuildReport, ProjectionError> {
    let live = projector.pool().clone();
    let mut lock_holder = live.acquire().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(REBUILD_LOCK)
        .fetch_one(&mut *lock_holder)
        .await?;
    if !locked {
        return Err(ProjectionError::RebuildRunning(TASKS_PROJECTION.into()));
    }
    let outcome = rebuild_locked(projector, &live, shutdown, progress).await;
    if outcome.is_err() {
        // Retried once: a straggling reader of the shadow can make the drop a deadlock victim.
        let drop = format!("DROP SCHEMA IF EXISTS {SHADOW_SCHEMA} CASCADE");
        if lock_holder.execute(drop.as_str()).await.is_err() {
            if let Err(error) = lock_holder.execute(drop.as_str()).await {
                tracing::warn!(%error, "could not drop the shadow schema of a failed rebuild; the next rebuild will");
            }
        }
    }
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(REBUILD_LOCK)
        .execute(&mut *lock_holder)
        .await;
    outcome
}

/// How often a deployment whose read model is on another layout checks whether it still needs
/// a rebuild that some other process was running (that process may have died).
pub(crate) const REBUILD_RETRY: Duration = Duration::from_secs(10);

/// Rebuilds in the background until the stored layout is the code's (what a projector does on
/// deploy when they differ). Another process rebuilding is not an error, but it is not trusted
/// to finish either: every [`REBUILD_RETRY`] this checks the layout again and, if it still
/// differs and the lock is free (its holder died), rebuilds itself.
pub(crate) fn spawn_rebuild(
    projector: Projector,
    shutdown: CancellationToken,
    retry_every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (progress, _) = watch::channel(Progress {
            stage: Stage::Replaying,
            position: 0,
            head: 0,
        });
        while !shutdown.is_cancelled() {
            let wanted = projector.wanted_layout();
            let stored = layout::load(projector.pool(), TASKS_PROJECTION).await;
            if let (Ok(wanted), Ok(Some(stored))) = (&wanted, &stored) {
                if wanted == stored {
                    return;
                }
            }
            match rebuild(&projector, &shutdown, &progress).await {
                Ok(report) => {
                    tracing::info!(
                        position = report.position,
                        tasks = report.tasks,
                        elapsed_ms = report.elapsed_ms,
                        version = report.layout.version,
                        partitions = report.layout.partitions,
                        "rebuilt the tasks read model and swapped it in"
                    );
                    return;
                }
                Err(ProjectionError::RebuildRunning(_)) => {
                    tracing::info!("another process is rebuilding the read model")
                }
                Err(error) if shutdown.is_cancelled() => {
                    tracing::info!(%error, "rebuild stopped by shutdown; the next start begins again");
                    return;
                }
                Err(error) => {
                    tracing::error!(%error, "rebuilding the read model failed; trying again")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(retry_every) => {}
            }
        }
    })
}

async fn rebuild_locked(
    projector: &Projector,
    live: &PgPool,
    shutdown: &CancellationToken,
    progress: &watch::Sender<Progress>,
) -> Result<RebuildReport, ProjectionError> {
    let started = Instant::now();
    let wanted = projector.wanted_layout()?;
    let replaced = layout::load(live, TASKS_PROJECTION).await?;
    // Quoted only where needed, as pg_get_indexdef writes it.
    let live_schema: String = sqlx::query_scalar("SELECT quote_ident(current_schema())")
        .fetch_one(live)
        .await?;
    prepare_shadow(live, &live_schema, wanted).await?;

    let shadow_lanes = projector.shadow_lanes();
    let shadow_options = (*live.connect_options()).clone().options([
        ("search_path", SHADOW_SCHEMA),
        ("synchronous_commit", "off"),
    ]);
    // One connection per lane, one for the progress reader.
    let shadow_pool = PgPoolOptions::new()
        .max_connections(shadow_lanes as u32 + 1)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(shadow_options)
        .await?;
    let shadow = projector.for_shadow(shadow_pool.clone());

    // Progress comes from the shadow's checkpoints; the poller is stopped (and the shadow pool
    // closed) before this function returns, so nothing reads the shadow while it is dropped.
    let stop_progress = shutdown.child_token();
    let poller = tokio::spawn(poll_progress(
        shadow_pool.clone(),
        projector.jetstream().clone(),
        projector.naming().stream().to_owned(),
        progress.clone(),
        stop_progress.clone(),
    ));
    let mut times = StageTimes::default();
    let outcome = build_and_swap(
        projector,
        &shadow,
        live,
        &live_schema,
        wanted,
        shutdown,
        progress,
        &mut times,
    )
    .await;
    stop_progress.cancel();
    let _ = poller.await;
    shadow_pool.close().await;
    let position = outcome?;

    let tasks: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks")
        .fetch_one(live)
        .await?;
    let dead_letters: i64 =
        sqlx::query_scalar("SELECT count(*) FROM dead_letters WHERE projection = $1")
            .bind(TASKS_PROJECTION)
            .fetch_one(live)
            .await?;
    progress.send_modify(|p| {
        p.stage = Stage::Done;
        p.position = position;
    });
    Ok(RebuildReport {
        replaced: replaced.map(LayoutSummary::from),
        layout: wanted.into(),
        position,
        tasks: tasks.max(0) as u64,
        dead_letters: dead_letters.max(0) as u64,
        elapsed_ms: started.elapsed().as_millis() as u64,
        replay_ms: times.replay.as_millis() as u64,
        index_ms: times.index.as_millis() as u64,
        swap_ms: times.swap.as_millis() as u64,
    })
}

/// Replays the log into the shadow, builds its indexes, catches up and swaps it in; returns the
/// position it went live at.
#[allow(clippy::too_many_arguments)]
async fn build_and_swap(
    projector: &Projector,
    shadow: &Projector,
    live: &PgPool,
    live_schema: &str,
    wanted: Layout,
    shutdown: &CancellationToken,
    progress: &watch::Sender<Progress>,
    times: &mut StageTimes,
) -> Result<u64, ProjectionError> {
    let stage = Instant::now();
    let head = stream_head(projector.jetstream(), projector.naming().stream()).await?;
    progress.send_modify(|p| {
        p.stage = Stage::Replaying;
        p.head = head;
    });
    shadow.catch_up(head, shutdown).await?;
    times.replay = stage.elapsed();
    let stage = Instant::now();
    progress.send_modify(|p| p.stage = Stage::Indexing);
    build_indexes(live, live_schema).await?;
    times.index = stage.elapsed();
    let stage = Instant::now();
    let head = stream_head(projector.jetstream(), projector.naming().stream()).await?;
    shadow.catch_up(head, shutdown).await?;
    progress.send_modify(|p| p.stage = Stage::Swapping);
    let position = swap(shadow, live, live_schema, wanted, shutdown).await?;
    times.swap = stage.elapsed();
    Ok(position)
}

/// Publishes the shadow's position and the stream's head four times a second until `stop`.
async fn poll_progress(
    shadow_pool: PgPool,
    jetstream: async_nats::jetstream::Context,
    stream: String,
    progress: watch::Sender<Progress>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! { _ = stop.cancelled() => break, _ = tick.tick() => {} }
        let position = checkpoint::load(&shadow_pool, TASKS_PROJECTION)
            .await
            .unwrap_or(0);
        let head = stream_head(&jetstream, &stream).await.unwrap_or(0);
        progress.send_modify(|p| {
            p.position = p.position.max(position);
            p.head = p.head.max(head);
        });
    }
}

/// The stream's last sequence.
async fn stream_head(
    jetstream: &async_nats::jetstream::Context,
    stream: &str,
) -> Result<u64, ProjectionError> {
    let mut stream = jetstream
        .get_stream(stream)
        .await
        .map_err(|e| ProjectionError::Stream(e.to_string()))?;
    let info = stream
        .info()
        .await
        .map_err(|e| ProjectionError::Stream(e.to_string()))?;
    Ok(info.state.last_sequence)
}

/// A fresh shadow schema: the read-model tables as the live ones are migrated (the tasks table
/// with only its primary key for now), and the target layout.
async fn prepare_shadow(
    live: &PgPool,
    live_schema: &str,
    wanted: Layout,
) -> Result<(), ProjectionError> {
    let primary_key: String = sqlx::query_scalar(&format!(
        "SELECT conname::text FROM pg_constraint
          WHERE conrelid = '{live_schema}.tasks'::regclass AND contype = 'p'"
    ))
    .fetch_one(live)
    .await?;
    let shadow = SHADOW_SCHEMA;
    sqlx::raw_sql(&format!(
        "DROP SCHEMA IF EXISTS {shadow} CASCADE;
         DROP SCHEMA IF EXISTS {RETIRED_SCHEMA} CASCADE;
         CREATE SCHEMA {shadow};
         CREATE TABLE {shadow}.tasks (LIKE {live_schema}.tasks
             INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING CONSTRAINTS);
         ALTER TABLE {shadow}.tasks ADD CONSTRAINT {pk} PRIMARY KEY (id);
         CREATE TABLE {shadow}.projection_checkpoints
             (LIKE {live_schema}.projection_checkpoints INCLUDING ALL);
         CREATE TABLE {shadow}.dead_letters (LIKE {live_schema}.dead_letters INCLUDING ALL);
         CREATE TABLE {shadow}.projection_layouts
             (LIKE {live_schema}.projection_layouts INCLUDING ALL);
         INSERT INTO {shadow}.projection_layouts (projection, version, partitions)
             VALUES ('{TASKS_PROJECTION}', {version}, {partitions});",
        pk = quote_ident(&primary_key),
        version = wanted.version,
        partitions = wanted.partitions,
    ))
    .execute(live)
    .await?;
    Ok(())
}

/// Builds the live table's secondary indexes on the shadow table, under the same names (index
/// names are per schema), once, after the bulk of the rows is in.
async fn build_indexes(live: &PgPool, live_schema: &str) -> Result<(), ProjectionError> {
    let definitions: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT pg_get_indexdef(indexrelid) FROM pg_index
          WHERE indrelid = '{live_schema}.tasks'::regclass AND NOT indisprimary"
    ))
    .fetch_all(live)
    .await?;
    let from = format!(" ON {live_schema}.tasks ");
    let to = format!(" ON {SHADOW_SCHEMA}.tasks ");
    let mut statements = Vec::with_capacity(definitions.len());
    for definition in definitions {
        if !definition.contains(&from) {
            return Err(ProjectionError::Config(format!(
                "cannot copy index definition {definition:?}"
            )));
        }
        statements.push(definition.replacen(&from, &to, 1));
    }
    // Two at a time, each on its own connection: index builds on one table only share-lock
    // it, so they run side by side and keep both cores of a small machine busy.
    futures::stream::iter(statements)
        .map(|statement| async move {
            let mut connection = live.acquire().await?;
            connection
                .execute("SET maintenance_work_mem = '256MB'")
                .await?;
            connection.execute(statement.as_str()).await?;
            connection.execute("RESET maintenance_work_mem").await?;
            Ok::<(), ProjectionError>(())
        })
        .buffer_unordered(INDEX_BUILDERS)
        .try_collect::<Vec<()>>()
        .await?;
    live.execute(format!("ANALYZE {SHADOW_SCHEMA}.tasks").as_str())
        .await?;
    Ok(())
}

/// Swaps the caught-up shadow in; returns the position it went live at. Retries when a table
/// lock cannot be had within [`SWAP_LOCK_TIMEOUT`] (a long query on the old table).
async fn swap(
    shadow: &Projector,
    live: &PgPool,
    live_schema: &str,
    wanted: Layout,
    shutdown: &CancellationToken,
) -> Result<u64, ProjectionError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match try_swap(shadow, live, live_schema, wanted, shutdown).await {
            Ok(position) => return Ok(position),
            Err(ProjectionError::Database(sqlx::Error::Database(e)))
                if e.code().as_deref() == Some("55P03") && attempt < 10 =>
            {
                tracing::info!(
                    attempt,
                    "the swap could not lock the live table in time; trying again"
                );
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
            Err(error) => return Err(error),
        }
    }
}

async fn try_swap(
    shadow: &Projector,
    live: &PgPool,
    live_schema: &str,
    wanted: Layout,
    shutdown: &CancellationToken,
) -> Result<u64, ProjectionError> {
    let mut connection = live.acquire().await?;
    let mut tx = connection.begin().await?;
    sqlx::query(&format!("SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'"))
        .execute(&mut *tx)
        .await?;
    // Hold the live projectors back, and make the shadow reach the furthest of them, so no
    // partition's checkpoint moves backwards.
    let live_positions = checkpoint::lock_all(&mut tx, TASKS_PROJECTION).await?;
    let furthest = live_positions.values().copied().max().unwrap_or(0);
    let position = shadow.catch_up(furthest, shutdown).await?;
    let shadow_schema = SHADOW_SCHEMA;
    tx.execute(
        format!(
            "CREATE SCHEMA {RETIRED_SCHEMA};
             ALTER TABLE {live_schema}.tasks SET SCHEMA {RETIRED_SCHEMA};
             ALTER TABLE {shadow_schema}.tasks SET SCHEMA {live_schema};"
        )
        .as_str(),
    )
    .await?;
    sqlx::query(&format!(
        "DELETE FROM {live_schema}.projection_checkpoints WHERE projection = $1 AND partition >= $2"
    ))
    .bind(TASKS_PROJECTION)
    .bind(i32::from(wanted.partitions))
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!(
        "INSERT INTO {live_schema}.projection_checkpoints
                (projection, partition, position, version, partitions)
         SELECT projection, partition, position, version, partitions
           FROM {shadow_schema}.projection_checkpoints WHERE projection = $1
         ON CONFLICT (projection, partition) DO UPDATE
            SET position = EXCLUDED.position, version = EXCLUDED.version,
                partitions = EXCLUDED.partitions, updated_at = now()"
    ))
    .bind(TASKS_PROJECTION)
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!(
        "DELETE FROM {live_schema}.dead_letters WHERE projection = $1"
    ))
    .bind(TASKS_PROJECTION)
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!(
        "INSERT INTO {live_schema}.dead_letters SELECT * FROM {shadow_schema}.dead_letters
          WHERE projection = $1"
    ))
    .bind(TASKS_PROJECTION)
    .execute(&mut *tx)
    .await?;
    layout::store(&mut *tx, TASKS_PROJECTION, wanted).await?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(POSITION_CHANNEL)
        .bind(Announcement::format(
            TASKS_PROJECTION,
            position,
            wanted.partitions,
            &wanted.all_partitions(),
        ))
        .execute(&mut *tx)
        .await?;
    tx.execute(
        format!("DROP SCHEMA {RETIRED_SCHEMA} CASCADE; DROP SCHEMA {shadow_schema} CASCADE;")
            .as_str(),
    )
    .await?;
    tx.commit().await?;
    Ok(position)
}

/// Quotes an identifier for SQL.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
