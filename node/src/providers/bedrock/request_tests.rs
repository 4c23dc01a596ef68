//! Tests of the OpenAI → Converse request translation, including a property test that a
//! translated request keeps every message, tool and parameter.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::*;

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

const PIXEL: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

#[test]
fn system_user_assistant_tool_and_parameters_translate() {
    let body = object(json!({
        "model": "amazon.nova-pro-v1:0",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this image, and the weather?"},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PIXEL}")}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "user", "content": "thanks"}
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather by city",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": "required",
        "max_tokens": 300, "temperature": 0.2, "top_p": 0.9, "stop": ["END"],
        "stream": true, "stream_options": {"include_usage": true}
    }));
    let out = converse_body(&body, None).unwrap();
    assert_eq!(out["system"], json!([{"text": "Be brief."}]));
    assert_eq!(out["messages"][0]["role"], "user");
    assert_eq!(
        out["messages"][0]["content"][1],
        json!({"image": {"format": "png", "source": {"bytes": PIXEL}}})
    );
    assert_eq!(
        out["messages"][1],
        json!({"role": "assistant", "content": [{"toolUse": {"toolUseId": "call_1", "name": "weather", "input": {"city": "Paris"}}}]})
    );
    // The tool result and the next user message share one user turn.
    assert_eq!(
        out["messages"][2],
        json!({"role": "user", "content": [
            {"toolResult": {"toolUseId": "call_1", "content": [{"text": "sunny"}]}},
            {"text": "thanks"}
        ]})
    );
    assert_eq!(
        out["inferenceConfig"],
        json!({"maxTokens": 300, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]})
    );
    assert_eq!(out["toolConfig"]["toolChoice"], json!({"any": {}}));
    assert_eq!(
        out["toolConfig"]["tools"][0]["toolSpec"],
        json!({"name": "weather", "description": "Weather by city",
               "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}}})
    );
    let keys: Vec<&String> = out.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 4, "no OpenAI-only field leaks: {keys:?}");
}

#[test]
fn max_tokens_is_defaulted_and_capped_by_the_target() {
    let body = object(json!({"messages": [{"role": "user", "content": "hi"}]}));
    assert_eq!(
        converse_body(&body, Some(256)).unwrap()["inferenceConfig"]["maxTokens"],
        256
    );
    let body = object(
        json!({"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 9000}),
    );
    assert_eq!(
        converse_body(&body, Some(256)).unwrap()["inferenceConfig"]["maxTokens"],
        256
    );
    assert_eq!(
        converse_body(&body, None).unwrap()["inferenceConfig"]["maxTokens"],
        9000
    );
    let body = object(json!({"messages": [{"role": "user", "content": "hi"}]}));
    assert!(
        converse_body(&body, None)
            .unwrap()
            .get("inferenceConfig")
            .is_none()
    );
}

#[test]
fn tool_choice_maps_to_converse() {
    let tools = json!([{"type": "function", "function": {"name": "f"}}]);
    let choose = |choice: Value| {
        let body = object(
            json!({"messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": choice}),
        );
        converse_body(&body, None).unwrap()
    };
    assert_eq!(
        choose(json!("auto"))["toolConfig"]["toolChoice"],
        json!({"auto": {}})
    );
    assert_eq!(
        choose(json!({"type": "function", "function": {"name": "f"}}))["toolConfig"]["toolChoice"],
        json!({"tool": {"name": "f"}})
    );
    assert!(choose(json!("none")).get("toolConfig").is_none());
    assert_eq!(
        choose(json!("auto"))["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"],
        json!({"type": "object", "properties": {}})
    );
}

#[test]
fn what_converse_cannot_express_is_refused() {
    let refuse = |body: Value| converse_body(&object(body), None).unwrap_err();
    let err = refuse(json!({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]}));
    assert!(err.to_string().contains("data:"), "{err}");
    assert!(matches!(err, TranslateError::Message { index: 0, .. }));
    let err = refuse(json!({"messages": [{"role": "user", "content": "x"}], "n": 2}));
    assert_eq!(
        err,
        field_error("n", "Bedrock returns one choice per request")
    );
    let err = refuse(
        json!({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}}),
    );
    assert!(matches!(
        err,
        TranslateError::Field {
            field: "response_format",
            ..
        }
    ));
    let err = refuse(json!({"messages": [{"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]}));
    assert!(err.to_string().contains("not valid JSON"), "{err}");
    let err = refuse(json!({"messages": [{"role": "tool", "content": "x"}]}));
    assert!(err.to_string().contains("tool_call_id"), "{err}");
    let err = refuse(json!({"messages": [{"role": "wizard", "content": "x"}]}));
    assert!(err.to_string().contains("wizard"), "{err}");
}

/// A generated chat conversation: (role, text) pairs, tools, and parameters.
#[derive(Debug, Clone)]
struct Conversation {
    messages: Vec<(u8, String)>,
    tools: Vec<String>,
    max_tokens: Option<u32>,
    temperature: Option<u8>,
    stops: Vec<String>,
}

fn conversation() -> impl Strategy<Value = Conversation> {
    (
        prop::collection::vec((0u8..4, "[a-z ]{1,12}"), 1..12),
        prop::collection::btree_set("[a-z]{1,8}", 0..4),
        prop::option::of(1u32..100_000),
        prop::option::of(0u8..=10),
        prop::collection::vec("[A-Z]{1,4}", 0..3),
    )
        .prop_map(
            |(messages, tools, max_tokens, temperature, stops)| Conversation {
                messages,
                tools: tools.into_iter().collect(),
                max_tokens,
                temperature,
                stops,
            },
        )
}

/// Builds the OpenAI body: role 0 system, 1 user, 2 assistant (text + a tool call), 3 a
/// tool result answering the previous call.
fn openai_body(c: &Conversation) -> Value {
    let mut messages = Vec::new();
    for (n, (role, text)) in c.messages.iter().enumerate() {
        messages.push(match role {
            0 => json!({"role": "system", "content": text}),
            1 => json!({"role": "user", "content": text}),
            2 => json!({"role": "assistant", "content": text, "tool_calls": [
                {"id": format!("call_{n}"), "type": "function",
                 "function": {"name": "f", "arguments": format!("{{\"n\":{n}}}")}}]}),
            _ => json!({"role": "tool", "tool_call_id": format!("call_{n}"), "content": text}),
        });
    }
    let mut body = json!({"model": "m", "messages": messages});
    let map = body.as_object_mut().unwrap();
    if !c.tools.is_empty() {
        let tools: Vec<Value> = c
            .tools
            .iter()
            .map(|name| json!({"type": "function", "function": {"name": name, "description": format!("d-{name}"),
                               "parameters": {"type": "object", "properties": {name: {"type": "string"}}}}}))
            .collect();
        map.insert("tools".into(), Value::Array(tools));
    }
    if let Some(max) = c.max_tokens {
        map.insert("max_tokens".into(), json!(max));
    }
    if let Some(t) = c.temperature {
        map.insert("temperature".into(), json!(f64::from(t) / 10.0));
    }
    if !c.stops.is_empty() {
        map.insert("stop".into(), json!(c.stops));
    }
    body
}

proptest! {
    #[test]
    fn translation_keeps_every_message_tool_and_parameter(c in conversation()) {
        let out = converse_body(&object(openai_body(&c)), None).unwrap();
        let turns = out["messages"].as_array().cloned().unwrap_or_default();
        // Roles alternate (consecutive turns were merged, none lost).
        for pair in turns.windows(2) {
            prop_assert_ne!(&pair[0]["role"], &pair[1]["role"]);
        }
        let blocks: Vec<(String, Value)> = turns
            .iter()
            .flat_map(|t| {
                let role = t["role"].as_str().unwrap_or("").to_owned();
                t["content"].as_array().cloned().unwrap_or_default().into_iter().map(move |b| (role.clone(), b))
            })
            .collect();
        let system = out.get("system").and_then(Value::as_array).cloned().unwrap_or_default();
        // Every message's content is present, in order, in the right place.
        let mut expected_turn_blocks = Vec::new();
        let mut expected_system = Vec::new();
        for (n, (role, text)) in c.messages.iter().enumerate() {
            match role {
                0 => expected_system.push(json!({"text": text})),
                1 => expected_turn_blocks.push(("user".to_owned(), json!({"text": text}))),
                2 => {
                    expected_turn_blocks.push(("assistant".to_owned(), json!({"text": text})));
                    expected_turn_blocks.push(("assistant".to_owned(),
                        json!({"toolUse": {"toolUseId": format!("call_{n}"), "name": "f", "input": {"n": n}}})));
                }
                _ => expected_turn_blocks.push(("user".to_owned(),
                    json!({"toolResult": {"toolUseId": format!("call_{n}"), "content": [{"text": text}]}}))),
            }
        }
        prop_assert_eq!(blocks, expected_turn_blocks);
        prop_assert_eq!(system, expected_system);
        // Every tool, with its description and schema.
        let specs: Vec<Value> = out
            .pointer("/toolConfig/tools")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        prop_assert_eq!(specs.len(), c.tools.len());
        for (spec, name) in specs.iter().zip(&c.tools) {
            prop_assert_eq!(&spec["toolSpec"]["name"], &json!(name));
            prop_assert_eq!(&spec["toolSpec"]["description"], &json!(format!("d-{name}")));
            prop_assert_eq!(&spec["toolSpec"]["inputSchema"]["json"]["properties"][name]["type"], &json!("string"));
        }
        // Every parameter.
        let config = out.get("inferenceConfig").cloned().unwrap_or(json!({}));
        prop_assert_eq!(config.get("maxTokens").and_then(Value::as_u64), c.max_tokens.map(u64::from));
        prop_assert_eq!(config.get("temperature").and_then(Value::as_f64), c.temperature.map(|t| f64::from(t) / 10.0));
        let stops: Vec<String> = config.get("stopSequences").and_then(Value::as_array).cloned().unwrap_or_default()
            .into_iter().filter_map(|s| s.as_str().map(str::to_owned)).collect();
        prop_assert_eq!(stops, c.stops.clone());
    }
}
