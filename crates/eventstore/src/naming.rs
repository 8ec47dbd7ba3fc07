//! Names of streams, subjects and buckets, derived from one optional prefix so that several
//! environments or test runs can share a NATS server without seeing each other.
//!
//! With an empty prefix the names are those of the brief (`TASKS`, `tasks.events.…`). With
//! prefix `ci7`, the stream is `ci7_TASKS` and the subjects `ci7.tasks.events.…`.

use domain::{TaskId, UserId};

use crate::error::StoreError;

/// The names used by one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    prefix: String,
    stream: String,
    subject_root: String,
}

impl Naming {
    /// Builds the names for a prefix; the prefix must be empty or `[A-Za-z0-9_-]{1,32}`
    /// because it becomes part of stream names and subject tokens.
    pub fn new(prefix: &str) -> Result<Self, StoreError> {
        let valid = prefix.len() <= 32
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(StoreError::Config(format!(
                "TASKMASTER_NATS_PREFIX {prefix:?} must be at most 32 characters of A-Z, a-z, 0-9, '_' or '-'"
            )));
        }
        let (stream, subject_root) = if prefix.is_empty() {
            ("TASKS".to_owned(), "tasks.events".to_owned())
        } else {
            (format!("{prefix}_TASKS"), format!("{prefix}.tasks.events"))
        };
        Ok(Self {
            prefix: prefix.to_owned(),
            stream,
            subject_root,
        })
    }

    /// The prefix itself (possibly empty).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Prefixes any other name (consumers, buckets): `NAME` or `<prefix>_NAME`.
    pub fn scoped(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}_{name}", self.prefix)
        }
    }

    /// The name of the task event stream.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The subject of one task.
    pub fn task_subject(&self, owner: &UserId, task: TaskId) -> String {
        format!("{}.{}.{}", self.subject_root, owner, task)
    }

    /// The wildcard covering one user's events.
    pub fn owner_filter(&self, owner: &UserId) -> String {
        format!("{}.{}.>", self.subject_root, owner)
    }

    /// The wildcard covering every task event.
    pub fn all_events(&self) -> String {
        format!("{}.>", self.subject_root)
    }

    /// What follows the subject root in a task subject (`<owner_id>.<task_id>`): the part
    /// that names the task whatever the prefix.
    pub fn task_key<'s>(&self, subject: &'s str) -> Option<&'s str> {
        subject
            .strip_prefix(self.subject_root.as_str())?
            .strip_prefix('.')
    }

    /// Splits a task subject into its owner and task id.
    pub fn parse_subject(&self, subject: &str) -> Option<(UserId, TaskId)> {
        let rest = subject
            .strip_prefix(&self.subject_root)?
            .strip_prefix('.')?;
        let (owner, task) = rest.split_once('.')?;
        Some((UserId::parse(owner).ok()?, TaskId::parse(task).ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_prefix_gives_the_names_of_the_brief() {
        let naming = Naming::new("").unwrap();
        assert_eq!(naming.stream(), "TASKS");
        let owner = UserId::parse("alice").unwrap();
        let task = TaskId(uuid::Uuid::nil());
        let subject = naming.task_subject(&owner, task);
        assert_eq!(
            subject,
            "tasks.events.alice.00000000-0000-0000-0000-000000000000"
        );
        assert_eq!(naming.parse_subject(&subject), Some((owner.clone(), task)));
        assert_eq!(naming.owner_filter(&owner), "tasks.events.alice.>");
    }

    #[test]
    fn a_prefix_scopes_every_name() {
        let naming = Naming::new("ci7").unwrap();
        assert_eq!(naming.stream(), "ci7_TASKS");
        assert_eq!(naming.all_events(), "ci7.tasks.events.>");
        assert_eq!(naming.scoped("projector"), "ci7_projector");
        assert!(naming.parse_subject("tasks.events.a.b").is_none());
    }

    #[test]
    fn a_prefix_with_subject_characters_is_refused() {
        for bad in ["a.b", "a b", "*", ">", &"x".repeat(33)] {
            assert!(Naming::new(bad).is_err(), "{bad:?}");
        }
    }
}
