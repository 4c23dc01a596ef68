//! Parked messages: what the event log holds at a position that is not a readable event
//! (garbage bytes, an envelope of an unknown schema version). The loop counts and logs
//! each, then parks it in the store in one batch with the position advanced past it
//! ([`crate::Projection::park`]) and goes on: a bad message never stops the projector, and
//! stays for inspection (`GET /usage/v1/parked`, `floodgate ctl usage --parked`) for the
//! projection's life.

use std::fmt::Write as _;

/// Most bytes of a parked message the JSON API shows.
pub const SHOWN_BYTES: usize = 4_096;

/// A parked message as stored.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Parked {
    /// Its position in the event log.
    #[prost(uint64, tag = "1")]
    pub sequence: u64,
    /// When it was parked, Unix µs.
    #[prost(uint64, tag = "2")]
    pub parked_at_us: u64,
    /// Why it is not a readable event.
    #[prost(string, tag = "3")]
    pub reason: String,
    /// Its bytes.
    #[prost(bytes = "vec", tag = "4")]
    pub payload: Vec<u8>,
}

/// A parked message as the JSON API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ParkedView {
    /// Its position in the event log.
    pub sequence: u64,
    /// When it was parked, Unix µs.
    pub parked_at_unix_us: u64,
    /// Why it is not a readable event.
    pub reason: String,
    /// Its length, bytes.
    pub size: usize,
    /// Its first [`SHOWN_BYTES`] bytes, in hex.
    pub payload_hex: String,
}

impl From<&Parked> for ParkedView {
    fn from(parked: &Parked) -> Self {
        let shown = &parked.payload[..parked.payload.len().min(SHOWN_BYTES)];
        let mut payload_hex = String::with_capacity(shown.len() * 2);
        for byte in shown {
            let _ = write!(payload_hex, "{byte:02x}");
        }
        Self {
            sequence: parked.sequence,
            parked_at_unix_us: parked.parked_at_us,
            reason: parked.reason.clone(),
            size: parked.payload.len(),
            payload_hex,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_shows_the_bytes_in_hex_up_to_a_limit() {
        let parked = Parked {
            sequence: 7,
            parked_at_us: 1,
            reason: "unknown event schema version 2".into(),
            payload: vec![0x00, 0xff, 0x10],
        };
        let view = ParkedView::from(&parked);
        assert_eq!((view.sequence, view.size), (7, 3));
        assert_eq!(view.payload_hex, "00ff10");
        let big = Parked {
            payload: vec![0xab; SHOWN_BYTES + 10],
            ..parked
        };
        let view = ParkedView::from(&big);
        assert_eq!(view.size, SHOWN_BYTES + 10);
        assert_eq!(view.payload_hex.len(), SHOWN_BYTES * 2);
    }
}
