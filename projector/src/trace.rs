//! Trace records: one per request (its whole [`UsageEvent`]: attempts, timings, payloads
//! when the edge captured them), findable by event id or request id, and indexed by time,
//! endpoint, key and status class ([`crate::keys`]). This module writes and removes a
//! trace with its index entries inside a fold's or a prune's sled batch.

use floodgate_proto::v1::UsageEvent;
use prost::Message;

use crate::dims::status_class;
use crate::keys::{self, TraceIndex};
use crate::store::StoreError;

/// A stored trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// Its position in the event log.
    pub sequence: u64,
    /// The event.
    pub event: UsageEvent,
}

/// The event's time in Unix microseconds (0 before 1970).
pub fn time_us(event: &UsageEvent) -> u64 {
    u64::try_from(event.time_unix_us).unwrap_or(0)
}

fn indexes(event: &UsageEvent, status: &str) -> [Vec<u8>; 4] {
    let time = time_us(event);
    let id = &event.event_id;
    [
        TraceIndex::Time.key(time, id),
        TraceIndex::Endpoint(&event.endpoint).key(time, id),
        TraceIndex::Key(&event.key_id).key(time, id),
        TraceIndex::Status(status).key(time, id),
    ]
}

impl Trace {
    /// Adds the trace and its index entries to `batch`.
    pub fn write(&self, batch: &mut sled::Batch) {
        let mut value = self.sequence.to_be_bytes().to_vec();
        value.extend(self.event.encode_to_vec());
        batch.insert(keys::trace(&self.event.event_id), value);
        if !self.event.request_id.is_empty() {
            batch.insert(
                keys::request(&self.event.request_id),
                self.event.event_id.as_bytes(),
            );
        }
        for key in indexes(&self.event, &status_class(self.event.status)) {
            batch.insert(key, &[][..]);
        }
    }

    /// Adds the removal of the trace and its index entries to `batch`.
    pub fn remove(&self, batch: &mut sled::Batch) {
        batch.remove(keys::trace(&self.event.event_id));
        if !self.event.request_id.is_empty() {
            batch.remove(keys::request(&self.event.request_id));
        }
        for key in indexes(&self.event, &status_class(self.event.status)) {
            batch.remove(key);
        }
    }

    /// Reads a stored trace.
    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let Some((sequence, event)) = bytes.split_first_chunk::<8>() else {
            return Err(StoreError::Corrupt("trace"));
        };
        Ok(Self {
            sequence: u64::from_be_bytes(*sequence),
            event: UsageEvent::decode(event)?,
        })
    }
}

/// The event without its captured payloads (for lists and live feeds).
pub fn without_payloads(event: &UsageEvent) -> UsageEvent {
    UsageEvent {
        request_payload: None,
        response_payload: None,
        ..event.clone()
    }
}
