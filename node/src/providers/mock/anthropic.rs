//! The mock's native Anthropic Messages answers ([`Operation::AnthropicMessages`]), so the
//! Anthropic SDKs work against `floodgate dev`: a `message` object, or the full event
//! sequence of a Messages stream (`message_start`, `content_block_start`, `ping`,
//! `text_delta`s, `content_block_stop`, `message_delta`, `message_stop`), and errors with
//! Anthropic's error `type`s.
//!
//! The model name chooses the behaviour exactly as for OpenAI-shaped requests; tokens are
//! counted the same way (`system` counts as one message). `max_tokens` is honoured: a longer
//! answer is cut and ends with `stop_reason: "max_tokens"`.
//!
//! [`Operation::AnthropicMessages`]: crate::providers::Operation::AnthropicMessages

use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};

use super::{Behaviour, delay_or_fail, mock_error, tokens, words};
use crate::providers::{
    Completion, EventStream, ProviderError, ProviderRequest, StreamEvent, anthropic_error_type,
};
use crate::usage::Usage;

/// Text of Anthropic `content` (a string, or the text of its text blocks).
fn text_of(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The planned answer: words, why it stopped, and usage.
struct Plan {
    behaviour: Behaviour,
    words: Vec<String>,
    stop_reason: &'static str,
    usage: Usage,
}

fn plan(request: &ProviderRequest<'_>) -> Plan {
    let behaviour = Behaviour::parse(&request.target.model);
    let body = &request.body;
    let messages = body.get("messages").and_then(Value::as_array);
    let messages = messages.map(Vec::as_slice).unwrap_or_default();
    let system = body
        .get("system")
        .map(|s| tokens(&text_of(s)) + 4)
        .unwrap_or(0);
    let input = messages
        .iter()
        .map(|m| tokens(&text_of(m.get("content").unwrap_or(&Value::Null))) + 4)
        .sum::<u64>()
        + system
        + 3;
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| text_of(m.get("content").unwrap_or(&Value::Null)))
        .unwrap_or_default();
    let mut words = words(behaviour, &last_user);
    let mut stop_reason = "end_turn";
    if let Some(max) = body.get("max_tokens").and_then(Value::as_u64)
        && (words.len() as u64) > max
    {
        words.truncate(usize::try_from(max).unwrap_or(usize::MAX));
        stop_reason = "max_tokens";
    }
    let usage = Usage {
        input_tokens: input,
        output_tokens: words.len() as u64,
        ..Usage::default()
    };
    Plan {
        behaviour,
        words,
        stop_reason,
        usage,
    }
}

/// An Anthropic error for `error-<status>` models.
fn error_for(status: StatusCode) -> ProviderError {
    mock_error(status, anthropic_error_type(status), None)
}

fn usage_json(usage: Usage) -> Value {
    json!({
        "input_tokens": usage.input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": usage.output_tokens,
    })
}

fn message_id() -> String {
    format!("msg_mock{}", uuid::Uuid::now_v7().simple())
}

/// A complete native answer.
pub(super) async fn complete(request: ProviderRequest<'_>) -> Result<Completion, ProviderError> {
    let plan = plan(&request);
    delay_or_fail(plan.behaviour, error_for).await?;
    let body = json!({
        "id": message_id(),
        "type": "message",
        "role": "assistant",
        "model": request.target.model,
        "content": [{"type": "text", "text": plan.words.join(" ")}],
        "stop_reason": plan.stop_reason,
        "stop_sequence": null,
        "usage": usage_json(plan.usage),
    });
    let Value::Object(body) = body else {
        return Err(ProviderError::InvalidResponse {
            detail: "mock built a non-object".into(),
        });
    };
    Ok(Completion {
        body,
        usage: plan.usage,
    })
}

fn frame(event: &str, data: &Value) -> Result<StreamEvent, ProviderError> {
    Ok(StreamEvent::Frame(Bytes::from(format!(
        "event: {event}\ndata: {data}\n\n"
    ))))
}

/// A native Messages stream.
pub(super) async fn stream(request: ProviderRequest<'_>) -> Result<EventStream, ProviderError> {
    let plan = plan(&request);
    delay_or_fail(plan.behaviour, error_for).await?;
    let mut start_usage = usage_json(plan.usage);
    start_usage["output_tokens"] = json!(1);
    let message = json!({
        "id": message_id(), "type": "message", "role": "assistant",
        "model": request.target.model, "content": [], "stop_reason": null,
        "stop_sequence": null, "usage": start_usage,
    });
    let count = plan.words.len();
    let mut events = Vec::with_capacity(count + 8);
    events.push(frame(
        "message_start",
        &json!({"type": "message_start", "message": message}),
    ));
    events.push(frame(
        "content_block_start",
        &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ));
    events.push(frame("ping", &json!({"type": "ping"})));
    for (index, word) in plan.words.into_iter().enumerate() {
        let text = if index + 1 < count {
            format!("{word} ")
        } else {
            word
        };
        events.push(frame(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": text}}),
        ));
    }
    events.push(frame(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(frame(
        "message_delta",
        &json!({"type": "message_delta",
                "delta": {"stop_reason": plan.stop_reason, "stop_sequence": null},
                "usage": {"output_tokens": plan.usage.output_tokens}}),
    ));
    events.push(Ok(StreamEvent::Usage(plan.usage)));
    events.push(frame("message_stop", &json!({"type": "message_stop"})));
    Ok(Box::pin(futures::stream::iter(events)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_text_reads_strings_and_text_blocks() {
        assert_eq!(text_of(&json!("a b")), "a b");
        assert_eq!(
            text_of(
                &json!([{"type": "text", "text": "x"}, {"type": "image"}, {"type": "text", "text": "y"}])
            ),
            "x y"
        );
    }

    #[test]
    fn overloaded_has_anthropic_type() {
        let status = StatusCode::from_u16(529).unwrap_or(StatusCode::OK);
        let ProviderError::Status(error) = error_for(status) else {
            panic!("not a status error");
        };
        assert_eq!(error.error_type.as_deref(), Some("overloaded_error"));
    }
}
