//! The usage sink's two policies on the request path, as one layer around the API routes:
//!
//! * **Admission**: while the sink is full (the spool reached its cap because the event log
//!   has been unreachable), new requests are refused with 503 `usage_spool_full` before
//!   anything else runs, rather than served unaccounted.
//! * **Durable answers**: when the sink promises durability before the answer (spool flush
//!   `always`), a complete response is held until the request's usage record is durable,
//!   and a streamed body's end is held until the record (closed when the stream ends) is.
//!   Concurrent requests share one flush (group commit).

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use http::StatusCode;
use http_body::Frame;

use super::Gateway;
use super::error::{ApiError, ErrorCode};
use crate::usage::UsageSink;

/// The layer's function (`axum::middleware::from_fn_with_state`).
pub async fn usage_gate(State(gateway): State<Gateway>, request: Request, next: Next) -> Response {
    let sink = gateway.sink();
    if !sink.admit() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::UsageSpoolFull,
            "The gateway cannot record usage right now (its usage spool is full); retry later.",
        )
        .into_response();
    }
    let response = next.run(request).await;
    if response.body().size_hint().exact().is_some() {
        if let Some(durable) = sink.durable() {
            durable.await;
        }
        response
    } else {
        response.map(|body| {
            Body::new(DurableEnd {
                inner: body,
                sink,
                waiting: None,
                done: false,
            })
        })
    }
}

/// A streamed body whose end waits for the sink's durability.
struct DurableEnd {
    inner: Body,
    sink: std::sync::Arc<dyn UsageSink>,
    waiting: Option<BoxFuture<'static, ()>>,
    done: bool,
}

impl HttpBody for DurableEnd {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if this.waiting.is_none() {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(None) => match this.sink.durable() {
                    Some(durable) => this.waiting = Some(durable),
                    None => {
                        this.done = true;
                        return Poll::Ready(None);
                    }
                },
                other => return other,
            }
        }
        match this.waiting.as_mut().map(|w| w.as_mut().poll(cx)) {
            Some(Poll::Pending) => Poll::Pending,
            _ => {
                this.done = true;
                this.waiting = None;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
