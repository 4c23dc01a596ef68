//! The store's error type: one `thiserror` enum for everything that can go wrong between
//! Floodgate and its files.
//!
//! openraft's storage traits must return [`openraft::StorageError`]; the `raft` module maps a
//! [`StoreError`] into one at that boundary (with the subject, e.g. "the vote", and the verb),
//! keeping this error as the source so the cause chain survives.

use std::path::PathBuf;

/// What went wrong while reading or writing the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The sled database at `path` could not be opened (missing permissions, a lock held by
    /// another process, or files sled cannot recover).
    #[error("cannot open the store at {path}")]
    Open {
        /// The data directory that was asked for.
        path: PathBuf,
        /// sled's reason.
        source: sled::Error,
    },
    /// sled failed an operation on an open database.
    #[error("sled failed to {op}")]
    Sled {
        /// What the store was doing, e.g. "flush appended log entries".
        op: &'static str,
        /// sled's reason.
        source: sled::Error,
    },
    /// A value could not be serialized before it was written.
    #[error("cannot encode {what}")]
    Encode {
        /// What was being written, e.g. "log entry 42".
        what: String,
        /// serde_json's reason.
        source: serde_json::Error,
    },
    /// Bytes read back from disk did not decode into the expected type.
    #[error("cannot decode {what}")]
    Decode {
        /// What was being read, e.g. "log entry 42".
        what: String,
        /// serde_json's reason.
        source: serde_json::Error,
    },
    /// The files are readable but violate one of the store's own invariants.
    #[error("corrupt {what}: {detail}")]
    Corrupt {
        /// The record that is wrong, e.g. "log key".
        what: &'static str,
        /// How it is wrong.
        detail: String,
    },
    /// The in-memory state machine is unusable because an `Application::apply` panicked while
    /// it held the write lock; the state may be half-applied, so nothing reads it again.
    #[error("the state machine is poisoned: an application apply panicked")]
    Poisoned,
}

impl StoreError {
    /// Wraps a sled error with what the store was doing.
    pub(crate) fn sled(op: &'static str) -> impl FnOnce(sled::Error) -> Self {
        move |source| Self::Sled { op, source }
    }

    /// This error and its causes, joined with ": ", for sinks that keep only a message (such
    /// as the `io::Error` openraft's log callback takes).
    pub fn chain(&self) -> String {
        let mut message = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names_the_record_and_the_cause() {
        let source = serde_json::from_slice::<u64>(b"{").unwrap_err();
        let cause = source.to_string();
        let error = StoreError::Decode {
            what: "log entry 7".to_owned(),
            source,
        };
        assert_eq!(error.chain(), format!("cannot decode log entry 7: {cause}"));
    }
}
