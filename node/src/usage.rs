//! Per-request accounting: the usage record every request produces, success or failure, and
//! the [`UsageSink`] it leaves the request through.
//!
//! The sink is called on the request path, so implementations must not block: the shipped
//! [`LogSink`] hands records to a bounded queue drained by one background task that writes
//! them with `tracing` (used when no `events:` backend is configured). The event pipeline
//! ([`crate::events::EventSink`]) is the other sink.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

/// Token counts reported by a provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Input (prompt) tokens, cached ones included.
    pub input_tokens: u64,
    /// Output (completion) tokens.
    pub output_tokens: u64,
    /// Input tokens served from the provider's prompt cache.
    pub cached_tokens: u64,
    /// Input tokens written to the provider's prompt cache, every cache lifetime included
    /// (Anthropic's `cache_creation_input_tokens`, Bedrock's `cacheWriteInputTokens`,
    /// OpenAI's `cache_write_tokens`). Part of `input_tokens`, like `cached_tokens`; zero
    /// where the provider has no such notion.
    pub cache_write_tokens: u64,
    /// The part of `cache_write_tokens` written to the one-hour cache, which Anthropic (and
    /// Claude on Bedrock and Vertex AI) bills at a higher rate than the five-minute cache.
    /// Kept apart so the cost is exact: counting every write at the one-hour rate would
    /// overstate the common five-minute case by 60%, and the five-minute rate would
    /// understate one-hour writes.
    pub cache_write_1h_tokens: u64,
}

/// Which family of route served the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteKind {
    /// OpenAI-shaped unified API (`/v1/...`, `/gateway/mlflow/v1/...`, invocations).
    Unified,
    /// Provider-native passthrough (`/gateway/openai/v1/...`).
    Passthrough,
    /// Raw proxy (`/gateway/proxy/...`).
    Proxy,
}

/// One try of one target within a request.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// The target's index among the endpoint's candidates (split targets, then fallbacks).
    pub target: u32,
    /// Provider tried.
    pub provider: &'static str,
    /// Model tried.
    pub model: String,
    /// HTTP status of the attempt (the provider's, or the gateway's for a transport error).
    pub status: u16,
    /// Stable error code when the attempt failed.
    pub error_type: Option<&'static str>,
    /// Time the attempt took (to the response headers, or the first event of a stream).
    pub latency_us: u64,
}

/// One request's accounting, produced exactly once per request.
#[derive(Debug, Clone, Serialize)]
pub struct UsageRecord {
    /// The request id (`x-request-id`).
    pub request_id: String,
    /// When the request arrived.
    #[serde(with = "unix_millis")]
    pub started_at: SystemTime,
    /// Route family.
    pub route: RouteKind,
    /// Endpoint name, when one was resolved.
    pub endpoint: Option<String>,
    /// Provider that served (or was tried last).
    pub provider: Option<&'static str>,
    /// Provider model.
    pub model: Option<String>,
    /// Gateway key id (never the key).
    pub key_id: Option<String>,
    /// The team owning the key.
    pub team: Option<String>,
    /// The user owning the key.
    pub user: Option<String>,
    /// The W3C trace id of the request (from its `traceparent` header), when it has one.
    pub trace_id: Option<String>,
    /// HTTP status returned to the client; 499 when the client went away first; for a
    /// stream that failed after it began (the client saw 200, then an error event), the
    /// status the error maps to, so failed streams count as failures.
    pub status: u16,
    /// Stable error code when the request failed.
    pub error_type: Option<&'static str>,
    /// Tokens.
    pub usage: Usage,
    /// Cost in micro-dollars; `None` when the model's price is unknown.
    pub cost_micros: Option<u64>,
    /// Arrival to last byte.
    pub total_latency_us: u64,
    /// Time spent waiting on the provider.
    pub upstream_latency_us: u64,
    /// `total - upstream`: the gateway's own time.
    pub overhead_us: u64,
    /// Arrival to the first streamed event sent to the client.
    pub ttft_us: Option<u64>,
    /// Whether the answer was streamed.
    pub streamed: bool,
    /// Whether the client disconnected before the answer was complete.
    pub client_cancelled: bool,
    /// Every target tried, in order; the last one served (or failed) the request.
    pub attempts: Vec<Attempt>,
}

mod unix_millis {
    use std::time::{SystemTime, UNIX_EPOCH};

    pub fn serialize<S: serde::Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let millis = time
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        s.serialize_u64(millis)
    }
}

/// The state of the usage event pipeline behind a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipelineStats {
    /// Events spooled and not yet acknowledged by the event log.
    pub spool_depth: u64,
    /// Age of the oldest of them.
    pub spool_oldest_age: Option<Duration>,
    /// The depth at which new requests are refused.
    pub spool_cap: u64,
    /// Events the event log acknowledged since start.
    pub published: u64,
    /// Failed publish rounds since start (each retried).
    pub publish_failures: u64,
    /// Requests refused since start because the spool was full.
    pub refused: u64,
}

/// Where usage records go. `record` is called on the request path and must not block.
pub trait UsageSink: Send + Sync + 'static {
    /// Accepts one record.
    fn record(&self, record: UsageRecord);

    /// For a sink that promises records are durable before the client has its answer
    /// (the spool with flush `always`): resolves once every record accepted so far is.
    /// `None` (the default) when the answer need not wait.
    fn durable(&self) -> Option<BoxFuture<'static, ()>> {
        None
    }

    /// Whether a new request may be served. A sink that can take no more says no (and
    /// counts the refusal): the request is refused with 503 `usage_spool_full` rather than
    /// served unaccounted.
    fn admit(&self) -> bool {
        true
    }

    /// The event pipeline's state (spool depth and age, publish counters) for `/readyz`
    /// and `/metrics`; `None` for a sink without one.
    fn pipeline(&self) -> Option<PipelineStats> {
        None
    }
}

/// A sink that logs each record at info level (target `floodgate::usage`) from a background
/// task fed by a bounded queue. When the queue is full the record is logged inline instead:
/// slower for that request, but never lost.
#[derive(Debug, Clone)]
pub struct LogSink {
    queue: mpsc::Sender<UsageRecord>,
    overflowed: Arc<AtomicU64>,
}

impl LogSink {
    /// Starts the writer task on `tracker`; it ends when every sender is dropped.
    pub fn start(capacity: usize, tracker: &TaskTracker) -> Self {
        let (queue, mut records) = mpsc::channel::<UsageRecord>(capacity);
        tracker.spawn(async move {
            while let Some(record) = records.recv().await {
                log_record(&record);
            }
        });
        Self {
            queue,
            overflowed: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Records logged inline because the queue was full.
    pub fn overflowed(&self) -> u64 {
        self.overflowed.load(Ordering::Relaxed)
    }
}

impl UsageSink for LogSink {
    fn record(&self, record: UsageRecord) {
        if let Err(err) = self.queue.try_send(record) {
            self.overflowed.fetch_add(1, Ordering::Relaxed);
            let record = match err {
                mpsc::error::TrySendError::Full(r) | mpsc::error::TrySendError::Closed(r) => r,
            };
            log_record(&record);
        }
    }
}

fn log_record(record: &UsageRecord) {
    match serde_json::to_string(record) {
        Ok(json) => tracing::info!(target: "floodgate::usage", usage = %json, "usage"),
        Err(e) => {
            tracing::error!(target: "floodgate::usage", error = %e, "usage record not serializable")
        }
    }
}

/// Converts a duration to whole microseconds, saturating.
pub fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}
