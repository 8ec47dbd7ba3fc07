//! The Postgres read models of taskmaster and the projector that keeps them current.
//!
//! A projection here is an `evolve` over read-model rows: the tasks projection folds events
//! into the domain's own [`domain::Task`] through [`domain::evolve`], so the read model holds
//! exactly what the event log implies and `verify` can compare the two. The live projector and
//! replay call the same [`task_rows::apply_batch`].
//!
//! Every batch is one transaction that writes the rows *and* moves the checkpoints (per
//! partition, the stream sequence up to which it has been applied), guarded by a
//! compare-and-set on the previous checkpoints. A crash between any two statements rolls the
//! whole batch back, and a second projector racing on the same checkpoints fails its commit
//! instead of applying events twice.
//! The transaction also sends `NOTIFY`, delivered only on commit, which wakes queries waiting
//! for `Tm-Min-Position`.
//!
//! # Layout
//! - [`database`]: creating the database if missing and applying `migrations/`.
//! - [`layout`]: partitions (which task goes where) and the version a read model was built by.
//! - [`checkpoint`]: reading and advancing checkpoints, one per partition.
//! - [`leases`]: which projector process owns which partition, through NATS KV leases.
//! - [`dead_letters`]: events the projection could not apply, and retrying them.
//! - [`lag`]: how far each partition is behind the log, sampled for the metrics.
//! - [`erasure`]: removing every trace of a user.
//! - [`feed_tokens`]: the calendar feed's revocable tokens (state of their own, not a read
//!   model: replay and verify leave them alone).
//! - [`task_rows`]: the tasks read model: row mapping, batched folding, bulk upserts.
//! - [`projector`]: the loop that reads the stream from the checkpoints and applies batches,
//!   in lanes of partitions that commit in parallel.
//! - [`replay`]: blue/green rebuilds into a shadow schema, swapped in with one transaction.
//! - [`queries`]: what the API reads: one task, filtered and paginated lists.
//! - [`verify`]: the read model compared with what the log implies, field by field.
//! - [`position`]: waiting until the read model reaches a position (read-your-writes), on
//!   the primary (notifications) or on a replica (polling its checkpoints).
//! - [`read_source`]: where queries read: the primary, or a streaming replica with fallback to
//!   the primary.
//! - [`error`]: the crate's one error enum.

pub mod checkpoint;
pub mod database;
pub mod dead_letters;
pub mod erasure;
pub mod error;
pub mod feed_tokens;
pub mod lag;
pub mod layout;
pub mod leases;
pub mod position;
pub mod projector;
pub mod queries;
pub mod read_source;
pub mod replay;
pub mod task_rows;
pub mod verify;

pub use error::ProjectionError;
pub use layout::Layout;
pub use leases::LeaseOptions;
pub use position::{Follow, PositionWatch};
pub use projector::{Projector, ProjectorOptions};
pub use read_source::{ReadFailure, ReadSource};

/// The name of the tasks projection: its checkpoint rows, layout and metric label.
pub const TASKS_PROJECTION: &str = "tasks";

/// The version of the tasks projection's code. Raise it whenever a change to the projection
/// would give different rows for the same events (a bug fix in how they are folded, a new
/// column filled from them): a deployment whose read model was built by another version
/// rebuilds it blue/green on start, while the old one keeps serving.
pub const TASKS_PROJECTION_VERSION: u32 = 3;

/// The channel on which projections announce committed positions.
pub const POSITION_CHANNEL: &str = "taskmaster_projection_position";
