//! Cohere, API v2: OpenAI chat ⇄ `POST {api_base}/v2/chat` (complete and streamed) and
//! OpenAI embeddings ⇄ `POST {api_base}/v2/embed`, with `Authorization: Bearer <key>`.
//!
//! * [`request`] — OpenAI chat body → Cohere chat body; [`tools`] — its tools part.
//! * [`response`] — Cohere chat answer → `chat.completion`; finish reasons and usage
//!   (`billed_units` first: see there why).
//! * [`stream`] — Cohere's SSE events → `chat.completion.chunk` frames.
//! * [`embed`] — embeddings both ways.
//! * [`error`] — the typed translation errors and upstream error answers.
//!
//! This module does the I/O: it sends, enforces the first-byte timeout (the caller bounds
//! the total), and turns error statuses into [`ProviderError::Status`]. It never logs a
//! key, and the key is scrubbed from any upstream message.

mod embed;
mod error;
#[cfg(test)]
mod proptests;
mod request;
mod response;
mod stream;
#[cfg(test)]
mod tests;
mod tools;

use http::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Map, Value};

use super::{
    Completion, EventStream, Operation, Provider, ProviderError, ProviderRequest, TimeoutPhase,
    api_key,
};
use crate::http_client::HttpClients;
use error::CohereError;

/// The Cohere v2 client.
#[derive(Debug, Clone)]
pub struct CohereProvider {
    http: HttpClients,
}

impl CohereProvider {
    /// Wraps the shared pooled clients.
    pub fn new(http: HttpClients) -> Self {
        Self { http }
    }

    async fn send(
        &self,
        request: &ProviderRequest<'_>,
        path: &str,
        body: &Map<String, Value>,
        stream: bool,
    ) -> Result<reqwest::Response, ProviderError> {
        let target = request.target;
        let accept = if stream {
            "text/event-stream"
        } else {
            "application/json"
        };
        let mut builder = request
            .client(&self.http)?
            .post(format!("{}{path}", target.api_base))
            .header(ACCEPT, accept)
            .json(body)
            .timeout(request.timeouts.total);
        let key = api_key(target, request.client_headers);
        if let Some(key) = &key {
            builder = builder.bearer_auth(key);
        }
        let response = super::first_byte(builder.send(), request.timeouts.first_byte).await?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(error::status_error(response, key.as_deref()).await)
        }
    }

    async fn json(
        &self,
        request: &ProviderRequest<'_>,
        path: &str,
        body: &Map<String, Value>,
    ) -> Result<Value, ProviderError> {
        let response = self.send(request, path, body, false).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ProviderError::from_transport(e, TimeoutPhase::Total))?;
        serde_json::from_slice(&bytes).map_err(|e| ProviderError::InvalidResponse {
            detail: format!("Cohere's answer was not JSON: {e}"),
        })
    }
}

/// The error for an operation Cohere does not serve (streamed embeddings included).
fn refused(op: Operation) -> ProviderError {
    let name = match op {
        Operation::Completions => "text completions",
        Operation::Responses => "the Responses API",
        Operation::AnthropicMessages => "Anthropic's Messages API",
        Operation::GeminiGenerateContent => "Gemini's generateContent",
        Operation::Embeddings => "streamed embeddings",
        // Never refused: listed for exhaustiveness.
        Operation::Chat => "chat",
    };
    CohereError::UnsupportedOperation(name).into()
}

impl Provider for CohereProvider {
    async fn complete(&self, request: ProviderRequest<'_>) -> Result<Completion, ProviderError> {
        let target = request.target;
        match request.op {
            Operation::Chat => {
                let body =
                    request::chat_request(&request.body, &target.model, target.max_tokens, false)?;
                let answer = self.json(&request, "/v2/chat", &body).await?;
                let (body, usage) = response::chat_response(&answer, &target.model)?;
                Ok(Completion { body, usage })
            }
            Operation::Embeddings => {
                let body = embed::embed_request(&request.body, &target.model)?;
                let base64 =
                    request.body.get("encoding_format").and_then(Value::as_str) == Some("base64");
                let answer = self.json(&request, "/v2/embed", &body).await?;
                let (body, usage) = embed::embed_response(&answer, &target.model, base64)?;
                Ok(Completion { body, usage })
            }
            op => Err(refused(op)),
        }
    }

    async fn stream(&self, request: ProviderRequest<'_>) -> Result<EventStream, ProviderError> {
        if request.op != Operation::Chat {
            return Err(refused(request.op));
        }
        let target = request.target;
        let body = request::chat_request(&request.body, &target.model, target.max_tokens, true)?;
        let response = self.send(&request, "/v2/chat", &body, true).await?;
        let is_sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_sse {
            return Err(ProviderError::InvalidResponse {
                detail: "a streaming request to Cohere was not answered with text/event-stream"
                    .into(),
            });
        }
        let translator = stream::Translator::new(&target.model, request.client_wants_usage);
        let events = eventsource_stream::Eventsource::eventsource(response.bytes_stream());
        Ok(stream::translate(events, translator))
    }
}
