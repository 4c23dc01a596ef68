//! The built-in `mock` provider: deterministic, no network, behaviour chosen by the target's
//! model name, answering in OpenAI's exact shapes with realistic token usage.
//!
//! | model        | behaviour                                                      |
//! |--------------|----------------------------------------------------------------|
//! | `echo`       | repeats the last user message (any unknown name does too)      |
//! | `slow-<ms>`  | waits `<ms>` milliseconds, then echoes                         |
//! | `error-<st>` | fails with HTTP `<st>` and an OpenAI-style error body          |
//! | `stream-<n>` | answers with exactly `<n>` chunks (one token each)             |
//!
//! Tokens: each message costs `ceil(chars / 4) + 4` input tokens plus 3 for the reply;
//! each output word (one streamed chunk) is one output token.
//!
//! Native Anthropic Messages requests are answered in Anthropic's shapes by [`anthropic`],
//! native Gemini `generateContent` requests in Gemini's by [`gemini`].

mod anthropic;
mod gemini;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::StatusCode;
use serde_json::{Map, Value, json};

use super::{
    Completion, DONE_FRAME, EventStream, Operation, Provider, ProviderError, ProviderRequest,
    StreamEvent, UpstreamError, data_frame,
};
use crate::usage::Usage;

/// Longest accepted `slow-<ms>` delay, so a typo cannot park a request for hours.
const MAX_DELAY: Duration = Duration::from_secs(600);

/// The mock provider.
#[derive(Debug, Clone, Copy, Default)]
pub struct MockProvider;

/// The OpenAI-shaped operations the mock answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MockOp {
    Chat,
    Completions,
    Embeddings,
    Responses,
}

impl MockOp {
    fn of(op: Operation) -> Result<Self, ProviderError> {
        match op {
            Operation::Chat => Ok(Self::Chat),
            Operation::Completions => Ok(Self::Completions),
            Operation::Embeddings => Ok(Self::Embeddings),
            Operation::Responses => Ok(Self::Responses),
            Operation::AnthropicMessages | Operation::GeminiGenerateContent => {
                Err(ProviderError::Unsupported(
                    "the mock provider answers OpenAI-shaped requests only".into(),
                ))
            }
        }
    }
}

/// What a mock model name asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Echo,
    Slow(Duration),
    Error(StatusCode),
    Chunks(usize),
}

impl Behaviour {
    fn parse(model: &str) -> Self {
        let number = |prefix: &str| model.strip_prefix(prefix)?.parse::<u64>().ok();
        if let Some(ms) = number("slow-") {
            return Self::Slow(Duration::from_millis(ms).min(MAX_DELAY));
        }
        if let Some(status) = number("error-")
            .and_then(|s| u16::try_from(s).ok())
            .and_then(|s| StatusCode::from_u16(s).ok())
        {
            return Self::Error(status);
        }
        if let Some(n) = number("stream-") {
            return Self::Chunks(usize::try_from(n).unwrap_or(usize::MAX).min(100_000));
        }
        Self::Echo
    }
}

/// Mock token count of a text.
fn tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// Text of a message's `content`: a string, or the text parts of an array.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The prompt the mock answers to, and its input tokens.
fn prompt(op: MockOp, body: &Map<String, Value>) -> (String, u64) {
    match op {
        MockOp::Chat => {
            let messages = body.get("messages").and_then(Value::as_array);
            let messages = messages.map(Vec::as_slice).unwrap_or_default();
            let input = messages
                .iter()
                .map(|m| tokens(&content_text(m.get("content").unwrap_or(&Value::Null))) + 4)
                .sum::<u64>()
                + 3;
            let last_user = messages
                .iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
                .map(|m| content_text(m.get("content").unwrap_or(&Value::Null)))
                .unwrap_or_default();
            (last_user, input)
        }
        MockOp::Responses => {
            let text = match body.get("input") {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Array(items)) => items
                    .iter()
                    .rev()
                    .find_map(|m| m.get("content").map(content_text))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            let input = tokens(&text) + 4;
            (text, input)
        }
        MockOp::Completions | MockOp::Embeddings => {
            let text = match body.get("prompt").or_else(|| body.get("input")) {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" "),
                _ => String::new(),
            };
            let input = tokens(&text).max(1);
            (text, input)
        }
    }
}

/// The answer's words: the echo split on whitespace, or `n` numbered words.
fn words(behaviour: Behaviour, prompt: &str) -> Vec<String> {
    let echo: Vec<String> = prompt.split_whitespace().map(str::to_owned).collect();
    match behaviour {
        Behaviour::Chunks(n) => (0..n)
            .map(|i| {
                echo.get(i % echo.len().max(1))
                    .cloned()
                    .unwrap_or_else(|| format!("token{i}"))
            })
            .collect(),
        _ if echo.is_empty() => vec!["(empty)".to_owned()],
        _ => echo,
    }
}

/// The error an `error-<status>` model answers with, in a dialect's `error_type` and
/// `code`; 429s carry `Retry-After: 1`.
fn mock_error(status: StatusCode, error_type: &str, code: Option<&str>) -> ProviderError {
    ProviderError::Status(Box::new(UpstreamError {
        status,
        message: format!("mock provider error {}", status.as_u16()),
        error_type: Some(error_type.to_owned()),
        code: code.map(str::to_owned),
        param: None,
        retry_after: (status == StatusCode::TOO_MANY_REQUESTS)
            .then(|| http::HeaderValue::from_static("1")),
    }))
}

/// An OpenAI-style mock error.
fn error_for(status: StatusCode) -> ProviderError {
    let (error_type, code) = match status.as_u16() {
        400 => ("invalid_request_error", "invalid_request"),
        401 => ("invalid_request_error", "invalid_api_key"),
        403 => ("invalid_request_error", "permission_denied"),
        404 => ("invalid_request_error", "model_not_found"),
        429 => ("requests", "rate_limit_exceeded"),
        _ => ("server_error", "mock_error"),
    };
    mock_error(status, error_type, Some(code))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A deterministic unit vector for `text`.
fn embedding(text: &str) -> Vec<f64> {
    let mut state: u64 = 0xcbf2_9ce4_8422_2325;
    let raw: Vec<f64> = (0..8)
        .map(|i| {
            for byte in text.bytes().chain([i as u8]) {
                state ^= u64::from(byte);
                state = state.wrapping_mul(0x0100_0000_01b3);
            }
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        })
        .collect();
    let norm = raw
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::EPSILON);
    raw.iter().map(|x| x / norm).collect()
}

fn usage_json(op: MockOp, usage: Usage) -> Value {
    match op {
        MockOp::Responses => json!({
            "input_tokens": usage.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": usage.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage.input_tokens + usage.output_tokens,
        }),
        _ => json!({
            "prompt_tokens": usage.input_tokens,
            "completion_tokens": usage.output_tokens,
            "total_tokens": usage.input_tokens + usage.output_tokens,
        }),
    }
}

fn completion_body(
    op: MockOp,
    model: &str,
    body: &Map<String, Value>,
    text: &str,
    usage: Usage,
) -> Value {
    let id = format!("mock-{}", uuid::Uuid::now_v7().simple());
    match op {
        MockOp::Chat => json!({
            "id": format!("chatcmpl-{id}"),
            "object": "chat.completion",
            "created": now_secs(),
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": null},
                "logprobs": null,
                "finish_reason": "stop",
            }],
            "usage": usage_json(op, usage),
            "system_fingerprint": "fp_mock",
        }),
        MockOp::Completions => json!({
            "id": format!("cmpl-{id}"),
            "object": "text_completion",
            "created": now_secs(),
            "model": model,
            "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": "stop"}],
            "usage": usage_json(op, usage),
        }),
        MockOp::Embeddings => {
            let inputs: Vec<String> = match body.get("input") {
                Some(Value::Array(items)) => items.iter().map(|v| v.to_string()).collect(),
                Some(other) => vec![other.to_string()],
                None => vec![String::new()],
            };
            let data: Vec<Value> = inputs
                .iter()
                .enumerate()
                .map(|(index, input)| {
                    json!({"object": "embedding", "index": index, "embedding": embedding(input)})
                })
                .collect();
            json!({
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": usage.input_tokens, "total_tokens": usage.input_tokens},
            })
        }
        MockOp::Responses => json!({
            "id": format!("resp_{id}"),
            "object": "response",
            "created_at": now_secs(),
            "status": "completed",
            "model": model,
            "output": [{
                "type": "message",
                "id": format!("msg_{id}"),
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }],
            "usage": usage_json(op, usage),
        }),
    }
}

/// Plans an answer: the behaviour, the words, and the usage.
fn plan(request: &ProviderRequest<'_>, op: MockOp) -> (Behaviour, Vec<String>, Usage) {
    let behaviour = Behaviour::parse(&request.target.model);
    let (prompt, input_tokens) = prompt(op, &request.body);
    let words = if op == MockOp::Embeddings {
        Vec::new()
    } else {
        words(behaviour, &prompt)
    };
    let usage = Usage {
        input_tokens,
        output_tokens: words.len() as u64,
        ..Usage::default()
    };
    (behaviour, words, usage)
}

/// Waits for `slow-<ms>` models and fails `error-<status>` ones with `error`'s dialect.
async fn delay_or_fail(
    behaviour: Behaviour,
    error: fn(StatusCode) -> ProviderError,
) -> Result<(), ProviderError> {
    match behaviour {
        Behaviour::Slow(delay) => {
            tokio::time::sleep(delay).await;
            Ok(())
        }
        Behaviour::Error(status) => Err(error(status)),
        Behaviour::Echo | Behaviour::Chunks(_) => Ok(()),
    }
}

impl Provider for MockProvider {
    async fn complete(&self, request: ProviderRequest<'_>) -> Result<Completion, ProviderError> {
        if request.op == Operation::AnthropicMessages {
            return anthropic::complete(request).await;
        }
        if request.op == Operation::GeminiGenerateContent {
            return gemini::complete(request).await;
        }
        let op = MockOp::of(request.op)?;
        let (behaviour, words, usage) = plan(&request, op);
        delay_or_fail(behaviour, error_for).await?;
        let text = words.join(" ");
        let body = completion_body(op, &request.target.model, &request.body, &text, usage);
        let Value::Object(body) = body else {
            return Err(ProviderError::InvalidResponse {
                detail: "mock built a non-object".into(),
            });
        };
        Ok(Completion { body, usage })
    }

    async fn stream(&self, request: ProviderRequest<'_>) -> Result<EventStream, ProviderError> {
        if request.op == Operation::AnthropicMessages {
            return anthropic::stream(request).await;
        }
        if request.op == Operation::GeminiGenerateContent {
            return gemini::stream(request).await;
        }
        let op = MockOp::of(request.op)?;
        if matches!(op, MockOp::Embeddings | MockOp::Responses) {
            return Err(ProviderError::Unsupported(
                "the mock provider streams chat and completions only".into(),
            ));
        }
        let (behaviour, words, usage) = plan(&request, op);
        delay_or_fail(behaviour, error_for).await?;
        let id = format!("chatcmpl-mock-{}", uuid::Uuid::now_v7().simple());
        let model = request.target.model.clone();
        let created = now_secs();
        let chat = op == MockOp::Chat;
        let count = words.len();
        let mut frames: Vec<Result<StreamEvent, ProviderError>> = Vec::with_capacity(count + 3);
        for (index, word) in words.into_iter().enumerate() {
            let piece = if index + 1 < count {
                format!("{word} ")
            } else {
                word
            };
            let last = index + 1 == count;
            let finish = if last { json!("stop") } else { Value::Null };
            let chunk = if chat {
                let mut delta = json!({"content": piece});
                if index == 0 {
                    delta["role"] = json!("assistant");
                }
                json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                       "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
            } else {
                json!({"id": id, "object": "text_completion", "created": created, "model": model,
                       "choices": [{"index": 0, "text": piece, "logprobs": null, "finish_reason": finish}]})
            };
            frames.push(Ok(StreamEvent::Frame(data_frame(
                chunk.to_string().as_bytes(),
            ))));
        }
        if request.client_wants_usage {
            let object = if chat {
                "chat.completion.chunk"
            } else {
                "text_completion"
            };
            let chunk = json!({"id": id, "object": object, "created": created, "model": model,
                               "choices": [], "usage": usage_json(op, usage)});
            frames.push(Ok(StreamEvent::Frame(data_frame(
                chunk.to_string().as_bytes(),
            ))));
        }
        frames.push(Ok(StreamEvent::Usage(usage)));
        frames.push(Ok(StreamEvent::Frame(Bytes::from_static(DONE_FRAME))));
        Ok(Box::pin(futures::stream::iter(frames)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaviour_follows_the_model_name() {
        assert_eq!(Behaviour::parse("echo"), Behaviour::Echo);
        assert_eq!(Behaviour::parse("anything"), Behaviour::Echo);
        assert_eq!(
            Behaviour::parse("slow-250"),
            Behaviour::Slow(Duration::from_millis(250))
        );
        assert_eq!(
            Behaviour::parse("error-503"),
            Behaviour::Error(StatusCode::SERVICE_UNAVAILABLE)
        );
        assert_eq!(Behaviour::parse("error-99"), Behaviour::Echo);
        assert_eq!(Behaviour::parse("stream-7"), Behaviour::Chunks(7));
    }

    #[test]
    fn chunk_count_is_exact_even_for_short_prompts() {
        assert_eq!(words(Behaviour::Chunks(5), "hi").len(), 5);
        assert_eq!(words(Behaviour::Chunks(3), "").len(), 3);
        assert_eq!(words(Behaviour::Echo, "a b c"), vec!["a", "b", "c"]);
    }

    #[test]
    fn embeddings_are_deterministic_unit_vectors() {
        let a = embedding("hello");
        assert_eq!(a, embedding("hello"));
        assert_ne!(a, embedding("world"));
        let norm: f64 = a.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-9);
    }
}
