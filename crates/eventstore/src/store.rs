//! [`EventStore`]: executes commands against the Task aggregate with optimistic concurrency,
//! loads task states through the validated cache, and reads task histories.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{
    self, consumer,
    context::PublishErrorKind,
    message::PublishMessage,
    stream::{DirectGetErrorKind, LastRawMessageErrorKind},
};
use async_nats::HeaderMap;
use bytes::Bytes;
use domain::{decide, evolve, Task, TaskCommand, TaskEvent, TaskId, UserId};
use futures::StreamExt;
use telemetry::metrics::OutcomeLabels;
use telemetry::Metrics;
use tracing::Instrument;

use crate::cache::{CachedTask, StateCache};
use crate::envelope::{headers, RawEvent, RecordedEvent};
use crate::error::StoreError;
use crate::naming::Naming;

/// Tuning of the store; the defaults suit one API process.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How many task states the cache holds.
    pub cache_capacity: usize,
    /// How often a command is decided again after losing a race (`WrongLastSequence`) before
    /// answering a conflict. Commands with `If-Match` then fail the version check instead.
    pub max_attempts: u32,
    /// How long a task's events are read one direct get at a time before switching to an
    /// ordered consumer, which is cheaper per event but costs more to set up.
    pub direct_read_limit: usize,
    /// Upper bound on any single JetStream request, so a dead server means a prompt 503.
    pub request_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            cache_capacity: 100_000,
            max_attempts: 3,
            direct_read_limit: 32,
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// Who asked for a command and how to recognise it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandMeta {
    /// Unique per command; becomes `Nats-Msg-Id` and `Tm-Command-Id`.
    pub command_id: String,
    /// Correlates everything one client request caused.
    pub correlation_id: String,
    /// The caller's W3C trace context (its `traceparent` header), if any. The event stores
    /// the context of the span that appends it, a child of this one, so whoever handles the
    /// event continues the same trace; without a tracing layer it keeps this trace id.
    pub traceparent: Option<String>,
    /// The id came from the client's `Idempotency-Key`: a repeat must answer exactly like the
    /// first execution, even when the state has moved on since.
    pub client_supplied_id: bool,
}

/// The answer to an executed command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandOutcome {
    /// The task.
    pub task_id: TaskId,
    /// The task's version after the command (its number of events).
    pub version: u64,
    /// The stream sequence of the command's event (or, when nothing changed, of the task's
    /// latest event): wait for this position to read your own write.
    pub position: u64,
    /// Whether this execution appended a new event (false for a no-op or a repeat).
    pub appended: bool,
}

/// A task's state and the stream sequence of its last event (0 when it has none).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoadedTask {
    /// The state, `None` when the task has no events.
    pub task: Option<Task>,
    /// The stream sequence of the last event.
    pub sequence: u64,
}

impl LoadedTask {
    /// The task's version: its number of events.
    pub fn version(&self) -> u64 {
        self.task.as_ref().map(|t| t.version).unwrap_or(0)
    }
}

/// The event store. Cheap to share behind an `Arc`; all methods take `&self`.
#[derive(Debug)]
pub struct EventStore {
    /// The connection, whose state says at once whether a request can be answered.
    client: async_nats::Client,
    jetstream: jetstream::Context,
    stream: jetstream::stream::Stream,
    naming: Naming,
    cache: StateCache,
    options: StoreOptions,
    /// Append latency is recorded here when the process exposes metrics.
    metrics: Option<Arc<Metrics>>,
}

/// Whose answer a lookup of a task's last sequence needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Freshness {
    /// Any replica's (a direct get), confirmed by the leader when it cannot be the latest.
    Replica,
    /// The stream leader's: after a lost race, and where an answer must match the first one.
    Leader,
}

enum AppendError {
    WrongLastSequence,
    Failed(StoreError),
}

impl EventStore {
    /// Opens the store on an existing stream (see [`crate::apply_stream_definitions`]).
    #[tracing::instrument(skip_all, fields(stream = naming.stream()), err)]
    pub async fn open(
        client: async_nats::Client,
        naming: Naming,
        options: StoreOptions,
    ) -> Result<Self, StoreError> {
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(options.request_timeout)
            .ack_timeout(options.request_timeout)
            .build(client.clone());
        let stream = jetstream
            .get_stream(naming.stream())
            .await
            .map_err(|e| StoreError::Unavailable(format!("stream {}: {e}", naming.stream())))?;
        Ok(Self {
            client,
            jetstream,
            stream,
            cache: StateCache::new(options.cache_capacity),
            naming,
            options,
            metrics: None,
        })
    }

    /// Records each append's latency and outcome in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Fails at once while the client has no connection to NATS (the server is down, or the
    /// client is between two servers of a cluster): a request sent now would only wait out
    /// its timeout, and its caller is better served by an immediate 503 it can retry.
    fn ensure_connected(&self) -> Result<(), StoreError> {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            state => Err(StoreError::Unavailable(format!(
                "no connection to NATS ({state})"
            ))),
        }
    }

    /// The names this store uses.
    pub fn naming(&self) -> &Naming {
        &self.naming
    }

    /// The JetStream context, for components that read the stream themselves.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    /// The task stream.
    pub fn stream(&self) -> &jetstream::stream::Stream {
        &self.stream
    }

    /// The stream sequence of the newest event in the whole stream (0 when empty).
    pub async fn head_position(&self) -> Result<u64, StoreError> {
        let info = self
            .stream
            .get_info()
            .await
            .map_err(StoreError::unavailable)?;
        Ok(info.state.last_sequence)
    }

    /// Every event of the stream (or of one owner) from sequence `from` on, in order, through an ordered
    /// consumer; the stream never ends by itself (it follows new events), so callers stop at
    /// the position they want (see [`EventStore::head_position`]). Undecodable events come as
    /// `Err(StoreError::Corrupt)` items, so a reader can report them and go on.
    pub async fn read_from(
        &self,
        owner: Option<&UserId>,
        from: u64,
    ) -> Result<impl futures::Stream<Item = Result<RecordedEvent, StoreError>> + use<>, StoreError>
    {
        let filter = match owner {
            Some(owner) => self.naming.owner_filter(owner),
            None => self.naming.all_events(),
        };
        let (_, messages) = ordered_messages(&self.stream, filter, from).await?;
        Ok(decoded(messages, self.naming.clone()))
    }

    /// Removes every event of one user (`tasks.events.<owner>.>`) from the stream, for
    /// erasure. Sequences of other events do not change. Returns how many were removed and the
    /// stream's last sequence at that moment.
    #[tracing::instrument(skip_all, fields(owner = %owner), err)]
    pub async fn purge_owner(&self, owner: &UserId) -> Result<(u64, u64), StoreError> {
        let response = self
            .stream
            .purge()
            .filter(self.naming.owner_filter(owner))
            .await
            .map_err(StoreError::unavailable)?;
        let head = self.head_position().await?;
        // Cached states of the erased tasks are unreachable now (their subjects are empty) and
        // age out of the LRU.
        Ok((response.purged, head))
    }

    /// Decides `command` against the task's current state and appends the resulting event.
    ///
    /// `expected_version` is the client's `If-Match`. Losing a race to another writer makes the
    /// command be decided again on the new state, up to `max_attempts` times; with
    /// `expected_version` set the version check then refuses it.
    #[tracing::instrument(
        skip_all,
        fields(command = command.name(), task_id = %task_id, command_id = %meta.command_id),
        err(level = tracing::Level::DEBUG)
    )]
    pub async fn execute(
        &self,
        owner: &UserId,
        task_id: TaskId,
        command: &TaskCommand,
        expected_version: Option<u64>,
        meta: &CommandMeta,
    ) -> Result<CommandOutcome, StoreError> {
        self.ensure_connected()?;
        let subject = self.naming.task_subject(owner, task_id);
        let is_create = matches!(command, TaskCommand::Create(_));
        let mut attempt = 0;
        loop {
            attempt += 1;
            // A create addresses a fresh id: skip the lookup, the append expects sequence 0.
            // After a lost race, ask the stream's leader: a replica's answer may be what lost.
            let current = if is_create && attempt == 1 {
                LoadedTask::default()
            } else {
                let freshness = if attempt == 1 {
                    Freshness::Replica
                } else {
                    Freshness::Leader
                };
                self.load_subject(&subject, task_id, freshness).await?
            };
            let decision = match expected_version {
                Some(expected) if expected != current.version() => {
                    Err(StoreError::VersionConflict {
                        expected,
                        actual: current.version(),
                    })
                }
                _ => tracing::info_span!("decide", command = command.name())
                    .in_scope(|| decide(current.task.as_ref(), command))
                    .map_err(StoreError::from),
            };
            let event = match decision {
                Ok(Some(event)) => event,
                Ok(None) | Err(_) if meta.client_supplied_id => {
                    if let Some(original) = self.find_command(&subject, task_id, meta).await? {
                        return Ok(original);
                    }
                    match decision {
                        Ok(_) => return Ok(unchanged(task_id, &current)),
                        Err(error) => return Err(error),
                    }
                }
                Ok(None) => return Ok(unchanged(task_id, &current)),
                Err(error) => return Err(error),
            };
            match self.append(&subject, &event, current.sequence, meta).await {
                Ok(ack) if ack.duplicate => {
                    return self
                        .find_command(&subject, task_id, meta)
                        .await?
                        .ok_or(StoreError::Concurrency);
                }
                Ok(ack) => {
                    let Some(task) = evolve(current.task, &event) else {
                        return Err(StoreError::Concurrency);
                    };
                    let outcome = CommandOutcome {
                        task_id,
                        version: task.version,
                        position: ack.sequence,
                        appended: true,
                    };
                    self.cache.put(
                        task_id,
                        CachedTask {
                            task,
                            sequence: ack.sequence,
                        },
                    );
                    return Ok(outcome);
                }
                Err(AppendError::WrongLastSequence) => {
                    self.cache.evict(task_id);
                    if attempt >= self.options.max_attempts {
                        return Err(StoreError::Concurrency);
                    }
                    tracing::debug!(attempt, "lost a race on the task; deciding again");
                }
                Err(AppendError::Failed(error)) => return Err(error),
            }
        }
    }

    /// Appends one event, expecting the task's last event at `expected_sequence`, in a
    /// producer span whose context the event carries as `traceparent`.
    async fn append(
        &self,
        subject: &str,
        event: &TaskEvent,
        expected_sequence: u64,
        meta: &CommandMeta,
    ) -> Result<jetstream::publish::PublishAck, AppendError> {
        let span = tracing::info_span!(
            "jetstream.publish",
            otel.name = %format!("publish {}", event.event_type()),
            otel.kind = "producer",
            messaging.system = "nats",
            messaging.destination.name = %subject,
            messaging.message.id = %meta.command_id,
            messaging.nats.expected_last_subject_sequence = expected_sequence,
        );
        let started = Instant::now();
        let result = self
            .publish(subject, event, expected_sequence, meta)
            .instrument(span)
            .await;
        if let Some(metrics) = &self.metrics {
            let outcome = match &result {
                Ok(ack) if ack.duplicate => "duplicate",
                Ok(_) => "appended",
                Err(AppendError::WrongLastSequence) => "wrong_last_sequence",
                Err(AppendError::Failed(_)) => "failed",
            };
            metrics
                .append_duration
                .get_or_create(&OutcomeLabels { outcome })
                .observe(started.elapsed().as_secs_f64());
        }
        result
    }

    async fn publish(
        &self,
        subject: &str,
        event: &TaskEvent,
        expected_sequence: u64,
        meta: &CommandMeta,
    ) -> Result<jetstream::publish::PublishAck, AppendError> {
        let mut headers = HeaderMap::new();
        headers.insert(headers::EVENT_TYPE, event.event_type());
        headers.insert(
            headers::EVENT_VERSION,
            event.event_version().to_string().as_str(),
        );
        headers.insert(headers::COMMAND_ID, meta.command_id.as_str());
        headers.insert(headers::CORRELATION_ID, meta.correlation_id.as_str());
        let traceparent =
            telemetry::trace_context::traceparent_for_event(meta.traceparent.as_deref());
        headers.insert(headers::TRACEPARENT, traceparent.as_str());
        let message = PublishMessage::build()
            .payload(Bytes::from(event.encode()))
            .headers(headers)
            .message_id(&meta.command_id)
            .expected_last_subject_sequence(expected_sequence);
        let classify = |kind: PublishErrorKind, error: String| match kind {
            PublishErrorKind::WrongLastSequence => AppendError::WrongLastSequence,
            _ => AppendError::Failed(StoreError::Unavailable(error)),
        };
        let ack = self
            .jetstream
            .send_publish(subject.to_owned(), message)
            .await
            .map_err(|e| classify(e.kind(), e.to_string()))?;
        ack.await.map_err(|e| classify(e.kind(), e.to_string()))
    }

    /// Looks for the event a command produced earlier, by its command id, and answers as the
    /// first execution did. Only runs on the rare paths (a repeated `Idempotency-Key`).
    async fn find_command(
        &self,
        subject: &str,
        task_id: TaskId,
        meta: &CommandMeta,
    ) -> Result<Option<CommandOutcome>, StoreError> {
        let Some(last) = self
            .last_sequence(subject, task_id, Freshness::Leader)
            .await?
        else {
            return Ok(None);
        };
        let events = self.read_subject(subject, 1, last).await?;
        Ok(events
            .iter()
            .position(|e| e.command_id.as_deref() == Some(meta.command_id.as_str()))
            .map(|index| CommandOutcome {
                task_id,
                version: index as u64 + 1,
                position: events[index].position,
                appended: false,
            }))
    }

    /// The current state of a task (absent when it has no events, including when `owner` is
    /// not its owner: the subject names the owner).
    pub async fn load(&self, owner: &UserId, task_id: TaskId) -> Result<LoadedTask, StoreError> {
        self.ensure_connected()?;
        let subject = self.naming.task_subject(owner, task_id);
        self.load_subject(&subject, task_id, Freshness::Replica)
            .await
    }

    async fn load_subject(
        &self,
        subject: &str,
        task_id: TaskId,
        freshness: Freshness,
    ) -> Result<LoadedTask, StoreError> {
        let Some(last) = self.last_sequence(subject, task_id, freshness).await? else {
            return Ok(LoadedTask::default());
        };
        let (mut task, from) = match self.cache.get(task_id) {
            Some(cached) if cached.sequence == last => {
                return Ok(LoadedTask {
                    task: Some(cached.task),
                    sequence: last,
                })
            }
            Some(cached) if cached.sequence < last => (Some(cached.task), cached.sequence + 1),
            _ => (None, 1),
        };
        for recorded in self.read_subject(subject, from, last).await? {
            task = evolve(task, &recorded.event);
        }
        if let Some(task) = &task {
            self.cache.put(
                task_id,
                CachedTask {
                    task: task.clone(),
                    sequence: last,
                },
            );
        }
        Ok(LoadedTask {
            task,
            sequence: last,
        })
    }

    /// Every event of a task, oldest first; empty when the task does not exist for `owner`.
    #[tracing::instrument(skip_all, fields(task_id = %task_id), err)]
    pub async fn history(
        &self,
        owner: &UserId,
        task_id: TaskId,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.ensure_connected()?;
        let subject = self.naming.task_subject(owner, task_id);
        match self
            .last_sequence(&subject, task_id, Freshness::Replica)
            .await?
        {
            Some(last) => self.read_subject(&subject, 1, last).await,
            None => Ok(Vec::new()),
        }
    }

    /// The stream sequence of the subject's last message.
    ///
    /// Usually one direct get, which any replica of the stream may answer. A follower can be a
    /// few events behind the leader (seen under load on a 3-node cluster: "no such task" for a
    /// task whose create had been acknowledged milliseconds earlier), so an answer that cannot
    /// be the latest is confirmed by the leader: "not found", or a sequence older than the
    /// state this process already holds for the task. Any other answer is current enough: if
    /// another process appended since, the append's expected sequence refuses the command and
    /// the retry asks the leader ([`Freshness::Leader`]).
    async fn last_sequence(
        &self,
        subject: &str,
        task_id: TaskId,
        freshness: Freshness,
    ) -> Result<Option<u64>, StoreError> {
        if freshness == Freshness::Replica {
            let known = self.cache.sequence(task_id);
            match self.stream.direct_get_last_for_subject(subject).await {
                Ok(message) if known.is_none_or(|known| message.sequence >= known) => {
                    return Ok(Some(message.sequence))
                }
                Ok(_) => {}
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::unavailable(e)),
            }
        }
        match self.stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) => Ok(Some(message.sequence)),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(StoreError::unavailable(e)),
        }
    }

    /// Reads a subject's events with sequences in `from..=until`: one direct get per event for
    /// the first `direct_read_limit` events, then an ordered consumer for the rest.
    async fn read_subject(
        &self,
        subject: &str,
        mut from: u64,
        until: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let wanted = from <= until;
        let mut events = Vec::new();
        while from <= until {
            if events.len() >= self.options.direct_read_limit {
                events.extend(self.read_with_consumer(subject, from, until).await?);
                break;
            }
            let message = match self
                .stream
                .direct_get_next_for_subject(subject, Some(from))
                .await
            {
                Ok(message) => message,
                // The replica that answered has not stored `until` yet (see
                // `last_sequence`): an ordered consumer waits for the rest instead.
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => {
                    events.extend(self.read_with_consumer(subject, from, until).await?);
                    break;
                }
                Err(e) => return Err(StoreError::unavailable(e)),
            };
            if message.sequence > until {
                break;
            }
            from = message.sequence + 1;
            events.push(RawEvent::from(&message).decode(&self.naming)?);
        }
        // A state folded from fewer events than `until` would be taken for the current one
        // (and its append would pass the expected-sequence check), so never return one.
        match events.last() {
            Some(last) if last.position != until => Err(StoreError::Unavailable(format!(
                "read the task's events up to {} of {until}",
                last.position
            ))),
            None if wanted => Err(StoreError::Unavailable(format!(
                "the task's events up to {until} could not be read"
            ))),
            _ => Ok(events),
        }
    }

    async fn read_with_consumer(
        &self,
        subject: &str,
        from: u64,
        until: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let (_, mut messages) = ordered_messages(&self.stream, subject.to_owned(), from).await?;
        let mut events = Vec::new();
        loop {
            let next = tokio::time::timeout(self.options.request_timeout, messages.next())
                .await
                .map_err(|_| StoreError::Unavailable("reading a task's events timed out".into()))?;
            let Some(message) = next else { break };
            let message = message.map_err(StoreError::unavailable)?;
            let Some(raw) = RawEvent::from_consumer(&message) else {
                continue;
            };
            let sequence = raw.sequence;
            if sequence > until {
                break;
            }
            events.push(raw.decode(&self.naming)?);
            if sequence == until {
                break;
            }
        }
        Ok(events)
    }
}

/// Opens an ordered consumer over `filter`, starting at stream sequence `from` (0 or 1 mean the
/// beginning). Returns how many matching messages were pending when it was created, and the
/// message stream, which follows new messages as they arrive. Every reader of the stream (state
/// loading, history, the projector, verify, export, the live feed) starts here.
pub async fn ordered_messages(
    stream: &jetstream::stream::Stream,
    filter: String,
    from: u64,
) -> Result<(u64, consumer::pull::Ordered), StoreError> {
    let deliver_policy = if from <= 1 {
        consumer::DeliverPolicy::All
    } else {
        consumer::DeliverPolicy::ByStartSequence {
            start_sequence: from,
        }
    };
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: filter,
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(StoreError::unavailable)?;
    let pending = consumer.cached_info().num_pending;
    let messages = consumer.messages().await.map_err(StoreError::unavailable)?;
    Ok((pending, messages))
}

/// The events of an ordered consumer's messages, decoded (undecodable ones as
/// `Err(StoreError::Corrupt)`, consumer failures as `Err(StoreError::Unavailable)`).
pub(crate) fn decoded(
    messages: consumer::pull::Ordered,
    naming: Naming,
) -> impl futures::Stream<Item = Result<RecordedEvent, StoreError>> + Send + use<> {
    messages.filter_map(move |message| {
        let item = match message {
            Err(e) => Some(Err(StoreError::unavailable(e))),
            Ok(message) => RawEvent::from_consumer(&message).map(|raw| raw.decode(&naming)),
        };
        futures::future::ready(item)
    })
}

fn unchanged(task_id: TaskId, current: &LoadedTask) -> CommandOutcome {
    CommandOutcome {
        task_id,
        version: current.version(),
        position: current.sequence,
        appended: false,
    }
}
