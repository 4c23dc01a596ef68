//! Admission: everything checked before a provider is called — the gateway key, the body
//! (size, JSON, shape), the endpoint and operation, the stream flag, the endpoint's rate
//! limit — and the sticky key routing will read.

use std::sync::Arc;

use axum::body::Body;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{Map, Value};

use super::accounting::Accounting;
use super::auth::authenticate;
use super::body::{parse_object, read_limited};
use super::error::{ApiError, ErrorCode};
use super::invoke::{CallSpec, EndpointFrom, OperationFrom, StreamFrom};
use super::limiter::Admission;
use super::runtime::Runtime;
use crate::config::{Endpoint, KeyInfo, StickyKey};
use crate::providers::Operation;

/// Everything checked before a provider is called.
pub struct Admitted {
    /// The authenticated key, if the gateway uses keys (budgets match its id, team, user).
    pub key: Option<Arc<KeyInfo>>,
    /// The endpoint called.
    pub endpoint: Arc<Endpoint>,
    /// The operation asked.
    pub op: Operation,
    /// The parsed body.
    pub body: Map<String, Value>,
    /// Whether to stream the answer.
    pub stream: bool,
    /// Whether the client asked for usage in the stream.
    pub client_wants_usage: bool,
    /// The rate-limit admission, for the `x-ratelimit-*` headers.
    pub admission: Option<Admission>,
    /// The sticky-split key, if the endpoint is sticky and the request carries one.
    pub sticky_key: Option<String>,
}

/// Runs every check that comes before a provider is called.
pub async fn admit(
    runtime: &Runtime,
    spec: &CallSpec,
    headers: &HeaderMap,
    body: Body,
    accounting: &mut Accounting,
) -> Result<Admitted, ApiError> {
    let config = &runtime.config;
    let key = authenticate(&config.auth, headers)?;
    if let Some(key) = &key {
        accounting.key(key);
    }
    let bytes = read_limited(headers, body, config.limits.max_body_bytes).await?;
    accounting.capture_request(headers, &bytes);
    let mut body = parse_object(&bytes)?;

    let name = match &spec.endpoint {
        EndpointFrom::Path(name) => name.clone(),
        EndpointFrom::BodyModel => match body.get("model") {
            Some(Value::String(name)) => name.clone(),
            Some(_) => return Err(ApiError::invalid("`model` must be a string.").param("model")),
            None => {
                return Err(ApiError::invalid(
                    "You must provide a `model` parameter: the name of a gateway endpoint.",
                )
                .param("model"));
            }
        },
    };
    let endpoint = resolve(runtime, &name, key.as_deref())?;
    accounting.endpoint(&endpoint.name);

    let op = match spec.operation {
        OperationFrom::Fixed(op) => op,
        OperationFrom::BodyKeys => operation_from_keys(&mut body)?,
    };
    if !op.served_by(endpoint.kind) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::EndpointKindMismatch,
            format!(
                "Endpoint `{}` is a {} endpoint and cannot serve this request.",
                endpoint.name,
                endpoint.kind.name()
            ),
        ));
    }
    check_shape(op, &body)?;

    let stream = match (spec.stream, body.get("stream")) {
        (StreamFrom::Fixed(flag), _) => flag,
        (StreamFrom::Body, None | Some(Value::Null)) => false,
        (StreamFrom::Body, Some(Value::Bool(flag))) => *flag,
        (StreamFrom::Body, Some(_)) => {
            return Err(ApiError::invalid("`stream` must be a boolean.").param("stream"));
        }
    };
    if stream && op == Operation::Embeddings {
        return Err(ApiError::invalid("Embeddings cannot be streamed.").param("stream"));
    }
    let client_wants_usage = body
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);

    let limiter = runtime
        .endpoints
        .get(&endpoint.name)
        .and_then(|state| state.limiter.as_ref());
    let admission = match limiter {
        None => None,
        Some(limiter) => {
            let admission = limiter.admit();
            if !admission.allowed {
                let mut headers = HeaderMap::new();
                rate_limit_headers(&mut headers, &admission);
                let error = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorCode::RateLimitExceeded,
                    format!(
                        "Rate limit of {} requests per {}s reached for endpoint `{}`.",
                        admission.limit,
                        limiter.limit().period.as_secs(),
                        endpoint.name
                    ),
                )
                .retry_after(HeaderValue::from(admission.reset.as_secs().max(1)))
                .headers(headers);
                return Err(error);
            }
            Some(admission)
        }
    };
    let sticky_key = match &endpoint.routing.sticky {
        None => None,
        Some(StickyKey::Header(name)) => headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        Some(StickyKey::BodyField(field)) => {
            body.get(field).and_then(Value::as_str).map(str::to_owned)
        }
    };
    Ok(Admitted {
        key,
        endpoint,
        op,
        body,
        stream,
        client_wants_usage,
        admission,
        sticky_key,
    })
}

/// Finds an endpoint the key may call.
pub fn resolve(
    runtime: &Runtime,
    name: &str,
    key: Option<&KeyInfo>,
) -> Result<Arc<Endpoint>, ApiError> {
    let endpoint = runtime.config.endpoints.get(name).cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::ModelNotFound,
            format!("The endpoint `{name}` does not exist."),
        )
        .param("model")
    })?;
    if let Some(key) = key
        && !key.endpoints.is_empty()
        && !key.endpoints.iter().any(|e| e == name)
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::EndpointNotAllowed,
            format!("This gateway key may not call endpoint `{name}`."),
        ));
    }
    Ok(endpoint)
}

fn operation_from_keys(body: &mut Map<String, Value>) -> Result<Operation, ApiError> {
    if body.contains_key("messages") {
        return Ok(Operation::Chat);
    }
    if body.contains_key("prompt") {
        return Ok(Operation::Completions);
    }
    if body.contains_key("input") {
        return Ok(Operation::Embeddings);
    }
    if let Some(text) = body.remove("text") {
        // MLflow 2.x embeddings payloads name the input `text`.
        body.insert("input".into(), text);
        return Ok(Operation::Embeddings);
    }
    Err(ApiError::invalid(
        "The body must contain `messages` (chat), `prompt` (completions) or `input` (embeddings).",
    ))
}

fn check_shape(op: Operation, body: &Map<String, Value>) -> Result<(), ApiError> {
    let (field, ok) = match op {
        Operation::Chat | Operation::AnthropicMessages => (
            "messages",
            body.get("messages")
                .and_then(Value::as_array)
                .is_some_and(|m| !m.is_empty() && m.iter().all(Value::is_object)),
        ),
        Operation::GeminiGenerateContent => (
            "contents",
            body.get("contents")
                .and_then(Value::as_array)
                .is_some_and(|c| !c.is_empty() && c.iter().all(Value::is_object)),
        ),
        Operation::Completions => (
            "prompt",
            matches!(body.get("prompt"), Some(Value::String(_) | Value::Array(_))),
        ),
        Operation::Embeddings => (
            "input",
            matches!(body.get("input"), Some(Value::String(_) | Value::Array(_))),
        ),
        Operation::Responses => ("input", body.contains_key("input")),
    };
    if ok {
        Ok(())
    } else {
        let what = match op {
            Operation::Chat | Operation::AnthropicMessages => {
                "`messages` must be a non-empty array of message objects."
            }
            Operation::GeminiGenerateContent => "`contents` must be a non-empty array of objects.",
            Operation::Completions => "`prompt` must be a string or an array.",
            Operation::Embeddings => "`input` must be a string or an array.",
            Operation::Responses => "`input` is required.",
        };
        Err(ApiError::invalid(what).param(field))
    }
}

/// A rough input-token estimate (characters / 4) used only when a stream is cut before the
/// provider reports usage.
pub fn estimate_input_tokens(body: &Map<String, Value>) -> u64 {
    fn chars(value: &Value) -> u64 {
        match value {
            Value::String(text) => text.chars().count() as u64,
            Value::Array(items) => items.iter().map(chars).sum(),
            Value::Object(map) => map.values().map(chars).sum(),
            _ => 0,
        }
    }
    let total: u64 = [
        "system",
        "messages",
        "prompt",
        "input",
        "contents",
        "systemInstruction",
    ]
    .iter()
    .filter_map(|key| body.get(*key))
    .map(chars)
    .sum();
    total.div_ceil(4)
}

/// Adds the `x-ratelimit-*` headers of an admission.
pub fn rate_limit_headers(headers: &mut HeaderMap, admission: &Admission) {
    headers.insert("x-ratelimit-limit", HeaderValue::from(admission.limit));
    headers.insert(
        "x-ratelimit-remaining",
        HeaderValue::from(admission.remaining),
    );
    headers.insert(
        "x-ratelimit-reset",
        HeaderValue::from(admission.reset.as_secs()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn invocation_operation_follows_body_keys() {
        let mut chat = object(json!({"messages": []}));
        assert_eq!(operation_from_keys(&mut chat).ok(), Some(Operation::Chat));
        let mut text = object(json!({"text": ["a"]}));
        assert_eq!(
            operation_from_keys(&mut text).ok(),
            Some(Operation::Embeddings)
        );
        assert!(text.contains_key("input"));
        let mut none = object(json!({"foo": 1}));
        assert!(operation_from_keys(&mut none).is_err());
    }

    #[test]
    fn shapes_are_checked_per_operation() {
        assert!(
            check_shape(
                Operation::Chat,
                &object(json!({"messages": [{"role": "user"}]}))
            )
            .is_ok()
        );
        assert!(check_shape(Operation::Chat, &object(json!({"messages": "hi"}))).is_err());
        assert!(check_shape(Operation::Embeddings, &object(json!({"input": 3}))).is_err());
    }
}
