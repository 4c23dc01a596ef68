//! The usage record of one request, filled in as the request proceeds and emitted exactly
//! once: by [`Accounting::finish`], or — if the request is dropped first because the client
//! went away — by `Drop`, as a client-cancelled record with the usage seen so far.
//!
//! The record also holds the request's quota [`Reservation`], if any, and settles it when
//! it closes, so budgets are charged exactly once on every path (see [`Accounting::charge`]);
//! and, with payload capture on, the request's [`Capture`], whose redacted bodies it
//! carries out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::capture::Capture;
use super::context::RequestContext;
use super::error::{ApiError, ErrorShape};
use super::quota::{Charge, Reservation};
use super::runtime::Runtime;
use crate::config::{KeyInfo, Target};
use crate::pricing::{ModelPrice, PriceTable};
use crate::providers::ProviderKind;
use crate::usage::{Attempt, RouteKind, Usage, UsageRecord, UsageSink, micros};

/// Status recorded when the client disconnected before the answer was complete.
pub const CLIENT_CLOSED: u16 = 499;

/// An open usage record.
pub struct Accounting {
    sink: Arc<dyn UsageSink>,
    prices: Arc<PriceTable>,
    started: Instant,
    record: UsageRecord,
    provider: Option<ProviderKind>,
    /// The candidate index of the current attempt's target.
    target: u32,
    price_override: Option<ModelPrice>,
    upstream_started: Option<Instant>,
    attempt_started: Option<Instant>,
    upstream: Duration,
    /// Output tokens estimated from streamed chunks, used only if the stream is cut before
    /// the provider reported usage.
    streamed_chunks: u64,
    usage_reported: bool,
    cost_unknown: bool,
    /// The request's reservation on the budgets that apply to it.
    quota: Option<Reservation>,
    /// The bodies seen so far, when payload capture is on.
    capture: Option<Capture>,
    done: bool,
}

impl std::fmt::Debug for Accounting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounting")
            .field("request_id", &self.record.request_id)
            .finish_non_exhaustive()
    }
}

impl Accounting {
    /// Opens the record for a request served from `runtime`.
    pub fn open(
        sink: Arc<dyn UsageSink>,
        runtime: &Runtime,
        context: &RequestContext,
        route: RouteKind,
    ) -> Self {
        Self {
            sink,
            prices: runtime.config.prices.clone(),
            started: context.started,
            record: UsageRecord {
                request_id: context.request_id.to_string(),
                started_at: context.started_at,
                route,
                endpoint: None,
                provider: None,
                model: None,
                key_id: None,
                team: None,
                user: None,
                trace_id: context.trace_id.to_string(),
                status: 0,
                error_type: None,
                usage: Usage::default(),
                cost_micros: Some(0),
                total_latency_us: 0,
                upstream_latency_us: 0,
                overhead_us: 0,
                ttft_us: None,
                streamed: false,
                client_cancelled: false,
                attempts: Vec::new(),
                request_payload: None,
                response_payload: None,
            },
            provider: None,
            target: 0,
            price_override: None,
            upstream_started: None,
            attempt_started: None,
            upstream: Duration::ZERO,
            streamed_chunks: 0,
            usage_reported: false,
            cost_unknown: false,
            quota: None,
            capture: runtime.capture.clone().map(Capture::new),
            done: false,
        }
    }

    /// Keeps the request body (and the credentials in `headers`, to redact) if payloads
    /// are captured.
    pub fn capture_request(&mut self, headers: &http::HeaderMap, body: &[u8]) {
        if let Some(capture) = &mut self.capture {
            capture.request(headers, body);
        }
    }

    /// Keeps a piece of the response body as sent, if payloads are captured.
    pub fn capture_response(&mut self, chunk: &[u8]) {
        if let Some(capture) = &mut self.capture {
            capture.response(chunk);
        }
    }

    /// Leaves the response body out of the capture (it is not text).
    pub fn skip_response_capture(&mut self) {
        if let Some(capture) = &mut self.capture {
            capture.skip_response();
        }
    }

    /// Records the authenticated key, and its team and user.
    pub fn key(&mut self, key: &KeyInfo) {
        self.record.key_id = Some(key.id.clone());
        self.record.team = key.team.clone();
        self.record.user = key.user.clone();
    }

    /// Records the resolved endpoint.
    pub fn endpoint(&mut self, name: &str) {
        self.record.endpoint = Some(name.to_owned());
    }

    /// Records the target of a new attempt (`index`: its place among the endpoint's
    /// candidates); the first attempt starts the upstream clock.
    pub fn upstream_begins(&mut self, index: usize, target: &Target, streamed: bool) {
        self.target = u32::try_from(index).unwrap_or(u32::MAX);
        self.provider = Some(target.provider);
        self.price_override = target.price;
        self.record.provider = Some(target.provider.name());
        self.record.model = Some(target.model.clone());
        self.record.streamed = streamed;
        let now = Instant::now();
        self.upstream_started.get_or_insert(now);
        self.attempt_started = Some(now);
    }

    fn push_attempt(&mut self, status: u16, error_type: Option<&'static str>) {
        let latency = self
            .attempt_started
            .take()
            .map(|t| t.elapsed())
            .unwrap_or_default();
        self.record.attempts.push(Attempt {
            target: self.target,
            provider: self.record.provider.unwrap_or("unknown"),
            model: self.record.model.clone().unwrap_or_default(),
            status,
            error_type,
            latency_us: micros(latency),
        });
    }

    /// Records that the current attempt failed with `error`.
    pub fn attempt_failed(&mut self, error: &ApiError) {
        self.push_attempt(error.status.as_u16(), Some(error.code.as_str()));
    }

    /// Records that the current attempt is serving the answer.
    pub fn attempt_served(&mut self) {
        self.push_attempt(200, None);
    }

    /// Marks the end of the upstream exchange (last byte read).
    pub fn upstream_ends(&mut self) {
        if let Some(started) = self.upstream_started.take() {
            self.upstream = started.elapsed();
        }
    }

    /// Time spent upstream so far (for the timing headers).
    pub fn upstream_elapsed(&self) -> Duration {
        match self.upstream_started {
            Some(started) => started.elapsed(),
            None => self.upstream,
        }
    }

    /// Records token usage reported by the provider.
    pub fn usage(&mut self, usage: Usage) {
        self.record.usage = usage;
        self.usage_reported = true;
    }

    /// Notes a streamed event sent to the client; the first one sets time to first token,
    /// and events that carry output (not the terminal `[DONE]`) feed the output estimate.
    pub fn chunk_sent(&mut self, carries_output: bool) {
        if self.record.ttft_us.is_none() {
            self.record.ttft_us = Some(micros(self.started.elapsed()));
        }
        if carries_output {
            self.streamed_chunks += 1;
        }
    }

    /// Sets the input-token estimate used if the stream is cut before usage arrives.
    pub fn estimate_input(&mut self, tokens: u64) {
        if !self.usage_reported {
            self.record.usage.input_tokens = tokens;
        }
    }

    /// Records the cost as unknown (the raw proxy does not read tokens).
    pub fn mark_cost_unknown(&mut self) {
        self.cost_unknown = true;
    }

    /// The request's quota reservation, made with `make` on first use; settled when the
    /// record closes.
    pub fn reservation(&mut self, make: impl FnOnce() -> Reservation) -> &mut Reservation {
        self.quota.get_or_insert_with(make)
    }

    /// What the budgets are charged when the record closes with `error_type`: the reported
    /// usage; nothing when no attempt was made; one request when every provider answered
    /// an error (not billed); else — served or cut off without a usage report, cancelled,
    /// timed out — the whole reservation, since the provider may have billed it.
    fn charge(&self, error_type: Option<&'static str>) -> Charge {
        if self.usage_reported {
            return Charge::Used {
                tokens: self
                    .record
                    .usage
                    .input_tokens
                    .saturating_add(self.record.usage.output_tokens),
                micros: self.record.cost_micros,
            };
        }
        if self.provider.is_none() {
            return Charge::Refused;
        }
        match error_type {
            Some(
                "upstream_error"
                | "upstream_connect_failed"
                | "invalid_request"
                | "unsupported_operation",
            ) => Charge::Failed,
            _ => Charge::Full,
        }
    }

    /// Emits the record for a request that succeeded with `status`.
    pub fn finish(mut self, status: u16) {
        self.close(status, None);
    }

    /// Emits the record for a failed request.
    pub fn fail(mut self, error: &ApiError) {
        self.close(error.status.as_u16(), Some(error.code.as_str()));
    }

    /// Records the failure and turns it into the client's error response, in `shape`.
    pub fn reject(
        mut self,
        error: impl Into<ApiError>,
        shape: ErrorShape,
    ) -> axum::response::Response {
        let error = error.into();
        if let Some(capture) = &mut self.capture {
            capture.response(error.body_in(shape).to_string().as_bytes());
        }
        self.fail(&error);
        error.into_response_in(shape)
    }

    fn close(&mut self, status: u16, error_type: Option<&'static str>) {
        if self.done {
            return;
        }
        self.done = true;
        self.upstream_ends();
        if !self.usage_reported && self.record.streamed {
            // Cut before the provider's usage chunk: count what reached the client.
            self.record.usage.output_tokens = self.streamed_chunks;
        }
        let total = self.started.elapsed();
        let record = &mut self.record;
        record.status = status;
        record.error_type = error_type;
        record.total_latency_us = micros(total);
        record.upstream_latency_us = micros(self.upstream);
        record.overhead_us = micros(total.saturating_sub(self.upstream));
        record.cost_micros = match (self.provider, record.model.as_deref()) {
            _ if self.cost_unknown => None,
            (Some(provider), Some(model)) => self
                .price_override
                .or_else(|| self.prices.lookup(provider, model))
                .map(|price| price.cost_micros(&record.usage)),
            _ => Some(0),
        };
        if let Some(mut quota) = self.quota.take() {
            quota.settle(self.charge(error_type));
        }
        if let Some(capture) = self.capture.take() {
            let (request, response) = capture.finish(self.record.endpoint.as_deref());
            self.record.request_payload = request;
            self.record.response_payload = response;
        }
        self.sink.record(self.record.clone());
    }
}

impl Drop for Accounting {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if std::thread::panicking() {
            // A bug unwound the handler: the client gets a 500 from the catch-panic layer.
            self.close(500, Some("internal_error"));
        } else {
            self.record.client_cancelled = true;
            self.close(CLIENT_CLOSED, Some("client_cancelled"));
        }
    }
}
