//! The body of a streamed answer: forwards the provider's SSE frames to the client as each
//! arrives (never buffered), records usage and time to first token, turns a mid-stream
//! failure into a final `data: {"error":...}` event, hands each frame sent to the payload
//! capture (a no-op unless it is on), and closes the usage record when the
//! stream ends — or, if the client disconnects, when the body is dropped, which also drops
//! (and so cancels) the upstream request.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;

use super::accounting::Accounting;
use super::error::{ApiError, ErrorShape};
use crate::providers::{DONE_FRAME, EventStream, StreamEvent};

/// A provider stream wired to a usage record.
pub struct MeteredStream {
    inner: EventStream,
    accounting: Option<Accounting>,
    status: u16,
    shape: ErrorShape,
    failure: Option<ApiError>,
}

impl MeteredStream {
    /// Wraps `inner`; `accounting` is closed when the stream ends or is dropped; a
    /// mid-stream failure is reported to the client in `shape`.
    pub fn new(inner: EventStream, accounting: Accounting, status: u16, shape: ErrorShape) -> Self {
        Self {
            inner,
            accounting: Some(accounting),
            status,
            shape,
            failure: None,
        }
    }
}

impl Stream for MeteredStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.accounting.is_none() {
                return Poll::Ready(None);
            }
            match this.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(StreamEvent::Frame(frame)))) => {
                    if let Some(accounting) = this.accounting.as_mut() {
                        accounting.chunk_sent(frame.as_ref() != DONE_FRAME);
                        accounting.capture_response(&frame);
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Ready(Some(Ok(StreamEvent::Usage(usage)))) => {
                    if let Some(accounting) = this.accounting.as_mut() {
                        accounting.usage(usage);
                    }
                }
                Poll::Ready(Some(Err(err))) => {
                    let error = ApiError::from(err);
                    tracing::warn!(code = error.code.as_str(), message = %error.message, "stream failed mid-answer");
                    let frame = error.stream_frame(this.shape);
                    if let Some(accounting) = this.accounting.as_mut() {
                        accounting.capture_response(&frame);
                    }
                    this.failure = Some(error);
                    this.close();
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Ready(None) => {
                    this.close();
                    return Poll::Ready(None);
                }
            }
        }
    }
}

impl MeteredStream {
    fn close(&mut self) {
        if let Some(accounting) = self.accounting.take() {
            match &self.failure {
                Some(error) => accounting.fail(error),
                None => accounting.finish(self.status),
            }
        }
    }
}
