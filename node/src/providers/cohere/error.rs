//! What goes wrong with Cohere: [`CohereError`], the typed failures of this provider's
//! translation (turned into [`ProviderError`] at the provider boundary), and
//! [`status_error`], which reads an upstream error answer (`{"id", "message"}` with an HTTP
//! error status) into [`ProviderError::Status`] with the message, an OpenAI-style error
//! `type` and `Retry-After`, the presented key scrubbed from the message.
//!
//! Owns no I/O beyond reading an error body; never logs.

use http::StatusCode;
use http::header::RETRY_AFTER;
use serde_json::Value;

use crate::providers::{ProviderError, UpstreamError};
use crate::secret::Secret;

/// Largest upstream error body read for its message.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// A failure of the Cohere translation, before or after the upstream call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CohereError {
    /// The operation is not one Cohere serves here (only chat and embeddings are).
    #[error("provider `cohere` serves chat and embeddings, not {0}")]
    UnsupportedOperation(&'static str),
    /// The request holds something Cohere's API has no place for.
    #[error("`{field}`: {reason}")]
    Unsupported {
        /// The request field at fault (`messages[2].content[1]`).
        field: String,
        /// Why it cannot be carried.
        reason: String,
    },
    /// The request field is malformed.
    #[error("`{field}`: {reason}")]
    Invalid {
        /// The request field at fault.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Cohere answered, but reported that the generation itself failed
    /// (`finish_reason: ERROR`).
    #[error("Cohere ended the generation with finish_reason {reason}{}", .detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    GenerationFailed {
        /// Cohere's finish reason.
        reason: String,
        /// Cohere's error message, when it gave one.
        detail: Option<String>,
    },
    /// Cohere's answer was not in its own wire format.
    #[error("{0}")]
    InvalidAnswer(String),
}

impl CohereError {
    /// A malformed-field error.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A cannot-be-carried error.
    pub fn unsupported(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Unsupported {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<CohereError> for ProviderError {
    fn from(err: CohereError) -> Self {
        let message = err.to_string();
        match err {
            CohereError::UnsupportedOperation(_) | CohereError::Unsupported { .. } => {
                ProviderError::Unsupported(message)
            }
            CohereError::Invalid { .. } => ProviderError::InvalidRequest(message),
            CohereError::GenerationFailed { .. } => {
                ProviderError::Status(Box::new(UpstreamError {
                    status: StatusCode::BAD_GATEWAY,
                    message,
                    error_type: Some("server_error".into()),
                    code: Some("generation_failed".into()),
                    param: None,
                    retry_after: None,
                }))
            }
            CohereError::InvalidAnswer(detail) => ProviderError::InvalidResponse { detail },
        }
    }
}

/// Turns an upstream error response into [`ProviderError::Status`]: Cohere's `message`,
/// an OpenAI-style error `type` for the status, and `Retry-After`. The key that was
/// presented (`key`) is masked wherever it appears in the message.
pub async fn status_error(response: reqwest::Response, key: Option<&str>) -> ProviderError {
    let status = response.status();
    let retry_after = response.headers().get(RETRY_AFTER).cloned();
    let body = read_capped(response, MAX_ERROR_BODY).await;
    ProviderError::Status(Box::new(upstream_error(status, &body, key, retry_after)))
}

/// The [`UpstreamError`] for an error answer with `status` and `body`.
pub fn upstream_error(
    status: StatusCode,
    body: &[u8],
    key: Option<&str>,
    retry_after: Option<http::HeaderValue>,
) -> UpstreamError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| {
            v.get("message")
                .or_else(|| v.pointer("/error/message"))
                .or_else(|| v.get("error"))
        })
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| {
            format!(
                "HTTP {} from Cohere with a body that is not Cohere's error JSON",
                status.as_u16()
            )
        });
    let message = match key {
        Some(key) if key.len() >= 8 => message.replace(key, &Secret::new(key).masked()),
        _ => message,
    };
    UpstreamError {
        status,
        message,
        error_type: Some(error_type(status).to_owned()),
        code: None,
        param: None,
        retry_after,
    }
}

/// OpenAI's error `type` for an upstream status, so OpenAI SDKs classify the error.
fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        500..=599 => "server_error",
        _ => "invalid_request_error",
    }
}

async fn read_capped(mut response: reqwest::Response, cap: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = cap.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= cap {
            break;
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_and_type_come_from_cohere_body() {
        let body = br#"{"id":"0c2d","message":"invalid request: max_tokens must be positive"}"#;
        let error = upstream_error(StatusCode::BAD_REQUEST, body, None, None);
        assert_eq!(
            error.message,
            "invalid request: max_tokens must be positive"
        );
        assert_eq!(error.error_type.as_deref(), Some("invalid_request_error"));
        let error = upstream_error(StatusCode::TOO_MANY_REQUESTS, body, None, None);
        assert_eq!(error.error_type.as_deref(), Some("rate_limit_error"));
    }

    #[test]
    fn presented_key_is_scrubbed() {
        let key = "co-secret-key-0123456789";
        let body = format!(r#"{{"message":"invalid api token {key}"}}"#);
        let error = upstream_error(StatusCode::UNAUTHORIZED, body.as_bytes(), Some(key), None);
        assert!(!error.message.contains(key), "{}", error.message);
        assert_eq!(error.error_type.as_deref(), Some("authentication_error"));
    }

    #[test]
    fn non_json_bodies_get_a_generic_message() {
        let error = upstream_error(StatusCode::BAD_GATEWAY, b"<html>", None, None);
        assert!(error.message.contains("502"), "{}", error.message);
        assert_eq!(error.error_type.as_deref(), Some("server_error"));
    }

    #[test]
    fn generation_failure_is_an_upstream_status() {
        let err = ProviderError::from(CohereError::GenerationFailed {
            reason: "ERROR".into(),
            detail: Some("internal".into()),
        });
        match err {
            ProviderError::Status(upstream) => {
                assert_eq!(upstream.status, StatusCode::BAD_GATEWAY);
                assert!(upstream.message.contains("ERROR: internal"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
