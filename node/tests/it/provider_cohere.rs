//! The Cohere provider end to end: an in-process edge in front of the mock Cohere upstream
//! (`common::cohere_upstream`, which refuses requests that are not Cohere's): chat JSON and
//! streams with tools, embeddings, exact usage records (JSON, stream, client disconnect)
//! and the mapping of Cohere's errors.

use crate::common::cohere_upstream::{
    COHERE_KEY, CohereUpstream, EMBED_TOKENS_PER_TEXT, TEXT_ANSWER, TEXT_BILLED, TEXT_TOKENS,
    TOOL_BILLED,
};
use crate::common::{Reply, TestGateway, client, send, wait_until, within};
use serde_json::{Map, Value, json};

/// A gateway with `chat`, `embeddings` and `text` (completions) endpoints on the mock
/// Cohere, plus one chat endpoint per extra upstream model (named after the model).
async fn gateway(upstream: &CohereUpstream, models: &[&str]) -> TestGateway {
    gateway_with_key(upstream, models, COHERE_KEY).await
}

async fn gateway_with_key(upstream: &CohereUpstream, models: &[&str], key: &str) -> TestGateway {
    let target = |model: &str| {
        format!(
            "      - provider: cohere\n        model: {model}\n        api_base: {}\n        credentials: {{api_key: $COHERE_KEY}}\n",
            upstream.base()
        )
    };
    let mut yaml = String::from("auth: none\nendpoints:\n");
    yaml.push_str("  - name: chat\n    kind: chat\n    targets:\n");
    yaml.push_str(&target("command-r-08-2024"));
    yaml.push_str("  - name: embeddings\n    kind: embeddings\n    targets:\n");
    yaml.push_str(&target("embed-v4.0"));
    yaml.push_str("  - name: text\n    kind: completions\n    targets:\n");
    yaml.push_str(&target("command-r-08-2024"));
    for model in models {
        yaml.push_str(&format!(
            "  - name: {model}\n    kind: chat\n    targets:\n"
        ));
        yaml.push_str(&target(model));
    }
    TestGateway::from_yaml(&yaml, &[("COHERE_KEY", key)]).await
}

async fn post(gw: &TestGateway, path: &str, body: Value) -> Reply {
    send(client().post(gw.url(path)).json(&body)).await
}

fn weather_tools() -> Value {
    json!([{"type": "function", "function": {
        "name": "get_weather", "description": "Gets the weather of a location",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                       "required": ["location"]}}}])
}

/// A conversation with a finished tool round: every role Cohere knows.
fn tool_conversation() -> Value {
    json!([
        {"role": "system", "content": "You are a weather assistant."},
        {"role": "user", "content": [
            {"type": "text", "text": "Weather where this was taken?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
        {"role": "assistant", "content": "Looking it up.", "tool_calls": [
            {"id": "get_weather_1", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"location\":\"Madrid\"}"}}]},
        {"role": "tool", "tool_call_id": "get_weather_1", "content": "{\"temperature\":\"24C\"}"},
        {"role": "user", "content": "And in Brasilia?"},
    ])
}

/// The gateway's input estimate for a body whose stream was cut before usage arrived
/// (characters of every string in `messages`, / 4, rounded up).
fn estimated_input(messages: &Value) -> u64 {
    fn chars(value: &Value) -> u64 {
        match value {
            Value::String(text) => text.chars().count() as u64,
            Value::Array(items) => items.iter().map(chars).sum(),
            Value::Object(map) => map.values().map(chars).sum(),
            _ => 0,
        }
    }
    chars(messages).div_ceil(4)
}

/// One SSE event as the client saw it.
#[derive(Debug, Clone, PartialEq)]
enum Event {
    Data(Value),
    Done,
}

impl Event {
    fn json(&self) -> &Value {
        match self {
            Self::Data(value) => value,
            Self::Done => panic!("expected a JSON event, got [DONE]"),
        }
    }

    fn delta(&self) -> &Value {
        &self.json()["choices"][0]["delta"]
    }

    fn has_usage(&self) -> bool {
        matches!(self, Self::Data(v) if v.get("usage").is_some_and(|u| !u.is_null()))
    }
}

/// Reads a streamed answer incrementally.
struct Sse {
    response: reqwest::Response,
    buffer: Vec<u8>,
    ended: bool,
}

impl Sse {
    async fn open(gw: &TestGateway, body: Value) -> Self {
        let response = within(
            "response headers",
            client()
                .post(gw.url("/v1/chat/completions"))
                .json(&body)
                .send(),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Self {
            response,
            buffer: Vec::new(),
            ended: false,
        }
    }

    fn request_id(&self) -> String {
        self.response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned()
    }

    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(at) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let raw: Vec<u8> = self.buffer.drain(..at + 2).collect();
                let raw = String::from_utf8(raw).unwrap();
                let data = raw
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .unwrap_or_else(|| panic!("no data line in {raw:?}"));
                return Some(if data == "[DONE]" {
                    Event::Done
                } else {
                    Event::Data(serde_json::from_str(data).unwrap())
                });
            }
            if self.ended {
                assert!(self.buffer.iter().all(u8::is_ascii_whitespace));
                return None;
            }
            match within("the next stream bytes", self.response.chunk()).await {
                Ok(Some(bytes)) => self.buffer.extend_from_slice(&bytes),
                Ok(None) => self.ended = true,
                Err(e) => panic!("stream body failed: {e}"),
            }
        }
    }

    async fn rest(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            events.push(event);
        }
        events
    }
}

fn object(value: &Value) -> &Map<String, Value> {
    value.as_object().unwrap()
}

#[tokio::test]
async fn chat_is_translated_both_ways_with_cohere_names_and_billed_usage() {
    let upstream = CohereUpstream::start().await;
    let gw = gateway(&upstream, &[]).await;
    let reply = post(
        &gw,
        "/v1/chat/completions",
        json!({"model": "chat", "messages": [
                  {"role": "developer", "content": "Be brief."},
                  {"role": "user", "content": "Weather in Madrid and Brasilia?"}],
               "max_tokens": 200, "temperature": 0.4, "top_p": 0.8, "top_k": 20,
               "stop": ["\n\n"], "seed": 42, "frequency_penalty": 0.1, "presence_penalty": 0.2,
               "response_format": {"type": "json_object"}, "user": "u-1"}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["object"], "chat.completion");
    assert_eq!(reply.body["model"], "command-r-08-2024");
    assert_eq!(reply.body["provider"], "cohere");
    assert_eq!(
        reply.header("x-floodgate-target"),
        "cohere/command-r-08-2024"
    );
    let choice = &reply.body["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], TEXT_ANSWER);
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(reply.body["usage"]["prompt_tokens"], TEXT_BILLED.0);
    assert_eq!(reply.body["usage"]["completion_tokens"], TEXT_BILLED.1);
    assert_eq!(
        reply.body["usage"]["total_tokens"],
        TEXT_BILLED.0 + TEXT_BILLED.1
    );

    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/v2/chat");
    assert_eq!(
        seen[0].headers["authorization"],
        format!("Bearer {COHERE_KEY}").as_str()
    );
    let sent = &seen[0].body;
    assert_eq!(sent["model"], "command-r-08-2024");
    assert_eq!(sent["stream"], false);
    assert_eq!(
        sent["messages"],
        json!([{"role": "system", "content": "Be brief."},
               {"role": "user", "content": "Weather in Madrid and Brasilia?"}])
    );
    assert_eq!(sent["max_tokens"], 200);
    assert_eq!(sent["temperature"], 0.4);
    assert_eq!(sent["p"], 0.8);
    assert_eq!(sent["k"], 20);
    assert_eq!(sent["stop_sequences"], json!(["\n\n"]));
    assert_eq!(sent["seed"], 42);
    assert_eq!(sent["frequency_penalty"], 0.1);
    assert_eq!(sent["presence_penalty"], 0.2);
    assert_eq!(sent["response_format"], json!({"type": "json_object"}));
    for openai_only in ["top_p", "top_k", "stop", "user", "n"] {
        assert!(
            !object(sent).contains_key(openai_only),
            "{openai_only} sent"
        );
    }

    let record = gw
        .usage
        .wait_for_request(reply.header("x-request-id"))
        .await;
    assert_eq!(record.status, 200);
    assert_eq!(record.provider, Some("cohere"));
    assert_eq!(record.usage.input_tokens, TEXT_BILLED.0);
    assert_eq!(record.usage.output_tokens, TEXT_BILLED.1);
    assert_ne!(
        record.usage.input_tokens, TEXT_TOKENS.0,
        "billed, not processed"
    );
    // command-r: $0.15/M in, $0.60/M out: 118 × 0.15 + 14 × 0.60 = 26.1 → 27 µ$.
    assert_eq!(record.cost_micros, Some(27));
    assert!(!record.streamed);
}

#[tokio::test]
async fn tool_calls_and_tool_results_round_trip() {
    let upstream = CohereUpstream::start().await;
    let gw = gateway(&upstream, &[]).await;
    let reply = post(
        &gw,
        "/v1/chat/completions",
        json!({"model": "chat", "messages": tool_conversation(), "tools": weather_tools(),
               "tool_choice": "required"}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let choice = &reply.body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(
        choice["message"]["content"],
        "I will look up the weather in both cities."
    );
    let calls = choice["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["id"], "get_weather_j3f0adww9pmr");
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert_eq!(
        calls[1]["function"]["arguments"],
        "{\"location\":\"Brasilia\"}"
    );
    assert_eq!(reply.body["usage"]["prompt_tokens"], TOOL_BILLED.0);

    let sent = &upstream.seen()[0].body;
    assert_eq!(sent["tool_choice"], "REQUIRED");
    assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");
    let roles: Vec<&str> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool", "user"]);
    assert_eq!(
        sent["messages"][1]["content"][1],
        json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}})
    );
    assert_eq!(sent["messages"][2]["tool_plan"], "Looking it up.");
    assert_eq!(sent["messages"][2]["tool_calls"][0]["id"], "get_weather_1");
    assert_eq!(sent["messages"][3]["tool_call_id"], "get_weather_1");
    assert_eq!(sent["messages"][3]["content"], "{\"temperature\":\"24C\"}");
}

#[tokio::test]
async fn streamed_tool_calls_become_openai_deltas_and_usage_is_recorded() {
    let upstream = CohereUpstream::start().await;
    let gw = gateway(&upstream, &[]).await;
    let mut sse = Sse::open(
        &gw,
        json!({"model": "chat", "stream": true, "messages": tool_conversation(),
               "tools": weather_tools()}),
    )
    .await;
    let events = sse.rest().await;
    assert_eq!(events.last(), Some(&Event::Done), "{events:?}");
    assert_eq!(events.iter().filter(|e| **e == Event::Done).count(), 1);
    assert!(
        !events.iter().any(Event::has_usage),
        "usage chunk not asked for"
    );
    let data: Vec<&Event> = events.iter().filter(|e| **e != Event::Done).collect();
    assert!(
        data.iter()
            .all(|e| e.json()["object"] == "chat.completion.chunk")
    );
    assert_eq!(data[0].delta()["role"], "assistant");
    let plan: String = data
        .iter()
        .filter_map(|e| e.delta()["content"].as_str())
        .collect();
    assert_eq!(plan, "I will look up the weather in both cities.");

    // Tool calls: a start with id and name, then argument pieces, per index.
    let pieces: Vec<&Value> = data
        .iter()
        .filter_map(|e| e.delta()["tool_calls"].get(0))
        .collect();
    let starts: Vec<&&Value> = pieces.iter().filter(|p| p.get("id").is_some()).collect();
    assert_eq!(starts.len(), 2);
    assert_eq!(starts[0]["index"], 0);
    assert_eq!(starts[0]["id"], "get_weather_j3f0adww9pmr");
    assert_eq!(starts[0]["function"]["name"], "get_weather");
    assert_eq!(starts[1]["index"], 1);
    let arguments = |index: u64| -> String {
        pieces
            .iter()
            .filter(|p| p["index"] == index)
            .filter_map(|p| p["function"]["arguments"].as_str())
            .collect()
    };
    assert_eq!(arguments(0), "{\"location\": \"Madrid\"}");
    assert_eq!(arguments(1), "{\"location\": \"Brasilia\"}");
    let last = data.last().unwrap();
    assert_eq!(last.json()["choices"][0]["finish_reason"], "tool_calls");

    let sent = &upstream.seen()[0].body;
    assert_eq!(sent["stream"], true);
    assert!(sent.get("stream_options").is_none());

    let record = gw.usage.wait_for_request(&sse.request_id()).await;
    assert_eq!(record.status, 200);
    assert!(record.streamed);
    assert!(!record.client_cancelled);
    assert_eq!(
        (record.usage.input_tokens, record.usage.output_tokens),
        TOOL_BILLED
    );
    assert!(record.ttft_us.is_some());
    wait_until("the upstream stream to finish", || {
        (upstream.streams_finished() == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_client_that_asks_gets_the_usage_chunk_before_done() {
    let upstream = CohereUpstream::start().await;
    let gw = gateway(&upstream, &[]).await;
    let mut sse = Sse::open(
        &gw,
        json!({"model": "chat", "stream": true, "stream_options": {"include_usage": true},
               "messages": [{"role": "user", "content": "Weather?"}]}),
    )
    .await;
    let events = sse.rest().await;
    assert_eq!(events.last(), Some(&Event::Done));
    let text: String = events
        .iter()
        .filter(|e| **e != Event::Done)
        .filter_map(|e| e.json()["choices"].get(0)?["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, TEXT_ANSWER);
    let usage = &events[events.len() - 2];
    assert!(usage.has_usage(), "{events:?}");
    assert_eq!(usage.json()["choices"], json!([]));
    assert_eq!(usage.json()["usage"]["prompt_tokens"], TEXT_BILLED.0);
    assert_eq!(usage.json()["usage"]["completion_tokens"], TEXT_BILLED.1);
    assert_eq!(
        events[events.len() - 3].json()["choices"][0]["finish_reason"],
        "stop"
    );
    let record = gw.usage.wait_for_request(&sse.request_id()).await;
    assert_eq!(
        (record.usage.input_tokens, record.usage.output_tokens),
        TEXT_BILLED
    );
    assert_eq!(record.cost_micros, Some(27));
}

#[tokio::test]
async fn a_client_disconnect_cancels_cohere_and_records_what_was_sent() {
    let upstream = CohereUpstream::start().await;
    let gw = gateway(&upstream, &["hold"]).await;
    let messages = json!([{"role": "user", "content": "Weather in Madrid?"}]);
    let mut sse = Sse::open(
        &gw,
        json!({"model": "hold", "stream": true, "messages": messages}),
    )
    .await;
    let request_id = sse.request_id();
    let role = sse.next().await.unwrap();
    assert_eq!(role.delta()["role"], "assistant");
    let first = sse.next().await.unwrap();
    assert_eq!(first.delta()["content"], "It is");
    assert_eq!(upstream.streams_dropped(), 0);

    drop(sse);

    // The upstream holds until released: only the gateway dropping it can end it.
    wait_until("the Cohere stream to be cancelled", || {
        (upstream.streams_dropped() == 1).then_some(())
    })
    .await;
    assert_eq!(upstream.streams_finished(), 0);
    let record = gw.usage.wait_for_request(&request_id).await;
    assert!(record.client_cancelled);
    assert_eq!(record.status, 499);
    assert_eq!(record.error_type, Some("client_cancelled"));
    assert!(record.streamed);
    // No message-end came: output is the two chunks sent, input the gateway's estimate.
    assert_eq!(record.usage.output_tokens, 2);
    assert_eq!(record.usage.input_tokens, estimated_input(&messages));
    assert_eq!(gw.usage.all().len(), 1);
}

#[tokio::test]
async fn a_stream_cut_before_message_end_ends_with_an_interrupted_error() {
    let upstream = CohereUpstream::start().await;
    let gw = gateway(&upstream, &["cut"]).await;
    let mut sse = Sse::open(
        &gw,
        json!({"model": "cut", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    let events = sse.rest().await;
    assert!(!events.contains(&Event::Done), "{events:?}");
    let last = events.last().unwrap().json();
    assert_eq!(last["error"]["code"], "upstream_interrupted");
    let record = gw.usage.wait_for_request(&sse.request_id()).await;
    assert_eq!(record.error_type, Some("upstream_interrupted"));
    assert_eq!(record.status, 502);
    assert_eq!(record.usage.output_tokens, 4, "role + three text chunks");
}

#[tokio::test]
async fn an_error_finish_is_an_error_in_both_modes() {
    let upstream = CohereUpstream::start().await;
    let gw = gateway(&upstream, &["gen-error"]).await;
    let body = json!({"model": "gen-error", "messages": [{"role": "user", "content": "hi"}]});
    let reply = post(&gw, "/v1/chat/completions", body.clone()).await;
    assert_eq!(reply.status, 502, "{}", reply.text);
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ERROR")
    );

    let mut streamed = body;
    streamed["stream"] = json!(true);
    let mut sse = Sse::open(&gw, streamed).await;
    let events = sse.rest().await;
    assert!(!events.contains(&Event::Done));
    let last = events.last().unwrap().json();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the model failed"),
        "{last}"
    );
    let record = gw.usage.wait_for_request(&sse.request_id()).await;
    assert_eq!(record.status, 502);
    assert_eq!(record.error_type, Some("upstream_error"));
    assert_eq!(
        (record.usage.input_tokens, record.usage.output_tokens),
        TEXT_BILLED,
        "the usage Cohere reported with the failure is kept"
    );
}

#[tokio::test]
async fn embeddings_use_v2_embed_with_an_input_type() {
    let upstream = CohereUpstream::start().await;
    let gw = gateway(&upstream, &[]).await;
    let reply = post(
        &gw,
        "/v1/embeddings",
        json!({"model": "embeddings", "input": ["hello", "goodbye"]}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["object"], "list");
    assert_eq!(reply.body["model"], "embed-v4.0");
    let data = reply.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["index"], 1);
    assert_eq!(data[1]["object"], "embedding");
    assert_eq!(data[0]["embedding"].as_array().unwrap().len(), 3);
    assert_eq!(
        reply.body["usage"]["prompt_tokens"],
        2 * EMBED_TOKENS_PER_TEXT
    );
    let seen = upstream.seen();
    assert_eq!(seen[0].path, "/v2/embed");
    assert_eq!(
        seen[0].body,
        json!({"model": "embed-v4.0", "texts": ["hello", "goodbye"],
               "input_type": "search_document", "embedding_types": ["float"]})
    );
    let record = gw
        .usage
        .wait_for_request(reply.header("x-request-id"))
        .await;
    assert_eq!(record.usage.input_tokens, 2 * EMBED_TOKENS_PER_TEXT);
    assert_eq!(record.usage.output_tokens, 0);
    // embed-v4.0: $0.12/M: 4 tokens → 0.48 → 1 µ$.
    assert_eq!(record.cost_micros, Some(1));

    let reply = post(
        &gw,
        "/v1/embeddings",
        json!({"model": "embeddings", "input": "where is Madrid?", "input_type": "search_query",
               "encoding_format": "base64", "dimensions": 256}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(reply.body["data"][0]["embedding"].is_string());
    let sent = &upstream.seen()[1].body;
    assert_eq!(sent["input_type"], "search_query");
    assert_eq!(sent["texts"], json!(["where is Madrid?"]));
    assert_eq!(sent["output_dimension"], 256);
}

#[tokio::test]
async fn cohere_errors_keep_status_message_and_retry_after() {
    let upstream = CohereUpstream::start().await;
    let gw = gateway(&upstream, &["error-400", "error-429", "error-500"]).await;
    let ask =
        |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});

    let bad = post(&gw, "/v1/chat/completions", ask("error-400")).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["error"]["message"], "upstream says 400");
    assert_eq!(bad.body["error"]["type"], "invalid_request_error");

    let limited = post(&gw, "/v1/chat/completions", ask("error-429")).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after"), "7");
    assert_eq!(limited.body["error"]["type"], "rate_limit_error");
    assert_eq!(limited.body["error"]["message"], "upstream says 429");

    let broken = post(&gw, "/v1/chat/completions", ask("error-500")).await;
    assert_eq!(broken.status, 500);
    assert_eq!(broken.body["error"]["type"], "server_error");

    for reply in [&bad, &limited, &broken] {
        let record = gw
            .usage
            .wait_for_request(reply.header("x-request-id"))
            .await;
        assert_eq!(record.status, reply.status);
        assert_eq!(record.error_type, Some("upstream_error"));
        assert_eq!(record.provider, Some("cohere"));
    }

    // Streams fail the same way, before any event.
    let mut streamed = ask("error-429");
    streamed["stream"] = json!(true);
    let reply = post(&gw, "/v1/chat/completions", streamed).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("retry-after"), "7");
}

#[tokio::test]
async fn a_wrong_key_is_a_401_that_never_shows_a_key() {
    let upstream = CohereUpstream::start().await;
    let wrong = "co-wrong-key-9876543210fedcba";
    let gw = gateway_with_key(&upstream, &["leaky-401"], wrong).await;
    let reply = post(
        &gw,
        "/v1/chat/completions",
        json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.body["error"]["type"], "authentication_error");
    assert_eq!(reply.body["error"]["message"], "invalid api token");
    assert_eq!(
        upstream.seen()[0].headers["authorization"],
        format!("Bearer {wrong}").as_str()
    );

    // An upstream that echoes the key it was given: the key is masked before it leaves.
    let reply = post(
        &gw,
        "/v1/chat/completions",
        json!({"model": "leaky-401", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(reply.status, 401);
    assert!(!reply.text.contains(wrong), "{}", reply.text);
    assert!(reply.text.contains("invalid api token"));
    let record = gw
        .usage
        .wait_for_request(reply.header("x-request-id"))
        .await;
    assert!(!format!("{record:?}").contains(wrong));
}

#[tokio::test]
async fn what_cohere_cannot_carry_is_refused_before_calling_it() {
    let upstream = CohereUpstream::start().await;
    let gw = gateway(&upstream, &[]).await;
    let reply = post(
        &gw,
        "/v1/chat/completions",
        json!({"model": "chat", "messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}]}),
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(reply.code(), "unsupported_operation");
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("messages[0].content[0]")
    );
    let reply = post(
        &gw,
        "/v1/completions",
        json!({"model": "text", "prompt": "hi"}),
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(reply.code(), "unsupported_operation");
    assert!(reply.text.contains("cohere"), "{}", reply.text);
    assert_eq!(upstream.count(), 0, "nothing reached Cohere");
}
