//! Amazon Bedrock end to end, against the validating mock in
//! `common/bedrock_upstream.rs`: chat through Converse and ConverseStream (with tools),
//! SigV4 with long-term and temporary keys, Bedrock API keys, the golden request and
//! answer, exact usage and cost in the records (a client that leaves mid-stream included),
//! Bedrock's errors (throttling, validation, a bad signature, a mid-stream exception), and
//! Anthropic's Messages API on Bedrock through `/gateway/anthropic/v1/messages`.

use crate::common::bedrock_upstream::{
    ACCESS_KEY_ID, API_KEY, BedrockUpstream, CACHE_READ, CACHE_WRITE, CLAUDE_USAGE, INPUT_TOKENS,
    OUTPUT_TOKENS, PIECES, REQUEST_ID, SECRET_ACCESS_KEY, SESSION_TOKEN, TEMP_ACCESS_KEY_ID,
    TEMP_SECRET_ACCESS_KEY, TTL_SPLIT_WRITES,
};
use crate::common::{Reply, TestGateway, client, send, wait_until, within};
use serde_json::{Value, json};

/// Tokens the gateway records for every Converse answer: input includes the cache.
const PROMPT: u64 = INPUT_TOKENS + CACHE_READ + CACHE_WRITE;
const NOVA_LITE: &str = "amazon.nova-lite-v1:0";
const CLAUDE: &str = "anthropic.claude-sonnet-4-5-20250929-v1:0";
/// A Sonnet 4.5 id (priced as `anthropic.claude-sonnet-4-5`) whose writes the mock splits by
/// cache lifetime.
const CLAUDE_TTL_SPLIT: &str = "anthropic.claude-sonnet-4-5-ttl-split-v1:0";

/// How the gateway authenticates to the mock.
#[derive(Clone, Copy)]
enum Auth {
    Keys,
    TempKeys,
    ApiKey,
    WrongSecret,
}

impl Auth {
    fn yaml(self) -> &'static str {
        match self {
            Self::Keys | Self::WrongSecret => {
                "{aws_access_key_id: $AWS_ID, aws_secret_access_key: $AWS_SECRET}"
            }
            Self::TempKeys => {
                "{aws_access_key_id: $AWS_TEMP_ID, aws_secret_access_key: $AWS_TEMP_SECRET, aws_session_token: $AWS_TOKEN}"
            }
            Self::ApiKey => "{api_key: $BEDROCK_KEY}",
        }
    }
}

/// A gateway with one chat endpoint per `(name, model)`, all on the mock.
async fn gateway(
    upstream: &BedrockUpstream,
    auth: Auth,
    endpoints: &[(&str, &str)],
) -> TestGateway {
    let mut yaml = String::from("auth: none\nendpoints:\n");
    for (name, model) in endpoints {
        yaml.push_str(&format!(
            "  - name: {name}\n    kind: chat\n    targets:\n      - provider: bedrock\n        model: {model}\n        region: us-east-1\n        api_base: {}\n        credentials: {}\n",
            upstream.base,
            auth.yaml()
        ));
    }
    let secret = match auth {
        Auth::WrongSecret => "not-the-secret-0123456789abcdefghijklmnop",
        _ => SECRET_ACCESS_KEY,
    };
    TestGateway::from_yaml(
        &yaml,
        &[
            ("AWS_ID", ACCESS_KEY_ID),
            ("AWS_SECRET", secret),
            ("AWS_TEMP_ID", TEMP_ACCESS_KEY_ID),
            ("AWS_TEMP_SECRET", TEMP_SECRET_ACCESS_KEY),
            ("AWS_TOKEN", SESSION_TOKEN),
            ("BEDROCK_KEY", API_KEY),
        ],
    )
    .await
}

fn chat(endpoint: &str, stream: bool) -> Value {
    json!({"model": endpoint, "stream": stream, "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello"}
    ]})
}

async fn post(gw: &TestGateway, path: &str, body: &Value) -> Reply {
    send(client().post(gw.url(path)).json(body)).await
}

/// Asserts no secret of the test credentials appears in `text`.
fn assert_no_secret(text: &str) {
    for secret in [
        SECRET_ACCESS_KEY,
        TEMP_SECRET_ACCESS_KEY,
        SESSION_TOKEN,
        API_KEY,
    ] {
        assert!(!text.contains(secret), "a secret leaked: {text}");
    }
}

/// One SSE event: its `event:` name (empty when none) and `data:` text.
#[derive(Debug, Clone, PartialEq)]
struct Event {
    name: String,
    data: String,
}

impl Event {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {}", self.data))
    }
}

/// Reads a streamed answer event by event.
struct Sse {
    response: reqwest::Response,
    buffer: String,
    ended: bool,
}

impl Sse {
    async fn open(gw: &TestGateway, path: &str, body: &Value) -> Self {
        let response = within(
            "response headers",
            client().post(gw.url(path)).json(body).send(),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Self {
            response,
            buffer: String::new(),
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
            if let Some(at) = self.buffer.find("\n\n") {
                let raw: String = self.buffer.drain(..at + 2).collect();
                let mut event = Event {
                    name: String::new(),
                    data: String::new(),
                };
                for line in raw.lines() {
                    if let Some(name) = line.strip_prefix("event: ") {
                        event.name = name.to_owned();
                    } else if let Some(data) = line.strip_prefix("data: ") {
                        event.data = data.to_owned();
                    }
                }
                return Some(event);
            }
            if self.ended {
                assert!(
                    self.buffer.trim().is_empty(),
                    "ended inside an event: {:?}",
                    self.buffer
                );
                return None;
            }
            match within("stream bytes", self.response.chunk()).await.unwrap() {
                Some(bytes) => self.buffer.push_str(std::str::from_utf8(&bytes).unwrap()),
                None => self.ended = true,
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

// ---------------------------------------------------------------------------------------
// Chat through Converse
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn chat_is_answered_through_converse_signed_with_access_keys() {
    let upstream = BedrockUpstream::start().await;
    let gw = gateway(&upstream, Auth::Keys, &[("chat", NOVA_LITE)]).await;
    let reply = post(&gw, "/v1/chat/completions", &chat("chat", false)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let body = &reply.body;
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["id"], format!("chatcmpl-{REQUEST_ID}"));
    assert_eq!(body["model"], NOVA_LITE);
    assert_eq!(body["provider"], "bedrock");
    assert_eq!(body["choices"][0]["message"]["content"], PIECES.concat());
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["prompt_tokens"], PROMPT);
    assert_eq!(body["usage"]["completion_tokens"], OUTPUT_TOKENS);
    assert_eq!(
        body["usage"]["prompt_tokens_details"]["cached_tokens"],
        CACHE_READ
    );

    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/model/amazon.nova-lite-v1%3A0/converse");
    let auth = seen[0].headers["authorization"].to_str().unwrap();
    assert!(
        auth.starts_with(&format!("AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/")),
        "{auth}"
    );
    assert!(
        auth.contains("/us-east-1/bedrock/aws4_request, SignedHeaders="),
        "{auth}"
    );
    assert!(seen[0].headers.contains_key("x-amz-date"));
    assert!(!seen[0].headers.contains_key("x-amz-security-token"));
    assert_eq!(seen[0].body["system"], json!([{"text": "Be brief."}]));
    assert_eq!(
        seen[0].body["messages"],
        json!([{"role": "user", "content": [{"text": "Say hello"}]}])
    );

    let record = gw
        .usage
        .wait_for_request(reply.header("x-request-id"))
        .await;
    assert_eq!(record.status, 200);
    assert_eq!(record.provider, Some("bedrock"));
    assert_eq!(record.model.as_deref(), Some(NOVA_LITE));
    assert_eq!(
        (
            record.usage.input_tokens,
            record.usage.output_tokens,
            record.usage.cached_tokens
        ),
        (PROMPT, OUTPUT_TOKENS, CACHE_READ)
    );
    // Nova Lite: 23 uncached x $0.06 + 4 cached x $0.015 + 9 x $0.24 per million = 3.6 -> 4 µ$.
    assert_eq!(record.cost_micros, Some(4));
    assert_no_secret(&reply.text);
}

#[tokio::test]
async fn temporary_credentials_send_and_sign_the_session_token() {
    let upstream = BedrockUpstream::start().await;
    let gw = gateway(&upstream, Auth::TempKeys, &[("chat", NOVA_LITE)]).await;
    let reply = post(&gw, "/v1/chat/completions", &chat("chat", false)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let mut sse = Sse::open(&gw, "/v1/chat/completions", &chat("chat", true)).await;
    let events = sse.rest().await;
    assert_eq!(events.last().map(|e| e.data.as_str()), Some("[DONE]"));

    let seen = upstream.seen();
    assert_eq!(seen.len(), 2);
    for request in &seen {
        assert_eq!(request.headers["x-amz-security-token"], SESSION_TOKEN);
        let auth = request.headers["authorization"].to_str().unwrap();
        assert!(
            auth.contains(&format!("Credential={TEMP_ACCESS_KEY_ID}/")),
            "{auth}"
        );
        assert!(
            auth.contains("x-amz-security-token"),
            "the token must be signed: {auth}"
        );
    }
    assert_eq!(
        seen[1].path,
        "/model/amazon.nova-lite-v1%3A0/converse-stream"
    );
    assert_eq!(
        seen[1].headers["accept"],
        "application/vnd.amazon.eventstream"
    );
}

#[tokio::test]
async fn a_bedrock_api_key_is_sent_as_a_bearer_token() {
    let upstream = BedrockUpstream::start().await;
    let gw = gateway(&upstream, Auth::ApiKey, &[("chat", NOVA_LITE)]).await;
    let reply = post(&gw, "/v1/chat/completions", &chat("chat", false)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let seen = upstream.seen();
    assert_eq!(
        seen[0].headers["authorization"],
        format!("Bearer {API_KEY}")
    );
    assert!(
        !seen[0].headers.contains_key("x-amz-date"),
        "no SigV4 with an API key"
    );
}

#[tokio::test]
async fn the_golden_request_and_answer_round_trip() {
    let fixture = |name: &str| -> Value {
        let path = format!(
            "{}/tests/fixtures/bedrock/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let upstream = BedrockUpstream::start().await;
    let gw = gateway(&upstream, Auth::Keys, &[("golden", "test.golden-v1:0")]).await;
    let reply = post(
        &gw,
        "/v1/chat/completions",
        &fixture("chat_request.openai.json"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(upstream.seen()[0].body, fixture("converse_request.json"));
    let mut answer = reply.body.clone();
    let map = answer.as_object_mut().unwrap();
    assert_eq!(map.remove("provider"), Some(json!("bedrock")));
    assert!(map["created"].as_u64().unwrap() > 1_700_000_000);
    map.insert("created".into(), json!(1_700_000_000));
    assert_eq!(answer, fixture("chat_response.openai.json"));
    let record = gw
        .usage
        .wait_for_request(reply.header("x-request-id"))
        .await;
    assert_eq!(
        (
            record.usage.input_tokens,
            record.usage.output_tokens,
            record.usage.cached_tokens
        ),
        (1636, 58, 1024)
    );
}

#[tokio::test]
async fn chat_streams_tool_calls_through_converse_stream() {
    let upstream = BedrockUpstream::start().await;
    let gw = gateway(&upstream, Auth::Keys, &[("tools", "test.tools-v1:0")]).await;
    let body = json!({"model": "tools", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters":
            {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": "auto"});
    let mut sse = Sse::open(&gw, "/v1/chat/completions", &body).await;
    let request_id = sse.request_id();
    let events = sse.rest().await;
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(Event::json).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let start = &chunks[1]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(start["index"], 0);
    assert_eq!(start["id"], "tooluse_stream_1");
    assert_eq!(start["function"]["name"], "get_weather");
    let arguments: String = chunks
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/delta/tool_calls/0/function/arguments")?
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&arguments).unwrap(),
        json!({"city": "Paris"})
    );
    let finish: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/finish_reason")
                .filter(|f| !f.is_null())
        })
        .collect();
    assert_eq!(finish, [&json!("tool_calls")]);
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], PROMPT);
    assert_eq!(usage["usage"]["completion_tokens"], OUTPUT_TOKENS);
    assert!(
        chunks.iter().all(|c| c["object"] == "chat.completion.chunk"
            && c["id"] == format!("chatcmpl-{REQUEST_ID}"))
    );

    let seen = upstream.seen();
    assert_eq!(seen[0].path, "/model/test.tools-v1%3A0/converse-stream");
    assert_eq!(
        seen[0].body["toolConfig"]["toolChoice"],
        json!({"auto": {}})
    );
    let record = gw.usage.wait_for_request(&request_id).await;
    assert!(record.streamed);
    assert_eq!(record.status, 200);
    assert_eq!(
        (
            record.usage.input_tokens,
            record.usage.output_tokens,
            record.usage.cached_tokens
        ),
        (PROMPT, OUTPUT_TOKENS, CACHE_READ)
    );
}

#[tokio::test]
async fn stream_usage_is_recorded_but_sent_only_when_asked() {
    let upstream = BedrockUpstream::start().await;
    let gw = gateway(&upstream, Auth::Keys, &[("chat", NOVA_LITE)]).await;
    let mut sse = Sse::open(&gw, "/v1/chat/completions", &chat("chat", true)).await;
    let request_id = sse.request_id();
    let events = sse.rest().await;
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(Event::json).collect();
    assert!(
        chunks
            .iter()
            .all(|c| c.get("usage").is_none_or(Value::is_null)),
        "{chunks:?}"
    );
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, PIECES.concat());
    assert_eq!(
        chunks
            .iter()
            .filter(|c| c["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|t| !t.is_empty()))
            .count(),
        3
    );
    let record = gw.usage.wait_for_request(&request_id).await;
    assert_eq!(
        (
            record.usage.input_tokens,
            record.usage.output_tokens,
            record.usage.cached_tokens
        ),
        (PROMPT, OUTPUT_TOKENS, CACHE_READ)
    );
    assert_eq!(record.cost_micros, Some(4));
    assert!(!record.client_cancelled);
}

#[tokio::test]
async fn a_client_leaving_mid_stream_cancels_bedrock_and_is_recorded() {
    let upstream = BedrockUpstream::start().await;
    let gw = gateway(&upstream, Auth::Keys, &[("held", "test.hold-v1:0")]).await;
    let mut sse = Sse::open(&gw, "/v1/chat/completions", &chat("held", true)).await;
    let request_id = sse.request_id();
    let role = sse.next().await.unwrap().json();
    assert_eq!(role["choices"][0]["delta"]["role"], "assistant");
    let first = sse.next().await.unwrap().json();
    assert_eq!(first["choices"][0]["delta"]["content"], PIECES[0]);
    drop(sse);

    wait_until("the Bedrock stream to be dropped", || {
        (upstream.streams_dropped() == 1).then_some(())
    })
    .await;
    assert_eq!(upstream.streams_finished(), 0);
    let record = gw.usage.wait_for_request(&request_id).await;
    assert_eq!(record.status, 499);
    assert!(record.client_cancelled);
    assert_eq!(record.error_type, Some("client_cancelled"));
    // Bedrock reports usage only at the end: what reached the client is counted (two
    // chunks), and the input is estimated from the request.
    assert_eq!(record.usage.output_tokens, 2);
    assert!(record.usage.input_tokens > 0);
    assert_eq!(gw.usage.all().len(), 1);
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn throttling_is_a_429_with_bedrocks_message() {
    let upstream = BedrockUpstream::start().await;
    let gw = gateway(&upstream, Auth::Keys, &[("slow", "test.throttled-v1:0")]).await;
    let reply = post(&gw, "/v1/chat/completions", &chat("slow", false)).await;
    assert_eq!(reply.status, 429, "{}", reply.text);
    assert_eq!(reply.body["error"]["type"], "ThrottlingException");
    assert_eq!(
        reply.body["error"]["message"],
        "Too many requests, please wait before trying again."
    );
    let record = gw
        .usage
        .wait_for_request(reply.header("x-request-id"))
        .await;
    assert_eq!(record.status, 429);
    assert_eq!(record.error_type, Some("upstream_error"));
}

#[tokio::test]
async fn validation_errors_are_400s() {
    let upstream = BedrockUpstream::start().await;
    let gw = gateway(&upstream, Auth::Keys, &[("bad", "test.invalid-v1:0")]).await;
    let reply = post(&gw, "/v1/chat/completions", &chat("bad", false)).await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(reply.body["error"]["type"], "ValidationException");
    assert_eq!(
        reply.body["error"]["message"],
        "The provided model identifier is invalid."
    );
}

#[tokio::test]
async fn a_wrong_secret_key_fails_bedrocks_signature_check() {
    let upstream = BedrockUpstream::start().await;
    let gw = gateway(&upstream, Auth::WrongSecret, &[("chat", NOVA_LITE)]).await;
    let reply = post(&gw, "/v1/chat/completions", &chat("chat", false)).await;
    assert_eq!(reply.status, 403, "{}", reply.text);
    assert_eq!(reply.body["error"]["type"], "InvalidSignatureException");
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("The request signature we calculated does not match")
    );
    assert!(
        !reply
            .text
            .contains("not-the-secret-0123456789abcdefghijklmnop")
    );
    // The same gateway streaming: refused before any byte is sent.
    let reply = post(&gw, "/v1/chat/completions", &chat("chat", true)).await;
    assert_eq!(reply.status, 403);
}

#[tokio::test]
async fn secrets_echoed_by_bedrock_are_scrubbed() {
    let upstream = BedrockUpstream::start().await;
    for auth in [Auth::ApiKey, Auth::TempKeys] {
        let gw = gateway(&upstream, auth, &[("leaky", "test.leak-v1:0")]).await;
        let reply = post(&gw, "/v1/chat/completions", &chat("leaky", false)).await;
        assert_eq!(reply.status, 403, "{}", reply.text);
        assert_eq!(reply.body["error"]["type"], "AccessDeniedException");
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains('…'),
            "{}",
            reply.text
        );
        assert_no_secret(&reply.text);
    }
}

#[tokio::test]
async fn a_mid_stream_exception_ends_the_stream_with_an_error_event() {
    let upstream = BedrockUpstream::start().await;
    let gw = gateway(&upstream, Auth::Keys, &[("flaky", "test.midstream-v1:0")]).await;
    let mut sse = Sse::open(&gw, "/v1/chat/completions", &chat("flaky", true)).await;
    let request_id = sse.request_id();
    let events = sse.rest().await;
    assert!(events.iter().all(|e| e.data != "[DONE]"), "{events:?}");
    let last = events.last().unwrap().json();
    assert_eq!(last["error"]["type"], "ThrottlingException");
    assert_eq!(
        last["error"]["message"],
        "Too many tokens, please wait before trying again."
    );
    let record = gw.usage.wait_for_request(&request_id).await;
    assert_eq!(record.status, 429);
    assert_eq!(record.error_type, Some("upstream_error"));
}

#[tokio::test]
async fn operations_bedrock_does_not_serve_are_refused() {
    let upstream = BedrockUpstream::start().await;
    let gw = gateway(&upstream, Auth::Keys, &[("chat", NOVA_LITE)]).await;
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": "x"}], "n": 3});
    let reply = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(reply.code(), "unsupported_operation");
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`n`")
    );
    assert!(upstream.seen().is_empty(), "nothing is sent upstream");
}

// ---------------------------------------------------------------------------------------
// Anthropic Messages on Bedrock
// ---------------------------------------------------------------------------------------

fn messages(endpoint: &str, stream: bool) -> Value {
    json!({"model": endpoint, "max_tokens": 256, "stream": stream,
           "system": "Be brief.", "messages": [{"role": "user", "content": "Say hello"}]})
}

#[tokio::test]
async fn anthropic_messages_are_invoked_natively() {
    let upstream = BedrockUpstream::start().await;
    let gw = gateway(&upstream, Auth::Keys, &[("claude", CLAUDE)]).await;
    let reply = send(
        client()
            .post(gw.url("/gateway/anthropic/v1/messages"))
            .header("anthropic-version", "2023-06-01")
            .header("anthropic-beta", "token-efficient-tools-2025-02-19")
            .json(&messages("claude", false)),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["type"], "message");
    assert_eq!(
        reply.body["content"][0]["text"],
        "Hello from Claude on Bedrock"
    );
    let seen = upstream.seen();
    assert_eq!(
        seen[0].path,
        "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke"
    );
    assert_eq!(seen[0].body["anthropic_version"], "bedrock-2023-05-31");
    assert_eq!(
        seen[0].body["anthropic_beta"],
        json!(["token-efficient-tools-2025-02-19"])
    );
    assert!(seen[0].body.get("model").is_none() && seen[0].body.get("stream").is_none());
    assert_eq!(seen[0].body["system"], "Be brief.");
    let (input, read, output) = CLAUDE_USAGE;
    let record = gw
        .usage
        .wait_for_request(reply.header("x-request-id"))
        .await;
    assert_eq!(
        (
            record.usage.input_tokens,
            record.usage.output_tokens,
            record.usage.cached_tokens
        ),
        (input + read, output, read)
    );
    // Sonnet 4.5: 13 x $3 + 5 x $0.30 + 8 x $15 per million = 160.5 -> 161 µ$.
    assert_eq!(record.cost_micros, Some(161));
}

#[tokio::test]
async fn anthropic_messages_stream_as_anthropic_sse() {
    let upstream = BedrockUpstream::start().await;
    let gw = gateway(&upstream, Auth::ApiKey, &[("claude", CLAUDE)]).await;
    let mut sse = Sse::open(
        &gw,
        "/gateway/anthropic/v1/messages",
        &messages("claude", true),
    )
    .await;
    let request_id = sse.request_id();
    let events = sse.rest().await;
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    for event in &events {
        assert_eq!(event.json()["type"], event.name.as_str());
    }
    let text: String = events
        .iter()
        .filter_map(|e| e.json()["delta"]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(text, "Hello from Claude");
    let seen = upstream.seen();
    assert_eq!(
        seen[0].path,
        "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke-with-response-stream"
    );
    assert!(seen[0].body.get("stream").is_none());
    let (input, read, output) = CLAUDE_USAGE;
    let record = gw.usage.wait_for_request(&request_id).await;
    assert!(record.streamed);
    assert_eq!(record.route, floodgate::usage::RouteKind::Passthrough);
    assert_eq!(
        (
            record.usage.input_tokens,
            record.usage.output_tokens,
            record.usage.cached_tokens
        ),
        (input + read, output, read)
    );
}

#[tokio::test]
async fn leaving_after_message_delta_keeps_the_exact_usage() {
    let upstream = BedrockUpstream::start().await;
    let gw = gateway(
        &upstream,
        Auth::Keys,
        &[("claude", "anthropic.claude-hold-v1:0")],
    )
    .await;
    let mut sse = Sse::open(
        &gw,
        "/gateway/anthropic/v1/messages",
        &messages("claude", true),
    )
    .await;
    let request_id = sse.request_id();
    loop {
        let event = sse.next().await.expect("message_delta before the pause");
        if event.name == "message_delta" {
            break;
        }
    }
    drop(sse);
    wait_until("the Bedrock stream to be dropped", || {
        (upstream.streams_dropped() == 1).then_some(())
    })
    .await;
    let (input, read, output) = CLAUDE_USAGE;
    let record = gw.usage.wait_for_request(&request_id).await;
    assert!(record.client_cancelled);
    assert_eq!(record.status, 499);
    assert_eq!(
        (
            record.usage.input_tokens,
            record.usage.output_tokens,
            record.usage.cached_tokens
        ),
        (input + read, output, read)
    );
}

// ---------------------------------------------------------------------------------------
// Prompt-cache writes
// ---------------------------------------------------------------------------------------

/// `(input, cached, written, written for an hour, output)` of a record.
fn cache_counts(record: &floodgate::usage::UsageRecord) -> (u64, u64, u64, u64, u64) {
    let usage = &record.usage;
    (
        usage.input_tokens,
        usage.cached_tokens,
        usage.cache_write_tokens,
        usage.cache_write_1h_tokens,
        usage.output_tokens,
    )
}

#[tokio::test]
async fn claude_cache_writes_are_costed_at_bedrocks_write_rates() {
    // anthropic.claude-sonnet-4-5: $3/M input, $0.30 cache read, $3.75 five-minute write,
    // $6 one-hour write, $15 output.
    let upstream = BedrockUpstream::start().await;
    let gw = gateway(
        &upstream,
        Auth::Keys,
        &[("plain", CLAUDE), ("split", CLAUDE_TTL_SPLIT)],
    )
    .await;
    let (short, long) = TTL_SPLIT_WRITES;

    // Converse's `cacheWriteInputTokens` without details: five-minute writes.
    let reply = post(&gw, "/v1/chat/completions", &chat("plain", false)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let record = gw
        .usage
        .wait_for_request(reply.header("x-request-id"))
        .await;
    assert_eq!(
        cache_counts(&record),
        (PROMPT, CACHE_READ, CACHE_WRITE, 0, OUTPUT_TOKENS)
    );
    // 21 x 3 + 4 x 0.30 + 2 x 3.75 + 9 x 15 = 63 + 1.2 + 7.5 + 135 = 206.7 -> 207 µ$.
    assert_eq!(record.cost_micros, Some(207));

    // Converse with `cacheDetails`, complete and streamed:
    // 21 x 3 + 4 x 0.30 + 300 x 3.75 + 200 x 6 + 9 x 15 = 2524.2 -> 2525 µ$.
    for stream in [false, true] {
        let request_id = if stream {
            let mut sse = Sse::open(&gw, "/v1/chat/completions", &chat("split", true)).await;
            sse.rest().await;
            sse.request_id()
        } else {
            let reply = post(&gw, "/v1/chat/completions", &chat("split", false)).await;
            assert_eq!(reply.status, 200, "{}", reply.text);
            reply.header("x-request-id").to_owned()
        };
        let record = gw.usage.wait_for_request(&request_id).await;
        assert_eq!(record.streamed, stream);
        assert_eq!(
            cache_counts(&record),
            (
                INPUT_TOKENS + CACHE_READ + short + long,
                CACHE_READ,
                short + long,
                long,
                OUTPUT_TOKENS
            ),
            "converse, stream: {stream}"
        );
        assert_eq!(record.cost_micros, Some(2525), "converse, stream: {stream}");
    }

    // Anthropic's Messages API on InvokeModel, complete and streamed:
    // 13 x 3 + 5 x 0.30 + 300 x 3.75 + 200 x 6 + 8 x 15 = 2485.5 -> 2486 µ$.
    let (input, read, output) = CLAUDE_USAGE;
    for stream in [false, true] {
        let request_id = if stream {
            let mut sse = Sse::open(
                &gw,
                "/gateway/anthropic/v1/messages",
                &messages("split", true),
            )
            .await;
            sse.rest().await;
            sse.request_id()
        } else {
            let reply = post(
                &gw,
                "/gateway/anthropic/v1/messages",
                &messages("split", false),
            )
            .await;
            assert_eq!(reply.status, 200, "{}", reply.text);
            reply.header("x-request-id").to_owned()
        };
        let record = gw.usage.wait_for_request(&request_id).await;
        assert_eq!(
            cache_counts(&record),
            (
                input + read + short + long,
                read,
                short + long,
                long,
                output
            ),
            "invoke, stream: {stream}"
        );
        assert_eq!(record.cost_micros, Some(2486), "invoke, stream: {stream}");
    }
}
