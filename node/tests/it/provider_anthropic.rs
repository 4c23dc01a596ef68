//! The Anthropic provider end to end: OpenAI-shaped chat (complete and streamed, with tools
//! and images) through a mock Anthropic API that checks every request against the Messages
//! API's rules; exact usage records (cache tokens included, late usage, client
//! disconnects); error mapping (400, 401, 429 with `Retry-After`, 529, mid-stream errors);
//! the native passthrough `POST /gateway/anthropic/v1/messages`, streamed and not, with
//! errors in Anthropic's shape; and the built-in mock answering that route natively.

use crate::common::anthropic_upstream::{
    ANTHROPIC_KEY, AnthropicUpstream, CACHE_CREATION, CACHE_READ, INPUT, OUTPUT, PIECES,
    PROMPT_TOKENS, TTL_SPLIT_WRITES,
};
use crate::common::{Reply, TestGateway, client, send, wait_until, within};
use floodgate::usage::RouteKind;
use serde_json::{Value, json};

/// The gateway key clients present.
const GW_KEY: &str = "fg-anthropic-tests-gateway-key-77";

/// A gateway with one chat endpoint per `(name, model, extra target yaml)` on the upstream.
async fn gateway(upstream: &AnthropicUpstream, endpoints: &[(&str, &str, &str)]) -> TestGateway {
    let mut yaml = String::from("keys:\n  - id: tester\n    key: $GW_KEY\nendpoints:\n");
    for (name, model, extra) in endpoints {
        yaml.push_str(&format!(
            "  - name: {name}\n    kind: chat\n    targets:\n      - provider: anthropic\n        model: {model}\n        api_base: {}\n        credentials: {{api_key: $ANTHROPIC_KEY}}\n{extra}",
            upstream.base()
        ));
    }
    TestGateway::from_yaml(
        &yaml,
        &[("ANTHROPIC_KEY", ANTHROPIC_KEY), ("GW_KEY", GW_KEY)],
    )
    .await
}

async fn one(upstream: &AnthropicUpstream, model: &str) -> TestGateway {
    gateway(upstream, &[("claude", model, "")]).await
}

fn chat(gw: &TestGateway, body: Value) -> reqwest::RequestBuilder {
    client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(GW_KEY)
        .json(&body)
}

fn native(gw: &TestGateway, body: Value) -> reqwest::RequestBuilder {
    client()
        .post(gw.url("/gateway/anthropic/v1/messages"))
        .header("x-api-key", GW_KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&body)
}

const IMAGE_DATA: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk";

fn rich_chat(stream: bool) -> Value {
    json!({
        "model": "claude",
        "stream": stream,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in these pictures, and the weather?"},
                {"type": "image_url", "image_url": {"url": "https://images.example/cat.jpg"}},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{IMAGE_DATA}")}}
            ]},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": "required",
    })
}

/// The upstream saw Anthropic's auth and version headers, and nothing of the gateway key.
fn assert_anthropic_wire(upstream: &AnthropicUpstream) {
    assert_eq!(upstream.violations(), Vec::<String>::new());
    let seen = upstream.last();
    assert_eq!(seen.path, "/v1/messages");
    assert_eq!(seen.headers["x-api-key"], ANTHROPIC_KEY);
    assert_eq!(seen.headers["anthropic-version"], "2023-06-01");
    assert!(seen.headers.get("authorization").is_none());
    for (name, value) in &seen.headers {
        assert!(
            !value.to_str().unwrap_or("").contains(GW_KEY),
            "gateway key in {name}"
        );
    }
    assert!(!seen.raw.contains(GW_KEY));
}

/// SSE events as `(event name, data)`.
fn events(text: &str) -> Vec<(Option<String>, String)> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|event| {
            let name = event
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .map(str::to_owned);
            let data = event
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect::<Vec<_>>()
                .join("\n");
            (name, data)
        })
        .collect()
}

fn data_json(text: &str) -> Vec<Value> {
    events(text)
        .into_iter()
        .filter(|(_, d)| d != "[DONE]")
        .map(|(_, d)| serde_json::from_str(&d).unwrap())
        .collect()
}

fn request_id(reply: &Reply) -> String {
    reply.header("x-request-id").to_owned()
}

#[tokio::test]
async fn chat_translates_the_request_and_the_answer() {
    let upstream = AnthropicUpstream::start().await;
    let gw = one(&upstream, "claude-sonnet-5-5").await;

    let reply = send(chat(&gw, rich_chat(false))).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_anthropic_wire(&upstream);
    let sent = upstream.last().body;
    assert_eq!(sent["model"], "claude-sonnet-5-5");
    assert_eq!(sent["system"], "Be brief.");
    assert_eq!(
        sent["max_tokens"], 4096,
        "the default when the client gives none"
    );
    assert_eq!(sent["tool_choice"], json!({"type": "any"}));
    assert_eq!(
        sent["tools"][0]["input_schema"]["properties"]["city"]["type"],
        "string"
    );
    let blocks = &sent["messages"][0]["content"];
    assert_eq!(
        blocks[1]["source"],
        json!({"type": "url", "url": "https://images.example/cat.jpg"})
    );
    assert_eq!(
        blocks[2]["source"],
        json!({"type": "base64", "media_type": "image/png", "data": IMAGE_DATA})
    );
    assert!(sent.get("stream").is_none());

    let body = &reply.body;
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["provider"], "anthropic");
    assert_eq!(
        reply.header("x-floodgate-target"),
        "anthropic/claude-sonnet-5-5"
    );
    let choice = &body["choices"][0];
    assert_eq!(choice["message"]["content"], PIECES.concat());
    assert_eq!(choice["finish_reason"], "tool_calls");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(body["usage"]["prompt_tokens"], PROMPT_TOKENS);
    assert_eq!(body["usage"]["completion_tokens"], OUTPUT);
    assert_eq!(
        body["usage"]["prompt_tokens_details"]["cached_tokens"],
        CACHE_READ
    );

    let record = gw.usage.wait_for_request(&request_id(&reply)).await;
    assert_eq!(record.status, 200);
    assert_eq!(record.provider, Some("anthropic"));
    assert_eq!(record.usage.input_tokens, PROMPT_TOKENS);
    assert_eq!(record.usage.output_tokens, OUTPUT);
    assert_eq!(record.usage.cached_tokens, CACHE_READ);
    assert_eq!(record.usage.cache_write_tokens, CACHE_CREATION);
    assert_eq!(record.usage.cache_write_1h_tokens, 0);
    // claude-sonnet-5-5: $2/M input, $0.20/M cache read, $2.50/M cache write, $10/M output:
    // 11 × 2 + 2 × 2.5 + 5 × 0.2 + 7 × 10 = 22 + 5 + 1 + 70 = 98 micro-dollars.
    assert_eq!(record.cost_micros, Some(98));
}

#[tokio::test]
async fn cache_writes_are_costed_at_their_own_rates_streamed_or_not() {
    let upstream = AnthropicUpstream::start().await;
    let gw = one(&upstream, "claude-sonnet-5-5-ttl-split").await;
    let (short, long) = TTL_SPLIT_WRITES;
    for stream in [false, true] {
        let body = json!({"model": "claude", "stream": stream,
                          "messages": [{"role": "user", "content": "hi"}]});
        let reply = send(chat(&gw, body)).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let record = gw.usage.wait_for_request(&request_id(&reply)).await;
        assert_eq!(record.streamed, stream);
        assert_eq!(
            (
                record.usage.input_tokens,
                record.usage.cached_tokens,
                record.usage.cache_write_tokens,
                record.usage.cache_write_1h_tokens,
                record.usage.output_tokens,
            ),
            (
                INPUT + short + long + CACHE_READ,
                CACHE_READ,
                short + long,
                long,
                OUTPUT
            )
        );
        // claude-sonnet-5-5: $2/M input, $0.20 cache read, $2.50 five-minute write, $4
        // one-hour write, $10 output: 11 × 2 + 5 × 0.2 + 300 × 2.5 + 200 × 4 + 7 × 10
        // = 22 + 1 + 750 + 800 + 70 = 1643 micro-dollars (1093 if writes were input, 1343
        // if every write were a five-minute one).
        assert_eq!(record.cost_micros, Some(1643), "stream: {stream}");
        // The record as written carries both counts.
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["usage"]["cache_write_tokens"], short + long);
        assert_eq!(json["usage"]["cache_write_1h_tokens"], long);
    }
}

#[tokio::test]
async fn multi_turn_tool_conversations_alternate_roles() {
    let upstream = AnthropicUpstream::start().await;
    let gw = one(&upstream, "claude-haiku-5-5").await;
    let body = json!({"model": "claude", "max_tokens": 64, "stop": ["END"], "user": "u-1",
        "temperature": 0.3, "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "user", "content": "in Paris"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "toolu_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18 C"},
        {"role": "system", "content": "Use Celsius."},
        {"role": "user", "content": "thanks"},
    ]});
    let reply = send(chat(&gw, body)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_anthropic_wire(&upstream);
    let sent = upstream.last().body;
    assert_eq!(sent["system"], "Use Celsius.");
    assert_eq!(sent["max_tokens"], 64);
    assert_eq!(sent["stop_sequences"], json!(["END"]));
    assert_eq!(sent["metadata"], json!({"user_id": "u-1"}));
    assert_eq!(sent["temperature"], 0.3);
    let roles: Vec<&str> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user"]);
    assert_eq!(sent["messages"][1]["content"][0]["type"], "tool_use");
    assert_eq!(
        sent["messages"][1]["content"][0]["input"],
        json!({"city": "Paris"})
    );
    assert_eq!(sent["messages"][2]["content"][0]["type"], "tool_result");
    assert_eq!(sent["messages"][2]["content"][0]["tool_use_id"], "toolu_1");
    assert_eq!(sent["messages"][2]["content"][1]["text"], "thanks");
}

#[tokio::test]
async fn requests_anthropic_cannot_serve_are_refused_before_the_upstream() {
    let upstream = AnthropicUpstream::start().await;
    let gw = one(&upstream, "claude-sonnet-5-5").await;
    let body = |extra: Value| {
        let mut body = json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    for (extra, code) in [
        // Features Anthropic lacks: another target could serve them.
        (json!({"n": 2}), "unsupported_operation"),
        (
            json!({"response_format": {"type": "json_object"}}),
            "unsupported_operation",
        ),
        // A malformed value: no target would.
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]}),
            "invalid_request",
        ),
    ] {
        let reply = send(chat(&gw, body(extra.clone()))).await;
        assert_eq!(reply.status, 400, "{extra}: {}", reply.text);
        assert_eq!(reply.code(), code, "{extra}");
    }
    assert!(upstream.seen().is_empty());
}

#[tokio::test]
async fn the_target_max_tokens_is_the_default_and_the_cap() {
    let upstream = AnthropicUpstream::start().await;
    let gw = gateway(
        &upstream,
        &[("claude", "claude-opus-5-5", "        max_tokens: 300\n")],
    )
    .await;
    let short = json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(send(chat(&gw, short.clone())).await.status, 200);
    assert_eq!(upstream.last().body["max_tokens"], 300);
    let mut long = short;
    long["max_completion_tokens"] = json!(100_000);
    assert_eq!(send(chat(&gw, long)).await.status, 200);
    assert_eq!(upstream.last().body["max_tokens"], 300);
}

#[tokio::test]
async fn chat_streams_text_and_tool_calls_as_openai_chunks() {
    let upstream = AnthropicUpstream::start().await;
    let gw = one(&upstream, "claude-sonnet-5-5").await;
    let reply = send(chat(&gw, rich_chat(true))).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(
        reply
            .header("content-type")
            .starts_with("text/event-stream")
    );
    assert_anthropic_wire(&upstream);
    assert_eq!(upstream.last().body["stream"], true);

    let all = events(&reply.text);
    assert_eq!(all.last().map(|e| e.1.as_str()), Some("[DONE]"));
    assert!(
        all.iter().all(|(name, _)| name.is_none()),
        "OpenAI frames have no event names"
    );
    let chunks = data_json(&reply.text);
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, PIECES.concat());
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert_eq!(calls[0]["id"], "toolu_01T1x1fJ34qAmk2tNTrN7Up6");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert!(calls.iter().all(|c| c["index"] == 0));
    let arguments: String = calls
        .iter()
        .filter_map(|c| c["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&arguments).unwrap(),
        json!({"city": "Paris"})
    );
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, [&json!("tool_calls")]);
    assert!(
        !reply.text.contains("\"usage\""),
        "usage chunk sent though not asked for"
    );

    let record = gw.usage.wait_for_request(&request_id(&reply)).await;
    assert_eq!(record.status, 200);
    assert!(record.streamed);
    assert_eq!(record.usage.input_tokens, PROMPT_TOKENS);
    assert_eq!(record.usage.output_tokens, OUTPUT);
    assert_eq!(record.usage.cached_tokens, CACHE_READ);
    assert!(record.ttft_us.is_some());
}

#[tokio::test]
async fn the_usage_chunk_is_sent_when_asked_for_even_if_usage_arrives_late() {
    let upstream = AnthropicUpstream::start().await;
    let gw = gateway(
        &upstream,
        &[
            ("claude", "claude-sonnet-5-5", ""),
            ("late", "late-usage", ""),
        ],
    )
    .await;
    for endpoint in ["claude", "late"] {
        let body = json!({"model": endpoint, "stream": true, "stream_options": {"include_usage": true},
                          "messages": [{"role": "user", "content": "hi"}]});
        let reply = send(chat(&gw, body)).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let chunks = data_json(&reply.text);
        let usage = chunks
            .iter()
            .filter(|c| c.get("usage").is_some())
            .collect::<Vec<_>>();
        assert_eq!(usage.len(), 1, "{endpoint}: {}", reply.text);
        assert_eq!(usage[0]["choices"], json!([]));
        assert_eq!(usage[0]["usage"]["prompt_tokens"], PROMPT_TOKENS);
        assert_eq!(usage[0]["usage"]["completion_tokens"], OUTPUT);
        assert_eq!(
            usage[0]["usage"]["prompt_tokens_details"]["cached_tokens"],
            CACHE_READ
        );
        assert!(
            chunks.last().unwrap().get("usage").is_some(),
            "just before [DONE]"
        );
        let record = gw.usage.wait_for_request(&request_id(&reply)).await;
        assert_eq!(
            (
                record.usage.input_tokens,
                record.usage.output_tokens,
                record.usage.cached_tokens
            ),
            (PROMPT_TOKENS, OUTPUT, CACHE_READ),
            "{endpoint}"
        );
    }
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_is_recorded_with_the_usage_seen() {
    let upstream = AnthropicUpstream::start().await;
    let gw = one(&upstream, "hold").await;
    let body =
        json!({"model": "claude", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let mut response = within("headers", chat(&gw, body).send()).await.unwrap();
    assert_eq!(response.status(), 200);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut seen = String::new();
    while !seen.contains("\"content\":\"Hello\"") {
        let chunk = within("a content chunk", response.chunk()).await.unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk.expect("stream open")));
    }
    drop(response);

    wait_until("the upstream stream to be cancelled", || {
        (upstream.streams_dropped() == 1).then_some(())
    })
    .await;
    let record = gw.usage.wait_for_request(&request_id).await;
    assert!(record.client_cancelled);
    assert_eq!(record.status, 499);
    assert_eq!(
        record.usage.input_tokens, PROMPT_TOKENS,
        "exact, from message_start"
    );
    assert_eq!(record.usage.cached_tokens, CACHE_READ);
    assert_eq!(
        record.usage.output_tokens, 1,
        "one delta reached the client"
    );
    assert_eq!(gw.usage.all().len(), 1);
}

#[tokio::test]
async fn upstream_errors_keep_status_message_type_and_retry_after() {
    let upstream = AnthropicUpstream::start().await;
    let gw = gateway(
        &upstream,
        &[
            ("bad", "error-400", ""),
            ("limited", "error-429", ""),
            ("busy", "error-529", ""),
        ],
    )
    .await;
    let body =
        |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});

    let bad = send(chat(&gw, body("bad"))).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["error"]["type"], "invalid_request_error");
    assert_eq!(bad.body["error"]["message"], "upstream says 400");

    let limited = send(chat(&gw, body("limited"))).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after"), "7");
    assert_eq!(limited.body["error"]["type"], "rate_limit_error");

    let busy = send(chat(&gw, body("busy"))).await;
    assert_eq!(busy.status, 529);
    assert_eq!(busy.body["error"]["type"], "overloaded_error");
    assert_eq!(busy.body["error"]["message"], "Overloaded");
    let record = gw.usage.wait_for_request(&request_id(&busy)).await;
    assert_eq!(record.status, 529);
    assert_eq!(record.error_type, Some("upstream_error"));
}

#[tokio::test]
async fn a_wrong_key_is_a_401_and_keys_never_reach_the_client() {
    let upstream = AnthropicUpstream::start().await;
    let yaml = format!(
        "keys:\n  - id: t\n    key: {GW_KEY}\nendpoints:\n  - name: wrong\n    kind: chat\n    targets:\n      - provider: anthropic\n        model: claude-sonnet-5-5\n        api_base: {base}\n        credentials: {{api_key: sk-ant-not-the-right-key-000}}\n  - name: leak\n    kind: chat\n    targets:\n      - provider: anthropic\n        model: leak-key\n        api_base: {base}\n        credentials: {{api_key: $ANTHROPIC_KEY}}\n",
        base = upstream.base()
    );
    let gw = TestGateway::from_yaml(&yaml, &[("ANTHROPIC_KEY", ANTHROPIC_KEY)]).await;
    let body =
        |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});

    let wrong = send(chat(&gw, body("wrong"))).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.body["error"]["type"], "authentication_error");
    assert_eq!(wrong.body["error"]["message"], "invalid x-api-key");

    let leak = send(chat(&gw, body("leak"))).await;
    assert_eq!(leak.status, 401);
    assert!(
        leak.body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid x-api-key: ")
    );
    assert!(!leak.text.contains(ANTHROPIC_KEY), "{}", leak.text);
    let native_leak = send(native(
        &gw,
        json!({"model": "leak", "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}]}),
    ))
    .await;
    assert_eq!(native_leak.status, 401);
    assert_eq!(native_leak.body["error"]["type"], "authentication_error");
    assert!(
        !native_leak.text.contains(ANTHROPIC_KEY),
        "{}",
        native_leak.text
    );
}

#[tokio::test]
async fn errors_mid_stream_and_cut_streams_end_with_an_error_event() {
    let upstream = AnthropicUpstream::start().await;
    let gw = gateway(&upstream, &[("busy", "overloaded", ""), ("cut", "cut", "")]).await;
    let body = |m: &str| json!({"model": m, "stream": true, "messages": [{"role": "user", "content": "hi"}]});

    let busy = send(chat(&gw, body("busy"))).await;
    assert_eq!(busy.status, 200);
    assert!(!busy.text.contains("[DONE]"), "{}", busy.text);
    let last = data_json(&busy.text).pop().unwrap();
    assert_eq!(last["error"]["type"], "overloaded_error", "{}", busy.text);
    assert_eq!(last["error"]["message"], "Overloaded");
    let record = gw.usage.wait_for_request(&request_id(&busy)).await;
    assert_eq!(record.status, 529);
    assert_eq!(record.usage.input_tokens, PROMPT_TOKENS);

    let cut = send(chat(&gw, body("cut"))).await;
    let last = data_json(&cut.text).pop().unwrap();
    assert_eq!(
        last["error"]["code"], "upstream_interrupted",
        "{}",
        cut.text
    );
    let record = gw.usage.wait_for_request(&request_id(&cut)).await;
    assert_eq!(record.error_type, Some("upstream_interrupted"));
    assert_eq!(record.usage.output_tokens, 2, "two deltas were sent");
}

#[tokio::test]
async fn the_native_route_passes_messages_through() {
    let upstream = AnthropicUpstream::start().await;
    let gw = one(&upstream, "claude-opus-5-5").await;
    let body = json!({"model": "claude", "max_tokens": 50, "system": [{"type": "text", "text": "Be brief."}],
        "messages": [{"role": "user", "content": "hi"}], "top_k": 5, "metadata": {"user_id": "u"}});
    let reply =
        send(native(&gw, body.clone()).header("anthropic-beta", "some-beta-2026-01-01")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_anthropic_wire(&upstream);
    let seen = upstream.last();
    let mut expected = body;
    expected["model"] = json!("claude-opus-5-5");
    assert_eq!(
        seen.body, expected,
        "the body goes upstream as sent, but for the model"
    );
    assert_eq!(seen.headers["anthropic-beta"], "some-beta-2026-01-01");

    assert_eq!(reply.body["type"], "message");
    assert_eq!(reply.body["content"][0]["text"], PIECES.concat());
    assert_eq!(reply.body["usage"]["cache_read_input_tokens"], CACHE_READ);
    assert!(
        reply.body.get("provider").is_none(),
        "native answers are not decorated"
    );
    let record = gw.usage.wait_for_request(&request_id(&reply)).await;
    assert_eq!(record.route, RouteKind::Passthrough);
    assert_eq!(
        (
            record.usage.input_tokens,
            record.usage.output_tokens,
            record.usage.cached_tokens
        ),
        (PROMPT_TOKENS, OUTPUT, CACHE_READ)
    );
}

#[tokio::test]
async fn the_native_route_streams_events_unchanged() {
    let upstream = AnthropicUpstream::start().await;
    let gw = one(&upstream, "claude-sonnet-5-5").await;
    let body = json!({"model": "claude", "max_tokens": 50, "stream": true,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}]});
    let reply = send(native(&gw, body)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_anthropic_wire(&upstream);
    let names: Vec<String> = events(&reply.text)
        .into_iter()
        .filter_map(|e| e.0)
        .collect();
    for name in [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} missing: {names:?}");
    }
    assert_eq!(names.last().map(String::as_str), Some("message_stop"));
    assert!(reply.text.contains("\"input_json_delta\""));
    for (name, data) in events(&reply.text) {
        let data: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(Some(data["type"].as_str().unwrap()), name.as_deref());
    }
    assert!(!reply.text.contains("[DONE]"));
    let record = gw.usage.wait_for_request(&request_id(&reply)).await;
    assert!(record.streamed);
    assert_eq!(
        (
            record.usage.input_tokens,
            record.usage.output_tokens,
            record.usage.cached_tokens
        ),
        (PROMPT_TOKENS, OUTPUT, CACHE_READ)
    );
}

#[tokio::test]
async fn native_errors_are_anthropic_shaped() {
    let upstream = AnthropicUpstream::start().await;
    let gw = gateway(
        &upstream,
        &[("busy", "error-529", ""), ("midway", "overloaded", "")],
    )
    .await;
    let body = |model: &str, stream: bool| {
        json!({"model": model, "max_tokens": 5, "stream": stream,
        "messages": [{"role": "user", "content": "hi"}]})
    };

    let busy = send(native(&gw, body("busy", false))).await;
    assert_eq!(busy.status, 529);
    assert_eq!(
        busy.body,
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    );

    let unknown = send(native(&gw, body("nope", false))).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body["type"], "error");
    assert_eq!(unknown.body["error"]["type"], "not_found_error");

    let midway = send(native(&gw, body("midway", true))).await;
    assert_eq!(midway.status, 200);
    let (name, data) = events(&midway.text).pop().unwrap();
    assert_eq!(name.as_deref(), Some("error"), "{}", midway.text);
    assert_eq!(
        serde_json::from_str::<Value>(&data).unwrap(),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    );
    assert!(!midway.text.contains("message_stop"));
}

#[tokio::test]
async fn the_builtin_mock_answers_the_native_route() {
    let yaml = "auth: none\nendpoints:\n  - name: chat\n    kind: chat\n    targets:\n      - provider: mock\n        model: echo\n  - name: busy\n    kind: chat\n    targets:\n      - provider: mock\n        model: error-529\n";
    let gw = TestGateway::from_yaml(yaml, &[]).await;
    let body = |model: &str, stream: bool| {
        json!({"model": model, "max_tokens": 100, "stream": stream,
        "system": "sys", "messages": [{"role": "user", "content": "one two three"}]})
    };

    let reply = send(native(&gw, body("chat", false))).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["type"], "message");
    assert_eq!(reply.body["content"][0]["text"], "one two three");
    assert_eq!(reply.body["stop_reason"], "end_turn");
    assert_eq!(reply.body["usage"]["output_tokens"], 3);

    let streamed = send(native(&gw, body("chat", true))).await;
    assert_eq!(streamed.status, 200);
    let text: String = events(&streamed.text)
        .into_iter()
        .filter(|e| e.0.as_deref() == Some("content_block_delta"))
        .map(|e| {
            serde_json::from_str::<Value>(&e.1).unwrap()["delta"]["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(text, "one two three");
    let record = gw.usage.wait_for_request(&request_id(&streamed)).await;
    assert_eq!(record.usage.output_tokens, 3);

    let mut short = body("chat", false);
    short["max_tokens"] = json!(2);
    let cut = send(native(&gw, short)).await;
    assert_eq!(cut.body["stop_reason"], "max_tokens");
    assert_eq!(cut.body["content"][0]["text"], "one two");

    let busy = send(native(&gw, body("busy", false))).await;
    assert_eq!(busy.status, 529);
    assert_eq!(busy.body["error"]["type"], "overloaded_error");
}
