//! The Gemini provider end to end, against a mock Gemini API that checks every request
//! against the v1beta reference: OpenAI-shaped chat (complete and streamed, with tools and
//! images; the golden request fixture byte for byte), exact usage records (cached and
//! thought tokens, streams, client disconnects), embeddings (`embedContent`,
//! `batchEmbedContents`, base64), error mapping (400 `INVALID_ARGUMENT`, 403, 429
//! `RESOURCE_EXHAUSTED` with `Retry-After` and a retry, 500, 503, mid-stream errors), safety
//! blocks, and the native passthrough `POST /gateway/gemini/v1beta/models/{endpoint}:…`
//! (both methods, `?key=` gateway auth, Google-shaped errors), also on the built-in mock.

use std::time::{Duration, Instant};

use crate::common::gemini_upstream::{
    CACHED, GEMINI_KEY, GeminiUpstream, OUTPUT, PIECES, PROMPT, THOUGHTS,
};
use crate::common::{Reply, TestGateway, client, send, wait_until, within};
use base64::Engine;
use floodgate::usage::RouteKind;
use serde_json::{Value, json};

/// The gateway key clients present.
const GW_KEY: &str = "fg-gemini-tests-gateway-key-4242";

/// One endpoint: name, kind, upstream model, extra endpoint YAML.
type Ep<'a> = (&'a str, &'a str, &'a str, &'a str);

fn target(upstream: &GeminiUpstream, model: &str) -> String {
    format!(
        "      - provider: gemini\n        model: {model}\n        api_base: {}\n        credentials: {{api_key: $GEMINI_KEY}}\n",
        upstream.base()
    )
}

async fn gateway(upstream: &GeminiUpstream, endpoints: &[Ep<'_>]) -> TestGateway {
    let mut yaml = String::from("keys:\n  - id: tester\n    key: $GW_KEY\nendpoints:\n");
    for (name, kind, model, extra) in endpoints {
        yaml.push_str(&format!(
            "  - name: {name}\n    kind: {kind}\n    targets:\n{}{extra}",
            target(upstream, model)
        ));
    }
    TestGateway::from_yaml(&yaml, &[("GEMINI_KEY", GEMINI_KEY), ("GW_KEY", GW_KEY)]).await
}

async fn one(upstream: &GeminiUpstream, model: &str) -> TestGateway {
    gateway(upstream, &[("gemini", "chat", model, "")]).await
}

fn chat(gw: &TestGateway, body: Value) -> reqwest::RequestBuilder {
    client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(GW_KEY)
        .json(&body)
}

fn native(gw: &TestGateway, call: &str, body: &Value) -> reqwest::RequestBuilder {
    client()
        .post(gw.url(&format!("/gateway/gemini/v1beta/models/{call}")))
        .header("x-goog-api-key", GW_KEY)
        .json(body)
}

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/gemini/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

const IMAGE_DATA: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk";

fn rich_chat(stream: bool) -> Value {
    json!({
        "model": "gemini",
        "stream": stream,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in these pictures, and the weather?"},
                {"type": "image_url", "image_url": {"url": "https://images.example/cat.webp"}},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{IMAGE_DATA}")}}
            ]},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": "auto",
    })
}

/// The upstream saw no rule broken, the key only in `x-goog-api-key`, and nothing of the
/// gateway key.
fn assert_gemini_wire(upstream: &GeminiUpstream) {
    assert_eq!(upstream.violations(), Vec::<String>::new());
    for seen in upstream.seen() {
        assert_eq!(seen.headers["x-goog-api-key"], GEMINI_KEY);
        assert!(seen.headers.get("authorization").is_none());
        assert!(!seen.query.as_deref().unwrap_or("").contains("key"));
        for (name, value) in &seen.headers {
            assert!(
                !value.to_str().unwrap_or("").contains(GW_KEY),
                "gateway key in {name}"
            );
        }
        assert!(!seen.body.to_string().contains(GW_KEY));
    }
}

/// The `data:` payloads of an SSE body.
fn data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|e| e.trim().strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

fn chunks(text: &str) -> Vec<Value> {
    data(text)
        .into_iter()
        .filter(|d| d != "[DONE]")
        .map(|d| serde_json::from_str(&d).unwrap())
        .collect()
}

fn request_id(reply: &Reply) -> String {
    reply.header("x-request-id").to_owned()
}

#[tokio::test]
async fn chat_sends_the_golden_request_and_translates_the_answer() {
    let upstream = GeminiUpstream::start().await;
    let gw = one(&upstream, "gemini-2.5-flash").await;

    let mut body = fixture("chat_request.openai.json");
    body["model"] = json!("gemini");
    let reply = send(chat(&gw, body)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_gemini_wire(&upstream);
    let seen = upstream.last();
    assert_eq!(seen.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(seen.query, None);
    assert_eq!(seen.body, fixture("chat_request.gemini.json"));

    let body = &reply.body;
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["provider"], "gemini");
    assert_eq!(body["model"], "gemini-2.5-flash-001");
    assert_eq!(body["id"], "chatcmpl-gemini-response-1");
    assert_eq!(body["choices"][0]["message"]["content"], PIECES.concat());
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["prompt_tokens"], PROMPT);
    assert_eq!(body["usage"]["completion_tokens"], OUTPUT);
    assert_eq!(body["usage"]["total_tokens"], PROMPT + OUTPUT);
    assert_eq!(
        body["usage"]["prompt_tokens_details"]["cached_tokens"],
        CACHED
    );
    assert_eq!(
        body["usage"]["completion_tokens_details"]["reasoning_tokens"],
        THOUGHTS
    );
    assert_eq!(
        reply.header("x-floodgate-target"),
        "gemini/gemini-2.5-flash"
    );

    let record = gw.usage.wait_for_request(&request_id(&reply)).await;
    assert_eq!(record.status, 200);
    assert_eq!(record.provider, Some("gemini"));
    assert_eq!(
        (
            record.usage.input_tokens,
            record.usage.output_tokens,
            record.usage.cached_tokens
        ),
        (PROMPT, OUTPUT, CACHED)
    );
    // gemini-2.5-flash: 9 × 0.30 + 4 × 0.03 + 8 × 2.50 = 22.82 µ$ → 23.
    assert_eq!(record.cost_micros, Some(23));
}

#[tokio::test]
async fn tool_calls_come_back_and_replay_as_function_parts() {
    let upstream = GeminiUpstream::start().await;
    let gw = one(&upstream, "tools").await;

    let reply = send(chat(&gw, rich_chat(false))).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let sent = upstream.last().body;
    assert_eq!(
        sent["systemInstruction"],
        json!({"parts": [{"text": "Be brief."}]})
    );
    let parts = &sent["contents"][0]["parts"];
    assert_eq!(
        parts[1],
        json!({"fileData": {"mimeType": "image/webp", "fileUri": "https://images.example/cat.webp"}})
    );
    assert_eq!(
        parts[2],
        json!({"inlineData": {"mimeType": "image/png", "data": IMAGE_DATA}})
    );
    assert_eq!(
        sent["toolConfig"],
        json!({"functionCallingConfig": {"mode": "AUTO"}})
    );
    assert_eq!(
        sent["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]["properties"]["city"]["type"],
        "string"
    );

    let message = &reply.body["choices"][0]["message"];
    assert_eq!(message["content"], "Checking both cities.");
    assert_eq!(reply.body["choices"][0]["finish_reason"], "tool_calls");
    let calls = message["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["id"], "call_0");
    assert_eq!(calls[1]["id"], "call_1");
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(calls[1]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Rome"}));

    // The client runs the tools and sends the whole conversation back.
    let mut follow_up = rich_chat(false);
    let messages = follow_up["messages"].as_array_mut().unwrap();
    messages.push(message.clone());
    messages
        .push(json!({"role": "tool", "tool_call_id": "call_1", "content": "{\"sky\":\"sunny\"}"}));
    messages.push(json!({"role": "tool", "tool_call_id": "call_0", "content": "rain"}));
    let reply = send(chat(&gw, follow_up)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_gemini_wire(&upstream);
    let contents = upstream.last().body["contents"].clone();
    assert_eq!(contents.as_array().unwrap().len(), 3);
    assert_eq!(contents[1]["role"], "model");
    assert_eq!(
        contents[1]["parts"][1]["functionCall"],
        json!({"name": "get_weather", "args": {"city": "Paris"}})
    );
    assert_eq!(contents[2]["role"], "user");
    assert_eq!(
        contents[2]["parts"],
        json!([{"functionResponse": {"name": "get_weather", "response": {"sky": "sunny"}}},
               {"functionResponse": {"name": "get_weather", "response": {"output": "rain"}}}])
    );
}

#[tokio::test]
async fn chat_streams_text_and_tool_calls_as_openai_chunks() {
    let upstream = GeminiUpstream::start().await;
    let gw = one(&upstream, "tools").await;

    let reply = send(chat(&gw, rich_chat(true))).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(
        reply
            .header("content-type")
            .starts_with("text/event-stream")
    );
    assert_gemini_wire(&upstream);
    let seen = upstream.last();
    assert_eq!(seen.path, "/v1beta/models/tools:streamGenerateContent");
    assert_eq!(seen.query.as_deref(), Some("alt=sse"));

    assert_eq!(data(&reply.text).last().map(String::as_str), Some("[DONE]"));
    let chunks = chunks(&reply.text);
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert!(
        chunks.iter().all(|c| c.get("usage").is_none()),
        "not asked for"
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, PIECES.concat());
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "tool_calls");
    let calls = last["choices"][0]["delta"]["tool_calls"]
        .as_array()
        .unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        (calls[0]["index"].clone(), calls[0]["id"].clone()),
        (json!(0), json!("call_0"))
    );
    assert_eq!(
        (calls[1]["index"].clone(), calls[1]["id"].clone()),
        (json!(1), json!("call_1"))
    );
    assert_eq!(calls[0]["function"]["arguments"], "{\"city\":\"Paris\"}");

    let record = gw.usage.wait_for_request(&request_id(&reply)).await;
    assert_eq!(record.status, 200);
    assert!(record.streamed);
    assert!(record.ttft_us.is_some());
    assert_eq!(
        (
            record.usage.input_tokens,
            record.usage.output_tokens,
            record.usage.cached_tokens
        ),
        (PROMPT, OUTPUT, CACHED)
    );
}

#[tokio::test]
async fn the_usage_chunk_reaches_a_client_that_asked() {
    let upstream = GeminiUpstream::start().await;
    let gw = one(&upstream, "gemini-2.5-pro").await;
    let mut body = rich_chat(true);
    body["stream_options"] = json!({"include_usage": true});

    let reply = send(chat(&gw, body)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(upstream.last().body.get("stream_options"), None);
    let chunks = chunks(&reply.text);
    let usage: Vec<&Value> = chunks.iter().filter(|c| c.get("usage").is_some()).collect();
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0]["choices"], json!([]));
    assert_eq!(
        usage[0]["usage"],
        json!({"prompt_tokens": PROMPT, "completion_tokens": OUTPUT, "total_tokens": PROMPT + OUTPUT,
               "prompt_tokens_details": {"cached_tokens": CACHED},
               "completion_tokens_details": {"reasoning_tokens": THOUGHTS}})
    );
    assert_eq!(chunks.last().unwrap(), usage[0], "just before [DONE]");
    let record = gw.usage.wait_for_request(&request_id(&reply)).await;
    assert_eq!(record.usage.output_tokens, OUTPUT);
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_is_recorded_with_the_usage_seen() {
    let upstream = GeminiUpstream::start().await;
    let gw = one(&upstream, "hold").await;
    let mut response = within("headers", chat(&gw, rich_chat(true)).send())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("\n\n") {
        let bytes = within("the first event", response.chunk())
            .await
            .unwrap()
            .unwrap();
        seen.extend_from_slice(&bytes);
    }
    assert!(String::from_utf8_lossy(&seen).contains(PIECES[0]));
    drop(response);

    wait_until("the upstream stream to be dropped", || {
        (upstream.streams_dropped() == 1).then_some(())
    })
    .await;
    assert_eq!(upstream.streams_finished(), 0);
    let record = gw.usage.wait_for_request(&request_id).await;
    assert!(record.client_cancelled);
    assert_eq!(record.status, 499);
    assert_eq!(
        (record.usage.input_tokens, record.usage.output_tokens),
        (PROMPT, 2),
        "Google's running counts of the first event"
    );
    assert_eq!(gw.usage.all().len(), 1);
}

#[tokio::test]
async fn cut_and_failing_streams_end_with_an_error_event() {
    let upstream = GeminiUpstream::start().await;
    let gw = gateway(
        &upstream,
        &[
            ("cut", "chat", "cut", ""),
            ("busy", "chat", "overloaded", ""),
        ],
    )
    .await;

    let mut body = rich_chat(true);
    body["model"] = json!("cut");
    let reply = send(chat(&gw, body)).await;
    assert_eq!(reply.status, 200);
    assert!(!reply.text.contains("[DONE]"));
    let last = chunks(&reply.text).pop().unwrap();
    assert_eq!(
        last["error"]["code"], "upstream_interrupted",
        "{}",
        reply.text
    );
    let record = gw.usage.wait_for_request(&request_id(&reply)).await;
    assert_eq!(record.error_type, Some("upstream_interrupted"));
    assert_eq!(
        (record.usage.input_tokens, record.usage.output_tokens),
        (PROMPT, 4)
    );

    let mut body = rich_chat(true);
    body["model"] = json!("busy");
    let reply = send(chat(&gw, body)).await;
    let chunks = chunks(&reply.text);
    assert_eq!(chunks[0]["choices"][0]["delta"]["content"], PIECES[0]);
    let error = &chunks.last().unwrap()["error"];
    assert_eq!(
        error["message"],
        "The model is overloaded. Please try again later."
    );
    assert_eq!(error["type"], "UNAVAILABLE");
    let record = gw.usage.wait_for_request(&request_id(&reply)).await;
    assert_eq!(record.status, 503);
    assert_eq!(record.error_type, Some("upstream_error"));
}

#[tokio::test]
async fn embeddings_use_embed_content_and_the_batch() {
    let upstream = GeminiUpstream::start().await;
    let gw = gateway(
        &upstream,
        &[("embed", "embeddings", "gemini-embedding-001", "")],
    )
    .await;
    let post = |body: Value| {
        client()
            .post(gw.url("/v1/embeddings"))
            .bearer_auth(GW_KEY)
            .json(&body)
    };

    let reply = send(post(
        json!({"model": "embed", "input": "hello", "dimensions": 3}),
    ))
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let seen = upstream.last();
    assert_eq!(
        seen.path,
        "/v1beta/models/gemini-embedding-001:embedContent"
    );
    assert_eq!(
        seen.body,
        json!({"content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 3})
    );
    assert_eq!(reply.body["object"], "list");
    assert_eq!(reply.body["data"][0]["embedding"], json!([0.0, 0.1, 0.2]));
    assert_eq!(
        reply.body["usage"]["prompt_tokens"], 2,
        "estimated: ceil(5 / 4)"
    );

    let reply = send(post(
        json!({"model": "embed", "input": ["a", "bb", "ccccc"]}),
    ))
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let seen = upstream.last();
    assert_eq!(
        seen.path,
        "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    );
    assert_eq!(
        seen.body["requests"][2]["model"],
        "models/gemini-embedding-001"
    );
    assert_eq!(
        seen.body["requests"][2]["content"]["parts"][0]["text"],
        "ccccc"
    );
    let data = reply.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    assert_eq!(data[2]["index"], 2);
    assert_eq!(data[2]["embedding"][0], 2.0);
    let record = gw.usage.wait_for_request(&request_id(&reply)).await;
    assert_eq!(record.usage.input_tokens, 1 + 1 + 2);

    let reply = send(post(
        json!({"model": "embed", "input": ["x", "y"], "encoding_format": "base64"}),
    ))
    .await;
    let encoded = reply.body["data"][1]["embedding"].as_str().unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    let floats: Vec<f32> = bytes
        .chunks(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(floats, vec![1.0, 1.1, 1.2, 1.3]);
    assert_gemini_wire(&upstream);
}

#[tokio::test]
async fn upstream_errors_keep_status_message_and_google_status() {
    let upstream = GeminiUpstream::start().await;
    let statuses = [
        (400, "INVALID_ARGUMENT"),
        (403, "PERMISSION_DENIED"),
        (429, "RESOURCE_EXHAUSTED"),
        (500, "INTERNAL"),
        (503, "UNAVAILABLE"),
    ];
    let models: Vec<String> = statuses.iter().map(|(s, _)| format!("error-{s}")).collect();
    let endpoints: Vec<Ep<'_>> = models
        .iter()
        .map(|m| (m.as_str(), "chat", m.as_str(), ""))
        .collect();
    let gw = gateway(&upstream, &endpoints).await;
    for ((status, name), model) in statuses.iter().zip(&models) {
        let mut body = rich_chat(false);
        body["model"] = json!(model);
        let reply = send(chat(&gw, body)).await;
        assert_eq!(reply.status, *status, "{}", reply.text);
        assert_eq!(
            reply.body["error"]["message"],
            format!("upstream says {status}")
        );
        assert_eq!(reply.body["error"]["type"], *name);
        let retry_after = reply
            .headers
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let expected = (*status == 429).then(|| "7".to_owned());
        assert_eq!(
            retry_after, expected,
            "RetryInfo.retryDelay becomes Retry-After"
        );
        let record = gw.usage.wait_for_request(&request_id(&reply)).await;
        assert_eq!(record.status, *status);
        assert_eq!(record.error_type, Some("upstream_error"));
    }
}

#[tokio::test]
async fn resource_exhausted_is_retried_after_the_delay_google_asks_for() {
    let upstream = GeminiUpstream::start().await;
    let retry =
        "    routing: {retry: {attempts: 2, backoff: 10ms, max_backoff: 3s, on_status: [429]}}\n";
    let gw = gateway(
        &upstream,
        &[
            ("busy", "chat", "busy-once", retry),
            ("quota", "chat", "error-429", retry),
        ],
    )
    .await;

    let started = Instant::now();
    let mut body = rich_chat(false);
    body["model"] = json!("busy");
    let reply = send(chat(&gw, body)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(upstream.seen().len(), 2, "one 429, one retry");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "retryDelay 1s honoured"
    );
    let record = gw.usage.wait_for_request(&request_id(&reply)).await;
    assert_eq!(record.attempts.len(), 2);
    assert_eq!(record.attempts[0].status, 429);
    assert_eq!(record.usage.input_tokens, PROMPT);

    // Google asks for 7s, more than the endpoint's max_backoff: no retry, the 429 is passed on.
    let mut body = rich_chat(false);
    body["model"] = json!("quota");
    let reply = send(chat(&gw, body)).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("retry-after"), "7");
    assert_eq!(upstream.seen().len(), 3);
}

#[tokio::test]
async fn a_wrong_key_is_refused_and_keys_never_reach_the_client() {
    let upstream = GeminiUpstream::start().await;
    let yaml = format!(
        "keys:\n  - id: tester\n    key: $GW_KEY\nendpoints:\n  - name: wrong\n    kind: chat\n    targets:\n      - provider: gemini\n        model: gemini-2.5-flash\n        api_base: {}\n        credentials: {{api_key: AIzaSyWrong-0000000000000000000000}}\n",
        upstream.base()
    );
    let gw = TestGateway::from_yaml(&yaml, &[("GW_KEY", GW_KEY)]).await;
    let mut body = rich_chat(false);
    body["model"] = json!("wrong");
    let reply = send(chat(&gw, body)).await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.body["error"]["message"],
        "API key not valid. Please pass a valid API key."
    );
    assert_eq!(reply.body["error"]["type"], "INVALID_ARGUMENT");
    assert_eq!(reply.body["error"]["code"], "API_KEY_INVALID");

    let gw = one(&upstream, "leak-key").await;
    let reply = send(chat(&gw, rich_chat(false))).await;
    assert_eq!(reply.status, 400);
    assert!(!reply.text.contains(GEMINI_KEY), "{}", reply.text);
    assert!(reply.text.contains("AIz…efgh"), "{}", reply.text);
}

#[tokio::test]
async fn safety_blocks_and_stop_reasons() {
    let upstream = GeminiUpstream::start().await;
    let gw = gateway(
        &upstream,
        &[
            ("blocked", "chat", "blocked", ""),
            ("unsafe", "chat", "unsafe", ""),
            ("length", "chat", "length", ""),
        ],
    )
    .await;
    let ask = |model: &str, stream: bool| {
        let mut body = rich_chat(stream);
        body["model"] = json!(model);
        chat(&gw, body)
    };

    for stream in [false, true] {
        let reply = send(ask("blocked", stream)).await;
        assert_eq!(reply.status, 400, "stream {stream}: {}", reply.text);
        assert_eq!(reply.body["error"]["code"], "content_filter");
        assert_eq!(reply.body["error"]["type"], "invalid_request_error");
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("SAFETY")
        );
    }

    let reply = send(ask("unsafe", false)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(reply.body["choices"][0]["message"]["content"], Value::Null);

    let reply = send(ask("length", false)).await;
    assert_eq!(reply.body["choices"][0]["finish_reason"], "length");
    let reply = send(ask("length", true)).await;
    let chunks = chunks(&reply.text);
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "length"
    );
}

fn native_body() -> Value {
    json!({
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [{"role": "user", "parts": [{"text": "Hello there"}]}],
        "generationConfig": {"temperature": 0.2, "maxOutputTokens": 64},
    })
}

#[tokio::test]
async fn the_native_route_passes_generate_content_through() {
    let upstream = GeminiUpstream::start().await;
    let gw = one(&upstream, "gemini-2.5-flash").await;

    let reply = send(native(&gw, "gemini:generateContent", &native_body())).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_gemini_wire(&upstream);
    let seen = upstream.last();
    assert_eq!(seen.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(seen.body, native_body(), "unchanged: no `model` key added");
    assert_eq!(
        reply.body["candidates"][0]["content"]["parts"][0]["text"],
        PIECES.concat()
    );
    assert_eq!(reply.body["usageMetadata"]["thoughtsTokenCount"], THOUGHTS);
    assert!(reply.body.get("provider").is_none());
    assert!(reply.body.get("choices").is_none());
    let record = gw.usage.wait_for_request(&request_id(&reply)).await;
    assert_eq!(record.route, RouteKind::Passthrough);
    assert_eq!(
        (
            record.usage.input_tokens,
            record.usage.output_tokens,
            record.usage.cached_tokens
        ),
        (PROMPT, OUTPUT, CACHED)
    );

    // Gemini clients may send their key as `?key=`: the gateway key, never forwarded.
    let reply = send(
        client()
            .post(gw.url(&format!(
                "/gateway/gemini/v1beta/models/gemini:generateContent?key={GW_KEY}"
            )))
            .json(&native_body()),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(upstream.last().query, None);
    assert_gemini_wire(&upstream);
    let record = gw.usage.wait_for_request(&request_id(&reply)).await;
    assert_eq!(record.key_id.as_deref(), Some("tester"));
}

#[tokio::test]
async fn the_native_route_streams_events_unchanged() {
    let upstream = GeminiUpstream::start().await;
    let gw = one(&upstream, "gemini-2.5-flash").await;

    let reply = send(native(
        &gw,
        "gemini:streamGenerateContent?alt=sse",
        &native_body(),
    ))
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(
        reply
            .header("content-type")
            .starts_with("text/event-stream")
    );
    assert_eq!(upstream.last().query.as_deref(), Some("alt=sse"));
    assert_gemini_wire(&upstream);
    assert!(!reply.text.contains("[DONE]"));
    let events = chunks(&reply.text);
    assert_eq!(events.len(), PIECES.len());
    let text: String = events
        .iter()
        .map(|e| {
            e["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(text, PIECES.concat());
    assert_eq!(events[2]["candidates"][0]["finishReason"], "STOP");
    assert_eq!(events[1]["usageMetadata"]["candidatesTokenCount"], 4);
    let record = gw.usage.wait_for_request(&request_id(&reply)).await;
    assert!(record.streamed);
    assert_eq!(
        (
            record.usage.input_tokens,
            record.usage.output_tokens,
            record.usage.cached_tokens
        ),
        (PROMPT, OUTPUT, CACHED)
    );
}

#[tokio::test]
async fn native_errors_are_google_shaped() {
    let upstream = GeminiUpstream::start().await;
    let gw = gateway(
        &upstream,
        &[
            ("quota", "chat", "error-429", ""),
            ("cut", "chat", "cut", ""),
            ("blocked", "chat", "blocked", ""),
        ],
    )
    .await;

    let reply = send(native(&gw, "quota:generateContent", &native_body())).await;
    assert_eq!(reply.status, 429);
    assert_eq!(
        reply.body,
        json!({"error": {"code": 429, "message": "upstream says 429", "status": "RESOURCE_EXHAUSTED"}})
    );
    assert_eq!(reply.header("retry-after"), "7");

    let reply = send(
        client()
            .post(gw.url("/gateway/gemini/v1beta/models/quota:generateContent"))
            .json(&native_body()),
    )
    .await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.body["error"]["status"], "UNAUTHENTICATED");
    assert_eq!(reply.body["error"]["code"], 401);

    let reply = send(native(&gw, "cut:streamGenerateContent", &native_body())).await;
    assert_eq!(reply.status, 200);
    let last = chunks(&reply.text).pop().unwrap();
    assert_eq!(last["error"]["code"], 502, "{}", reply.text);
    assert_eq!(last["error"]["status"], "UNAVAILABLE");

    // A blocked prompt is a complete native answer, passed on as Google gave it.
    let reply = send(native(&gw, "blocked:generateContent", &native_body())).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["promptFeedback"]["blockReason"], "SAFETY");
    let reply = send(native(&gw, "blocked:streamGenerateContent", &native_body())).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        chunks(&reply.text)[0]["promptFeedback"]["blockReason"],
        "SAFETY"
    );
    let record = gw.usage.wait_for_request(&request_id(&reply)).await;
    assert_eq!((record.status, record.usage.input_tokens), (200, PROMPT));
}

#[tokio::test]
async fn the_builtin_mock_answers_the_native_route() {
    let yaml = "auth: none\nendpoints:\n  - name: echo\n    kind: chat\n    targets:\n      - provider: mock\n        model: echo\n  - name: three\n    kind: chat\n    targets:\n      - provider: mock\n        model: stream-3\n";
    let gw = TestGateway::from_yaml(yaml, &[]).await;
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "one two three four"}]}]});

    let reply = send(
        client()
            .post(gw.url("/gateway/gemini/v1beta/models/echo:generateContent"))
            .json(&body),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.body["candidates"][0]["content"]["parts"][0]["text"],
        "one two three four"
    );
    assert_eq!(reply.body["candidates"][0]["finishReason"], "STOP");
    assert_eq!(reply.body["usageMetadata"]["candidatesTokenCount"], 4);
    let record = gw.usage.wait_for_request(&request_id(&reply)).await;
    assert_eq!(record.usage.output_tokens, 4);
    assert_eq!(record.usage.input_tokens, 5 + 4 + 3);

    let reply = send(
        client()
            .post(gw.url("/gateway/gemini/v1beta/models/three:streamGenerateContent?alt=sse"))
            .json(&body),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let events = chunks(&reply.text);
    assert_eq!(events.len(), 3);
    assert_eq!(events[2]["candidates"][0]["finishReason"], "STOP");
    let record = gw.usage.wait_for_request(&request_id(&reply)).await;
    assert_eq!(record.usage.output_tokens, 3);
}
