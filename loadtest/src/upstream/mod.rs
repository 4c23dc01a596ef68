//! The mock upstream: an axum server speaking OpenAI's chat completions, completions and
//! embeddings wire formats (`POST /v1/chat/completions`, `/v1/completions`,
//! `/v1/embeddings`) and Anthropic's Messages (`POST /v1/messages`), as JSON or SSE in each
//! API's real framing, and keeping the ground truth of what it served, tokens and cost
//! included (`GET /__stats`). An answer's tokens follow the request ([`request`]): prompt
//! tokens from the size of its prompt text, completion tokens from its `max_tokens`, capped
//! by `completion_tokens`. It must stay much cheaper than the gateway it is used to measure:
//! the parts of every body that never change are built once at start-up ([`wire`]), the
//! rest is written per request without a JSON tree. An optional concurrency limit gives it
//! a known capacity (for the frontier's test). Waits (latency, chunk interval, stall) use
//! tokio's timer, whose resolution is 1 ms: a `fixed:2ms` latency is served in 2–3 ms.
//!
//! Owns no state besides its counters; it never calls out to anything.

pub mod request;
mod wire;

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
use request::Asked;
use wire::Wire;

/// What the mock upstream does.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Wait before the response (before the first chunk for streams).
    pub latency: Latency,
    /// Share of requests answered `500` at once.
    pub error_rate: f64,
    /// Share of requests answered `429` at once.
    pub throttle_rate: f64,
    /// Completion tokens of an answer to a request without `max_tokens`, and the most any
    /// answer has; a stream sends one content chunk per completion token.
    pub completion_tokens: u32,
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
            completion_tokens: 8,
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

/// The four wire formats' bodies.
#[derive(Debug)]
struct Bodies {
    chat: Wire,
    completions: Wire,
    embeddings: Wire,
    messages: Wire,
}

impl Bodies {
    fn build() -> Bodies {
        Bodies {
            chat: Wire::new(Api::Chat),
            completions: Wire::new(Api::Completions),
            embeddings: Wire::new(Api::Embeddings),
            messages: Wire::new(Api::Messages),
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
            bodies: Bodies::build(),
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
    let config = &up.config;
    let Ok(asked) = Asked::parse(api, &body, config.completion_tokens) else {
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

    let wire = up.bodies.of(api);
    if config.throttle_rate > 0.0 && fastrand::f64() < config.throttle_rate {
        stats.injected_429.fetch_add(1, Ordering::Relaxed);
        return json_response(StatusCode::TOO_MANY_REQUESTS, wire.error_429());
    }
    if config.error_rate > 0.0 && fastrand::f64() < config.error_rate {
        stats.injected_500.fetch_add(1, Ordering::Relaxed);
        return json_response(StatusCode::INTERNAL_SERVER_ERROR, wire.error_500());
    }
    let wait = config.latency.sample();
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    let tokens = asked.tokens;
    stats.completed.fetch_add(1, Ordering::Relaxed);
    stats
        .prompt_tokens
        .fetch_add(tokens.prompt, Ordering::Relaxed);
    stats
        .completion_tokens
        .fetch_add(tokens.completion, Ordering::Relaxed);
    stats.cost_micros.fetch_add(
        config.price.cost_micros(tokens.prompt, tokens.completion),
        Ordering::Relaxed,
    );
    if !asked.stream {
        return json_response(StatusCode::OK, wire.json(tokens));
    }
    stats.streams.fetch_add(1, Ordering::Relaxed);
    let body = Body::from_stream(frames(Arc::clone(&up), api, asked, permit));
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
/// `content_block_start` and `ping` events) with the first content chunk, one more chunk
/// per further completion token, paced by the chunk interval, then the closing frames
/// (finish, usage if asked for, end). The concurrency slot, if any, is held until the
/// stream ends.
fn frames(
    up: Arc<Upstream>,
    api: Api,
    asked: Asked,
    permit: Option<OwnedSemaphorePermit>,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> + Send {
    let tokens = asked.tokens;
    let chunks = tokens.completion.max(1);
    futures::stream::unfold((0u64, permit), move |(step, permit)| {
        let up = Arc::clone(&up);
        async move {
            let wire = up.bodies.of(api);
            let frame = if step == 0 {
                wire.opening(tokens)
            } else if step < chunks {
                if !up.config.chunk_interval.is_zero() {
                    tokio::time::sleep(up.config.chunk_interval).await;
                }
                wire.chunk()
            } else if step == chunks {
                wire.closing(tokens, asked.include_usage)
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
