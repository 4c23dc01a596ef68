//! What the projector reads: an ordered, at-least-once stream of events with positions.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;

use floodgate_proto::v1::UsageEvent;

/// One event as the log delivered it.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    /// The event's position in the log (JetStream's stream sequence, or the local log's
    /// index): strictly increasing, never reused.
    pub sequence: u64,
    /// The event.
    pub event: UsageEvent,
}

/// Why a source could not deliver or acknowledge.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The log cannot be reached now; the caller retries.
    #[error("event log unavailable: {0}")]
    Unavailable(String),
    /// A stored message is not a readable event (reported with its position and bytes,
    /// then skipped).
    #[error("undecodable event at sequence {sequence}: {reason}")]
    Undecodable {
        /// Position of the bad message.
        sequence: u64,
        /// What was wrong with it.
        reason: String,
        /// The message's bytes as stored, for the reader to park.
        payload: Bytes,
    },
}

/// An at-least-once reader over the event log. Events come in sequence order; after a
/// restart, everything after the last [`EventSource::ack`] is delivered again, so the
/// reader's owner stores its own position with what it derived from the events.
pub trait EventSource: Send {
    /// Up to `max` events after the last one fetched, waiting at most `wait` for the first;
    /// empty when none arrived in time.
    fn fetch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<Delivered>, SourceError>> + Send;

    /// Acknowledges every event up to and including `sequence`: the log may forget them for
    /// this reader and will not deliver them again (after a crash it may, as with any lost
    /// ack: readers skip what they already folded).
    fn ack(&mut self, sequence: u64) -> impl Future<Output = Result<(), SourceError>> + Send;
}
