//! [`CascadeCompletion`]: a parent completed with `cascade` completes its open subtasks, each
//! with `cascade` too, so the whole subtree follows level by level.
//!
//! Each child's completion is a command whose id derives from the parent's completion event
//! and the child: a redelivery repeats it inside JetStream's duplicate window (dropped), and
//! after it the child is already completed (refused, counted as done). A child someone else
//! completed or cancelled meanwhile is left as it is.

use domain::{TaskError, TaskEvent};
use eventstore::RecordedEvent;
use futures::future::BoxFuture;
use projections::queries;

use crate::context::Context;
use crate::error::{already_settled, AutomationError};
use crate::Automation;

/// Completes the open subtasks of a parent completed with `cascade`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CascadeCompletion;

/// This automation's name.
pub const NAME: &str = "cascade";

impl CascadeCompletion {
    async fn react(&self, context: &Context, event: &RecordedEvent) -> Result<(), AutomationError> {
        context.caught_up(event).await?;
        let owner = &event.owner;
        let open = queries::open_children(context.reads.primary(), owner, event.task_id).await?;
        for child in open {
            let meta = context.meta(NAME, event, &child.to_string());
            match context
                .commands
                .complete(owner, child, None, true, None, &meta)
                .await
            {
                Ok(_) => {}
                Err(error)
                    if already_settled(
                        &error,
                        &[
                            |e| *e == TaskError::AlreadyCompleted,
                            |e| *e == TaskError::Cancelled,
                            |e| *e == TaskError::Archived,
                            |e| *e == TaskError::NotFound,
                        ],
                    ) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }
}

impl Automation for CascadeCompletion {
    fn name(&self) -> &'static str {
        NAME
    }

    fn wants(&self, event: &RecordedEvent) -> bool {
        matches!(&event.event, TaskEvent::Completed(c) if c.cascade)
    }

    fn handle<'a>(
        &'a self,
        context: &'a Context,
        event: &'a RecordedEvent,
    ) -> BoxFuture<'a, Result<(), AutomationError>> {
        Box::pin(self.react(context, event))
    }
}
