//! The OpenAI wire format: api.openai.com, Azure OpenAI deployments, and every provider that
//! speaks OpenAI's API at an `api_base` (Mistral, Groq, Together, DeepSeek, xAI, OpenRouter,
//! Ollama, vLLM).
//!
//! Streams are parsed event by event and forwarded without re-serialising, except the one
//! chunk that carries usage: `stream_options.include_usage` is always asked for upstream,
//! and the usage chunk reaches the client only if the client asked for it too.

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use serde_json::{Map, Value};

use super::{
    Completion, DONE_FRAME, EventStream, Operation, Provider, ProviderError, ProviderRequest,
    StreamEvent, TimeoutPhase, UpstreamError, api_key, data_frame, usage_from_openai,
};
use crate::config::Target;
use crate::http_client::HttpClients;

/// Largest upstream error body read for its message.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The OpenAI-compatible client.
#[derive(Debug, Clone)]
pub struct OpenAiProvider {
    http: HttpClients,
}

impl OpenAiProvider {
    /// Wraps the shared pooled clients.
    pub fn new(http: HttpClients) -> Self {
        Self { http }
    }

    /// The pooled clients.
    pub fn http(&self) -> &HttpClients {
        &self.http
    }

    fn build(
        &self,
        request: &ProviderRequest<'_>,
        body: &Map<String, Value>,
        stream: bool,
    ) -> Result<reqwest::RequestBuilder, ProviderError> {
        let target = request.target;
        let builder = request
            .client(&self.http)?
            .post(upstream_url(target, request.op)?)
            .json(body)
            .timeout(request.timeouts.total);
        let builder = if stream {
            builder.header(http::header::ACCEPT, "text/event-stream")
        } else {
            builder
        };
        Ok(authorize(builder, target, request.client_headers))
    }

    async fn send(
        &self,
        request: &ProviderRequest<'_>,
        body: &Map<String, Value>,
        stream: bool,
    ) -> Result<reqwest::Response, ProviderError> {
        let pending = self.build(request, body, stream)?.send();
        let response = super::first_byte(pending, request.timeouts.first_byte).await?;
        if response.status().is_success() {
            Ok(response)
        } else {
            let key = api_key(request.target, request.client_headers);
            Err(status_error(response, key.as_deref()).await)
        }
    }
}

/// The full upstream URL for `op` on `target`.
pub fn upstream_url(target: &Target, op: Operation) -> Result<String, ProviderError> {
    let path = match op {
        Operation::Chat => "/chat/completions",
        Operation::Completions => "/completions",
        Operation::Embeddings => "/embeddings",
        Operation::Responses => "/responses",
        Operation::AnthropicMessages | Operation::GeminiGenerateContent => {
            return Err(ProviderError::Unsupported(format!(
                "provider `{}` does not speak this native API",
                target.provider
            )));
        }
    };
    Ok(match (&target.azure, op) {
        (Some(azure), Operation::Responses) => format!(
            "{}/openai/responses?api-version={}",
            target.api_base, azure.api_version
        ),
        (Some(azure), _) => format!(
            "{}/openai/deployments/{}{}?api-version={}",
            target.api_base, azure.deployment, path, azure.api_version
        ),
        (None, _) => format!("{}{}", target.api_base, path),
    })
}

/// Adds the target's credentials (never the client's gateway key).
pub fn authorize(
    builder: reqwest::RequestBuilder,
    target: &Target,
    client_headers: &http::HeaderMap,
) -> reqwest::RequestBuilder {
    let mut builder = builder;
    if let Some(key) = api_key(target, client_headers) {
        builder = match &target.azure {
            Some(azure) if !azure.bearer => builder.header("api-key", key),
            _ => builder.bearer_auth(key),
        };
    }
    if let Some(org) = &target.organization {
        builder = builder.header("OpenAI-Organization", org);
    }
    builder
}

/// Turns an upstream error response into [`ProviderError::Status`], keeping the provider's
/// message, type, code and `Retry-After`. Some providers echo the presented key in their
/// 401 message: the key used is scrubbed from the message before it goes anywhere.
async fn status_error(response: reqwest::Response, key: Option<&str>) -> ProviderError {
    let status = response.status();
    let retry_after = response.headers().get(RETRY_AFTER).cloned();
    let body = read_capped(response, MAX_ERROR_BODY).await;
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let text = |key: &str| {
        error.and_then(|e| e.get(key)).and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    let message = text("message")
        .or_else(|| error.and_then(Value::as_str).map(str::to_owned))
        .or_else(|| parsed.as_ref()?.get("message")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| {
            format!(
                "HTTP {} from the provider with a non-JSON body",
                status.as_u16()
            )
        });
    let message = match key {
        Some(key) if key.len() >= 8 => {
            message.replace(key, &crate::secret::Secret::new(key).masked())
        }
        _ => message,
    };
    ProviderError::Status(Box::new(UpstreamError {
        status,
        message,
        error_type: text("type"),
        code: text("code"),
        param: text("param"),
        retry_after,
    }))
}

async fn read_capped(mut response: reqwest::Response, cap: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = cap.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= cap {
            break;
        }
    }
    body
}

impl Provider for OpenAiProvider {
    async fn complete(&self, request: ProviderRequest<'_>) -> Result<Completion, ProviderError> {
        let mut body = request.body.clone();
        body.remove("stream");
        body.remove("stream_options");
        let response = self.send(&request, &body, false).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ProviderError::from_transport(e, TimeoutPhase::Total))?;
        let answer: Map<String, Value> =
            serde_json::from_slice(&bytes).map_err(|e| ProviderError::InvalidResponse {
                detail: format!("not a JSON object: {e}"),
            })?;
        let usage = answer
            .get("usage")
            .and_then(usage_from_openai)
            .unwrap_or_default();
        Ok(Completion {
            body: answer,
            usage,
        })
    }

    async fn stream(&self, request: ProviderRequest<'_>) -> Result<EventStream, ProviderError> {
        let mut body = request.body.clone();
        body.insert("stream".into(), Value::Bool(true));
        let ask_usage =
            request.op != Operation::Responses && request.target.provider.accepts_stream_options();
        if ask_usage {
            let options = body
                .entry("stream_options")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(options) = options.as_object_mut() {
                options.insert("include_usage".into(), Value::Bool(true));
            }
        } else if !request.target.provider.accepts_stream_options() {
            // The provider rejects the field: never forward the client's either.
            body.remove("stream_options");
        }
        let response = self.send(&request, &body, true).await?;
        let is_sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_sse {
            return Err(ProviderError::InvalidResponse {
                detail: "a streaming request was not answered with text/event-stream".into(),
            });
        }
        let forward_usage = request.client_wants_usage;
        let responses_api = request.op == Operation::Responses;
        let events = response.bytes_stream().eventsource();
        let stream = async_stream(events, forward_usage, responses_api);
        Ok(stream)
    }
}

/// Converts upstream SSE events into frames, pulling usage out as it passes.
fn async_stream<S>(events: S, forward_usage: bool, responses_api: bool) -> EventStream
where
    S: futures::Stream<
            Item = Result<
                eventsource_stream::Event,
                eventsource_stream::EventStreamError<reqwest::Error>,
            >,
        > + Send
        + 'static,
{
    let state = StreamState {
        events: Box::pin(events),
        pending: Vec::new(),
        finished: false,
    };
    Box::pin(futures::stream::unfold(
        state,
        move |mut state| async move {
            loop {
                if let Some(item) = state.pending.pop() {
                    return Some((item, state));
                }
                if state.finished {
                    return None;
                }
                match state.events.next().await {
                    None => {
                        state.finished = true;
                        if !responses_api {
                            state.pending.push(Err(ProviderError::Interrupted {
                                detail: "the stream ended before [DONE]".into(),
                            }));
                        }
                    }
                    Some(Err(e)) => {
                        state.finished = true;
                        let detail = match e {
                            eventsource_stream::EventStreamError::Transport(t) => {
                                return Some((
                                    Err(ProviderError::from_transport(t, TimeoutPhase::Total)),
                                    state,
                                ));
                            }
                            other => other.to_string(),
                        };
                        state
                            .pending
                            .push(Err(ProviderError::InvalidResponse { detail }));
                    }
                    Some(Ok(event)) => {
                        let mut out = translate_event(&event, forward_usage, responses_api);
                        if event.data == "[DONE]" {
                            state.finished = true;
                        }
                        out.reverse();
                        state.pending = out;
                    }
                }
            }
        },
    ))
}

struct StreamState {
    events: std::pin::Pin<
        Box<
            dyn futures::Stream<
                    Item = Result<
                        eventsource_stream::Event,
                        eventsource_stream::EventStreamError<reqwest::Error>,
                    >,
                > + Send,
        >,
    >,
    pending: Vec<Result<StreamEvent, ProviderError>>,
    finished: bool,
}

/// What one upstream event becomes, in order.
fn translate_event(
    event: &eventsource_stream::Event,
    forward_usage: bool,
    responses_api: bool,
) -> Vec<Result<StreamEvent, ProviderError>> {
    if responses_api {
        return responses_event(event);
    }
    let data = event.data.as_str();
    if data == "[DONE]" {
        return vec![Ok(StreamEvent::Frame(Bytes::from_static(DONE_FRAME)))];
    }
    if !carries_usage(data) {
        return vec![Ok(StreamEvent::Frame(data_frame(data.as_bytes())))];
    }
    let Ok(Value::Object(mut chunk)) = serde_json::from_str::<Value>(data) else {
        return vec![Err(ProviderError::InvalidResponse {
            detail: "a stream chunk was not a JSON object".into(),
        })];
    };
    let usage = chunk.get("usage").and_then(usage_from_openai);
    let mut out = Vec::with_capacity(2);
    let has_choices = chunk
        .get("choices")
        .and_then(Value::as_array)
        .is_some_and(|c| !c.is_empty());
    if forward_usage {
        out.push(Ok(StreamEvent::Frame(data_frame(data.as_bytes()))));
    } else if has_choices {
        chunk.remove("usage");
        let stripped = serde_json::to_vec(&chunk).unwrap_or_default();
        out.push(Ok(StreamEvent::Frame(data_frame(&stripped))));
    }
    if let Some(usage) = usage {
        out.push(Ok(StreamEvent::Usage(usage)));
    }
    out
}

/// Responses API streams keep their event names; usage arrives in `response.completed`.
fn responses_event(event: &eventsource_stream::Event) -> Vec<Result<StreamEvent, ProviderError>> {
    let mut frame = Vec::with_capacity(event.data.len() + event.event.len() + 16);
    if !event.event.is_empty() && event.event != "message" {
        frame.extend_from_slice(b"event: ");
        frame.extend_from_slice(event.event.as_bytes());
        frame.push(b'\n');
    }
    frame.extend_from_slice(b"data: ");
    frame.extend_from_slice(event.data.as_bytes());
    frame.extend_from_slice(b"\n\n");
    let mut out = vec![Ok(StreamEvent::Frame(Bytes::from(frame)))];
    if event.event == "response.completed" || event.data.contains("\"response.completed\"") {
        let usage = serde_json::from_str::<Value>(&event.data)
            .ok()
            .and_then(|v| v.get("response")?.get("usage").and_then(usage_from_openai));
        if let Some(usage) = usage {
            out.push(Ok(StreamEvent::Usage(usage)));
        }
    }
    out
}

/// True when a chunk has a non-null `usage` (cheap check before parsing).
fn carries_usage(data: &str) -> bool {
    let mut rest = data;
    while let Some(at) = rest.find("\"usage\"") {
        let after = rest[at + 7..].trim_start();
        let value = after
            .strip_prefix(':')
            .map(str::trim_start)
            .unwrap_or(after);
        if !value.starts_with("null") {
            return true;
        }
        rest = &rest[at + 7..];
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: &str) -> eventsource_stream::Event {
        eventsource_stream::Event {
            event: "message".into(),
            data: data.into(),
            id: String::new(),
            retry: None,
        }
    }

    fn frames(out: &[Result<StreamEvent, ProviderError>]) -> Vec<String> {
        out.iter()
            .filter_map(|item| match item {
                Ok(StreamEvent::Frame(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn null_usage_chunks_pass_untouched() {
        let data = r#"{"choices":[{"delta":{"content":"hi"}}],"usage":null}"#;
        assert!(!carries_usage(data));
        let out = translate_event(&event(data), false, false);
        assert_eq!(frames(&out), vec![format!("data: {data}\n\n")]);
    }

    #[test]
    fn usage_chunk_is_hidden_unless_asked() {
        let data =
            r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#;
        let hidden = translate_event(&event(data), false, false);
        assert!(frames(&hidden).is_empty());
        let usage = hidden.iter().find_map(|i| match i {
            Ok(StreamEvent::Usage(u)) => Some(*u),
            _ => None,
        });
        assert_eq!(
            usage.map(|u| (u.input_tokens, u.output_tokens)),
            Some((5, 7))
        );
        let shown = translate_event(&event(data), true, false);
        assert_eq!(frames(&shown).len(), 1);
    }

    #[test]
    fn cache_writes_are_read_from_both_apis() {
        let chat = serde_json::json!({"prompt_tokens": 4000, "completion_tokens": 10,
            "prompt_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 2500}});
        let responses = serde_json::json!({"input_tokens": 4000, "output_tokens": 10,
            "input_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 2500}});
        for usage in [chat, responses] {
            let usage = usage_from_openai(&usage).unwrap_or_default();
            assert_eq!(
                (
                    usage.input_tokens,
                    usage.cached_tokens,
                    usage.cache_write_tokens
                ),
                (4000, 1000, 2500)
            );
        }
    }

    #[test]
    fn mixed_chunk_keeps_content_and_strips_usage() {
        let data = r#"{"choices":[{"delta":{"content":"x"}}],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#;
        let out = translate_event(&event(data), false, false);
        let sent = frames(&out);
        assert_eq!(sent.len(), 1);
        assert!(!sent[0].contains("usage"), "{sent:?}");
        assert!(sent[0].contains("\"content\":\"x\""));
    }
}
