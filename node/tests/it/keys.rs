//! Gateway keys: how clients present them, what a wrong or missing key gets, per-key endpoint
//! restrictions, the key id in usage records, and that neither the gateway key nor a client's
//! provider key ever reaches the upstream unless the target says so.

use crate::common::upstream::{Seen, UPSTREAM_KEY, Upstream};
use crate::common::{Reply, TestGateway, client, send};
use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Team A's key, given to the config through the environment.
const KEY_A: &str = "fg-team-a-key-1111111111";
/// Team B's key; the config holds only its SHA-256.
const KEY_B: &str = "fg-team-b-key-2222222222";
/// A provider key a client might send.
const CLIENT_PROVIDER_KEY: &str = "sk-client-own-provider-key-999";

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Two keys (team-b limited to `chat`) and three endpoints on one upstream; `byok` takes its
/// provider key from the client's `x-provider-key` header.
async fn fixture() -> (Upstream, TestGateway) {
    let upstream = Upstream::start().await;
    let base = upstream.base();
    let yaml = format!(
        "keys:
  - id: team-a
    key: ${{KEY_A}}
  - id: team-b
    key_sha256: {hash}
    endpoints: [chat]
endpoints:
  - name: chat
    kind: chat
    targets:
      - provider: openai
        model: gpt-4o-mini
        api_base: \"{base}\"
        credentials: {{api_key: $UPSTREAM_KEY}}
  - name: embeddings
    kind: embeddings
    targets:
      - provider: openai
        model: text-embedding-3-small
        api_base: \"{base}\"
        credentials: {{api_key: $UPSTREAM_KEY}}
  - name: byok
    kind: chat
    targets:
      - provider: openai
        model: gpt-4o-mini
        api_base: \"{base}\"
        credentials: {{from_header: x-provider-key}}
",
        hash = sha256_hex(KEY_B),
    );
    let gw =
        TestGateway::from_yaml(&yaml, &[("UPSTREAM_KEY", UPSTREAM_KEY), ("KEY_A", KEY_A)]).await;
    (upstream, gw)
}

fn chat_body(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

fn basic(password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("user:{password}"));
    format!("Basic {encoded}")
}

/// The upstream saw exactly the upstream key, and nothing the client used to authenticate.
fn assert_only_upstream_key(seen: &Seen) {
    assert_eq!(
        seen.headers.get("authorization").unwrap(),
        &format!("Bearer {UPSTREAM_KEY}"),
        "authorization sent to {}",
        seen.path
    );
    assert_eq!(seen.headers.get_all("authorization").iter().count(), 1);
    assert!(
        seen.headers.get("x-api-key").is_none(),
        "{:?}",
        seen.headers
    );
    assert!(seen.headers.get("api-key").is_none(), "{:?}", seen.headers);
    for secret in [KEY_A, KEY_B, CLIENT_PROVIDER_KEY] {
        for (name, value) in &seen.headers {
            assert!(
                !value.to_str().unwrap_or("").contains(secret),
                "`{secret}` reached the upstream in header {name}"
            );
        }
        assert!(
            !seen.raw.contains(secret),
            "`{secret}` reached the upstream body"
        );
    }
}

#[tokio::test]
async fn bearer_x_api_key_and_basic_password_are_accepted() {
    let (upstream, gw) = fixture().await;
    let cases = [
        (
            "bearer-a",
            "authorization",
            format!("Bearer {KEY_A}"),
            "team-a",
        ),
        ("x-api-key-a", "x-api-key", KEY_A.to_owned(), "team-a"),
        ("basic-a", "authorization", basic(KEY_A), "team-a"),
        (
            "bearer-b",
            "authorization",
            format!("Bearer {KEY_B}"),
            "team-b",
        ),
        ("x-api-key-b", "x-api-key", KEY_B.to_owned(), "team-b"),
        ("basic-b", "authorization", basic(KEY_B), "team-b"),
    ];
    for (id, header, value, key_id) in &cases {
        let reply = send(
            client()
                .post(gw.url("/v1/chat/completions"))
                .header(*header, value)
                .header("x-request-id", *id)
                .json(&chat_body("chat")),
        )
        .await;
        assert_eq!(reply.status, 200, "{id}: {}", reply.text);
        let record = gw.usage.wait_for_request(id).await;
        assert_eq!(record.key_id.as_deref(), Some(*key_id), "{id}");
        assert_eq!(record.status, 200);
    }
    assert_eq!(upstream.count(), cases.len());
    for seen in upstream.seen() {
        assert_only_upstream_key(&seen);
    }
}

#[tokio::test]
async fn missing_key_is_401_missing_api_key_on_every_api_route() {
    let (upstream, gw) = fixture().await;
    let chat = chat_body("chat");
    let requests = [
        client().post(gw.url("/v1/chat/completions")).json(&chat),
        client()
            .post(gw.url("/gateway/mlflow/v1/chat/completions"))
            .json(&chat),
        client()
            .post(gw.url("/gateway/openai/v1/chat/completions"))
            .json(&chat),
        client()
            .post(gw.url("/gateway/chat/mlflow/invocations"))
            .json(&chat),
        client()
            .post(gw.url("/endpoints/chat/invocations"))
            .json(&chat),
        client().get(gw.url("/v1/models")),
        client().get(gw.url("/api/2.0/endpoints/")),
        client().get(gw.url("/api/2.0/endpoints/chat")),
        client().get(gw.url("/gateway/proxy/chat/files")),
        // An empty bearer token is no key either.
        client()
            .post(gw.url("/v1/chat/completions"))
            .header("authorization", "Bearer ")
            .json(&chat),
    ];
    for request in requests {
        let reply = send(request).await;
        assert_eq!(reply.status, 401, "{}", reply.text);
        assert_eq!(reply.code(), "missing_api_key");
        assert_eq!(reply.body["error"]["type"], "authentication_error");
        assert!(reply.headers.contains_key("x-request-id"));
    }
    assert_eq!(upstream.count(), 0);
    // Health routes stay open.
    for path in ["/healthz", "/readyz", "/health"] {
        assert_eq!(send(client().get(gw.url(path))).await.status, 200, "{path}");
    }
}

#[tokio::test]
async fn wrong_key_is_401_invalid_api_key_and_never_echoed() {
    let (upstream, gw) = fixture().await;
    let wrong = "fg-not-a-real-key-abcdef-7777";
    let requests = [
        client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(wrong)
            .header("x-request-id", "keys-wrong-1")
            .json(&chat_body("chat")),
        client()
            .post(gw.url("/v1/chat/completions"))
            .header("x-api-key", wrong)
            .json(&chat_body("chat")),
        client()
            .post(gw.url("/v1/chat/completions"))
            .header("authorization", basic(wrong))
            .json(&chat_body("chat")),
        client().get(gw.url("/v1/models")).bearer_auth(wrong),
        client()
            .get(gw.url("/gateway/proxy/chat/files"))
            .bearer_auth(wrong),
        // The SHA-256 itself is not a key.
        client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(sha256_hex(KEY_B))
            .json(&chat_body("chat")),
    ];
    for request in requests {
        let reply = send(request).await;
        assert_eq!(reply.status, 401, "{}", reply.text);
        assert_eq!(reply.code(), "invalid_api_key");
        assert_eq!(reply.body["error"]["type"], "authentication_error");
        assert!(!reply.text.contains(wrong), "{}", reply.text);
        for (name, value) in &reply.headers {
            assert!(!value.to_str().unwrap_or("").contains(wrong), "{name}");
        }
    }
    let record = gw.usage.wait_for_request("keys-wrong-1").await;
    assert_eq!(record.status, 401);
    assert_eq!(record.error_type, Some("invalid_api_key"));
    assert_eq!(record.key_id, None);
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn restricted_key_may_call_only_its_endpoints() {
    let (upstream, gw) = fixture().await;
    let b = |request: reqwest::RequestBuilder| request.bearer_auth(KEY_B);
    let embed = json!({"model": "embeddings", "input": "x"});
    let refused = [
        b(client().post(gw.url("/v1/embeddings")))
            .header("x-request-id", "keys-403")
            .json(&embed),
        b(client().post(gw.url("/gateway/openai/v1/embeddings"))).json(&embed),
        b(client().post(gw.url("/v1/chat/completions"))).json(&chat_body("byok")),
        b(client().post(gw.url("/gateway/embeddings/mlflow/invocations")))
            .json(&json!({"input": "x"})),
        b(client().post(gw.url("/endpoints/embeddings/invocations"))).json(&json!({"text": "x"})),
        b(client().get(gw.url("/api/2.0/endpoints/embeddings"))),
        b(client().get(gw.url("/gateway/proxy/embeddings/files"))),
    ];
    for request in refused {
        let reply = send(request).await;
        assert_eq!(reply.status, 403, "{}", reply.text);
        assert_eq!(reply.code(), "endpoint_not_allowed");
        assert_eq!(reply.body["error"]["type"], "permission_error");
    }
    assert_eq!(upstream.count(), 0);
    let record = gw.usage.wait_for_request("keys-403").await;
    assert_eq!(record.key_id.as_deref(), Some("team-b"));
    assert_eq!(record.status, 403);
    assert_eq!(record.error_type, Some("endpoint_not_allowed"));

    // Its own endpoint works; team-a may call everything.
    let own = send(b(client().post(gw.url("/v1/chat/completions"))).json(&chat_body("chat"))).await;
    assert_eq!(own.status, 200, "{}", own.text);
    let a = send(
        client()
            .post(gw.url("/v1/embeddings"))
            .bearer_auth(KEY_A)
            .json(&embed),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(upstream.count(), 2);
}

#[tokio::test]
async fn model_and_endpoint_lists_show_only_allowed_endpoints() {
    let (_upstream, gw) = fixture().await;
    let ids = |reply: &Reply| -> Vec<String> {
        reply.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let names = |reply: &Reply| -> Vec<String> {
        reply.body["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap().to_owned())
            .collect()
    };
    for path in ["/v1/models", "/gateway/mlflow/v1/models"] {
        let b = send(client().get(gw.url(path)).bearer_auth(KEY_B)).await;
        assert_eq!(b.status, 200);
        assert_eq!(ids(&b), ["chat"], "{path}");
        let a = send(client().get(gw.url(path)).header("x-api-key", KEY_A)).await;
        assert_eq!(ids(&a), ["chat", "embeddings", "byok"], "{path}");
    }
    let b = send(
        client()
            .get(gw.url("/api/2.0/endpoints/?max_results=1"))
            .bearer_auth(KEY_B),
    )
    .await;
    assert_eq!(names(&b), ["chat"]);
    assert!(b.body.get("next_page_token").is_none(), "{}", b.text);
    let a = send(
        client()
            .get(gw.url("/api/2.0/endpoints/"))
            .bearer_auth(KEY_A),
    )
    .await;
    assert_eq!(names(&a), ["chat", "embeddings", "byok"]);
}

#[tokio::test]
async fn gateway_key_is_never_sent_upstream() {
    let (upstream, gw) = fixture().await;
    let auths = [
        ("authorization", format!("Bearer {KEY_A}")),
        ("x-api-key", KEY_A.to_owned()),
        ("authorization", basic(KEY_B)),
    ];
    for (header, value) in &auths {
        let with = |request: reqwest::RequestBuilder| request.header(*header, value);
        let replies = [
            send(with(client().post(gw.url("/v1/chat/completions"))).json(&chat_body("chat")))
                .await,
            send(
                with(client().post(gw.url("/gateway/openai/v1/chat/completions")))
                    .json(&chat_body("chat")),
            )
            .await,
            send(
                with(client().post(gw.url("/gateway/openai/v1/responses")))
                    .json(&json!({"model": "chat", "input": "hi"})),
            )
            .await,
            send(
                with(client().post(gw.url("/endpoints/chat/invocations")))
                    .json(&json!({"messages": [{"role": "user", "content": "hi"}]})),
            )
            .await,
            send(with(client().get(gw.url("/gateway/proxy/chat/models?x=1")))).await,
            send(
                with(client().post(gw.url("/gateway/proxy/chat/chat/completions")))
                    .json(&chat_body("gpt-4o-mini")),
            )
            .await,
        ];
        for reply in replies {
            assert_eq!(reply.status, 200, "{header}: {}", reply.text);
        }
    }
    let seen = upstream.seen();
    assert_eq!(seen.len(), 6 * auths.len());
    for request in &seen {
        assert_only_upstream_key(request);
    }
}

#[tokio::test]
async fn client_provider_keys_are_not_forwarded_without_from_header() {
    let (upstream, gw) = fixture().await;
    // The gateway key in x-api-key, a provider key where SDKs put one.
    let reply = send(
        client()
            .post(gw.url("/v1/chat/completions"))
            .header("x-api-key", KEY_A)
            .header("authorization", format!("Bearer {CLIENT_PROVIDER_KEY}"))
            .json(&chat_body("chat")),
    )
    .await;
    // Authorization is read first, so this is an invalid gateway key.
    assert_eq!(reply.status, 401, "{}", reply.text);
    assert_eq!(reply.code(), "invalid_api_key");
    assert!(!reply.text.contains(CLIENT_PROVIDER_KEY));

    for path in [
        "/v1/chat/completions",
        "/gateway/openai/v1/chat/completions",
    ] {
        let reply = send(
            client()
                .post(gw.url(path))
                .bearer_auth(KEY_A)
                .header("x-provider-key", CLIENT_PROVIDER_KEY)
                .header("api-key", CLIENT_PROVIDER_KEY)
                .header("openai-api-key", CLIENT_PROVIDER_KEY)
                .json(&chat_body("chat")),
        )
        .await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
    }
    let reply = send(
        client()
            .get(gw.url("/gateway/proxy/chat/files"))
            .bearer_auth(KEY_A)
            .header("api-key", CLIENT_PROVIDER_KEY),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 3);
    for request in &seen {
        assert_only_upstream_key(request);
    }

    // Auth off: a client's own Authorization is not forwarded either.
    let open = TestGateway::from_yaml(
        &format!(
            "auth: none
endpoints:
  - name: chat
    kind: chat
    targets:
      - {{provider: openai, model: gpt-4o-mini, api_base: \"{}\", credentials: {{api_key: $UPSTREAM_KEY}}}}
",
            upstream.base()
        ),
        &[("UPSTREAM_KEY", UPSTREAM_KEY)],
    )
    .await;
    for path in [
        "/v1/chat/completions",
        "/gateway/proxy/chat/chat/completions",
    ] {
        let reply = send(
            client()
                .post(open.url(path))
                .bearer_auth(CLIENT_PROVIDER_KEY)
                .header("x-api-key", CLIENT_PROVIDER_KEY)
                .json(&chat_body("chat")),
        )
        .await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
        assert_only_upstream_key(&upstream.seen().pop().unwrap());
    }
}

#[tokio::test]
async fn from_header_credentials_send_the_client_header_as_the_upstream_key() {
    let (upstream, gw) = fixture().await;
    let reply = send(
        client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(KEY_A)
            .header("x-provider-key", UPSTREAM_KEY)
            .header("x-request-id", "keys-byok")
            .json(&chat_body("byok")),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let seen = upstream.seen().pop().unwrap();
    assert_eq!(
        seen.headers.get("authorization").unwrap(),
        &format!("Bearer {UPSTREAM_KEY}")
    );
    assert!(seen.headers.get("x-provider-key").is_none());
    for (name, value) in &seen.headers {
        assert!(!value.to_str().unwrap().contains(KEY_A), "{name}");
    }
    let record = gw.usage.wait_for_request("keys-byok").await;
    assert_eq!(record.key_id.as_deref(), Some("team-a"));

    // A `Bearer ` prefix in the header is not doubled.
    let reply = send(
        client()
            .post(gw.url("/gateway/openai/v1/chat/completions"))
            .header("x-api-key", KEY_A)
            .header("x-provider-key", format!("Bearer {UPSTREAM_KEY}"))
            .json(&chat_body("byok")),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let seen = upstream.seen().pop().unwrap();
    assert_eq!(
        seen.headers.get("authorization").unwrap(),
        &format!("Bearer {UPSTREAM_KEY}")
    );

    // Whatever the client sends there is what the upstream gets; the gateway key is not a
    // fallback.
    let reply = send(
        client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(KEY_A)
            .header("x-provider-key", CLIENT_PROVIDER_KEY)
            .json(&chat_body("byok")),
    )
    .await;
    assert_eq!(reply.status, 401, "{}", reply.text);
    assert_eq!(reply.body["error"]["type"], "invalid_request_error");
    let seen = upstream.seen().pop().unwrap();
    assert_eq!(
        seen.headers.get("authorization").unwrap(),
        &format!("Bearer {CLIENT_PROVIDER_KEY}")
    );

    // Without the header the upstream gets no credentials at all.
    let reply = send(
        client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(KEY_A)
            .json(&chat_body("byok")),
    )
    .await;
    assert_eq!(reply.status, 401, "{}", reply.text);
    let seen = upstream.seen().pop().unwrap();
    assert!(
        seen.headers.get("authorization").is_none(),
        "{:?}",
        seen.headers
    );
    assert_eq!(upstream.count(), 4);

    // Through the raw proxy the credential header goes only as the provider's auth header.
    let reply = send(
        client()
            .get(gw.url("/gateway/proxy/byok/files"))
            .bearer_auth(KEY_A)
            .header("x-provider-key", UPSTREAM_KEY),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let seen = upstream.seen().pop().unwrap();
    assert_eq!(seen.path, "/v1/files");
    assert_eq!(
        seen.headers.get("authorization").unwrap(),
        &format!("Bearer {UPSTREAM_KEY}")
    );
    assert!(
        seen.headers.get("x-provider-key").is_none(),
        "{:?}",
        seen.headers
    );
}
