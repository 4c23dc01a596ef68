//! Why the ledger refused a command. A refusal is a deterministic answer, replicated like
//! any other: every member refuses the same command the same way, and a refused command
//! changes nothing (it is validated in full before anything is written).
//!
//! Errors are serializable so the Raft state machine can return them to the proposer; they
//! name objects and fields, never secret material.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The kinds of object the ledger holds, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// An endpoint.
    Endpoint,
    /// A price table entry.
    Price,
    /// A provider credential.
    Credential,
    /// A team.
    Team,
    /// A user.
    User,
    /// A gateway key.
    Key,
    /// A budget or rate limit.
    Budget,
    /// A quota lease.
    Lease,
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Endpoint => "endpoint",
            Self::Price => "price",
            Self::Credential => "credential",
            Self::Team => "team",
            Self::User => "user",
            Self::Key => "key",
            Self::Budget => "budget",
            Self::Lease => "lease",
        })
    }
}

/// A command the ledger refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum LedgerError {
    /// The command names an object that does not exist.
    #[error("{kind} `{id}` does not exist")]
    NotFound {
        /// Kind of the missing object.
        kind: ObjectKind,
        /// Its id or name.
        id: String,
    },
    /// A create command names an object that already exists.
    #[error("{kind} `{id}` already exists")]
    AlreadyExists {
        /// Kind of the object.
        kind: ObjectKind,
        /// Its id or name.
        id: String,
    },
    /// A delete command names an object that others still refer to.
    #[error("{kind} `{id}` is still used by {by_kind} `{by_id}`")]
    InUse {
        /// Kind of the object to delete.
        kind: ObjectKind,
        /// Its id or name.
        id: String,
        /// Kind of the first object found referring to it.
        by_kind: ObjectKind,
        /// That object's id or name.
        by_id: String,
    },
    /// A field has a value the ledger cannot accept.
    #[error("{field}: {reason}")]
    Invalid {
        /// Path of the field (`endpoints.chat.targets[0].weight`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A budget's new limit is below what its current window already used or reserved.
    #[error(
        "budget `{budget}`: limit {limit} is below this window's settled {settled} + \
         outstanding {outstanding}; choose at least {} (or wait for the next window)",
        settled.saturating_add(*outstanding)
    )]
    LimitBelowUsage {
        /// The budget.
        budget: String,
        /// The limit asked for.
        limit: u64,
        /// Settled in the current window.
        settled: u64,
        /// Reserved by live leases in the current window.
        outstanding: u64,
    },
    /// A budget field that cannot change once leases were granted against it.
    #[error(
        "budget `{budget}`: {field} cannot change (the window's usage is counted in it); \
         create a new budget instead"
    )]
    Immutable {
        /// The budget.
        budget: String,
        /// `metric` or `window`.
        field: String,
    },
    /// A batch contained another batch.
    #[error("batches cannot be nested")]
    NestedBatch,
    /// One command of a batch was refused, so none of the batch was applied.
    #[error("batch command {index} refused, nothing applied: {error}")]
    Batch {
        /// Position of the refused command in the batch.
        index: usize,
        /// Why it was refused.
        error: Box<LedgerError>,
    },
}

impl LedgerError {
    /// A field-level validation error.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A missing object.
    pub fn not_found(kind: ObjectKind, id: impl Into<String>) -> Self {
        Self::NotFound {
            kind,
            id: id.into(),
        }
    }

    /// The stable low-cardinality code of this error (for metrics and API `code`s).
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "not_found",
            Self::AlreadyExists { .. } => "already_exists",
            Self::InUse { .. } => "in_use",
            Self::Invalid { .. } => "invalid",
            Self::LimitBelowUsage { .. } => "limit_below_usage",
            Self::Immutable { .. } => "immutable",
            Self::NestedBatch => "nested_batch",
            Self::Batch { error, .. } => error.code(),
        }
    }
}
