//! Golden tests: the fixtures in `node/tests/fixtures/bedrock/` pin the exact Converse
//! request built for a full OpenAI chat request (system, image, parallel tool calls, tool
//! results, tools, parameters), the OpenAI answer built for a Converse answer, and the
//! OpenAI chunks built for a ConverseStream with text and a streamed tool call.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::error::Scrub;
use super::eventstream::Frame;
use super::request::converse_body;
use super::response::{AnswerMeta, chat_completion};
use super::stream::ConverseTranslator;
use crate::providers::StreamEvent;

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/bedrock/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn json(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).unwrap()
}

fn meta(id: &str) -> AnswerMeta {
    AnswerMeta {
        id: id.into(),
        created: 1_700_000_000,
        model: "test.golden-v1:0".into(),
    }
}

#[test]
fn chat_request_becomes_the_golden_converse_request() {
    let Value::Object(body) = json("chat_request.openai.json") else {
        panic!("fixture is not an object")
    };
    assert_eq!(
        converse_body(&body, None).unwrap(),
        json("converse_request.json")
    );
}

#[test]
fn converse_answer_becomes_the_golden_chat_completion() {
    let (body, usage) = chat_completion(
        &json("converse_response.json"),
        &meta("chatcmpl-5d7c7c4e-6a43-4b5e-9bb1-0c0ffee00001"),
    )
    .unwrap();
    assert_eq!(Value::Object(body), json("chat_response.openai.json"));
    assert_eq!(
        (usage.input_tokens, usage.output_tokens, usage.cached_tokens),
        (1636, 58, 1024)
    );
}

#[test]
fn converse_stream_becomes_the_golden_chunks() {
    let mut translator = ConverseTranslator::new(meta("chatcmpl-golden"), true, Scrub::default());
    let mut frames = Vec::new();
    let mut usage = None;
    let events = json("converse_stream_tools.events.json");
    for event in events.as_array().unwrap() {
        let frame = Frame::Event {
            kind: event["event"].as_str().unwrap().to_owned(),
            payload: Bytes::from(event["payload"].to_string()),
        };
        for item in translator.on_frame(frame) {
            match item.unwrap() {
                StreamEvent::Frame(bytes) => {
                    frames.push(String::from_utf8(bytes.to_vec()).unwrap())
                }
                StreamEvent::Usage(u) => usage = Some(u),
            }
        }
    }
    assert!(translator.is_done());
    let expected: Vec<String> = fixture("converse_stream_tools.openai.sse")
        .split_inclusive("\n\n")
        .map(str::to_owned)
        .collect();
    assert_eq!(frames.len(), expected.len(), "{frames:#?}");
    for (got, want) in frames.iter().zip(&expected) {
        let parse = |frame: &str| {
            let data = frame.strip_prefix("data: ").unwrap().trim_end();
            serde_json::from_str::<Value>(data).unwrap_or_else(|_| Value::String(data.to_owned()))
        };
        assert!(got.ends_with("\n\n"));
        assert_eq!(parse(got), parse(want));
    }
    let usage = usage.expect("usage reported");
    assert_eq!(
        (usage.input_tokens, usage.output_tokens, usage.cached_tokens),
        (1636, 58, 1024)
    );
    // The streamed arguments assemble into the call's JSON input.
    let arguments: String = frames
        .iter()
        .filter_map(|f| {
            let v: Value = serde_json::from_str(f.strip_prefix("data: ")?.trim_end()).ok()?;
            v.pointer("/choices/0/delta/tool_calls/0/function/arguments")?
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    let input: Map<String, Value> = serde_json::from_str(&arguments).unwrap();
    assert_eq!(input["city"], "Lyon");
}
