//! Golden fixtures (`node/tests/fixtures/anthropic/`) for each translation direction, and
//! property tests that a translated request keeps every message, tool and parameter.

use bytes::Bytes;
use futures::StreamExt;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::request::{DEFAULT_MAX_TOKENS, to_anthropic};
use super::response::to_openai;
use super::stream::{Mode, RawEvent, Translator, translate};
use crate::config::Target;
use crate::providers::StreamEvent;
use crate::usage::Usage;

const REQUEST_OPENAI: &str =
    include_str!("../../../tests/fixtures/anthropic/chat_request.openai.json");
const REQUEST_ANTHROPIC: &str =
    include_str!("../../../tests/fixtures/anthropic/chat_request.anthropic.json");
const MESSAGE_ANTHROPIC: &str =
    include_str!("../../../tests/fixtures/anthropic/message.anthropic.json");
const MESSAGE_OPENAI: &str = include_str!("../../../tests/fixtures/anthropic/message.openai.json");
const STREAM_ANTHROPIC: &str =
    include_str!("../../../tests/fixtures/anthropic/stream_tools.anthropic.sse");
const STREAM_OPENAI: &str =
    include_str!("../../../tests/fixtures/anthropic/stream_tools.openai.sse");

/// A validated Anthropic target, built from config text so it follows `Target`'s fields.
fn target(max_tokens: Option<u64>) -> Target {
    let cap = max_tokens
        .map(|n| format!("\n        max_tokens: {n}"))
        .unwrap_or_default();
    let yaml = format!(
        "auth: none\nendpoints:\n  - name: chat\n    kind: chat\n    targets:\n      - provider: anthropic\n        model: claude-sonnet-5-5\n        credentials: {{api_key: sk-ant-test-key}}{cap}\n"
    );
    let env = std::collections::HashMap::<String, String>::new();
    let config = crate::config::load_str(&yaml, crate::config::Mode::Serve, &env)
        .unwrap_or_else(|e| panic!("test config invalid: {e}"));
    config.endpoints["chat"].targets[0].clone()
}

fn object(text: &str) -> Map<String, Value> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => map,
        other => panic!("fixture is not a JSON object: {other:?}"),
    }
}

#[test]
fn golden_chat_request_translates_to_the_anthropic_request() {
    let translated = to_anthropic(&object(REQUEST_OPENAI), &target(None)).expect("translates");
    assert_eq!(
        Value::Object(translated),
        Value::Object(object(REQUEST_ANTHROPIC))
    );
}

#[test]
fn golden_message_translates_to_the_openai_answer() {
    let (answer, usage) = to_openai(&object(MESSAGE_ANTHROPIC), 1_700_000_000);
    assert_eq!(Value::Object(answer), Value::Object(object(MESSAGE_OPENAI)));
    assert_eq!(
        usage,
        Usage {
            input_tokens: 1150,
            output_tokens: 45,
            cached_tokens: 1000,
            cache_write_tokens: 30,
            cache_write_1h_tokens: 0,
        }
    );
}

/// Parses SSE text the way the provider does (with `eventsource-stream`).
fn events(text: &'static str) -> impl futures::Stream<Item = RawEvent> + Send + 'static {
    use eventsource_stream::Eventsource;
    let bytes =
        futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(text.as_bytes()))]);
    bytes.eventsource().map(|item| {
        item.map(|e| (e.event, e.data)).map_err(|e| {
            crate::providers::ProviderError::InvalidResponse {
                detail: e.to_string(),
            }
        })
    })
}

async fn run(text: &'static str, mode: Mode) -> (Vec<String>, Vec<Usage>) {
    let translator = Translator::new(mode, None, 1_700_000_000);
    let items: Vec<_> = translate(events(text), translator).collect().await;
    let mut frames = Vec::new();
    let mut usages = Vec::new();
    for item in items {
        match item.expect("no stream error") {
            StreamEvent::Frame(bytes) => frames.push(String::from_utf8_lossy(&bytes).into_owned()),
            StreamEvent::Usage(usage) => usages.push(usage),
        }
    }
    (frames, usages)
}

fn data_values(frames: &[String]) -> Vec<Value> {
    frames
        .iter()
        .flat_map(|frame| frame.split("\n\n"))
        .filter_map(|event| event.strip_prefix("data: "))
        .map(|data| serde_json::from_str(data).unwrap_or(Value::String(data.to_owned())))
        .collect()
}

#[tokio::test]
async fn golden_stream_translates_to_openai_chunks() {
    let (frames, usages) = run(
        STREAM_ANTHROPIC,
        Mode::Chat {
            forward_usage: true,
        },
    )
    .await;
    let expected: Vec<String> = STREAM_OPENAI
        .split_inclusive("\n\n")
        .map(str::to_owned)
        .collect();
    assert_eq!(data_values(&frames), data_values(&expected));
    assert_eq!(frames.last().map(String::as_str), Some("data: [DONE]\n\n"));
    assert_eq!(
        usages.last(),
        Some(&Usage {
            input_tokens: 2520,
            output_tokens: 89,
            cached_tokens: 2048,
            ..Usage::default()
        })
    );
}

#[tokio::test]
async fn golden_stream_without_usage_request_has_no_usage_chunk() {
    let (frames, usages) = run(
        STREAM_ANTHROPIC,
        Mode::Chat {
            forward_usage: false,
        },
    )
    .await;
    assert!(
        !frames.iter().any(|f| f.contains("\"usage\"")),
        "{frames:?}"
    );
    assert_eq!(usages.last().map(|u| u.output_tokens), Some(89));
}

#[tokio::test]
async fn golden_stream_passes_through_natively_byte_for_byte() {
    let (frames, usages) = run(STREAM_ANTHROPIC, Mode::Native).await;
    assert_eq!(frames.concat(), STREAM_ANTHROPIC);
    assert_eq!(
        usages.last().map(|u| (u.input_tokens, u.output_tokens)),
        Some((2520, 89))
    );
}

#[tokio::test]
async fn a_stream_cut_before_message_stop_is_interrupted() {
    let cut = STREAM_ANTHROPIC
        .split("event: message_delta")
        .next()
        .unwrap_or_default();
    let translator = Translator::new(Mode::Native, None, 0);
    let items: Vec<_> = translate(events(cut), translator).collect().await;
    assert!(matches!(
        items.last(),
        Some(Err(crate::providers::ProviderError::Interrupted { .. }))
    ));
}

/// What a request carries, role by role, as comparable items: text, tool uses, tool
/// results, on the Anthropic role they belong to.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    Text(String),
    ToolUse(String, String, Value),
    ToolResult(String, String),
}

fn openai_items(messages: &[Value]) -> (Vec<String>, Vec<(&'static str, Item)>) {
    let mut system = Vec::new();
    let mut items = Vec::new();
    for message in messages {
        let text = message["content"].as_str().unwrap_or("").to_owned();
        match message["role"].as_str() {
            Some("system") => system.push(text),
            Some("user") => items.push(("user", Item::Text(text))),
            Some("assistant") => {
                if !text.is_empty() {
                    items.push(("assistant", Item::Text(text)));
                }
                for call in message["tool_calls"].as_array().into_iter().flatten() {
                    let args = serde_json::from_str(
                        call["function"]["arguments"].as_str().unwrap_or("{}"),
                    )
                    .unwrap_or(Value::Null);
                    items.push((
                        "assistant",
                        Item::ToolUse(
                            call["id"].as_str().unwrap_or("").into(),
                            call["function"]["name"].as_str().unwrap_or("").into(),
                            args,
                        ),
                    ));
                }
            }
            Some("tool") => items.push((
                "user",
                Item::ToolResult(message["tool_call_id"].as_str().unwrap_or("").into(), text),
            )),
            _ => {}
        }
    }
    (system, items)
}

fn anthropic_items(body: &Map<String, Value>) -> (Vec<String>, Vec<(&'static str, Item)>) {
    let system = match body.get("system") {
        None => Vec::new(),
        Some(Value::String(text)) => vec![text.clone()],
        Some(blocks) => blocks
            .as_array()
            .into_iter()
            .flatten()
            .map(|b| b["text"].as_str().unwrap_or("").to_owned())
            .collect(),
    };
    let mut items = Vec::new();
    for message in body["messages"].as_array().into_iter().flatten() {
        let role = if message["role"] == "user" {
            "user"
        } else {
            "assistant"
        };
        let blocks = match &message["content"] {
            Value::String(text) => vec![json!({"type": "text", "text": text})],
            Value::Array(blocks) => blocks.clone(),
            _ => Vec::new(),
        };
        for block in blocks {
            let text = |k: &str| block[k].as_str().unwrap_or("").to_owned();
            let item = match block["type"].as_str() {
                Some("text") => Item::Text(text("text")),
                Some("tool_use") => Item::ToolUse(text("id"), text("name"), block["input"].clone()),
                Some("tool_result") => Item::ToolResult(text("tool_use_id"), text("content")),
                _ => continue,
            };
            items.push((role, item));
        }
    }
    (system, items)
}

fn word() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 .,!?]{1,16}"
}

fn message() -> impl Strategy<Value = Value> {
    let call = ("[a-z0-9]{4,8}", "[a-z_]{3,10}", word()).prop_map(|(id, name, arg)| {
        json!({"id": format!("call_{id}"), "type": "function",
            "function": {"name": name, "arguments": json!({"arg": arg}).to_string()}})
    });
    prop_oneof![
        word().prop_map(|t| json!({"role": "system", "content": t})),
        word().prop_map(|t| json!({"role": "user", "content": t})),
        word().prop_map(|t| json!({"role": "assistant", "content": t})),
        (
            prop_oneof![Just(String::new()), word()],
            prop::collection::vec(call, 1..3)
        )
            .prop_map(|(t, calls)| json!({"role": "assistant", "content": t, "tool_calls": calls})),
        ("[a-z0-9]{4,8}", word()).prop_map(
            |(id, t)| json!({"role": "tool", "tool_call_id": format!("call_{id}"), "content": t})
        ),
    ]
}

fn request() -> impl Strategy<Value = Map<String, Value>> {
    (
        prop::collection::vec(message(), 1..12),
        prop::option::of(0.0f64..1.0),
        prop::option::of(0.0f64..1.0),
        prop::option::of(1u64..200_000),
        prop::collection::vec(word(), 0..4),
        prop::option::of(word()),
        prop::collection::vec("[a-z_]{3,10}", 0..4),
        prop::option::of(1u64..500),
    )
        .prop_map(
            |(messages, temperature, top_p, max_tokens, stop, user, tools, top_k)| {
                let mut body = Map::new();
                body.insert("model".into(), json!("claude-haiku-5-5"));
                body.insert("messages".into(), Value::Array(messages));
                let optional = [
                    ("temperature", temperature.map(Value::from)),
                    ("top_p", top_p.map(Value::from)),
                    ("max_tokens", max_tokens.map(Value::from)),
                    ("user", user.map(Value::from)),
                    ("top_k", top_k.map(Value::from)),
                ];
                for (key, value) in optional {
                    if let Some(value) = value {
                        body.insert(key.into(), value);
                    }
                }
                if !stop.is_empty() {
                    body.insert("stop".into(), json!(stop));
                }
                if !tools.is_empty() {
                    let tools: Vec<Value> = tools
                        .iter()
                        .map(|name| {
                            json!({"type": "function", "function": {"name": name,
                        "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}}})
                        })
                        .collect();
                    body.insert("tools".into(), Value::Array(tools));
                    body.insert("tool_choice".into(), json!("required"));
                }
                body
            },
        )
}

proptest! {
    #[test]
    fn translation_keeps_every_message_tool_and_parameter(body in request()) {
        let out = to_anthropic(&body, &target(None)).expect("valid requests translate");
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        prop_assert_eq!(anthropic_items(&out), openai_items(&messages));

        let turns = out["messages"].as_array().cloned().unwrap_or_default();
        for pair in turns.windows(2) {
            prop_assert_ne!(&pair[0]["role"], &pair[1]["role"], "roles alternate");
        }
        for key in ["temperature", "top_p", "top_k"] {
            prop_assert_eq!(out.get(key), body.get(key));
        }
        let max = body.get("max_tokens").and_then(Value::as_u64).unwrap_or(DEFAULT_MAX_TOKENS);
        prop_assert_eq!(out.get("max_tokens"), Some(&json!(max)));
        prop_assert_eq!(out.get("stop_sequences"), body.get("stop"));
        prop_assert_eq!(
            out.get("metadata").and_then(|m| m.get("user_id")),
            body.get("user")
        );
        let names = |tools: Option<&Value>, path: &str| -> Vec<Value> {
            tools.and_then(Value::as_array).into_iter().flatten()
                .map(|t| t.pointer(path).cloned().unwrap_or(Value::Null)).collect()
        };
        prop_assert_eq!(names(out.get("tools"), "/name"), names(body.get("tools"), "/function/name"));
        let any = body.get("tools").map(|_| json!({"type": "any"}));
        prop_assert_eq!(out.get("tool_choice"), any.as_ref());
        prop_assert_eq!(
            names(out.get("tools"), "/input_schema"),
            names(body.get("tools"), "/function/parameters")
        );
    }

    #[test]
    fn the_target_caps_max_tokens(asked in 1u64..100_000, cap in 1u64..100_000) {
        let mut body = object(r#"{"model": "m", "messages": [{"role": "user", "content": "hi"}]}"#);
        body.insert("max_tokens".into(), json!(asked));
        let out = to_anthropic(&body, &target(Some(cap))).expect("translates");
        prop_assert_eq!(out.get("max_tokens"), Some(&json!(asked.min(cap))));
    }
}

#[test]
fn anthropic_prices_cover_dated_model_ids() {
    use crate::pricing::PriceTable;
    use crate::providers::ProviderKind;
    let table = PriceTable::shipped();
    let price = |model: &str| {
        table
            .lookup(ProviderKind::Anthropic, model)
            .map(|p| (p.input, p.cached_input, p.output))
    };
    assert_eq!(
        price("claude-haiku-4-5-20251001"),
        Some((1_000_000, 100_000, 5_000_000))
    );
    assert_eq!(
        price("claude-opus-4-20250514"),
        Some((15_000_000, 1_500_000, 75_000_000))
    );
    assert_eq!(
        price("claude-opus-4-5-20251101"),
        Some((5_000_000, 500_000, 25_000_000))
    );
    assert_eq!(
        price("claude-sonnet-5-5"),
        Some((2_000_000, 200_000, 10_000_000))
    );
    assert_eq!(
        price("claude-opus-5-5"),
        Some((4_000_000, 200_000, 20_000_000))
    );
    assert_eq!(
        table.lookup(ProviderKind::OpenAi, "claude-opus-5-5"),
        None,
        "scoped to anthropic"
    );
}
