//! The wire form of an event: `EventEnvelope { version: 1, event: <prost UsageEvent> }`,
//! the bytes stored in the spool, published to JetStream and appended to the local log.

use bytes::Bytes;
use floodgate_proto::v1::{EventEnvelope, UsageEvent};
use prost::Message;

/// The schema version this crate writes and reads.
pub const VERSION: u32 = 1;

/// Why bytes are not a readable event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not a protobuf `EventEnvelope`, or its `event` is not a `UsageEvent`.
    #[error("not an event envelope: {0}")]
    Malformed(#[from] prost::DecodeError),
    /// An envelope of a schema version this reader does not know.
    #[error("unknown event schema version {0}")]
    UnknownVersion(u32),
}

/// Encodes `event` in a version-1 envelope.
pub fn encode(event: &UsageEvent) -> Bytes {
    let mut out = Vec::new();
    encode_to(event, &mut out);
    Bytes::from(out)
}

/// Appends the version-1 envelope of `event` to `out`.
pub fn encode_to(event: &UsageEvent, out: &mut Vec<u8>) {
    let envelope = EventEnvelope {
        version: VERSION,
        event: event.encode_to_vec(),
    };
    out.reserve(envelope.encoded_len());
    // Cannot fail: the buffer was just given the room.
    let _ = envelope.encode(out);
}

/// Decodes an envelope written by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<UsageEvent, DecodeError> {
    let envelope = EventEnvelope::decode(bytes)?;
    if envelope.version != VERSION {
        return Err(DecodeError::UnknownVersion(envelope.version));
    }
    Ok(UsageEvent::decode(envelope.event.as_slice())?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trips_and_rejects_other_versions_and_garbage() {
        let event = UsageEvent {
            event_id: "id-1".to_owned(),
            status: 200,
            cost_micros: Some(7),
            ..UsageEvent::default()
        };
        assert_eq!(decode(&encode(&event)).unwrap(), event);
        let future = EventEnvelope {
            version: 2,
            event: Vec::new(),
        }
        .encode_to_vec();
        assert!(matches!(
            decode(&future),
            Err(DecodeError::UnknownVersion(2))
        ));
        assert!(matches!(
            decode(b"\xff\xff\xff garbage"),
            Err(DecodeError::Malformed(_))
        ));
    }
}
