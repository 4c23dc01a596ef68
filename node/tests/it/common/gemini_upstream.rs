//! A mock Gemini upstream written from Google's `generativelanguage` v1beta reference:
//! `POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent` (which must come
//! with `alt=sse`), `:embedContent` and `:batchEmbedContents`; the key in `x-goog-api-key`
//! only (a `key` in the query string, or an `Authorization` header, is a violation: the
//! gateway must never put its key in a URL); a body that must be a valid
//! `GenerateContentRequest` (only known top-level and `generationConfig` fields, non-empty
//! `contents` with roles `user`/`model` only, known part kinds, `systemInstruction` as a
//! `Content`, `functionDeclarations`, a valid `functionCallingConfig`). Anything else is
//! answered as Google does — `{"error":{"code","message","status"}}` — and noted in
//! [`GeminiUpstream::violations`].
//!
//! Answers are in the exact wire format: `GenerateContentResponse` JSON with `usageMetadata`
//! (13 prompt tokens of which 4 cached, 6 candidate tokens, 2 thought tokens), and SSE
//! streams of `data: {GenerateContentResponse}` events with running usage in each and
//! `finishReason` in the last. Behaviour by the model in the path:
//!
//! | model          | behaviour                                                          |
//! |----------------|--------------------------------------------------------------------|
//! | anything       | "Hello from Gemini" (three stream events)                          |
//! | `tools`        | text, then two `functionCall` parts (the first with a signature)   |
//! | `error-<st>`   | HTTP `<st>`, Google's error body; 429 carries `RetryInfo` `7s`     |
//! | `busy-once`    | the first call gets 429 with `RetryInfo` `1s`, later calls answer  |
//! | `leak-key`     | 400 whose message repeats the presented key                        |
//! | `blocked`      | no candidates, `promptFeedback.blockReason: SAFETY`                |
//! | `unsafe`       | a candidate stopped with `finishReason: SAFETY`, no content        |
//! | `length`       | `finishReason: MAX_TOKENS`                                         |
//! | `hold`         | streams one event, then holds the stream open until the reader goes away      |
//! | `cut`          | streams two events, then closes without a `finishReason`           |
//! | `overloaded`   | streams one event, then an `{"error":{… 503 UNAVAILABLE}}` event   |

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

/// The key the upstream accepts.
pub const GEMINI_KEY: &str = "AIzaSyUpstream-secret-0123456789abcdefgh";
/// `promptTokenCount` of every answer (cached included).
pub const PROMPT: u64 = 13;
/// `cachedContentTokenCount`.
pub const CACHED: u64 = 4;
/// `candidatesTokenCount` of a finished answer.
pub const CANDIDATES: u64 = 6;
/// `thoughtsTokenCount` of a finished answer.
pub const THOUGHTS: u64 = 2;
/// Output tokens as the gateway records them.
pub const OUTPUT: u64 = CANDIDATES + THOUGHTS;
/// The text of every answer, as streamed in pieces.
pub const PIECES: [&str; 3] = ["Hello", " from", " Gemini"];

/// One request the upstream received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Path.
    pub path: String,
    /// Query string.
    pub query: Option<String>,
    /// Headers.
    pub headers: HeaderMap,
    /// Body as JSON.
    pub body: Value,
}

#[derive(Default)]
struct Shared {
    seen: Mutex<Vec<Seen>>,
    violations: Mutex<Vec<String>>,
    streams_dropped: AtomicUsize,
    streams_finished: AtomicUsize,
    busy_once: AtomicBool,
}

/// A running mock Gemini API.
#[derive(Clone)]
pub struct GeminiUpstream {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    shared: Arc<Shared>,
}

impl GeminiUpstream {
    /// Starts it on `127.0.0.1:0`.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, shared }
    }

    /// `http://addr`, the `api_base` of a target (the provider adds `/v1beta`).
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// The last request received.
    pub fn last(&self) -> Seen {
        self.seen().pop().expect("the upstream was called")
    }

    /// Every way a request broke the API's rules.
    pub fn violations(&self) -> Vec<String> {
        self.shared.violations.lock().unwrap().clone()
    }

    /// Streams whose client went away before the end.
    pub fn streams_dropped(&self) -> usize {
        self.shared.streams_dropped.load(Ordering::SeqCst)
    }

    /// Streams sent to the end.
    pub fn streams_finished(&self) -> usize {
        self.shared.streams_finished.load(Ordering::SeqCst)
    }
}

fn status_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        500 => "INTERNAL",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}

/// Google's error answer.
fn google_error(status: StatusCode, message: &str, details: Value) -> Response {
    let mut error =
        json!({"code": status.as_u16(), "message": message, "status": status_name(status)});
    if details.as_array().is_some_and(|d| !d.is_empty()) {
        error["details"] = details;
    }
    (status, axum::Json(json!({ "error": error }))).into_response()
}

fn invalid(shared: &Shared, message: String) -> Response {
    shared.violations.lock().unwrap().push(message.clone());
    google_error(StatusCode::BAD_REQUEST, &message, json!([]))
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let raw = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    shared.seen.lock().unwrap().push(Seen {
        path: path.clone(),
        query: query.clone(),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    if params.iter().any(|(name, _)| name == "key") {
        return invalid(&shared, "the API key was sent in the query string".into());
    }
    if parts.headers.contains_key("authorization") {
        return invalid(
            &shared,
            "an Authorization header was sent with an API key".into(),
        );
    }
    let presented = parts
        .headers
        .get("x-goog-api-key")
        .and_then(|v| v.to_str().ok());
    let Some((model, method)) = path
        .strip_prefix("/v1beta/models/")
        .and_then(|rest| rest.split_once(':'))
    else {
        shared
            .violations
            .lock()
            .unwrap()
            .push(format!("unknown path {path}"));
        return google_error(
            StatusCode::NOT_FOUND,
            "Requested entity was not found.",
            json!([]),
        );
    };
    let model = model.to_owned();
    if model == "leak-key" {
        let message = format!(
            "API key {} is not allowed for this model.",
            presented.unwrap_or("")
        );
        return google_error(StatusCode::BAD_REQUEST, &message, json!([]));
    }
    if presented != Some(GEMINI_KEY) {
        return google_error(
            StatusCode::BAD_REQUEST,
            "API key not valid. Please pass a valid API key.",
            json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}]),
        );
    }
    if parts.method != http::Method::POST {
        return invalid(&shared, format!("method {} is not POST", parts.method));
    }
    let streaming = match method {
        "generateContent" => false,
        "streamGenerateContent" => {
            if !params
                .iter()
                .any(|(name, value)| name == "alt" && value == "sse")
            {
                return invalid(&shared, "streamGenerateContent without alt=sse".into());
            }
            true
        }
        "embedContent" | "batchEmbedContents" => {
            return match check_embed(method, &model, &body) {
                Ok(()) => embed(method, &body),
                Err(problem) => invalid(&shared, problem),
            };
        }
        other => return invalid(&shared, format!("unknown method {other}")),
    };
    if let Err(problem) = check_generate(&body) {
        return invalid(&shared, problem);
    }
    if let Some(status) = model
        .strip_prefix("error-")
        .and_then(|s| s.parse::<u16>().ok())
    {
        let status = StatusCode::from_u16(status).unwrap();
        let details = if status == StatusCode::TOO_MANY_REQUESTS {
            json!([{"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_paid_tier_input_token_count",
                                    "quotaId": "GenerateContentPaidTierInputTokensPerModelPerMinute"}]},
                   {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}])
        } else {
            json!([])
        };
        return google_error(
            status,
            &format!("upstream says {}", status.as_u16()),
            details,
        );
    }
    if model == "busy-once" && !shared.busy_once.swap(true, Ordering::SeqCst) {
        let details =
            json!([{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}]);
        return google_error(
            StatusCode::TOO_MANY_REQUESTS,
            "Resource has been exhausted (e.g. check quota).",
            details,
        );
    }
    if streaming {
        stream(shared, &model)
    } else {
        axum::Json(answer(&model)).into_response()
    }
}

const TOP_LEVEL: &[&str] = &[
    "contents",
    "systemInstruction",
    "tools",
    "toolConfig",
    "generationConfig",
    "safetySettings",
    "cachedContent",
];
const GENERATION_CONFIG: &[&str] = &[
    "stopSequences",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "responseModalities",
    "candidateCount",
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseLogprobs",
    "logprobs",
    "thinkingConfig",
    "mediaResolution",
];
const PART_DATA: &[&str] = &[
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
];

fn unknown_name(name: &str) -> String {
    format!("Invalid JSON payload received. Unknown name \"{name}\": Cannot find field.")
}

/// Checks a `Content` (`role` optional for `systemInstruction`).
fn check_content(content: &Value, at: &str, role_required: bool) -> Result<(), String> {
    if role_required {
        match content.get("role").and_then(Value::as_str) {
            Some("user" | "model") => {}
            other => return Err(format!("{at}.role must be user or model, got {other:?}")),
        }
    }
    let parts = content
        .get("parts")
        .and_then(Value::as_array)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| format!("{at}.parts must be a non-empty array"))?;
    for (i, part) in parts.iter().enumerate() {
        let object = part
            .as_object()
            .ok_or_else(|| format!("{at}.parts[{i}] is not an object"))?;
        let data: Vec<&String> = object
            .keys()
            .filter(|k| PART_DATA.contains(&k.as_str()))
            .collect();
        if data.len() != 1 {
            return Err(format!(
                "{at}.parts[{i}] must have exactly one data field, has {data:?}"
            ));
        }
        if let Some(name) = object.keys().find(|k| {
            !PART_DATA.contains(&k.as_str())
                && !["thought", "thoughtSignature", "videoMetadata"].contains(&k.as_str())
        }) {
            return Err(unknown_name(name));
        }
        if let Some(inline) = part.get("inlineData") {
            let ok = inline["mimeType"].is_string()
                && inline["data"].as_str().is_some_and(|d| {
                    use base64::Engine;
                    base64::engine::general_purpose::STANDARD.decode(d).is_ok()
                });
            if !ok {
                return Err(format!(
                    "{at}.parts[{i}].inlineData needs mimeType and base64 data"
                ));
            }
        }
        if let Some(file) = part.get("fileData")
            && !(file["mimeType"].is_string() && file["fileUri"].is_string())
        {
            return Err(format!(
                "{at}.parts[{i}].fileData needs mimeType and fileUri"
            ));
        }
        if let Some(call) = part.get("functionCall")
            && !(call["name"].is_string() && call["args"].is_object())
        {
            return Err(format!(
                "{at}.parts[{i}].functionCall needs name and object args"
            ));
        }
        if let Some(response) = part.get("functionResponse")
            && !(response["name"].is_string() && response["response"].is_object())
        {
            return Err(format!(
                "{at}.parts[{i}].functionResponse needs name and object response"
            ));
        }
    }
    Ok(())
}

fn check_generate(body: &Value) -> Result<(), String> {
    let object = body.as_object().ok_or("the body is not a JSON object")?;
    if let Some(name) = object.keys().find(|k| !TOP_LEVEL.contains(&k.as_str())) {
        return Err(unknown_name(name));
    }
    let contents = body["contents"]
        .as_array()
        .filter(|c| !c.is_empty())
        .ok_or("contents must be a non-empty array")?;
    for (i, content) in contents.iter().enumerate() {
        check_content(content, &format!("contents[{i}]"), true)?;
    }
    if let Some(system) = body.get("systemInstruction") {
        check_content(system, "systemInstruction", false)?;
    }
    if let Some(config) = body.get("generationConfig") {
        let config = config
            .as_object()
            .ok_or("generationConfig must be an object")?;
        if let Some(name) = config
            .keys()
            .find(|k| !GENERATION_CONFIG.contains(&k.as_str()))
        {
            return Err(unknown_name(&format!("generation_config.{name}")));
        }
    }
    if let Some(tools) = body.get("tools") {
        for tool in tools.as_array().ok_or("tools must be an array")? {
            let declarations = tool["functionDeclarations"]
                .as_array()
                .ok_or("a tool must have functionDeclarations")?;
            for declaration in declarations {
                let name = declaration["name"].as_str().unwrap_or("");
                let valid = !name.is_empty()
                    && name.len() <= 64
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c));
                if !valid {
                    return Err(format!("invalid function name {name:?}"));
                }
                if declaration.get("parameters").is_some()
                    && declaration.get("parametersJsonSchema").is_some()
                {
                    return Err("parameters and parametersJsonSchema are mutually exclusive".into());
                }
            }
        }
    }
    if let Some(config) = body.pointer("/toolConfig/functionCallingConfig") {
        let mode = config["mode"].as_str().unwrap_or("");
        if !["AUTO", "ANY", "NONE", "VALIDATED"].contains(&mode) {
            return Err(format!("invalid functionCallingConfig.mode {mode:?}"));
        }
        if config.get("allowedFunctionNames").is_some() && !["ANY", "VALIDATED"].contains(&mode) {
            return Err("allowedFunctionNames requires mode ANY".into());
        }
    }
    Ok(())
}

fn check_embed(method: &str, model: &str, body: &Value) -> Result<(), String> {
    let check_one = |request: &Value, at: &str| -> Result<(), String> {
        let texts = request
            .pointer("/content/parts")
            .and_then(Value::as_array)
            .filter(|p| !p.is_empty() && p.iter().all(|p| p["text"].is_string()));
        if texts.is_none() {
            return Err(format!("{at}.content.parts must be text parts"));
        }
        Ok(())
    };
    if method == "embedContent" {
        return check_one(body, "request");
    }
    let requests = body["requests"]
        .as_array()
        .filter(|r| !r.is_empty())
        .ok_or("requests must be a non-empty array")?;
    for (i, request) in requests.iter().enumerate() {
        if request["model"].as_str() != Some(format!("models/{model}").as_str()) {
            return Err(format!("requests[{i}].model must be models/{model}"));
        }
        check_one(request, &format!("requests[{i}]"))?;
    }
    Ok(())
}

fn vector(index: usize, dimensions: u64) -> Value {
    json!(
        (0..dimensions)
            .map(|d| index as f64 + d as f64 / 10.0)
            .collect::<Vec<f64>>()
    )
}

fn embed(method: &str, body: &Value) -> Response {
    let dimensions = |request: &Value| request["outputDimensionality"].as_u64().unwrap_or(4);
    let answer = if method == "embedContent" {
        json!({"embedding": {"values": vector(0, dimensions(body))}})
    } else {
        let requests = body["requests"].as_array().cloned().unwrap_or_default();
        let embeddings: Vec<Value> = requests
            .iter()
            .enumerate()
            .map(|(i, r)| json!({"values": vector(i, dimensions(r))}))
            .collect();
        json!({"embeddings": embeddings})
    };
    axum::Json(answer).into_response()
}

fn usage(candidates: u64, last: bool) -> Value {
    if last {
        json!({"promptTokenCount": PROMPT, "candidatesTokenCount": CANDIDATES,
               "cachedContentTokenCount": CACHED, "thoughtsTokenCount": THOUGHTS,
               "totalTokenCount": PROMPT + CANDIDATES + THOUGHTS,
               "promptTokensDetails": [{"modality": "TEXT", "tokenCount": PROMPT}]})
    } else {
        json!({"promptTokenCount": PROMPT, "candidatesTokenCount": candidates,
               "totalTokenCount": PROMPT + candidates})
    }
}

fn function_calls() -> Vec<Value> {
    vec![
        json!({"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2lnbmF0dXJl"}),
        json!({"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}),
    ]
}

fn response(model: &str, candidate: Value, usage: Value) -> Value {
    json!({"candidates": [candidate], "usageMetadata": usage, "modelVersion": format!("{model}-001"),
           "responseId": "gemini-response-1"})
}

fn blocked() -> Value {
    json!({"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [
               {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": true}]},
           "usageMetadata": {"promptTokenCount": PROMPT, "totalTokenCount": PROMPT},
           "modelVersion": "blocked-001"})
}

fn answer(model: &str) -> Value {
    let text = json!({"text": PIECES.concat()});
    let (parts, finish) = match model {
        "blocked" => return blocked(),
        "unsafe" => {
            let candidate = json!({"finishReason": "SAFETY", "index": 0, "safetyRatings": [
                {"category": "HARM_CATEGORY_HARASSMENT", "probability": "HIGH", "blocked": true}]});
            return response(model, candidate, usage(0, true));
        }
        "tools" => {
            let mut parts = vec![json!({"text": "Checking both cities."})];
            parts.extend(function_calls());
            (parts, "STOP")
        }
        "length" => (vec![text], "MAX_TOKENS"),
        _ => (vec![text], "STOP"),
    };
    let candidate =
        json!({"content": {"parts": parts, "role": "model"}, "finishReason": finish, "index": 0});
    response(model, candidate, usage(CANDIDATES, true))
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

/// The events of a stream for `model` (before any hold or cut).
fn events(model: &str) -> Vec<Value> {
    if model == "blocked" {
        return vec![blocked()];
    }
    let last = PIECES.len() - 1;
    PIECES
        .iter()
        .enumerate()
        .map(|(i, piece)| {
            let mut parts = vec![json!({"text": piece})];
            let mut candidate = json!({"index": 0});
            if i == last {
                if model == "tools" {
                    parts.extend(function_calls());
                }
                candidate["finishReason"] = json!(if model == "length" {
                    "MAX_TOKENS"
                } else {
                    "STOP"
                });
            }
            candidate["content"] = json!({"parts": parts, "role": "model"});
            response(model, candidate, usage(2 * (i as u64 + 1), i == last))
        })
        .collect()
}

fn stream(shared: Arc<Shared>, model: &str) -> Response {
    let model = model.to_owned();
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(16);
    tokio::spawn(async move {
        for (i, event) in events(&model).into_iter().enumerate() {
            if tx.send(format!("data: {event}\r\n\r\n")).await.is_err() {
                return;
            }
            if i == 0 && model == "overloaded" {
                let error = json!({"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}});
                let _ = tx.send(format!("data: {error}\r\n\r\n")).await;
                return;
            }
            if i == 0 && model == "hold" {
                tx.closed().await;
                return;
            }
            if i == 1 && model == "cut" {
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
            Some(item) => Some((
                Ok::<_, std::convert::Infallible>(Bytes::from(item)),
                (rx, guard),
            )),
            None => {
                guard.finished = true;
                drop(guard);
                None
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream")
        .header("x-goog-request-params", "mock")
        .body(Body::from_stream(body))
        .unwrap()
}
