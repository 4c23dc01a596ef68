//! Property test: a translated chat request keeps every message (role, text, image parts,
//! tool calls, tool results), every tool and every parameter Cohere can carry, under
//! Cohere's names.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::{Value, json};

use super::request::chat_request;

/// One message of a generated conversation.
#[derive(Debug, Clone)]
enum Message {
    System(String),
    User(Vec<Part>),
    UserText(String),
    Assistant(Option<String>, Vec<(String, String, String)>),
    Tool(String, String),
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Image(String, Option<&'static str>),
}

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 .,!?é\n]{0,24}"
}

fn message() -> impl Strategy<Value = Message> {
    let part = prop_oneof![
        text().prop_map(Part::Text),
        (
            "https://example\\.com/[a-z]{1,8}\\.png",
            prop::option::of(prop_oneof![Just("low"), Just("high"), Just("auto")])
        )
            .prop_map(|(url, detail)| Part::Image(url, detail)),
    ];
    let call = (
        "call_[a-z0-9]{4,8}",
        "[a-z_]{1,10}",
        "\\{\"x\": [0-9]{1,3}\\}",
    );
    prop_oneof![
        text().prop_map(Message::System),
        prop::collection::vec(part, 1..4).prop_map(Message::User),
        text().prop_map(Message::UserText),
        (prop::option::of(text()), prop::collection::vec(call, 0..3))
            .prop_map(|(t, calls)| Message::Assistant(t, calls)),
        ("call_[a-z0-9]{4,8}", text()).prop_map(|(id, t)| Message::Tool(id, t)),
    ]
}

fn to_openai(message: &Message) -> Value {
    match message {
        Message::System(t) => json!({"role": "system", "content": t}),
        Message::UserText(t) => json!({"role": "user", "content": t}),
        Message::User(parts) => {
            let parts: Vec<Value> = parts
                .iter()
                .map(|p| match p {
                    Part::Text(t) => json!({"type": "text", "text": t}),
                    Part::Image(url, None) => {
                        json!({"type": "image_url", "image_url": {"url": url}})
                    }
                    Part::Image(url, Some(d)) => {
                        json!({"type": "image_url", "image_url": {"url": url, "detail": d}})
                    }
                })
                .collect();
            json!({"role": "user", "content": parts})
        }
        Message::Assistant(t, calls) => {
            let mut m = json!({"role": "assistant", "content": t});
            if !calls.is_empty() {
                m["tool_calls"] = calls
                    .iter()
                    .map(|(id, name, args)| {
                        json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}})
                    })
                    .collect();
            }
            m
        }
        Message::Tool(id, t) => json!({"role": "tool", "tool_call_id": id, "content": t}),
    }
}

/// Checks one translated message against what was generated.
fn check(message: &Message, out: &Value) {
    match message {
        Message::System(t) => assert_eq!(out, &json!({"role": "system", "content": t})),
        Message::UserText(t) => assert_eq!(out, &json!({"role": "user", "content": t})),
        Message::User(parts) => {
            assert_eq!(out["role"], "user");
            let blocks = out["content"].as_array().unwrap();
            assert_eq!(blocks.len(), parts.len());
            for (part, block) in parts.iter().zip(blocks) {
                match part {
                    Part::Text(t) => assert_eq!(block, &json!({"type": "text", "text": t})),
                    Part::Image(url, detail) => {
                        assert_eq!(block["type"], "image_url");
                        assert_eq!(block["image_url"]["url"], json!(url));
                        assert_eq!(
                            block["image_url"].get("detail"),
                            detail.map(|d| json!(d)).as_ref()
                        );
                    }
                }
            }
        }
        Message::Assistant(t, calls) => {
            assert_eq!(out["role"], "assistant");
            if calls.is_empty() {
                assert_eq!(out["content"], json!(t.clone().unwrap_or_default()));
            } else {
                let plan = t.clone().filter(|t| !t.is_empty());
                assert_eq!(out.get("tool_plan"), plan.map(Value::String).as_ref());
                let sent = out["tool_calls"].as_array().unwrap();
                assert_eq!(sent.len(), calls.len());
                for ((id, name, args), call) in calls.iter().zip(sent) {
                    assert_eq!(call["id"], json!(id));
                    assert_eq!(call["type"], "function");
                    assert_eq!(call["function"]["name"], json!(name));
                    assert_eq!(call["function"]["arguments"], json!(args));
                }
            }
        }
        Message::Tool(id, t) => {
            assert_eq!(
                out,
                &json!({"role": "tool", "tool_call_id": id, "content": t})
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn translation_keeps_every_message_tool_and_parameter(
        messages in prop::collection::vec(message(), 1..8),
        tools in prop::collection::vec(("[a-z_]{1,10}", prop::option::of(text()), any::<bool>()), 0..4),
        temperature in prop::option::of(0.0f64..1.0),
        top_p in prop::option::of(0.01f64..0.99),
        top_k in prop::option::of(0u64..500),
        seed in prop::option::of(any::<u32>()),
        frequency_penalty in prop::option::of(0.0f64..1.0),
        presence_penalty in prop::option::of(0.0f64..1.0),
        max_tokens in prop::option::of(1u64..100_000),
        stop in prop::option::of(prop::collection::vec("[a-z#\n]{1,4}", 1..5)),
        stream in any::<bool>(),
    ) {
        let mut body = json!({
            "model": "endpoint",
            "messages": messages.iter().map(to_openai).collect::<Vec<_>>(),
        });
        if !tools.is_empty() {
            body["tools"] = tools.iter().map(|(name, description, with_params)| {
                let mut function = json!({"name": name});
                if let Some(d) = description { function["description"] = json!(d); }
                if *with_params {
                    function["parameters"] = json!({"type": "object", "properties": {"x": {"type": "integer"}}});
                }
                json!({"type": "function", "function": function})
            }).collect();
        }
        let params = [
            ("temperature", temperature.map(Value::from)),
            ("top_p", top_p.map(Value::from)),
            ("top_k", top_k.map(Value::from)),
            ("seed", seed.map(Value::from)),
            ("frequency_penalty", frequency_penalty.map(Value::from)),
            ("presence_penalty", presence_penalty.map(Value::from)),
            ("max_tokens", max_tokens.map(Value::from)),
            ("stop", stop.clone().map(Value::from)),
        ];
        for (name, value) in &params {
            if let Some(value) = value { body[*name] = value.clone(); }
        }
        let body = body.as_object().unwrap().clone();
        let out = chat_request(&body, "command-r-08-2024", None, stream).unwrap();

        prop_assert_eq!(&out["model"], "command-r-08-2024");
        prop_assert_eq!(&out["stream"], stream);
        let sent = out["messages"].as_array().unwrap();
        prop_assert_eq!(sent.len(), messages.len());
        for (message, translated) in messages.iter().zip(sent) {
            check(message, translated);
        }
        let sent_tools = out.get("tools").and_then(Value::as_array).cloned().unwrap_or_default();
        prop_assert_eq!(sent_tools.len(), tools.len());
        for ((name, description, with_params), tool) in tools.iter().zip(&sent_tools) {
            prop_assert_eq!(&tool["type"], "function");
            prop_assert_eq!(&tool["function"]["name"], &json!(name));
            let described = description.clone().map(Value::String);
            prop_assert_eq!(tool["function"].get("description"), described.as_ref());
            prop_assert!(tool["function"]["parameters"].is_object());
            if *with_params {
                prop_assert_eq!(&tool["function"]["parameters"]["properties"]["x"]["type"], "integer");
            }
        }
        let cohere_names = [
            ("temperature", "temperature"), ("top_p", "p"), ("top_k", "k"), ("seed", "seed"),
            ("frequency_penalty", "frequency_penalty"), ("presence_penalty", "presence_penalty"),
            ("max_tokens", "max_tokens"), ("stop", "stop_sequences"),
        ];
        for ((name, value), (openai, cohere)) in params.iter().zip(cohere_names) {
            prop_assert_eq!(*name, openai);
            prop_assert_eq!(out.get(cohere), value.as_ref(), "{} → {}", openai, cohere);
        }
    }
}
