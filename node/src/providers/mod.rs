//! Providers: one trait with a complete call and a streaming call, the OpenAI-compatible
//! client (OpenAI, Azure OpenAI and every `api_base` provider) and the built-in mock.
//!
//! Requests arrive in OpenAI's shape (a JSON object); a provider translates to its own wire
//! format, calls upstream, and answers in OpenAI's shape: a JSON body for complete calls, a
//! stream of ready-framed SSE events plus the usage it saw for streaming calls.
//!
//! Every network call goes out on the pooled client for the call's connect timeout
//! ([`ProviderRequest::client`]), so a target's own `timeouts.connect` applies to it.
//!
//! [`anthropic`] is public so the request path's benchmarks (`node/benches/hot_path.rs`)
//! can call its translations directly.

pub mod anthropic;
mod bedrock;
mod cohere;
mod error;
mod gemini;
mod kind;
mod mock;
mod openai;
mod vertex;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use http::HeaderMap;
use serde_json::{Map, Value};

pub use anthropic::AnthropicProvider;
pub use bedrock::BedrockProvider;
pub use cohere::CohereProvider;
pub use error::{
    ProviderError, TimeoutPhase, UpstreamError, anthropic_error_type, google_status_name,
};
pub use gemini::GeminiProvider;
pub use kind::ProviderKind;
pub use mock::MockProvider;
pub use openai::{OpenAiProvider, authorize};
pub use vertex::VertexProvider;

use crate::config::{Credentials, EndpointKind, Target, Timeouts};
use crate::http_client::HttpClients;
use crate::usage::Usage;

/// The operation asked of a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Chat completions.
    Chat,
    /// Text completions.
    Completions,
    /// Embeddings.
    Embeddings,
    /// OpenAI Responses API (passthrough only).
    Responses,
    /// Anthropic Messages API, native body and answer (passthrough).
    AnthropicMessages,
    /// Gemini `generateContent` / `streamGenerateContent`, native body and answer
    /// (passthrough).
    GeminiGenerateContent,
}

impl Operation {
    /// Whether this operation is served by an endpoint of `kind`.
    pub fn served_by(self, kind: EndpointKind) -> bool {
        matches!(
            (self, kind),
            (
                Self::Chat
                    | Self::Responses
                    | Self::AnthropicMessages
                    | Self::GeminiGenerateContent,
                EndpointKind::Chat
            ) | (Self::Completions, EndpointKind::Completions)
                | (Self::Embeddings, EndpointKind::Embeddings)
        )
    }

    /// Whether the request and answer are in the provider's native format rather than
    /// OpenAI's.
    pub fn is_native(self) -> bool {
        matches!(self, Self::AnthropicMessages | Self::GeminiGenerateContent)
    }
}

impl From<EndpointKind> for Operation {
    fn from(kind: EndpointKind) -> Self {
        match kind {
            EndpointKind::Chat => Self::Chat,
            EndpointKind::Completions => Self::Completions,
            EndpointKind::Embeddings => Self::Embeddings,
        }
    }
}

/// One call to a provider.
#[derive(Debug)]
pub struct ProviderRequest<'a> {
    /// Operation.
    pub op: Operation,
    /// The chosen target.
    pub target: &'a Target,
    /// The client's OpenAI-shaped body; `model` is already the target's model.
    pub body: Map<String, Value>,
    /// Whether the client asked for usage in the stream (`stream_options.include_usage`).
    pub client_wants_usage: bool,
    /// Timeouts for this call (the target's, which default to its endpoint's).
    pub timeouts: Timeouts,
    /// The client's headers, read only for `credentials.from_header`.
    pub client_headers: &'a HeaderMap,
}

impl ProviderRequest<'_> {
    /// The pooled HTTP client for this call's connect timeout.
    pub fn client(&self, http: &HttpClients) -> Result<reqwest::Client, ProviderError> {
        client_for(http, self.timeouts.connect)
    }
}

/// The pooled HTTP client for `connect`; a client that cannot be built is a connect
/// failure of the call.
pub fn client_for(http: &HttpClients, connect: Duration) -> Result<reqwest::Client, ProviderError> {
    http.get(connect).map_err(|e| ProviderError::Connect {
        detail: format!("cannot build an HTTP client: {e}"),
    })
}

/// A complete (non-streaming) answer in OpenAI's shape.
#[derive(Debug)]
pub struct Completion {
    /// The response body.
    pub body: Map<String, Value>,
    /// Tokens reported.
    pub usage: Usage,
}

/// One item of a streamed answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// A complete SSE event, framed (`data: ...\n\n`), to send to the client as is.
    Frame(Bytes),
    /// Usage seen in the stream (not sent; the frame carrying it is sent only when the
    /// client asked for usage).
    Usage(Usage),
}

/// A streamed answer.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, ProviderError>> + Send>>;

/// A provider: one complete call, one streaming call.
pub trait Provider: Send + Sync {
    /// Calls the provider and waits for the whole answer.
    fn complete(
        &self,
        request: ProviderRequest<'_>,
    ) -> impl Future<Output = Result<Completion, ProviderError>> + Send;

    /// Calls the provider and returns its answer as a stream of SSE frames once the
    /// response has started.
    fn stream(
        &self,
        request: ProviderRequest<'_>,
    ) -> impl Future<Output = Result<EventStream, ProviderError>> + Send;
}

/// Calls `$method` on the provider implementation for the request's target. Every
/// provider kind is listed, so a new kind cannot silently fall through to another client.
macro_rules! dispatch {
    ($self:ident, $request:ident, $method:ident) => {
        match $request.target.provider {
            ProviderKind::Mock => $self.mock.$method($request).await,
            ProviderKind::Anthropic => $self.anthropic.$method($request).await,
            ProviderKind::Bedrock => $self.bedrock.$method($request).await,
            ProviderKind::Cohere => $self.cohere.$method($request).await,
            ProviderKind::Gemini => $self.gemini.$method($request).await,
            ProviderKind::Vertex => $self.vertex.$method($request).await,
            ProviderKind::OpenAi
            | ProviderKind::AzureOpenAi
            | ProviderKind::Mistral
            | ProviderKind::Groq
            | ProviderKind::Together
            | ProviderKind::DeepSeek
            | ProviderKind::Xai
            | ProviderKind::OpenRouter
            | ProviderKind::Ollama
            | ProviderKind::Vllm
            | ProviderKind::OpenAiCompatible => $self.openai.$method($request).await,
        }
    };
}

/// Every provider implementation, chosen by the target's [`ProviderKind`].
#[derive(Debug, Clone)]
pub struct Providers {
    openai: OpenAiProvider,
    anthropic: AnthropicProvider,
    bedrock: BedrockProvider,
    cohere: CohereProvider,
    gemini: GeminiProvider,
    vertex: VertexProvider,
    mock: MockProvider,
}

impl Providers {
    /// Builds the providers around the shared pooled HTTP clients.
    pub fn new(http: HttpClients) -> Self {
        Self {
            openai: OpenAiProvider::new(http.clone()),
            anthropic: AnthropicProvider::new(http.clone()),
            bedrock: BedrockProvider::new(http.clone()),
            cohere: CohereProvider::new(http.clone()),
            gemini: GeminiProvider::new(http.clone()),
            vertex: VertexProvider::new(http),
            mock: MockProvider,
        }
    }

    /// The shared HTTP clients (for the raw proxy, and to prepare them on reload).
    pub fn http(&self) -> &HttpClients {
        self.openai.http()
    }

    /// A complete call, bounded by the total timeout.
    pub async fn complete(
        &self,
        request: ProviderRequest<'_>,
    ) -> Result<Completion, ProviderError> {
        let total = request.timeouts.total;
        let call = async { dispatch!(self, request, complete) };
        tokio::time::timeout(total, call)
            .await
            .unwrap_or(Err(ProviderError::Timeout {
                phase: TimeoutPhase::Total,
            }))
    }

    /// A streaming call; the returned stream ends with a timeout error if the answer
    /// outlives the total timeout or pauses longer than the idle timeout.
    pub async fn stream(&self, request: ProviderRequest<'_>) -> Result<EventStream, ProviderError> {
        let deadline = tokio::time::Instant::now() + request.timeouts.total;
        let request_idle = request.timeouts.idle;
        let call = async { dispatch!(self, request, stream) };
        let stream = tokio::time::timeout_at(deadline, call)
            .await
            .unwrap_or(Err(ProviderError::Timeout {
                phase: TimeoutPhase::Total,
            }))?;
        Ok(with_deadline(stream, deadline, request_idle))
    }
}

/// Ends `stream` with a timeout error at `deadline`, or when no event comes for `idle`.
fn with_deadline(
    stream: EventStream,
    deadline: tokio::time::Instant,
    idle: Duration,
) -> EventStream {
    let state = (stream, false);
    Box::pin(futures::stream::unfold(
        state,
        move |(mut stream, done)| async move {
            if done {
                return None;
            }
            let idle_until = tokio::time::Instant::now() + idle;
            let (until, phase) = if idle_until < deadline {
                (idle_until, TimeoutPhase::Idle)
            } else {
                (deadline, TimeoutPhase::Total)
            };
            match tokio::time::timeout_at(until, futures::StreamExt::next(&mut stream)).await {
                Ok(Some(item)) => Some((item, (stream, false))),
                Ok(None) => None,
                Err(_) => Some((Err(ProviderError::Timeout { phase }), (stream, true))),
            }
        },
    ))
}

/// Reads usage from an OpenAI-shaped `usage` object (chat, completions, embeddings and the
/// Responses API's field names). The prompt-cache reads (`cached_tokens`) and writes
/// (`cache_write_tokens`, reported since the GPT-5.6 models, which bill writes above the
/// input price) are both part of the prompt tokens.
pub fn usage_from_openai(usage: &Value) -> Option<Usage> {
    let object = usage.as_object()?;
    let number = |key: &str| object.get(key).and_then(Value::as_u64);
    let input = number("prompt_tokens").or_else(|| number("input_tokens"))?;
    let output = number("completion_tokens")
        .or_else(|| number("output_tokens"))
        .unwrap_or(0);
    let detail = |field: &str| {
        ["prompt_tokens_details", "input_tokens_details"]
            .iter()
            .find_map(|key| object.get(*key)?.get(field)?.as_u64())
            .unwrap_or(0)
    };
    Some(Usage {
        input_tokens: input,
        output_tokens: output,
        cached_tokens: detail("cached_tokens"),
        cache_write_tokens: detail("cache_write_tokens"),
        cache_write_1h_tokens: 0,
    })
}

/// Awaits an upstream response's headers within `first_byte`, classifying transport errors
/// (connect failure, connect or first-byte timeout) without the request URL.
pub(crate) async fn first_byte(
    pending: impl Future<Output = Result<reqwest::Response, reqwest::Error>>,
    first_byte: Duration,
) -> Result<reqwest::Response, ProviderError> {
    tokio::time::timeout(first_byte, pending)
        .await
        .map_err(|_| ProviderError::Timeout {
            phase: TimeoutPhase::FirstByte,
        })?
        .map_err(|e| ProviderError::from_transport(e, TimeoutPhase::FirstByte))
}

/// The API key a call to `target` presents upstream: the configured key, or the client
/// header named by `credentials.from_header`. Never the client's gateway key.
pub fn api_key(target: &Target, client_headers: &HeaderMap) -> Option<String> {
    match &target.credentials {
        Credentials::ApiKey(secret) => Some(secret.expose().to_owned()),
        Credentials::FromClientHeader(name) => client_headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).to_owned()),
        Credentials::None | Credentials::Aws { .. } | Credentials::ServiceAccount(_) => None,
    }
}

/// Frames one SSE `data:` event.
pub fn data_frame(data: &[u8]) -> Bytes {
    let mut frame = Vec::with_capacity(data.len() + 8);
    frame.extend_from_slice(b"data: ");
    frame.extend_from_slice(data);
    frame.extend_from_slice(b"\n\n");
    Bytes::from(frame)
}

/// The terminal `data: [DONE]` frame of OpenAI streams.
pub const DONE_FRAME: &[u8] = b"data: [DONE]\n\n";
