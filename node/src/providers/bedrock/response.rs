//! Bedrock Converse answer → OpenAI chat completion: `output.message.content` text blocks
//! become `message.content`, `toolUse` blocks become `tool_calls` (input serialised as the
//! arguments string), `stopReason` becomes `finish_reason`, and `usage` becomes OpenAI's
//! usage with the prompt cache counted in.
//!
//! Token accounting: Converse's `TokenUsage` reports `cacheReadInputTokens` and
//! `cacheWriteInputTokens` beside `inputTokens`, not inside it (`totalTokens` is the sum of
//! all four), so the input a request consumed is `inputTokens + cacheRead + cacheWrite`,
//! of which `cacheRead` was served from the cache and `cacheWrite` written to it (billed
//! above the input price). `cacheDetails` splits the writes by cache lifetime (`5m`, `1h`);
//! the one-hour part is kept for its higher price. When `totalTokens` shows the cache already
//! inside `inputTokens`, it is not added twice.

use serde_json::{Map, Value, json};

use crate::usage::Usage;

/// Identity of one answer, shared by its chunks when streamed.
#[derive(Debug, Clone)]
pub struct AnswerMeta {
    /// `chatcmpl-…` id (from Bedrock's request id when it sent one).
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The target's model id.
    pub model: String,
}

impl AnswerMeta {
    /// Meta for an answer to `model`, identified by Bedrock's `x-amzn-RequestId`.
    pub fn new(model: &str, request_id: Option<&str>) -> Self {
        let suffix = request_id
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Self {
            id: format!("chatcmpl-{suffix}"),
            created,
            model: model.to_owned(),
        }
    }
}

/// OpenAI's `finish_reason` for a Converse `stopReason`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "content_filtered" | "guardrail_intervened" => "content_filter",
        // end_turn, stop_sequence, and anything newer.
        _ => "stop",
    }
}

/// Usage from a Converse `usage` object (see the module doc for the cache arithmetic).
pub fn usage_from_converse(usage: &Value) -> Option<Usage> {
    let number = |key: &str| usage.get(key).and_then(Value::as_u64);
    let input = number("inputTokens")?;
    let output = number("outputTokens").unwrap_or(0);
    let read = number("cacheReadInputTokens").unwrap_or(0);
    let (mut written, mut written_1h) = (0u64, 0u64);
    for detail in usage
        .get("cacheDetails")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let tokens = detail
            .get("inputTokens")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        written = written.saturating_add(tokens);
        if detail.get("ttl").and_then(Value::as_str) == Some("1h") {
            written_1h = written_1h.saturating_add(tokens);
        }
    }
    // The details never exceed the total; if the total is missing or smaller, they are the
    // better count.
    let write = number("cacheWriteInputTokens").unwrap_or(0).max(written);
    let cache = read.saturating_add(write);
    let already_inside =
        cache > 0 && input >= cache && number("totalTokens") == Some(input.saturating_add(output));
    let input_tokens = if already_inside {
        input
    } else {
        input.saturating_add(cache)
    };
    Some(Usage {
        input_tokens,
        output_tokens: output,
        cached_tokens: read,
        cache_write_tokens: write,
        cache_write_1h_tokens: written_1h.min(write),
    })
}

/// OpenAI's `usage` object for `usage`.
pub fn openai_usage(usage: &Usage) -> Value {
    json!({
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens.saturating_add(usage.output_tokens),
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    })
}

/// Why a Converse answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the Converse answer has no `output.message.content` array")]
pub struct MissingContent;

/// The OpenAI chat completion for a Converse answer, and its usage.
pub fn chat_completion(
    answer: &Value,
    meta: &AnswerMeta,
) -> Result<(Map<String, Value>, Usage), MissingContent> {
    let content = answer
        .pointer("/output/message/content")
        .and_then(Value::as_array)
        .ok_or(MissingContent)?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for block in content {
        if let Some(part) = block.get("text").and_then(Value::as_str) {
            text.push_str(part);
        } else if let Some(tool) = block.get("toolUse") {
            let input = tool.get("input").cloned().unwrap_or_else(|| json!({}));
            tool_calls.push(json!({
                "id": tool.get("toolUseId").cloned().unwrap_or(Value::Null),
                "type": "function",
                "function": {
                    "name": tool.get("name").cloned().unwrap_or(Value::Null),
                    "arguments": input.to_string(),
                },
            }));
        } else if let Some(part) = block
            .pointer("/reasoningContent/reasoningText/text")
            .and_then(Value::as_str)
        {
            reasoning.push_str(part);
        }
    }
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    message.insert(
        "content".into(),
        if text.is_empty() && !tool_calls.is_empty() {
            Value::Null
        } else {
            Value::String(text)
        },
    );
    if !reasoning.is_empty() {
        message.insert("reasoning_content".into(), Value::String(reasoning));
    }
    if !tool_calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(tool_calls));
    }
    let stop = answer
        .get("stopReason")
        .and_then(Value::as_str)
        .unwrap_or("end_turn");
    let usage = answer
        .get("usage")
        .and_then(usage_from_converse)
        .unwrap_or_default();
    let body = json!({
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(stop),
        }],
        "usage": openai_usage(&usage),
    });
    match body {
        Value::Object(map) => Ok((map, usage)),
        _ => Err(MissingContent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> AnswerMeta {
        AnswerMeta {
            id: "chatcmpl-r1".into(),
            created: 7,
            model: "amazon.nova-lite-v1:0".into(),
        }
    }

    #[test]
    fn stop_reasons_map_to_finish_reasons() {
        assert_eq!(finish_reason("end_turn"), "stop");
        assert_eq!(finish_reason("stop_sequence"), "stop");
        assert_eq!(finish_reason("max_tokens"), "length");
        assert_eq!(finish_reason("tool_use"), "tool_calls");
        assert_eq!(finish_reason("content_filtered"), "content_filter");
        assert_eq!(finish_reason("guardrail_intervened"), "content_filter");
    }

    #[test]
    fn cache_tokens_reported_beside_input_are_added() {
        let usage = json!({"inputTokens": 21, "outputTokens": 9, "totalTokens": 36,
                           "cacheReadInputTokens": 4, "cacheWriteInputTokens": 2});
        assert_eq!(
            usage_from_converse(&usage),
            Some(Usage {
                input_tokens: 27,
                output_tokens: 9,
                cached_tokens: 4,
                cache_write_tokens: 2,
                cache_write_1h_tokens: 0,
            })
        );
        // A total that already holds the cache inside inputTokens is not double counted.
        let inside = json!({"inputTokens": 27, "outputTokens": 9, "totalTokens": 36,
                            "cacheReadInputTokens": 4, "cacheWriteInputTokens": 2});
        assert_eq!(
            usage_from_converse(&inside).map(|u| u.input_tokens),
            Some(27)
        );
        let plain = json!({"inputTokens": 5, "outputTokens": 1, "totalTokens": 6});
        assert_eq!(
            usage_from_converse(&plain),
            Some(Usage {
                input_tokens: 5,
                output_tokens: 1,
                ..Usage::default()
            })
        );
    }

    #[test]
    fn cache_details_split_the_writes_by_lifetime() {
        let usage = json!({"inputTokens": 21, "outputTokens": 9, "totalTokens": 534,
            "cacheReadInputTokens": 4, "cacheWriteInputTokens": 500,
            "cacheDetails": [{"ttl": "1h", "inputTokens": 200}, {"ttl": "5m", "inputTokens": 300}]});
        let usage = usage_from_converse(&usage).unwrap_or_default();
        assert_eq!(
            (
                usage.input_tokens,
                usage.cached_tokens,
                usage.cache_write_tokens,
                usage.cache_write_1h_tokens
            ),
            (525, 4, 500, 200)
        );
        // Details without the total still count every write.
        let details_only = json!({"inputTokens": 10, "outputTokens": 1,
            "cacheDetails": [{"ttl": "1h", "inputTokens": 7}]});
        let usage = usage_from_converse(&details_only).unwrap_or_default();
        assert_eq!(
            (
                usage.input_tokens,
                usage.cache_write_tokens,
                usage.cache_write_1h_tokens
            ),
            (17, 7, 7)
        );
    }

    #[test]
    fn text_and_tool_use_become_an_openai_message() {
        let answer = json!({
            "output": {"message": {"role": "assistant", "content": [
                {"text": "Let me check."},
                {"toolUse": {"toolUseId": "tooluse_1", "name": "weather", "input": {"city": "Paris"}}}
            ]}},
            "stopReason": "tool_use",
            "usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15},
            "metrics": {"latencyMs": 100}
        });
        let (body, usage) = chat_completion(&answer, &meta()).unwrap();
        let choice = &body["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], "Let me check.");
        let call = &choice["message"]["tool_calls"][0];
        assert_eq!(call["id"], "tooluse_1");
        assert_eq!(call["function"]["name"], "weather");
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, json!({"city": "Paris"}));
        assert_eq!(usage.input_tokens, 10);
        assert_eq!(body["usage"]["total_tokens"], 15);
        assert_eq!(body["object"], "chat.completion");
    }

    #[test]
    fn an_answer_without_content_is_invalid() {
        assert_eq!(
            chat_completion(&json!({"output": {}}), &meta()).err(),
            Some(MissingContent)
        );
    }
}
