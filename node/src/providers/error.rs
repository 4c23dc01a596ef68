//! What can go wrong talking to a provider. Messages never contain credentials: transport
//! errors are stripped of their URL, and upstream bodies are read only for their message.

use http::{HeaderValue, StatusCode};

/// Which timeout fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    /// TCP/TLS connect.
    Connect,
    /// Waiting for the response headers.
    FirstByte,
    /// The whole exchange (stream included).
    Total,
    /// Too long between two stream events.
    Idle,
}

impl TimeoutPhase {
    /// Lower-case name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::FirstByte => "first byte",
            Self::Total => "total",
            Self::Idle => "idle (between stream events)",
        }
    }
}

/// An error answer from the provider, as it gave it (message scrubbed of keys).
#[derive(Debug, Clone)]
pub struct UpstreamError {
    /// Upstream status.
    pub status: StatusCode,
    /// The provider's message.
    pub message: String,
    /// The provider's error type, if given.
    pub error_type: Option<String>,
    /// The provider's error code, if given.
    pub code: Option<String>,
    /// The provider's `param`, if given.
    pub param: Option<String>,
    /// Upstream `Retry-After`, passed on to the client.
    pub retry_after: Option<HeaderValue>,
}

/// A failed provider call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// Could not connect.
    #[error("could not connect to the provider: {detail}")]
    Connect {
        /// Transport detail (no URL).
        detail: String,
    },
    /// A timeout fired.
    #[error("the provider did not answer within the {} timeout", .phase.name())]
    Timeout {
        /// Which one.
        phase: TimeoutPhase,
    },
    /// The provider answered with an error status; its message is kept.
    #[error("the provider returned HTTP {}: {}", .0.status, .0.message)]
    Status(Box<UpstreamError>),
    /// The provider answered, but not in its own wire format.
    #[error("the provider's answer was not valid: {detail}")]
    InvalidResponse {
        /// What was wrong.
        detail: String,
    },
    /// The connection broke after the answer began.
    #[error("the provider connection failed mid-answer: {detail}")]
    Interrupted {
        /// Transport detail (no URL).
        detail: String,
    },
    /// The provider cannot do this operation, or lacks a feature the request uses; another
    /// target may serve it.
    #[error("{0}")]
    Unsupported(String),
    /// The request is malformed for this provider's API (a field of the wrong shape): no
    /// other target would accept it either.
    #[error("{0}")]
    InvalidRequest(String),
}

impl ProviderError {
    /// Classifies a reqwest error, dropping its URL (which may carry a key in a query).
    pub fn from_transport(err: reqwest::Error, phase: TimeoutPhase) -> Self {
        let err = err.without_url();
        if err.is_timeout() {
            // reqwest's only timeouts are the client's connect timeout and each request's
            // `.timeout(total)`; the first-byte timeout is enforced outside reqwest, so a
            // reqwest timeout that is not a connect timeout is the total one.
            let phase = if err.is_connect() {
                TimeoutPhase::Connect
            } else {
                TimeoutPhase::Total
            };
            return Self::Timeout { phase };
        }
        let detail = source_chain(&err);
        if err.is_connect() || phase == TimeoutPhase::FirstByte {
            Self::Connect { detail }
        } else {
            Self::Interrupted { detail }
        }
    }
}

fn source_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        let next = inner.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = inner.source();
    }
    text
}

/// Anthropic's error `type` for an HTTP status, as its API names them.
pub fn anthropic_error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// Google's canonical status name for an HTTP status (`error.status` in Google APIs).
pub fn google_status_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 413 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        502 | 503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}
