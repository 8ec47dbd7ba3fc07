//! The command path of taskmaster: what happens between "a writer wants this command" and
//! "the event is in the log", for every writer alike. The API's handlers and the automation
//! runtime both go through [`CommandPath`], so a cascade or a recurrence obeys exactly the
//! rules a person's request does, and is counted in the same metrics.
//!
//! The Task aggregate decides about one task only. Commands that depend on other tasks (a
//! subtask's parent, a parent's open subtasks) get those facts gathered here first:
//! - a parent's ancestors come from the **log** (each ancestor's own state), which is never
//!   stale, so a cycle cannot be made from an old picture of the tree;
//! - a subtree's height and a task's open subtasks come from the **primary read model**,
//!   after it has caught up with the log's head, because the log has no index from a parent
//!   to its children.
//!
//! Two moves racing each other can still both pass (each decided before the other was
//! appended). [`CommandPath::move_task`] therefore checks the tree again after appending and
//! undoes its own move if it closed a cycle; see its documentation.

mod error;
mod path;

pub use error::CommandError;
pub use path::{now, CommandPath};
