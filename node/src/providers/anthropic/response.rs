//! Anthropic Messages answer → OpenAI `chat.completion`, and Anthropic `usage` → the
//! gateway's [`Usage`] and OpenAI's `usage` object.
//!
//! Anthropic counts `input_tokens` without the prompt-cache tokens; OpenAI's
//! `prompt_tokens` (and the gateway's `input_tokens`) include them. So prompt tokens are
//! `input_tokens + cache_creation_input_tokens + cache_read_input_tokens`, and the cached
//! part (`prompt_tokens_details.cached_tokens`) is `cache_read_input_tokens`. Cache writes
//! (`cache_creation_input_tokens`) are billed above the input price, and one-hour writes
//! above five-minute ones, so the gateway's usage keeps both: the writes, and the one-hour
//! part of them from `cache_creation.ephemeral_1h_input_tokens`.

use serde_json::{Map, Value, json};

use crate::usage::Usage;

/// Anthropic token counts as reported (each field as last seen).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnthropicUsage {
    /// `input_tokens` (uncached input only).
    pub input: u64,
    /// `cache_creation_input_tokens`: every prompt-cache write.
    pub cache_creation: u64,
    /// `cache_creation.ephemeral_1h_input_tokens`: the writes to the one-hour cache.
    pub cache_creation_1h: u64,
    /// `cache_read_input_tokens`.
    pub cache_read: u64,
    /// `output_tokens`.
    pub output: u64,
}

impl AnthropicUsage {
    /// Reads a `usage` object; `None` when it is not an object.
    pub fn from_json(usage: &Value) -> Option<Self> {
        let mut parsed = Self::default();
        parsed.merge(usage.as_object()?);
        Some(parsed)
    }

    /// Overwrites every field present in `usage`. Anthropic's streamed counts are
    /// cumulative, so the latest value of a field is its total.
    pub fn merge(&mut self, usage: &Map<String, Value>) {
        let number = |key: &str| usage.get(key).and_then(Value::as_u64);
        if let Some(n) = number("input_tokens") {
            self.input = n;
        }
        if let Some(n) = number("cache_creation_input_tokens") {
            self.cache_creation = n;
        }
        if let Some(split) = usage.get("cache_creation").and_then(Value::as_object) {
            let part = |key: &str| split.get(key).and_then(Value::as_u64);
            let (short, long) = (
                part("ephemeral_5m_input_tokens"),
                part("ephemeral_1h_input_tokens"),
            );
            if let Some(n) = long {
                self.cache_creation_1h = n;
            }
            // The split never exceeds the total; if the total is missing or smaller, the
            // split is the better count.
            if short.is_some() || long.is_some() {
                let sum = short.unwrap_or(0).saturating_add(long.unwrap_or(0));
                self.cache_creation = self.cache_creation.max(sum);
            }
        }
        if let Some(n) = number("cache_read_input_tokens") {
            self.cache_read = n;
        }
        if let Some(n) = number("output_tokens") {
            self.output = n;
        }
    }

    /// Every input token, cached or not.
    pub fn prompt_tokens(&self) -> u64 {
        self.input
            .saturating_add(self.cache_creation)
            .saturating_add(self.cache_read)
    }

    /// The gateway's usage.
    pub fn usage(&self) -> Usage {
        Usage {
            input_tokens: self.prompt_tokens(),
            output_tokens: self.output,
            cached_tokens: self.cache_read,
            cache_write_tokens: self.cache_creation,
            cache_write_1h_tokens: self.cache_creation_1h.min(self.cache_creation),
        }
    }

    /// OpenAI's `usage` object.
    pub fn openai_json(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens(),
            "completion_tokens": self.output,
            "total_tokens": self.prompt_tokens().saturating_add(self.output),
            "prompt_tokens_details": {"cached_tokens": self.cache_read},
        })
    }
}

/// Anthropic's `stop_reason` → OpenAI's `finish_reason`.
pub fn finish_reason(stop_reason: Option<&str>) -> Option<&'static str> {
    Some(match stop_reason? {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn and any newer reason: the turn ended.
        _ => "stop",
    })
}

/// An Anthropic `tool_use` block's input as OpenAI's `arguments` string.
pub fn arguments(input: Option<&Value>) -> String {
    match input {
        None | Some(Value::Null) => "{}".to_owned(),
        Some(value) => value.to_string(),
    }
}

/// Translates a complete Anthropic message into an OpenAI chat completion; also returns the
/// gateway usage. `created` is the Unix time to stamp.
pub fn to_openai(message: &Map<String, Value>, created: u64) -> (Map<String, Value>, Usage) {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    let blocks = message.get("content").and_then(Value::as_array);
    for block in blocks.map(Vec::as_slice).unwrap_or_default() {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => tool_calls.push(json!({
                "id": block.get("id").cloned().unwrap_or(Value::Null),
                "type": "function",
                "function": {
                    "name": block.get("name").cloned().unwrap_or(Value::Null),
                    "arguments": arguments(block.get("input")),
                },
            })),
            // thinking, redacted_thinking and server-tool blocks have no OpenAI counterpart.
            _ => {}
        }
    }
    let usage = message
        .get("usage")
        .and_then(AnthropicUsage::from_json)
        .unwrap_or_default();
    let mut reply = Map::new();
    reply.insert("role".into(), Value::String("assistant".into()));
    let content = if text.is_empty() && !tool_calls.is_empty() {
        Value::Null
    } else {
        Value::String(text)
    };
    reply.insert("content".into(), content);
    reply.insert("refusal".into(), Value::Null);
    if !tool_calls.is_empty() {
        reply.insert("tool_calls".into(), Value::Array(tool_calls));
    }
    let finish =
        finish_reason(message.get("stop_reason").and_then(Value::as_str)).unwrap_or("stop");
    let answer = json!({
        "id": message.get("id").cloned().unwrap_or(Value::Null),
        "object": "chat.completion",
        "created": created,
        "model": message.get("model").cloned().unwrap_or(Value::Null),
        "choices": [{
            "index": 0,
            "message": reply,
            "logprobs": null,
            "finish_reason": finish,
        }],
        "usage": usage.openai_json(),
    });
    let Value::Object(answer) = answer else {
        return (Map::new(), usage.usage());
    };
    (answer, usage.usage())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_tokens_include_the_cache() {
        let usage = AnthropicUsage::from_json(&json!({
            "input_tokens": 10, "cache_creation_input_tokens": 5,
            "cache_read_input_tokens": 20, "output_tokens": 7,
        }))
        .unwrap_or_default();
        assert_eq!(
            usage.usage(),
            Usage {
                input_tokens: 35,
                output_tokens: 7,
                cached_tokens: 20,
                cache_write_tokens: 5,
                cache_write_1h_tokens: 0,
            }
        );
        assert_eq!(usage.openai_json()["total_tokens"], 42);
    }

    #[test]
    fn cache_writes_are_split_by_lifetime() {
        let usage = AnthropicUsage::from_json(&json!({
            "input_tokens": 10, "cache_creation_input_tokens": 500, "cache_read_input_tokens": 20,
            "cache_creation": {"ephemeral_5m_input_tokens": 300, "ephemeral_1h_input_tokens": 200},
            "output_tokens": 7,
        }))
        .unwrap_or_default()
        .usage();
        assert_eq!(usage.input_tokens, 530);
        assert_eq!(
            (usage.cache_write_tokens, usage.cache_write_1h_tokens),
            (500, 200)
        );
        // A split without the total still counts every write.
        let split_only = AnthropicUsage::from_json(&json!({
            "input_tokens": 10,
            "cache_creation": {"ephemeral_5m_input_tokens": 30, "ephemeral_1h_input_tokens": 40},
        }))
        .unwrap_or_default()
        .usage();
        assert_eq!(
            (
                split_only.input_tokens,
                split_only.cache_write_tokens,
                split_only.cache_write_1h_tokens
            ),
            (80, 70, 40)
        );
    }

    #[test]
    fn later_counts_replace_earlier_ones() {
        let mut usage = AnthropicUsage::default();
        usage.merge(&Map::from_iter([("input_tokens".to_owned(), json!(9))]));
        usage.merge(&Map::from_iter([("output_tokens".to_owned(), json!(4))]));
        usage.merge(&Map::from_iter([("output_tokens".to_owned(), json!(6))]));
        assert_eq!((usage.input, usage.output), (9, 6));
    }

    #[test]
    fn stop_reasons_map_to_finish_reasons() {
        assert_eq!(finish_reason(Some("end_turn")), Some("stop"));
        assert_eq!(finish_reason(Some("stop_sequence")), Some("stop"));
        assert_eq!(finish_reason(Some("max_tokens")), Some("length"));
        assert_eq!(finish_reason(Some("tool_use")), Some("tool_calls"));
        assert_eq!(finish_reason(Some("refusal")), Some("content_filter"));
        assert_eq!(finish_reason(None), None);
    }
}
