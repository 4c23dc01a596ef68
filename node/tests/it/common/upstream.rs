//! A mock OpenAI upstream written from OpenAI's published API reference: the real paths
//! (`/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `/v1/responses`, Azure's
//! `/openai/deployments/{deployment}/...?api-version=`), bearer or `api-key` auth with
//! OpenAI's 401 body, JSON bodies with `usage`, SSE streams framed as `data: {json}\n\n` with
//! `"usage":null` on content chunks, a usage chunk with empty `choices` when
//! `stream_options.include_usage` is set, and `data: [DONE]`; errors as
//! `{"error":{"message","type","param","code"}}`.
//!
//! Behaviour is chosen by the request's `model`:
//!
//! | model          | behaviour                                                           |
//! |----------------|---------------------------------------------------------------------|
//! | anything       | a normal answer; usage 11 prompt (3 cached) + 7 completion tokens   |
//! | `error-<st>`   | HTTP `<st>` with an OpenAI error body (`retry-after: 7` on 429)     |
//! | `slow-<ms>`    | waits `<ms>` before the response headers                            |
//! | `garbage`      | 200 with an HTML body                                               |
//! | `hold`         | streams one chunk, then waits for [`Upstream::release`]            |
//! | `cut`          | streams two chunks, then closes without `[DONE]`                    |
//! | `drip-<ms>`    | streams its chunks `<ms>` apart                                     |
//! | `gate`         | waits before the response headers until [`Upstream::open_gate`]    |
//! | `flaky-<n>-<st>` | fails its first `<n>` requests with HTTP `<st>` (`retry-after: 1`), then answers normally |
//!
//! Streaming `/v1/completions` requests are answered as a legacy text-completion SSE stream
//! (`"object":"text_completion"` chunks, the same usage chunk and `[DONE]`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// The key the upstream accepts.
pub const UPSTREAM_KEY: &str = "sk-upstream-secret-0123456789abcdef";

/// Usage the upstream reports for every answer.
pub const PROMPT_TOKENS: u64 = 11;
/// Cached part of the prompt tokens.
pub const CACHED_TOKENS: u64 = 3;
/// Completion tokens reported.
pub const COMPLETION_TOKENS: u64 = 7;

/// One request the upstream received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Query string.
    pub query: Option<String>,
    /// Headers.
    pub headers: HeaderMap,
    /// Body as JSON (Null if not JSON).
    pub body: Value,
    /// Body as text.
    pub raw: String,
}

#[derive(Default)]
struct Shared {
    seen: Mutex<Vec<Seen>>,
    release: Notify,
    streams_dropped: AtomicUsize,
    streams_finished: AtomicUsize,
    gate_open: std::sync::atomic::AtomicBool,
    gate: Notify,
    /// Requests seen per `flaky-*` model.
    flaky: Mutex<HashMap<String, usize>>,
}

/// A running mock upstream.
#[derive(Clone)]
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Upstream {
    /// Starts the upstream on `127.0.0.1:0`.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, shared }
    }

    /// `http://addr/v1`, the OpenAI-style base URL.
    pub fn base(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// `http://addr`, the Azure-style resource URL.
    pub fn root(&self) -> String {
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

    /// Lets `hold` streams continue.
    pub fn release(&self) {
        self.shared.release.notify_waiters();
    }

    /// Lets `gate` requests answer, now and from then on (unlike [`Upstream::release`], a
    /// request that arrives later is not held).
    pub fn open_gate(&self) {
        self.shared.gate_open.store(true, Ordering::SeqCst);
        self.shared.gate.notify_waiters();
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

fn error(status: StatusCode, message: &str, kind: &str, code: &str) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert("retry-after", http::HeaderValue::from_static("7"));
    }
    response
}

fn authorized(headers: &HeaderMap) -> bool {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let azure = headers.get("api-key").and_then(|v| v.to_str().ok());
    bearer == Some(UPSTREAM_KEY) || azure == Some(UPSTREAM_KEY)
}

fn usage_json() -> Value {
    json!({
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    })
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
    if !authorized(&parts.headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            "invalid_api_key",
        );
    }
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if let Some((failures, status)) = model.strip_prefix("flaky-").and_then(|rest| {
        let (n, status) = rest.split_once('-')?;
        Some((n.parse::<usize>().ok()?, status.parse::<u16>().ok()?))
    }) {
        let seen = {
            let mut counts = shared.flaky.lock().unwrap();
            let count = counts.entry(model.clone()).or_default();
            *count += 1;
            *count
        };
        if seen <= failures {
            let status = StatusCode::from_u16(status).unwrap();
            let mut response = error(status, "upstream is flaky", "server_error", "flaky");
            response
                .headers_mut()
                .insert("retry-after", http::HeaderValue::from_static("1"));
            return response;
        }
    }
    if let Some(status) = model
        .strip_prefix("error-")
        .and_then(|s| s.parse::<u16>().ok())
    {
        let status = StatusCode::from_u16(status).unwrap();
        let kind = if status.is_server_error() {
            "server_error"
        } else {
            "invalid_request_error"
        };
        return error(
            status,
            &format!("upstream says {}", status.as_u16()),
            kind,
            "upstream_code",
        );
    }
    if let Some(ms) = model
        .strip_prefix("slow-")
        .and_then(|s| s.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if model == "gate" {
        wait_for_gate(&shared).await;
    }
    if model == "garbage" {
        return (
            StatusCode::OK,
            [("content-type", "text/html")],
            "<html>oops</html>",
        )
            .into_response();
    }
    let suffix = [
        "/chat/completions",
        "/completions",
        "/embeddings",
        "/responses",
    ]
    .into_iter()
    .find(|s| path.ends_with(s));
    let streaming = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    match suffix {
        Some("/chat/completions") if streaming => stream_chat(shared, &body, &model),
        Some("/chat/completions") => axum::Json(json!({
            "id": "chatcmpl-upstream-1",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from upstream", "refusal": null},
                         "logprobs": null, "finish_reason": "stop"}],
            "usage": usage_json(),
            "system_fingerprint": "fp_test",
        }))
        .into_response(),
        Some("/completions") if streaming => stream_completions(shared, &body, &model),
        Some("/completions") => axum::Json(json!({
            "id": "cmpl-upstream-1",
            "object": "text_completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": [{"index": 0, "text": "completed text", "logprobs": null, "finish_reason": "stop"}],
            "usage": usage_json(),
        }))
        .into_response(),
        Some("/embeddings") => axum::Json(json!({
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}],
            "model": model,
            "usage": {"prompt_tokens": PROMPT_TOKENS, "total_tokens": PROMPT_TOKENS},
        }))
        .into_response(),
        Some("/responses") if streaming => stream_responses(&model),
        Some("/responses") => axum::Json(json!({
            "id": "resp_upstream_1",
            "object": "response",
            "created_at": 1_700_000_000,
            "status": "completed",
            "model": model,
            "output": [{"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                        "content": [{"type": "output_text", "text": "Hello from responses", "annotations": []}]}],
            "usage": {"input_tokens": PROMPT_TOKENS, "input_tokens_details": {"cached_tokens": CACHED_TOKENS},
                      "output_tokens": COMPLETION_TOKENS, "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS},
        }))
        .into_response(),
        _ => axum::Json(json!({"object": "list", "data": [], "path": path, "method": parts.method.as_str()}))
            .into_response(),
    }
}

/// Waits until the gate is open, with no lost wake-up: the waiter is registered before the
/// flag is checked.
async fn wait_for_gate(shared: &Shared) {
    loop {
        let notified = shared.gate.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if shared.gate_open.load(Ordering::SeqCst) {
            return;
        }
        notified.await;
    }
}

fn chunk(model: &str, delta: Value, finish: Value) -> String {
    let chunk = json!({
        "id": "chatcmpl-upstream-s", "object": "chat.completion.chunk", "created": 1_700_000_000,
        "model": model, "system_fingerprint": "fp_test",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        "usage": null,
    });
    format!("data: {chunk}\n\n")
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

fn stream_chat(shared: Arc<Shared>, body: &Value, model: &str) -> Response {
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let model = model.to_owned();
    let drip = model
        .strip_prefix("drip-")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_millis);
    let stream = async_stream(shared, move |tx| async move {
        let words = ["Hello", " from", " upstream"];
        for (index, word) in words.iter().enumerate() {
            let delta = if index == 0 {
                json!({"role": "assistant", "content": word})
            } else {
                json!({"content": word})
            };
            tx.send(chunk(&model, delta, Value::Null)).await?;
            if model == "hold" && index == 0 {
                return Err(Hold);
            }
            if model == "cut" && index == 1 {
                return Ok(false);
            }
            if let Some(pause) = drip {
                tokio::time::sleep(pause).await;
            }
        }
        tx.send(chunk(&model, json!({}), json!("stop"))).await?;
        if include_usage {
            let usage = json!({"id": "chatcmpl-upstream-s", "object": "chat.completion.chunk",
                "created": 1_700_000_000, "model": model, "choices": [], "usage": usage_json()});
            tx.send(format!("data: {usage}\n\n")).await?;
        }
        tx.send("data: [DONE]\n\n".to_owned()).await?;
        Ok(true)
    });
    sse(stream)
}

/// A legacy completions stream: three text chunks, a finish chunk, the usage chunk when
/// asked for, then `[DONE]`.
fn stream_completions(shared: Arc<Shared>, body: &Value, model: &str) -> Response {
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let model = model.to_owned();
    let stream = async_stream(shared, move |tx| async move {
        let piece = |text: &str, finish: Value| {
            let chunk = json!({
                "id": "cmpl-upstream-s", "object": "text_completion", "created": 1_700_000_000,
                "model": model,
                "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": finish}],
                "usage": null,
            });
            format!("data: {chunk}\n\n")
        };
        for word in ["completed", " text", " here"] {
            tx.send(piece(word, Value::Null)).await?;
        }
        tx.send(piece("", json!("stop"))).await?;
        if include_usage {
            let usage = json!({"id": "cmpl-upstream-s", "object": "text_completion",
                "created": 1_700_000_000, "model": model, "choices": [], "usage": usage_json()});
            tx.send(format!("data: {usage}\n\n")).await?;
        }
        tx.send("data: [DONE]\n\n".to_owned()).await?;
        Ok(true)
    });
    sse(stream)
}

fn stream_responses(model: &str) -> Response {
    let completed = json!({"type": "response.completed", "sequence_number": 3, "response": {
        "id": "resp_upstream_1", "object": "response", "status": "completed", "model": model, "output": [],
        "usage": {"input_tokens": PROMPT_TOKENS, "input_tokens_details": {"cached_tokens": CACHED_TOKENS},
                  "output_tokens": COMPLETION_TOKENS, "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}}});
    let events = [
        format!(
            "event: response.created\ndata: {}\n\n",
            json!({"type": "response.created", "sequence_number": 0})
        ),
        format!(
            "event: response.output_text.delta\ndata: {}\n\n",
            json!({"type": "response.output_text.delta", "sequence_number": 1, "delta": "Hello"})
        ),
        format!("event: response.completed\ndata: {completed}\n\n"),
    ];
    sse(Box::pin(futures::stream::iter(
        events.into_iter().map(Ok::<_, Infallible>),
    )))
}

/// Marker: a `hold` stream waits for release after its first chunk.
struct Hold;

impl From<tokio::sync::mpsc::error::SendError<String>> for Hold {
    fn from(_: tokio::sync::mpsc::error::SendError<String>) -> Self {
        Hold
    }
}

type ChunkStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<String, Infallible>> + Send>>;

/// Runs `produce` as a task feeding a channel; the returned stream carries a guard that
/// records whether the client stayed to the end.
fn async_stream<F, Fut>(shared: Arc<Shared>, produce: F) -> ChunkStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<String>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<bool, Hold>> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(16);
    let release_shared = shared.clone();
    tokio::spawn(async move {
        let hold_tx = tx.clone();
        match produce(tx).await {
            Ok(_) => {}
            Err(Hold) => {
                // Wait for the test to release, then finish the stream.
                release_shared.release.notified().await;
                let _ = hold_tx
                    .send(chunk("hold", json!({"content": " later"}), json!("stop")))
                    .await;
                let _ = hold_tx.send("data: [DONE]\n\n".to_owned()).await;
            }
        }
    });
    let guard = StreamGuard {
        shared,
        finished: false,
    };
    Box::pin(futures::stream::unfold(
        (rx, guard),
        |(mut rx, mut guard)| async move {
            match rx.recv().await {
                Some(item) => Some((Ok(item), (rx, guard))),
                None => {
                    guard.finished = true;
                    drop(guard);
                    None
                }
            }
        },
    ))
}

fn sse(stream: ChunkStream) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream; charset=utf-8")
        .header("cache-control", "no-cache")
        .header("x-request-id", "req_upstream")
        .body(Body::from_stream(futures::StreamExt::map(stream, |item| {
            item.map(Bytes::from)
        })))
        .unwrap()
}

/// Convenience: a map of env vars holding the upstream key.
pub fn env() -> HashMap<String, String> {
    HashMap::from([("UPSTREAM_KEY".to_owned(), UPSTREAM_KEY.to_owned())])
}
