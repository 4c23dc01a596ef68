//! A mock Amazon Bedrock Runtime written from AWS's API reference, which checks what it is
//! sent as Bedrock would and answers in Bedrock's exact wire format.
//!
//! **Requests it accepts**: `POST /model/{modelId}/{converse|converse-stream|invoke|
//! invoke-with-response-stream}` with the model id percent-encoded (a raw `:` is refused),
//! authenticated either by
//! * SigV4: the `Authorization` header is parsed, the credential scope must be one of the
//!   test access keys, `us-east-1` and `bedrock`, `x-amz-date` must be fresh and match the
//!   scope's date, `host` and `x-amz-date` (and `x-amz-security-token`, which must be the
//!   test session token, for the temporary keys) must be signed, and the signature is
//!   **recomputed with `aws-sigv4`** from the request as received (method, raw path, signed
//!   headers, body) — a mismatch is Bedrock's 403 `InvalidSignatureException`;
//! * or a Bedrock API key as `Authorization: Bearer`.
//!
//! Converse bodies must be valid Converse requests (known top-level keys, alternating
//! `user`/`assistant` turns starting with `user`, one known member per content block,
//! images with a format and base64 bytes, `toolConfig` present when tool blocks are,
//! `inferenceConfig` with known keys only); invoke bodies must be Anthropic Messages with
//! `anthropic_version: bedrock-2023-05-31` and no `model` or `stream`. Violations get
//! Bedrock's 400 `ValidationException`.
//!
//! **Answers**: JSON (`output.message.content`, `stopReason`, `usage` with cache tokens,
//! `metrics`), `application/vnd.amazon.eventstream` binary frames encoded with
//! `aws-smithy-eventstream` (`:event-type`, `:content-type`, `:message-type` headers; the `p`
//! padding field), Anthropic events as base64 `chunk` bytes, and errors as `{"message"}` with
//! `x-amzn-ErrorType`. Behaviour by model id:
//!
//! | model id contains | behaviour                                                       |
//! |-------------------|-----------------------------------------------------------------|
//! | anything          | answers "Hello from Bedrock" (streamed in three deltas)         |
//! | `tools`           | answers with a `toolUse` of the request's first tool            |
//! | `golden`          | answers `fixtures/bedrock/converse_response.json`               |
//! | `throttled`       | 429 `ThrottlingException`                                        |
//! | `invalid`         | 400 `ValidationException`                                        |
//! | `hold`            | holds the stream open until the reader goes away: Converse after one delta, Messages before `message_stop` |
//! | `midstream`       | streams one delta, then a `throttlingException` message         |
//! | `leak`            | 403 whose message repeats the presented key or session token    |
//! | `ttl-split`       | cache writes of [`TTL_SPLIT_WRITES`] split by lifetime: Converse `cacheDetails`, Anthropic `cache_creation` |

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

/// The region the mock serves.
pub const REGION: &str = "us-east-1";
/// Long-term test access key.
pub const ACCESS_KEY_ID: &str = "AKIAFLOODGATETEST001";
/// Its secret.
pub const SECRET_ACCESS_KEY: &str = "fgTestSecretKey/0123456789+abcdefghijklmnopq";
/// Temporary test access key (needs [`SESSION_TOKEN`]).
pub const TEMP_ACCESS_KEY_ID: &str = "ASIAFLOODGATETEST002";
/// Its secret.
pub const TEMP_SECRET_ACCESS_KEY: &str = "fgTempSecretKey/9876543210+zyxwvutsrqponmlk";
/// The session token of the temporary key.
pub const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEFloodgateTestSessionToken//0123456789abcdef=";
/// The Bedrock API key accepted as a bearer token.
pub const API_KEY: &str = "ABSKQmVkcm9ja0FQSUtleS1mbG9vZGdhdGUtdGVzdC0wMTIzNDU2Nzg5";
/// `x-amzn-RequestId` of every answer.
pub const REQUEST_ID: &str = "5d7c7c4e-6a43-4b5e-9bb1-0c0ffee00001";

/// Converse usage of every answer: `inputTokens` (uncached).
pub const INPUT_TOKENS: u64 = 21;
/// `outputTokens`.
pub const OUTPUT_TOKENS: u64 = 9;
/// `cacheReadInputTokens`.
pub const CACHE_READ: u64 = 4;
/// `cacheWriteInputTokens`.
pub const CACHE_WRITE: u64 = 2;
/// Anthropic (invoke) usage: `input_tokens`, `cache_read_input_tokens`, `output_tokens`.
pub const CLAUDE_USAGE: (u64, u64, u64) = (13, 5, 8);
/// Cache writes of a `ttl-split` model, (five-minute, one-hour): Converse reports their sum
/// as `cacheWriteInputTokens` (instead of [`CACHE_WRITE`]) and each in `cacheDetails`;
/// Anthropic's usage reports the sum as `cache_creation_input_tokens` and each in
/// `cache_creation`.
pub const TTL_SPLIT_WRITES: (u64, u64) = (300, 200);
/// The streamed pieces of the default answer.
pub const PIECES: [&str; 3] = ["Hello", " from", " Bedrock"];

const SIGNATURE_MISMATCH: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

/// One request the mock received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Raw (still percent-encoded) path.
    pub path: String,
    /// Headers.
    pub headers: HeaderMap,
    /// Body as JSON (Null when not JSON).
    pub body: Value,
}

#[derive(Default)]
struct Shared {
    addr: Mutex<String>,
    seen: Mutex<Vec<Seen>>,
    streams_dropped: AtomicUsize,
    streams_finished: AtomicUsize,
}

/// A running mock Bedrock Runtime.
#[derive(Clone)]
pub struct BedrockUpstream {
    /// `http://127.0.0.1:port`, the `api_base` to configure.
    pub base: String,
    shared: Arc<Shared>,
}

impl BedrockUpstream {
    /// Starts the mock on `127.0.0.1:0`.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        *shared.addr.lock().unwrap() = addr.to_string();
        let app = Router::new().fallback(handle).with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            base: format!("http://{addr}"),
            shared,
        }
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// Streams whose reader went away before the end.
    pub fn streams_dropped(&self) -> usize {
        self.shared.streams_dropped.load(Ordering::SeqCst)
    }

    /// Streams sent to the end.
    pub fn streams_finished(&self) -> usize {
        self.shared.streams_finished.load(Ordering::SeqCst)
    }
}

/// Bedrock's error answer: `{"message"}` and the exception name in `x-amzn-ErrorType`.
pub fn aws_error(status: u16, kind: &str, message: &str) -> Response {
    let mut response = (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(json!({ "message": message })),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(
        "x-amzn-ErrorType",
        format!("{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/")
            .parse()
            .unwrap(),
    );
    headers.insert("x-amzn-RequestId", REQUEST_ID.parse().unwrap());
    response
}

fn validation(message: impl Into<String>) -> Response {
    aws_error(400, "ValidationException", &message.into())
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let raw = axum::body::to_bytes(body, 32 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    shared.seen.lock().unwrap().push(Seen {
        path: path.clone(),
        headers: parts.headers.clone(),
        body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
    });
    if parts.method != http::Method::POST {
        return aws_error(404, "UnknownOperationException", "Unknown operation");
    }
    let segments: Vec<&str> = path.split('/').collect();
    let [_, "model", raw_model, action] = segments[..] else {
        return aws_error(404, "UnknownOperationException", "Unknown operation");
    };
    if raw_model.contains(':') {
        return validation("The model identifier in the path must be percent-encoded.");
    }
    let model = percent_decode(raw_model);
    let expected_host = shared.addr.lock().unwrap().clone();
    if let Err(response) = authenticate(&parts, &raw, &expected_host) {
        return response;
    }
    let body: Value = match serde_json::from_slice(&raw) {
        Ok(body @ Value::Object(_)) => body,
        _ => {
            return validation(
                "Malformed input request, please reformat your input and try again.",
            );
        }
    };
    let checked = match action {
        "converse" | "converse-stream" => check_converse(&body),
        "invoke" | "invoke-with-response-stream" => check_messages(&body),
        _ => return aws_error(404, "UnknownOperationException", "Unknown operation"),
    };
    if let Err(message) = checked {
        return validation(message);
    }
    if model.contains("throttled") {
        return aws_error(
            429,
            "ThrottlingException",
            "Too many requests, please wait before trying again.",
        );
    }
    if model.contains("invalid") {
        return validation("The provided model identifier is invalid.");
    }
    if model.contains("leak") {
        // Echo the presented credential, as a careless upstream might.
        let presented = parts
            .headers
            .get("x-amz-security-token")
            .or_else(|| parts.headers.get("authorization"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim_start_matches("Bearer ")
            .to_owned();
        return aws_error(
            403,
            "AccessDeniedException",
            &format!("The credential {presented} is not authorized to invoke this model."),
        );
    }
    match action {
        "converse" => converse_answer(&model, &body),
        "converse-stream" => converse_stream(shared, &model, &body),
        "invoke" => messages_answer(&model),
        _ => messages_stream(shared, &model),
    }
}

fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

// ---------------------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------------------

/// Checks the request's credentials; the error is the answer to send.
#[allow(clippy::result_large_err)]
fn authenticate(
    parts: &http::request::Parts,
    body: &[u8],
    expected_host: &str,
) -> Result<(), Response> {
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let Some(authorization) = header("authorization") else {
        return Err(aws_error(
            403,
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        ));
    };
    if let Some(key) = authorization.strip_prefix("Bearer ") {
        return if key == API_KEY {
            Ok(())
        } else {
            Err(aws_error(
                403,
                "AccessDeniedException",
                "Authentication failed: Please make sure your API Key is valid.",
            ))
        };
    }
    let invalid_token = || {
        aws_error(
            403,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )
    };
    let signature_error = |message: &str| aws_error(403, "InvalidSignatureException", message);
    let fields = authorization
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| signature_error("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."))?;
    let field = |name: &str| {
        fields
            .split(", ")
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or("")
    };
    let scope: Vec<&str> = field("Credential").split('/').collect();
    let [access_key_id, date, region, service, "aws4_request"] = scope[..] else {
        return Err(signature_error(
            "Authorization header requires 'Credential' parameter.",
        ));
    };
    let (secret, token) = match access_key_id {
        ACCESS_KEY_ID => (SECRET_ACCESS_KEY, None),
        TEMP_ACCESS_KEY_ID => (TEMP_SECRET_ACCESS_KEY, Some(SESSION_TOKEN)),
        _ => return Err(invalid_token()),
    };
    if header("x-amz-security-token") != token {
        return Err(invalid_token());
    }
    if region != REGION {
        return Err(signature_error(&format!(
            "Credential should be scoped to a valid region, not '{region}'."
        )));
    }
    if service != "bedrock" {
        return Err(signature_error(
            "Credential should be scoped to correct service: 'bedrock'.",
        ));
    }
    let amz_date = header("x-amz-date").unwrap_or("");
    let Some(time) = parse_amz_date(amz_date) else {
        return Err(signature_error(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        ));
    };
    let skew = SystemTime::now()
        .duration_since(time)
        .unwrap_or_else(|e| e.duration());
    if skew > Duration::from_secs(300) || !amz_date.starts_with(date) {
        return Err(signature_error("Signature expired or not yet valid."));
    }
    if header("host") != Some(expected_host) {
        return Err(signature_error(
            "The host header does not name this endpoint.",
        ));
    }
    let signed: Vec<&str> = field("SignedHeaders").split(';').collect();
    let required = ["host", "x-amz-date"]
        .into_iter()
        .chain(token.map(|_| "x-amz-security-token"));
    if let Some(missing) = required.into_iter().find(|h| !signed.contains(h)) {
        return Err(signature_error(&format!(
            "'{missing}' must be a signed header."
        )));
    }
    // Recompute the whole Authorization header from the request as received.
    let mut headers = Vec::new();
    for name in &signed {
        if matches!(*name, "x-amz-date" | "x-amz-security-token") {
            continue; // the signer adds these from the time and the credentials
        }
        let Some(value) = header(name) else {
            return Err(signature_error(&format!(
                "Signed header '{name}' is missing."
            )));
        };
        headers.push((*name, value));
    }
    let identity = aws_credential_types::Credentials::new(
        access_key_id,
        secret,
        token.map(str::to_owned),
        None,
        "mock",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name("bedrock")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let uri = format!(
        "http://{expected_host}{}",
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let signable = SignableRequest::new(
        parts.method.as_str(),
        uri,
        headers.into_iter(),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let expected = instructions
        .headers()
        .find(|(name, _)| *name == "authorization")
        .map(|(_, value)| value.to_owned())
        .unwrap();
    if expected == authorization {
        Ok(())
    } else {
        Err(signature_error(SIGNATURE_MISMATCH))
    }
}

/// `20261121T093000Z` → a time (UTC).
fn parse_amz_date(text: &str) -> Option<SystemTime> {
    if text.len() != 16 || &text[8..9] != "T" || !text.ends_with('Z') {
        return None;
    }
    let n = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (hh, mm, ss) = (n(9..11)?, n(11..13)?, n(13..15)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

// ---------------------------------------------------------------------------------------
// Request shapes
// ---------------------------------------------------------------------------------------

fn check_converse(body: &Value) -> Result<(), String> {
    const TOP: [&str; 10] = [
        "messages",
        "system",
        "inferenceConfig",
        "toolConfig",
        "additionalModelRequestFields",
        "additionalModelResponseFieldPaths",
        "guardrailConfig",
        "promptVariables",
        "requestMetadata",
        "performanceConfig",
    ];
    for key in body.as_object().unwrap().keys() {
        if !TOP.contains(&key.as_str()) {
            return Err(format!(
                "Malformed input request: extraneous key [{key}] is not permitted, please reformat your input and try again."
            ));
        }
    }
    let messages = body["messages"]
        .as_array()
        .filter(|m| !m.is_empty())
        .ok_or("A conversation must start with a user message.")?;
    let mut uses_tools = false;
    for (i, message) in messages.iter().enumerate() {
        let role = message["role"].as_str().unwrap_or("");
        let expected = if i % 2 == 0 { "user" } else { "assistant" };
        if role != expected {
            return Err("A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.".into());
        }
        let content = message["content"].as_array().filter(|c| !c.is_empty())
            .ok_or("The content field in the Message object is empty. Add a ContentBlock object to the content field and try again.")?;
        for block in content {
            let block = block
                .as_object()
                .ok_or("A content block must be an object.")?;
            if block.len() != 1 {
                return Err("A ContentBlock must set exactly one member.".into());
            }
            let (kind, value) = block.iter().next().unwrap();
            match kind.as_str() {
                "text" => {
                    value.as_str().ok_or("text must be a string")?;
                }
                "image" => {
                    let format = value["format"].as_str().unwrap_or("");
                    if !["png", "jpeg", "gif", "webp"].contains(&format) {
                        return Err(format!("Invalid image format: {format}"));
                    }
                    let bytes = value["source"]["bytes"]
                        .as_str()
                        .ok_or("image source bytes missing")?;
                    base64::engine::general_purpose::STANDARD
                        .decode(bytes)
                        .map_err(|_| "image bytes are not base64")?;
                }
                "toolUse" => {
                    uses_tools = true;
                    if role != "assistant"
                        || !value["toolUseId"].is_string()
                        || !value["name"].is_string()
                        || !value["input"].is_object()
                    {
                        return Err("Invalid toolUse block.".into());
                    }
                }
                "toolResult" => {
                    uses_tools = true;
                    if role != "user"
                        || !value["toolUseId"].is_string()
                        || !value["content"].is_array()
                    {
                        return Err("Invalid toolResult block.".into());
                    }
                }
                "document" | "guardContent" | "cachePoint" | "reasoningContent" | "video" => {}
                other => return Err(format!("Unknown content block member: {other}")),
            }
        }
    }
    if let Some(system) = body.get("system") {
        let ok = system.as_array().is_some_and(|s| {
            s.iter()
                .all(|b| b["text"].is_string() || b.get("cachePoint").is_some())
        });
        if !ok {
            return Err("Invalid system content.".into());
        }
    }
    if let Some(config) = body.get("inferenceConfig") {
        for (key, value) in config
            .as_object()
            .ok_or("inferenceConfig must be an object")?
        {
            match key.as_str() {
                "maxTokens" if value.as_u64().is_some_and(|n| n > 0) => {}
                "temperature" | "topP" if value.is_number() => {}
                "stopSequences"
                    if value
                        .as_array()
                        .is_some_and(|s| s.iter().all(Value::is_string)) => {}
                _ => return Err(format!("Malformed inferenceConfig: [{key}]")),
            }
        }
    }
    match body.get("toolConfig") {
        None if uses_tools => Err("The toolConfig field must be defined when using toolUse and toolResult content blocks.".into()),
        None => Ok(()),
        Some(config) => {
            let tools = config["tools"].as_array().filter(|t| !t.is_empty()).ok_or("toolConfig.tools must not be empty")?;
            for tool in tools {
                if !tool["toolSpec"]["name"].is_string() || !tool["toolSpec"]["inputSchema"]["json"].is_object() {
                    return Err("Invalid toolSpec.".into());
                }
            }
            match config.get("toolChoice") {
                None => Ok(()),
                Some(choice) if choice.get("auto").is_some() || choice.get("any").is_some() || choice["tool"]["name"].is_string() => Ok(()),
                Some(_) => Err("Invalid toolChoice.".into()),
            }
        }
    }
}

fn check_messages(body: &Value) -> Result<(), String> {
    if body["anthropic_version"] != "bedrock-2023-05-31" {
        return Err("Malformed input request: #: required key [anthropic_version] not found or invalid, please reformat your input and try again.".into());
    }
    for key in ["model", "stream"] {
        if body.get(key).is_some() {
            return Err(format!(
                "Malformed input request: #: extraneous key [{key}] is not permitted, please reformat your input and try again."
            ));
        }
    }
    if body["max_tokens"].as_u64().is_none_or(|n| n == 0) {
        return Err("Malformed input request: #: required key [max_tokens] not found, please reformat your input and try again.".into());
    }
    if body["messages"].as_array().is_none_or(|m| m.is_empty()) {
        return Err("Malformed input request: #/messages: expected minimum item count: 1".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------------------

fn converse_usage(model: &str) -> Value {
    if model.contains("ttl-split") {
        let (short, long) = TTL_SPLIT_WRITES;
        return json!({"inputTokens": INPUT_TOKENS, "outputTokens": OUTPUT_TOKENS,
           "totalTokens": INPUT_TOKENS + OUTPUT_TOKENS + CACHE_READ + short + long,
           "cacheReadInputTokens": CACHE_READ, "cacheWriteInputTokens": short + long,
           "cacheDetails": [{"ttl": "1h", "inputTokens": long}, {"ttl": "5m", "inputTokens": short}]});
    }
    json!({"inputTokens": INPUT_TOKENS, "outputTokens": OUTPUT_TOKENS,
           "totalTokens": INPUT_TOKENS + OUTPUT_TOKENS + CACHE_READ + CACHE_WRITE,
           "cacheReadInputTokens": CACHE_READ, "cacheWriteInputTokens": CACHE_WRITE})
}

/// Anthropic's `usage` object of an InvokeModel answer to `model`, `output` output tokens.
fn claude_usage(model: &str, output: u64) -> Value {
    let (input, read, _) = CLAUDE_USAGE;
    let mut usage = json!({"input_tokens": input, "cache_creation_input_tokens": 0,
                           "cache_read_input_tokens": read, "output_tokens": output});
    if model.contains("ttl-split") {
        let (short, long) = TTL_SPLIT_WRITES;
        usage["cache_creation_input_tokens"] = json!(short + long);
        usage["cache_creation"] =
            json!({"ephemeral_5m_input_tokens": short, "ephemeral_1h_input_tokens": long});
    }
    usage
}

fn first_tool(body: &Value) -> String {
    body.pointer("/toolConfig/tools/0/toolSpec/name")
        .and_then(Value::as_str)
        .unwrap_or("none")
        .to_owned()
}

fn with_request_id(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert("x-amzn-RequestId", REQUEST_ID.parse().unwrap());
    response
}

fn converse_answer(model: &str, body: &Value) -> Response {
    if model.contains("golden") {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/bedrock/converse_response.json"
        );
        let text = std::fs::read_to_string(path).unwrap();
        return with_request_id(([("content-type", "application/json")], text).into_response());
    }
    let (content, stop) = if model.contains("tools") {
        (
            json!([{"text": "Checking."}, {"toolUse": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
                 "name": first_tool(body), "input": {"city": "Paris"}}}]),
            "tool_use",
        )
    } else {
        (json!([{"text": PIECES.concat()}]), "end_turn")
    };
    with_request_id(
        axum::Json(json!({
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop, "usage": converse_usage(model), "metrics": {"latencyMs": 412},
        }))
        .into_response(),
    )
}

fn messages_answer(model: &str) -> Response {
    let (input, read, output) = CLAUDE_USAGE;
    let mut response = with_request_id(
        axum::Json(json!({
            "id": "msg_bdrk_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [{"type": "text", "text": "Hello from Claude on Bedrock"}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": claude_usage(model, output),
        }))
        .into_response(),
    );
    let headers = response.headers_mut();
    headers.insert("x-amzn-bedrock-input-token-count", (input + read).into());
    headers.insert("x-amzn-bedrock-output-token-count", output.into());
    response
}

/// One event-stream message, as Bedrock frames it.
pub fn event_frame(kind: &str, mut payload: Value) -> Bytes {
    if let Some(map) = payload.as_object_mut() {
        map.insert(
            "p".into(),
            json!("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"[..(kind.len() % 20) + 4]),
        );
    }
    encode(
        &[
            (":event-type", kind),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload,
    )
}

/// An exception message, as Bedrock frames it mid-stream.
pub fn exception_frame(kind: &str, message: &str) -> Bytes {
    encode(
        &[
            (":exception-type", kind),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        json!({ "message": message }),
    )
}

fn encode(headers: &[(&str, &str)], payload: Value) -> Bytes {
    let mut message = Message::new(Bytes::from(payload.to_string()));
    for (name, value) in headers {
        message = message.add_header(Header::new(
            (*name).to_owned(),
            HeaderValue::String((*value).to_owned().into()),
        ));
    }
    let mut out = Vec::new();
    write_message_to(&message, &mut out).unwrap();
    Bytes::from(out)
}

fn converse_stream(shared: Arc<Shared>, model: &str, body: &Value) -> Response {
    let mut frames = vec![event_frame("messageStart", json!({"role": "assistant"}))];
    let stop = if model.contains("tools") {
        frames.push(event_frame(
            "contentBlockStart",
            json!({"contentBlockIndex": 0,
            "start": {"toolUse": {"toolUseId": "tooluse_stream_1", "name": first_tool(body)}}}),
        ));
        for piece in ["{\"city\":", " \"Par", "is\"}"] {
            frames.push(event_frame(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": piece}}}),
            ));
        }
        frames.push(event_frame(
            "contentBlockStop",
            json!({"contentBlockIndex": 0}),
        ));
        "tool_use"
    } else {
        for piece in PIECES {
            frames.push(event_frame(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"text": piece}}),
            ));
        }
        frames.push(event_frame(
            "contentBlockStop",
            json!({"contentBlockIndex": 0}),
        ));
        "end_turn"
    };
    frames.push(event_frame("messageStop", json!({ "stopReason": stop })));
    frames.push(event_frame(
        "metadata",
        json!({"usage": converse_usage(model), "metrics": {"latencyMs": 388}}),
    ));
    if model.contains("midstream") {
        frames.truncate(2);
        frames.push(exception_frame(
            "throttlingException",
            "Too many tokens, please wait before trying again.",
        ));
    }
    // `hold` pauses after messageStart and the first delta.
    let pause_after = model.contains("hold").then_some(2);
    event_stream(
        shared,
        frames,
        pause_after,
        "application/vnd.amazon.eventstream",
    )
}

fn messages_stream(shared: Arc<Shared>, model: &str) -> Response {
    let (input, read, output) = CLAUDE_USAGE;
    let mut events = vec![
        json!({"type": "message_start", "message": {"id": "msg_bdrk_01", "type": "message", "role": "assistant",
               "model": "claude-sonnet-4-5-20250929", "content": [], "stop_reason": null, "stop_sequence": null,
               "usage": claude_usage(model, 1)}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ];
    for piece in ["Hello", " from", " Claude"] {
        events.push(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}));
    }
    events.push(json!({"type": "content_block_stop", "index": 0}));
    events.push(json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": output}}));
    events.push(json!({"type": "message_stop", "amazon-bedrock-invocationMetrics": {
        "inputTokenCount": input + read, "outputTokenCount": output, "invocationLatency": 812, "firstByteLatency": 301}}));
    let frames = events
        .into_iter()
        .map(|event| {
            let bytes = base64::engine::general_purpose::STANDARD.encode(event.to_string());
            event_frame("chunk", json!({ "bytes": bytes }))
        })
        .collect();
    // `hold` pauses before message_stop: usage (message_delta) has been sent.
    let pause_after = model.contains("hold").then_some(7);
    let mut response = event_stream(
        shared,
        frames,
        pause_after,
        "application/vnd.amazon.eventstream",
    );
    response.headers_mut().insert(
        "x-amzn-bedrock-content-type",
        "application/json".parse().unwrap(),
    );
    response
}

/// Counts a stream as finished or dropped.
struct StreamGuard {
    shared: Arc<Shared>,
    finished: bool,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let counter = if self.finished {
            &self.shared.streams_finished
        } else {
            &self.shared.streams_dropped
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

/// Sends `frames` one write at a time; with `pause_after`, waits for a release after that
/// many frames.
fn event_stream(
    shared: Arc<Shared>,
    frames: Vec<Bytes>,
    pause_after: Option<usize>,
    content_type: &str,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        for (n, frame) in frames.into_iter().enumerate() {
            if pause_after == Some(n) {
                {
                    tx.closed().await;
                    return;
                }
            }
            if tx.send(frame).await.is_err() {
                return;
            }
        }
    });
    let guard = StreamGuard {
        shared,
        finished: false,
    };
    let body = futures::stream::unfold((rx, guard), |(mut rx, mut guard)| async move {
        match rx.recv().await {
            Some(frame) => Some((Ok::<_, std::convert::Infallible>(frame), (rx, guard))),
            None => {
                guard.finished = true;
                drop(guard);
                None
            }
        }
    });
    let mut response = Response::new(Body::from_stream(body));
    response
        .headers_mut()
        .insert("content-type", content_type.parse().unwrap());
    with_request_id(response)
}
