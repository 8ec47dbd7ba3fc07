//! [`CommandPath`]: gather facts, execute, count.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::{
    CompleteTask, EffortMinutes, MoveTask, Placement, TaskCommand, TaskId, UserId, MAX_DEPTH,
};
use eventstore::{CommandMeta, CommandOutcome, EventStore, StoreError};
use projections::{queries, ReadSource};
use telemetry::metrics::CommandLabels;
use telemetry::Metrics;
use uuid::Uuid;

use crate::error::CommandError;

/// The instant a command is issued, to the microsecond: the precision Postgres keeps, so the
/// read model holds exactly the instants of the events.
pub fn now() -> DateTime<Utc> {
    chrono::SubsecRound::trunc_subsecs(Utc::now(), 6)
}

/// How long a completion waits for the primary read model to catch up before it is decided
/// without the subtask check: short, because a person is waiting on the answer.
pub const COMPLETE_READ_WAIT: Duration = Duration::from_secs(1);

/// Namespace of the ids of compensating commands, fixed forever.
const UNDO_NAMESPACE: Uuid = Uuid::from_u128(0x3c1e_8a52_90d4_4f6b_b1a7_52e0_c4d9_7e21);

/// The shared way into the event store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CommandPath {
    store: Arc<EventStore>,
    reads: ReadSource,
    metrics: Arc<Metrics>,
    read_wait: Duration,
}

impl CommandPath {
    /// A command path over `store`, reading subtasks from the primary of `reads` and waiting
    /// at most `read_wait` for it to catch up with the log.
    pub fn new(
        store: Arc<EventStore>,
        reads: ReadSource,
        metrics: Arc<Metrics>,
        read_wait: Duration,
    ) -> Self {
        Self {
            store,
            reads,
            metrics,
            read_wait,
        }
    }

    /// The event store behind the path.
    pub fn store(&self) -> &Arc<EventStore> {
        &self.store
    }

    /// Executes one command as it is, counting it by name and outcome.
    pub async fn execute(
        &self,
        owner: &UserId,
        task_id: TaskId,
        command: &TaskCommand,
        expected_version: Option<u64>,
        meta: &CommandMeta,
    ) -> Result<CommandOutcome, CommandError> {
        let result = self
            .store
            .execute(owner, task_id, command, expected_version, meta)
            .await;
        let outcome = match &result {
            Ok(o) if o.appended => "appended",
            Ok(_) => "unchanged",
            Err(StoreError::Rejected(_)) => "rejected",
            Err(StoreError::VersionConflict { .. } | StoreError::Concurrency) => "conflict",
            Err(StoreError::Unavailable(_)) => "unavailable",
            Err(_) => "error",
        };
        self.metrics
            .commands
            .get_or_create(&CommandLabels {
                command: command.name(),
                outcome,
            })
            .inc();
        Ok(result?)
    }

    /// Where a task goes when placed under `parent`: the parent's ancestors, read from the
    /// log, and (when an existing task `moving` is placed) the height of its subtree, read
    /// from the caught-up primary. A parent the owner does not have is
    /// [`CommandError::ParentNotFound`].
    pub async fn placement(
        &self,
        owner: &UserId,
        parent: TaskId,
        moving: Option<TaskId>,
    ) -> Result<Placement, CommandError> {
        let loaded = self.store.load(owner, parent).await?;
        let parent_task = loaded.task.ok_or(CommandError::ParentNotFound)?;
        let parent_ancestors = self.ancestors(owner, parent_task.parent_id).await?;
        let subtree_height = match moving {
            Some(task) => {
                self.catch_up(self.read_wait).await?;
                queries::subtree_height(self.reads.primary(), owner, task).await?
            }
            None => 1,
        };
        Ok(Placement {
            parent_id: parent,
            parent_ancestors,
            parent_archived: parent_task.status == domain::TaskStatus::Archived,
            subtree_height,
        })
    }

    /// The chain of ancestors starting at `first`, nearest first, read from the log. The
    /// walk stops one step past the depth limit (enough for the aggregate to refuse), at a
    /// task that no longer exists (erased), and at a repeat (a cycle a race let through).
    async fn ancestors(
        &self,
        owner: &UserId,
        first: Option<TaskId>,
    ) -> Result<Vec<TaskId>, CommandError> {
        let mut chain = Vec::new();
        let mut next = first;
        while let Some(id) = next {
            if chain.contains(&id) || chain.len() > MAX_DEPTH {
                break;
            }
            chain.push(id);
            next = self
                .store
                .load(owner, id)
                .await?
                .task
                .and_then(|t| t.parent_id);
        }
        Ok(chain)
    }

    /// Waits until the primary read model has applied everything the log held when this was
    /// called, so what it says about subtasks includes every append acknowledged before.
    async fn catch_up(&self, wait: Duration) -> Result<(), CommandError> {
        let head = self.store.head_position().await?;
        self.reads
            .wait_for_primary(head, wait)
            .await
            .map_err(|behind| CommandError::ReadModelBehind {
                requested: head,
                current: behind.current,
            })?;
        Ok(())
    }

    /// The subtasks of `task` still to be done, from the caught-up primary.
    pub async fn open_children(
        &self,
        owner: &UserId,
        task: TaskId,
    ) -> Result<Vec<TaskId>, CommandError> {
        self.open_children_within(owner, task, self.read_wait).await
    }

    async fn open_children_within(
        &self,
        owner: &UserId,
        task: TaskId,
        wait: Duration,
    ) -> Result<Vec<TaskId>, CommandError> {
        self.catch_up(wait).await?;
        Ok(queries::open_children(self.reads.primary(), owner, task).await?)
    }

    /// Completes a task. Its open subtasks refuse the completion (naming them) unless
    /// `cascade` asks for them to be completed too, which the automation runtime then does.
    ///
    /// The write side never waits on the read side being up: while the primary read model is
    /// unreachable, or more than [`COMPLETE_READ_WAIT`] behind, the completion is decided
    /// without the subtask check (and says so in the log), as every other command is decided
    /// from the log alone. Commands keep their availability through a database outage; the
    /// price is that a parent can be completed over open subtasks during one.
    pub async fn complete(
        &self,
        owner: &UserId,
        task_id: TaskId,
        actual_minutes: Option<EffortMinutes>,
        cascade: bool,
        expected_version: Option<u64>,
        meta: &CommandMeta,
    ) -> Result<CommandOutcome, CommandError> {
        let open_children = if self.reads.primary_reachable() {
            match self
                .open_children_within(owner, task_id, COMPLETE_READ_WAIT)
                .await
            {
                Ok(open) => open,
                Err(CommandError::ReadModelBehind { requested, current }) => {
                    tracing::warn!(task_id = %task_id, requested, current, "the read model is behind; completing without the subtask check");
                    Vec::new()
                }
                Err(CommandError::Read(projections::ProjectionError::Database(error)))
                    if projections::error::is_outage(&error) =>
                {
                    tracing::warn!(task_id = %task_id, %error, "the read model is down; completing without the subtask check");
                    Vec::new()
                }
                Err(error) => return Err(error),
            }
        } else {
            tracing::warn!(task_id = %task_id, "the read model is unreachable; completing without the subtask check");
            Vec::new()
        };
        let command = TaskCommand::Complete(CompleteTask {
            actual_minutes,
            open_children,
            cascade,
            at: now(),
        });
        self.execute(owner, task_id, &command, expected_version, meta)
            .await
    }

    /// Moves a task under `parent` (or to the top level).
    ///
    /// The parent's ancestors are read from the log, so a move can only close a cycle with
    /// another move decided at the same moment. After appending, the path walks up from the
    /// new parent once more: if the task is among its ancestors now, a concurrent move and
    /// this one together made a cycle, and this move is undone (the task goes back where it
    /// was, with a command id derived from this one, so a retry undoes at most once) and
    /// answered as [`CommandError::MoveRaced`]. When both racers see the cycle, both undo, and
    /// the tree is as before either.
    pub async fn move_task(
        &self,
        owner: &UserId,
        task_id: TaskId,
        parent: Option<TaskId>,
        expected_version: Option<u64>,
        meta: &CommandMeta,
    ) -> Result<CommandOutcome, CommandError> {
        let before = self
            .store
            .load(owner, task_id)
            .await?
            .task
            .ok_or(StoreError::Rejected(domain::TaskError::NotFound))?;
        let placement = match parent {
            Some(parent) => Some(self.placement(owner, parent, Some(task_id)).await?),
            None => None,
        };
        let command = TaskCommand::Move(MoveTask {
            placement,
            at: now(),
        });
        let outcome = self
            .execute(owner, task_id, &command, expected_version, meta)
            .await?;
        let Some(parent) = parent.filter(|_| outcome.appended) else {
            return Ok(outcome);
        };
        if !self
            .ancestors(owner, Some(parent))
            .await?
            .contains(&task_id)
        {
            return Ok(outcome);
        }
        tracing::warn!(task_id = %task_id, parent = %parent, "a concurrent move closed a cycle; undoing this one");
        let back = match before.parent_id {
            Some(previous) => self.placement(owner, previous, Some(task_id)).await.ok(),
            None => None,
        };
        let undo = TaskCommand::Move(MoveTask {
            placement: back,
            at: now(),
        });
        let undo_meta = CommandMeta {
            command_id: Uuid::new_v5(&UNDO_NAMESPACE, meta.command_id.as_bytes()).to_string(),
            client_supplied_id: true,
            ..meta.clone()
        };
        self.execute(owner, task_id, &undo, Some(outcome.version), &undo_meta)
            .await?;
        Err(CommandError::MoveRaced)
    }
}
