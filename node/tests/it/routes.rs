//! Every HTTP route of the edge, against the mock OpenAI upstream and the built-in mock.
//!
//! Each test starts its own upstream and edge on `127.0.0.1:0` and checks three things: the
//! status and body the client gets, what reached the upstream (path, query, the target's
//! model in place of the endpoint name, the upstream key in place of the gateway key), and —
//! where it matters — the usage record.

use crate::common;
use crate::common::upstream::{self, Seen, UPSTREAM_KEY, Upstream};
use crate::common::{Reply, TestGateway, client, send};
use floodgate::usage::RouteKind;
use serde_json::{Value, json};

/// The gateway key used by the shared fixture.
const GW_KEY: &str = "fg-routes-gateway-key-0042";

/// A YAML endpoint with one OpenAI-wire target at `base` holding the upstream key.
fn endpoint(name: &str, kind: &str, provider: &str, model: &str, base: &str) -> String {
    format!(
        "  - name: {name}\n    kind: {kind}\n    targets:\n      - provider: {provider}\n        model: {model}\n        api_base: \"{base}\"\n        credentials: {{api_key: $UPSTREAM_KEY}}\n"
    )
}

/// The shared fixture: one gateway key and four OpenAI endpoints on one upstream.
async fn fixture() -> (Upstream, TestGateway) {
    let upstream = Upstream::start().await;
    let base = upstream.base();
    let mut yaml = String::from("keys:\n  - id: tester\n    key: $GW_KEY\nendpoints:\n");
    yaml += &endpoint("chat", "chat", "openai", "gpt-4o-mini", &base);
    yaml += &endpoint(
        "completions",
        "completions",
        "openai",
        "gpt-3.5-turbo-instruct",
        &base,
    );
    yaml += &endpoint(
        "embeddings",
        "embeddings",
        "openai",
        "text-embedding-3-small",
        &base,
    );
    yaml += &endpoint("custom", "chat", "openai", "house-model-x", &base);
    yaml += "    rate_limit: {calls: 1000, renewal_period: hour}\n";
    let gw =
        TestGateway::from_yaml(&yaml, &[("UPSTREAM_KEY", UPSTREAM_KEY), ("GW_KEY", GW_KEY)]).await;
    (upstream, gw)
}

fn post(gw: &TestGateway, path: &str, body: Value) -> reqwest::RequestBuilder {
    client().post(gw.url(path)).bearer_auth(GW_KEY).json(&body)
}

fn get(gw: &TestGateway, path: &str) -> reqwest::RequestBuilder {
    client().get(gw.url(path)).bearer_auth(GW_KEY)
}

fn chat_body(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

/// The upstream saw the upstream key as a bearer token and nothing of the gateway key.
fn assert_upstream_credentials(seen: &Seen) {
    assert_eq!(
        seen.headers.get("authorization").unwrap(),
        &format!("Bearer {UPSTREAM_KEY}"),
        "upstream authorization for {}",
        seen.path
    );
    assert!(seen.headers.get("x-api-key").is_none());
    for (name, value) in &seen.headers {
        assert!(
            !value.to_str().unwrap_or("").contains(GW_KEY),
            "the gateway key reached the upstream in {name}"
        );
    }
    assert!(!seen.raw.contains(GW_KEY));
}

/// The last request the upstream received.
fn last(upstream: &Upstream) -> Seen {
    upstream
        .seen()
        .pop()
        .expect("the upstream received nothing")
}

fn assert_timing_headers(reply: &Reply) {
    let total: u64 = reply
        .header("x-mlflow-gateway-duration-ms")
        .parse()
        .unwrap();
    let overhead: u64 = reply
        .header("x-mlflow-gateway-overhead-duration-ms")
        .parse()
        .unwrap();
    assert!(overhead <= total, "overhead {overhead} > total {total}");
    assert!(!reply.header("x-request-id").is_empty());
}

#[tokio::test]
async fn chat_completion_through_v1() {
    let upstream = Upstream::start().await;
    let yaml = format!(
        "auth: none\nendpoints:\n  - name: chat\n    kind: chat\n    targets:\n      - provider: openai\n        model: gpt-4o-mini\n        api_base: {}\n        credentials: {{api_key: $UPSTREAM_KEY}}\n",
        upstream.base()
    );
    let gw =
        TestGateway::from_yaml(&yaml, &[("UPSTREAM_KEY", common::upstream::UPSTREAM_KEY)]).await;
    let response = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["provider"], "openai");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello from upstream"
    );
    assert_eq!(upstream.seen()[0].body["model"], "gpt-4o-mini");
}

#[tokio::test]
async fn unified_v1_routes_reach_the_upstream_with_the_target_model() {
    let (upstream, gw) = fixture().await;

    let chat = send(post(&gw, "/v1/chat/completions", chat_body("chat"))).await;
    assert_eq!(chat.status, 200, "{}", chat.text);
    assert_eq!(chat.body["object"], "chat.completion");
    assert_eq!(
        chat.body["choices"][0]["message"]["content"],
        "Hello from upstream"
    );
    assert_eq!(chat.body["usage"]["prompt_tokens"], 11);
    assert_eq!(chat.body["provider"], "openai");
    assert_eq!(chat.header("x-floodgate-target"), "openai/gpt-4o-mini");
    let seen = last(&upstream);
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(seen.body["model"], "gpt-4o-mini");
    assert_eq!(seen.body["messages"][0]["content"], "hi");
    assert_upstream_credentials(&seen);

    let completion = send(post(
        &gw,
        "/v1/completions",
        json!({"model": "completions", "prompt": "Say hi", "max_tokens": 5}),
    ))
    .await;
    assert_eq!(completion.status, 200, "{}", completion.text);
    assert_eq!(completion.body["object"], "text_completion");
    assert_eq!(completion.body["choices"][0]["text"], "completed text");
    assert_eq!(completion.body["provider"], "openai");
    let seen = last(&upstream);
    assert_eq!(seen.path, "/v1/completions");
    assert_eq!(seen.body["model"], "gpt-3.5-turbo-instruct");
    assert_eq!(seen.body["prompt"], "Say hi");
    assert_eq!(seen.body["max_tokens"], 5);
    assert_upstream_credentials(&seen);

    let embedding = send(post(
        &gw,
        "/v1/embeddings",
        json!({"model": "embeddings", "input": ["a", "b"]}),
    ))
    .await;
    assert_eq!(embedding.status, 200, "{}", embedding.text);
    assert_eq!(embedding.body["object"], "list");
    assert_eq!(embedding.body["data"][0]["object"], "embedding");
    assert_eq!(
        embedding.body["data"][0]["embedding"],
        json!([0.1, 0.2, 0.3])
    );
    assert_eq!(embedding.body["provider"], "openai");
    let seen = last(&upstream);
    assert_eq!(seen.path, "/v1/embeddings");
    assert_eq!(seen.body["model"], "text-embedding-3-small");
    assert_eq!(seen.body["input"], json!(["a", "b"]));
    assert_upstream_credentials(&seen);

    assert_eq!(upstream.count(), 3);
}

#[tokio::test]
async fn wrong_kind_and_unknown_endpoint_are_refused_before_the_upstream() {
    let (upstream, gw) = fixture().await;
    let mismatch = send(post(
        &gw,
        "/v1/embeddings",
        json!({"model": "chat", "input": "x"}),
    ))
    .await;
    assert_eq!(mismatch.status, 400);
    assert_eq!(mismatch.code(), "endpoint_kind_mismatch");
    let unknown = send(post(&gw, "/v1/chat/completions", chat_body("nope"))).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.code(), "model_not_found");
    let no_model = send(post(
        &gw,
        "/v1/chat/completions",
        json!({"messages": [{"role": "user", "content": "hi"}]}),
    ))
    .await;
    assert_eq!(no_model.status, 400);
    assert_eq!(no_model.body["error"]["param"], "model");
    let route = send(get(&gw, "/v2/nothing")).await;
    assert_eq!(route.status, 404);
    assert_timing_headers(&route);
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn models_lists_every_endpoint_on_both_prefixes() {
    let (upstream, gw) = fixture().await;
    for path in ["/v1/models", "/gateway/mlflow/v1/models"] {
        let reply = send(get(&gw, path)).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
        assert_eq!(reply.body["object"], "list");
        let data = reply.body["data"].as_array().unwrap();
        let ids: Vec<&str> = data.iter().map(|m| m["id"].as_str().unwrap()).collect();
        assert_eq!(
            ids,
            ["chat", "completions", "embeddings", "custom"],
            "{path}"
        );
        assert!(data.iter().all(|m| m["object"] == "model"));
    }
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn mlflow_v1_prefix_serves_chat_and_embeddings() {
    let (upstream, gw) = fixture().await;
    let chat = send(post(
        &gw,
        "/gateway/mlflow/v1/chat/completions",
        chat_body("chat"),
    ))
    .await;
    assert_eq!(chat.status, 200, "{}", chat.text);
    assert_eq!(chat.body["object"], "chat.completion");
    assert_eq!(chat.body["provider"], "openai");
    let seen = last(&upstream);
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(seen.body["model"], "gpt-4o-mini");
    assert_upstream_credentials(&seen);

    let embedding = send(post(
        &gw,
        "/gateway/mlflow/v1/embeddings",
        json!({"model": "embeddings", "input": "hello"}),
    ))
    .await;
    assert_eq!(embedding.status, 200, "{}", embedding.text);
    assert_eq!(
        embedding.body["data"][0]["embedding"],
        json!([0.1, 0.2, 0.3])
    );
    let seen = last(&upstream);
    assert_eq!(seen.path, "/v1/embeddings");
    assert_eq!(seen.body["model"], "text-embedding-3-small");
    assert_upstream_credentials(&seen);

    let completion = send(post(
        &gw,
        "/gateway/mlflow/v1/completions",
        json!({"model": "completions", "prompt": "p"}),
    ))
    .await;
    assert_eq!(completion.status, 200, "{}", completion.text);
    assert_eq!(last(&upstream).path, "/v1/completions");
}

#[tokio::test]
async fn mlflow3_invocations_choose_the_operation_from_the_body() {
    let (upstream, gw) = fixture().await;
    let chat = send(post(
        &gw,
        "/gateway/chat/mlflow/invocations",
        json!({"messages": [{"role": "user", "content": "hi"}], "temperature": 0.1}),
    ))
    .await;
    assert_eq!(chat.status, 200, "{}", chat.text);
    assert_eq!(chat.body["object"], "chat.completion");
    assert_eq!(chat.body["provider"], "openai");
    let seen = last(&upstream);
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(seen.body["model"], "gpt-4o-mini");
    assert_eq!(seen.body["temperature"], 0.1);
    assert_upstream_credentials(&seen);

    let embedding = send(post(
        &gw,
        "/gateway/embeddings/mlflow/invocations",
        json!({"input": ["one", "two"]}),
    ))
    .await;
    assert_eq!(embedding.status, 200, "{}", embedding.text);
    assert_eq!(embedding.body["object"], "list");
    let seen = last(&upstream);
    assert_eq!(seen.path, "/v1/embeddings");
    assert_eq!(seen.body["model"], "text-embedding-3-small");
    assert_eq!(seen.body["input"], json!(["one", "two"]));

    // The endpoint's kind must match what the body asks for.
    let mismatch = send(post(
        &gw,
        "/gateway/chat/mlflow/invocations",
        json!({"input": "x"}),
    ))
    .await;
    assert_eq!(mismatch.status, 400);
    assert_eq!(mismatch.code(), "endpoint_kind_mismatch");
    let unclear = send(post(
        &gw,
        "/gateway/chat/mlflow/invocations",
        json!({"foo": 1}),
    ))
    .await;
    assert_eq!(unclear.status, 400);
    assert_eq!(unclear.code(), "invalid_request");
    assert_eq!(upstream.count(), 2);
}

#[tokio::test]
async fn openai_passthrough_keeps_the_native_shape() {
    let (upstream, gw) = fixture().await;

    let chat = send(post(
        &gw,
        "/gateway/openai/v1/chat/completions",
        chat_body("chat"),
    ))
    .await;
    assert_eq!(chat.status, 200, "{}", chat.text);
    assert_eq!(chat.body["object"], "chat.completion");
    assert!(
        chat.body.get("provider").is_none(),
        "passthrough added provider: {}",
        chat.text
    );
    let seen = last(&upstream);
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(seen.body["model"], "gpt-4o-mini");
    assert_upstream_credentials(&seen);

    let embedding = send(post(
        &gw,
        "/gateway/openai/v1/embeddings",
        json!({"model": "embeddings", "input": "x", "encoding_format": "float"}),
    ))
    .await;
    assert_eq!(embedding.status, 200, "{}", embedding.text);
    assert!(embedding.body.get("provider").is_none());
    let seen = last(&upstream);
    assert_eq!(seen.path, "/v1/embeddings");
    assert_eq!(seen.body["model"], "text-embedding-3-small");
    assert_eq!(seen.body["encoding_format"], "float");
    assert_upstream_credentials(&seen);

    let responses = send(
        post(
            &gw,
            "/gateway/openai/v1/responses",
            json!({"model": "chat", "input": "Tell me a joke", "instructions": "be brief"}),
        )
        .header("x-request-id", "routes-responses-1"),
    )
    .await;
    assert_eq!(responses.status, 200, "{}", responses.text);
    assert_eq!(responses.body["object"], "response");
    assert_eq!(
        responses.body["output"][0]["content"][0]["text"],
        "Hello from responses"
    );
    assert!(responses.body.get("provider").is_none());
    let seen = last(&upstream);
    assert_eq!(seen.path, "/v1/responses");
    assert_eq!(seen.body["model"], "gpt-4o-mini");
    assert_eq!(seen.body["instructions"], "be brief");
    assert_upstream_credentials(&seen);

    let record = gw.usage.wait_for_request("routes-responses-1").await;
    assert_eq!(record.route, RouteKind::Passthrough);
    assert_eq!(record.usage.input_tokens, upstream::PROMPT_TOKENS);
    assert_eq!(record.usage.cached_tokens, upstream::CACHED_TOKENS);
    assert_eq!(record.usage.output_tokens, upstream::COMPLETION_TOKENS);

    // The unified route adds `provider`; the passthrough route above did not.
    let unified = send(post(&gw, "/v1/chat/completions", chat_body("chat"))).await;
    assert_eq!(unified.body["provider"], "openai");
}

#[tokio::test]
async fn raw_proxy_forwards_path_and_query_and_swaps_credentials() {
    let (upstream, gw) = fixture().await;
    let reply = send(
        get(&gw, "/gateway/proxy/chat/files?limit=2")
            .header("x-request-id", "routes-proxy-1")
            .header("openai-beta", "assistants=v2")
            .header("api-key", "client-azure-key"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["path"], "/v1/files");
    assert_eq!(reply.body["method"], "GET");
    assert_eq!(reply.header("x-request-id"), "routes-proxy-1");
    assert_timing_headers(&reply);
    let seen = last(&upstream);
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.path, "/v1/files");
    assert_eq!(seen.query.as_deref(), Some("limit=2"));
    assert_upstream_credentials(&seen);
    assert_eq!(seen.headers.get("openai-beta").unwrap(), "assistants=v2");
    assert!(seen.headers.get("api-key").is_none());

    // A POST through the proxy is sent as it came: the body is not rewritten.
    let raw = r#"{"model":"whatever-the-client-says","messages":[{"role":"user","content":"hi"}]}"#;
    let reply = send(
        client()
            .post(gw.url("/gateway/proxy/chat/chat/completions"))
            .header("x-api-key", GW_KEY)
            .header("content-type", "application/json")
            .body(raw),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["model"], "whatever-the-client-says");
    let seen = last(&upstream);
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(seen.raw, raw);
    assert_upstream_credentials(&seen);

    let record = gw.usage.wait_for_request("routes-proxy-1").await;
    assert_eq!(record.route, RouteKind::Proxy);
    assert_eq!(record.endpoint.as_deref(), Some("chat"));
    assert_eq!(record.status, 200);
    assert_eq!(record.cost_micros, None);

    let unknown = send(get(&gw, "/gateway/proxy/nope/files")).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.code(), "model_not_found");
    assert_eq!(upstream.count(), 2);
}

#[tokio::test]
async fn raw_proxy_connects_with_the_targets_connect_timeout() {
    // The top level's 30 s connect timeout would outlast the test; the target's 200 ms one
    // ends the connect to an address that never answers (see `common::BlackHole`).
    let hole = common::BlackHole::start().await;
    let yaml = format!(
        "auth: none\ntimeouts: {{connect: 30s}}\nendpoints:\n  - name: hole\n    kind: chat\n    targets:\n      - {{provider: openai, model: m, api_base: 'http://{}/v1', credentials: {{api_key: $UPSTREAM_KEY}}, timeouts: {{connect: 200ms}}}}\n",
        hole.addr()
    );
    let gw = TestGateway::from_yaml(&yaml, &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let reply = send(
        client()
            .get(gw.url("/gateway/proxy/hole/files"))
            .header("x-request-id", "proxy-connect"),
    )
    .await;
    assert_eq!(reply.status, 504, "{}", reply.text);
    assert_eq!(reply.code(), "upstream_timeout");
    assert!(reply.text.contains("connect timeout"), "{}", reply.text);
    let record = gw.usage.wait_for_request("proxy-connect").await;
    assert_eq!(record.route, RouteKind::Proxy);
    assert_eq!(record.error_type, Some("upstream_timeout"));
}

#[tokio::test]
async fn mlflow2_invocations_serve_chat_completions_and_embeddings() {
    let (upstream, gw) = fixture().await;

    let chat = send(post(
        &gw,
        "/endpoints/chat/invocations",
        json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}),
    ))
    .await;
    assert_eq!(chat.status, 200, "{}", chat.text);
    assert_eq!(
        chat.body["choices"][0]["message"]["content"],
        "Hello from upstream"
    );
    let seen = last(&upstream);
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(seen.body["model"], "gpt-4o-mini");
    assert_eq!(seen.body["max_tokens"], 3);
    assert_upstream_credentials(&seen);

    let completion = send(post(
        &gw,
        "/endpoints/completions/invocations",
        json!({"prompt": "Once upon a time", "temperature": 0.0}),
    ))
    .await;
    assert_eq!(completion.status, 200, "{}", completion.text);
    assert_eq!(completion.body["choices"][0]["text"], "completed text");
    let seen = last(&upstream);
    assert_eq!(seen.path, "/v1/completions");
    assert_eq!(seen.body["model"], "gpt-3.5-turbo-instruct");
    assert_eq!(seen.body["prompt"], "Once upon a time");

    let input = send(post(
        &gw,
        "/endpoints/embeddings/invocations",
        json!({"input": "hello"}),
    ))
    .await;
    assert_eq!(input.status, 200, "{}", input.text);
    assert_eq!(input.body["data"][0]["embedding"], json!([0.1, 0.2, 0.3]));
    let seen = last(&upstream);
    assert_eq!(seen.path, "/v1/embeddings");
    assert_eq!(seen.body["input"], "hello");

    // MLflow 2.x clients name the embeddings input `text`.
    let text = send(post(
        &gw,
        "/endpoints/embeddings/invocations",
        json!({"text": ["a", "b"]}),
    ))
    .await;
    assert_eq!(text.status, 200, "{}", text.text);
    let seen = last(&upstream);
    assert_eq!(seen.path, "/v1/embeddings");
    assert_eq!(seen.body["model"], "text-embedding-3-small");
    assert_eq!(seen.body["input"], json!(["a", "b"]));
    assert!(seen.body.get("text").is_none(), "{}", seen.raw);
    assert_upstream_credentials(&seen);
    assert_eq!(upstream.count(), 4);
}

#[tokio::test]
async fn mlflow2_list_endpoints_pages_through_every_endpoint_once() {
    let (_upstream, gw) = fixture().await;
    let all = send(get(&gw, "/api/2.0/endpoints/")).await;
    assert_eq!(all.status, 200, "{}", all.text);
    assert_eq!(all.body["endpoints"].as_array().unwrap().len(), 4);
    assert!(all.body.get("next_page_token").is_none());

    for size in [1, 3] {
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut path = format!("/api/2.0/endpoints/?max_results={size}");
            if let Some(token) = &token {
                path += &format!("&page_token={token}");
            }
            let page = send(get(&gw, &path)).await;
            assert_eq!(page.status, 200, "{}", page.text);
            let endpoints = page.body["endpoints"].as_array().unwrap();
            assert!(endpoints.len() <= size, "page larger than max_results");
            names.extend(
                endpoints
                    .iter()
                    .map(|e| e["name"].as_str().unwrap().to_owned()),
            );
            pages += 1;
            assert!(pages <= 10, "paging does not end");
            match page.body.get("next_page_token").and_then(Value::as_str) {
                Some(next) => token = Some(next.to_owned()),
                None => break,
            }
        }
        assert_eq!(
            names,
            ["chat", "completions", "embeddings", "custom"],
            "max_results={size}"
        );
        assert_eq!(pages, 4usize.div_ceil(size), "max_results={size}");
    }

    // Without the trailing slash too.
    let bare = send(get(&gw, "/api/2.0/endpoints?max_results=2")).await;
    assert_eq!(bare.status, 200);
    assert_eq!(bare.body["endpoints"].as_array().unwrap().len(), 2);
    assert!(bare.body["next_page_token"].is_string());

    let bad = send(get(&gw, "/api/2.0/endpoints/?page_token=garbage")).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["error"]["param"], "page_token");
}

#[tokio::test]
async fn mlflow2_get_endpoint_describes_it() {
    let (_upstream, gw) = fixture().await;
    let chat = send(get(&gw, "/api/2.0/endpoints/chat")).await;
    assert_eq!(chat.status, 200, "{}", chat.text);
    assert_eq!(
        chat.body,
        json!({
            "name": "chat",
            "endpoint_type": "llm/v1/chat",
            "model": {"name": "gpt-4o-mini", "provider": "openai"},
            "endpoint_url": "/endpoints/chat/invocations",
            "limit": null,
        })
    );
    let embeddings = send(get(&gw, "/api/2.0/endpoints/embeddings")).await;
    assert_eq!(embeddings.body["endpoint_type"], "llm/v1/embeddings");
    assert_eq!(embeddings.body["model"]["name"], "text-embedding-3-small");
    let completions = send(get(&gw, "/api/2.0/endpoints/completions")).await;
    assert_eq!(completions.body["endpoint_type"], "llm/v1/completions");
    let custom = send(get(&gw, "/api/2.0/endpoints/custom")).await;
    assert_eq!(
        custom.body["limit"],
        json!({"calls": 1000, "renewal_period": "hour"})
    );
    assert_eq!(custom.body["endpoint_url"], "/endpoints/custom/invocations");
    let missing = send(get(&gw, "/api/2.0/endpoints/nope")).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.code(), "model_not_found");
}

#[tokio::test]
async fn health_liveness_and_readiness() {
    let (upstream, gw) = fixture().await;
    // Health routes need no key.
    let health = send(client().get(gw.url("/health"))).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.body, json!({"status": "OK"}));
    assert_timing_headers(&health);
    let live = send(client().get(gw.url("/healthz"))).await;
    assert_eq!(live.status, 200);
    assert_eq!(live.body["status"], "ok");

    let ready = send(client().get(gw.url("/readyz"))).await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    assert_eq!(ready.body["status"], "ready");
    assert_eq!(ready.body["endpoints"], 4);
    let first = ready.body["config_generation"].as_u64().unwrap();

    // A reload bumps the generation readiness reports.
    let yaml = format!(
        "auth: none\nendpoints:\n{}",
        endpoint("chat", "chat", "openai", "gpt-4o-mini", &upstream.base())
    );
    let applied = gw
        .gateway
        .apply(common::config(&yaml, &[("UPSTREAM_KEY", UPSTREAM_KEY)]));
    let ready = send(client().get(gw.url("/readyz"))).await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.body["config_generation"].as_u64(), Some(applied));
    assert!(applied > first);
    assert_eq!(ready.body["endpoints"], 1);

    // Once draining has begun, readiness fails while liveness holds.
    gw.gateway.start_draining();
    let draining = send(client().get(gw.url("/readyz"))).await;
    assert_eq!(draining.status, 503, "{}", draining.text);
    assert_eq!(draining.body["status"], "draining");
    let live = send(client().get(gw.url("/healthz"))).await;
    assert_eq!(live.status, 200);
    assert!(gw.shutdown().await);
}

#[tokio::test]
async fn azure_target_uses_deployment_url_and_api_key_header() {
    let upstream = Upstream::start().await;
    let yaml = format!(
        "auth: none
endpoints:
  - name: azure-chat
    kind: chat
    targets:
      - provider: azure
        model: gpt-4o-mini
        api_base: \"{}\"
        azure: {{deployment: my-dep, api_version: 2024-10-21}}
        credentials: {{api_key: $UPSTREAM_KEY}}
  - name: azure-embed
    kind: embeddings
    targets:
      - provider: azure
        model: text-embedding-3-small
        api_base: \"{}\"
        azure: {{api_version: 2024-10-21}}
        credentials: {{api_key: $UPSTREAM_KEY}}
",
        upstream.root(),
        upstream.root()
    );
    let gw = TestGateway::from_yaml(&yaml, &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let reply = send(
        client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth("client-token-not-for-azure")
            .json(&chat_body("azure-chat")),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["provider"], "azure");
    assert_eq!(reply.header("x-floodgate-target"), "azure/gpt-4o-mini");
    let seen = last(&upstream);
    assert_eq!(seen.path, "/openai/deployments/my-dep/chat/completions");
    assert_eq!(seen.query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(seen.headers.get("api-key").unwrap(), UPSTREAM_KEY);
    assert!(seen.headers.get("authorization").is_none());

    // Without a deployment, the model names it.
    let reply = send(
        client()
            .post(gw.url("/v1/embeddings"))
            .json(&json!({"model": "azure-embed", "input": "x"})),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let seen = last(&upstream);
    assert_eq!(
        seen.path,
        "/openai/deployments/text-embedding-3-small/embeddings"
    );
    assert_eq!(seen.query.as_deref(), Some("api-version=2024-10-21"));
}

#[tokio::test]
async fn openai_compatible_providers_use_their_api_base() {
    let upstream = Upstream::start().await;
    let base = upstream.base();
    let mut yaml = String::from("auth: none\nendpoints:\n");
    let cases = [
        ("groq", "llama-3.1-8b-instant"),
        ("vllm", "meta-llama/Llama-3.1-8B-Instruct"),
        ("openai_compatible", "local-model"),
        ("together", "mixtral-8x7b"),
        ("deepseek", "deepseek-chat"),
        ("mistral", "mistral-small-latest"),
    ];
    for (provider, model) in cases {
        yaml += &endpoint(provider, "chat", provider, model, &base);
    }
    let gw = TestGateway::from_yaml(&yaml, &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    for (provider, model) in cases {
        let reply = send(
            client()
                .post(gw.url("/v1/chat/completions"))
                .json(&chat_body(provider)),
        )
        .await;
        assert_eq!(reply.status, 200, "{provider}: {}", reply.text);
        assert_eq!(reply.body["provider"], provider);
        assert_eq!(
            reply.header("x-floodgate-target"),
            format!("{provider}/{model}")
        );
        let seen = last(&upstream);
        assert_eq!(seen.path, "/v1/chat/completions", "{provider}");
        assert_eq!(seen.body["model"], model, "{provider}");
        assert_upstream_credentials(&seen);
    }
}

/// Reads an SSE body and returns its `data:` payloads.
fn sse_data(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .collect()
}

#[tokio::test]
async fn stream_options_are_asked_of_openai_but_never_sent_to_mistral() {
    let upstream = Upstream::start().await;
    let base = upstream.base();
    let mut yaml = String::from("auth: none\nendpoints:\n");
    yaml += &endpoint("oa", "chat", "openai", "gpt-4o-mini", &base);
    yaml += &endpoint("mi", "chat", "mistral", "mistral-small-latest", &base);
    let gw = TestGateway::from_yaml(&yaml, &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let streamed = |model: &str, extra: Value| {
        let mut body = chat_body(model);
        body["stream"] = json!(true);
        if let Value::Object(extra) = extra {
            body.as_object_mut().unwrap().extend(extra);
        }
        client().post(gw.url("/v1/chat/completions")).json(&body)
    };

    // OpenAI: usage is always asked for upstream, and hidden from a client that did not ask.
    let reply = send(streamed("oa", json!({})).header("x-request-id", "routes-stream-oa")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(
        reply
            .header("content-type")
            .starts_with("text/event-stream")
    );
    let data = sse_data(&reply.text);
    assert_eq!(data.last(), Some(&"[DONE]"));
    assert!(!reply.text.contains("prompt_tokens"), "{}", reply.text);
    let seen = last(&upstream);
    assert_eq!(seen.body["stream"], true);
    assert_eq!(seen.body["stream_options"]["include_usage"], true);
    assert_eq!(seen.headers.get("accept").unwrap(), "text/event-stream");
    let record = gw.usage.wait_for_request("routes-stream-oa").await;
    assert!(record.streamed);
    assert_eq!(record.status, 200);
    assert_eq!(record.usage.input_tokens, upstream::PROMPT_TOKENS);
    assert_eq!(record.usage.output_tokens, upstream::COMPLETION_TOKENS);
    assert_eq!(record.usage.cached_tokens, upstream::CACHED_TOKENS);

    // A client that asks for usage gets the usage chunk.
    let reply = send(streamed(
        "oa",
        json!({"stream_options": {"include_usage": true}}),
    ))
    .await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.text.contains("\"prompt_tokens\":11"),
        "{}",
        reply.text
    );

    // Mistral: never `stream_options`, whether or not the client sent it.
    for extra in [
        json!({}),
        json!({"stream_options": {"include_usage": true}}),
    ] {
        let reply = send(streamed("mi", extra.clone())).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(sse_data(&reply.text).last(), Some(&"[DONE]"));
        let seen = last(&upstream);
        assert_eq!(seen.body["model"], "mistral-small-latest");
        assert_eq!(seen.body["stream"], true);
        assert!(
            seen.body.get("stream_options").is_none(),
            "mistral received stream_options (client sent {extra}): {}",
            seen.raw
        );
    }
}

#[tokio::test]
async fn builtin_mock_provider_answers_without_a_network() {
    let gw = TestGateway::from_yaml(
        "auth: none
endpoints:
  - {name: chat, kind: chat, targets: [{provider: mock, model: echo}]}
  - {name: completions, kind: completions, targets: [{provider: mock, model: echo}]}
  - {name: embeddings, kind: embeddings, targets: [{provider: mock, model: echo}]}
",
        &[],
    )
    .await;
    let chat = send(
        client()
            .post(gw.url("/v1/chat/completions"))
            .header("x-request-id", "routes-mock-chat")
            .json(&json!({"model": "chat", "messages": [
                {"role": "system", "content": "be nice"},
                {"role": "user", "content": "first question"},
                {"role": "assistant", "content": "first answer"},
                {"role": "user", "content": "hello there gateway"},
            ]})),
    )
    .await;
    assert_eq!(chat.status, 200, "{}", chat.text);
    assert_eq!(chat.body["object"], "chat.completion");
    assert_eq!(
        chat.body["choices"][0]["message"]["content"],
        "hello there gateway"
    );
    assert_eq!(chat.body["choices"][0]["finish_reason"], "stop");
    assert_eq!(chat.body["provider"], "mock");
    assert_eq!(chat.body["usage"]["completion_tokens"], 3);
    assert_eq!(chat.header("x-floodgate-target"), "mock/echo");
    let record = gw.usage.wait_for_request("routes-mock-chat").await;
    assert_eq!(record.provider, Some("mock"));
    assert_eq!(record.usage.output_tokens, 3);
    assert!(record.cost_micros.is_some_and(|c| c > 0));

    let completion = send(
        client()
            .post(gw.url("/v1/completions"))
            .json(&json!({"model": "completions", "prompt": "say this back"})),
    )
    .await;
    assert_eq!(completion.status, 200, "{}", completion.text);
    assert_eq!(completion.body["object"], "text_completion");
    assert_eq!(completion.body["choices"][0]["text"], "say this back");

    let embedding = send(
        client()
            .post(gw.url("/v1/embeddings"))
            .json(&json!({"model": "embeddings", "input": ["abc", "def"]})),
    )
    .await;
    assert_eq!(embedding.status, 200, "{}", embedding.text);
    let data = embedding.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["index"], 1);
    assert_eq!(data[0]["embedding"].as_array().unwrap().len(), 8);
    assert_ne!(data[0]["embedding"], data[1]["embedding"]);

    // The raw proxy needs a network provider.
    let proxied = send(client().get(gw.url("/gateway/proxy/chat/files"))).await;
    assert_eq!(proxied.status, 400);
    assert_eq!(proxied.code(), "unsupported_operation");
}

#[tokio::test]
async fn request_id_timing_and_target_headers_on_every_answer() {
    let (_upstream, gw) = fixture().await;
    let chosen = send(
        post(&gw, "/v1/chat/completions", chat_body("chat"))
            .header("x-request-id", "client-chosen-id-123"),
    )
    .await;
    assert_eq!(chosen.status, 200);
    assert_eq!(chosen.header("x-request-id"), "client-chosen-id-123");
    assert_eq!(chosen.header("x-floodgate-target"), "openai/gpt-4o-mini");
    assert_timing_headers(&chosen);

    let generated = send(post(&gw, "/v1/chat/completions", chat_body("chat"))).await;
    let id = generated.header("x-request-id").to_owned();
    assert_eq!(id.len(), 36, "not a UUID: {id}");
    assert_eq!(id.matches('-').count(), 4, "not a UUID: {id}");
    assert_timing_headers(&generated);
    // The generated id is the one the usage record carries.
    let record = gw.usage.wait_for_request(&id).await;
    assert_eq!(record.endpoint.as_deref(), Some("chat"));
    let again = send(post(&gw, "/v1/chat/completions", chat_body("chat"))).await;
    assert_ne!(again.header("x-request-id"), id);

    // An unusable client id is replaced.
    let replaced = send(
        post(&gw, "/v1/chat/completions", chat_body("chat"))
            .header("x-request-id", "a".repeat(200)),
    )
    .await;
    assert_eq!(replaced.header("x-request-id").len(), 36);

    // Errors carry them too, and so do the other route families.
    let unauthorized = send(
        client()
            .post(gw.url("/v1/chat/completions"))
            .header("x-request-id", "routes-401")
            .json(&chat_body("chat")),
    )
    .await;
    assert_eq!(unauthorized.status, 401);
    assert_eq!(unauthorized.header("x-request-id"), "routes-401");
    assert_timing_headers(&unauthorized);
    for reply in [
        send(get(&gw, "/v1/models")).await,
        send(get(&gw, "/api/2.0/endpoints/")).await,
        send(get(&gw, "/gateway/proxy/chat/files")).await,
        send(post(&gw, "/endpoints/chat/invocations", chat_body("x"))).await,
        send(post(
            &gw,
            "/gateway/openai/v1/embeddings",
            json!({"model": "embeddings", "input": "x"}),
        ))
        .await,
    ] {
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_timing_headers(&reply);
    }
}

#[tokio::test]
async fn usage_record_has_tokens_and_cost_from_the_price_table() {
    let (_upstream, gw) = fixture().await;
    let reply = send(
        post(&gw, "/v1/chat/completions", chat_body("chat"))
            .header("x-request-id", "routes-usage-1"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let record = gw.usage.wait_for_request("routes-usage-1").await;
    assert_eq!(record.route, RouteKind::Unified);
    assert_eq!(record.endpoint.as_deref(), Some("chat"));
    assert_eq!(record.provider, Some("openai"));
    assert_eq!(record.model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(record.key_id.as_deref(), Some("tester"));
    assert_eq!(record.status, 200);
    assert_eq!(record.error_type, None);
    assert!(!record.streamed);
    assert!(!record.client_cancelled);
    assert_eq!(record.usage.input_tokens, 11);
    assert_eq!(record.usage.output_tokens, 7);
    assert_eq!(record.usage.cached_tokens, 3);
    // gpt-4o-mini: $0.15/M input, $0.075/M cached input, $0.60/M output, in micro-dollars
    // per million tokens; the exact sum is rounded up to a whole micro-dollar once.
    let (input, cached, output) = (150_000u64, 75_000u64, 600_000u64);
    let exact = (11 - 3) * input + 3 * cached + 7 * output;
    let expected = exact.div_ceil(1_000_000);
    assert_eq!(exact, 5_625_000);
    assert_eq!(expected, 6);
    assert_eq!(record.cost_micros, Some(expected));
    assert!(record.total_latency_us >= record.upstream_latency_us);

    // A model the price table does not know has an unknown cost, not a zero one.
    let reply = send(
        post(&gw, "/v1/chat/completions", chat_body("custom"))
            .header("x-request-id", "routes-usage-2"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.header("x-floodgate-target"), "openai/house-model-x");
    let record = gw.usage.wait_for_request("routes-usage-2").await;
    assert_eq!(record.model.as_deref(), Some("house-model-x"));
    assert_eq!(record.usage.input_tokens, 11);
    assert_eq!(record.cost_micros, None);

    // A refused request has a record too.
    let refused = send(
        post(&gw, "/v1/chat/completions", chat_body("nope"))
            .header("x-request-id", "routes-usage-3"),
    )
    .await;
    assert_eq!(refused.status, 404);
    let record = gw.usage.wait_for_request("routes-usage-3").await;
    assert_eq!(record.status, 404);
    assert_eq!(record.error_type, Some("model_not_found"));
}
