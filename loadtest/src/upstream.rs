//! The mock upstream: an axum server speaking OpenAI's chat completions, completions and
//! embeddings wire formats (`POST /v1/chat/completions`, `/v1/completions`,
//! `/v1/embeddings`) and Anthropic's Messages (`POST /v1/messages`), as JSON or SSE in each
//! API's real framing, and keeping the ground truth of what it served, tokens and cost
//! included (`GET /__stats`). It must stay much cheaper than the gateway it is used to
//! measure: every response body is built once at start-up and cloned (a reference count)
//! per request; the only per-request work is parsing the fields that choose the response
//! shape. An optional concurrency limit gives it a known capacity (for the frontier's test).
//! Waits (latency, chunk interval, stall) use tokio's timer, whose resolution is 1 ms: a
//! `fixed:2ms` latency is served in 2–3 ms.
//!
//! Owns no state besides its counters; it never calls out to anything.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::scenario::Api;
use crate::spec::{Latency, Stall};

/// Prompt tokens the mock reports for every request (the body is not tokenised: constant
/// counts keep the books trivially checkable and the mock cheap).
pub const PROMPT_TOKENS: u64 = 12;

/// What the mock upstream does.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Wait before the response (before the first chunk for streams).
    pub latency: Latency,
    /// Share of requests answered `500` at once.
    pub error_rate: f64,
    /// Share of requests answered `429` at once.
    pub throttle_rate: f64,
    /// Content chunks per stream; also the completion tokens of every response.
    pub stream_chunks: u32,
    /// Pause between two stream chunks.
    pub chunk_interval: Duration,
    /// An optional one-off stall (used to test coordinated-omission correction).
    pub stall: Option<Stall>,
    /// The price the books are kept at.
    pub price: Price,
    /// Most requests served at once (waiting included); later ones queue for a slot.
    pub max_concurrency: Option<usize>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            latency: Latency::Zero,
            error_rate: 0.0,
            throttle_rate: 0.0,
            stream_chunks: 8,
            chunk_interval: Duration::ZERO,
            stall: None,
            price: Price::default(),
            max_concurrency: None,
        }
    }
}

/// A snapshot of the ground-truth counters, as served by `GET /__stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// Requests received on the four APIs (answered or refused).
    pub requests: u64,
    /// Requests answered successfully (JSON or a complete stream started).
    pub completed: u64,
    /// Of `completed`, how many were streams.
    pub streams: u64,
    /// Prompt tokens reported in successful responses.
    pub prompt_tokens: u64,
    /// Completion tokens reported in successful responses.
    pub completion_tokens: u64,
    /// Cost of the successful responses at the configured price, micro-dollars.
    pub cost_micros: u64,
    /// Requests refused with an injected `429`.
    pub injected_429: u64,
    /// Requests refused with an injected `500`.
    pub injected_500: u64,
    /// Requests whose body was not valid JSON (`400`).
    pub bad_requests: u64,
}

#[derive(Debug, Default)]
struct Stats {
    requests: AtomicU64,
    completed: AtomicU64,
    streams: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    cost_micros: AtomicU64,
    injected_429: AtomicU64,
    injected_500: AtomicU64,
    bad_requests: AtomicU64,
}

/// Per-request price of the mock's answers: what the gateway's own price table must say for
/// its cost to match the mock's books.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Price {
    /// USD per million input (prompt) tokens.
    pub input_usd_per_mtok: f64,
    /// USD per million output (completion) tokens.
    pub output_usd_per_mtok: f64,
}

impl Price {
    /// The cost of one request in micro-dollars, computed as the gateway does: picodollars
    /// per token (USD per million tokens × 10⁶), summed, divided by 10⁶ rounding up.
    pub fn cost_micros(&self, input: u64, output: u64) -> u64 {
        let pico = |usd: f64| (usd * 1e6).round() as u128;
        let total = u128::from(input) * pico(self.input_usd_per_mtok)
            + u128::from(output) * pico(self.output_usd_per_mtok);
        u64::try_from(total.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }
}

/// The bodies of one wire format, built once.
#[derive(Debug)]
struct Wire {
    json: Bytes,
    /// Everything up to and including the first content chunk, sent at once.
    opening: Bytes,
    /// One later content chunk.
    chunk: Bytes,
    /// Finish, usage and end frames when the client asked for usage (always, Anthropic).
    closing_with_usage: Bytes,
    /// Finish and end frames without usage.
    closing: Bytes,
    error_429: Bytes,
    error_500: Bytes,
    /// Completion tokens reported per answer (0 for embeddings).
    completion_tokens: u64,
    /// Cost of one answer at the configured price.
    cost_micros: u64,
}

fn sse(value: &serde_json::Value) -> String {
    format!("data: {value}\n\n")
}

fn event(name: &str, value: &serde_json::Value) -> String {
    format!("event: {name}\ndata: {value}\n\n")
}

fn openai_error(kind: &str, message: &str) -> Bytes {
    Bytes::from(
        serde_json::json!({"error": {"message": message, "type": kind, "code": null}}).to_string(),
    )
}

impl Wire {
    /// OpenAI chat completions or legacy completions (`chat` false).
    fn openai(chat: bool, chunks: u32, price: Price) -> Wire {
        let completion = u64::from(chunks);
        let usage = serde_json::json!({
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": completion,
            "total_tokens": PROMPT_TOKENS + completion,
        });
        let text = "tok ".repeat(chunks as usize);
        let (object, chunk_object) = if chat {
            ("chat.completion", "chat.completion.chunk")
        } else {
            ("text_completion", "text_completion")
        };
        let choice = if chat {
            serde_json::json!({"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": text}})
        } else {
            serde_json::json!({"index": 0, "finish_reason": "stop", "text": text})
        };
        let json = serde_json::json!({
            "id": "mock-1", "object": object, "created": 0, "model": "mock",
            "choices": [choice], "usage": usage,
        });
        let chunk = |delta: serde_json::Value, finish: Option<&str>| {
            let choice = if chat {
                serde_json::json!({"index": 0, "delta": delta, "finish_reason": finish})
            } else {
                let text = delta.get("content").cloned().unwrap_or_else(|| "".into());
                serde_json::json!({"index": 0, "text": text, "finish_reason": finish})
            };
            sse(&serde_json::json!({
                "id": "mock-1", "object": chunk_object, "created": 0, "model": "mock",
                "choices": [choice],
            }))
        };
        let finish = chunk(serde_json::json!({}), Some("stop"));
        let usage_chunk = sse(&serde_json::json!({
            "id": "mock-1", "object": chunk_object, "created": 0,
            "model": "mock", "choices": [], "usage": usage,
        }));
        let done = "data: [DONE]\n\n";
        Wire {
            json: Bytes::from(json.to_string()),
            opening: Bytes::from(chunk(
                serde_json::json!({"role": "assistant", "content": "tok "}),
                None,
            )),
            chunk: Bytes::from(chunk(serde_json::json!({"content": "tok "}), None)),
            closing_with_usage: Bytes::from(format!("{finish}{usage_chunk}{done}")),
            closing: Bytes::from(format!("{finish}{done}")),
            error_429: openai_error("rate_limit_error", "injected rate limit"),
            error_500: openai_error("server_error", "injected server error"),
            completion_tokens: completion,
            cost_micros: price.cost_micros(PROMPT_TOKENS, completion),
        }
    }

    /// OpenAI embeddings: one small vector, prompt tokens only, never streamed.
    fn embeddings(price: Price) -> Wire {
        let json = serde_json::json!({
            "object": "list", "model": "mock",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.0, 0.25, 0.5, 0.75]}],
            "usage": {"prompt_tokens": PROMPT_TOKENS, "total_tokens": PROMPT_TOKENS},
        });
        Wire {
            json: Bytes::from(json.to_string()),
            opening: Bytes::new(),
            chunk: Bytes::new(),
            closing_with_usage: Bytes::new(),
            closing: Bytes::new(),
            error_429: openai_error("rate_limit_error", "injected rate limit"),
            error_500: openai_error("server_error", "injected server error"),
            completion_tokens: 0,
            cost_micros: price.cost_micros(PROMPT_TOKENS, 0),
        }
    }

    /// Anthropic Messages, with its named SSE events.
    fn anthropic(chunks: u32, price: Price) -> Wire {
        let completion = u64::from(chunks);
        let json = serde_json::json!({
            "id": "msg_mock", "type": "message", "role": "assistant", "model": "mock",
            "content": [{"type": "text", "text": "tok ".repeat(chunks as usize)}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": completion},
        });
        let delta = event(
            "content_block_delta",
            &serde_json::json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": "tok "}}),
        );
        let opening = [
            event(
                "message_start",
                &serde_json::json!({"type": "message_start", "message": {
                    "id": "msg_mock", "type": "message", "role": "assistant", "model": "mock",
                    "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": 1}}}),
            ),
            event(
                "content_block_start",
                &serde_json::json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "text", "text": ""}}),
            ),
            event("ping", &serde_json::json!({"type": "ping"})),
            delta.clone(),
        ]
        .concat();
        let closing = [
            event(
                "content_block_stop",
                &serde_json::json!({"type": "content_block_stop", "index": 0}),
            ),
            event(
                "message_delta",
                &serde_json::json!({"type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                    "usage": {"output_tokens": completion}}),
            ),
            event("message_stop", &serde_json::json!({"type": "message_stop"})),
        ]
        .concat();
        let error = |kind: &str, message: &str| {
            Bytes::from(
                serde_json::json!({"type": "error", "error": {"type": kind, "message": message}})
                    .to_string(),
            )
        };
        let closing = Bytes::from(closing);
        Wire {
            json: Bytes::from(json.to_string()),
            opening: Bytes::from(opening),
            chunk: Bytes::from(delta),
            closing_with_usage: closing.clone(),
            closing,
            error_429: error("rate_limit_error", "injected rate limit"),
            error_500: error("api_error", "injected server error"),
            completion_tokens: completion,
            cost_micros: price.cost_micros(PROMPT_TOKENS, completion),
        }
    }
}

/// The four wire formats' bodies.
#[derive(Debug)]
struct Bodies {
    chat: Wire,
    completions: Wire,
    embeddings: Wire,
    messages: Wire,
}

impl Bodies {
    fn build(chunks: u32, price: Price) -> Bodies {
        Bodies {
            chat: Wire::openai(true, chunks, price),
            completions: Wire::openai(false, chunks, price),
            embeddings: Wire::embeddings(price),
            messages: Wire::anthropic(chunks, price),
        }
    }

    fn of(&self, api: Api) -> &Wire {
        match api {
            Api::Chat => &self.chat,
            Api::Completions => &self.completions,
            Api::Embeddings => &self.embeddings,
            Api::Messages => &self.messages,
        }
    }
}

/// The running mock's shared state: its configuration, prebuilt bodies and counters.
#[derive(Debug)]
pub struct Upstream {
    config: UpstreamConfig,
    bodies: Bodies,
    stats: Stats,
    first_request: OnceLock<Instant>,
    slots: Option<Arc<Semaphore>>,
}

impl Upstream {
    /// Builds the mock (and all its response bodies) from a configuration.
    pub fn new(config: UpstreamConfig) -> Arc<Upstream> {
        Arc::new(Upstream {
            bodies: Bodies::build(config.stream_chunks.max(1), config.price),
            slots: config
                .max_concurrency
                .map(|n| Arc::new(Semaphore::new(n.max(1)))),
            config,
            stats: Stats::default(),
            first_request: OnceLock::new(),
        })
    }

    /// The counters now.
    pub fn stats(&self) -> StatsSnapshot {
        let s = &self.stats;
        StatsSnapshot {
            requests: s.requests.load(Ordering::Relaxed),
            completed: s.completed.load(Ordering::Relaxed),
            streams: s.streams.load(Ordering::Relaxed),
            prompt_tokens: s.prompt_tokens.load(Ordering::Relaxed),
            completion_tokens: s.completion_tokens.load(Ordering::Relaxed),
            cost_micros: s.cost_micros.load(Ordering::Relaxed),
            injected_429: s.injected_429.load(Ordering::Relaxed),
            injected_500: s.injected_500.load(Ordering::Relaxed),
            bad_requests: s.bad_requests.load(Ordering::Relaxed),
        }
    }

    /// The axum router: the four APIs under `/v1` and `GET /__stats`.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route(
                "/v1/chat/completions",
                post(|up, body| answer(up, Api::Chat, body)),
            )
            .route(
                "/v1/completions",
                post(|up, body| answer(up, Api::Completions, body)),
            )
            .route(
                "/v1/embeddings",
                post(|up, body| answer(up, Api::Embeddings, body)),
            )
            .route(
                "/v1/messages",
                post(|up, body| answer(up, Api::Messages, body)),
            )
            .route("/__stats", get(stats))
            .with_state(Arc::clone(self))
    }

    /// Serves on `listener` until `shutdown` completes. Sockets get `TCP_NODELAY`, so small
    /// SSE frames are not held back by Nagle's algorithm against the client's delayed ACKs.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let listener = listener.tap_io(|tcp| {
            // Best effort: a socket that refuses the option still works, only slower.
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }

    /// Holds the request if it arrives inside the configured stall window.
    async fn stall(&self, now: Instant) {
        let first = *self.first_request.get_or_init(|| now);
        if let Some(stall) = self.config.stall {
            let (start, end) = (first + stall.at, first + stall.at + stall.length);
            if now >= start && now < end {
                tokio::time::sleep_until(end).await;
            }
        }
    }
}

/// The request fields that choose the response shape; everything else is skipped.
#[derive(Deserialize)]
struct ShapeRequest {
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

async fn stats(State(up): State<Arc<Upstream>>) -> Response {
    axum::Json(up.stats()).into_response()
}

fn json_response(status: StatusCode, body: Bytes) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn answer(State(up): State<Arc<Upstream>>, api: Api, body: Bytes) -> Response {
    let arrived = Instant::now();
    let stats = &up.stats;
    stats.requests.fetch_add(1, Ordering::Relaxed);
    let Ok(request) = serde_json::from_slice::<ShapeRequest>(&body) else {
        stats.bad_requests.fetch_add(1, Ordering::Relaxed);
        return json_response(
            StatusCode::BAD_REQUEST,
            Bytes::from_static(
                br#"{"error":{"message":"invalid JSON","type":"invalid_request_error"}}"#,
            ),
        );
    };
    // A closed semaphore cannot happen (it is never closed); serve unlimited if it did.
    let permit = match &up.slots {
        Some(slots) => Arc::clone(slots).acquire_owned().await.ok(),
        None => None,
    };
    up.stall(arrived).await;

    let config = &up.config;
    let wire = up.bodies.of(api);
    if config.throttle_rate > 0.0 && fastrand::f64() < config.throttle_rate {
        stats.injected_429.fetch_add(1, Ordering::Relaxed);
        return json_response(StatusCode::TOO_MANY_REQUESTS, wire.error_429.clone());
    }
    if config.error_rate > 0.0 && fastrand::f64() < config.error_rate {
        stats.injected_500.fetch_add(1, Ordering::Relaxed);
        return json_response(StatusCode::INTERNAL_SERVER_ERROR, wire.error_500.clone());
    }
    let wait = config.latency.sample();
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    stats.completed.fetch_add(1, Ordering::Relaxed);
    stats
        .prompt_tokens
        .fetch_add(PROMPT_TOKENS, Ordering::Relaxed);
    stats
        .completion_tokens
        .fetch_add(wire.completion_tokens, Ordering::Relaxed);
    stats
        .cost_micros
        .fetch_add(wire.cost_micros, Ordering::Relaxed);
    if !request.stream || api == Api::Embeddings {
        return json_response(StatusCode::OK, wire.json.clone());
    }
    stats.streams.fetch_add(1, Ordering::Relaxed);
    let include_usage = request.stream_options.is_some_and(|o| o.include_usage);
    let body = Body::from_stream(frames(Arc::clone(&up), api, include_usage, permit));
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The SSE frames of one stream: the opening (for Anthropic its `message_start`,
/// `content_block_start` and `ping` events) with the first content chunk, N − 1 more chunks
/// paced by the chunk interval, then the closing frames (finish, usage if asked for, end).
/// The concurrency slot, if any, is held until the stream ends.
fn frames(
    up: Arc<Upstream>,
    api: Api,
    include_usage: bool,
    permit: Option<OwnedSemaphorePermit>,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> + Send {
    let chunks = up.config.stream_chunks.max(1);
    futures::stream::unfold((0u32, permit), move |(step, permit)| {
        let up = Arc::clone(&up);
        async move {
            let wire = up.bodies.of(api);
            let frame = if step == 0 {
                wire.opening.clone()
            } else if step < chunks {
                if !up.config.chunk_interval.is_zero() {
                    tokio::time::sleep(up.config.chunk_interval).await;
                }
                wire.chunk.clone()
            } else if step == chunks {
                if include_usage {
                    wire.closing_with_usage.clone()
                } else {
                    wire.closing.clone()
                }
            } else {
                return None;
            };
            Some((Ok(frame), (step + 1, permit)))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_rounds_up_per_request_like_the_gateway() {
        let price = Price {
            input_usd_per_mtok: 2.5,
            output_usd_per_mtok: 10.0,
        };
        // USD per million tokens is micro-dollars per token: 12 × 2.5 + 8 × 10 = 110 µ$.
        assert_eq!(price.cost_micros(12, 8), 110);
        // 1 token at $0.15/Mtok = 0.15 µ$, rounded up to 1.
        let cheap = Price {
            input_usd_per_mtok: 0.15,
            output_usd_per_mtok: 0.0,
        };
        assert_eq!(cheap.cost_micros(1, 0), 1);
        assert_eq!(Price::default().cost_micros(12, 8), 0);
    }
}
