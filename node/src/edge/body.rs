//! Reading a request body as a JSON object, under the configured size limit, with errors
//! that say where the JSON broke.

use axum::body::Body;
use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};

use super::error::{ApiError, ErrorCode};

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::RequestTooLarge,
        format!("Request body is larger than the limit of {limit} bytes."),
    )
}

/// Reads the whole body, refusing more than `limit` bytes (early, by `Content-Length`, when
/// the client sent one).
pub async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<bytes::Bytes, ApiError> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large(limit));
    }
    axum::body::to_bytes(body, limit).await.map_err(|err| {
        let over_limit = std::error::Error::source(&err)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            || err.to_string().contains("length limit");
        if over_limit {
            too_large(limit)
        } else {
            ApiError::invalid("The request body could not be read.")
        }
    })
}

/// Parses a body as a JSON object.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::invalid("The request body must be a JSON object.")),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidJson,
            format!(
                "The request body is not valid JSON: {} at line {} column {}.",
                describe(&e),
                e.line(),
                e.column()
            ),
        )),
    }
}

fn describe(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Eof => "unexpected end of input",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "invalid data",
        serde_json::error::Category::Io => "read error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_json_names_the_position() {
        let err = parse_object(b"{\"model\": \"chat\",\n  \"messages\": [}").expect_err("bad");
        assert_eq!(err.code, ErrorCode::InvalidJson);
        assert!(err.message.contains("line 2 column 16"), "{}", err.message);
    }

    #[test]
    fn non_objects_are_invalid_requests() {
        let err = parse_object(b"[1,2]").expect_err("array");
        assert_eq!(err.code, ErrorCode::InvalidRequest);
    }
}
