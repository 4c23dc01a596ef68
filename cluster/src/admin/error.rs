//! [`AdminError`]: why an admin call failed, with a stable [`AdminError::code`], the JSON
//! body every transport shows ([`ErrorBody`]) and the gRPC status it becomes.
//!
//! Ledger refusals ([`LedgerError`]) and proposal failures ([`ProposeError`]) are folded in
//! here, so a caller sees one error family whatever refused the request. No variant ever
//! carries secret material: credential input errors name fields, never values.

use serde::{Deserialize, Serialize};

use crate::consensus::ProposeError;
use crate::ledger::LedgerError;

/// One problem with one field of the input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// Path of the field (`endpoint.targets[0].weight`, `team.id`).
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl FieldError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Why an admin call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// The input is wrong: an unknown kind, malformed JSON, or fields the validator or the
    /// ledger refused. Nothing was changed.
    #[error("invalid input: {}", describe(.errors))]
    InvalidArgument {
        /// Every problem found, by field.
        errors: Vec<FieldError>,
    },
    /// The object, or an object the input refers to, does not exist.
    #[error("{kind} `{id}` does not exist")]
    NotFound {
        /// Its kind.
        kind: String,
        /// Its id.
        id: String,
    },
    /// The request contradicts the ledger's current state (the object exists already, is
    /// still in use, or a budget's usage forbids the change). Nothing was changed.
    #[error("{message}")]
    Conflict {
        /// The ledger's finer code (`already_exists`, `in_use`, `limit_below_usage`,
        /// `immutable`).
        reason: &'static str,
        /// What conflicts.
        message: String,
    },
    /// Credentials cannot be written through this member: it has no key-encryption key to
    /// seal them with.
    #[error(
        "this ledger member has no key-encryption key, so it cannot seal credentials; \
         configure one (FLOODGATE_KEK) or send the request to a member that has it"
    )]
    KekMissing,
    /// The ledger cannot answer right now (no leader, leader unreachable, not yet
    /// applied): retry.
    #[error("ledger unavailable: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },
    /// A fault of this member (encoding, the random number generator, the local store).
    #[error("internal error: {reason}")]
    Internal {
        /// Why.
        reason: String,
    },
}

fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The JSON shape of an error, the same over gRPC (the status message) and HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// [`AdminError::code`].
    pub code: String,
    /// The error's text.
    pub message: String,
    /// Field-level problems (for `invalid_argument`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl AdminError {
    /// One field-level problem.
    pub fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            errors: vec![FieldError::new(field, reason)],
        }
    }

    /// The stable, low-cardinality code (API `code`, metric label).
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidArgument { .. } => "invalid_argument",
            Self::NotFound { .. } => "not_found",
            Self::Conflict { .. } => "conflict",
            Self::KekMissing => "kek_missing",
            Self::Unavailable { .. } => "unavailable",
            Self::Internal { .. } => "internal",
        }
    }

    /// The JSON body shown to callers.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code().to_owned(),
            message: self.to_string(),
            errors: match self {
                Self::InvalidArgument { errors } => errors.clone(),
                _ => Vec::new(),
            },
        }
    }

    /// The gRPC status: the code's nearest gRPC code, with [`Self::body`] as JSON in the
    /// message.
    pub fn to_status(&self) -> tonic::Status {
        let code = match self {
            Self::InvalidArgument { .. } => tonic::Code::InvalidArgument,
            Self::NotFound { .. } => tonic::Code::NotFound,
            Self::Conflict {
                reason: "already_exists",
                ..
            } => tonic::Code::AlreadyExists,
            Self::Conflict { .. } | Self::KekMissing => tonic::Code::FailedPrecondition,
            Self::Unavailable { .. } => tonic::Code::Unavailable,
            Self::Internal { .. } => tonic::Code::Internal,
        };
        let message = serde_json::to_string(&self.body())
            .unwrap_or_else(|_| format!("{{\"code\":\"{}\"}}", self.code()));
        tonic::Status::new(code, message)
    }

    pub(super) fn internal(reason: impl ToString) -> Self {
        Self::Internal {
            reason: reason.to_string(),
        }
    }
}

impl From<LedgerError> for AdminError {
    fn from(error: LedgerError) -> Self {
        let code = error.code();
        match error {
            LedgerError::Invalid { field, reason } => Self::field(field, reason),
            LedgerError::NotFound { kind, id } => Self::NotFound {
                kind: kind.to_string(),
                id,
            },
            LedgerError::Batch { error, .. } => Self::from(*error),
            LedgerError::NestedBatch => Self::internal(error),
            LedgerError::AlreadyExists { .. }
            | LedgerError::InUse { .. }
            | LedgerError::LimitBelowUsage { .. }
            | LedgerError::Immutable { .. } => Self::Conflict {
                reason: code,
                message: error.to_string(),
            },
        }
    }
}

impl From<ProposeError> for AdminError {
    fn from(error: ProposeError) -> Self {
        match error.to_status().code() {
            tonic::Code::Unavailable => Self::Unavailable {
                reason: error.to_string(),
            },
            _ => Self::internal(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::ObjectKind;

    #[test]
    fn ledger_refusals_keep_their_field_and_meaning() {
        let invalid = AdminError::from(LedgerError::Batch {
            index: 0,
            error: Box::new(LedgerError::invalid("team.id", "bad")),
        });
        assert_eq!(invalid, AdminError::field("team.id", "bad"));
        let in_use = AdminError::from(LedgerError::InUse {
            kind: ObjectKind::Team,
            id: "t".into(),
            by_kind: ObjectKind::User,
            by_id: "u".into(),
        });
        assert_eq!(in_use.code(), "conflict");
        assert_eq!(in_use.to_status().code(), tonic::Code::FailedPrecondition);
        let exists = AdminError::from(LedgerError::AlreadyExists {
            kind: ObjectKind::Key,
            id: "k".into(),
        });
        assert_eq!(exists.to_status().code(), tonic::Code::AlreadyExists);
        let missing = AdminError::from(LedgerError::not_found(ObjectKind::Credential, "c"));
        assert_eq!(missing.code(), "not_found");
    }

    #[test]
    fn status_message_is_the_json_body() {
        let status = AdminError::field("endpoint.name", "must not be empty").to_status();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let body: ErrorBody = serde_json::from_str(status.message()).unwrap();
        assert_eq!(body.code, "invalid_argument");
        assert_eq!(
            body.errors,
            vec![FieldError::new("endpoint.name", "must not be empty")]
        );
        let kek: ErrorBody =
            serde_json::from_str(AdminError::KekMissing.to_status().message()).unwrap();
        assert_eq!(kek.code, "kek_missing");
        assert!(kek.errors.is_empty());
    }
}
