//! The Anthropic Messages API (`POST {api_base}/v1/messages`, `x-api-key`,
//! `anthropic-version: 2023-06-01`).
//!
//! Two operations: [`Operation::Chat`] translates OpenAI's chat request into a Messages
//! request ([`request`]) and the answer back ([`response`], [`stream`]);
//! [`Operation::AnthropicMessages`] is the native passthrough, where the body goes upstream
//! as the client sent it (the gateway has already put the target's model in it) and the
//! answer, streamed or not, comes back unchanged while its usage is read. Errors keep
//! Anthropic's message and `type` ([`error`]).
//!
//! This module only talks to Anthropic; it never sees the client's gateway key.

pub mod error;
pub mod messages;
pub mod request;
pub mod response;
pub mod stream;

use std::time::{SystemTime, UNIX_EPOCH};

use eventsource_stream::Eventsource;
use futures::StreamExt;
use http::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Map, Value};

use super::{
    Completion, EventStream, Operation, Provider, ProviderError, ProviderRequest, TimeoutPhase,
    api_key,
};
use crate::config::Target;
use crate::http_client::HttpClients;
use stream::{Mode, Translator};

/// The API version sent with every request (the Messages API's only version).
pub const API_VERSION: &str = "2023-06-01";

/// Client header passed through on the native route, so SDK beta features keep working.
const BETA_HEADER: &str = "anthropic-beta";

/// Where a Messages request goes and how it is authorised: Anthropic's API (`x-api-key`,
/// `anthropic-version` header) or Vertex AI (`rawPredict`, a Bearer access token, the
/// version in the body and the model in the URL).
#[derive(Debug)]
pub(crate) enum Site {
    /// `{api_base}/v1/messages`.
    Anthropic {
        /// The API key, if any.
        key: Option<String>,
    },
    /// A Vertex AI publisher model.
    Vertex {
        /// `…/publishers/anthropic/models/{model}` without `:{method}`.
        model_url: String,
        /// The OAuth2 access token.
        token: String,
    },
}

/// `anthropic_version` in Vertex AI request bodies.
const VERTEX_VERSION: &str = "vertex-2023-10-16";

impl Site {
    fn secret(&self) -> Option<String> {
        match self {
            Self::Anthropic { key } => key.clone(),
            Self::Vertex { token, .. } => Some(token.clone()),
        }
    }
}

/// The Anthropic client.
#[derive(Debug, Clone)]
pub struct AnthropicProvider {
    http: HttpClients,
}

impl AnthropicProvider {
    /// Wraps the shared pooled clients.
    pub fn new(http: HttpClients) -> Self {
        Self { http }
    }

    /// The request body to send upstream for `request`.
    fn body(
        request: &ProviderRequest<'_>,
        site: &Site,
        stream: bool,
    ) -> Result<Map<String, Value>, ProviderError> {
        let mut body = match request.op {
            Operation::Chat => {
                request::to_anthropic(&request.body, request.target).map_err(|e| match e {
                    request::TranslateError::Invalid { .. } => {
                        ProviderError::InvalidRequest(e.to_string())
                    }
                    request::TranslateError::Unsupported { .. } => {
                        ProviderError::Unsupported(e.to_string())
                    }
                })?
            }
            Operation::AnthropicMessages => native_body(&request.body, request.target.max_tokens),
            op => {
                return Err(ProviderError::Unsupported(format!(
                    "provider `anthropic` does not serve {op:?} requests"
                )));
            }
        };
        if stream {
            body.insert("stream".into(), Value::Bool(true));
        } else {
            body.remove("stream");
        }
        if let Site::Vertex { .. } = site {
            body.remove("model");
            body.insert("anthropic_version".into(), Value::from(VERTEX_VERSION));
        }
        Ok(body)
    }

    async fn send(
        &self,
        request: &ProviderRequest<'_>,
        site: &Site,
        body: &Map<String, Value>,
        stream: bool,
    ) -> Result<reqwest::Response, ProviderError> {
        let target = request.target;
        let http = request.client(&self.http)?;
        let mut builder = match site {
            Site::Anthropic { key } => {
                let builder = http
                    .post(messages_url(target))
                    .header("anthropic-version", API_VERSION);
                match key {
                    Some(key) => builder.header("x-api-key", key),
                    None => builder,
                }
            }
            Site::Vertex { model_url, token } => {
                let method = if stream {
                    "streamRawPredict"
                } else {
                    "rawPredict"
                };
                http.post(format!("{model_url}:{method}"))
                    .bearer_auth(token)
            }
        }
        .json(body)
        .timeout(request.timeouts.total);
        let key = site.secret();
        if stream {
            builder = builder.header(ACCEPT, "text/event-stream");
        }
        if request.op == Operation::AnthropicMessages
            && let Some(beta) = request.client_headers.get(BETA_HEADER)
        {
            builder = builder.header(BETA_HEADER, beta.clone());
        }
        let response = super::first_byte(builder.send(), request.timeouts.first_byte).await?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(error::status_error(response, key.as_deref()).await)
        }
    }
}

/// `{api_base}/v1/messages` (a base that already ends in `/v1` is not doubled).
pub fn messages_url(target: &Target) -> String {
    let base = target.api_base.trim_end_matches('/');
    match base.strip_suffix("/v1") {
        Some(root) => format!("{root}/v1/messages"),
        None => format!("{base}/v1/messages"),
    }
}

/// The native body, with `max_tokens` filled in from the target when the client left it
/// out, and capped by the target's `max_tokens` when both are set.
fn native_body(body: &Map<String, Value>, cap: Option<u64>) -> Map<String, Value> {
    let mut body = body.clone();
    if let Some(cap) = cap {
        let replace = match body.get("max_tokens") {
            None | Some(Value::Null) => true,
            // Any other value is Anthropic's to accept or refuse.
            Some(asked) => asked.as_u64().is_some_and(|n| n > cap),
        };
        if replace {
            body.insert("max_tokens".into(), Value::from(cap));
        }
    }
    body
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl AnthropicProvider {
    /// A complete call to `site` (Anthropic or Vertex AI).
    pub(crate) async fn complete_at(
        &self,
        request: ProviderRequest<'_>,
        site: &Site,
    ) -> Result<Completion, ProviderError> {
        let body = Self::body(&request, site, false)?;
        let response = self.send(&request, site, &body, false).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ProviderError::from_transport(e, TimeoutPhase::Total))?;
        let message: Map<String, Value> =
            serde_json::from_slice(&bytes).map_err(|e| ProviderError::InvalidResponse {
                detail: format!("not a JSON object: {e}"),
            })?;
        if message.get("type").and_then(Value::as_str) != Some("message") {
            return Err(ProviderError::InvalidResponse {
                detail: "the answer is not an Anthropic message".into(),
            });
        }
        if request.op == Operation::AnthropicMessages {
            let usage = message
                .get("usage")
                .and_then(response::AnthropicUsage::from_json)
                .unwrap_or_default()
                .usage();
            return Ok(Completion {
                body: message,
                usage,
            });
        }
        let (body, usage) = response::to_openai(&message, now_secs());
        Ok(Completion { body, usage })
    }

    /// A streaming call to `site` (Anthropic or Vertex AI).
    pub(crate) async fn stream_at(
        &self,
        request: ProviderRequest<'_>,
        site: &Site,
    ) -> Result<EventStream, ProviderError> {
        let body = Self::body(&request, site, true)?;
        let response = self.send(&request, site, &body, true).await?;
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
        let mode = match request.op {
            Operation::AnthropicMessages => Mode::Native,
            _ => Mode::Chat {
                forward_usage: request.client_wants_usage,
            },
        };
        let translator = Translator::new(mode, site.secret(), now_secs());
        let events = response
            .bytes_stream()
            .eventsource()
            .map(|item| match item {
                Ok(event) => Ok((event.event, event.data)),
                Err(eventsource_stream::EventStreamError::Transport(e)) => {
                    Err(ProviderError::from_transport(e, TimeoutPhase::Total))
                }
                Err(other) => Err(ProviderError::InvalidResponse {
                    detail: other.to_string(),
                }),
            });
        Ok(stream::translate(events, translator))
    }
}

impl Provider for AnthropicProvider {
    async fn complete(&self, request: ProviderRequest<'_>) -> Result<Completion, ProviderError> {
        let site = Site::Anthropic {
            key: api_key(request.target, request.client_headers),
        };
        self.complete_at(request, &site).await
    }

    async fn stream(&self, request: ProviderRequest<'_>) -> Result<EventStream, ProviderError> {
        let site = Site::Anthropic {
            key: api_key(request.target, request.client_headers),
        };
        self.stream_at(request, &site).await
    }
}

#[cfg(test)]
mod tests;
