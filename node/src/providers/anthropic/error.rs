//! Anthropic error answers → [`ProviderError`]. Anthropic's bodies are
//! `{"type":"error","error":{"type","message"},"request_id"}`; the message and Anthropic's
//! `type` (`invalid_request_error`, `authentication_error`, `rate_limit_error`,
//! `overloaded_error`, ...) are kept as they are, with `Retry-After`. The key the gateway
//! presented is scrubbed from the message before it goes anywhere.

use http::StatusCode;
use http::header::RETRY_AFTER;
use serde_json::Value;

use crate::providers::{ProviderError, UpstreamError};
use crate::secret::Secret;

/// Largest upstream error body read for its message.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Anthropic's 529 "overloaded" status.
pub const OVERLOADED: u16 = 529;

/// The HTTP status Anthropic uses for an error `type` (for errors that arrive inside a
/// stream, after the 200).
pub fn status_for(error_type: &str) -> StatusCode {
    let code = match error_type {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => OVERLOADED,
        _ => 500,
    };
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Replaces `key` in `message` with its masked form.
pub fn scrub(message: String, key: Option<&str>) -> String {
    match key {
        Some(key) if key.len() >= 8 && message.contains(key) => {
            message.replace(key, &Secret::new(key).masked())
        }
        _ => message,
    }
}

/// Reads an Anthropic error body (or, failing that, an OpenAI-style one) into an
/// [`UpstreamError`] without `Retry-After`.
pub fn parse_body(status: StatusCode, body: &[u8], key: Option<&str>) -> UpstreamError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let text = |field: &str| {
        error
            .and_then(|e| e.get(field))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let message = text("message")
        .or_else(|| parsed.as_ref()?.get("message")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| {
            format!(
                "HTTP {} from the provider with a body that is not an Anthropic error",
                status.as_u16()
            )
        });
    UpstreamError {
        status,
        message: scrub(message, key),
        error_type: text("type"),
        code: text("code"),
        param: None,
        retry_after: None,
    }
}

/// Turns an upstream error response into [`ProviderError::Status`].
pub async fn status_error(response: reqwest::Response, key: Option<&str>) -> ProviderError {
    let status = response.status();
    let retry_after = response.headers().get(RETRY_AFTER).cloned();
    let body = read_capped(response, MAX_ERROR_BODY).await;
    let mut error = parse_body(status, &body, key);
    error.retry_after = retry_after;
    ProviderError::Status(Box::new(error))
}

/// An `error` event inside a stream (`{"type":"error","error":{"type","message"}}`).
pub fn stream_error(data: &str, key: Option<&str>) -> ProviderError {
    let parsed: Option<Value> = serde_json::from_str(data).ok();
    let error_type = parsed
        .as_ref()
        .and_then(|v| v.get("error")?.get("type")?.as_str())
        .unwrap_or("api_error")
        .to_owned();
    let mut error = parse_body(status_for(&error_type), data.as_bytes(), key);
    error.error_type = Some(error_type);
    ProviderError::Status(Box::new(error))
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
    fn anthropic_error_bodies_keep_type_and_message() {
        let body = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}"#;
        let status = StatusCode::from_u16(OVERLOADED).unwrap_or(StatusCode::OK);
        let error = parse_body(status, body, None);
        assert_eq!(error.status.as_u16(), 529);
        assert_eq!(error.message, "Overloaded");
        assert_eq!(error.error_type.as_deref(), Some("overloaded_error"));
    }

    #[test]
    fn the_key_is_scrubbed_from_messages() {
        let key = "sk-ant-api03-secret-value";
        let body = format!(
            r#"{{"type":"error","error":{{"type":"authentication_error","message":"invalid x-api-key {key}"}}}}"#
        );
        let error = parse_body(StatusCode::UNAUTHORIZED, body.as_bytes(), Some(key));
        assert!(!error.message.contains(key), "{}", error.message);
        assert!(error.message.starts_with("invalid x-api-key "));
    }

    #[test]
    fn stream_errors_get_the_status_of_their_type() {
        let data = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let ProviderError::Status(error) = stream_error(data, None) else {
            panic!("not a status error");
        };
        assert_eq!(error.status.as_u16(), 529);
        assert_eq!(error.error_type.as_deref(), Some("overloaded_error"));
        assert_eq!(
            status_for("rate_limit_error"),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            status_for("something_new"),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
