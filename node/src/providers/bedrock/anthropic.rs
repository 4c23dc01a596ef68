//! Anthropic's Messages API on Bedrock, natively: the client's Messages body is sent to
//! `InvokeModel` (`/model/{id}/invoke`) or `InvokeModelWithResponseStream`
//! (`/invoke-with-response-stream`) without `model` and `stream` (the path says both) and
//! with `anthropic_version: "bedrock-2023-05-31"`; `anthropic-beta` client headers become
//! the body's `anthropic_beta`, as Bedrock expects them.
//!
//! A streamed answer arrives as event-stream `chunk` events whose `bytes` field is the
//! base64 of one Anthropic SSE event's JSON; each is re-framed as `event: <type>\ndata:
//! <json>\n\n`, so the Anthropic SDK reads the stream unchanged. Usage comes from
//! `message_start` (input, cache) and `message_delta` (output).

use base64::Engine;
use bytes::Bytes;
use http::HeaderMap;
use serde_json::{Map, Value, json};

use super::error::{Scrub, stream_error, stream_exception};
use super::eventstream::Frame;
use super::stream::Out;
use crate::providers::anthropic::response::AnthropicUsage;
use crate::providers::{ProviderError, StreamEvent, UpstreamError};
use crate::usage::Usage;

/// The `anthropic_version` Bedrock requires in Messages bodies.
pub const BEDROCK_ANTHROPIC_VERSION: &str = "bedrock-2023-05-31";

/// The body sent to `InvokeModel` for a client's Messages body; `max_tokens_cap` is the
/// target's `max_tokens` (the default when the client gives none, the ceiling otherwise).
pub fn invoke_body(
    body: &Map<String, Value>,
    max_tokens_cap: Option<u64>,
    client_headers: &HeaderMap,
) -> Map<String, Value> {
    let mut out = body.clone();
    out.remove("model");
    out.remove("stream");
    out.insert("anthropic_version".into(), json!(BEDROCK_ANTHROPIC_VERSION));
    if let Some(cap) = max_tokens_cap {
        let asked = out.get("max_tokens").and_then(Value::as_u64);
        out.insert(
            "max_tokens".into(),
            json!(asked.map_or(cap, |n| n.min(cap))),
        );
    }
    if !out.contains_key("anthropic_beta") {
        let betas: Vec<Value> = client_headers
            .get_all("anthropic-beta")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| json!(v))
            .collect();
        if !betas.is_empty() {
            out.insert("anthropic_beta".into(), Value::Array(betas));
        }
    }
    out
}

/// Usage from an Anthropic `usage` object, read as the Anthropic provider reads it: cache
/// reads and writes are reported beside `input_tokens`, so all three make the input, and
/// the writes are kept (with their one-hour part) for their own price.
pub fn usage_from_anthropic(usage: &Value) -> Option<Usage> {
    usage.get("input_tokens")?;
    AnthropicUsage::from_json(usage).map(|usage| usage.usage())
}

/// Usage of a complete Messages answer, falling back to Bedrock's
/// `X-Amzn-Bedrock-Input-Token-Count`/`-Output-Token-Count` headers.
pub fn answer_usage(answer: &Map<String, Value>, headers: &HeaderMap) -> Usage {
    if let Some(usage) = answer.get("usage").and_then(usage_from_anthropic) {
        return usage;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Usage {
        input_tokens: header("x-amzn-bedrock-input-token-count"),
        output_tokens: header("x-amzn-bedrock-output-token-count"),
        ..Usage::default()
    }
}

/// Re-frames an InvokeModelWithResponseStream answer as Anthropic SSE.
#[derive(Debug)]
pub struct MessagesTranslator {
    scrub: Scrub,
    /// Anthropic's counts so far; each event's fields replace the earlier ones (they are
    /// cumulative).
    usage: AnthropicUsage,
    done: bool,
}

impl MessagesTranslator {
    /// A translator for one answer.
    pub fn new(scrub: Scrub) -> Self {
        Self {
            scrub,
            usage: AnthropicUsage::default(),
            done: false,
        }
    }

    /// Whether the answer is complete (`message_stop` seen or an error emitted).
    pub fn is_done(&self) -> bool {
        self.done
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
        let payload = match frame {
            Frame::Event { kind, payload } if kind == "chunk" => payload,
            Frame::Event { .. } => return Vec::new(),
            Frame::Exception { kind, payload } => {
                let error = stream_exception(&kind, &payload, &self.scrub);
                return self.fail(error);
            }
            Frame::Error { code, message } => {
                let error = stream_error(&code, &message, &self.scrub);
                return self.fail(error);
            }
        };
        let decoded = serde_json::from_slice::<Value>(&payload)
            .ok()
            .and_then(|chunk| chunk.get("bytes")?.as_str().map(str::to_owned))
            .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok());
        let Some(data) = decoded else {
            return self.fail(invalid("a chunk event has no base64 `bytes`"));
        };
        let Ok(event) = serde_json::from_slice::<Value>(&data) else {
            return self.fail(invalid("a chunk's bytes are not a JSON event"));
        };
        let kind = event
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if kind.is_empty() {
            return self.fail(invalid("a chunk's event has no `type`"));
        }
        if kind == "error" {
            return self.fail(anthropic_error(&event, &self.scrub));
        }
        let mut frame = Vec::with_capacity(data.len() + kind.len() + 16);
        frame.extend_from_slice(b"event: ");
        frame.extend_from_slice(kind.as_bytes());
        frame.extend_from_slice(b"\ndata: ");
        frame.extend_from_slice(&data);
        frame.extend_from_slice(b"\n\n");
        let frame = Ok(StreamEvent::Frame(Bytes::from(frame)));
        let mut out = Vec::with_capacity(2);
        match kind.as_str() {
            "message_start" => {
                if let Some(usage) = event.pointer("/message/usage").and_then(Value::as_object) {
                    self.usage.merge(usage);
                }
            }
            "message_delta" => {
                if let Some(delta) = event.get("usage").and_then(Value::as_object) {
                    self.usage.merge(delta);
                }
                // Before the frame: recorded before the client can see it.
                out.push(Ok(StreamEvent::Usage(self.usage.usage())));
            }
            "message_stop" => self.done = true,
            _ => {}
        }
        out.push(frame);
        out
    }

    /// The upstream body ended.
    pub fn on_end(&mut self) -> Out {
        if self.done {
            return Vec::new();
        }
        self.fail(ProviderError::Interrupted {
            detail: "the Bedrock event stream ended before message_stop".into(),
        })
    }
}

fn invalid(detail: &str) -> ProviderError {
    ProviderError::InvalidResponse {
        detail: detail.to_owned(),
    }
}

/// An Anthropic `error` event inside the stream (`overloaded_error`, ...).
fn anthropic_error(event: &Value, scrub: &Scrub) -> ProviderError {
    let kind = event
        .pointer("/error/type")
        .and_then(Value::as_str)
        .unwrap_or("api_error");
    let message = event
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or("the model reported an error mid-stream");
    let status = match kind {
        "invalid_request_error" => http::StatusCode::BAD_REQUEST,
        "rate_limit_error" => http::StatusCode::TOO_MANY_REQUESTS,
        "overloaded_error" => {
            http::StatusCode::from_u16(529).unwrap_or(http::StatusCode::SERVICE_UNAVAILABLE)
        }
        _ => http::StatusCode::INTERNAL_SERVER_ERROR,
    };
    ProviderError::Status(Box::new(UpstreamError {
        status,
        message: scrub.apply(message),
        error_type: Some(kind.to_owned()),
        code: None,
        param: None,
        retry_after: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(event: Value) -> Frame {
        let b64 = base64::engine::general_purpose::STANDARD.encode(event.to_string());
        Frame::Event {
            kind: "chunk".into(),
            payload: Bytes::from(json!({ "bytes": b64 }).to_string()),
        }
    }

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn body_loses_model_and_stream_and_gains_the_bedrock_version() {
        let mut headers = HeaderMap::new();
        headers.insert("anthropic-beta", "a-1, b-2".parse().unwrap());
        let body = object(json!({"model": "claude", "stream": true, "max_tokens": 900,
                                 "messages": [{"role": "user", "content": "hi"}]}));
        let out = invoke_body(&body, Some(500), &headers);
        assert!(!out.contains_key("model") && !out.contains_key("stream"));
        assert_eq!(out["anthropic_version"], "bedrock-2023-05-31");
        assert_eq!(out["max_tokens"], 500);
        assert_eq!(out["anthropic_beta"], json!(["a-1", "b-2"]));
        assert_eq!(out["messages"], body["messages"]);
        let defaulted = invoke_body(
            &object(json!({"messages": []})),
            Some(64),
            &HeaderMap::new(),
        );
        assert_eq!(defaulted["max_tokens"], 64);
        assert!(!defaulted.contains_key("anthropic_beta"));
    }

    #[test]
    fn chunks_are_reframed_and_usage_read() {
        let mut t = MessagesTranslator::new(Scrub::default());
        let start = json!({"type": "message_start", "message": {"id": "msg_1", "usage":
            {"input_tokens": 13, "cache_read_input_tokens": 5, "cache_creation_input_tokens": 0, "output_tokens": 1}}});
        let out = t.on_frame(chunk(start.clone()));
        let Ok(StreamEvent::Frame(frame)) = &out[0] else {
            panic!("{out:?}")
        };
        let text = std::str::from_utf8(frame).unwrap();
        assert!(text.starts_with("event: message_start\ndata: {"));
        assert!(text.ends_with("\n\n"));
        let data: Value =
            serde_json::from_str(text.lines().nth(1).unwrap().trim_start_matches("data: "))
                .unwrap();
        assert_eq!(data, start);
        let out = t.on_frame(chunk(json!({"type": "message_delta",
            "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 8}})));
        assert!(matches!(
            out[0],
            Ok(StreamEvent::Usage(Usage {
                input_tokens: 18,
                output_tokens: 8,
                cached_tokens: 5,
                cache_write_tokens: 0,
                cache_write_1h_tokens: 0,
            }))
        ));
        assert!(!t.is_done());
        t.on_frame(chunk(json!({"type": "message_stop"})));
        assert!(t.is_done());
        assert!(t.on_end().is_empty());
    }

    #[test]
    fn cache_writes_are_read_with_their_lifetimes() {
        let usage = json!({"input_tokens": 13, "cache_read_input_tokens": 5,
            "cache_creation_input_tokens": 500,
            "cache_creation": {"ephemeral_5m_input_tokens": 300, "ephemeral_1h_input_tokens": 200},
            "output_tokens": 8});
        let answer = object(json!({ "usage": usage.clone() }));
        let complete = answer_usage(&answer, &HeaderMap::new());
        assert_eq!(
            (
                complete.input_tokens,
                complete.cache_write_tokens,
                complete.cache_write_1h_tokens
            ),
            (518, 500, 200)
        );
        let mut t = MessagesTranslator::new(Scrub::default());
        t.on_frame(chunk(
            json!({"type": "message_start", "message": {"usage": usage}}),
        ));
        let out = t.on_frame(chunk(json!({"type": "message_delta",
            "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}})));
        let Ok(StreamEvent::Usage(streamed)) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(
            (
                streamed.input_tokens,
                streamed.output_tokens,
                streamed.cache_write_tokens,
                streamed.cache_write_1h_tokens
            ),
            (518, 9, 500, 200)
        );
    }

    #[test]
    fn errors_end_the_stream() {
        let mut t = MessagesTranslator::new(Scrub::default());
        let out = t.on_frame(chunk(
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}),
        ));
        assert!(matches!(&out[..], [Err(ProviderError::Status(e))] if e.status == 529));
        let mut cut = MessagesTranslator::new(Scrub::default());
        assert!(matches!(
            cut.on_end()[..],
            [Err(ProviderError::Interrupted { .. })]
        ));
    }
}
