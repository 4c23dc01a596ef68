//! ConverseStream events → OpenAI `chat.completion.chunk` SSE frames.
//!
//! | Bedrock event                         | OpenAI chunk                                    |
//! |---------------------------------------|-------------------------------------------------|
//! | `messageStart`                        | `delta: {role: "assistant", content: ""}`       |
//! | `contentBlockDelta` `text`            | `delta: {content}`                              |
//! | `contentBlockStart` `toolUse`         | `delta.tool_calls[i]: {id, type, function.name}`|
//! | `contentBlockDelta` `toolUse.input`   | `delta.tool_calls[i].function.arguments`        |
//! | `contentBlockDelta` `reasoningContent`| `delta: {reasoning_content}`                    |
//! | `messageStop`                         | `finish_reason` from `stopReason`               |
//! | `metadata`                            | usage (always recorded; sent only when the client asked), then `[DONE]` |
//! | an exception message                  | a [`ProviderError`] ending the stream           |
//!
//! A stream that ends after `messageStop` without `metadata` still ends with `[DONE]`; one
//! that ends before `messageStop` is an interruption.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{Value, json};

use super::error::{Scrub, stream_error, stream_exception};
use super::eventstream::Frame;
use super::response::{AnswerMeta, finish_reason, openai_usage, usage_from_converse};
use crate::providers::{DONE_FRAME, ProviderError, StreamEvent, data_frame};

/// What one upstream message becomes, in order.
pub type Out = Vec<Result<StreamEvent, ProviderError>>;

/// Translation state of one ConverseStream answer.
#[derive(Debug)]
pub struct ConverseTranslator {
    meta: AnswerMeta,
    forward_usage: bool,
    scrub: Scrub,
    /// `contentBlockIndex` of each tool-use block → its OpenAI `tool_calls` index.
    tools: HashMap<u64, usize>,
    stopped: bool,
    done: bool,
}

impl ConverseTranslator {
    /// A translator for one answer; `forward_usage` is the client's `include_usage`.
    pub fn new(meta: AnswerMeta, forward_usage: bool, scrub: Scrub) -> Self {
        Self {
            meta,
            forward_usage,
            scrub,
            tools: HashMap::new(),
            stopped: false,
            done: false,
        }
    }

    /// Whether the answer is complete (`[DONE]` sent or an error emitted).
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn chunk(&self, delta: Value, finish: Value) -> Result<StreamEvent, ProviderError> {
        let chunk = json!({
            "id": self.meta.id, "object": "chat.completion.chunk", "created": self.meta.created,
            "model": self.meta.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        Ok(StreamEvent::Frame(data_frame(chunk.to_string().as_bytes())))
    }

    fn fail(&mut self, error: ProviderError) -> Out {
        self.done = true;
        vec![Err(error)]
    }

    /// Translates one decoded message.
    pub fn on_frame(&mut self, frame: Frame) -> Out {
        if self.done {
            return Vec::new();
        }
        let (kind, payload) = match frame {
            Frame::Event { kind, payload } => (kind, payload),
            Frame::Exception { kind, payload } => {
                let error = stream_exception(&kind, &payload, &self.scrub);
                return self.fail(error);
            }
            Frame::Error { code, message } => {
                let error = stream_error(&code, &message, &self.scrub);
                return self.fail(error);
            }
        };
        let event: Value = match serde_json::from_slice(&payload) {
            Ok(event @ Value::Object(_)) => event,
            _ => {
                return self.fail(ProviderError::InvalidResponse {
                    detail: format!("the ConverseStream `{kind}` event is not a JSON object"),
                });
            }
        };
        match kind.as_str() {
            "messageStart" => {
                vec![self.chunk(json!({"role": "assistant", "content": ""}), Value::Null)]
            }
            "contentBlockStart" => self.block_start(&event),
            "contentBlockDelta" => self.block_delta(&event),
            "messageStop" => {
                self.stopped = true;
                let stop = event
                    .get("stopReason")
                    .and_then(Value::as_str)
                    .unwrap_or("end_turn");
                vec![self.chunk(json!({}), json!(finish_reason(stop)))]
            }
            "metadata" => self.metadata(&event),
            // contentBlockStop, and events this version does not know: nothing to send.
            _ => Vec::new(),
        }
    }

    fn block_start(&mut self, event: &Value) -> Out {
        let Some(tool) = event.pointer("/start/toolUse") else {
            return Vec::new();
        };
        let block = event
            .get("contentBlockIndex")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let index = self.tools.len();
        self.tools.insert(block, index);
        vec![self.chunk(
            json!({"tool_calls": [{
                "index": index,
                "id": tool.get("toolUseId").cloned().unwrap_or(Value::Null),
                "type": "function",
                "function": {"name": tool.get("name").cloned().unwrap_or(Value::Null), "arguments": ""},
            }]}),
            Value::Null,
        )]
    }

    fn block_delta(&mut self, event: &Value) -> Out {
        let Some(delta) = event.get("delta") else {
            return Vec::new();
        };
        if let Some(text) = delta.get("text").and_then(Value::as_str) {
            return vec![self.chunk(json!({ "content": text }), Value::Null)];
        }
        if let Some(input) = delta.pointer("/toolUse/input").and_then(Value::as_str) {
            let block = event
                .get("contentBlockIndex")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let Some(index) = self.tools.get(&block).copied() else {
                return self.fail(ProviderError::InvalidResponse {
                    detail: "a toolUse delta arrived for a block that never started".into(),
                });
            };
            return vec![self.chunk(
                json!({"tool_calls": [{"index": index, "function": {"arguments": input}}]}),
                Value::Null,
            )];
        }
        if let Some(text) = delta
            .pointer("/reasoningContent/text")
            .and_then(Value::as_str)
        {
            return vec![self.chunk(json!({ "reasoning_content": text }), Value::Null)];
        }
        Vec::new()
    }

    fn metadata(&mut self, event: &Value) -> Out {
        let mut out = Vec::with_capacity(3);
        if let Some(usage) = event.get("usage").and_then(usage_from_converse) {
            // Usage goes before the frames, so it is recorded before the client can see
            // the end of the answer (and so even if the client leaves right then).
            out.push(Ok(StreamEvent::Usage(usage)));
            if self.forward_usage {
                let chunk = json!({
                    "id": self.meta.id, "object": "chat.completion.chunk",
                    "created": self.meta.created, "model": self.meta.model,
                    "choices": [], "usage": openai_usage(&usage),
                });
                out.push(Ok(StreamEvent::Frame(data_frame(
                    chunk.to_string().as_bytes(),
                ))));
            }
        }
        out.push(Ok(StreamEvent::Frame(Bytes::from_static(DONE_FRAME))));
        self.done = true;
        out
    }

    /// The upstream body ended.
    pub fn on_end(&mut self) -> Out {
        if self.done {
            return Vec::new();
        }
        self.done = true;
        if self.stopped {
            vec![Ok(StreamEvent::Frame(Bytes::from_static(DONE_FRAME)))]
        } else {
            vec![Err(ProviderError::Interrupted {
                detail: "the Bedrock event stream ended before messageStop".into(),
            })]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::Usage;

    fn translator(forward_usage: bool) -> ConverseTranslator {
        let meta = AnswerMeta {
            id: "chatcmpl-x".into(),
            created: 1,
            model: "m".into(),
        };
        ConverseTranslator::new(meta, forward_usage, Scrub::default())
    }

    fn event(kind: &str, payload: Value) -> Frame {
        Frame::Event {
            kind: kind.into(),
            payload: Bytes::from(payload.to_string()),
        }
    }

    fn data(out: &Out) -> Vec<Value> {
        out.iter()
            .filter_map(|item| match item {
                Ok(StreamEvent::Frame(frame)) if frame.as_ref() != DONE_FRAME => {
                    let text = std::str::from_utf8(frame).unwrap();
                    Some(serde_json::from_str(text.trim().trim_start_matches("data: ")).unwrap())
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn tool_use_streams_as_tool_call_deltas() {
        let mut t = translator(false);
        let start = t.on_frame(event(
            "contentBlockStart",
            json!({"contentBlockIndex": 1,
            "start": {"toolUse": {"toolUseId": "tu_1", "name": "weather"}}}),
        ));
        let chunk = &data(&start)[0]["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(chunk["index"], 0);
        assert_eq!(chunk["id"], "tu_1");
        assert_eq!(chunk["function"]["name"], "weather");
        let delta = t.on_frame(event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 1,
            "delta": {"toolUse": {"input": "{\"city\":"}}}),
        ));
        let chunk = &data(&delta)[0]["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(chunk["index"], 0);
        assert_eq!(chunk["function"]["arguments"], "{\"city\":");
    }

    #[test]
    fn metadata_reports_usage_and_ends_with_done() {
        let usage = json!({"usage": {"inputTokens": 3, "outputTokens": 2, "totalTokens": 5}});
        let mut hidden = translator(false);
        let out = hidden.on_frame(event("metadata", usage.clone()));
        assert!(data(&out).is_empty());
        assert!(matches!(
            out[0],
            Ok(StreamEvent::Usage(Usage {
                input_tokens: 3,
                output_tokens: 2,
                ..
            }))
        ));
        assert!(matches!(&out[1], Ok(StreamEvent::Frame(f)) if f.as_ref() == DONE_FRAME));
        assert!(hidden.is_done());
        assert!(hidden.on_end().is_empty());

        let mut shown = translator(true);
        let out = shown.on_frame(event("metadata", usage));
        assert_eq!(data(&out)[0]["usage"]["prompt_tokens"], 3);
        assert_eq!(data(&out)[0]["choices"], json!([]));
    }

    #[test]
    fn ends_are_checked() {
        let mut cut = translator(false);
        cut.on_frame(event("messageStart", json!({"role": "assistant"})));
        assert!(matches!(
            cut.on_end()[..],
            [Err(ProviderError::Interrupted { .. })]
        ));

        let mut stopped = translator(false);
        let out = stopped.on_frame(event("messageStop", json!({"stopReason": "max_tokens"})));
        assert_eq!(data(&out)[0]["choices"][0]["finish_reason"], "length");
        assert!(
            matches!(&stopped.on_end()[..], [Ok(StreamEvent::Frame(f))] if f.as_ref() == DONE_FRAME)
        );
    }

    #[test]
    fn exceptions_end_the_stream() {
        let mut t = translator(false);
        let out = t.on_frame(Frame::Exception {
            kind: "throttlingException".into(),
            payload: Bytes::from_static(br#"{"message":"slow"}"#),
        });
        assert!(matches!(&out[..], [Err(ProviderError::Status(e))] if e.status == 429));
        assert!(t.is_done());
        assert!(t.on_frame(event("messageStop", json!({}))).is_empty());
    }
}
