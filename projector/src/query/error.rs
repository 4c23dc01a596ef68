//! [`QueryError`]: why a usage query was refused, with a stable code, the provider-style
//! JSON body both transports show (`{"error": {"message", "type", "param", "code"}}`), its
//! HTTP status and its gRPC status.

use serde_json::{Value, json};

use crate::store::StoreError;

/// Why a query was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// `from`/`to` are missing or `to` is not after `from`.
    #[error("invalid range: `to` ({to}) must be after `from` ({from}), both Unix seconds")]
    InvalidRange {
        /// The start asked.
        from: i64,
        /// The end asked.
        to: i64,
    },
    /// The range holds more buckets of the granularity than one answer may.
    #[error("the range holds {buckets} buckets of a {granularity}; at most {max} per query")]
    RangeTooLarge {
        /// Buckets the range holds.
        buckets: i64,
        /// The granularity asked.
        granularity: &'static str,
        /// The most allowed.
        max: i64,
    },
    /// The granularity is not `minute`, `hour` or `day`.
    #[error("unknown granularity `{0}`: use minute, hour or day")]
    UnknownGranularity(String),
    /// A group-by names no dimension.
    #[error("unknown group_by `{0}`: use endpoint, provider, model, key, team, user or status")]
    UnknownGroupBy(String),
    /// A ranked dimension or filter names no dimension.
    #[error("unknown dimension `{0}`: use endpoint, provider, model, key, team, user or status")]
    UnknownDimension(String),
    /// The ranking metric is not `cost`, `tokens` or `requests`.
    #[error("unknown metric `{0}`: use cost, tokens or requests")]
    UnknownMetric(String),
    /// The limit is out of bounds.
    #[error("invalid limit {limit}: use 1 to {max}")]
    InvalidLimit {
        /// The limit asked.
        limit: u64,
        /// The most allowed.
        max: u64,
    },
    /// The paging cursor is not one this API handed out.
    #[error("invalid cursor: pass back `next_cursor` unchanged")]
    InvalidCursor,
    /// A query parameter is malformed (not a number, an unknown name).
    #[error("invalid parameter `{param}`: {reason}")]
    InvalidParameter {
        /// The parameter.
        param: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No trace has this id.
    #[error("no trace with event or request id `{0}`")]
    TraceNotFound(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl QueryError {
    /// The stable, low-cardinality code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRange { .. } => "invalid_range",
            Self::RangeTooLarge { .. } => "range_too_large",
            Self::UnknownGranularity(_) => "unknown_granularity",
            Self::UnknownGroupBy(_) => "unknown_group_by",
            Self::UnknownDimension(_) => "unknown_dimension",
            Self::UnknownMetric(_) => "unknown_metric",
            Self::InvalidLimit { .. } => "invalid_limit",
            Self::InvalidCursor => "invalid_cursor",
            Self::InvalidParameter { .. } => "invalid_parameter",
            Self::TraceNotFound(_) => "trace_not_found",
            Self::Store(_) => "internal_error",
        }
    }

    fn param(&self) -> Option<&str> {
        match self {
            Self::InvalidRange { .. } | Self::RangeTooLarge { .. } => Some("to"),
            Self::UnknownGranularity(_) => Some("granularity"),
            Self::UnknownGroupBy(_) => Some("group_by"),
            Self::UnknownDimension(_) => Some("dimension"),
            Self::UnknownMetric(_) => Some("by"),
            Self::InvalidLimit { .. } => Some("limit"),
            Self::InvalidCursor => Some("cursor"),
            Self::InvalidParameter { param, .. } => Some(param),
            Self::TraceNotFound(_) => Some("id"),
            Self::Store(_) => None,
        }
    }

    /// The HTTP status.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::TraceNotFound(_) => 404,
            Self::Store(_) => 500,
            _ => 400,
        }
    }

    /// The JSON body: `{"error": {"message", "type", "param", "code"}}`. A store failure's
    /// detail stays in the log, not the answer.
    pub fn body(&self) -> Value {
        let (kind, message) = match self {
            Self::TraceNotFound(_) => ("not_found_error", self.to_string()),
            Self::Store(_) => (
                "server_error",
                "the projection store failed; see the projector's log".to_owned(),
            ),
            _ => ("invalid_request_error", self.to_string()),
        };
        json!({"error": {"message": message, "type": kind, "param": self.param(), "code": self.code()}})
    }

    /// The gRPC status: the nearest code, with [`Self::body`] as the message.
    pub fn to_status(&self) -> tonic::Status {
        let code = match self.http_status() {
            404 => tonic::Code::NotFound,
            500 => tonic::Code::Internal,
            _ => tonic::Code::InvalidArgument,
        };
        tonic::Status::new(code, self.body().to_string())
    }
}
