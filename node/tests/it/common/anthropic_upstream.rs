//! A mock Anthropic upstream written from the Messages API reference: `POST /v1/messages`
//! only, `x-api-key` auth (Anthropic's 401 body otherwise), a required
//! `anthropic-version: 2023-06-01`, and a request body that must be a valid Messages request
//! (`model`, a positive `max_tokens`, non-empty `messages` alternating user/assistant and
//! starting with user, `system` only at the top level, known content block types, no
//! `Authorization` header). Anything else is answered as Anthropic does —
//! `400 {"type":"error","error":{"type":"invalid_request_error",...}}` — and noted in
//! [`AnthropicUpstream::violations`].
//!
//! Answers are in the exact wire format: a `message` object with `usage` (11 input, 2 cache
//! creation, 5 cache read, 7 output tokens), and SSE streams with every event type:
//! `message_start`, `content_block_start`, `ping`, `text_delta`, `input_json_delta` (when the
//! request has tools), `content_block_stop`, `message_delta` (stop reason, output tokens),
//! `message_stop`. Behaviour by `model`:
//!
//! | model          | behaviour                                                        |
//! |----------------|------------------------------------------------------------------|
//! | anything       | a normal answer (a `tool_use` block too when tools were given)   |
//! | `error-<st>`   | HTTP `<st>` with Anthropic's error body (`retry-after: 7` on 429; `overloaded_error` on 529) |
//! | `leak-key`     | 401 whose message repeats the presented key                      |
//! | `hold`         | streams `message_start` and one delta, then holds the stream open until the reader goes away |
//! | `cut`          | streams two deltas, then closes without `message_stop`           |
//! | `overloaded`   | streams one delta, then an `event: error` with `overloaded_error` |
//! | `late-usage`   | `message_start` carries no usage; `message_delta` carries all of it |
//! | `…ttl-split…`  | a normal answer whose cache writes are [`TTL_SPLIT_WRITES`], split by lifetime in `usage.cache_creation` |

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

/// The key the upstream accepts.
pub const ANTHROPIC_KEY: &str = "sk-ant-api03-upstream-secret-0123456789";
/// `usage.input_tokens` of every answer (uncached input).
pub const INPUT: u64 = 11;
/// `usage.cache_creation_input_tokens`.
pub const CACHE_CREATION: u64 = 2;
/// `usage.cache_read_input_tokens`.
pub const CACHE_READ: u64 = 5;
/// `usage.output_tokens` of a finished answer.
pub const OUTPUT: u64 = 7;
/// All input tokens, as the gateway records them.
pub const PROMPT_TOKENS: u64 = INPUT + CACHE_CREATION + CACHE_READ;
/// Cache writes of a `ttl-split` model: (five-minute, one-hour) tokens, reported as
/// `cache_creation.ephemeral_5m_input_tokens` / `ephemeral_1h_input_tokens`, their sum as
/// `cache_creation_input_tokens`.
pub const TTL_SPLIT_WRITES: (u64, u64) = (300, 200);
/// The text of every answer, as streamed in pieces.
pub const PIECES: [&str; 3] = ["Hello", " from", " Claude"];

/// One request the upstream received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Path.
    pub path: String,
    /// Headers.
    pub headers: HeaderMap,
    /// Body as JSON.
    pub body: Value,
    /// Body as text.
    pub raw: String,
}

#[derive(Default)]
struct Shared {
    seen: Mutex<Vec<Seen>>,
    violations: Mutex<Vec<String>>,
    streams_dropped: AtomicUsize,
}

/// A running mock Anthropic API.
#[derive(Clone)]
pub struct AnthropicUpstream {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    shared: Arc<Shared>,
}

impl AnthropicUpstream {
    /// Starts on `127.0.0.1:0`.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, shared }
    }

    /// `http://addr`: the `api_base` (Anthropic bases are the bare origin).
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// The last request received.
    pub fn last(&self) -> Seen {
        self.seen().pop().expect("the upstream received nothing")
    }

    /// Every way a request broke the API's rules.
    pub fn violations(&self) -> Vec<String> {
        self.shared.violations.lock().unwrap().clone()
    }

    /// Streams whose reader went away before the end.
    pub fn streams_dropped(&self) -> usize {
        self.shared.streams_dropped.load(Ordering::SeqCst)
    }
}

/// Anthropic's error `type` for a status.
pub fn error_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

fn error(status: u16, message: &str) -> Response {
    let body = json!({"type": "error", "error": {"type": error_type(status), "message": message},
                      "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"});
    let mut response = (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
    response.headers_mut().insert(
        "request-id",
        "req_011CSHoEeqs5C35K2UUqR7Fy".parse().unwrap(),
    );
    if status == 429 {
        response
            .headers_mut()
            .insert("retry-after", http::HeaderValue::from_static("7"));
    }
    response
}

/// Every rule of the Messages API this request breaks.
fn check(headers: &HeaderMap, body: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    if headers.get("anthropic-version").map(|v| v.as_bytes()) != Some(b"2023-06-01") {
        problems.push("anthropic-version: header is required (2023-06-01)".to_owned());
    }
    if headers.contains_key("authorization") {
        problems.push("an Authorization header was sent to Anthropic".to_owned());
    }
    if !body["model"].is_string() {
        problems.push("model: Field required".to_owned());
    }
    if body["max_tokens"].as_u64().is_none_or(|n| n == 0) {
        problems.push("max_tokens: Field required (a positive integer)".to_owned());
    }
    match &body["system"] {
        Value::Null | Value::String(_) => {}
        Value::Array(blocks) if blocks.iter().all(|b| b["type"] == "text") => {}
        _ => problems.push("system: must be a string or text blocks".to_owned()),
    }
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    if messages.is_empty() {
        problems.push("messages: at least one message is required".to_owned());
    }
    let known = [
        "text",
        "image",
        "tool_use",
        "tool_result",
        "document",
        "thinking",
    ];
    for (i, message) in messages.iter().enumerate() {
        let expected = if i % 2 == 0 { "user" } else { "assistant" };
        if message["role"] != expected {
            problems.push(format!(
                "messages.{i}.role: roles must alternate starting with user, got {}",
                message["role"]
            ));
        }
        match &message["content"] {
            Value::String(_) => {}
            Value::Array(blocks) => {
                for (j, block) in blocks.iter().enumerate() {
                    let kind = block["type"].as_str().unwrap_or("");
                    if !known.contains(&kind) {
                        problems.push(format!("messages.{i}.content.{j}.type: unknown `{kind}`"));
                    }
                    if kind == "image"
                        && !matches!(block["source"]["type"].as_str(), Some("url" | "base64"))
                    {
                        problems.push(format!("messages.{i}.content.{j}.source: bad image source"));
                    }
                    if kind == "tool_use" && !block["input"].is_object() {
                        problems.push(format!("messages.{i}.content.{j}.input: must be an object"));
                    }
                }
            }
            _ => problems.push(format!("messages.{i}.content: must be a string or blocks")),
        }
    }
    problems
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let raw = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let path = parts.uri.path().to_owned();
    shared.seen.lock().unwrap().push(Seen {
        path: path.clone(),
        headers: parts.headers.clone(),
        body: body.clone(),
        raw: String::from_utf8_lossy(&raw).into_owned(),
    });
    if parts.method != http::Method::POST || path != "/v1/messages" {
        return error(404, &format!("Not found: {} {path}", parts.method));
    }
    let key = parts
        .headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let model = body["model"].as_str().unwrap_or("").to_owned();
    if model == "leak-key" {
        return error(401, &format!("invalid x-api-key: {key}"));
    }
    if key != ANTHROPIC_KEY {
        return error(401, "invalid x-api-key");
    }
    let problems = check(&parts.headers, &body);
    if !problems.is_empty() {
        shared
            .violations
            .lock()
            .unwrap()
            .extend(problems.iter().cloned());
        return error(400, &problems.join("; "));
    }
    if let Some(status) = model
        .strip_prefix("error-")
        .and_then(|s| s.parse::<u16>().ok())
    {
        let message = if status == 529 {
            "Overloaded".to_owned()
        } else {
            format!("upstream says {status}")
        };
        return error(status, &message);
    }
    let tools = body["tools"].as_array().is_some_and(|t| !t.is_empty());
    if body["stream"] == true {
        return stream(shared, model, tools);
    }
    let mut content = vec![json!({"type": "text", "text": PIECES.concat()})];
    if tools {
        content.push(
            json!({"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9",
                            "name": "get_weather", "input": {"city": "Paris"}}),
        );
    }
    axum::Json(json!({
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
        "model": model, "content": content,
        "stop_reason": if tools { "tool_use" } else { "end_turn" }, "stop_sequence": null,
        "usage": usage(&model, OUTPUT),
    }))
    .into_response()
}

/// The `usage` object of an answer to `model` with `output` output tokens.
fn usage(model: &str, output: u64) -> Value {
    let mut usage = json!({"input_tokens": INPUT, "cache_creation_input_tokens": CACHE_CREATION,
                           "cache_read_input_tokens": CACHE_READ, "output_tokens": output});
    if model.contains("ttl-split") {
        let (short, long) = TTL_SPLIT_WRITES;
        usage["cache_creation_input_tokens"] = json!(short + long);
        usage["cache_creation"] =
            json!({"ephemeral_5m_input_tokens": short, "ephemeral_1h_input_tokens": long});
    }
    usage
}

fn event(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// Counts a stream as dropped when its body goes away before the end.
struct StreamGuard {
    shared: Arc<Shared>,
    finished: bool,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.streams_dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn stream(shared: Arc<Shared>, model: String, tools: bool) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(32);
    tokio::spawn(async move {
        let late = model == "late-usage";
        let start_usage = usage(&model, 1);
        let mut message = json!({"id": "msg_014p7gG3wDgGV9EUtLvnow3U", "type": "message",
            "role": "assistant", "model": model, "content": [], "stop_reason": null,
            "stop_sequence": null, "usage": start_usage});
        if late {
            message.as_object_mut().unwrap().remove("usage");
        }
        let mut events = vec![
            event(
                "message_start",
                json!({"type": "message_start", "message": message}),
            ),
            event(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                                                "content_block": {"type": "text", "text": ""}}),
            ),
            event("ping", json!({"type": "ping"})),
        ];
        for piece in PIECES {
            events.push(event(
                "content_block_delta",
                json!({"type": "content_block_delta",
                "index": 0, "delta": {"type": "text_delta", "text": piece}}),
            ));
        }
        events.push(event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ));
        if tools {
            events.push(event(
                "content_block_start",
                json!({"type": "content_block_start", "index": 1,
                "content_block": {"type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                                  "name": "get_weather", "input": {}}}),
            ));
            for partial in ["", "{\"city\": ", "\"Paris\"}"] {
                events.push(event(
                    "content_block_delta",
                    json!({"type": "content_block_delta",
                    "index": 1, "delta": {"type": "input_json_delta", "partial_json": partial}}),
                ));
            }
            events.push(event(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 1}),
            ));
        }
        let mut end_usage = json!({"output_tokens": OUTPUT});
        if late {
            end_usage = usage(&model, OUTPUT);
        }
        events.push(event("message_delta", json!({"type": "message_delta",
            "delta": {"stop_reason": if tools { "tool_use" } else { "end_turn" }, "stop_sequence": null},
            "usage": end_usage})));
        events.push(event("message_stop", json!({"type": "message_stop"})));

        let deltas_sent =
            |events: &[String]| events.iter().filter(|e| e.contains("_delta\"")).count();
        for (i, item) in events.iter().enumerate() {
            if tx.send(item.clone()).await.is_err() {
                return;
            }
            let sent = deltas_sent(&events[..=i]);
            match model.as_str() {
                "hold" if sent == 1 && item.contains("text_delta") => {
                    tx.closed().await;
                    return;
                }
                "cut" if sent == 2 && item.contains("text_delta") => return,
                "overloaded" if sent == 1 && item.contains("text_delta") => {
                    let _ = tx
                        .send(event(
                            "error",
                            json!({"type": "error",
                            "error": {"type": "overloaded_error", "message": "Overloaded"}}),
                        ))
                        .await;
                    return;
                }
                _ => {}
            }
        }
    });
    let guard = StreamGuard {
        shared,
        finished: false,
    };
    let body = futures::stream::unfold((rx, guard), |(mut rx, mut guard)| async move {
        match rx.recv().await {
            Some(item) => Some((
                Ok::<_, std::convert::Infallible>(Bytes::from(item)),
                (rx, guard),
            )),
            None => {
                guard.finished = true;
                drop(guard);
                None
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream; charset=utf-8")
        .header("cache-control", "no-cache")
        .header("request-id", "req_011CSHoEeqs5C35K2UUqR7Fy")
        .body(Body::from_stream(body))
        .unwrap()
}
