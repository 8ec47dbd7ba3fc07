//! Moving events in and out as JSON lines: `taskmaster events export|import|tail`.
//!
//! A line holds one stored message as it is: subject, stream sequence, storage time, every
//! header and the payload (as JSON when it is JSON, else base64), so an export of a stream
//! with undecodable events still round-trips byte for byte. Import keeps task ids, command ids
//! (`Nats-Msg-Id`, so a repeated import inside the duplicate window appends nothing) and
//! headers; subjects are re-rooted under the target prefix.

use std::collections::BTreeMap;

use async_nats::jetstream::message::PublishMessage;
use async_nats::HeaderMap;
use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use domain::UserId;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};

use crate::envelope::headers;
use crate::error::StoreError;
use crate::store::{ordered_messages, EventStore};

/// One exported event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportedEvent {
    /// The subject it was stored under (with the source prefix).
    pub subject: String,
    /// Its stream sequence in the source.
    pub sequence: u64,
    /// When the source stored it.
    pub time: DateTime<Utc>,
    /// Every header (first value of each).
    pub headers: BTreeMap<String, String>,
    /// The payload, when it is JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
    /// The payload, base64, when it is not JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
}

impl ExportedEvent {
    fn payload_bytes(&self) -> Result<Vec<u8>, StoreError> {
        match (&self.payload, &self.payload_base64) {
            (Some(json), _) => {
                serde_json::to_vec(json).map_err(|e| StoreError::Config(e.to_string()))
            }
            (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| {
                    StoreError::Config(format!("sequence {}: payload_base64: {e}", self.sequence))
                }),
            (None, None) => Ok(Vec::new()),
        }
    }
}

fn exported(message: &async_nats::jetstream::Message) -> Option<ExportedEvent> {
    let info = message.info().ok()?;
    let mut headers = BTreeMap::new();
    if let Some(map) = &message.headers {
        for (name, values) in map.iter() {
            if let Some(value) = values.first() {
                headers.insert(name.to_string(), value.as_str().to_owned());
            }
        }
    }
    let (payload, payload_base64) = match serde_json::from_slice(&message.payload) {
        Ok(json) => (Some(json), None),
        Err(_) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(&message.payload)),
        ),
    };
    Some(ExportedEvent {
        subject: message.subject.to_string(),
        sequence: info.stream_sequence,
        time: info.published,
        headers,
        payload,
        payload_base64,
    })
}

impl EventStore {
    /// The stored messages from `from` on (one owner's, or all), following new ones as they
    /// arrive; each comes with how many matching messages were still pending after it. Also
    /// returns how many were pending when reading began.
    pub async fn raw_messages(
        &self,
        owner: Option<&UserId>,
        from: u64,
    ) -> Result<
        (
            u64,
            impl Stream<Item = Result<(ExportedEvent, u64), StoreError>> + use<>,
        ),
        StoreError,
    > {
        let filter = match owner {
            Some(owner) => self.naming().owner_filter(owner),
            None => self.naming().all_events(),
        };
        let (pending, messages) = ordered_messages(self.stream(), filter, from).await?;
        Ok((
            pending,
            messages.filter_map(|message| {
                futures::future::ready(match message {
                    Ok(message) => {
                        let pending = message.info().map(|i| i.pending).unwrap_or(0);
                        exported(&message).map(|e| Ok((e, pending)))
                    }
                    Err(e) => Some(Err(StoreError::unavailable(e))),
                })
            }),
        ))
    }

    /// Every stored message that exists now (one owner's, or all), oldest first, for export.
    /// Returns how many were written.
    pub async fn export(
        &self,
        owner: Option<&UserId>,
        mut write: impl FnMut(&ExportedEvent) -> std::io::Result<()>,
    ) -> Result<u64, StoreError> {
        let (pending, messages) = self.raw_messages(owner, 1).await?;
        if pending == 0 {
            return Ok(0);
        }
        futures::pin_mut!(messages);
        let mut written = 0;
        while let Some(item) = messages.next().await {
            let (event, left) = item?;
            write(&event).map_err(|e| StoreError::Config(format!("writing the export: {e}")))?;
            written += 1;
            if left == 0 {
                break;
            }
        }
        Ok(written)
    }

    /// Appends exported events, in order. Refuses a stream that already holds events unless
    /// `force`. Returns how many were appended (repeats inside the duplicate window are not).
    pub async fn import(
        &self,
        events: impl Iterator<Item = Result<ExportedEvent, StoreError>>,
        force: bool,
    ) -> Result<u64, StoreError> {
        if !force && self.head_position().await? > 0 {
            return Err(StoreError::Config(format!(
                "stream {} already holds events; import into an empty stream, or pass --force",
                self.naming().stream()
            )));
        }
        let mut appended = 0;
        let mut in_flight = std::collections::VecDeque::new();
        for event in events {
            let event = event?;
            let (owner, task) = parse_any_prefix(&event.subject).ok_or_else(|| {
                StoreError::Config(format!(
                    "sequence {}: {:?} is not a task subject",
                    event.sequence, event.subject
                ))
            })?;
            let mut map = HeaderMap::new();
            for (name, value) in &event.headers {
                // Expected-sequence headers refer to the source stream's sequences.
                if name.starts_with("Nats-Expected") {
                    continue;
                }
                map.insert(name.as_str(), value.as_str());
            }
            let mut message = PublishMessage::build()
                .payload(Bytes::from(event.payload_bytes()?))
                .headers(map);
            if let Some(id) = event.headers.get(headers::MSG_ID) {
                message = message.message_id(id);
            }
            let ack = self
                .jetstream()
                .send_publish(self.naming().task_subject(&owner, task), message)
                .await
                .map_err(StoreError::unavailable)?;
            in_flight.push_back(ack);
            // Keep a bounded number of acks outstanding; order is kept by the connection.
            if in_flight.len() >= 256 {
                if let Some(ack) = in_flight.pop_front() {
                    appended += u64::from(!ack.await.map_err(StoreError::unavailable)?.duplicate);
                }
            }
        }
        for ack in in_flight {
            appended += u64::from(!ack.await.map_err(StoreError::unavailable)?.duplicate);
        }
        Ok(appended)
    }
}

/// Finds `<owner>.<task>` at the end of a subject whatever prefix it was exported under.
fn parse_any_prefix(subject: &str) -> Option<(UserId, domain::TaskId)> {
    let mut tokens = subject.rsplit('.');
    let task = domain::TaskId::parse(tokens.next()?).ok()?;
    let owner = UserId::parse(tokens.next()?).ok()?;
    let events = tokens.next()?;
    let tasks = tokens.next()?;
    (events == "events" && tasks == "tasks").then_some((owner, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_recognised_under_any_prefix() {
        let id = "0190f0c2-0000-7000-8000-000000000001";
        for subject in [
            format!("tasks.events.amy.{id}"),
            format!("t1.tasks.events.amy.{id}"),
        ] {
            let (owner, task) = parse_any_prefix(&subject).unwrap();
            assert_eq!((owner.as_str(), task.to_string().as_str()), ("amy", id));
        }
        assert!(parse_any_prefix("orders.events.amy.x").is_none());
    }

    #[test]
    fn a_payload_that_is_not_json_travels_as_base64() {
        let event = ExportedEvent {
            subject: "tasks.events.a.b".into(),
            sequence: 1,
            time: Utc::now(),
            headers: BTreeMap::new(),
            payload: None,
            payload_base64: Some(base64::engine::general_purpose::STANDARD.encode(b"{not json")),
        };
        assert_eq!(event.payload_bytes().unwrap(), b"{not json");
    }
}
