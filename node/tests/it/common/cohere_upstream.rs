//! A mock Cohere upstream written from Cohere's API reference (v2): `POST /v2/chat` (JSON,
//! or with `"stream": true` an SSE stream framed `event: <type>` + `data: {"type": ...}` and
//! ended by `data: [DONE]`) and `POST /v2/embed`, Bearer auth, and errors as
//! `{"id", "message"}` with the HTTP status.
//!
//! It **validates** what it receives the way Cohere does, answering `400` with Cohere's
//! error body when a request is not Cohere's: the bearer key must be [`COHERE_KEY`] (else
//! `401`); only Cohere's request fields are accepted (`p`, `k`, `stop_sequences`, ... —
//! OpenAI names such as `top_p` or `stop` are refused); messages must have Cohere's roles
//! and content blocks; tools must be `{type: function, function: {name, parameters}}`;
//! `tool_choice` must be `REQUIRED` or `NONE`; embed needs a valid `input_type` and
//! `embedding_types`.
//!
//! Answers come from the golden fixtures in `tests/fixtures/cohere/`: a request with
//! `tools` gets the tool-call answer, others the text answer. Behaviour by `model`:
//!
//! | model          | behaviour                                                           |
//! |----------------|---------------------------------------------------------------------|
//! | anything       | a normal answer (usage below)                                       |
//! | `error-<st>`   | HTTP `<st>` with Cohere's error body (`retry-after: 7` on 429)      |
//! | `leaky-401`    | `401` whose message echoes the presented key (a hostile upstream)   |
//! | `gen-error`    | `finish_reason: ERROR` (JSON, or in the stream's `message-end`)     |
//! | `hold`         | streams up to the first delta, then holds the stream open until the reader goes away |
//! | `cut`          | streams everything but `message-end` and `[DONE]`, then closes      |

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::upstream::Seen;

/// The key the upstream accepts.
pub const COHERE_KEY: &str = "co-upstream-secret-0123456789abcdef";

/// Billed usage of the text answer (stream and JSON).
pub const TEXT_BILLED: (u64, u64) = (118, 14);
/// Processed (`usage.tokens`) counts of the text answer: larger, and not what is recorded.
pub const TEXT_TOKENS: (u64, u64) = (1102, 39);
/// Billed usage of the tool-call answer (stream and JSON).
pub const TOOL_BILLED: (u64, u64) = (37, 28);
/// Billed input tokens per embedded text.
pub const EMBED_TOKENS_PER_TEXT: u64 = 2;
/// The text of the text answer.
pub const TEXT_ANSWER: &str = "It is 24°C in Madrid and 28°C in Brasilia.";

const TEXT_STREAM: &str = include_str!("../../fixtures/cohere/stream_text.cohere.sse");
const TOOL_STREAM: &str = include_str!("../../fixtures/cohere/stream_tool_call.cohere.sse");
const TOOL_ANSWER: &str = include_str!("../../fixtures/cohere/chat_response.cohere.json");

const CHAT_FIELDS: &[&str] = &[
    "stream",
    "model",
    "messages",
    "tools",
    "strict_tools",
    "documents",
    "citation_options",
    "response_format",
    "safety_mode",
    "max_tokens",
    "stop_sequences",
    "temperature",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "k",
    "p",
    "logprobs",
    "tool_choice",
    "thinking",
    "priority",
];
const EMBED_FIELDS: &[&str] = &[
    "model",
    "input_type",
    "texts",
    "images",
    "inputs",
    "max_tokens",
    "output_dimension",
    "embedding_types",
    "truncate",
    "priority",
];

#[derive(Default)]
struct Shared {
    seen: Mutex<Vec<Seen>>,
    streams_dropped: AtomicUsize,
    streams_finished: AtomicUsize,
}

/// A running mock Cohere.
#[derive(Clone)]
pub struct CohereUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl CohereUpstream {
    /// Starts the upstream on `127.0.0.1:0`.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, shared }
    }

    /// `http://addr`: Cohere's `api_base` is the bare origin.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// Number of requests received.
    pub fn count(&self) -> usize {
        self.shared.seen.lock().unwrap().len()
    }

    /// Streams whose client went away before the stream ended.
    pub fn streams_dropped(&self) -> usize {
        self.shared.streams_dropped.load(Ordering::SeqCst)
    }

    /// Streams sent to the end.
    pub fn streams_finished(&self) -> usize {
        self.shared.streams_finished.load(Ordering::SeqCst)
    }
}

/// Cohere's error answer.
fn error(status: StatusCode, message: &str) -> Response {
    let body = json!({"id": "5b4f7c1e-9a1d-4c55-8e0b-2a6d1c3e4f70", "message": message});
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert("retry-after", http::HeaderValue::from_static("7"));
    }
    response
}

fn invalid(why: impl std::fmt::Display) -> Response {
    error(StatusCode::BAD_REQUEST, &format!("invalid request: {why}"))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let raw = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let path = parts.uri.path().to_owned();
    shared.seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path: path.clone(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers.clone(),
        body: body.clone(),
        raw: String::from_utf8_lossy(&raw).into_owned(),
    });
    let model = body["model"].as_str().unwrap_or("").to_owned();
    if model == "leaky-401" {
        let presented = bearer(&parts.headers).unwrap_or("");
        return error(
            StatusCode::UNAUTHORIZED,
            &format!("invalid api token {presented}"),
        );
    }
    if bearer(&parts.headers) != Some(COHERE_KEY) {
        return error(StatusCode::UNAUTHORIZED, "invalid api token");
    }
    if parts.method != http::Method::POST {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    let json_body = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_body || !body.is_object() {
        return invalid("the body must be a JSON object");
    }
    if let Some(status) = model
        .strip_prefix("error-")
        .and_then(|s| s.parse::<u16>().ok())
    {
        let status = StatusCode::from_u16(status).unwrap();
        return error(status, &format!("upstream says {}", status.as_u16()));
    }
    match path.as_str() {
        "/v2/chat" => match check_chat(&body) {
            Err(why) => invalid(why),
            Ok(()) => chat(shared, &body, &model),
        },
        "/v2/embed" => match check_embed(&body) {
            Err(why) => invalid(why),
            Ok(()) => embed(&body),
        },
        _ => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

fn check_fields(body: &Value, allowed: &[&str]) -> Result<(), String> {
    let object = body.as_object().ok_or("the body must be an object")?;
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(unknown) => Err(format!(
            "unknown field: parameter {unknown} is not a valid field"
        )),
        None => Ok(()),
    }
}

fn check_chat(body: &Value) -> Result<(), String> {
    check_fields(body, CHAT_FIELDS)?;
    body["model"].as_str().ok_or("model is required")?;
    let messages = body["messages"].as_array().ok_or("messages is required")?;
    if messages.is_empty() {
        return Err("messages must not be empty".into());
    }
    for (i, message) in messages.iter().enumerate() {
        check_message(message).map_err(|why| format!("messages[{i}]: {why}"))?;
    }
    if let Some(tools) = body.get("tools") {
        for tool in tools.as_array().ok_or("tools must be an array")? {
            if tool["type"] != "function"
                || !tool["function"]["name"].is_string()
                || !tool["function"]["parameters"].is_object()
            {
                return Err(format!("invalid tool {tool}"));
            }
        }
    }
    match body.get("tool_choice").map(|c| c.as_str()) {
        None | Some(Some("REQUIRED" | "NONE")) => {}
        Some(_) => return Err("tool_choice must be REQUIRED or NONE".into()),
    }
    if let Some(stops) = body.get("stop_sequences")
        && !stops
            .as_array()
            .is_some_and(|s| s.iter().all(Value::is_string))
    {
        return Err("stop_sequences must be a list of strings".into());
    }
    for number in ["temperature", "p", "frequency_penalty", "presence_penalty"] {
        if body.get(number).is_some_and(|v| !v.is_number()) {
            return Err(format!("{number} must be a number"));
        }
    }
    for integer in ["max_tokens", "k", "seed"] {
        if body.get(integer).is_some_and(|v| !v.is_u64()) {
            return Err(format!("{integer} must be an integer"));
        }
    }
    Ok(())
}

fn check_blocks(content: &Value, allowed: &[&str]) -> Result<(), String> {
    if content.is_string() {
        return Ok(());
    }
    for block in content
        .as_array()
        .ok_or("content must be a string or a list")?
    {
        match block["type"].as_str() {
            Some("text") if block["text"].is_string() => {}
            Some("image_url") if block["image_url"]["url"].is_string() => {}
            _ => return Err(format!("invalid content block {block}")),
        }
        if !allowed.contains(&block["type"].as_str().unwrap_or("")) {
            return Err(format!("{} blocks are not allowed here", block["type"]));
        }
    }
    Ok(())
}

fn check_message(message: &Value) -> Result<(), String> {
    match message["role"].as_str() {
        Some("system") => check_blocks(&message["content"], &["text"]),
        Some("user") => check_blocks(&message["content"], &["text", "image_url"]),
        Some("assistant") => {
            if let Some(content) = message.get("content") {
                check_blocks(content, &["text"])?;
            }
            if let Some(calls) = message.get("tool_calls") {
                for call in calls.as_array().ok_or("tool_calls must be a list")? {
                    if !call["id"].is_string()
                        || call["type"] != "function"
                        || !call["function"]["name"].is_string()
                        || !call["function"]["arguments"].is_string()
                    {
                        return Err(format!("invalid tool call {call}"));
                    }
                }
            }
            Ok(())
        }
        Some("tool") => {
            if !message["tool_call_id"].is_string() {
                return Err("tool_call_id is required".into());
            }
            check_blocks(&message["content"], &["text"])
        }
        _ => Err(format!("invalid role {}", message["role"])),
    }
}

fn check_embed(body: &Value) -> Result<(), String> {
    check_fields(body, EMBED_FIELDS)?;
    body["model"].as_str().ok_or("model is required")?;
    match body["input_type"].as_str() {
        Some("search_document" | "search_query" | "classification" | "clustering" | "image") => {}
        _ => return Err("input_type must be one of search_document, search_query, classification, clustering, image".into()),
    }
    let texts = body["texts"].as_array().ok_or("texts is required")?;
    if texts.is_empty() || texts.len() > 96 || !texts.iter().all(Value::is_string) {
        return Err("texts must hold 1 to 96 strings".into());
    }
    if body["embedding_types"] != json!(["float"]) {
        return Err("this mock answers embedding_types [\"float\"]".into());
    }
    Ok(())
}

fn usage(billed: (u64, u64), tokens: (u64, u64)) -> Value {
    json!({"billed_units": {"input_tokens": billed.0, "output_tokens": billed.1},
           "tokens": {"input_tokens": tokens.0, "output_tokens": tokens.1}})
}

fn chat(shared: Arc<Shared>, body: &Value, model: &str) -> Response {
    let with_tools = body.get("tools").is_some();
    if body["stream"] == true {
        return stream(shared, with_tools, model);
    }
    let mut answer: Value = if with_tools {
        serde_json::from_str(TOOL_ANSWER).unwrap()
    } else {
        json!({
            "id": "c14c80c3-18eb-4519-9460-6c92edd8cfb4",
            "finish_reason": "COMPLETE",
            "message": {"role": "assistant", "content": [{"type": "text", "text": TEXT_ANSWER}]},
            "usage": usage(TEXT_BILLED, TEXT_TOKENS),
        })
    };
    if model == "gen-error" {
        answer["finish_reason"] = json!("ERROR");
    }
    axum::Json(answer).into_response()
}

fn embed(body: &Value) -> Response {
    let texts = body["texts"].as_array().cloned().unwrap_or_default();
    let vectors: Vec<Value> = (0..texts.len())
        .map(|i| json!([0.016296387 + i as f64, -0.008354187, -0.04699707]))
        .collect();
    axum::Json(json!({
        "id": "da6e531f-54c6-4a73-bf92-f60566d8d753",
        "texts": texts,
        "embeddings": {"float": vectors},
        "meta": {"api_version": {"version": "2"},
                 "billed_units": {"input_tokens": EMBED_TOKENS_PER_TEXT * texts.len() as u64}},
        "response_type": "embeddings_by_type",
    }))
    .into_response()
}

/// The fixture's events, one `event:`/`data:` block each (the blank line included).
fn events(fixture: &str) -> Vec<String> {
    fixture
        .split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| format!("{block}\n\n"))
        .collect()
}

/// Counts a stream as finished or dropped.
struct StreamGuard {
    shared: Arc<Shared>,
    finished: bool,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let counter = if self.finished {
            &self.shared.streams_finished
        } else {
            &self.shared.streams_dropped
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

fn stream(shared: Arc<Shared>, with_tools: bool, model: &str) -> Response {
    let mut events = events(if with_tools { TOOL_STREAM } else { TEXT_STREAM });
    match model {
        "cut" => events.retain(|e| !e.contains("message-end") && !e.contains("[DONE]")),
        "gen-error" => {
            for event in &mut events {
                if event.contains("message-end") {
                    *event = event
                        .replace(
                            "\"finish_reason\":\"COMPLETE\"",
                            "\"finish_reason\":\"ERROR\",\"error\":\"the model failed\"",
                        )
                        .replace(
                            "\"finish_reason\":\"TOOL_CALL\"",
                            "\"finish_reason\":\"ERROR\",\"error\":\"the model failed\"",
                        );
                }
            }
        }
        _ => {}
    }
    let hold_after = (model == "hold").then(|| {
        events
            .iter()
            .position(|e| e.contains("-delta"))
            .unwrap_or(0)
    });
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(16);
    tokio::spawn(async move {
        for (index, event) in events.into_iter().enumerate() {
            if tx.send(event).await.is_err() {
                return;
            }
            if hold_after == Some(index) {
                {
                    tx.closed().await;
                    return;
                }
            }
        }
    });
    let guard = StreamGuard {
        shared,
        finished: false,
    };
    let body = futures::stream::unfold((rx, guard), |(mut rx, mut guard)| async move {
        match rx.recv().await {
            Some(event) => Some((Ok::<_, Infallible>(Bytes::from(event)), (rx, guard))),
            None => {
                guard.finished = true;
                drop(guard);
                None
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(body))
        .unwrap()
}
