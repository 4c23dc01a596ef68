//! The bodies of the four wire formats. What is the same in every answer (stream chunks,
//! errors, the fixed frames) is built once at start-up; what depends on the request's
//! tokens (usage, the text of a JSON answer, Anthropic's `message_start` and
//! `message_delta`) is written per request into one string, with no JSON tree built.

use bytes::Bytes;

use super::request::Tokens;
use crate::scenario::Api;

/// One content token's text: every answer is `tok ` repeated.
const TOKEN_TEXT: &str = "tok ";

fn sse(value: &serde_json::Value) -> String {
    format!("data: {value}\n\n")
}

fn event(name: &str, value: &serde_json::Value) -> String {
    format!("event: {name}\ndata: {value}\n\n")
}

fn openai_error(kind: &str, message: &str) -> Bytes {
    Bytes::from(
        serde_json::json!({"error": {"message": message, "type": kind, "code": null}}).to_string(),
    )
}

fn anthropic_error(kind: &str, message: &str) -> Bytes {
    Bytes::from(
        serde_json::json!({"type": "error", "error": {"type": kind, "message": message}})
            .to_string(),
    )
}

/// OpenAI's `usage` object.
fn openai_usage(t: Tokens) -> String {
    format!(
        r#"{{"prompt_tokens":{},"completion_tokens":{},"total_tokens":{}}}"#,
        t.prompt,
        t.completion,
        t.prompt + t.completion
    )
}

/// One wire format's bodies.
#[derive(Debug)]
pub(super) struct Wire {
    api: Api,
    /// The first frames of a stream that do not depend on the tokens: for OpenAI the role
    /// chunk with the first token; for Anthropic what follows `message_start`.
    opening: Bytes,
    /// One later content chunk.
    chunk: Bytes,
    /// OpenAI: the finish chunk. Anthropic: `content_block_stop`.
    finish: Bytes,
    /// OpenAI: the usage chunk's text before the usage object.
    usage_prefix: &'static str,
    error_429: Bytes,
    error_500: Bytes,
}

impl Wire {
    /// The bodies of `api`.
    pub(super) fn new(api: Api) -> Wire {
        match api {
            Api::Chat | Api::Completions => Wire::openai(api),
            Api::Embeddings => Wire {
                api,
                opening: Bytes::new(),
                chunk: Bytes::new(),
                finish: Bytes::new(),
                usage_prefix: "",
                error_429: openai_error("rate_limit_error", "injected rate limit"),
                error_500: openai_error("server_error", "injected server error"),
            },
            Api::Messages => Wire::anthropic(),
        }
    }

    fn openai(api: Api) -> Wire {
        let chat = api == Api::Chat;
        let chunk = |delta: serde_json::Value, finish: Option<&str>| {
            let (object, choice) = if chat {
                (
                    "chat.completion.chunk",
                    serde_json::json!({"index": 0, "delta": delta, "finish_reason": finish}),
                )
            } else {
                let text = delta.get("content").cloned().unwrap_or_else(|| "".into());
                (
                    "text_completion",
                    serde_json::json!({"index": 0, "text": text, "finish_reason": finish}),
                )
            };
            sse(&serde_json::json!({
                "id": "mock-1", "object": object, "created": 0, "model": "mock",
                "choices": [choice],
            }))
        };
        Wire {
            api,
            opening: Bytes::from(chunk(
                serde_json::json!({"role": "assistant", "content": TOKEN_TEXT}),
                None,
            )),
            chunk: Bytes::from(chunk(serde_json::json!({"content": TOKEN_TEXT}), None)),
            finish: Bytes::from(chunk(serde_json::json!({}), Some("stop"))),
            usage_prefix: if chat {
                r#"data: {"id":"mock-1","object":"chat.completion.chunk","created":0,"model":"mock","choices":[],"usage":"#
            } else {
                r#"data: {"id":"mock-1","object":"text_completion","created":0,"model":"mock","choices":[],"usage":"#
            },
            error_429: openai_error("rate_limit_error", "injected rate limit"),
            error_500: openai_error("server_error", "injected server error"),
        }
    }

    fn anthropic() -> Wire {
        let delta = event(
            "content_block_delta",
            &serde_json::json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": TOKEN_TEXT}}),
        );
        let opening = [
            event(
                "content_block_start",
                &serde_json::json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "text", "text": ""}}),
            ),
            event("ping", &serde_json::json!({"type": "ping"})),
            delta.clone(),
        ]
        .concat();
        Wire {
            api: Api::Messages,
            opening: Bytes::from(opening),
            chunk: Bytes::from(delta),
            finish: Bytes::from(event(
                "content_block_stop",
                &serde_json::json!({"type": "content_block_stop", "index": 0}),
            )),
            usage_prefix: "",
            error_429: anthropic_error("rate_limit_error", "injected rate limit"),
            error_500: anthropic_error("api_error", "injected server error"),
        }
    }

    /// The whole answer as JSON.
    pub(super) fn json(&self, t: Tokens) -> Bytes {
        let text = || TOKEN_TEXT.repeat(t.completion as usize);
        Bytes::from(match self.api {
            Api::Chat => format!(
                r#"{{"id":"mock-1","object":"chat.completion","created":0,"model":"mock","choices":[{{"index":0,"finish_reason":"stop","message":{{"role":"assistant","content":"{}"}}}}],"usage":{}}}"#,
                text(),
                openai_usage(t)
            ),
            Api::Completions => format!(
                r#"{{"id":"mock-1","object":"text_completion","created":0,"model":"mock","choices":[{{"index":0,"finish_reason":"stop","text":"{}"}}],"usage":{}}}"#,
                text(),
                openai_usage(t)
            ),
            Api::Embeddings => format!(
                r#"{{"object":"list","model":"mock","data":[{{"object":"embedding","index":0,"embedding":[0.0,0.25,0.5,0.75]}}],"usage":{{"prompt_tokens":{0},"total_tokens":{0}}}}}"#,
                t.prompt
            ),
            Api::Messages => format!(
                r#"{{"id":"msg_mock","type":"message","role":"assistant","model":"mock","content":[{{"type":"text","text":"{}"}}],"stop_reason":"end_turn","stop_sequence":null,"usage":{{"input_tokens":{},"output_tokens":{}}}}}"#,
                text(),
                t.prompt,
                t.completion
            ),
        })
    }

    /// The frames up to and including the first content chunk, sent at once.
    pub(super) fn opening(&self, t: Tokens) -> Bytes {
        match self.api {
            Api::Messages => {
                let start = format!(
                    "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"id\":\"msg_mock\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"mock\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{{\"input_tokens\":{},\"output_tokens\":1}}}}}}\n\n",
                    t.prompt
                );
                Bytes::from([start.as_bytes(), &self.opening].concat())
            }
            _ => self.opening.clone(),
        }
    }

    /// One later content chunk.
    pub(super) fn chunk(&self) -> Bytes {
        self.chunk.clone()
    }

    /// The frames after the last content chunk: finish, usage (OpenAI only when asked
    /// for; Anthropic always) and the end.
    pub(super) fn closing(&self, t: Tokens, include_usage: bool) -> Bytes {
        let done = "data: [DONE]\n\n";
        match self.api {
            Api::Messages => {
                let delta = format!(
                    "event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\",\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":{}}}}}\n\n",
                    t.completion
                );
                let stop = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
                Bytes::from([&self.finish, delta.as_bytes(), stop.as_bytes()].concat())
            }
            _ if include_usage => Bytes::from(
                [
                    &self.finish,
                    self.usage_prefix.as_bytes(),
                    openai_usage(t).as_bytes(),
                    b"}\n\n",
                    done.as_bytes(),
                ]
                .concat(),
            ),
            _ => Bytes::from([&self.finish, done.as_bytes()].concat()),
        }
    }

    /// The body of an injected `429`.
    pub(super) fn error_429(&self) -> Bytes {
        self.error_429.clone()
    }

    /// The body of an injected `500`.
    pub(super) fn error_500(&self) -> Bytes {
        self.error_500.clone()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const TOKENS: Tokens = Tokens {
        prompt: 5,
        completion: 3,
    };

    fn parse(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bytes).unwrap()
    }

    /// The `data:` values of SSE frames.
    fn data(frames: &[u8]) -> Vec<serde_json::Value> {
        std::str::from_utf8(frames)
            .unwrap()
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .filter(|data| *data != "[DONE]")
            .map(|data| serde_json::from_str(data).unwrap())
            .collect()
    }

    #[test]
    fn json_answers_carry_the_tokens() {
        let chat = parse(&Wire::new(Api::Chat).json(TOKENS));
        assert_eq!(chat["choices"][0]["message"]["content"], "tok tok tok ");
        assert_eq!(chat["usage"]["prompt_tokens"], 5);
        assert_eq!(chat["usage"]["total_tokens"], 8);
        let text = parse(&Wire::new(Api::Completions).json(TOKENS));
        assert_eq!(text["choices"][0]["text"], "tok tok tok ");
        let embedding = parse(&Wire::new(Api::Embeddings).json(TOKENS));
        assert_eq!(embedding["usage"]["total_tokens"], 5);
        let message = parse(&Wire::new(Api::Messages).json(TOKENS));
        assert_eq!(message["usage"]["input_tokens"], 5);
        assert_eq!(message["usage"]["output_tokens"], 3);
        assert_eq!(message["content"][0]["text"], "tok tok tok ");
        assert_eq!(
            parse(&Wire::new(Api::Chat).error_429())["error"]["type"],
            "rate_limit_error"
        );
    }

    #[test]
    fn stream_frames_parse_and_carry_the_usage() {
        let wire = Wire::new(Api::Chat);
        let closing = data(&wire.closing(TOKENS, true));
        assert_eq!(closing[0]["choices"][0]["finish_reason"], "stop");
        assert_eq!(closing[1]["usage"]["completion_tokens"], 3);
        assert_eq!(data(&wire.closing(TOKENS, false)).len(), 1);
        assert_eq!(
            data(&wire.opening(TOKENS))[0]["choices"][0]["delta"]["role"],
            "assistant"
        );

        let wire = Wire::new(Api::Messages);
        let opening = data(&wire.opening(TOKENS));
        assert_eq!(opening[0]["message"]["usage"]["input_tokens"], 5);
        assert_eq!(opening.last().unwrap()["type"], "content_block_delta");
        let closing = data(&wire.closing(TOKENS, false));
        assert_eq!(closing[1]["usage"]["output_tokens"], 3);
        assert_eq!(closing[2]["type"], "message_stop");
    }
}
