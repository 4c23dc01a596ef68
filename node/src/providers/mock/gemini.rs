//! The mock's native Gemini answers ([`Operation::GeminiGenerateContent`]), so Gemini
//! clients work against `floodgate dev`: a `GenerateContentResponse`, or a
//! `streamGenerateContent` SSE stream of them (one word an event, running `usageMetadata`
//! in each, `finishReason` in the last), and errors with Google's canonical status names.
//!
//! The model name chooses the behaviour exactly as for OpenAI-shaped requests; tokens are
//! counted the same way (`systemInstruction` counts as one message).
//! `generationConfig.maxOutputTokens` is honoured: a longer answer is cut and ends with
//! `finishReason: "MAX_TOKENS"`.
//!
//! [`Operation::GeminiGenerateContent`]: crate::providers::Operation::GeminiGenerateContent

use http::StatusCode;
use serde_json::{Value, json};

use super::{Behaviour, delay_or_fail, mock_error, tokens, words};
use crate::providers::{
    Completion, EventStream, ProviderError, ProviderRequest, StreamEvent, data_frame,
    google_status_name,
};
use crate::usage::Usage;

/// Text of a Gemini `Content` (its text parts, space-joined).
fn text_of(content: &Value) -> String {
    content
        .get("parts")
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// The planned answer.
struct Plan {
    behaviour: Behaviour,
    words: Vec<String>,
    finish_reason: &'static str,
    usage: Usage,
    model: String,
}

fn plan(request: &ProviderRequest<'_>) -> Plan {
    let behaviour = Behaviour::parse(&request.target.model);
    let body = &request.body;
    let contents = body.get("contents").and_then(Value::as_array);
    let contents = contents.map(Vec::as_slice).unwrap_or_default();
    let system = body
        .get("systemInstruction")
        .map(|s| tokens(&text_of(s)) + 4)
        .unwrap_or(0);
    let input = contents
        .iter()
        .map(|c| tokens(&text_of(c)) + 4)
        .sum::<u64>()
        + system
        + 3;
    let last_user = contents
        .iter()
        .rev()
        .find(|c| c.get("role").and_then(Value::as_str).unwrap_or("user") == "user")
        .map(text_of)
        .unwrap_or_default();
    let mut words = words(behaviour, &last_user);
    let mut finish_reason = "STOP";
    if let Some(max) = body
        .get("generationConfig")
        .and_then(|c| c.get("maxOutputTokens"))
        .and_then(Value::as_u64)
        && (words.len() as u64) > max
    {
        words.truncate(usize::try_from(max).unwrap_or(usize::MAX));
        finish_reason = "MAX_TOKENS";
    }
    let usage = Usage {
        input_tokens: input,
        output_tokens: words.len() as u64,
        ..Usage::default()
    };
    Plan {
        behaviour,
        words,
        finish_reason,
        usage,
        model: request.target.model.clone(),
    }
}

/// A Google-style error for `status` (the gateway renders it in Google's shape).
fn error_for(status: StatusCode) -> ProviderError {
    mock_error(status, google_status_name(status), None)
}

fn usage_metadata(input: u64, output: u64) -> Value {
    json!({
        "promptTokenCount": input,
        "candidatesTokenCount": output,
        "totalTokenCount": input + output,
    })
}

fn response_id() -> String {
    format!("mock-{}", uuid::Uuid::now_v7().simple())
}

/// A complete native answer.
pub(super) async fn complete(request: ProviderRequest<'_>) -> Result<Completion, ProviderError> {
    let plan = plan(&request);
    delay_or_fail(plan.behaviour, error_for).await?;
    let body = json!({
        "candidates": [{
            "content": {"parts": [{"text": plan.words.join(" ")}], "role": "model"},
            "finishReason": plan.finish_reason,
            "index": 0,
        }],
        "usageMetadata": usage_metadata(plan.usage.input_tokens, plan.usage.output_tokens),
        "modelVersion": plan.model,
        "responseId": response_id(),
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

/// A native SSE stream: one event per word, the last with `finishReason`.
pub(super) async fn stream(request: ProviderRequest<'_>) -> Result<EventStream, ProviderError> {
    let plan = plan(&request);
    delay_or_fail(plan.behaviour, error_for).await?;
    let id = response_id();
    let count = plan.words.len();
    let input = plan.usage.input_tokens;
    let mut items: Vec<Result<StreamEvent, ProviderError>> = Vec::with_capacity(count + 1);
    for (index, word) in plan.words.iter().enumerate() {
        let last = index + 1 == count;
        let text = if last {
            word.clone()
        } else {
            format!("{word} ")
        };
        let mut candidate =
            json!({"content": {"parts": [{"text": text}], "role": "model"}, "index": 0});
        if last {
            candidate["finishReason"] = json!(plan.finish_reason);
        }
        let event = json!({
            "candidates": [candidate],
            "usageMetadata": usage_metadata(input, index as u64 + 1),
            "modelVersion": plan.model,
            "responseId": id,
        });
        items.push(Ok(StreamEvent::Frame(data_frame(
            event.to_string().as_bytes(),
        ))));
    }
    if count == 0 {
        let event = json!({
            "candidates": [{"content": {"parts": [{"text": ""}], "role": "model"},
                            "finishReason": plan.finish_reason, "index": 0}],
            "usageMetadata": usage_metadata(input, 0),
            "modelVersion": plan.model,
            "responseId": id,
        });
        items.push(Ok(StreamEvent::Frame(data_frame(
            event.to_string().as_bytes(),
        ))));
    }
    items.push(Ok(StreamEvent::Usage(plan.usage)));
    Ok(Box::pin(futures::stream::iter(items)))
}
