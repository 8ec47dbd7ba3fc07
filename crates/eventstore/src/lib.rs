//! The event store of taskmaster, on NATS JetStream.
//!
//! Every task is one subject, `tasks.events.<owner_id>.<task_id>`, of the stream `TASKS`; each
//! accepted command appends exactly one message, so a commit is atomic on any JetStream version.
//! Concurrency is optimistic and per task: an append carries
//! `Nats-Expected-Last-Subject-Sequence` (the stream sequence of the task's last event, 0 for a
//! new task) and JetStream refuses it with `WrongLastSequence` when someone else got there first.
//! Idempotency rides on `Nats-Msg-Id` (the command id), which JetStream checks *before* the
//! expected sequence, so a retried command inside the duplicate window appends nothing.
//!
//! # Loading a task without a consumer per command
//! Deciding a command needs the task's current state. Reading the task's events through a
//! consumer costs about 5.7 ms at the median on the reference machine; a direct "last message
//! for subject" lookup costs about 0.15 ms. So the store keeps a bounded LRU cache of folded
//! task states, each tagged with the stream sequence it was folded up to, and validates an
//! entry with one direct lookup of the subject's last sequence before every command:
//! - equal: the cached state is current (the common case, one 0.15 ms round trip);
//! - the cache is behind (another process appended): the missing events are fetched one by one
//!   with direct gets (`next_by_subj`) and folded on top, a couple of round trips;
//! - no entry (cold task, or evicted): the task's events are read once through a short-lived
//!   ordered consumer and folded.
//!
//! Creates skip the lookup entirely: the id is new, so the append expects sequence 0 and the
//! state is empty by construction. The cache never decides correctness: a stale entry can only
//! make the append fail with `WrongLastSequence`, which evicts it. Snapshots were not chosen
//! because tasks are short-lived aggregates (tens of events), where a snapshot store would add
//! a second write per command for no gain; the cache gives the same effect without one.
//!
//! # On a cluster (R3 streams)
//! Any replica answers a direct get, and a follower can be a few events behind the leader. So
//! a "not found", or a last sequence older than the cached state, is confirmed with the
//! leader (`STREAM.MSG.GET`); a retry after a lost race asks the leader; and a task's events
//! are read up to the last sequence or not at all (a follower that lacks the tail hands over
//! to an ordered consumer, which waits for it). A state folded from too few events is never
//! returned, since its append would pass the expected-sequence check.
//!
//! # Layout
//! - [`naming`]: stream, subject and bucket names under the configurable prefix.
//! - [`definitions`]: the stream definition kept in `nats/streams/`, applied idempotently.
//! - [`envelope`]: headers and the decoding of stored messages into [`RecordedEvent`]s.
//! - [`cache`]: the bounded state cache.
//! - [`store`]: [`EventStore`]: execute a command, load a task, read its history.
//! - [`follow`]: following the stream live, read again when the server serving the reader is
//!   lost.
//! - [`transfer`]: export, import and tail as JSON lines.
//! - [`error`]: the crate's one error enum.

pub mod cache;
pub mod definitions;
pub mod envelope;
pub mod error;
pub mod follow;
pub mod naming;
pub mod store;
pub mod transfer;

pub use definitions::{apply_stream_definitions, StreamOptions};
pub use envelope::{headers, RecordedEvent};
pub use error::StoreError;
pub use naming::Naming;
pub use store::{ordered_messages, CommandMeta, CommandOutcome, EventStore, LoadedTask};
