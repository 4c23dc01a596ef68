//! Property tests of the Gemini request translation: for any conversation of system, user,
//! assistant (text and tool calls) and tool messages, any tools and any sampling
//! parameters, the translated request keeps every message in order, every tool and every
//! parameter, with roles `user`/`model` only and no empty turn.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::request::{ChatOptions, chat_request};

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn options(model: &str) -> ChatOptions<'_> {
    ChatOptions {
        model,
        max_tokens: None,
    }
}

/// One piece of conversation as the translation must keep it, in order.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Call(String, Value),
    Response(String, String),
}

#[derive(Debug, Clone)]
enum Turn {
    User(String),
    Assistant(Option<String>, Vec<(String, Value)>),
}

fn text() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9 ,.!?]{0,24}"
}

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z_]{0,11}"
}

fn args() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(
        "[a-z]{1,6}",
        prop_oneof![
            any::<i32>().prop_map(|n| json!(n)),
            text().prop_map(|t| json!(t)),
            any::<bool>().prop_map(|b| json!(b)),
        ],
        0..4,
    )
    .prop_map(|map| json!(map))
}

fn turn() -> impl Strategy<Value = Turn> {
    prop_oneof![
        text().prop_map(Turn::User),
        (
            prop::option::of(text()),
            prop::collection::vec((name(), args()), 0..3)
        )
            .prop_map(|(text, calls)| Turn::Assistant(text, calls)),
    ]
}

#[derive(Debug, Clone)]
struct Params {
    temperature: Option<f64>,
    top_p: Option<f64>,
    max_tokens: Option<u32>,
    stop: Vec<String>,
    n: Option<u8>,
}

fn params() -> impl Strategy<Value = Params> {
    (
        prop::option::of(0.0f64..2.0),
        prop::option::of(0.0f64..1.0),
        prop::option::of(1u32..100_000),
        prop::collection::vec(text(), 0..4),
        prop::option::of(1u8..8),
    )
        .prop_map(|(temperature, top_p, max_tokens, stop, n)| Params {
            temperature,
            top_p,
            max_tokens,
            stop,
            n,
        })
}

/// Builds the OpenAI body and the pieces the Gemini contents must hold, in order.
fn conversation(system: &[String], turns: &[Turn]) -> (Vec<Value>, Vec<Piece>) {
    let mut messages: Vec<Value> = system
        .iter()
        .map(|t| json!({"role": "system", "content": t}))
        .collect();
    let mut pieces = Vec::new();
    let mut next_id = 0;
    for turn in turns {
        match turn {
            Turn::User(text) => {
                messages.push(json!({"role": "user", "content": text}));
                pieces.push(Piece::Text(text.clone()));
            }
            Turn::Assistant(text, calls) => {
                let mut message = json!({"role": "assistant", "content": text});
                if let Some(text) = text {
                    pieces.push(Piece::Text(text.clone()));
                }
                let mut answers = Vec::new();
                let mut tool_calls = Vec::new();
                for (name, args) in calls {
                    let id = format!("id-{next_id}");
                    next_id += 1;
                    tool_calls.push(json!({"id": id, "type": "function",
                        "function": {"name": name, "arguments": args.to_string()}}));
                    pieces.push(Piece::Call(name.clone(), args.clone()));
                    answers.push((id, name.clone(), format!("result {next_id}")));
                }
                if !tool_calls.is_empty() {
                    message["tool_calls"] = Value::Array(tool_calls);
                }
                messages.push(message);
                for (id, name, output) in answers {
                    messages.push(json!({"role": "tool", "tool_call_id": id, "content": output}));
                    pieces.push(Piece::Response(name, output));
                }
            }
        }
    }
    (messages, pieces)
}

fn pieces_of(contents: &[Value]) -> Vec<Piece> {
    contents
        .iter()
        .flat_map(|c| c["parts"].as_array().cloned().unwrap_or_default())
        .map(|part| {
            if let Some(call) = part.get("functionCall") {
                Piece::Call(
                    call["name"].as_str().unwrap_or("").to_owned(),
                    call["args"].clone(),
                )
            } else if let Some(response) = part.get("functionResponse") {
                Piece::Response(
                    response["name"].as_str().unwrap_or("").to_owned(),
                    response["response"]["output"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned(),
                )
            } else {
                Piece::Text(part["text"].as_str().unwrap_or("").to_owned())
            }
        })
        .collect()
}

proptest! {
    #[test]
    fn translation_keeps_every_message_tool_and_parameter(
        system in prop::collection::vec(text(), 0..3),
        turns in prop::collection::vec(turn(), 1..8),
        tools in prop::collection::vec((name(), prop::option::of(text())), 0..4),
        params in params(),
    ) {
        let (messages, expected) = conversation(&system, &turns);
        let declared: Vec<Value> = tools.iter().map(|(name, description)| {
            let mut function = json!({"name": name,
                "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}});
            if let Some(description) = description {
                function["description"] = json!(description);
            }
            json!({"type": "function", "function": function})
        }).collect();
        let mut body = json!({"model": "chat", "messages": messages, "tools": declared, "stop": params.stop});
        for (key, value) in [
            ("temperature", params.temperature.map(|v| json!(v))),
            ("top_p", params.top_p.map(|v| json!(v))),
            ("max_tokens", params.max_tokens.map(|v| json!(v))),
            ("n", params.n.map(|v| json!(v))),
        ] {
            if let Some(value) = value {
                body[key] = value;
            }
        }
        let out = chat_request(&object(body), options("gemini-2.5-flash")).expect("translates");

        let contents = out["contents"].as_array().cloned().unwrap_or_default();
        for content in &contents {
            prop_assert!(matches!(content["role"].as_str(), Some("user" | "model")), "{content}");
            prop_assert!(!content["parts"].as_array().map(Vec::is_empty).unwrap_or(true));
        }
        prop_assert_eq!(pieces_of(&contents), expected);

        let system_texts: Vec<String> = out.get("systemInstruction")
            .and_then(|s| s["parts"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|p| p["text"].as_str().unwrap_or("").to_owned())
            .collect();
        prop_assert_eq!(system_texts, system);

        let declarations = out.get("tools")
            .and_then(|t| t[0]["functionDeclarations"].as_array().cloned())
            .unwrap_or_default();
        prop_assert_eq!(declarations.len(), tools.len());
        for (declaration, (name, description)) in declarations.iter().zip(&tools) {
            prop_assert_eq!(declaration["name"].as_str(), Some(name.as_str()));
            prop_assert_eq!(declaration.get("description").and_then(Value::as_str), description.as_deref());
            prop_assert_eq!(&declaration["parametersJsonSchema"]["properties"]["x"]["type"], "string");
        }

        let config = out.get("generationConfig").cloned().unwrap_or(json!({}));
        prop_assert_eq!(config.get("temperature").and_then(Value::as_f64), params.temperature);
        prop_assert_eq!(config.get("topP").and_then(Value::as_f64), params.top_p);
        prop_assert_eq!(config.get("maxOutputTokens").and_then(Value::as_u64), params.max_tokens.map(u64::from));
        prop_assert_eq!(config.get("candidateCount").and_then(Value::as_u64), params.n.map(u64::from));
        let stops: Vec<String> = config.get("stopSequences").and_then(Value::as_array).cloned()
            .unwrap_or_default().iter().map(|s| s.as_str().unwrap_or("").to_owned()).collect();
        prop_assert_eq!(stops, params.stop);
    }
}
