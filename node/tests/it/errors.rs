//! Every failure is an OpenAI-style JSON error (`{"error":{"message","type","param","code"}}`)
//! with the right status and a stable code, never a panic or a dropped connection, and leaves
//! a usage record with that status and error type. Upstream secrets never reach clients.

use crate::common::upstream::{UPSTREAM_KEY, Upstream};
use crate::common::{TestGateway, client, within};
use serde_json::{Value, json};

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// An openai target on `base` with `key`.
fn endpoint(name: &str, kind: &str, model: &str, base: &str, key: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    kind: {kind}\n    targets:\n      - provider: openai\n        model: {model}\n        api_base: {base}\n        credentials: {{api_key: {key}}}\n{extra}"
    )
}

/// One gateway with an endpoint for every failure the tests provoke.
async fn setup() -> (Upstream, TestGateway) {
    let upstream = Upstream::start().await;
    let base = upstream.base();
    let closed = format!("http://127.0.0.1:{}/v1", closed_port());
    let key = "$UPSTREAM_KEY";
    let endpoints = [
        endpoint("chat", "chat", "gpt-4o-mini", &base, key, ""),
        endpoint("embed", "embeddings", "text-embedding-3-small", &base, key, ""),
        endpoint("e429", "chat", "error-429", &base, key, ""),
        endpoint("e500", "chat", "error-500", &base, key, ""),
        endpoint("e400", "chat", "error-400", &base, key, ""),
        endpoint("garbage", "chat", "garbage", &base, key, ""),
        endpoint(
            "slow_first_byte",
            "chat",
            "slow-2000",
            &base,
            key,
            "    timeouts: {first_byte: 200ms}\n",
        ),
        endpoint(
            "slow_total",
            "chat",
            "slow-2000",
            &base,
            key,
            "    timeouts: {first_byte: 5s, total: 300ms}\n",
        ),
        endpoint(
            "wrong_key",
            "chat",
            "gpt-4o-mini",
            &base,
            "sk-wrong-key-not-the-upstream-one",
            "",
        ),
        endpoint("closed", "chat", "gpt-4o-mini", &closed, key, ""),
        // The key in the URL path: a transport error must not echo the URL.
        endpoint(
            "closed_keyed",
            "chat",
            "gpt-4o-mini",
            &format!("{closed}/{UPSTREAM_KEY}"),
            key,
            "",
        ),
        "  - name: mock503\n    kind: chat\n    targets:\n      - provider: mock\n        model: error-503\n".to_owned(),
    ];
    let yaml = format!(
        "auth: none\nlimits: {{max_body_bytes: 1024}}\nendpoints:\n{}",
        endpoints.concat()
    );
    let gw = TestGateway::from_yaml(&yaml, &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    (upstream, gw)
}

/// An error answer, checked for shape and secrets.
struct ErrorAnswer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl ErrorAnswer {
    async fn read(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = within("the error body", response.text()).await.unwrap();
        assert!(
            !text.contains(UPSTREAM_KEY),
            "the upstream key leaked into an error body: {text}"
        );
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            content_type.starts_with("application/json"),
            "content-type {content_type:?} for {text}"
        );
        let body: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        let error = body["error"]
            .as_object()
            .unwrap_or_else(|| panic!("no error object: {text}"));
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{text}"
        );
        assert!(error["type"].is_string(), "{text}");
        for key in ["param", "code"] {
            assert!(error.contains_key(key), "`{key}` missing: {text}");
            assert!(
                error[key].is_null() || error[key].is_string(),
                "`{key}`: {text}"
            );
        }
        assert_eq!(error.len(), 4, "{text}");
        Self {
            status,
            headers,
            body,
        }
    }

    fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap()
    }

    fn code(&self) -> &Value {
        &self.body["error"]["code"]
    }

    fn error_type(&self) -> &Value {
        &self.body["error"]["type"]
    }

    fn request_id(&self) -> &str {
        self.headers["x-request-id"].to_str().unwrap()
    }

    /// Asserts status and code, and that the usage record agrees.
    async fn expect(&self, gw: &TestGateway, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.code(), code, "{}", self.body);
        self.expect_record(gw, status, code).await;
    }

    async fn expect_record(&self, gw: &TestGateway, status: u16, error_type: &str) {
        let record = gw.usage.wait_for_request(self.request_id()).await;
        assert_eq!(record.status, status, "{record:?}");
        assert_eq!(record.error_type, Some(error_type), "{record:?}");
        assert!(!record.client_cancelled, "{record:?}");
    }
}

async fn send(request: reqwest::RequestBuilder) -> ErrorAnswer {
    let response = within("the response", request.send()).await.unwrap();
    ErrorAnswer::read(response).await
}

async fn post_json(gw: &TestGateway, path: &str, body: Value) -> ErrorAnswer {
    send(client().post(gw.url(path)).json(&body)).await
}

async fn post_raw(gw: &TestGateway, path: &str, body: &'static str) -> ErrorAnswer {
    send(
        client()
            .post(gw.url(path))
            .header("content-type", "application/json")
            .body(body),
    )
    .await
}

fn chat(endpoint: &str) -> Value {
    json!({"model": endpoint, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn malformed_json_is_400_with_position() {
    let (_upstream, gw) = setup().await;
    let answer = post_raw(
        &gw,
        "/v1/chat/completions",
        "{\"model\": \"chat\",\n \"messages\": [}",
    )
    .await;
    answer.expect(&gw, 400, "invalid_json").await;
    assert!(answer.message().contains("line"), "{}", answer.message());
    assert!(answer.message().contains("column"), "{}", answer.message());
    assert_eq!(answer.error_type(), "invalid_request_error");
}

#[tokio::test]
async fn body_over_limit_is_413_with_content_length() {
    let (upstream, gw) = setup().await;
    let big = "x".repeat(2048);
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": big}]});
    let request = client().post(gw.url("/v1/chat/completions")).json(&body);
    // A body of known size: hyper sends it with Content-Length.
    let built = request.try_clone().unwrap().build().unwrap();
    assert!(built.body().and_then(reqwest::Body::as_bytes).is_some());
    let answer = send(request).await;
    answer.expect(&gw, 413, "request_too_large").await;
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn declared_length_over_limit_is_refused_before_the_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_upstream, gw) = setup().await;
    // Headers only: the body never comes, so only the Content-Length check can answer.
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: 1048576\r\n\r\n",
        gw.addr
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let (headers, body) = loop {
        let mut buf = [0u8; 4096];
        let n = within("the 413 answer", stream.read(&mut buf))
            .await
            .unwrap();
        assert!(
            n > 0,
            "connection closed: {:?}",
            String::from_utf8_lossy(&raw)
        );
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw).into_owned();
        let Some((headers, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let length: usize = headers
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(str::to_owned)
            })
            .expect("content-length")
            .parse()
            .unwrap();
        if body.len() >= length {
            break (headers.to_owned(), body.to_owned());
        }
    };
    assert!(headers.starts_with("HTTP/1.1 413"), "{headers}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], "request_too_large");
    let id = headers
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("x-request-id");
    let record = gw.usage.wait_for_request(id).await;
    assert_eq!(record.status, 413);
    assert_eq!(record.error_type, Some("request_too_large"));
}

#[tokio::test]
async fn body_over_limit_is_413_when_chunked() {
    let (upstream, gw) = setup().await;
    let head = r#"{"model": "chat", "messages": [{"role": "user", "content": ""#;
    let pieces: Vec<Result<String, std::io::Error>> = std::iter::once(head.to_owned())
        .chain((0..4).map(|_| "y".repeat(400)))
        .chain(std::iter::once(r#""}]}"#.to_owned()))
        .map(Ok)
        .collect();
    let request = client()
        .post(gw.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(pieces)));
    let built = request.try_clone();
    assert!(built.is_none(), "a streamed body cannot be cloned");
    let answer = send(request).await;
    answer.expect(&gw, 413, "request_too_large").await;
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn small_chunked_body_is_accepted() {
    // The limit counts bytes, not the mere absence of Content-Length.
    let (_upstream, gw) = setup().await;
    let body = serde_json::to_string(&chat("chat")).unwrap();
    let pieces: Vec<Result<String, std::io::Error>> =
        vec![Ok(body[..10].to_owned()), Ok(body[10..].to_owned())];
    let response = client()
        .post(gw.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(pieces)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn bodies_of_the_wrong_shape_are_invalid_requests() {
    let (upstream, gw) = setup().await;
    let answer = post_raw(&gw, "/v1/chat/completions", "[1, 2, 3]").await;
    answer.expect(&gw, 400, "invalid_request").await;

    let answer = post_json(
        &gw,
        "/v1/chat/completions",
        json!({"model": "chat", "messages": "hi"}),
    )
    .await;
    answer.expect(&gw, 400, "invalid_request").await;
    assert_eq!(answer.body["error"]["param"], "messages");

    let answer = post_json(
        &gw,
        "/v1/chat/completions",
        json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}),
    )
    .await;
    answer.expect(&gw, 400, "invalid_request").await;
    assert_eq!(answer.body["error"]["param"], "stream");
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn missing_model_is_400_and_unknown_endpoint_is_404() {
    let (upstream, gw) = setup().await;
    let answer = post_json(
        &gw,
        "/v1/chat/completions",
        json!({"messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    answer.expect(&gw, 400, "invalid_request").await;
    assert_eq!(answer.body["error"]["param"], "model");

    let answer = post_json(&gw, "/v1/chat/completions", chat("no-such-endpoint")).await;
    answer.expect(&gw, 404, "model_not_found").await;
    assert!(answer.message().contains("no-such-endpoint"));
    assert_eq!(answer.body["error"]["param"], "model");
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn route_and_endpoint_kind_must_agree() {
    let (upstream, gw) = setup().await;
    let answer = post_json(
        &gw,
        "/v1/embeddings",
        json!({"model": "chat", "input": "hi"}),
    )
    .await;
    answer.expect(&gw, 400, "endpoint_kind_mismatch").await;

    let answer = post_json(&gw, "/v1/chat/completions", chat("embed")).await;
    answer.expect(&gw, 400, "endpoint_kind_mismatch").await;

    let answer = post_json(
        &gw,
        "/v1/embeddings",
        json!({"model": "embed", "input": "hi", "stream": true}),
    )
    .await;
    answer.expect(&gw, 400, "invalid_request").await;
    assert_eq!(answer.body["error"]["param"], "stream");
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn closed_upstream_port_is_502_connect_failed() {
    let (_upstream, gw) = setup().await;
    let answer = post_json(&gw, "/v1/chat/completions", chat("closed")).await;
    answer.expect(&gw, 502, "upstream_connect_failed").await;
    assert_eq!(answer.error_type(), "upstream_error");

    let mut body = chat("closed");
    body["stream"] = json!(true);
    let answer = post_json(&gw, "/v1/chat/completions", body).await;
    answer.expect(&gw, 502, "upstream_connect_failed").await;

    // ErrorAnswer::read checks the key does not appear, URL path included.
    let answer = post_json(&gw, "/v1/chat/completions", chat("closed_keyed")).await;
    answer.expect(&gw, 502, "upstream_connect_failed").await;
}

#[tokio::test]
async fn first_byte_timeout_is_504() {
    let (_upstream, gw) = setup().await;
    let started = std::time::Instant::now();
    let answer = post_json(&gw, "/v1/chat/completions", chat("slow_first_byte")).await;
    answer.expect(&gw, 504, "upstream_timeout").await;
    assert!(
        answer.message().contains("first byte"),
        "{}",
        answer.message()
    );
    assert!(started.elapsed() < std::time::Duration::from_millis(1900));

    let mut body = chat("slow_first_byte");
    body["stream"] = json!(true);
    let answer = post_json(&gw, "/v1/chat/completions", body).await;
    answer.expect(&gw, 504, "upstream_timeout").await;
}

#[tokio::test]
async fn total_timeout_is_504() {
    let (_upstream, gw) = setup().await;
    let started = std::time::Instant::now();
    let answer = post_json(&gw, "/v1/chat/completions", chat("slow_total")).await;
    answer.expect(&gw, 504, "upstream_timeout").await;
    assert!(answer.message().contains("total"), "{}", answer.message());
    assert!(started.elapsed() < std::time::Duration::from_millis(1900));
}

#[tokio::test]
async fn upstream_429_passes_through_with_retry_after() {
    let (upstream, gw) = setup().await;
    let answer = post_json(&gw, "/v1/chat/completions", chat("e429")).await;
    assert_eq!(answer.status, 429);
    assert_eq!(answer.message(), "upstream says 429");
    assert_eq!(answer.headers["retry-after"], "7");
    assert_eq!(answer.error_type(), "invalid_request_error");
    assert_eq!(answer.code(), "upstream_code");
    answer.expect_record(&gw, 429, "upstream_error").await;

    // A streaming request refused before it starts is a JSON error too.
    let mut body = chat("e429");
    body["stream"] = json!(true);
    let answer = post_json(&gw, "/v1/chat/completions", body).await;
    assert_eq!(answer.status, 429);
    assert_eq!(answer.message(), "upstream says 429");
    assert_eq!(answer.headers["retry-after"], "7");
    answer.expect_record(&gw, 429, "upstream_error").await;
    assert_eq!(upstream.count(), 2);
}

#[tokio::test]
async fn upstream_500_and_400_pass_through() {
    let (_upstream, gw) = setup().await;
    let answer = post_json(&gw, "/v1/chat/completions", chat("e500")).await;
    assert_eq!(answer.status, 500);
    assert_eq!(answer.message(), "upstream says 500");
    assert_eq!(answer.error_type(), "server_error");
    assert_eq!(answer.code(), "upstream_code");
    assert!(answer.headers.get("retry-after").is_none());
    answer.expect_record(&gw, 500, "upstream_error").await;

    let answer = post_json(&gw, "/v1/chat/completions", chat("e400")).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.message(), "upstream says 400");
    assert_eq!(answer.error_type(), "invalid_request_error");
    assert_eq!(answer.code(), "upstream_code");
    answer.expect_record(&gw, 400, "upstream_error").await;
}

#[tokio::test]
async fn upstream_401_for_a_wrong_configured_key() {
    let (upstream, gw) = setup().await;
    let answer = post_json(&gw, "/v1/chat/completions", chat("wrong_key")).await;
    assert_eq!(answer.status, 401);
    assert!(
        answer.message().starts_with("Incorrect API key provided"),
        "{}",
        answer.message()
    );
    assert_eq!(answer.code(), "invalid_api_key");
    assert_eq!(answer.error_type(), "invalid_request_error");
    answer.expect_record(&gw, 401, "upstream_error").await;
    let sent = upstream.seen()[0].headers["authorization"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(sent, "Bearer sk-wrong-key-not-the-upstream-one");
    assert!(!answer.body.to_string().contains("sk-wrong-key"));
}

#[tokio::test]
async fn upstream_garbage_is_502_invalid_response() {
    let (_upstream, gw) = setup().await;
    let answer = post_json(&gw, "/v1/chat/completions", chat("garbage")).await;
    answer.expect(&gw, 502, "upstream_invalid_response").await;
    assert!(!answer.message().contains("<html>"));

    let mut body = chat("garbage");
    body["stream"] = json!(true);
    let answer = post_json(&gw, "/v1/chat/completions", body).await;
    answer.expect(&gw, 502, "upstream_invalid_response").await;
}

#[tokio::test]
async fn unknown_route_is_404_json() {
    let (_upstream, gw) = setup().await;
    let answer = send(client().get(gw.url("/v1/nothing/here"))).await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.error_type(), "invalid_request_error");
    let answer = post_json(&gw, "/v2/chat/completions", chat("chat")).await;
    assert_eq!(answer.status, 404);
}

#[tokio::test]
async fn builtin_mock_error_is_openai_shaped() {
    let (_upstream, gw) = setup().await;
    let answer = post_json(&gw, "/v1/chat/completions", chat("mock503")).await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.message(), "mock provider error 503");
    assert_eq!(answer.error_type(), "server_error");
    assert_eq!(answer.code(), "mock_error");
    answer.expect_record(&gw, 503, "upstream_error").await;
}

#[tokio::test]
async fn the_gateway_keeps_serving_after_every_failure() {
    let (_upstream, gw) = setup().await;
    for endpoint in ["closed", "garbage", "e500", "no-such-endpoint"] {
        let _ = post_json(&gw, "/v1/chat/completions", chat(endpoint)).await;
    }
    let _ = post_raw(&gw, "/v1/chat/completions", "{").await;
    let response = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat("chat"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello from upstream"
    );
    assert_eq!(gw.usage.wait_for(6).await.len(), 6);
}
