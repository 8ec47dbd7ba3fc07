//! The learning side of taskmaster: an effort estimator and a priority suggester, trained by
//! replaying the event log, versioned in a JetStream object store, hot-swapped by the API.
//!
//! # Layout
//! - [`features`]: task → numbers (stemmed hashed words, the estimate, the owner's history,
//!   priority, due date).
//! - [`dataset`]: events → training examples, folded with the domain's `evolve`.
//! - [`normal`]: ridge regression through sufficient statistics (incremental, fast refits).
//! - [`model`]: a trained version and the one prediction path everyone uses.
//! - [`train`]: tuning on a chronological holdout, metrics, refit, and the comparison that
//!   decides whether a candidate replaces the serving model.
//! - [`registry`]: versions in the object store `models`, the pointer in the KV bucket
//!   `model_pointer`, and [`ServingModel`], which follows the pointer.
//! - [`worker`]: the `ml` role (replay, live learning, retraining) and `replay ml`.
//! - [`eval`]: `taskmaster ml eval --csv`, the offline evaluation on story-point data.
//! - [`error`]: the one error enum.
//!
//! # Why these algorithms
//! Both models are linear in hashed text features plus a handful of numbers, fitted by ridge
//! regression from `XᵀX` and `Xᵀy`. That choice buys three things the brief asks for: learning
//! a new completion is one rank-one update (incremental), a full retrain over a million events
//! costs one pass to fold them and one small Cholesky solve (fast), and a model is a vector of
//! numbers that fits in an object store. On top, the effort estimator corrects the ridge with a
//! weighted median over the owner's own most similar recent completions: people are
//! consistently off in their own ways, and recent similar work is the best evidence of how.

pub mod dataset;
pub mod error;
pub mod eval;
pub mod features;
pub mod model;
pub mod normal;
pub mod registry;
pub mod train;
pub mod worker;

pub use error::MlError;
pub use features::TaskInput;
pub use model::{Model, Prediction};
pub use registry::{ModelRegistry, Pointer, ServingModel};
pub use train::{train, Holdout, TrainingSet};
pub use worker::{MlWorker, WorkerOptions};
