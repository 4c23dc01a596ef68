//! What both sources share: decoding a stored message into a [`Delivered`] (or the
//! [`SourceError::Undecodable`] that reports it), and handing deliveries out so that a bad
//! message is reported on its own, after the good ones before it.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::envelope;
use crate::source::{Delivered, SourceError};

/// Decodes the message at `sequence`.
pub(crate) fn decoded(sequence: u64, bytes: &[u8]) -> Result<Delivered, SourceError> {
    envelope::decode(bytes)
        .map(|event| Delivered { sequence, event })
        .map_err(|e| SourceError::Undecodable {
            sequence,
            reason: e.to_string(),
            payload: Bytes::copy_from_slice(bytes),
        })
}

/// Deliveries read but not yet handed out.
#[derive(Debug, Default)]
pub(crate) struct Pending(VecDeque<Result<Delivered, SourceError>>);

impl Pending {
    /// Queues one delivery.
    pub(crate) fn push(&mut self, item: Result<Delivered, SourceError>) {
        self.0.push_back(item);
    }

    /// Up to `max` good deliveries from the front, stopping before a bad one; or the bad
    /// one alone when it is first. `None` when nothing is pending.
    pub(crate) fn take(&mut self, max: usize) -> Option<Result<Vec<Delivered>, SourceError>> {
        match self.0.front()? {
            Err(_) => self.0.pop_front().map(|bad| bad.map(|one| vec![one])),
            Ok(_) => {
                let mut out = Vec::new();
                while out.len() < max.max(1) && matches!(self.0.front(), Some(Ok(_))) {
                    if let Some(Ok(delivered)) = self.0.pop_front() {
                        out.push(delivered);
                    }
                }
                Some(Ok(out))
            }
        }
    }
}
