//! The unified call: authenticate, read the body, resolve the endpoint and operation,
//! admit against the endpoint's limit, pick a target, call the provider, and answer — as
//! JSON or as a stream — with the usage record closed exactly once on every path.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{Map, Value};

use super::Gateway;
use super::accounting::Accounting;
use super::auth::authenticate;
use super::body::{parse_object, read_limited};
use super::context::{RequestContext, UpstreamTime};
use super::error::{ApiError, ErrorCode, ErrorShape};
use super::limiter::Admission;
use super::runtime::Runtime;
use super::stream::MeteredStream;
use crate::config::{Endpoint, KeyInfo};
use crate::providers::{Operation, ProviderRequest};
use crate::usage::RouteKind;

/// Where a route finds the endpoint name.
#[derive(Debug, Clone)]
pub enum EndpointFrom {
    /// The body's `model` field (OpenAI-style routes).
    BodyModel,
    /// A path segment (MLflow invocations routes).
    Path(String),
}

/// How a route decides the operation.
#[derive(Debug, Clone, Copy)]
pub enum OperationFrom {
    /// The route serves one operation.
    Fixed(Operation),
    /// From the body's keys: `messages` → chat, `prompt` → completions, `input`/`text` →
    /// embeddings (MLflow invocations).
    BodyKeys,
}

/// Whether the answer is streamed.
#[derive(Debug, Clone, Copy)]
pub enum StreamFrom {
    /// The body's `stream` field (OpenAI, Anthropic).
    Body,
    /// Fixed by the route (Gemini's `:streamGenerateContent`).
    Fixed(bool),
}

/// What a route asks of [`invoke`].
#[derive(Debug, Clone)]
pub struct CallSpec {
    /// Route family, for accounting.
    pub route: RouteKind,
    /// Endpoint source.
    pub endpoint: EndpointFrom,
    /// Operation source.
    pub operation: OperationFrom,
    /// Streaming source.
    pub stream: StreamFrom,
    /// Error format of the route's clients.
    pub shape: ErrorShape,
}

/// Everything checked before a provider is called.
struct Admitted {
    endpoint: Arc<Endpoint>,
    op: Operation,
    body: Map<String, Value>,
    stream: bool,
    client_wants_usage: bool,
    admission: Option<Admission>,
}

/// Serves one unified or passthrough call.
pub async fn invoke(
    gateway: &Gateway,
    context: RequestContext,
    spec: CallSpec,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let runtime = gateway.runtime();
    let mut accounting = Accounting::open(
        gateway.sink(),
        runtime.config.prices.clone(),
        &context,
        spec.route,
    );
    let admitted = match admit(&runtime, &spec, &headers, body, &mut accounting).await {
        Ok(admitted) => admitted,
        Err(error) => return accounting.reject(error, spec.shape),
    };
    let Admitted {
        endpoint,
        op,
        mut body,
        stream,
        client_wants_usage,
        admission,
    } = admitted;

    let target = endpoint.pick_target(fastrand::u32(0..endpoint.total_weight));
    body.insert("model".into(), Value::String(target.model.clone()));
    accounting.upstream_begins(target, stream);
    let target_header =
        HeaderValue::from_str(&format!("{}/{}", target.provider, target.model)).ok();
    let request = ProviderRequest {
        op,
        target,
        body,
        client_wants_usage,
        timeouts: endpoint.timeouts,
        client_headers: &headers,
    };

    let mut response = if stream {
        accounting.estimate_input(estimate_input_tokens(&request.body));
        match gateway.providers().stream(request).await {
            Ok(events) => {
                let upstream = accounting.upstream_elapsed();
                let body =
                    Body::from_stream(MeteredStream::new(events, accounting, 200, spec.shape));
                let mut response = Response::new(body);
                let headers = response.headers_mut();
                headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream"),
                );
                headers.insert(
                    http::header::CACHE_CONTROL,
                    HeaderValue::from_static("no-cache"),
                );
                headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
                response.extensions_mut().insert(UpstreamTime(upstream));
                response
            }
            Err(err) => accounting.reject(err, spec.shape),
        }
    } else {
        match gateway.providers().complete(request).await {
            Ok(completion) => {
                accounting.upstream_ends();
                accounting.usage(completion.usage);
                let upstream = accounting.upstream_elapsed();
                let mut answer = completion.body;
                if spec.route == RouteKind::Unified {
                    answer.insert(
                        "provider".into(),
                        Value::String(target.provider.name().into()),
                    );
                }
                accounting.finish(200);
                let mut response = (StatusCode::OK, Json(Value::Object(answer))).into_response();
                response.extensions_mut().insert(UpstreamTime(upstream));
                response
            }
            Err(err) => accounting.reject(err, spec.shape),
        }
    };
    if let Some(value) = target_header {
        response.headers_mut().insert("x-floodgate-target", value);
    }
    if let Some(admission) = admission {
        rate_limit_headers(response.headers_mut(), &admission);
    }
    response
}

async fn admit(
    runtime: &Runtime,
    spec: &CallSpec,
    headers: &HeaderMap,
    body: Body,
    accounting: &mut Accounting,
) -> Result<Admitted, ApiError> {
    let config = &runtime.config;
    let key = authenticate(&config.auth, headers)?;
    if let Some(key) = &key {
        accounting.key(&key.id);
    }
    let bytes = read_limited(headers, body, config.limits.max_body_bytes).await?;
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

    let admission = match runtime.limiters.get(&endpoint.name) {
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
    Ok(Admitted {
        endpoint,
        op,
        body,
        stream,
        client_wants_usage,
        admission,
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
fn estimate_input_tokens(body: &Map<String, Value>) -> u64 {
    fn chars(value: &Value) -> u64 {
        match value {
            Value::String(text) => text.chars().count() as u64,
            Value::Array(items) => items.iter().map(chars).sum(),
            Value::Object(map) => map.values().map(chars).sum(),
            _ => 0,
        }
    }
    let total: u64 = ["messages", "prompt", "input"]
        .iter()
        .filter_map(|key| body.get(*key))
        .map(chars)
        .sum();
    total.div_ceil(4)
}

fn rate_limit_headers(headers: &mut HeaderMap, admission: &Admission) {
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
