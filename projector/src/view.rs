//! [`TraceView`]: a trace as JSON (the JSON API and `floodgate ctl traces`), field for field
//! the `UsageEvent` it shows.

use floodgate_proto::v1::{Payload, RouteKind, UsageAttempt, UsageEvent};
use serde::{Deserialize, Serialize};

use crate::query::Tokens;

/// One attempt of a trace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptView {
    /// Target index in the endpoint.
    pub target: u32,
    /// Provider tried.
    pub provider: String,
    /// Model tried.
    pub model: String,
    /// HTTP status of the attempt.
    pub status: u32,
    /// Error code, empty on success.
    pub error_type: String,
    /// Latency to the response headers, µs.
    pub latency_us: u64,
}

/// A captured body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadView {
    /// The (possibly truncated, redacted) body.
    pub body: String,
    /// Whether it was cut at the cap.
    pub truncated: bool,
}

/// One request's trace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TraceView {
    /// Event id (UUIDv7).
    pub event_id: String,
    /// Arrival, Unix µs.
    pub time_unix_us: i64,
    /// Serving edge.
    pub edge_id: String,
    /// `x-request-id`.
    pub request_id: String,
    /// W3C trace id.
    pub trace_id: String,
    /// Endpoint.
    pub endpoint: String,
    /// `unified`, `passthrough`, `proxy` or `unspecified`.
    pub route: String,
    /// Every attempt, in order.
    pub attempts: Vec<AttemptView>,
    /// Provider that served (or was tried last).
    pub provider: String,
    /// Model that served (or was tried last).
    pub model: String,
    /// Status returned to the client.
    pub status: u32,
    /// Error code, empty on success.
    pub error_type: String,
    /// Gateway key id.
    pub key_id: String,
    /// Team.
    pub team: String,
    /// User.
    pub user: String,
    /// Tokens.
    pub tokens: Tokens,
    /// Cost, micro-dollars; absent when unknown.
    pub cost_micros: Option<u64>,
    /// Total latency, µs.
    pub total_latency_us: u64,
    /// Upstream latency, µs.
    pub upstream_latency_us: u64,
    /// Gateway overhead, µs.
    pub overhead_us: u64,
    /// Time to first token, µs.
    pub ttft_us: Option<u64>,
    /// Streamed.
    pub streamed: bool,
    /// The client went away first.
    pub client_cancelled: bool,
    /// Request body, when captured.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request_payload: Option<PayloadView>,
    /// Response body, when captured.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub response_payload: Option<PayloadView>,
}

fn route(route: i32) -> String {
    match RouteKind::try_from(route) {
        Ok(RouteKind::Unified) => "unified",
        Ok(RouteKind::Passthrough) => "passthrough",
        Ok(RouteKind::Proxy) => "proxy",
        _ => "unspecified",
    }
    .to_owned()
}

fn attempt(a: &UsageAttempt) -> AttemptView {
    AttemptView {
        target: a.target,
        provider: a.provider.clone(),
        model: a.model.clone(),
        status: a.status,
        error_type: a.error_type.clone(),
        latency_us: a.latency_us,
    }
}

fn payload(p: &Payload) -> PayloadView {
    PayloadView {
        body: p.body.clone(),
        truncated: p.truncated,
    }
}

impl From<&UsageEvent> for TraceView {
    fn from(e: &UsageEvent) -> Self {
        Self {
            event_id: e.event_id.clone(),
            time_unix_us: e.time_unix_us,
            edge_id: e.edge_id.clone(),
            request_id: e.request_id.clone(),
            trace_id: e.trace_id.clone(),
            endpoint: e.endpoint.clone(),
            route: route(e.route),
            attempts: e.attempts.iter().map(attempt).collect(),
            provider: e.provider.clone(),
            model: e.model.clone(),
            status: e.status,
            error_type: e.error_type.clone(),
            key_id: e.key_id.clone(),
            team: e.team.clone(),
            user: e.user.clone(),
            tokens: e
                .tokens
                .as_ref()
                .map(|t| Tokens {
                    input: t.input,
                    output: t.output,
                    cached: t.cached,
                    cache_write: t.cache_write,
                })
                .unwrap_or_default(),
            cost_micros: e.cost_micros,
            total_latency_us: e.total_latency_us,
            upstream_latency_us: e.upstream_latency_us,
            overhead_us: e.overhead_us,
            ttft_us: e.ttft_us,
            streamed: e.streamed,
            client_cancelled: e.client_cancelled,
            request_payload: e.request_payload.as_ref().map(payload),
            response_payload: e.response_payload.as_ref().map(payload),
        }
    }
}
