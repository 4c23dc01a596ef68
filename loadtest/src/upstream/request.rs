//! What a request asks of the mock: the response shape (stream, usage chunk) and the tokens
//! of its answer. The prompt is not tokenised: its text (message contents, `system`,
//! `prompt`, `input`, and the `text` of content parts) is measured in bytes, one token per
//! four bytes rounded up; the completion is the request's `max_tokens` (or
//! `max_completion_tokens`), capped by the mock's default. Deterministic, so the mock's books
//! are ground truth a test can recompute, and cheap: the text is measured while the body is
//! parsed, never copied.

use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::scenario::Api;

/// Tokens of one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tokens {
    /// Prompt (input) tokens.
    pub prompt: u64,
    /// Completion (output) tokens; 0 for embeddings.
    pub completion: u64,
}

/// What one request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asked {
    /// Whether the answer is a stream (never for embeddings).
    pub stream: bool,
    /// Whether an OpenAI stream ends with a usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
    /// The answer's tokens.
    pub tokens: Tokens,
}

/// Prompt tokens of `text_bytes` bytes of prompt text: a quarter, rounded up, at least 1.
pub fn prompt_tokens(text_bytes: u64) -> u64 {
    text_bytes.div_ceil(4).max(1)
}

impl Asked {
    /// Reads `body` as a request to `api`; `completion_cap` is the completion tokens of an
    /// answer to a request without an output limit, and the most any answer has.
    pub fn parse(api: Api, body: &[u8], completion_cap: u32) -> Result<Asked, serde_json::Error> {
        let request: Fields = serde_json::from_slice(body)?;
        let cap = u64::from(completion_cap.max(1));
        let asked = match (request.max_tokens, request.max_completion_tokens) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let completion = match api {
            Api::Embeddings => 0,
            _ => asked.map_or(cap, |asked| asked.clamp(1, cap)),
        };
        let text = request.messages.0 + request.system.0 + request.prompt.0 + request.input.0;
        Ok(Asked {
            stream: request.stream && api != Api::Embeddings,
            include_usage: request.stream_options.is_some_and(|o| o.include_usage),
            tokens: Tokens {
                prompt: prompt_tokens(text),
                completion,
            },
        })
    }
}

/// The request fields the mock reads; everything else is skipped.
#[derive(Deserialize)]
struct Fields {
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(default)]
    messages: TextBytes,
    #[serde(default)]
    system: TextBytes,
    #[serde(default)]
    prompt: TextBytes,
    #[serde(default)]
    input: TextBytes,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// Bytes of prompt text in a JSON value: a string; the sum over an array; in an object,
/// what its `content` and `text` fields hold (messages, content parts). Numbers, booleans,
/// null and other fields count nothing.
#[derive(Debug, Clone, Copy, Default)]
struct TextBytes(u64);

impl<'de> Deserialize<'de> for TextBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TextVisitor)
    }
}

/// The object keys whose values are prompt text.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum Key {
    Content,
    Text,
    #[serde(other)]
    Other,
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = TextBytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("prompt text")
    }

    fn visit_str<E>(self, text: &str) -> Result<TextBytes, E> {
        Ok(TextBytes(text.len() as u64))
    }

    fn visit_bool<E>(self, _: bool) -> Result<TextBytes, E> {
        Ok(TextBytes(0))
    }

    fn visit_i64<E>(self, _: i64) -> Result<TextBytes, E> {
        Ok(TextBytes(0))
    }

    fn visit_u64<E>(self, _: u64) -> Result<TextBytes, E> {
        Ok(TextBytes(0))
    }

    fn visit_f64<E>(self, _: f64) -> Result<TextBytes, E> {
        Ok(TextBytes(0))
    }

    fn visit_unit<E>(self) -> Result<TextBytes, E> {
        Ok(TextBytes(0))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<TextBytes, A::Error> {
        let mut total = 0;
        while let Some(item) = items.next_element::<TextBytes>()? {
            total += item.0;
        }
        Ok(TextBytes(total))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut fields: A) -> Result<TextBytes, A::Error> {
        let mut total = 0;
        while let Some(key) = fields.next_key::<Key>()? {
            match key {
                Key::Content | Key::Text => total += fields.next_value::<TextBytes>()?.0,
                Key::Other => {
                    fields.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(TextBytes(total))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn asked(api: Api, body: &str) -> Asked {
        Asked::parse(api, body.as_bytes(), 8).unwrap()
    }

    #[test]
    fn prompt_tokens_are_a_quarter_of_the_text_rounded_up() {
        // 16 bytes of content; the role, model and other fields do not count.
        let chat = asked(
            Api::Chat,
            r#"{"model":"m","messages":[{"role":"user","content":"tok tok tok tok "}]}"#,
        );
        assert_eq!(chat.tokens.prompt, 4);
        // Content parts and an Anthropic `system` string: 5 + 4 + 3 = 12 bytes.
        let parts = asked(
            Api::Messages,
            r#"{"system":"sys",
                "messages":[{"role":"user","content":[{"type":"text","text":"hello"},
                    {"type":"image","source":{"data":"AAAA"}}]},
                {"role":"assistant","content":"okay"}]}"#,
        );
        assert_eq!(parts.tokens.prompt, 3);
        let completion = asked(Api::Completions, r#"{"prompt":["abcde","f"]}"#);
        assert_eq!(completion.tokens.prompt, 2);
        let embedding = asked(Api::Embeddings, r#"{"input":[101,202,303]}"#);
        assert_eq!(
            embedding.tokens,
            Tokens {
                prompt: 1,
                completion: 0
            }
        );
        assert_eq!(prompt_tokens(0), 1);
        assert_eq!(prompt_tokens(2048), 512);
    }

    #[test]
    fn completion_tokens_follow_max_tokens_up_to_the_cap() {
        let body = |extra: &str| format!(r#"{{"messages":[]{extra}}}"#);
        let tokens = |extra: &str| asked(Api::Chat, &body(extra)).tokens.completion;
        assert_eq!(tokens(""), 8, "no limit: the cap");
        assert_eq!(tokens(r#","max_tokens":3"#), 3);
        assert_eq!(tokens(r#","max_tokens":300"#), 8);
        assert_eq!(tokens(r#","max_tokens":null"#), 8);
        assert_eq!(tokens(r#","max_completion_tokens":5"#), 5);
        assert_eq!(tokens(r#","max_tokens":6,"max_completion_tokens":2"#), 2);
        assert_eq!(tokens(r#","max_tokens":0"#), 1, "at least one token");
        let embedding = asked(
            Api::Embeddings,
            r#"{"input":"x","max_tokens":3,"stream":true}"#,
        );
        assert_eq!(embedding.tokens.completion, 0);
        assert!(!embedding.stream, "embeddings never stream");
    }

    #[test]
    fn stream_flags_are_read() {
        let streamed = asked(
            Api::Chat,
            r#"{"messages":[],"stream":true,"stream_options":{"include_usage":true}}"#,
        );
        assert!(streamed.stream && streamed.include_usage);
        let plain = asked(Api::Chat, r#"{"messages":[]}"#);
        assert!(!plain.stream && !plain.include_usage);
        assert!(Asked::parse(Api::Chat, b"not json", 8).is_err());
        assert!(Asked::parse(Api::Chat, br#"{"messages":[],"stream":"yes"}"#, 8).is_err());
    }
}
