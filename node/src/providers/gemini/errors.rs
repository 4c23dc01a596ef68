//! Google's error answers → [`ProviderError`]: the body
//! `{"error":{"code","message","status","details"}}` (also sent as a one-element array, and
//! as a stream event) keeps its message, its canonical `status` as the error type, and the
//! `reason` of an `ErrorInfo` detail as the code; a `RetryInfo.retryDelay` becomes
//! `Retry-After` when the answer has no such header. Messages are scrubbed of the key used.
//! Nothing here touches the network beyond reading an error body.

use http::{HeaderValue, StatusCode};
use serde_json::Value;

use crate::providers::{ProviderError, UpstreamError};
use crate::secret::Secret;

/// Largest upstream error body read for its message.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Turns a non-success upstream response into [`ProviderError::Status`].
pub(crate) async fn status_error(response: reqwest::Response, key: Option<&str>) -> ProviderError {
    let status = response.status();
    let retry_after = response.headers().get(http::header::RETRY_AFTER).cloned();
    let body = read_capped(response, MAX_ERROR_BODY).await;
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let error = parsed.as_ref().and_then(error_object);
    match error {
        Some(error) => from_error_object(status, error, retry_after, key),
        None => ProviderError::Status(Box::new(UpstreamError {
            status,
            message: format!(
                "HTTP {} from the provider with a body that is not a Google error",
                status.as_u16()
            ),
            error_type: None,
            code: None,
            param: None,
            retry_after,
        })),
    }
}

/// The `error` object of a Google error body (`{"error":{…}}` or `[{"error":{…}}]`).
pub(crate) fn error_object(body: &Value) -> Option<&Value> {
    match body {
        Value::Array(items) => items.first()?.get("error"),
        other => other.get("error").filter(|e| e.is_object()),
    }
}

/// Builds the error from a Google `error` object; `status` is the HTTP status when there was
/// one (a stream event carries only the object, and its `code`).
pub(crate) fn from_error_object(
    status: StatusCode,
    error: &Value,
    retry_after: Option<HeaderValue>,
    key: Option<&str>,
) -> ProviderError {
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("the provider reported an error without a message");
    let status_name = error
        .get("status")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let details = error.get("details").and_then(Value::as_array);
    let detail = |kind: &str| {
        details.and_then(|items| {
            items.iter().find(|d| {
                d.get("@type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.ends_with(kind))
            })
        })
    };
    let reason = detail("google.rpc.ErrorInfo")
        .and_then(|d| d.get("reason"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let retry_after = retry_after.or_else(|| {
        detail("google.rpc.RetryInfo")
            .and_then(|d| d.get("retryDelay"))
            .and_then(Value::as_str)
            .and_then(retry_seconds)
            .map(HeaderValue::from)
    });
    ProviderError::Status(Box::new(UpstreamError {
        status,
        message: scrub(message, key),
        error_type: status_name,
        code: reason,
        param: None,
        retry_after,
    }))
}

/// An error event inside a stream: its `code` is the HTTP status.
pub(crate) fn from_stream_error(error: &Value, key: Option<&str>) -> ProviderError {
    let status = error
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .filter(|s| s.is_client_error() || s.is_server_error())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    from_error_object(status, error, None, key)
}

/// A prompt Google refused to answer (`promptFeedback.blockReason`, no candidates).
///
/// Answered as a 400 `invalid_request_error` with code `content_filter`: that is what
/// Azure OpenAI answers for a filtered prompt, so OpenAI clients already raise it as a
/// `BadRequestError` a caller can recognise, where an empty 200 answer would look like a
/// model that said nothing.
pub(crate) fn prompt_blocked(reason: &str, message: Option<&str>) -> ProviderError {
    let mut text =
        format!("The prompt was blocked by Gemini's safety filters (blockReason: {reason}).");
    if let Some(message) = message.filter(|m| !m.is_empty()) {
        text.push(' ');
        text.push_str(message);
    }
    ProviderError::Status(Box::new(UpstreamError {
        status: StatusCode::BAD_REQUEST,
        message: text,
        error_type: Some("invalid_request_error".into()),
        code: Some("content_filter".into()),
        param: Some("messages".into()),
        retry_after: None,
    }))
}

/// Seconds of a protobuf `Duration` string (`"22s"`, `"1.5s"`), rounded up, at least 1.
fn retry_seconds(delay: &str) -> Option<u64> {
    let seconds: f64 = delay.trim().strip_suffix('s')?.parse().ok()?;
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    Some((seconds.ceil() as u64).max(1))
}

/// Replaces the key with its masked form wherever the provider echoed it.
pub(crate) fn scrub(message: &str, key: Option<&str>) -> String {
    match key {
        Some(key) if key.len() >= 8 => message.replace(key, &Secret::new(key).masked()),
        _ => message.to_owned(),
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
    use serde_json::json;

    fn upstream(err: ProviderError) -> UpstreamError {
        match err {
            ProviderError::Status(upstream) => *upstream,
            other => panic!("expected a status error, got {other:?}"),
        }
    }

    #[test]
    fn google_error_keeps_message_status_reason_and_retry_delay() {
        let body = json!({"error": {"code": 429, "message": "Quota exceeded.", "status": "RESOURCE_EXHAUSTED",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED"},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "21.2s"}]}});
        let error = error_object(&body).expect("an error object");
        let err = upstream(from_error_object(
            StatusCode::TOO_MANY_REQUESTS,
            error,
            None,
            None,
        ));
        assert_eq!(err.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(err.message, "Quota exceeded.");
        assert_eq!(err.error_type.as_deref(), Some("RESOURCE_EXHAUSTED"));
        assert_eq!(err.code.as_deref(), Some("RATE_LIMIT_EXCEEDED"));
        assert_eq!(err.retry_after, Some(HeaderValue::from(22u64)));
    }

    #[test]
    fn array_bodies_and_header_retry_after_win() {
        let body = json!([{"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "9s"}]}}]);
        let error = error_object(&body).expect("an error object");
        let err = upstream(from_error_object(
            StatusCode::SERVICE_UNAVAILABLE,
            error,
            Some(HeaderValue::from_static("3")),
            None,
        ));
        assert_eq!(err.retry_after, Some(HeaderValue::from_static("3")));
        assert_eq!(err.error_type.as_deref(), Some("UNAVAILABLE"));
    }

    #[test]
    fn keys_are_scrubbed_from_messages() {
        let key = "AIzaSyD-0123456789abcdefghijklmnop";
        let error = json!({"code": 400, "message": format!("API key {key} not valid."), "status": "INVALID_ARGUMENT"});
        let err = upstream(from_stream_error(&error, Some(key)));
        assert!(!err.message.contains(key), "{}", err.message);
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn retry_delays_round_up() {
        assert_eq!(retry_seconds("22s"), Some(22));
        assert_eq!(retry_seconds("0.2s"), Some(1));
        assert_eq!(retry_seconds("soon"), None);
    }
}
