//! Anthropic's SSE stream, event by event: translated into OpenAI `chat.completion.chunk`
//! frames (ending with `data: [DONE]`) for chat, or forwarded unchanged for the native
//! passthrough. Either way usage is read as it passes: input (and prompt-cache) tokens from
//! `message_start`, cumulative counts from `message_delta`.
//!
//! Until `message_delta` reports the output tokens, each content delta counts as one output
//! token, and the running usage is reported before the frame it covers, so a stream the
//! client abandons is recorded with the exact input and the output it was sent. `ping`
//! events are dropped from chat streams; an `error` event ends the stream with a
//! [`ProviderError`]; a stream that ends before `message_stop` is
//! [`ProviderError::Interrupted`].

use std::collections::VecDeque;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::{Map, Value, json};

use super::error::stream_error;
use super::response::{AnthropicUsage, arguments, finish_reason};
use crate::providers::{DONE_FRAME, EventStream, ProviderError, StreamEvent, data_frame};

/// What a stream is translated into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// OpenAI chat chunks; the usage chunk is sent only if `forward_usage`.
    Chat {
        /// The client asked for `stream_options.include_usage`.
        forward_usage: bool,
    },
    /// Anthropic's own events, unchanged.
    Native,
}

/// One item of the translated stream.
pub type Item = Result<StreamEvent, ProviderError>;

/// The per-stream translation state.
#[derive(Debug)]
pub struct Translator {
    mode: Mode,
    key: Option<String>,
    created: u64,
    id: String,
    model: String,
    usage: AnthropicUsage,
    /// Content deltas seen: the output estimate until `message_delta` gives the count.
    deltas: u64,
    output_reported: bool,
    last_usage: Option<crate::usage::Usage>,
    /// Anthropic content-block index → OpenAI tool-call index.
    tools: Vec<(u64, usize)>,
    finished: bool,
}

impl Translator {
    /// A translator for one stream; `key` is scrubbed from error messages, `created` stamps
    /// the OpenAI chunks.
    pub fn new(mode: Mode, key: Option<String>, created: u64) -> Self {
        Self {
            mode,
            key,
            created,
            id: String::new(),
            model: String::new(),
            usage: AnthropicUsage::default(),
            deltas: 0,
            output_reported: false,
            last_usage: None,
            tools: Vec::new(),
            finished: false,
        }
    }

    /// Whether `message_stop` (or an `error` event) was seen.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Translates one upstream event (`name` is its `event:` line, `data` its data).
    pub fn event(&mut self, name: &str, data: &str) -> Vec<Item> {
        if self.finished {
            return Vec::new();
        }
        let parsed: Option<Map<String, Value>> = serde_json::from_str(data).ok();
        let Some(event) = parsed else {
            self.finished = true;
            return vec![Err(ProviderError::InvalidResponse {
                detail: format!("a `{name}` stream event was not a JSON object"),
            })];
        };
        let kind = event
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or(name)
            .to_owned();
        if kind == "error" {
            self.finished = true;
            return vec![Err(stream_error(data, self.key.as_deref()))];
        }
        let mut out = Vec::new();
        match kind.as_str() {
            "message_start" => {
                if let Some(message) = event.get("message") {
                    let text = |k: &str| message.get(k).and_then(Value::as_str).unwrap_or("");
                    self.id = text("id").to_owned();
                    self.model = text("model").to_owned();
                    if let Some(usage) = message.get("usage").and_then(Value::as_object) {
                        self.usage.merge(usage);
                    }
                }
                self.report_usage(&mut out);
                self.chunk(&mut out, json!({"role": "assistant", "content": ""}), None);
            }
            "content_block_start" => {
                let block = event.get("content_block").unwrap_or(&Value::Null);
                match block.get("type").and_then(Value::as_str) {
                    Some("tool_use") => {
                        let index = event.get("index").and_then(Value::as_u64).unwrap_or(0);
                        let call = self.tools.len();
                        self.tools.push((index, call));
                        let input = block
                            .get("input")
                            .filter(|v| v.as_object().is_some_and(|o| !o.is_empty()));
                        let start = input.map(|i| arguments(Some(i))).unwrap_or_default();
                        self.chunk(
                            &mut out,
                            json!({"tool_calls": [{"index": call, "id": block.get("id"),
                                "type": "function", "function": {"name": block.get("name"),
                                "arguments": start}}]}),
                            None,
                        );
                    }
                    Some("text") => {
                        let text = block.get("text").and_then(Value::as_str).unwrap_or("");
                        if !text.is_empty() {
                            self.chunk(&mut out, json!({"content": text}), None);
                        }
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                self.deltas += 1;
                self.report_usage(&mut out);
                let delta = event.get("delta").unwrap_or(&Value::Null);
                let index = event.get("index").and_then(Value::as_u64).unwrap_or(0);
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        let text = delta.get("text").and_then(Value::as_str).unwrap_or("");
                        self.chunk(&mut out, json!({"content": text}), None);
                    }
                    Some("input_json_delta") => {
                        let partial = delta.get("partial_json").and_then(Value::as_str);
                        let call = self.tools.iter().find(|(i, _)| *i == index).map(|t| t.1);
                        if let (Some(partial), Some(call)) = (partial, call)
                            && !partial.is_empty()
                        {
                            self.chunk(
                                &mut out,
                                json!({"tool_calls": [{"index": call,
                                    "function": {"arguments": partial}}]}),
                                None,
                            );
                        }
                    }
                    // thinking, signature and citation deltas have no OpenAI counterpart.
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(usage) = event.get("usage").and_then(Value::as_object) {
                    self.usage.merge(usage);
                    self.output_reported |= usage.contains_key("output_tokens");
                }
                self.report_usage(&mut out);
                let stop = event
                    .get("delta")
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str);
                if let Some(finish) = finish_reason(stop) {
                    self.chunk(&mut out, json!({}), Some(finish));
                }
            }
            "message_stop" => {
                self.finished = true;
                self.report_usage(&mut out);
                match self.mode {
                    Mode::Native => out.push(Ok(StreamEvent::Frame(native_frame(name, data)))),
                    Mode::Chat { forward_usage } => {
                        if forward_usage {
                            let chunk = json!({"id": self.id, "object": "chat.completion.chunk",
                                "created": self.created, "model": self.model, "choices": [],
                                "usage": self.usage.openai_json()});
                            out.push(Ok(StreamEvent::Frame(data_frame(
                                chunk.to_string().as_bytes(),
                            ))));
                        }
                        out.push(Ok(StreamEvent::Frame(Bytes::from_static(DONE_FRAME))));
                    }
                }
                return out;
            }
            // ping, content_block_stop and event types added after this was written.
            _ => {}
        }
        if self.mode == Mode::Native {
            out.push(Ok(StreamEvent::Frame(native_frame(name, data))));
        }
        out
    }

    /// Appends an OpenAI chunk (chat mode only).
    fn chunk(&self, out: &mut Vec<Item>, delta: Value, finish: Option<&str>) {
        if self.mode == Mode::Native {
            return;
        }
        let chunk = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        out.push(Ok(StreamEvent::Frame(data_frame(
            chunk.to_string().as_bytes(),
        ))));
    }

    /// Appends the running usage if it changed since it was last reported.
    fn report_usage(&mut self, out: &mut Vec<Item>) {
        let mut usage = self.usage.usage();
        if !self.output_reported {
            usage.output_tokens = usage.output_tokens.max(self.deltas);
        }
        if self.last_usage != Some(usage) {
            self.last_usage = Some(usage);
            out.push(Ok(StreamEvent::Usage(usage)));
        }
    }
}

/// Re-frames an upstream event as it came: `event: name` (when named) and its data lines.
pub fn native_frame(name: &str, data: &str) -> Bytes {
    let mut frame = String::with_capacity(name.len() + data.len() + 16);
    if !name.is_empty() && name != "message" {
        frame.push_str("event: ");
        frame.push_str(name);
        frame.push('\n');
    }
    for line in data.split('\n') {
        frame.push_str("data: ");
        frame.push_str(line);
        frame.push('\n');
    }
    frame.push('\n');
    Bytes::from(frame)
}

/// One parsed upstream SSE event: its name and data.
pub type RawEvent = Result<(String, String), ProviderError>;

/// Runs `translator` over `events`, ending with [`ProviderError::Interrupted`] if the
/// upstream stream ends before `message_stop`.
pub fn translate<S>(events: S, translator: Translator) -> EventStream
where
    S: Stream<Item = RawEvent> + Send + 'static,
{
    struct State {
        events: std::pin::Pin<Box<dyn Stream<Item = RawEvent> + Send>>,
        translator: Translator,
        pending: VecDeque<Item>,
        done: bool,
    }
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
                    state.done = true;
                    state.pending.clear();
                }
                return Some((item, state));
            }
            if state.done {
                return None;
            }
            match state.events.next().await {
                Some(Ok((name, data))) => {
                    state.pending.extend(state.translator.event(&name, &data));
                    if state.translator.finished() && state.pending.is_empty() {
                        state.done = true;
                    }
                }
                Some(Err(error)) => state.pending.push_back(Err(error)),
                None => {
                    state.done = true;
                    if !state.translator.finished() {
                        return Some((
                            Err(ProviderError::Interrupted {
                                detail: "the stream ended before message_stop".into(),
                            }),
                            state,
                        ));
                    }
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .filter_map(|item| match item {
                Ok(StreamEvent::Frame(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
                _ => None,
            })
            .collect()
    }

    fn usages(items: &[Item]) -> Vec<crate::usage::Usage> {
        items
            .iter()
            .filter_map(|item| match item {
                Ok(StreamEvent::Usage(usage)) => Some(*usage),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn ping_is_dropped_from_chat_and_kept_natively() {
        let mut chat = Translator::new(
            Mode::Chat {
                forward_usage: false,
            },
            None,
            1,
        );
        assert!(chat.event("ping", r#"{"type": "ping"}"#).is_empty());
        let mut native = Translator::new(Mode::Native, None, 1);
        assert_eq!(
            frames(&native.event("ping", r#"{"type": "ping"}"#)),
            vec!["event: ping\ndata: {\"type\": \"ping\"}\n\n"]
        );
    }

    #[test]
    fn usage_before_message_delta_counts_deltas() {
        let mut t = Translator::new(
            Mode::Chat {
                forward_usage: false,
            },
            None,
            1,
        );
        let start = t.event(
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_1","model":"m","usage":{"input_tokens":12,"cache_read_input_tokens":8,"output_tokens":1}}}"#,
        );
        assert_eq!(usages(&start)[0].input_tokens, 20);
        assert_eq!(usages(&start)[0].cached_tokens, 8);
        let delta =
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"}}"#;
        t.event("content_block_delta", delta);
        let second = t.event("content_block_delta", delta);
        assert_eq!(usages(&second)[0].output_tokens, 2);
        let end = t.event(
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":1}}"#,
        );
        assert_eq!(usages(&end)[0].output_tokens, 1, "the reported count wins");
    }

    #[test]
    fn cache_writes_in_message_start_are_reported() {
        let mut t = Translator::new(Mode::Native, None, 1);
        let start = t.event(
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_1","model":"m","usage":{"input_tokens":12,"cache_creation_input_tokens":50,"cache_creation":{"ephemeral_5m_input_tokens":20,"ephemeral_1h_input_tokens":30},"cache_read_input_tokens":8,"output_tokens":1}}}"#,
        );
        let usage = usages(&start)[0];
        assert_eq!(usage.input_tokens, 70);
        assert_eq!(
            (
                usage.cached_tokens,
                usage.cache_write_tokens,
                usage.cache_write_1h_tokens
            ),
            (8, 50, 30)
        );
    }

    #[test]
    fn error_events_end_the_stream() {
        let mut t = Translator::new(Mode::Native, None, 1);
        let out = t.event(
            "error",
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        assert!(
            matches!(out.as_slice(), [Err(ProviderError::Status(e))] if e.status.as_u16() == 529)
        );
        assert!(t.finished());
        assert!(
            t.event("message_stop", r#"{"type":"message_stop"}"#)
                .is_empty()
        );
    }
}
