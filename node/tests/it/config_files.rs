//! Config files: MLflow 2.x gateway YAML served unchanged (chat, completions, embeddings, its
//! `limit`, Azure, key files), and config errors that name the field, report every problem
//! at once, and never print an environment-supplied secret.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::common;
use crate::common::upstream::{UPSTREAM_KEY, Upstream};
use crate::common::{TestGateway, client, send};
use floodgate::config::{self, ConfigError, Mode};
use serde_json::json;

/// An MLflow 2.x gateway config, as `mlflow gateway start --config-path` reads it, with
/// Floodgate's own top-level keys (and one native endpoint) beside it.
fn mlflow_yaml(base: &str) -> String {
    format!(
        r#"auth: none
limits:
  max_body_bytes: 1048576
timeouts:
  first_byte: 30s
prices:
  - {{model: gpt-4o-mini, input: 1.00, output: 2.00}}
endpoints:
  - name: chat
    endpoint_type: llm/v1/chat
    model:
      provider: openai
      name: gpt-4o-mini
      config:
        openai_api_key: $UPSTREAM_KEY
        openai_api_base: "{base}"
  - name: completions
    endpoint_type: llm/v1/completions
    model:
      provider: openai
      name: gpt-3.5-turbo-instruct
      config:
        openai_api_key: $UPSTREAM_KEY
        openai_api_base: "{base}"
  - name: embeddings
    endpoint_type: llm/v1/embeddings
    model:
      provider: openai
      name: text-embedding-3-small
      config:
        openai_api_key: $UPSTREAM_KEY
        openai_api_base: "{base}"
  - name: limited
    endpoint_type: llm/v1/chat
    model:
      provider: openai
      name: gpt-4o-mini
      config:
        openai_api_key: $UPSTREAM_KEY
        openai_api_base: "{base}"
    limit:
      renewal_period: minute
      calls: 2
  - name: old-style
    route_type: llm/v1/chat
    model:
      provider: openai
      name: gpt-4o
      config:
        openai_api_key: ${{UPSTREAM_KEY}}
        openai_api_base: "{base}"
  - name: native
    kind: chat
    targets:
      - {{provider: mock, model: echo}}
"#
    )
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[tokio::test]
async fn mlflow2_gateway_yaml_serves_chat_completions_and_embeddings() {
    let upstream = Upstream::start().await;
    let gw = TestGateway::from_yaml(
        &mlflow_yaml(&upstream.base()),
        &[("UPSTREAM_KEY", UPSTREAM_KEY)],
    )
    .await;
    let bearer = format!("Bearer {UPSTREAM_KEY}");

    let chat = send(
        client()
            .post(gw.url("/endpoints/chat/invocations"))
            .header("x-request-id", "mlflow-chat")
            .json(&json!({"messages": [{"role": "user", "content": "hi"}], "temperature": 0.5})),
    )
    .await;
    assert_eq!(chat.status, 200, "{}", chat.text);
    // The `prices` override beside the MLflow entries is used: $1/M input (cached input
    // defaults to the input price), $2/M output: 11 * 1 + 7 * 2 = 25 micro-dollars.
    let record = gw.usage.wait_for_request("mlflow-chat").await;
    assert_eq!(record.endpoint.as_deref(), Some("chat"));
    assert_eq!(record.cost_micros, Some(25));
    assert_eq!(
        chat.body["choices"][0]["message"]["content"],
        "Hello from upstream"
    );
    let seen = upstream.seen().pop().unwrap();
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(seen.body["model"], "gpt-4o-mini");
    assert_eq!(seen.headers.get("authorization").unwrap(), &bearer);

    let completion = send(
        client()
            .post(gw.url("/v1/completions"))
            .json(&json!({"model": "completions", "prompt": "Once"})),
    )
    .await;
    assert_eq!(completion.status, 200, "{}", completion.text);
    assert_eq!(completion.body["choices"][0]["text"], "completed text");
    let seen = upstream.seen().pop().unwrap();
    assert_eq!(seen.path, "/v1/completions");
    assert_eq!(seen.body["model"], "gpt-3.5-turbo-instruct");
    assert_eq!(seen.headers.get("authorization").unwrap(), &bearer);

    let embedding = send(
        client()
            .post(gw.url("/endpoints/embeddings/invocations"))
            .json(&json!({"text": ["a", "b"]})),
    )
    .await;
    assert_eq!(embedding.status, 200, "{}", embedding.text);
    assert_eq!(
        embedding.body["data"][0]["embedding"],
        json!([0.1, 0.2, 0.3])
    );
    let seen = upstream.seen().pop().unwrap();
    assert_eq!(seen.path, "/v1/embeddings");
    assert_eq!(seen.body["model"], "text-embedding-3-small");
    assert_eq!(seen.body["input"], json!(["a", "b"]));

    // The older `route_type` spelling is read too.
    let old = send(
        client()
            .post(gw.url("/v1/chat/completions"))
            .json(&json!({"model": "old-style", "messages": [{"role": "user", "content": "hi"}]})),
    )
    .await;
    assert_eq!(old.status, 200, "{}", old.text);
    assert_eq!(upstream.seen().pop().unwrap().body["model"], "gpt-4o");

    // The deployments API describes the endpoints as MLflow wrote them.
    let listed = send(client().get(gw.url("/api/2.0/endpoints/"))).await;
    let types: Vec<(&str, &str)> = listed.body["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap(),
                e["endpoint_type"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        types,
        [
            ("chat", "llm/v1/chat"),
            ("completions", "llm/v1/completions"),
            ("embeddings", "llm/v1/embeddings"),
            ("limited", "llm/v1/chat"),
            ("old-style", "llm/v1/chat"),
            ("native", "llm/v1/chat"),
        ]
    );
    let limited = send(client().get(gw.url("/api/2.0/endpoints/limited"))).await;
    assert_eq!(
        limited.body["limit"],
        json!({"calls": 2, "renewal_period": "minute"})
    );
    assert_eq!(limited.body["model"]["provider"], "openai");

    // The native endpoint beside them serves too.
    let native = send(
        client()
            .post(gw.url("/endpoints/native/invocations"))
            .json(&json!({"messages": [{"role": "user", "content": "echo me"}]})),
    )
    .await;
    assert_eq!(native.status, 200, "{}", native.text);
    assert_eq!(native.body["choices"][0]["message"]["content"], "echo me");

    // And the other top-level keys took effect, for MLflow entries too.
    let runtime = gw.gateway.runtime();
    assert_eq!(runtime.config.limits.max_body_bytes, 1_048_576);
    assert_eq!(
        runtime.config.endpoints["chat"].timeouts.first_byte,
        std::time::Duration::from_secs(30)
    );
}

/// Seconds into the current minute, wall clock.
fn second_of_minute() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60
}

#[tokio::test]
async fn mlflow_limit_refuses_the_third_call_in_a_minute() {
    let upstream = Upstream::start().await;
    let gw = TestGateway::from_yaml(
        &mlflow_yaml(&upstream.base()),
        &[("UPSTREAM_KEY", UPSTREAM_KEY)],
    )
    .await;
    // The window is the wall-clock minute: keep all three calls inside one.
    common::wait_until("a fresh minute window", || {
        (second_of_minute() < 52).then_some(())
    })
    .await;
    let call = || {
        client()
            .post(gw.url("/endpoints/limited/invocations"))
            .json(&json!({"messages": [{"role": "user", "content": "hi"}]}))
    };
    for remaining in ["1", "0"] {
        let ok = send(call()).await;
        assert_eq!(ok.status, 200, "{}", ok.text);
        assert_eq!(ok.header("x-ratelimit-limit"), "2");
        assert_eq!(ok.header("x-ratelimit-remaining"), remaining);
        let reset: u64 = ok.header("x-ratelimit-reset").parse().unwrap();
        assert!(reset <= 60, "reset {reset}");
    }
    let refused = send(call().header("x-request-id", "limit-429")).await;
    assert_eq!(refused.status, 429, "{}", refused.text);
    assert_eq!(refused.body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(refused.body["error"]["type"], "rate_limit_error");
    let retry_after: u64 = refused.header("retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry_after), "retry-after {retry_after}");
    assert_eq!(refused.header("x-ratelimit-limit"), "2");
    assert_eq!(refused.header("x-ratelimit-remaining"), "0");
    let reset: u64 = refused.header("x-ratelimit-reset").parse().unwrap();
    assert!(reset <= 60, "reset {reset}");
    assert_eq!(upstream.count(), 2, "the refused call reached the upstream");
    let record = gw.usage.wait_for_request("limit-429").await;
    assert_eq!(record.status, 429);
    assert_eq!(record.error_type, Some("rate_limit_exceeded"));
    assert_eq!(record.endpoint.as_deref(), Some("limited"));

    // Other endpoints are not limited.
    for _ in 0..3 {
        let other = send(
            client()
                .post(gw.url("/endpoints/chat/invocations"))
                .json(&json!({"messages": [{"role": "user", "content": "hi"}]})),
        )
        .await;
        assert_eq!(other.status, 200);
        assert!(other.headers.get("x-ratelimit-limit").is_none());
    }
}

#[tokio::test]
async fn mlflow_azure_config_maps_to_azure_urls() {
    let upstream = Upstream::start().await;
    let root = upstream.root();
    let yaml = format!(
        r#"auth: none
endpoints:
  - name: azure-chat
    endpoint_type: llm/v1/chat
    model:
      provider: openai
      name: gpt-4o-mini
      config:
        openai_api_type: azure
        openai_api_key: $UPSTREAM_KEY
        openai_api_base: "{root}"
        openai_deployment_name: my-dep
        openai_api_version: "2024-06-01"
  - name: azure-embed
    endpoint_type: llm/v1/embeddings
    model:
      provider: azure
      name: text-embedding-3-small
      config:
        openai_api_key: $UPSTREAM_KEY
        openai_api_base: "{root}"
        openai_deployment_name: embed-dep
        openai_api_version: "2024-10-21"
  - name: entra-chat
    endpoint_type: llm/v1/chat
    model:
      provider: openai
      name: gpt-4o
      config:
        openai_api_type: azuread
        openai_api_key: $UPSTREAM_KEY
        openai_api_base: "{root}"
        openai_deployment_name: entra-dep
        openai_api_version: "2024-06-01"
"#
    );
    let gw = TestGateway::from_yaml(&yaml, &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;

    let chat = send(
        client()
            .post(gw.url("/endpoints/azure-chat/invocations"))
            .json(&json!({"messages": [{"role": "user", "content": "hi"}]})),
    )
    .await;
    assert_eq!(chat.status, 200, "{}", chat.text);
    assert_eq!(chat.body["provider"], "azure");
    let seen = upstream.seen().pop().unwrap();
    assert_eq!(seen.path, "/openai/deployments/my-dep/chat/completions");
    assert_eq!(seen.query.as_deref(), Some("api-version=2024-06-01"));
    assert_eq!(seen.headers.get("api-key").unwrap(), UPSTREAM_KEY);
    assert!(seen.headers.get("authorization").is_none());

    let embed = send(
        client()
            .post(gw.url("/endpoints/azure-embed/invocations"))
            .json(&json!({"input": "x"})),
    )
    .await;
    assert_eq!(embed.status, 200, "{}", embed.text);
    let seen = upstream.seen().pop().unwrap();
    assert_eq!(seen.path, "/openai/deployments/embed-dep/embeddings");
    assert_eq!(seen.query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(seen.headers.get("api-key").unwrap(), UPSTREAM_KEY);

    // `azuread` sends an Entra ID token as a bearer token.
    let entra = send(
        client()
            .post(gw.url("/endpoints/entra-chat/invocations"))
            .json(&json!({"messages": [{"role": "user", "content": "hi"}]})),
    )
    .await;
    assert_eq!(entra.status, 200, "{}", entra.text);
    let seen = upstream.seen().pop().unwrap();
    assert_eq!(seen.path, "/openai/deployments/entra-dep/chat/completions");
    assert_eq!(
        seen.headers.get("authorization").unwrap(),
        &format!("Bearer {UPSTREAM_KEY}")
    );
    assert!(seen.headers.get("api-key").is_none());
}

#[tokio::test]
async fn mlflow_api_key_given_as_a_file_path_is_read() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("openai.key");
    std::fs::write(&key_file, format!("{UPSTREAM_KEY}\n")).unwrap();
    let yaml = format!(
        r#"auth: none
endpoints:
  - name: chat
    endpoint_type: llm/v1/chat
    model:
      provider: openai
      name: gpt-4o-mini
      config:
        openai_api_key: "{}"
        openai_api_base: "{}"
"#,
        key_file.display(),
        upstream.base()
    );
    let gw = TestGateway::from_yaml(&yaml, &[]).await;
    let reply = send(
        client()
            .post(gw.url("/endpoints/chat/invocations"))
            .json(&json!({"messages": [{"role": "user", "content": "hi"}]})),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let seen = upstream.seen().pop().unwrap();
    assert_eq!(
        seen.headers.get("authorization").unwrap(),
        &format!("Bearer {UPSTREAM_KEY}")
    );
}

#[test]
fn mlflow_entries_are_checked_too() {
    let cases = [
        (
            "model:\n      provider: mosaicml\n      name: mpt-7b\n      config: {mosaicml_api_key: k}",
            "endpoints[0]",
            "mosaicml",
        ),
        (
            "model:\n      provider: openai\n      name: gpt-4o\n      config: {openai_api_key: k, openai_api_bse: x}",
            "endpoints[0]",
            "openai_api_bse",
        ),
    ];
    for (model, path, word) in cases {
        let yaml = format!(
            "auth: none\nendpoints:\n  - name: e\n    endpoint_type: llm/v1/chat\n    {model}\n"
        );
        let message = load_err(&yaml, &[]).to_string();
        assert!(message.starts_with(path), "{message}");
        assert!(message.contains(word), "{message}");
    }
    let bad_type = "auth: none\nendpoints:\n  - name: e\n    endpoint_type: llm/v2/chat\n    model: {provider: openai, name: x, config: {openai_api_key: k}}\n";
    let message = load_err(bad_type, &[]).to_string();
    assert!(message.contains("llm/v2/chat"), "{message}");
    let unknown = "auth: none\nendpoints:\n  - name: e\n    endpoint_type: llm/v1/chat\n    model: {provider: openai, name: x, config: {openai_api_key: k}}\n    limits: {calls: 1, renewal_period: minute}\n";
    let message = load_err(unknown, &[]).to_string();
    assert!(message.contains("endpoints[0]"), "{message}");
    assert!(message.contains("limits"), "{message}");
}

fn load(yaml: &str, vars: &[(&str, &str)], mode: Mode) -> Result<config::Config, ConfigError> {
    config::load_str(yaml, mode, &env(vars))
}

fn load_err(yaml: &str, vars: &[(&str, &str)]) -> ConfigError {
    match load(yaml, vars, Mode::Serve) {
        Ok(_) => panic!("config was accepted:\n{yaml}"),
        Err(e) => e,
    }
}

/// A valid native endpoint to start broken variants from.
const GOOD_TARGET: &str =
    "provider: openai\n        model: gpt-4o-mini\n        credentials: {api_key: sk-test-1234}";

fn one_endpoint(name: &str, kind: &str, target: &str) -> String {
    format!(
        "auth: none\nendpoints:\n  - name: {name}\n    kind: {kind}\n    targets:\n      - {target}\n"
    )
}

#[test]
fn the_native_good_config_loads() {
    let config = load(&one_endpoint("chat", "chat", GOOD_TARGET), &[], Mode::Serve).unwrap();
    assert_eq!(config.endpoints.len(), 1);
    assert_eq!(
        config.endpoints["chat"].targets[0].api_base,
        "https://api.openai.com/v1"
    );
}

#[test]
fn unknown_field_names_its_path() {
    let yaml = "auth: none\nendpoints:\n  - name: chat\n    kind: chat\n    targets:\n      - provider: openai\n        modle: gpt-4o-mini\n        credentials: {api_key: sk-test-1234}\n";
    let message = load_err(yaml, &[]).to_string();
    assert!(
        message.contains("endpoints[0].targets[0].modle"),
        "{message}"
    );
    assert!(message.contains("unknown field"), "{message}");

    let top = "auth: none\nlisten_on: 127.0.0.1:1\n";
    let message = load_err(top, &[]).to_string();
    assert!(message.contains("listen_on"), "{message}");

    let key = "keys:\n  - {id: a, key: fg-12345678, endpoint: [chat]}\n";
    let message = load_err(key, &[]).to_string();
    assert!(message.contains("keys[0].endpoint"), "{message}");
}

#[test]
fn each_bad_field_is_named() {
    let cases = [
        (
            one_endpoint("bad name!", "chat", GOOD_TARGET),
            "endpoints[0].name",
        ),
        (
            one_endpoint("chat", "chatt", GOOD_TARGET),
            "endpoints[0].kind",
        ),
        (
            one_endpoint("chat", "chat", &format!("{GOOD_TARGET}\n        weight: 0")),
            "endpoints[0].targets[0].weight",
        ),
        (
            one_endpoint(
                "chat",
                "chat",
                "provider: openia\n        model: gpt-4o-mini\n        credentials: {api_key: sk-test-1234}",
            ),
            "endpoints[0].targets[0].provider",
        ),
        (
            one_endpoint(
                "chat",
                "chat",
                "provider: openai\n        model: gpt-4o-mini",
            ),
            "endpoints[0].targets[0].credentials.api_key",
        ),
        (
            one_endpoint(
                "chat",
                "chat",
                "provider: azure\n        model: gpt-4o-mini\n        api_base: https://x.openai.azure.com\n        credentials: {api_key: sk-test-1234}",
            ),
            "endpoints[0].targets[0].azure",
        ),
        (
            one_endpoint("chat", "chat", "provider: vllm\n        model: llama"),
            "endpoints[0].targets[0].api_base",
        ),
        (
            one_endpoint(
                "chat",
                "chat",
                &format!("{GOOD_TARGET}\n        api_base: not-a-url"),
            ),
            "endpoints[0].targets[0].api_base",
        ),
        (
            format!(
                "{}    rate_limit: {{calls: 5, renewal_period: fortnight}}\n",
                one_endpoint("chat", "chat", GOOD_TARGET)
            ),
            "endpoints[0].rate_limit.renewal_period",
        ),
        (
            format!(
                "{}    timeouts: {{total: soon}}\n",
                one_endpoint("chat", "chat", GOOD_TARGET)
            ),
            "endpoints[0].timeouts.total",
        ),
        (
            one_endpoint(
                "chat",
                "chat",
                &format!("{GOOD_TARGET}\n        weight: many"),
            ),
            "endpoints[0].targets[0].weight",
        ),
    ];
    for (yaml, path) in &cases {
        let error = load_err(yaml, &[]);
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("{path}:")),
            "expected an error at `{path}`, got:\n{message}\nfor:\n{yaml}"
        );
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let yaml = r#"keys:
  - {id: a, key: short}
endpoints:
  - name: "bad name!"
    kind: chat
    targets:
      - {provider: openai, model: gpt-4o-mini, credentials: {api_key: sk-1}}
  - name: two
    kind: chatt
    targets:
      - {provider: openai, model: gpt-4o-mini, credentials: {api_key: sk-1}, weight: 0}
  - name: three
    kind: chat
    targets:
      - {provider: openia, model: x}
      - {provider: openai, model: x}
      - {provider: azure, model: x, api_base: "https://x.openai.azure.com", credentials: {api_key: sk-1}}
  - name: two
    kind: chat
    targets:
      - {provider: mock, model: echo}
"#;
    let error = load_err(yaml, &[]);
    let ConfigError::Many(all) = &error else {
        panic!("expected several problems, got: {error}");
    };
    let message = error.to_string();
    for path in [
        "keys[0].key:",
        "endpoints[0].name:",
        "endpoints[1].kind:",
        "endpoints[1].targets[0].weight:",
        "endpoints[2].targets[0].provider:",
        "endpoints[2].targets[1].credentials.api_key:",
        "endpoints[2].targets[2].azure:",
        "endpoints[3].name:",
    ] {
        assert!(message.contains(path), "`{path}` missing from:\n{message}");
    }
    assert!(all.len() >= 8, "{message}");
    assert_eq!(message.lines().count(), all.len(), "{message}");
}

#[test]
fn missing_environment_variable_names_variable_and_field() {
    let yaml = "auth: none\nendpoints:\n  - name: chat\n    kind: chat\n    targets:\n      - provider: openai\n        model: gpt-4o-mini\n        credentials:\n          api_key: ${OPENAI_KEY_NOT_SET}\n";
    let message = load_err(yaml, &[("OTHER", "x")]).to_string();
    assert!(message.contains("OPENAI_KEY_NOT_SET"), "{message}");
    assert!(
        message.contains("endpoints[0].targets[0].credentials.api_key"),
        "{message}"
    );
    // The same file loads once the variable is set.
    load(yaml, &[("OPENAI_KEY_NOT_SET", "sk-real-1")], Mode::Serve).unwrap();
}

#[test]
fn serve_mode_requires_keys_or_an_explicit_auth_none() {
    let endpoints =
        "endpoints:\n  - {name: chat, kind: chat, targets: [{provider: mock, model: echo}]}\n";
    let error = load(endpoints, &[], Mode::Serve).unwrap_err();
    let message = error.to_string();
    assert!(message.starts_with("auth:"), "{message}");
    assert!(message.contains("keys"), "{message}");
    // An empty file too.
    assert!(load("", &[], Mode::Serve).is_err());

    assert!(load(endpoints, &[], Mode::Dev).is_ok());
    assert!(load(&format!("auth: none\n{endpoints}"), &[], Mode::Serve).is_ok());
    let keyed = format!("keys:\n  - {{id: a, key: $K}}\n{endpoints}");
    let config = load(&keyed, &[("K", "fg-0123456789")], Mode::Serve).unwrap();
    assert!(matches!(config.auth, config::Auth::Keys(ref keys) if keys.len() == 1));
    // `auth: keys` with no keys is refused in any mode.
    assert!(load(&format!("auth: keys\n{endpoints}"), &[], Mode::Dev).is_err());
}

#[test]
fn errors_never_contain_environment_secrets() {
    const SECRET: &str = "sk-live.SUPERSECRET.0987654321";
    let cases = [
        // A secret where a number is expected.
        (
            one_endpoint(
                "chat",
                "chat",
                "provider: openai\n        model: gpt-4o-mini\n        credentials: {api_key: sk-1}\n        weight: ${SECRET}",
            ),
            "endpoints[0].targets[0].weight",
        ),
        // Where a name, a kind, a provider or a URL is expected.
        (one_endpoint("${SECRET}", "chat", GOOD_TARGET), "endpoints[0].name"),
        (one_endpoint("chat", "$SECRET", GOOD_TARGET), "endpoints[0].kind"),
        (
            one_endpoint(
                "chat",
                "chat",
                "provider: ${SECRET}\n        model: x\n        credentials: {api_key: sk-1}",
            ),
            "endpoints[0].targets[0].provider",
        ),
        (
            one_endpoint(
                "chat",
                "chat",
                &format!("{GOOD_TARGET}\n        api_base: \"${{SECRET}}\""),
            ),
            "endpoints[0].targets[0].api_base",
        ),
        ("auth: none\nlisten: ${SECRET}\n".to_owned(), "listen"),
        (
            "auth: none\ntimeouts: {total: \"${SECRET}\"}\n".to_owned(),
            "timeouts.total",
        ),
        (
            "auth: none\nendpoints:\n  - name: e\n    endpoint_type: llm/v1/chat\n    model: {provider: openai, name: x, config: {openai_api_key: k, openai_api_type: \"${SECRET}\"}}\n".to_owned(),
            "endpoints[0]",
        ),
        (
            "auth: none\nendpoints:\n  - name: e\n    endpoint_type: ${SECRET}\n    model: {provider: openai, name: x, config: {openai_api_key: k}}\n".to_owned(),
            "endpoints[0]",
        ),
        // Embedded in a longer string.
        (
            one_endpoint("chat", "prefix-${SECRET}-suffix", GOOD_TARGET),
            "endpoints[0].kind",
        ),
    ];
    for (yaml, path) in &cases {
        let error = load_err(yaml, &[("SECRET", SECRET)]);
        let shown = format!("{error} {error:?}");
        assert!(
            error.to_string().starts_with(&format!("{path}:")),
            "expected an error at `{path}`: {error}"
        );
        assert!(
            !shown.contains(SECRET),
            "the secret leaked for:\n{yaml}\n{shown}"
        );
        assert!(!shown.contains("SUPERSECRET"), "{shown}");
    }

    // serde quotes a wrong value with escapes; the escaped spelling must not leak either.
    let quoted = r#"sk-"quoted\SUPERSECRET"#;
    let yaml = one_endpoint(
        "chat",
        "chat",
        &format!("{GOOD_TARGET}\n        weight: ${{QUOTED}}"),
    );
    let error = load_err(&yaml, &[("QUOTED", quoted)]);
    let shown = format!("{error} {error:?}");
    assert!(
        error
            .to_string()
            .starts_with("endpoints[0].targets[0].weight:"),
        "{error}"
    );
    assert!(!shown.contains("SUPERSECRET"), "{shown}");
}

#[test]
fn mlflow_files_name_anthropic_cohere_gemini_and_bedrock_models() {
    let yaml = "auth: none
endpoints:
  - name: claude
    endpoint_type: llm/v1/chat
    model: {provider: anthropic, name: claude-sonnet-4-5, config: {anthropic_api_key: $ANTHROPIC_KEY}}
  - name: command
    endpoint_type: llm/v1/chat
    model: {provider: cohere, name: command-a-03-2025, config: {cohere_api_key: co-key-123456}}
  - name: gemini
    endpoint_type: llm/v1/embeddings
    model: {provider: gemini, name: gemini-embedding-001, config: {gemini_api_key: gm-key-123456}}
  - name: nova
    endpoint_type: llm/v1/chat
    model:
      provider: amazon-bedrock
      name: amazon.nova-pro-v1:0
      config:
        aws_config: {aws_region: eu-west-1, aws_access_key_id: AKIDEXAMPLE, aws_secret_access_key: $AWS_SECRET}
";
    let config = load(
        yaml,
        &[
            ("ANTHROPIC_KEY", "sk-ant-test-123456"),
            ("AWS_SECRET", "aws-secret-123456"),
        ],
        Mode::Serve,
    )
    .unwrap();
    use floodgate::config::Credentials;
    use floodgate::providers::ProviderKind;
    let target = |name: &str| config.endpoints[name].targets[0].clone();
    let claude = target("claude");
    assert_eq!(claude.provider, ProviderKind::Anthropic);
    assert!(
        matches!(&claude.credentials, Credentials::ApiKey(k) if k.expose() == "sk-ant-test-123456")
    );
    assert_eq!(target("command").provider, ProviderKind::Cohere);
    assert_eq!(target("gemini").provider, ProviderKind::Gemini);
    let nova = target("nova");
    assert_eq!(nova.provider, ProviderKind::Bedrock);
    assert_eq!(nova.region.as_deref(), Some("eu-west-1"));
    assert_eq!(
        nova.api_base,
        "https://bedrock-runtime.eu-west-1.amazonaws.com"
    );
    assert!(matches!(
        &nova.credentials,
        Credentials::Aws { access_key_id, secret_access_key, session_token: None }
            if access_key_id == "AKIDEXAMPLE" && secret_access_key.expose() == "aws-secret-123456"
    ));

    let unknown_key = "auth: none\nendpoints:\n  - name: n\n    endpoint_type: llm/v1/chat\n    model: {provider: bedrock, name: m, config: {aws_config: {aws_region: r, aws_role_arn: x}}}\n";
    let message = load_err(unknown_key, &[]).to_string();
    assert!(message.contains("aws_config.aws_role_arn"), "{message}");
}
