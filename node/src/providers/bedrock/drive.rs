//! The read loop of Bedrock's streaming answers: bytes from the upstream body → event-stream
//! messages ([`FrameDecoder`]) → client frames and usage (a [`Translate`] implementation:
//! ConverseStream or Anthropic Messages). One upstream read at a time, never buffered whole;
//! dropping the returned stream drops the upstream response, which cancels the request.

use std::collections::VecDeque;
use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt};

use super::anthropic::MessagesTranslator;
use super::eventstream::{Frame, FrameDecoder};
use super::stream::{ConverseTranslator, Out};
use crate::providers::{EventStream, ProviderError, StreamEvent, TimeoutPhase};

/// Turns decoded event-stream messages into client frames.
pub trait Translate: Send + 'static {
    /// Translates one decoded message.
    fn on_frame(&mut self, frame: Frame) -> Out;
    /// The upstream body ended.
    fn on_end(&mut self) -> Out;
    /// Whether the answer is complete.
    fn is_done(&self) -> bool;
}

impl Translate for ConverseTranslator {
    fn on_frame(&mut self, frame: Frame) -> Out {
        Self::on_frame(self, frame)
    }
    fn on_end(&mut self) -> Out {
        Self::on_end(self)
    }
    fn is_done(&self) -> bool {
        Self::is_done(self)
    }
}

impl Translate for MessagesTranslator {
    fn on_frame(&mut self, frame: Frame) -> Out {
        Self::on_frame(self, frame)
    }
    fn on_end(&mut self) -> Out {
        Self::on_end(self)
    }
    fn is_done(&self) -> bool {
        Self::is_done(self)
    }
}

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

struct Drive<T> {
    body: Body,
    decoder: FrameDecoder,
    translator: T,
    pending: VecDeque<Result<StreamEvent, ProviderError>>,
    finished: bool,
}

/// Reads the event stream as it arrives, one upstream read at a time (never buffered
/// whole); dropping the returned stream drops the upstream response.
pub fn drive<T: Translate>(response: reqwest::Response, translator: T) -> EventStream {
    let state = Drive {
        body: Box::pin(response.bytes_stream()),
        decoder: FrameDecoder::new(),
        translator,
        pending: VecDeque::new(),
        finished: false,
    };
    Box::pin(futures::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(item) = state.pending.pop_front() {
                return Some((item, state));
            }
            if state.finished {
                return None;
            }
            match state.decoder.next_frame() {
                Ok(Some(frame)) => {
                    state.pending.extend(state.translator.on_frame(frame));
                    state.finished = state.translator.is_done();
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    state.finished = true;
                    state.pending.push_back(Err(ProviderError::InvalidResponse {
                        detail: e.to_string(),
                    }));
                    continue;
                }
            }
            match state.body.next().await {
                Some(Ok(bytes)) => state.decoder.push(&bytes),
                Some(Err(e)) => {
                    state.finished = true;
                    state
                        .pending
                        .push_back(Err(ProviderError::from_transport(e, TimeoutPhase::Total)));
                }
                None => {
                    state.finished = true;
                    match state.decoder.finish() {
                        Ok(()) => state.pending.extend(state.translator.on_end()),
                        Err(e) => state.pending.push_back(Err(ProviderError::Interrupted {
                            detail: e.to_string(),
                        })),
                    }
                }
            }
        }
    }))
}
