//! Vertex AI: a service-account key exchanged for an access token (the mock token endpoint
//! verifies the RS256 assertion as Google's does), the token cached across requests, and
//! Gemini and Claude publisher models called at their Vertex URLs in their own wire
//! formats, translated to and from OpenAI's.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::common::{TestGateway, client, send};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{Value, json};

const PRIVATE_KEY: &str = include_str!("../fixtures/vertex/test-key.pem");
const PUBLIC_KEY: &str = include_str!("../fixtures/vertex/test-key.pub.pem");
const CLIENT_EMAIL: &str = "floodgate-test@test-project.iam.gserviceaccount.com";
const PROJECT: &str = "test-project";
const REGION: &str = "us-central1";

#[derive(Default)]
struct Google {
    tokens_issued: AtomicUsize,
    refuse_tokens: std::sync::atomic::AtomicBool,
    seen: Mutex<Vec<(String, String, Value)>>,
}

fn token_for(n: usize) -> String {
    format!("ya29.test-access-token-{n}")
}

async fn token_endpoint(state: &Google, body: &str, token_uri: &str) -> Response {
    if state.refuse_tokens.load(Ordering::SeqCst) {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(
                json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
            ),
        )
            .into_response();
    }
    let form: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
    assert_eq!(
        form.get("grant_type").map(String::as_str),
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    );
    let assertion = form.get("assertion").expect("assertion");
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(PUBLIC_KEY.as_bytes()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[token_uri]);
    validation.set_issuer(&[CLIENT_EMAIL]);
    let claims = match jsonwebtoken::decode::<Value>(assertion, &key, &validation) {
        Ok(decoded) => decoded.claims,
        Err(_) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."})),
            )
                .into_response();
        }
    };
    assert_eq!(
        claims["scope"],
        "https://www.googleapis.com/auth/cloud-platform"
    );
    let n = state.tokens_issued.fetch_add(1, Ordering::SeqCst) + 1;
    axum::Json(json!({"access_token": token_for(n), "expires_in": 3599, "token_type": "Bearer"}))
        .into_response()
}

fn gemini_answer() -> Value {
    json!({
        "candidates": [{"content": {"role": "model", "parts": [{"text": "Hello from Vertex Gemini"}]},
                        "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 5, "totalTokenCount": 14},
        "modelVersion": "gemini-2.5-flash",
    })
}

fn claude_answer() -> Value {
    json!({
        "id": "msg_vrtx_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5@20250929",
        "content": [{"type": "text", "text": "Hello from Vertex Claude"}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 12, "output_tokens": 6, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 4},
    })
}

/// Cache writes of the `claude-opus-4-1@ttl-split` model: (five-minute, one-hour).
const TTL_SPLIT_WRITES: (u64, u64) = (300, 200);

fn claude_ttl_split_answer() -> Value {
    let (short, long) = TTL_SPLIT_WRITES;
    json!({
        "id": "msg_vrtx_3", "type": "message", "role": "assistant", "model": "claude-opus-4-1@ttl-split",
        "content": [{"type": "text", "text": "Hello from Vertex Claude"}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 12, "output_tokens": 6, "cache_read_input_tokens": 4,
                  "cache_creation_input_tokens": short + long,
                  "cache_creation": {"ephemeral_5m_input_tokens": short, "ephemeral_1h_input_tokens": long}},
    })
}

fn sse(events: Vec<String>) -> Response {
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from(events.concat()))
        .unwrap()
}

async fn handle(State(state): State<(Arc<Google>, String)>, request: Request) -> Response {
    let (google, base) = state;
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let auth = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let bytes = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap();
    if path == "/token" {
        return token_endpoint(
            &google,
            std::str::from_utf8(&bytes).unwrap(),
            &format!("{base}/token"),
        )
        .await;
    }
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    google
        .seen
        .lock()
        .unwrap()
        .push((path.clone(), auth.clone(), body.clone()));
    let issued = google.tokens_issued.load(Ordering::SeqCst);
    if issued == 0 || auth != format!("Bearer {}", token_for(issued)) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}})),
        )
            .into_response();
    }
    let prefix = format!("/v1/projects/{PROJECT}/locations/{REGION}/publishers/");
    let Some(rest) = path.strip_prefix(&prefix) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match rest {
        "google/models/gemini-2.5-flash:generateContent" => {
            assert!(body["contents"].is_array(), "{body}");
            axum::Json(gemini_answer()).into_response()
        }
        "google/models/gemini-2.5-flash:streamGenerateContent" => {
            assert_eq!(query, "alt=sse");
            let first = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hello"}]}, "index": 0}],
                               "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}});
            let last = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": " from Vertex"}]}, "finishReason": "STOP", "index": 0}],
                              "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 5, "totalTokenCount": 14}});
            sse(vec![
                format!("data: {first}\r\n\r\n"),
                format!("data: {last}\r\n\r\n"),
            ])
        }
        "anthropic/models/claude-sonnet-4-5@20250929:rawPredict" => {
            assert_eq!(body["anthropic_version"], "vertex-2023-10-16", "{body}");
            assert!(
                body.get("model").is_none(),
                "Vertex takes the model from the URL: {body}"
            );
            assert!(body["max_tokens"].is_u64());
            axum::Json(claude_answer()).into_response()
        }
        "anthropic/models/claude-opus-4-1@ttl-split:rawPredict" => {
            assert_eq!(body["anthropic_version"], "vertex-2023-10-16", "{body}");
            axum::Json(claude_ttl_split_answer()).into_response()
        }
        "anthropic/models/claude-sonnet-4-5@20250929:streamRawPredict" => {
            assert_eq!(body["anthropic_version"], "vertex-2023-10-16");
            assert_eq!(body["stream"], true);
            let events = [
                (
                    "message_start",
                    json!({"type": "message_start", "message": {"id": "msg_vrtx_2", "type": "message", "role": "assistant",
                    "model": "claude-sonnet-4-5@20250929", "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": 12, "output_tokens": 1, "cache_read_input_tokens": 4, "cache_creation_input_tokens": 0}}}),
                ),
                (
                    "content_block_start",
                    json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                ),
                ("ping", json!({"type": "ping"})),
                (
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello from Vertex Claude"}}),
                ),
                (
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": 0}),
                ),
                (
                    "message_delta",
                    json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 6}}),
                ),
                ("message_stop", json!({"type": "message_stop"})),
            ];
            sse(events
                .iter()
                .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
                .collect())
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn start_google() -> (SocketAddr, Arc<Google>) {
    let google = Arc::new(Google::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .fallback(handle)
        .with_state((google.clone(), format!("http://{addr}")));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, google)
}

/// A service-account key whose token endpoint is the mock at `addr`.
fn service_account(addr: SocketAddr) -> String {
    json!({
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "test-key-1",
        "private_key": PRIVATE_KEY,
        "client_email": CLIENT_EMAIL,
        "token_uri": format!("http://{addr}/token"),
    })
    .to_string()
}

async fn gateway(addr: SocketAddr) -> TestGateway {
    let key = service_account(addr);
    let yaml = format!(
        "auth: none
endpoints:
  - name: gemini
    kind: chat
    targets:
      - {{provider: vertex, model: gemini-2.5-flash, project: {PROJECT}, region: {REGION}, api_base: 'http://{addr}', credentials: {{service_account: $SA_KEY}}}}
  - name: claude
    kind: chat
    targets:
      - {{provider: vertex, model: 'claude-sonnet-4-5@20250929', project: {PROJECT}, region: {REGION}, api_base: 'http://{addr}', max_tokens: 1024, credentials: {{service_account: $SA_KEY}}}}
"
    );
    TestGateway::from_yaml(&yaml, &[("SA_KEY", &key)]).await
}

fn chat(endpoint: &str) -> Value {
    json!({"model": endpoint, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]})
}

#[tokio::test]
async fn gemini_on_vertex_with_a_cached_service_account_token() {
    let (addr, google) = start_google().await;
    let gw = gateway(addr).await;
    for _ in 0..3 {
        let reply = send(
            client()
                .post(gw.url("/v1/chat/completions"))
                .header("x-request-id", "vertex-gemini")
                .json(&chat("gemini")),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(
            reply.body["choices"][0]["message"]["content"],
            "Hello from Vertex Gemini"
        );
        assert_eq!(reply.body["provider"], "vertex");
        assert_eq!(reply.body["usage"]["prompt_tokens"], 9);
    }
    assert_eq!(
        google.tokens_issued.load(Ordering::SeqCst),
        1,
        "the token is cached"
    );
    let record = gw.usage.wait_for(3).await.remove(0);
    assert_eq!(record.provider, Some("vertex"));
    assert_eq!(
        (record.usage.input_tokens, record.usage.output_tokens),
        (9, 5)
    );
    let seen = google.seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .all(|(_, auth, _)| auth == "Bearer ya29.test-access-token-1")
    );
    assert_eq!(
        seen[0].2["systemInstruction"]["parts"][0]["text"],
        "Be brief."
    );

    let mut body = chat("gemini");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let reply = send(client().post(gw.url("/v1/chat/completions")).json(&body)).await;
    assert_eq!(reply.status, 200);
    assert!(reply.text.contains("from Vertex"), "{}", reply.text);
    assert!(
        reply.text.contains("\"completion_tokens\":5"),
        "{}",
        reply.text
    );
    assert!(reply.text.trim_end().ends_with("data: [DONE]"));
}

#[tokio::test]
async fn claude_on_vertex_through_openai_and_anthropic_routes() {
    let (addr, google) = start_google().await;
    let gw = gateway(addr).await;
    let reply = send(
        client()
            .post(gw.url("/v1/chat/completions"))
            .json(&chat("claude")),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.body["choices"][0]["message"]["content"],
        "Hello from Vertex Claude"
    );
    assert_eq!(
        reply.body["usage"]["prompt_tokens"], 16,
        "input + cache read"
    );
    assert_eq!(
        reply.body["usage"]["prompt_tokens_details"]["cached_tokens"],
        4
    );
    let seen = google.seen.lock().unwrap().clone();
    assert_eq!(seen[0].2["system"], "Be brief.");

    let mut body = chat("claude");
    body["stream"] = json!(true);
    let reply = send(
        client()
            .post(gw.url("/v1/chat/completions"))
            .header("x-request-id", "vertex-claude-stream")
            .json(&body),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.text.contains("Hello from Vertex Claude"),
        "{}",
        reply.text
    );
    let record = gw.usage.wait_for_request("vertex-claude-stream").await;
    assert_eq!(
        (
            record.usage.input_tokens,
            record.usage.output_tokens,
            record.usage.cached_tokens
        ),
        (16, 6, 4)
    );

    // The Anthropic SDK's native route reaches Claude on Vertex too.
    let native = json!({"model": "claude", "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}]});
    let reply = send(
        client()
            .post(gw.url("/gateway/anthropic/v1/messages"))
            .json(&native),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["type"], "message");
    assert_eq!(reply.body["content"][0]["text"], "Hello from Vertex Claude");
}

#[tokio::test]
async fn a_refused_service_account_is_a_clear_401_without_secrets() {
    let (addr, google) = start_google().await;
    google.refuse_tokens.store(true, Ordering::SeqCst);
    let gw = gateway(addr).await;
    let reply = send(
        client()
            .post(gw.url("/v1/chat/completions"))
            .json(&chat("gemini")),
    )
    .await;
    assert_eq!(reply.status, 401, "{}", reply.text);
    assert!(reply.text.contains("invalid_grant"), "{}", reply.text);
    assert!(!reply.text.contains("PRIVATE KEY"));
    assert!(!reply.text.contains(CLIENT_EMAIL));
    assert!(
        google.seen.lock().unwrap().is_empty(),
        "no model call without a token"
    );
}

#[test]
fn vertex_targets_need_project_region_and_a_service_account() {
    let env = std::collections::HashMap::<String, String>::new();
    let yaml = "auth: none\nendpoints:\n  - name: v\n    kind: chat\n    targets:\n      - {provider: vertex, model: gemini-2.5-flash}\n";
    let message = floodgate::config::load_str(yaml, floodgate::config::Mode::Serve, &env)
        .unwrap_err()
        .to_string();
    for field in [
        "endpoints[0].targets[0].region",
        "endpoints[0].targets[0].project",
        "endpoints[0].targets[0].credentials",
    ] {
        assert!(message.contains(field), "{field}: {message}");
    }
    let yaml = "auth: none\nendpoints:\n  - name: v\n    kind: chat\n    targets:\n      - {provider: vertex, model: m, project: p, region: r, credentials: {service_account: '{\"client_email\": \"x\"}'}}\n";
    let message = floodgate::config::load_str(yaml, floodgate::config::Mode::Serve, &env)
        .unwrap_err()
        .to_string();
    assert!(message.contains("private_key"), "{message}");
}

#[tokio::test]
async fn claude_cache_writes_on_vertex_are_costed_from_configured_write_prices() {
    // Vertex has no shipped table: the write prices come from config, on the target
    // (`price:`) or in `prices:`, both of which take `cache_write` and `cache_write_1h`.
    let (addr, _google) = start_google().await;
    let target = format!(
        "{{provider: vertex, model: 'claude-opus-4-1@ttl-split', project: {PROJECT}, region: {REGION}, api_base: 'http://{addr}', max_tokens: 1024, credentials: {{service_account: $SA_KEY}}"
    );
    let yaml = format!(
        "auth: none
prices:
  - {{provider: vertex, model: 'claude-opus-4-1@ttl-split', input: 15, cached_input: 1.5, cache_write: 18.75, cache_write_1h: 30, output: 75}}
endpoints:
  - name: by-target
    kind: chat
    targets:
      - {target}, price: {{input: 15, cached_input: 1.5, cache_write: 18.75, cache_write_1h: 30, output: 75}}}}
  - name: by-table
    kind: chat
    targets:
      - {target}}}
"
    );
    let gw = TestGateway::from_yaml(&yaml, &[("SA_KEY", &service_account(addr))]).await;
    let (short, long) = TTL_SPLIT_WRITES;
    for endpoint in ["by-target", "by-table"] {
        let reply = send(
            client()
                .post(gw.url("/v1/chat/completions"))
                .json(&chat(endpoint)),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let record = gw
            .usage
            .wait_for_request(reply.header("x-request-id"))
            .await;
        let usage = record.usage;
        assert_eq!(
            (
                usage.input_tokens,
                usage.cached_tokens,
                usage.cache_write_tokens,
                usage.cache_write_1h_tokens,
                usage.output_tokens
            ),
            (12 + 4 + short + long, 4, short + long, long, 6),
            "{endpoint}"
        );
        // 12 x 15 + 4 x 1.5 + 300 x 18.75 + 200 x 30 + 6 x 75
        // = 180 + 6 + 5625 + 6000 + 450 = 12261 micro-dollars.
        assert_eq!(record.cost_micros, Some(12_261), "{endpoint}");
    }
}
