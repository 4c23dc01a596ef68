//! Golden tests against the fixtures in `node/tests/fixtures/cohere/` (Cohere's wire format
//! as its API reference shows it, and the OpenAI shapes they must become), stream edge
//! cases, and the shipped Cohere prices. The property test is in `proptests.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Map, Value, json};

use super::request::chat_request;
use super::response::chat_response;
use super::stream::{Translator, translate};
use crate::providers::{ProviderError, StreamEvent};
use crate::usage::Usage;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/cohere/",
            $name
        ))
    };
}

fn object(text: &str) -> Map<String, Value> {
    serde_json::from_str(text).unwrap()
}

/// `(event name, data)` of each SSE event in `text`.
fn sse_events(text: &str) -> Vec<(String, String)> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut name = String::from("message");
            let mut data = String::new();
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event: ") {
                    name = value.to_owned();
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data = value.to_owned();
                }
            }
            (name, data)
        })
        .collect()
}

/// The frames as JSON (`created` zeroed, `[DONE]` as a string) and the usage events.
fn normalize(items: Vec<Result<StreamEvent, ProviderError>>) -> (Vec<Value>, Vec<Usage>) {
    let mut frames = Vec::new();
    let mut usage = Vec::new();
    for item in items {
        match item.unwrap() {
            StreamEvent::Frame(bytes) => {
                let text = std::str::from_utf8(&bytes).unwrap();
                let data = text
                    .strip_prefix("data: ")
                    .and_then(|t| t.strip_suffix("\n\n"))
                    .unwrap_or_else(|| panic!("not one data frame: {text:?}"));
                if data == "[DONE]" {
                    frames.push(json!("[DONE]"));
                } else {
                    let mut value: Value = serde_json::from_str(data).unwrap();
                    value["created"] = json!(0);
                    frames.push(value);
                }
            }
            StreamEvent::Usage(seen) => usage.push(seen),
        }
    }
    (frames, usage)
}

fn run(fixture: &str, forward_usage: bool) -> (Vec<Value>, Vec<Usage>) {
    let mut translator = Translator::new("command-a-03-2025", forward_usage);
    let items = sse_events(fixture)
        .iter()
        .flat_map(|(name, data)| translator.event(name, data))
        .collect();
    assert!(translator.ended());
    normalize(items)
}

fn expected_frames(text: &str) -> Vec<Value> {
    sse_events(text)
        .into_iter()
        .map(|(_, data)| serde_json::from_str(&data).unwrap_or(Value::String(data)))
        .collect()
}

#[test]
fn golden_chat_request() {
    let openai = object(fixture!("chat_request.openai.json"));
    let translated = chat_request(&openai, "command-a-03-2025", None, false).unwrap();
    let expected = object(fixture!("chat_request.cohere.json"));
    assert_eq!(Value::Object(translated), Value::Object(expected));
}

#[test]
fn golden_chat_response() {
    let cohere: Value = serde_json::from_str(fixture!("chat_response.cohere.json")).unwrap();
    let (mut body, usage) = chat_response(&cohere, "command-a-03-2025").unwrap();
    body.insert("created".into(), json!(0));
    let expected = object(fixture!("chat_response.openai.json"));
    assert_eq!(Value::Object(body), Value::Object(expected));
    assert_eq!((usage.input_tokens, usage.output_tokens), (37, 28));
}

#[test]
fn golden_tool_call_stream() {
    let (frames, usage) = run(fixture!("stream_tool_call.cohere.sse"), true);
    assert_eq!(
        frames,
        expected_frames(fixture!("stream_tool_call.openai.sse"))
    );
    assert_eq!(
        usage
            .iter()
            .map(|u| (u.input_tokens, u.output_tokens))
            .collect::<Vec<_>>(),
        vec![(37, 28)]
    );
}

#[test]
fn golden_text_stream() {
    let (frames, usage) = run(fixture!("stream_text.cohere.sse"), false);
    assert_eq!(frames, expected_frames(fixture!("stream_text.openai.sse")));
    assert_eq!(usage.len(), 1, "usage is captured even when not forwarded");
    assert!(frames.iter().all(|f| f.get("usage").is_none()));
}

#[test]
fn the_max_tokens_cap_applies() {
    let body = object(r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":900}"#);
    let capped = chat_request(&body, "m", Some(100), false).unwrap();
    assert_eq!(capped["max_tokens"], 100);
    let body = object(r#"{"messages":[{"role":"user","content":"hi"}]}"#);
    let defaulted = chat_request(&body, "m", Some(100), true).unwrap();
    assert_eq!(defaulted["max_tokens"], 100);
    assert_eq!(defaulted["stream"], true);
}

#[test]
fn what_cohere_cannot_carry_is_refused_by_name() {
    let audio = object(
        r#"{"messages":[{"role":"user","content":[{"type":"text","text":"x"},
            {"type":"input_audio","input_audio":{"data":"","format":"wav"}}]}]}"#,
    );
    let err = chat_request(&audio, "m", None, false).unwrap_err();
    assert!(err.to_string().contains("messages[0].content[1]"), "{err}");
    let many = object(r#"{"messages":[{"role":"user","content":"x"}],"n":3}"#);
    assert!(chat_request(&many, "m", None, false).is_err());
}

#[test]
fn a_named_tool_choice_offers_only_that_tool() {
    let body = object(
        r#"{"messages":[{"role":"user","content":"x"}],
            "tools":[{"type":"function","function":{"name":"a"}},{"type":"function","function":{"name":"b"}}],
            "tool_choice":{"type":"function","function":{"name":"b"}},
            "response_format":{"type":"json_schema","json_schema":{"name":"s","schema":{"type":"object"}}}}"#,
    );
    let out = chat_request(&body, "m", None, false).unwrap();
    assert_eq!(out["tool_choice"], "REQUIRED");
    assert_eq!(out["tools"].as_array().map(Vec::len), Some(1));
    assert_eq!(out["tools"][0]["function"]["name"], "b");
    assert_eq!(
        out["response_format"],
        json!({"type": "json_object", "json_schema": {"type": "object"}})
    );
}

#[test]
fn an_error_finish_in_the_stream_ends_it_with_an_error_after_the_usage() {
    let mut translator = Translator::new("m", true);
    translator.event("message-start", r#"{"type":"message-start","id":"x"}"#);
    let out = translator.event(
        "message-end",
        r#"{"type":"message-end","delta":{"finish_reason":"ERROR","error":"overloaded",
            "usage":{"billed_units":{"input_tokens":5,"output_tokens":1}}}}"#,
    );
    assert!(matches!(out[0], Ok(StreamEvent::Usage(_))));
    match &out[1] {
        Err(ProviderError::Status(upstream)) => assert!(upstream.message.contains("overloaded")),
        other => panic!("expected a status error, got {other:?}"),
    }
    assert_eq!(out.len(), 2, "no [DONE] after an error");
}

fn events_from(
    text: &'static str,
) -> impl futures::Stream<
    Item = Result<eventsource_stream::Event, eventsource_stream::EventStreamError<reqwest::Error>>,
> + Send
+ 'static {
    eventsource_stream::Eventsource::eventsource(futures::stream::iter([
        Ok::<Bytes, reqwest::Error>(Bytes::from_static(text.as_bytes())),
    ]))
}

#[tokio::test]
async fn a_stream_ending_before_message_end_is_interrupted() {
    let full = fixture!("stream_text.cohere.sse");
    let cut = &full[..full.find("event: message-end").unwrap()];
    let items: Vec<_> = translate(events_from(cut), Translator::new("m", false))
        .collect()
        .await;
    let last = items.last().unwrap();
    assert!(
        matches!(last, Err(ProviderError::Interrupted { .. })),
        "{last:?}"
    );
    let content = items
        .iter()
        .filter(
            |i| matches!(i, Ok(StreamEvent::Frame(f)) if f.windows(9).any(|w| w == b"\"content\"")),
        )
        .count();
    assert_eq!(
        content, 4,
        "role chunk and three text deltas before the cut"
    );
}

#[tokio::test]
async fn the_whole_stream_ends_with_done_and_nothing_after_message_end() {
    let text = concat!(
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/cohere/stream_text.cohere.sse"
        )),
        "event: content-delta\ndata: {\"type\":\"content-delta\",\"delta\":{\"message\":{\"content\":{\"text\":\"late\"}}}}\n\n"
    );
    let items: Vec<_> = translate(events_from(text), Translator::new("m", false))
        .collect()
        .await;
    let (frames, usage) = normalize(items);
    assert_eq!(frames.last(), Some(&json!("[DONE]")));
    assert!(!frames.iter().any(|f| f.to_string().contains("late")));
    assert_eq!(usage.len(), 1);
}

#[test]
fn cohere_models_are_priced_and_unpublished_ones_are_not_guessed() {
    use crate::pricing::PriceTable;
    use crate::providers::ProviderKind;
    let table = PriceTable::shipped();
    let price = |model: &str| {
        table
            .lookup(ProviderKind::Cohere, model)
            .map(|p| (p.input, p.output))
    };
    assert_eq!(price("command-r-08-2024"), Some((150_000, 600_000)));
    assert_eq!(
        price("command-r-plus-08-2024"),
        Some((2_500_000, 10_000_000))
    );
    assert_eq!(price("command-r7b-12-2024"), Some((37_500, 150_000)));
    assert_eq!(price("command-a-03-2025"), Some((2_500_000, 10_000_000)));
    assert_eq!(price("embed-v4.0"), Some((120_000, 0)));
    assert_eq!(price("embed-multilingual-light-v3.0"), Some((100_000, 0)));
    assert_eq!(price("command-a-plus-05-2026"), None);
}
