//! Cohere v2 chat stream → OpenAI `chat.completion.chunk` SSE.
//!
//! Cohere frames each event as `event: <type>` plus `data: {"type": "<type>", ...}` and ends
//! the stream with `data: [DONE]`. The events map as follows (the JSON `type` decides; the
//! SSE event name is the fallback):
//!
//! | Cohere                          | OpenAI chunk                                          |
//! |---------------------------------|-------------------------------------------------------|
//! | `message-start`                 | `delta: {role: assistant, content: ""}`               |
//! | `content-delta` (text/thinking) | `delta: {content}` / `delta: {reasoning_content}`     |
//! | `tool-plan-delta`               | `delta: {content}` (the words before the tool calls)  |
//! | `tool-call-start`               | `delta: {tool_calls: [{index, id, type, function}]}`  |
//! | `tool-call-delta`               | `delta: {tool_calls: [{index, function: {arguments}}]}` |
//! | `message-end`                   | `finish_reason` chunk, usage chunk if asked, `[DONE]` |
//! | `content-end`, `tool-call-end`, `citation-*`, `debug` | nothing                         |
//!
//! (`content-start` is treated as a delta: it normally carries empty text.) The usage Cohere
//! sends in `message-end` always becomes a [`StreamEvent::Usage`]; the usage chunk reaches
//! the client only if it asked (`stream_options.include_usage`). A `message-end` with `finish_reason: ERROR`
//! ends the stream with an error; a stream that ends before `message-end` is
//! [`ProviderError::Interrupted`]. Nothing is read after `message-end`.

use std::collections::VecDeque;
use std::pin::Pin;

use bytes::Bytes;
use eventsource_stream::{Event, EventStreamError};
use futures::{Stream, StreamExt};
use serde_json::{Value, json};

use super::response::{finish_reason, now_unix, openai_usage, usage};
use crate::providers::{
    DONE_FRAME, EventStream, ProviderError, StreamEvent, TimeoutPhase, data_frame,
};

/// The state of one translated stream.
#[derive(Debug)]
pub struct Translator {
    id: String,
    created: u64,
    model: String,
    forward_usage: bool,
    /// Tool calls started so far (OpenAI numbers them from 0 within the message).
    tool_calls: usize,
    ended: bool,
}

/// What one upstream event becomes, in order.
pub type Translated = Vec<Result<StreamEvent, ProviderError>>;

impl Translator {
    /// A translator for a stream answering with `model`; `forward_usage` sends the usage
    /// chunk to the client.
    pub fn new(model: &str, forward_usage: bool) -> Self {
        Self {
            id: "cohere".into(),
            created: now_unix(),
            model: model.to_owned(),
            forward_usage,
            tool_calls: 0,
            ended: false,
        }
    }

    /// Whether `message-end` has been seen (nothing more is expected).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Translates one SSE event (`name` is its `event:` field, `data` its data).
    pub fn event(&mut self, name: &str, data: &str) -> Translated {
        if self.ended || data.trim() == "[DONE]" {
            return Vec::new();
        }
        let Ok(event) = serde_json::from_str::<Value>(data) else {
            return vec![Err(ProviderError::InvalidResponse {
                detail: format!("a Cohere stream event (`{name}`) was not JSON"),
            })];
        };
        let kind = event.get("type").and_then(Value::as_str).unwrap_or(name);
        let delta = event.pointer("/delta/message");
        let text_at = |pointer: &str| {
            delta
                .and_then(|d| d.pointer(pointer))
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
        };
        match kind {
            "message-start" => {
                if let Some(id) = event.get("id").and_then(Value::as_str) {
                    id.clone_into(&mut self.id);
                }
                vec![self.chunk(json!({"role": "assistant", "content": ""}), Value::Null)]
            }
            "content-start" | "content-delta" => {
                let mut out = Vec::new();
                if let Some(text) = text_at("/content/text") {
                    out.push(self.chunk(json!({"content": text}), Value::Null));
                }
                if let Some(thinking) = text_at("/content/thinking") {
                    out.push(self.chunk(json!({"reasoning_content": thinking}), Value::Null));
                }
                out
            }
            "tool-plan-delta" => text_at("/tool_plan")
                .map(|plan| vec![self.chunk(json!({"content": plan}), Value::Null)])
                .unwrap_or_default(),
            "tool-call-start" => {
                let call = delta.and_then(|d| d.get("tool_calls"));
                let index = self.tool_calls;
                self.tool_calls += 1;
                let field = |pointer: &str| {
                    call.and_then(|c| c.pointer(pointer))
                        .cloned()
                        .unwrap_or(Value::Null)
                };
                let arguments = call
                    .and_then(|c| c.pointer("/function/arguments"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let tool_call = json!({"index": index, "id": field("/id"), "type": "function",
                    "function": {"name": field("/function/name"), "arguments": arguments}});
                vec![self.chunk(json!({"tool_calls": [tool_call]}), Value::Null)]
            }
            "tool-call-delta" => {
                let index = self.tool_calls.saturating_sub(1);
                text_at("/tool_calls/function/arguments")
                    .map(|arguments| {
                        let tool_call =
                            json!({"index": index, "function": {"arguments": arguments}});
                        vec![self.chunk(json!({"tool_calls": [tool_call]}), Value::Null)]
                    })
                    .unwrap_or_default()
            }
            "message-end" => self.message_end(&event),
            _ => Vec::new(),
        }
    }

    fn message_end(&mut self, event: &Value) -> Translated {
        self.ended = true;
        let delta = event.get("delta");
        let reason = delta
            .and_then(|d| d.get("finish_reason"))
            .and_then(Value::as_str)
            .unwrap_or("COMPLETE");
        let detail = delta.and_then(|d| d.get("error")).and_then(Value::as_str);
        let seen = delta.and_then(|d| d.get("usage")).and_then(usage);
        let mut out = Vec::with_capacity(4);
        match finish_reason(reason, detail) {
            Err(failed) => {
                out.extend(seen.map(|u| Ok(StreamEvent::Usage(u))));
                out.push(Err(failed.into()));
            }
            Ok(finish) => {
                out.push(self.chunk(json!({}), json!(finish)));
                if let Some(seen) = seen {
                    if self.forward_usage {
                        let chunk = json!({"id": self.id, "object": "chat.completion.chunk",
                            "created": self.created, "model": self.model, "choices": [],
                            "usage": openai_usage(&seen)});
                        out.push(Ok(StreamEvent::Frame(data_frame(
                            chunk.to_string().as_bytes(),
                        ))));
                    }
                    out.push(Ok(StreamEvent::Usage(seen)));
                }
                out.push(Ok(StreamEvent::Frame(Bytes::from_static(DONE_FRAME))));
            }
        }
        out
    }

    fn chunk(&self, delta: Value, finish: Value) -> Result<StreamEvent, ProviderError> {
        let chunk = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        Ok(StreamEvent::Frame(data_frame(chunk.to_string().as_bytes())))
    }
}

/// Turns Cohere's SSE events into an OpenAI chunk stream.
pub fn translate<S>(events: S, translator: Translator) -> EventStream
where
    S: Stream<Item = Result<Event, EventStreamError<reqwest::Error>>> + Send + 'static,
{
    let state = State {
        events: Box::pin(events),
        translator,
        pending: VecDeque::new(),
        done: false,
    };
    Box::pin(futures::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(item) = state.pending.pop_front() {
                if item.is_err() {
                    // An error ends the stream: nothing after it is sent.
                    state.pending.clear();
                    state.done = true;
                }
                return Some((item, state));
            }
            if state.done || state.translator.ended() {
                return None;
            }
            match state.events.next().await {
                None => {
                    state.pending.push_back(Err(ProviderError::Interrupted {
                        detail: "the Cohere stream ended before message-end".into(),
                    }));
                }
                Some(Err(EventStreamError::Transport(e))) => {
                    let err = ProviderError::from_transport(e, TimeoutPhase::Total);
                    state.pending.push_back(Err(err));
                }
                Some(Err(other)) => {
                    state.pending.push_back(Err(ProviderError::InvalidResponse {
                        detail: other.to_string(),
                    }));
                }
                Some(Ok(event)) => {
                    let name = event.event.as_str();
                    state
                        .pending
                        .extend(state.translator.event(name, &event.data));
                }
            }
        }
    }))
}

type Events = Pin<Box<dyn Stream<Item = Result<Event, EventStreamError<reqwest::Error>>> + Send>>;

struct State {
    events: Events,
    translator: Translator,
    pending: VecDeque<Result<StreamEvent, ProviderError>>,
    done: bool,
}
