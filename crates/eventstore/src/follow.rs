//! Following the stream live, across the loss of the server that serves the reader.
//!
//! An ordered consumer lives on one server. When that server dies, the client library notices
//! only after two missed idle heartbeats (about a minute), and until then a reader that
//! follows the stream sees nothing, although the surviving servers keep taking events (seen
//! on a 3-node cluster). [`EventStore::follow`] watches for that: when nothing has arrived for
//! a while and the stream holds an event the reader has not had, it opens a new reader at
//! that event. Quiet time with nothing to deliver costs one lookup per period.

use std::pin::Pin;
use std::time::Duration;

use async_nats::jetstream;
use futures::{Stream, StreamExt};

use crate::envelope::RecordedEvent;
use crate::error::StoreError;
use crate::naming::Naming;
use crate::store::{decoded, ordered_messages, EventStore};
use domain::UserId;

/// How long a follower may receive nothing while the stream holds events for it before it
/// reads again from its position.
pub const STALL_CHECK: Duration = Duration::from_secs(2);

type Events = Pin<Box<dyn Stream<Item = Result<RecordedEvent, StoreError>> + Send>>;

struct Follower {
    stream: jetstream::stream::Stream,
    naming: Naming,
    filter: String,
    /// The first stream sequence not delivered yet.
    next: u64,
    stall_check: Duration,
    events: Events,
}

async fn open(
    stream: &jetstream::stream::Stream,
    naming: &Naming,
    filter: &str,
    from: u64,
) -> Result<Events, StoreError> {
    let (_, messages) = ordered_messages(stream, filter.to_owned(), from).await?;
    Ok(Box::pin(decoded(messages, naming.clone())))
}

/// Whether the stream holds an event of `filter` at or after `next`; an error (no leader
/// yet, say) counts as no, and the next check asks again.
async fn holds_from(stream: &jetstream::stream::Stream, filter: &str, next: u64) -> bool {
    stream
        .raw_message_builder()
        .sequence(next)
        .next_by_subject(filter.to_owned())
        .send()
        .await
        .is_ok()
}

impl Follower {
    async fn next_event(mut self) -> Option<(Result<RecordedEvent, StoreError>, Self)> {
        loop {
            tokio::select! {
                item = self.events.next() => {
                    let item = item?;
                    match &item {
                        Ok(event) => self.next = event.position + 1,
                        Err(StoreError::Corrupt { sequence, .. }) => self.next = sequence + 1,
                        Err(_) => {}
                    }
                    return Some((item, self));
                }
                _ = tokio::time::sleep(self.stall_check) => {
                    if !holds_from(&self.stream, &self.filter, self.next).await {
                        continue;
                    }
                    match open(&self.stream, &self.naming, &self.filter, self.next).await {
                        Ok(events) => {
                            tracing::warn!(
                                from = self.next,
                                "the stream holds events this reader has not received; reading again from there"
                            );
                            self.events = events;
                        }
                        Err(error) => {
                            tracing::warn!(%error, from = self.next, "reopening a stalled reader failed; trying again");
                        }
                    }
                }
            }
        }
    }
}

impl EventStore {
    /// Every event of the stream (or of one owner) from `from` on, in order, following new
    /// ones forever, like [`EventStore::read_from`], but read again from the first missing
    /// position when the reader stalls (see the module docs). For live readers: the feed, the
    /// learner. Undecodable events come as `Err(StoreError::Corrupt)` items.
    pub async fn follow(
        &self,
        owner: Option<&UserId>,
        from: u64,
        stall_check: Duration,
    ) -> Result<impl Stream<Item = Result<RecordedEvent, StoreError>> + Send + use<>, StoreError>
    {
        let filter = match owner {
            Some(owner) => self.naming().owner_filter(owner),
            None => self.naming().all_events(),
        };
        let events = open(self.stream(), self.naming(), &filter, from).await?;
        Ok(self.follow_with(filter, from, stall_check, events))
    }

    fn follow_with(
        &self,
        filter: String,
        from: u64,
        stall_check: Duration,
        events: Events,
    ) -> impl Stream<Item = Result<RecordedEvent, StoreError>> + Send + use<> {
        let follower = Follower {
            stream: self.stream().clone(),
            naming: self.naming().clone(),
            filter,
            next: from,
            stall_check,
            events,
        };
        futures::stream::unfold(follower, Follower::next_event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;
    use crate::{apply_stream_definitions, CommandMeta, StreamOptions};
    use domain::*;

    async fn create(store: &EventStore, owner: &UserId) -> u64 {
        let id = TaskId(uuid::Uuid::now_v7());
        let command = TaskCommand::Create(CreateTask {
            task_id: id,
            owner: owner.clone(),
            title: TaskTitle::parse("followed").unwrap(),
            description: None,
            priority: None,
            due_at: None,
            estimate_minutes: None,
            tags: vec![],
            starts_at: None,
            time_zone: TimeZoneName::utc(),
            at: chrono::Utc::now(),
            placement: None,
            recurrence: None,
            series: None,
            reminders: Vec::new(),
        });
        let meta = CommandMeta {
            command_id: uuid::Uuid::new_v4().to_string(),
            correlation_id: uuid::Uuid::new_v4().to_string(),
            traceparent: None,
            client_supplied_id: false,
        };
        store
            .execute(owner, id, &command, None, &meta)
            .await
            .unwrap()
            .position
    }

    /// A store on its own prefix of the shared NATS (the scope removes it when dropped).
    async fn store() -> (testkit::NatsScope, EventStore) {
        let scope = testkit::NatsScope::new();
        let client = scope.client().await;
        let naming = Naming::new(&scope.prefix).unwrap();
        apply_stream_definitions(
            &async_nats::jetstream::new(client.clone()),
            &naming,
            StreamOptions::default(),
        )
        .await
        .unwrap();
        let store = EventStore::open(client, naming, StoreOptions::default())
            .await
            .unwrap();
        (scope, store)
    }

    async fn next(
        events: &mut (impl Stream<Item = Result<RecordedEvent, StoreError>> + Unpin),
    ) -> u64 {
        tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("the stalled reader is replaced")
            .expect("the follower goes on")
            .expect("the event decodes")
            .position
    }

    /// The reader on a dead server, as the client sees it: connected, and nothing ever
    /// arrives (no error, no end). The stream itself is real and holds the events.
    #[tokio::test]
    async fn a_reader_that_delivers_nothing_while_the_stream_holds_events_is_replaced_without_gap_or_duplicate(
    ) {
        let (_scope, store) = store().await;
        let owner = UserId::parse("follower").unwrap();
        let other = UserId::parse("someone-else").unwrap();
        create(&store, &other).await;
        let first = create(&store, &owner).await;
        let second = create(&store, &owner).await;

        let dead: Events = Box::pin(futures::stream::pending());
        let events = store.follow_with(
            store.naming().owner_filter(&owner),
            1,
            Duration::from_millis(100),
            dead,
        );
        futures::pin_mut!(events);
        assert_eq!(next(&mut events).await, first);
        assert_eq!(next(&mut events).await, second);
        // And it keeps following new events from the replacement reader.
        let third = create(&store, &owner).await;
        assert_eq!(next(&mut events).await, third);
    }

    #[tokio::test]
    async fn a_quiet_stream_is_not_read_again() {
        let (_scope, store) = store().await;
        let owner = UserId::parse("quiet").unwrap();
        let dead: Events = Box::pin(futures::stream::pending());
        let events = store.follow_with(
            store.naming().owner_filter(&owner),
            1,
            Duration::from_millis(50),
            dead,
        );
        futures::pin_mut!(events);
        // Nothing to deliver: the follower waits (and only asks the stream each period).
        assert!(
            tokio::time::timeout(Duration::from_millis(400), events.next())
                .await
                .is_err()
        );
    }
}
