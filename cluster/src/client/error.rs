//! [`ClientError`]: what a [`super::LedgerClient`] call can fail with, and which gRPC
//! statuses count as "try another member".
//!
//! Errors name members by `host:port` only (never a URL's user info), carry the server's
//! status message (which never holds a secret: credentials are sealed before they enter
//! the ledger) and describe undecodable payloads by position, not by content.

use std::time::Duration;

use crate::LedgerError;

/// A ledger client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The client was built with no member URLs.
    #[error("no ledger member URLs were given")]
    NoMembers,
    /// A member URL is not a valid `http://host:port` URL.
    #[error("ledger member URL #{position} is invalid: {reason}")]
    InvalidMember {
        /// Its position in the list (from 0).
        position: usize,
        /// Why.
        reason: String,
    },
    /// No member could serve the call before the failover deadline.
    #[error("no ledger member served {call} within {waited:?} ({attempts} attempts); last: {last}")]
    Unavailable {
        /// The RPC.
        call: &'static str,
        /// Attempts made.
        attempts: u32,
        /// Time spent.
        waited: Duration,
        /// The last member's answer.
        last: String,
    },
    /// A member did not answer within the call timeout. For a write, whether it was
    /// committed is unknown.
    #[error("ledger member {member} did not answer {call} within {after:?}")]
    Timeout {
        /// The RPC.
        call: &'static str,
        /// The member, `host:port`.
        member: String,
        /// The call timeout.
        after: Duration,
    },
    /// A member answered with a status that retrying elsewhere would not change.
    #[error("ledger member {member} refused {call}: {code:?}: {message}")]
    Refused {
        /// The RPC.
        call: &'static str,
        /// The member, `host:port`.
        member: String,
        /// The gRPC status code.
        code: tonic::Code,
        /// The status message.
        message: String,
    },
    /// A payload could not be encoded or decoded.
    #[error("coding {what}: {reason}")]
    Codec {
        /// What was being coded.
        what: &'static str,
        /// Where and what kind of error (never the payload itself).
        reason: String,
    },
    /// The ledger refused the command by its rules (unknown budget, invalid field, ...).
    #[error("the ledger refused the command: {0}")]
    Ledger(#[from] LedgerError),
    /// The ledger answered a command with an effect of another kind.
    #[error("the ledger answered {command} with an unexpected effect")]
    UnexpectedEffect {
        /// The command's name.
        command: &'static str,
    },
}

impl ClientError {
    /// A low-cardinality name for metrics labels and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NoMembers | Self::InvalidMember { .. } => "config",
            Self::Unavailable { .. } => "unavailable",
            Self::Timeout { .. } => "timeout",
            Self::Refused { .. } => "refused",
            Self::Codec { .. } => "codec",
            Self::Ledger(_) => "ledger",
            Self::UnexpectedEffect { .. } => "unexpected_effect",
        }
    }

    /// A serde_json error described by kind and position only.
    pub(crate) fn codec(what: &'static str, error: &serde_json::Error) -> Self {
        Self::Codec {
            what,
            reason: format!(
                "{:?} error at line {} column {}",
                error.classify(),
                error.line(),
                error.column()
            ),
        }
    }
}

/// Whether a call that failed with `status` may be sent to another member. Writes retry only
/// on `UNAVAILABLE` (the member could not be reached, or had no leader to commit with:
/// nothing was appended); idempotent calls also on other transport failures.
pub(crate) fn worth_another_member(status: &tonic::Status, idempotent: bool) -> bool {
    match status.code() {
        tonic::Code::Unavailable => true,
        tonic::Code::Unknown | tonic::Code::Cancelled | tonic::Code::DeadlineExceeded => idempotent,
        _ => false,
    }
}
