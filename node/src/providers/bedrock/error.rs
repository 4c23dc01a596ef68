//! Bedrock's errors as Floodgate's: HTTP error answers (`{"message": ...}` with the
//! exception name in `x-amzn-ErrorType` or `__type`) and the exception messages of event
//! streams (`throttlingException`, `modelStreamErrorException`, ...) both become
//! [`ProviderError::Status`] with Bedrock's status, message and exception name, and any
//! `Retry-After` kept. Secrets the request used are scrubbed from every message.

use http::{HeaderMap, StatusCode};
use serde_json::Value;

use crate::providers::{ProviderError, UpstreamError};
use crate::secret::Secret;

/// Largest error body read for its message.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The secrets one request presented upstream, to scrub from anything Bedrock says.
#[derive(Debug, Default, Clone)]
pub struct Scrub {
    secrets: Vec<String>,
}

impl Scrub {
    /// Scrubs these values (short values are ignored: they cannot be told from text).
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            secrets: secrets
                .into_iter()
                .filter(|s| s.len() >= 8)
                .map(str::to_owned)
                .collect(),
        }
    }

    /// `text` with every secret replaced by its masked form.
    pub fn apply(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), &Secret::new(secret.as_str()).masked());
            }
        }
        text
    }
}

/// The exception name from `x-amzn-ErrorType` (`ThrottlingException:http://...` → the part
/// before `:`).
fn header_error_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("x-amzn-errortype")?.to_str().ok()?;
    let name = value.split(':').next()?.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// The exception name from a body's `__type` (`com.amazon.coral#ValidationException` →
/// `ValidationException`).
fn body_error_type(body: &Value) -> Option<String> {
    let raw = body.get("__type")?.as_str()?;
    let name = raw.rsplit('#').next()?.split(':').next()?.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

fn body_message(body: &Value) -> Option<String> {
    ["message", "Message"]
        .iter()
        .find_map(|key| body.get(*key)?.as_str().map(str::to_owned))
}

/// Turns an error answer into [`ProviderError::Status`].
pub async fn status_error(mut response: reqwest::Response, scrub: &Scrub) -> ProviderError {
    let status = response.status();
    let headers = response.headers().clone();
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = MAX_ERROR_BODY.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    from_parts(status, &headers, &body, scrub)
}

/// [`status_error`] on an already-read answer.
pub fn from_parts(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    scrub: &Scrub,
) -> ProviderError {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let message = body_message(&parsed).unwrap_or_else(|| {
        format!(
            "HTTP {} from Amazon Bedrock with no error message",
            status.as_u16()
        )
    });
    ProviderError::Status(Box::new(UpstreamError {
        status,
        message: scrub.apply(&message),
        error_type: header_error_type(headers).or_else(|| body_error_type(&parsed)),
        code: None,
        param: None,
        retry_after: headers.get(http::header::RETRY_AFTER).cloned(),
    }))
}

/// The HTTP status and exception name of an event-stream exception, by its
/// `:exception-type` (the union member name, `throttlingException`) or shape name.
fn exception_status(kind: &str) -> (StatusCode, String) {
    let mut shape = kind.to_owned();
    if let Some(first) = shape.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    let status = match shape.as_str() {
        "ValidationException" => StatusCode::BAD_REQUEST,
        "AccessDeniedException" => StatusCode::FORBIDDEN,
        "ResourceNotFoundException" => StatusCode::NOT_FOUND,
        "ModelTimeoutException" => StatusCode::REQUEST_TIMEOUT,
        "ModelNotReadyException" => StatusCode::TOO_MANY_REQUESTS,
        "ModelStreamErrorException" | "ModelErrorException" => StatusCode::FAILED_DEPENDENCY,
        "ThrottlingException" | "ServiceQuotaExceededException" => StatusCode::TOO_MANY_REQUESTS,
        "ServiceUnavailableException" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, shape)
}

/// An exception message received in the middle of an event stream.
pub fn stream_exception(kind: &str, payload: &[u8], scrub: &Scrub) -> ProviderError {
    let (status, shape) = exception_status(kind);
    let parsed: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
    let message = body_message(&parsed)
        .unwrap_or_else(|| format!("Amazon Bedrock ended the stream with {shape}"));
    ProviderError::Status(Box::new(UpstreamError {
        status,
        message: scrub.apply(&message),
        error_type: Some(shape),
        code: None,
        param: None,
        retry_after: None,
    }))
}

/// An unmodeled `:message-type: error` message of an event stream.
pub fn stream_error(code: &str, message: &str, scrub: &Scrub) -> ProviderError {
    let (status, shape) = exception_status(code);
    ProviderError::Status(Box::new(UpstreamError {
        status,
        message: scrub.apply(message),
        error_type: Some(shape),
        code: None,
        param: None,
        retry_after: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(err: ProviderError) -> UpstreamError {
        match err {
            ProviderError::Status(upstream) => *upstream,
            other => panic!("not a status error: {other:?}"),
        }
    }

    #[test]
    fn error_type_comes_from_the_header_then_the_body() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-amzn-ErrorType",
            "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"
                .parse()
                .unwrap(),
        );
        headers.insert("retry-after", "3".parse().unwrap());
        let err = upstream(from_parts(
            StatusCode::TOO_MANY_REQUESTS,
            &headers,
            br#"{"message":"Too many requests, please wait before trying again."}"#,
            &Scrub::default(),
        ));
        assert_eq!(err.status, 429);
        assert_eq!(err.error_type.as_deref(), Some("ThrottlingException"));
        assert_eq!(
            err.message,
            "Too many requests, please wait before trying again."
        );
        assert_eq!(err.retry_after.unwrap(), "3");

        let err = upstream(from_parts(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            br#"{"__type":"com.amazon.coral.validate#ValidationException","Message":"bad"}"#,
            &Scrub::default(),
        ));
        assert_eq!(err.error_type.as_deref(), Some("ValidationException"));
        assert_eq!(err.message, "bad");

        let err = upstream(from_parts(
            StatusCode::BAD_GATEWAY,
            &HeaderMap::new(),
            b"<html>",
            &Scrub::default(),
        ));
        assert!(err.message.contains("502"), "{}", err.message);
    }

    #[test]
    fn secrets_are_scrubbed_from_messages() {
        let scrub = Scrub::new(["wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "short"]);
        let err = upstream(from_parts(
            StatusCode::FORBIDDEN,
            &HeaderMap::new(),
            br#"{"message":"key wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY is short"}"#,
            &scrub,
        ));
        assert!(
            !err.message
                .contains("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
        );
        assert!(err.message.contains("wJa…EKEY"), "{}", err.message);
        assert!(err.message.ends_with("is short"));
    }

    #[test]
    fn stream_exceptions_keep_their_status() {
        let cases = [
            ("throttlingException", 429, "ThrottlingException"),
            ("validationException", 400, "ValidationException"),
            (
                "modelStreamErrorException",
                424,
                "ModelStreamErrorException",
            ),
            (
                "serviceUnavailableException",
                503,
                "ServiceUnavailableException",
            ),
            ("modelTimeoutException", 408, "ModelTimeoutException"),
            ("internalServerException", 500, "InternalServerException"),
        ];
        for (kind, status, shape) in cases {
            let err = upstream(stream_exception(
                kind,
                br#"{"message":"m"}"#,
                &Scrub::default(),
            ));
            assert_eq!(err.status.as_u16(), status, "{kind}");
            assert_eq!(err.error_type.as_deref(), Some(shape));
            assert_eq!(err.message, "m");
        }
    }
}
