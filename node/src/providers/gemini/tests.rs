//! Golden-fixture and property tests of the Gemini translation. Fixtures live in
//! `node/tests/fixtures/gemini/`: an OpenAI request and the Gemini request it must become, a
//! Gemini answer and the OpenAI answer it must become, and a Gemini SSE stream and the
//! OpenAI chunks it must become.

use serde_json::{Map, Value, json};

use super::request::{ChatOptions, SKIP_SIGNATURE, TranslateError, chat_request};
use super::response::chat_completion;
use super::stream::{ChatStream, NativeStream, Translate};
use crate::pricing::PriceTable;
use crate::providers::{ProviderError, ProviderKind, StreamEvent};

fn fixture(name: &str) -> &'static str {
    match name {
        "chat_request.openai.json" => {
            include_str!("../../../tests/fixtures/gemini/chat_request.openai.json")
        }
        "chat_request.gemini.json" => {
            include_str!("../../../tests/fixtures/gemini/chat_request.gemini.json")
        }
        "chat_response.gemini.json" => {
            include_str!("../../../tests/fixtures/gemini/chat_response.gemini.json")
        }
        "chat_response.openai.json" => {
            include_str!("../../../tests/fixtures/gemini/chat_response.openai.json")
        }
        "chat_stream.gemini.sse" => {
            include_str!("../../../tests/fixtures/gemini/chat_stream.gemini.sse")
        }
        "chat_stream.openai.sse" => {
            include_str!("../../../tests/fixtures/gemini/chat_stream.openai.sse")
        }
        other => panic!("no fixture {other}"),
    }
}

fn json_fixture(name: &str) -> Value {
    serde_json::from_str(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

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

/// The `data:` payloads of an SSE text.
fn sse_data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|event| event.trim().strip_prefix("data:"))
        .map(|data| data.trim().to_owned())
        .collect()
}

#[test]
fn golden_request_translation() {
    let body = object(json_fixture("chat_request.openai.json"));
    let translated = chat_request(&body, options("gemini-2.5-flash")).expect("translates");
    assert_eq!(
        Value::Object(translated),
        json_fixture("chat_request.gemini.json")
    );
}

#[test]
fn golden_response_translation() {
    let answer = json_fixture("chat_response.gemini.json");
    let (mut body, usage) = chat_completion(&answer, "gemini-2.5-flash").expect("translates");
    assert!(body["created"].as_u64().is_some_and(|c| c > 0));
    body.insert("created".into(), json!(0));
    assert_eq!(
        Value::Object(body),
        json_fixture("chat_response.openai.json")
    );
    assert_eq!(
        (usage.input_tokens, usage.output_tokens, usage.cached_tokens),
        (120, 52, 64)
    );
}

#[test]
fn golden_stream_translation() {
    let mut translator = ChatStream::new("gemini-2.5-flash", true, None);
    let mut items: Vec<Result<StreamEvent, ProviderError>> = Vec::new();
    for data in sse_data(fixture("chat_stream.gemini.sse")) {
        items.extend(translator.event(&data));
    }
    items.extend(translator.end());
    let mut frames = Vec::new();
    let mut usages = Vec::new();
    for item in items {
        match item.expect("no error") {
            StreamEvent::Frame(frame) => frames.push(String::from_utf8_lossy(&frame).into_owned()),
            StreamEvent::Usage(usage) => usages.push(usage),
        }
    }
    let got: Vec<Value> = sse_data(&frames.concat())
        .into_iter()
        .map(|data| match serde_json::from_str::<Value>(&data) {
            Ok(mut chunk) => {
                chunk["created"] = json!(0);
                chunk
            }
            Err(_) => Value::String(data),
        })
        .collect();
    let expected: Vec<Value> = sse_data(fixture("chat_stream.openai.sse"))
        .into_iter()
        .map(|data| serde_json::from_str(&data).unwrap_or(Value::String(data)))
        .collect();
    assert_eq!(got, expected);
    // Running totals as they came, then the final totals once more at the end.
    let totals: Vec<(u64, u64, u64)> = usages
        .iter()
        .map(|u| (u.input_tokens, u.output_tokens, u.cached_tokens))
        .collect();
    assert_eq!(
        totals,
        vec![(20, 2, 0), (20, 4, 0), (20, 12, 8), (20, 12, 8)]
    );
}

#[test]
fn a_stream_without_finish_reason_is_interrupted() {
    let events = sse_data(fixture("chat_stream.gemini.sse"));
    let mut chat = ChatStream::new("m", false, None);
    let mut native = NativeStream::new(None);
    for data in &events[..2] {
        assert!(chat.event(data).iter().all(Result::is_ok));
        assert!(native.event(data).iter().all(Result::is_ok));
    }
    for end in [chat.end(), native.end()] {
        assert!(
            matches!(end.as_slice(), [Err(ProviderError::Interrupted { .. })]),
            "{end:?}"
        );
    }
}

#[test]
fn native_stream_passes_events_through_unchanged() {
    let mut native = NativeStream::new(None);
    let mut frames = String::new();
    for data in sse_data(fixture("chat_stream.gemini.sse")) {
        for item in native.event(&data) {
            if let Ok(StreamEvent::Frame(frame)) = item {
                frames.push_str(&String::from_utf8_lossy(&frame));
            }
        }
    }
    assert!(native.end().is_empty());
    assert_eq!(
        sse_data(&frames),
        sse_data(fixture("chat_stream.gemini.sse"))
    );
}

#[test]
fn blocked_prompts_and_stream_errors_are_errors() {
    let blocked = json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                         "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}});
    let Err(ProviderError::Status(error)) = chat_completion(&blocked, "m") else {
        panic!("a blocked prompt must fail");
    };
    assert_eq!(error.status.as_u16(), 400);
    assert_eq!(error.code.as_deref(), Some("content_filter"));
    assert!(
        error.message.contains("PROHIBITED_CONTENT"),
        "{}",
        error.message
    );

    let mut chat = ChatStream::new("m", false, None);
    let out = chat.event(&blocked.to_string());
    assert!(
        matches!(out.as_slice(), [Err(ProviderError::Status(_))]),
        "{out:?}"
    );
    let mut native = NativeStream::new(None);
    let out = native.event(&blocked.to_string());
    assert!(
        out.iter().all(Result::is_ok),
        "native answers keep the block"
    );
    assert!(
        native.end().is_empty(),
        "a blocked prompt is a complete native stream"
    );

    let failure = json!({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}});
    let out = ChatStream::new("m", false, None).event(&failure.to_string());
    let [Err(ProviderError::Status(error))] = out.as_slice() else {
        panic!("{out:?}");
    };
    assert_eq!(error.status.as_u16(), 503);
    assert_eq!(error.error_type.as_deref(), Some("UNAVAILABLE"));
}

#[test]
fn safety_and_length_finish_reasons_map() {
    for (reason, expected) in [
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("MAX_TOKENS", "length"),
        ("STOP", "stop"),
        ("OTHER", "stop"),
    ] {
        let answer = json!({"candidates": [{"content": {"parts": [{"text": "x"}], "role": "model"},
                                            "finishReason": reason, "index": 0}]});
        let (body, _) = chat_completion(&answer, "m").expect("translates");
        assert_eq!(body["choices"][0]["finish_reason"], expected, "{reason}");
    }
}

#[test]
fn gemini_3_replays_get_a_thought_signature() {
    let body = object(json!({"messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "b", "type": "function", "function": {"name": "g", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "b", "content": "2"},
        {"role": "tool", "tool_call_id": "a", "content": "1"}]}));
    let new = chat_request(&body, options("gemini-3-flash-preview")).expect("translates");
    let parts = &new["contents"][1]["parts"];
    assert_eq!(parts[0]["thoughtSignature"], SKIP_SIGNATURE);
    assert!(
        parts[1].get("thoughtSignature").is_none(),
        "only the first call"
    );
    let responses = &new["contents"][2]["parts"];
    assert_eq!(responses[0]["functionResponse"]["name"], "g");
    assert_eq!(responses[1]["functionResponse"]["name"], "f");
    let old = chat_request(&body, options("gemini-2.5-pro")).expect("translates");
    assert!(
        old["contents"][1]["parts"][0]
            .get("thoughtSignature")
            .is_none()
    );
}

#[test]
fn what_cannot_be_carried_is_refused() {
    let unknown =
        object(json!({"messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]}));
    assert!(matches!(
        chat_request(&unknown, options("m")),
        Err(TranslateError::UnknownToolCall { index: 0, .. })
    ));
    let audio_out =
        object(json!({"messages": [{"role": "user", "content": [{"type": "video_url"}]}]}));
    assert!(matches!(
        chat_request(&audio_out, options("m")),
        Err(TranslateError::Part { .. })
    ));
    let bad_args = object(json!({"messages": [{"role": "assistant", "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]}));
    assert!(matches!(
        chat_request(&bad_args, options("m")),
        Err(TranslateError::Arguments { .. })
    ));
}

#[test]
fn target_max_tokens_is_default_and_cap() {
    let capped = |asked: Value| {
        let body =
            object(json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": asked}));
        let out = chat_request(
            &body,
            ChatOptions {
                model: "m",
                max_tokens: Some(100),
            },
        )
        .expect("ok");
        out["generationConfig"]["maxOutputTokens"].clone()
    };
    assert_eq!(capped(json!(50)), json!(50));
    assert_eq!(capped(json!(500)), json!(100));
    assert_eq!(capped(Value::Null), json!(100));
}

#[test]
fn gemini_prices_are_shipped_and_matched_by_prefix() {
    let table = PriceTable::shipped();
    let flash = table
        .lookup(ProviderKind::Gemini, "gemini-2.5-flash-preview-09-2025")
        .expect("priced");
    assert_eq!(
        (flash.input, flash.cached_input, flash.output),
        (300_000, 30_000, 2_500_000)
    );
    let lite = table
        .lookup(ProviderKind::Gemini, "gemini-2.5-flash-lite")
        .expect("priced");
    assert_eq!(lite.input, 100_000);
    assert!(
        table
            .lookup(ProviderKind::Gemini, "gemini-3-flash-preview")
            .is_some()
    );
    assert!(
        table
            .lookup(ProviderKind::Gemini, "gemini-embedding-001")
            .is_some()
    );
    assert_eq!(table.lookup(ProviderKind::OpenAi, "gemini-2.5-pro"), None);
}
