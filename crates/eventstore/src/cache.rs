//! A bounded cache of folded task states, each tagged with the stream sequence it reflects.
//!
//! The cache is an optimisation only: an entry is trusted after its sequence has been checked
//! against the subject's last sequence, and JetStream's expected-sequence check refuses any
//! append decided on a stale state. A std mutex is enough: critical sections are a hash lookup.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use domain::{Task, TaskId};
use lru::LruCache;

/// A task state and the stream sequence of the last event folded into it.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedTask {
    /// The folded state.
    pub task: Task,
    /// The stream sequence of `task`'s last event.
    pub sequence: u64,
}

/// Least-recently-used cache of task states.
#[derive(Debug)]
pub struct StateCache {
    entries: Mutex<LruCache<TaskId, CachedTask>>,
}

impl StateCache {
    /// A cache holding at most `capacity` tasks (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            entries: Mutex::new(LruCache::new(capacity)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<TaskId, CachedTask>> {
        // A panic while holding the lock cannot leave an LRU half-updated in a way that
        // matters here (entries are validated before use), so a poisoned lock is reused.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached state of a task, if any.
    pub fn get(&self, id: TaskId) -> Option<CachedTask> {
        self.lock().get(&id).cloned()
    }

    /// The stream sequence of the cached state, if any, without cloning the state: the least
    /// the task's last sequence can be, whoever is asked.
    pub fn sequence(&self, id: TaskId) -> Option<u64> {
        self.lock().peek(&id).map(|entry| entry.sequence)
    }

    /// Stores a state unless a newer one is already cached.
    pub fn put(&self, id: TaskId, entry: CachedTask) {
        let mut entries = self.lock();
        match entries.get(&id) {
            Some(existing) if existing.sequence >= entry.sequence => {}
            _ => {
                entries.put(id, entry);
            }
        }
    }

    /// Forgets a task (after a failed append showed the entry is stale).
    pub fn evict(&self, id: TaskId) {
        self.lock().pop(&id);
    }
}
