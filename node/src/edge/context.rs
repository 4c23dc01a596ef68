//! The outermost layer: gives every request its id, trace id (the client's `traceparent`'s,
//! else a new one) and start time, and stamps the response with `x-request-id` and the
//! timing headers MLflow clients read (`X-MLflow-Gateway-Duration-Ms`,
//! `X-MLflow-Gateway-Overhead-Duration-Ms`).
//!
//! Inserts [`RequestContext`] into the request's extensions; reads [`UpstreamTime`] from the
//! response's extensions (set by handlers that called a provider).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;

/// Header carrying the request id, in and out.
pub const REQUEST_ID: &str = "x-request-id";

/// Per-request facts every handler can read.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The client's `x-request-id` if usable, else a new UUIDv7.
    pub request_id: Arc<str>,
    /// Arrival, monotonic.
    pub started: Instant,
    /// Arrival, wall clock.
    pub started_at: SystemTime,
    /// The W3C trace id from the client's `traceparent` header when valid, else a new
    /// random one: every request has a trace id.
    pub trace_id: Arc<str>,
}

/// The W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";

/// The trace id of a `traceparent` value (`00-<32 hex>-<16 hex>-<2 hex>`), unless it is
/// malformed or all zeros.
fn trace_id(value: &HeaderValue) -> Option<Arc<str>> {
    let mut parts = value.to_str().ok()?.split('-');
    let (_version, id) = (parts.next()?, parts.next()?);
    let valid = id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && id.bytes().any(|b| b != b'0');
    valid.then(|| Arc::from(id))
}

/// A new random trace id: 32 lowercase hex digits, not all zeros (as W3C requires).
fn new_trace_id() -> Arc<str> {
    let id = loop {
        let id = fastrand::u128(..);
        if id != 0 {
            break id;
        }
    };
    Arc::from(format!("{id:032x}"))
}

/// Time spent waiting on the provider before the response headers, set by handlers.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamTime(pub Duration);

/// A client id is kept if it is short, visible ASCII; anything else is replaced.
fn usable_client_id(value: &HeaderValue) -> Option<&str> {
    let text = value.to_str().ok()?;
    let ok = !text.is_empty() && text.len() <= 128 && text.bytes().all(|b| b.is_ascii_graphic());
    ok.then_some(text)
}

/// The middleware.
pub async fn request_context(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id: Arc<str> = match request.headers().get(REQUEST_ID).and_then(usable_client_id) {
        Some(id) => Arc::from(id),
        None => Arc::from(uuid::Uuid::now_v7().to_string()),
    };
    let trace_id = request
        .headers()
        .get(TRACEPARENT)
        .and_then(trace_id)
        .unwrap_or_else(new_trace_id);
    request.extensions_mut().insert(RequestContext {
        request_id: request_id.clone(),
        started,
        started_at: SystemTime::now(),
        trace_id,
    });
    let mut response = next.run(request).await;
    let total = started.elapsed();
    let upstream = response
        .extensions()
        .get::<UpstreamTime>()
        .map(|u| u.0)
        .unwrap_or_default();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert(REQUEST_ID, value);
    }
    headers.insert(
        "x-mlflow-gateway-duration-ms",
        HeaderValue::from(total.as_millis() as u64),
    );
    headers.insert(
        "x-mlflow-gateway-overhead-duration-ms",
        HeaderValue::from(total.saturating_sub(upstream).as_millis() as u64),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_gives_its_trace_id() {
        let value =
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_eq!(
            trace_id(&value).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f35-00f067aa0ba902b7-01",
            "garbage",
        ] {
            assert_eq!(trace_id(&HeaderValue::from_static(bad)), None, "{bad}");
        }
    }

    #[test]
    fn generated_trace_ids_are_32_lowercase_hex_and_differ() {
        let a = new_trace_id();
        let b = new_trace_id();
        for id in [&a, &b] {
            assert_eq!(id.len(), 32);
            assert!(
                id.bytes()
                    .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
            );
            assert!(id.bytes().any(|c| c != b'0'));
            // A generated id is itself a valid trace id.
            let header = HeaderValue::from_str(&format!("00-{id}-00f067aa0ba902b7-01"))
                .unwrap_or_else(|_| HeaderValue::from_static(""));
            assert_eq!(trace_id(&header).as_deref(), Some(id.as_ref()));
        }
        assert_ne!(a, b);
    }
}
