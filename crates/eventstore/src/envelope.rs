//! The envelope of a stored event: NATS headers around a JSON payload, and the decoding of
//! stored messages (from direct gets or consumers) into [`RecordedEvent`]s.

use async_nats::HeaderMap;
use chrono::{DateTime, Utc};
use domain::{TaskEvent, TaskId, UserId};

use crate::error::StoreError;
use crate::naming::Naming;

/// Header names of the event contract (see `events/README.md`).
pub mod headers {
    /// The stable event type, e.g. `TaskCreated`.
    pub const EVENT_TYPE: &str = "Tm-Event-Type";
    /// The payload version of that type, e.g. `1`.
    pub const EVENT_VERSION: &str = "Tm-Event-Version";
    /// The command that produced the event (also its `Nats-Msg-Id`).
    pub const COMMAND_ID: &str = "Tm-Command-Id";
    /// Ties together everything one client request caused.
    pub const CORRELATION_ID: &str = "Tm-Correlation-Id";
    /// W3C trace context of the request that appended the event.
    pub const TRACEPARENT: &str = "traceparent";
    /// JetStream's idempotency header.
    pub const MSG_ID: &str = "Nats-Msg-Id";
}

/// One event as stored: where it is, what produced it, and the decoded (upcast) event.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// Its stream sequence: the `position` of the API.
    pub position: u64,
    /// The owner, from the subject.
    pub owner: UserId,
    /// The task, from the subject.
    pub task_id: TaskId,
    /// The type as stored.
    pub event_type: String,
    /// The version as stored (the event itself is already upcast to the current version).
    pub event_version: u32,
    /// The producing command.
    pub command_id: Option<String>,
    /// The correlation id of the request.
    pub correlation_id: Option<String>,
    /// The W3C trace context of the request.
    pub traceparent: Option<String>,
    /// When JetStream stored it.
    pub recorded_at: DateTime<Utc>,
    /// The event, upcast to the current version.
    pub event: TaskEvent,
}

/// A stored message before decoding, whichever API it came from.
#[derive(Debug)]
pub struct RawEvent<'a> {
    /// Subject.
    pub subject: &'a str,
    /// Stream sequence.
    pub sequence: u64,
    /// Headers, if any.
    pub headers: Option<&'a HeaderMap>,
    /// JSON payload.
    pub payload: &'a [u8],
    /// Storage time.
    pub time: DateTime<Utc>,
}

fn header<'h>(headers: Option<&'h HeaderMap>, name: &str) -> Option<&'h str> {
    headers.and_then(|h| h.get(name)).map(|v| v.as_str())
}

impl RawEvent<'_> {
    /// A header's value, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(self.headers, name)
    }

    /// Decodes the message, upcasting old payload versions.
    pub fn decode(&self, naming: &Naming) -> Result<RecordedEvent, StoreError> {
        let corrupt = |source| StoreError::Corrupt {
            sequence: self.sequence,
            source,
        };
        let (owner, task_id) = naming.parse_subject(self.subject).ok_or_else(|| {
            corrupt(domain::DecodeError::UnknownType(format!(
                "subject {:?} is not a task subject",
                self.subject
            )))
        })?;
        let event_type = header(self.headers, headers::EVENT_TYPE).unwrap_or_default();
        let event_version = header(self.headers, headers::EVENT_VERSION)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let event = TaskEvent::decode(event_type, event_version, self.payload).map_err(corrupt)?;
        Ok(RecordedEvent {
            position: self.sequence,
            owner,
            task_id,
            event_type: event_type.to_owned(),
            event_version,
            command_id: header(self.headers, headers::COMMAND_ID).map(str::to_owned),
            correlation_id: header(self.headers, headers::CORRELATION_ID).map(str::to_owned),
            traceparent: header(self.headers, headers::TRACEPARENT).map(str::to_owned),
            recorded_at: self.time,
            event,
        })
    }
}

impl<'a> From<&'a async_nats::jetstream::message::StreamMessage> for RawEvent<'a> {
    fn from(message: &'a async_nats::jetstream::message::StreamMessage) -> Self {
        RawEvent {
            subject: message.subject.as_str(),
            sequence: message.sequence,
            headers: Some(&message.headers),
            payload: &message.payload,
            time: message.time,
        }
    }
}

impl<'a> RawEvent<'a> {
    /// Views a message delivered by a consumer; `None` when it carries no JetStream metadata.
    pub fn from_consumer(message: &'a async_nats::jetstream::Message) -> Option<Self> {
        let info = message.info().ok()?;
        Some(RawEvent {
            subject: message.subject.as_str(),
            sequence: info.stream_sequence,
            headers: message.headers.as_ref(),
            payload: &message.payload,
            time: info.published,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header_value() -> impl Strategy<Value = Option<String>> {
        proptest::option::of(prop_oneof![
            Just("TaskCreated".to_owned()),
            Just("1".to_owned()),
            Just("2".to_owned()),
            Just("99999999999999999999".to_owned()),
            "[ -~]{0,40}",
        ])
    }

    proptest! {
        /// Whatever subject, headers and payload a message has, decoding answers `Ok` or
        /// `Corrupt` (which the projector dead-letters) and never panics.
        #[test]
        fn decoding_any_message_never_panics(
            prefix in "[a-z0-9_]{0,8}",
            subject in prop_oneof![
                "[ -~]{0,80}",
                "tasks\\.events\\.[a-zA-Z0-9_-]{0,70}\\.[ -~]{0,40}",
            ],
            event_type in header_value(),
            event_version in header_value(),
            traceparent in header_value(),
            payload in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let Ok(naming) = Naming::new(&prefix) else { return Ok(()) };
            let mut headers = HeaderMap::new();
            for (name, value) in [
                (headers::EVENT_TYPE, &event_type),
                (headers::EVENT_VERSION, &event_version),
                (headers::TRACEPARENT, &traceparent),
            ] {
                if let Some(value) = value {
                    headers.insert(name, value.as_str());
                }
            }
            let raw = RawEvent {
                subject: &subject,
                sequence: 1,
                headers: Some(&headers),
                payload: &payload,
                time: DateTime::<Utc>::UNIX_EPOCH,
            };
            match raw.decode(&naming) {
                Ok(event) => prop_assert_eq!(event.position, 1),
                Err(error) => prop_assert!(matches!(error, StoreError::Corrupt { .. }), "{error}"),
            }
        }
    }
}
