//! Gemini `GenerateContentResponse` JSON → OpenAI chat answer, and the pieces the stream
//! translation shares: usage from `usageMetadata`, `finishReason` → `finish_reason`, and a
//! candidate's parts → text, reasoning and tool calls. Pure translation, reusable by Vertex
//! AI, which answers in the same JSON.
//!
//! Usage: input = `promptTokenCount` (cached tokens included, as Google counts them) plus
//! `toolUsePromptTokenCount` (billed as input); output = `candidatesTokenCount` +
//! `thoughtsTokenCount` (thinking is billed as output); cached = `cachedContentTokenCount`.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use super::errors::prompt_blocked;
use crate::providers::ProviderError;
use crate::usage::Usage;

/// Token usage from a `usageMetadata` object (missing counts are zero).
pub(crate) fn usage(metadata: &Value) -> Option<Usage> {
    let object = metadata.as_object()?;
    let count = |key: &str| object.get(key).and_then(Value::as_u64).unwrap_or(0);
    Some(Usage {
        input_tokens: count("promptTokenCount") + count("toolUsePromptTokenCount"),
        output_tokens: count("candidatesTokenCount") + count("thoughtsTokenCount"),
        cached_tokens: count("cachedContentTokenCount"),
        // Gemini bills no prompt-cache writes per request (an explicit cache is created,
        // and billed for storage, through its own API), so none are reported.
        ..Usage::default()
    })
}

/// OpenAI's `usage` object for a `usageMetadata` object.
pub(crate) fn openai_usage(metadata: &Value) -> Value {
    let usage = usage(metadata).unwrap_or_default();
    let thoughts = metadata
        .get("thoughtsTokenCount")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    json!({
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": { "cached_tokens": usage.cached_tokens },
        "completion_tokens_details": { "reasoning_tokens": thoughts },
    })
}

/// OpenAI's `finish_reason` for a Gemini `finishReason`; `has_calls` when the candidate
/// asked for function calls.
pub(crate) fn finish_reason(reason: &str, has_calls: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION" => "content_filter",
        _ if has_calls => "tool_calls",
        _ => "stop",
    }
}

/// Hands out tool-call ids: Gemini's own `functionCall.id` when it gave one, else
/// `call_<n>`, numbered across the whole answer (and stream).
#[derive(Debug, Default)]
pub(crate) struct CallIds {
    next: usize,
}

impl CallIds {
    /// The id for the next call.
    pub(crate) fn id(&mut self, given: Option<&str>) -> String {
        let id = match given.filter(|g| !g.is_empty()) {
            Some(given) => given.to_owned(),
            None => format!("call_{}", self.next),
        };
        self.next += 1;
        id
    }
}

/// What one candidate (or one streamed piece of it) says.
#[derive(Debug, Default)]
pub(crate) struct Said {
    /// Answer text, parts joined.
    pub text: Option<String>,
    /// Thought-summary text (`thought: true` parts), if the model returned any.
    pub reasoning: Option<String>,
    /// OpenAI `tool_calls` entries (without a stream `index`).
    pub calls: Vec<Value>,
}

/// Reads a candidate's `content.parts`.
pub(crate) fn said(candidate: &Value, ids: &mut CallIds) -> Said {
    let mut out = Said::default();
    let parts = candidate
        .get("content")
        .and_then(|c| c.get("parts"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for part in parts {
        if let Some(call) = part.get("functionCall") {
            let name = call.get("name").and_then(Value::as_str).unwrap_or_default();
            let args = call.get("args").cloned().unwrap_or_else(|| json!({}));
            let id = ids.id(call.get("id").and_then(Value::as_str));
            out.calls.push(json!({
                "id": id,
                "type": "function",
                "function": { "name": name, "arguments": args.to_string() },
            }));
        } else if let Some(text) = part.get("text").and_then(Value::as_str) {
            let thought = part.get("thought").and_then(Value::as_bool) == Some(true);
            let target = if thought {
                &mut out.reasoning
            } else {
                &mut out.text
            };
            target.get_or_insert_with(String::new).push_str(text);
        }
    }
    out
}

/// The error for an answer without candidates: a blocked prompt, or an invalid answer.
pub(crate) fn no_candidates(answer: &Value) -> ProviderError {
    let feedback = answer.get("promptFeedback");
    match feedback
        .and_then(|f| f.get("blockReason"))
        .and_then(Value::as_str)
    {
        Some(reason) => prompt_blocked(
            reason,
            feedback
                .and_then(|f| f.get("blockReasonMessage"))
                .and_then(Value::as_str),
        ),
        None => ProviderError::InvalidResponse {
            detail: "the answer has no candidates and no blockReason".into(),
        },
    }
}

/// The candidates of an answer (empty when there are none).
pub(crate) fn candidates(answer: &Value) -> &[Value] {
    answer
        .get("candidates")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// Seconds since the Unix epoch, for `created`.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The OpenAI `id` for an answer: `chatcmpl-<responseId>`, or a fresh one.
pub(crate) fn completion_id(answer: &Value) -> String {
    match answer.get("responseId").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => format!("chatcmpl-{id}"),
        _ => format!("chatcmpl-{}", uuid::Uuid::now_v7().simple()),
    }
}

/// Translates a complete Gemini answer into an OpenAI `chat.completion` and its usage.
pub(crate) fn chat_completion(
    answer: &Value,
    model: &str,
) -> Result<(Map<String, Value>, Usage), ProviderError> {
    let candidates = candidates(answer);
    if candidates.is_empty() {
        return Err(no_candidates(answer));
    }
    let mut ids = CallIds::default();
    let choices: Vec<Value> = candidates
        .iter()
        .enumerate()
        .map(|(position, candidate)| {
            let index = candidate
                .get("index")
                .and_then(Value::as_u64)
                .unwrap_or(position as u64);
            let said = said(candidate, &mut ids);
            let has_calls = !said.calls.is_empty();
            let finish = finish_reason(
                candidate
                    .get("finishReason")
                    .and_then(Value::as_str)
                    .unwrap_or("STOP"),
                has_calls,
            );
            let content = match said.text {
                Some(text) => Value::String(text),
                None if has_calls || finish == "content_filter" => Value::Null,
                None => Value::String(String::new()),
            };
            let mut message = json!({ "role": "assistant", "content": content, "refusal": null });
            if has_calls {
                message["tool_calls"] = Value::Array(said.calls);
            }
            if let Some(reasoning) = said.reasoning {
                message["reasoning_content"] = Value::String(reasoning);
            }
            json!({ "index": index, "message": message, "logprobs": null, "finish_reason": finish })
        })
        .collect();
    let metadata = answer.get("usageMetadata").cloned().unwrap_or(Value::Null);
    let model = answer
        .get("modelVersion")
        .and_then(Value::as_str)
        .unwrap_or(model);
    let body = json!({
        "id": completion_id(answer),
        "object": "chat.completion",
        "created": now_secs(),
        "model": model,
        "choices": choices,
        "usage": openai_usage(&metadata),
    });
    let Value::Object(body) = body else {
        return Err(ProviderError::InvalidResponse {
            detail: "translation built a non-object".into(),
        });
    };
    Ok((body, usage(&metadata).unwrap_or_default()))
}
