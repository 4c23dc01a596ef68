//! The mock upstream: an axum server speaking OpenAI's chat completions wire format
//! (`POST /v1/chat/completions`, JSON or SSE) and keeping the ground truth of what it served
//! (`GET /__stats`). It must stay much cheaper than the gateway it is used to measure: every
//! response body is built once at start-up and cloned (a reference count) per request; the
//! only per-request work is parsing the two request fields that choose the response shape.
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
use tokio::time::Instant;

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
        }
    }
}

/// A snapshot of the ground-truth counters, as served by `GET /__stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// Chat completion requests received (answered or refused).
    pub requests: u64,
    /// Requests answered successfully (JSON or a complete stream started).
    pub completed: u64,
    /// Of `completed`, how many were streams.
    pub streams: u64,
    /// Prompt tokens reported in successful responses.
    pub prompt_tokens: u64,
    /// Completion tokens reported in successful responses.
    pub completion_tokens: u64,
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
    injected_429: AtomicU64,
    injected_500: AtomicU64,
    bad_requests: AtomicU64,
}

/// The bodies, built once.
#[derive(Debug)]
struct Bodies {
    json: Bytes,
    first_chunk: Bytes,
    chunk: Bytes,
    finish_chunk: Bytes,
    usage_chunk: Bytes,
    done: Bytes,
    error_429: Bytes,
    error_500: Bytes,
}

impl Bodies {
    fn build(chunks: u32) -> Bodies {
        let completion = u64::from(chunks);
        let usage = serde_json::json!({
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": completion,
            "total_tokens": PROMPT_TOKENS + completion,
        });
        let json = serde_json::json!({
            "id": "chatcmpl-mock", "object": "chat.completion", "created": 0, "model": "mock",
            "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": "tok ".repeat(chunks as usize)}}],
            "usage": usage,
        });
        let chunk = |delta: serde_json::Value, finish: Option<&str>| {
            let value = serde_json::json!({
                "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0,
                "model": "mock",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            });
            Bytes::from(format!("data: {value}\n\n"))
        };
        let usage_chunk = serde_json::json!({
            "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0,
            "model": "mock", "choices": [], "usage": usage,
        });
        let error = |kind: &str, message: &str| {
            Bytes::from(
                serde_json::json!({"error": {"message": message, "type": kind, "code": null}})
                    .to_string(),
            )
        };
        Bodies {
            json: Bytes::from(json.to_string()),
            first_chunk: chunk(
                serde_json::json!({"role": "assistant", "content": "tok "}),
                None,
            ),
            chunk: chunk(serde_json::json!({"content": "tok "}), None),
            finish_chunk: chunk(serde_json::json!({}), Some("stop")),
            usage_chunk: Bytes::from(format!("data: {usage_chunk}\n\n")),
            done: Bytes::from_static(b"data: [DONE]\n\n"),
            error_429: error("rate_limit_error", "injected rate limit"),
            error_500: error("server_error", "injected server error"),
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
}

impl Upstream {
    /// Builds the mock (and all its response bodies) from a configuration.
    pub fn new(config: UpstreamConfig) -> Arc<Upstream> {
        Arc::new(Upstream {
            bodies: Bodies::build(config.stream_chunks),
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
            injected_429: s.injected_429.load(Ordering::Relaxed),
            injected_500: s.injected_500.load(Ordering::Relaxed),
            bad_requests: s.bad_requests.load(Ordering::Relaxed),
        }
    }

    /// The axum router: `POST /v1/chat/completions` and `GET /__stats`.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/v1/chat/completions", post(chat))
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

/// The two request fields that choose the response shape; everything else is skipped.
#[derive(Deserialize)]
struct ChatRequest {
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

async fn chat(State(up): State<Arc<Upstream>>, body: Bytes) -> Response {
    let arrived = Instant::now();
    let stats = &up.stats;
    stats.requests.fetch_add(1, Ordering::Relaxed);
    let Ok(request) = serde_json::from_slice::<ChatRequest>(&body) else {
        stats.bad_requests.fetch_add(1, Ordering::Relaxed);
        return json_response(
            StatusCode::BAD_REQUEST,
            Bytes::from_static(
                br#"{"error":{"message":"invalid JSON","type":"invalid_request_error"}}"#,
            ),
        );
    };
    up.stall(arrived).await;

    let config = &up.config;
    if config.throttle_rate > 0.0 && fastrand::f64() < config.throttle_rate {
        stats.injected_429.fetch_add(1, Ordering::Relaxed);
        return json_response(StatusCode::TOO_MANY_REQUESTS, up.bodies.error_429.clone());
    }
    if config.error_rate > 0.0 && fastrand::f64() < config.error_rate {
        stats.injected_500.fetch_add(1, Ordering::Relaxed);
        return json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            up.bodies.error_500.clone(),
        );
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
        .fetch_add(u64::from(config.stream_chunks), Ordering::Relaxed);
    if !request.stream {
        return json_response(StatusCode::OK, up.bodies.json.clone());
    }
    stats.streams.fetch_add(1, Ordering::Relaxed);
    let include_usage = request.stream_options.is_some_and(|o| o.include_usage);
    let body = Body::from_stream(sse(Arc::clone(&up), include_usage));
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

/// The SSE frames of one stream: N content chunks (the first carrying the role) paced by the
/// chunk interval, the finish chunk, the usage chunk if asked for, then `[DONE]`.
fn sse(
    up: Arc<Upstream>,
    include_usage: bool,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> + Send {
    let chunks = up.config.stream_chunks;
    futures::stream::unfold(0u32, move |step| {
        let up = Arc::clone(&up);
        async move {
            let bodies = &up.bodies;
            let frame = if step < chunks {
                if step > 0 && !up.config.chunk_interval.is_zero() {
                    tokio::time::sleep(up.config.chunk_interval).await;
                }
                if step == 0 {
                    bodies.first_chunk.clone()
                } else {
                    bodies.chunk.clone()
                }
            } else if step == chunks {
                bodies.finish_chunk.clone()
            } else if step == chunks + 1 && include_usage {
                bodies.usage_chunk.clone()
            } else if step <= chunks + 2 {
                // Jump past the usage step so `[DONE]` is sent exactly once.
                return Some((Ok(bodies.done.clone()), chunks + 3));
            } else {
                return None;
            };
            Some((Ok(frame), step + 1))
        }
    })
}
