//! Cohere v2 chat answer → OpenAI `chat.completion`, and the pieces the stream shares with
//! it: the finish-reason mapping and Cohere's usage.
//!
//! **Usage**: Cohere reports `usage.billed_units` (the tokens it bills) and `usage.tokens`
//! (every token the model processed, including the prompt template Cohere adds). Floodgate
//! records `billed_units` when present and falls back to `tokens`: Cohere's own pricing
//! documentation says the billed units are what is charged, and the tokens Cohere adds
//! under the hood are not, so costing `tokens` would overstate every bill. Top-level
//! `usage.cached_tokens` (prompt tokens served from Cohere's cache) becomes
//! `cached_tokens`.
//!
//! Pure: no I/O.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use super::error::CohereError;
use crate::usage::Usage;

/// OpenAI's `finish_reason` for Cohere's, or the error a failed generation is.
///
/// `COMPLETE` and `STOP_SEQUENCE` → `stop`; `MAX_TOKENS` → `length`; `TOOL_CALL` →
/// `tool_calls`; `TIMEOUT` (Cohere stopped a generation that ran too long, keeping what it
/// had) → `length`, OpenAI's name for a truncated answer; `ERROR` → an error.
pub fn finish_reason(reason: &str, detail: Option<&str>) -> Result<&'static str, CohereError> {
    Ok(match reason {
        "COMPLETE" | "STOP_SEQUENCE" => "stop",
        "MAX_TOKENS" | "TIMEOUT" => "length",
        "TOOL_CALL" => "tool_calls",
        "ERROR" => {
            return Err(CohereError::GenerationFailed {
                reason: reason.to_owned(),
                detail: detail.map(str::to_owned),
            });
        }
        _ => "stop",
    })
}

/// Reads Cohere's `usage` object (see the module docs for which counts are used).
pub fn usage(usage: &Value) -> Option<Usage> {
    let pair = |object: Option<&Value>| {
        let object = object?;
        let input = count(object.get("input_tokens")?)?;
        let output = object.get("output_tokens").and_then(count).unwrap_or(0);
        Some((input, output))
    };
    let (input, output) = pair(usage.get("billed_units")).or_else(|| pair(usage.get("tokens")))?;
    let cached = usage
        .get("cached_tokens")
        .and_then(count)
        .unwrap_or(0)
        .min(input);
    Some(Usage {
        input_tokens: input,
        output_tokens: output,
        cached_tokens: cached,
        // Cohere reports (and bills) no prompt-cache writes.
        ..Usage::default()
    })
}

/// A token count: Cohere's schema types them as `number`, so `12` and `12.0` both count.
pub fn count(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        let float = value.as_f64()?;
        (float.is_finite() && float >= 0.0 && float <= u64::MAX as f64)
            .then(|| float.round() as u64)
    })
}

/// OpenAI's `usage` object for `usage`.
pub fn openai_usage(usage: &Usage) -> Value {
    json!({
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    })
}

/// Seconds since the Unix epoch, for `created`.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Translates a Cohere chat answer into an OpenAI `chat.completion` for `model`, with the
/// usage to record.
pub fn chat_response(
    answer: &Value,
    model: &str,
) -> Result<(Map<String, Value>, Usage), CohereError> {
    let object = answer
        .as_object()
        .ok_or_else(|| CohereError::InvalidAnswer("the chat answer is not a JSON object".into()))?;
    let message = object
        .get("message")
        .and_then(Value::as_object)
        .ok_or_else(|| CohereError::InvalidAnswer("the chat answer has no `message`".into()))?;
    let reason = object
        .get("finish_reason")
        .and_then(Value::as_str)
        .unwrap_or("COMPLETE");
    let finish = finish_reason(reason, None)?;

    let blocks = message
        .get("content")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let joined = |kind: &str, key: &str| -> Option<String> {
        let parts: Vec<&str> = blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some(kind))
            .filter_map(|b| b.get(key).and_then(Value::as_str))
            .collect();
        (!parts.is_empty()).then(|| parts.concat())
    };
    let text = joined("text", "text");
    let thinking = joined("thinking", "thinking");
    let calls: Vec<Value> = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(|calls| calls.iter().map(openai_tool_call).collect())
        .unwrap_or_default();
    let plan = message
        .get("tool_plan")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty());

    let mut reply = Map::new();
    reply.insert("role".into(), json!("assistant"));
    // Before tool calls Cohere puts its words in `tool_plan`; OpenAI puts them in `content`.
    let content = text.or_else(|| {
        (!calls.is_empty())
            .then(|| plan.map(str::to_owned))
            .flatten()
    });
    reply.insert(
        "content".into(),
        content.map(Value::String).unwrap_or(Value::Null),
    );
    reply.insert("refusal".into(), Value::Null);
    if let Some(thinking) = thinking {
        reply.insert("reasoning_content".into(), Value::String(thinking));
    }
    if !calls.is_empty() {
        reply.insert("tool_calls".into(), Value::Array(calls));
    }

    let usage = object.get("usage").and_then(usage).unwrap_or_default();
    let id = object.get("id").and_then(Value::as_str).unwrap_or("cohere");
    let mut out = Map::new();
    out.insert("id".into(), json!(id));
    out.insert("object".into(), json!("chat.completion"));
    out.insert("created".into(), json!(now_unix()));
    out.insert("model".into(), json!(model));
    out.insert(
        "choices".into(),
        json!([{"index": 0, "message": reply, "logprobs": null, "finish_reason": finish}]),
    );
    out.insert("usage".into(), openai_usage(&usage));
    Ok((out, usage))
}

/// A Cohere tool call (`{id, type, function: {name, arguments}}`) in OpenAI's shape, which
/// is the same apart from `arguments` always being a string.
fn openai_tool_call(call: &Value) -> Value {
    let arguments = match call.pointer("/function/arguments") {
        Some(Value::String(text)) if !text.is_empty() => text.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => "{}".to_owned(),
        Some(other) => other.to_string(),
    };
    json!({
        "id": call.get("id").cloned().unwrap_or(Value::Null),
        "type": "function",
        "function": {
            "name": call.pointer("/function/name").cloned().unwrap_or(Value::Null),
            "arguments": arguments,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn billed_units_win_over_tokens() {
        let both = json!({"billed_units": {"input_tokens": 6772, "output_tokens": 248},
                          "tokens": {"input_tokens": 7596, "output_tokens": 645}});
        assert_eq!(
            usage(&both).map(|u| (u.input_tokens, u.output_tokens)),
            Some((6772, 248))
        );
        let tokens_only = json!({"tokens": {"input_tokens": 34.0, "output_tokens": 12}});
        assert_eq!(
            usage(&tokens_only).map(|u| (u.input_tokens, u.output_tokens)),
            Some((34, 12))
        );
        let cached =
            json!({"billed_units": {"input_tokens": 10, "output_tokens": 1}, "cached_tokens": 4});
        assert_eq!(usage(&cached).map(|u| u.cached_tokens), Some(4));
        assert_eq!(usage(&json!({})), None);
    }

    #[test]
    fn finish_reasons_map_to_openai() {
        assert_eq!(finish_reason("COMPLETE", None), Ok("stop"));
        assert_eq!(finish_reason("STOP_SEQUENCE", None), Ok("stop"));
        assert_eq!(finish_reason("MAX_TOKENS", None), Ok("length"));
        assert_eq!(finish_reason("TOOL_CALL", None), Ok("tool_calls"));
        assert!(matches!(
            finish_reason("ERROR", Some("boom")),
            Err(CohereError::GenerationFailed { .. })
        ));
    }

    #[test]
    fn an_error_finish_is_an_error() {
        let answer = json!({"id": "x", "finish_reason": "ERROR",
                            "message": {"role": "assistant", "content": []}});
        assert!(chat_response(&answer, "command-a-03-2025").is_err());
    }
}
