//! Google AI Gemini (`generativelanguage` API, v1beta): chat and embeddings translated from
//! and to OpenAI's shapes, and the native `generateContent` / `streamGenerateContent`
//! passthrough.
//!
//! Layout: this module owns the URL (`{api_base}/v1beta/models/{model}:{method}`, `?alt=sse`
//! for streams) and the credential (`x-goog-api-key`, never in the URL); the translation
//! lives in pure submodules a Vertex AI provider reuses with its own URL and Bearer token:
//!
//! * [`request`] — OpenAI chat messages → `GenerateContentRequest`;
//! * [`params`] — tools, tool choice and sampling parameters → Gemini's fields;
//! * [`response`] — `GenerateContentResponse` → OpenAI answer, usage, finish reasons;
//! * [`stream`] — SSE events → OpenAI chunks, or passed through natively;
//! * [`embeddings`] — OpenAI embeddings ↔ `embedContent` / `batchEmbedContents`;
//! * [`errors`] — Google error bodies → [`ProviderError`];
//! * [`media`] — image and file references → `inlineData` / `fileData`.

pub(crate) mod embeddings;
pub(crate) mod errors;
pub(crate) mod media;
pub(crate) mod params;
pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod stream;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use http::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Map, Value};

use super::{
    Completion, EventStream, Operation, Provider, ProviderError, ProviderRequest, TimeoutPhase,
    api_key,
};
use crate::http_client::HttpClients;
use request::ChatOptions;
use stream::{ChatStream, NativeStream, event_stream};

/// Where Gemini's JSON goes and how the call is authorised: Google AI (`x-goog-api-key`)
/// or Vertex AI (a Bearer access token).
#[derive(Debug)]
pub(crate) struct Site {
    /// The model's resource URL, without `:{method}`.
    pub(crate) model_url: String,
    /// The credential to present.
    pub(crate) auth: SiteAuth,
}

/// The credential of a [`Site`].
#[derive(Debug)]
pub(crate) enum SiteAuth {
    /// Google AI: an API key in `x-goog-api-key` (none for keyless test servers).
    ApiKey(Option<String>),
    /// Vertex AI: an OAuth2 access token.
    Bearer(String),
}

impl SiteAuth {
    /// The secret to scrub from upstream messages.
    pub(crate) fn secret(&self) -> Option<String> {
        match self {
            Self::ApiKey(key) => key.clone(),
            Self::Bearer(token) => Some(token.clone()),
        }
    }
}

impl Site {
    /// Google AI for `target`.
    fn google_ai(request: &ProviderRequest<'_>) -> Self {
        let target = request.target;
        Self {
            model_url: model_url(&target.api_base, &target.model),
            auth: SiteAuth::ApiKey(api_key(target, request.client_headers)),
        }
    }

    fn url(&self, method: &str, stream: bool) -> String {
        let mut url = format!("{}:{method}", self.model_url);
        if stream {
            url.push_str("?alt=sse");
        }
        url
    }
}

/// The Gemini client.
#[derive(Debug, Clone)]
pub struct GeminiProvider {
    http: HttpClients,
}

impl GeminiProvider {
    /// Wraps the shared pooled clients.
    pub fn new(http: HttpClients) -> Self {
        Self { http }
    }

    async fn send(
        &self,
        request: &ProviderRequest<'_>,
        site: &Site,
        method: &str,
        body: &Map<String, Value>,
        stream: bool,
    ) -> Result<reqwest::Response, ProviderError> {
        let mut builder = request
            .client(&self.http)?
            .post(site.url(method, stream))
            .json(body)
            .timeout(request.timeouts.total);
        builder = match &site.auth {
            SiteAuth::ApiKey(Some(key)) => builder.header("x-goog-api-key", key),
            SiteAuth::ApiKey(None) => builder,
            SiteAuth::Bearer(token) => builder.bearer_auth(token),
        };
        let key = site.auth.secret();
        if stream {
            builder = builder.header(ACCEPT, "text/event-stream");
        }
        let response = super::first_byte(builder.send(), request.timeouts.first_byte).await?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(errors::status_error(response, key.as_deref()).await)
        }
    }

    async fn json(
        &self,
        request: &ProviderRequest<'_>,
        site: &Site,
        method: &str,
        body: &Map<String, Value>,
    ) -> Result<Value, ProviderError> {
        let response = self.send(request, site, method, body, false).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ProviderError::from_transport(e, TimeoutPhase::Total))?;
        serde_json::from_slice::<Value>(&bytes)
            .ok()
            .filter(Value::is_object)
            .ok_or_else(|| ProviderError::InvalidResponse {
                detail: "the answer was not a JSON object".into(),
            })
    }

    async fn sse(
        &self,
        request: &ProviderRequest<'_>,
        site: &Site,
        body: &Map<String, Value>,
    ) -> Result<reqwest::Response, ProviderError> {
        let response = self
            .send(request, site, "streamGenerateContent", body, true)
            .await?;
        let is_sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if is_sse {
            Ok(response)
        } else {
            Err(ProviderError::InvalidResponse {
                detail: "a streaming request was not answered with text/event-stream".into(),
            })
        }
    }
}

/// `{api_base}/v1beta/{models/model}` (the version is not repeated when the base already
/// ends with one).
fn model_url(api_base: &str, model: &str) -> String {
    let base = api_base.trim_end_matches('/');
    let versioned = ["/v1beta", "/v1", "/v1alpha"]
        .iter()
        .any(|version| base.ends_with(version));
    let mut url = if versioned {
        base.to_owned()
    } else {
        format!("{base}/v1beta")
    };
    url.push('/');
    url.push_str(&encode_path(&embeddings::resource(model)));
    url
}

/// Percent-encodes everything but unreserved characters and `/` in a path.
pub(crate) fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn unsupported(op: Operation) -> ProviderError {
    ProviderError::Unsupported(format!(
        "provider `gemini` does not serve {op:?}; it serves chat, embeddings and native generateContent"
    ))
}

/// The native body as sent: the client's, minus the `model` the gateway inserted (Gemini
/// takes the model from the URL and rejects unknown fields).
fn native_body(body: &Map<String, Value>) -> Map<String, Value> {
    let mut body = body.clone();
    body.remove("model");
    body
}

impl GeminiProvider {
    /// A complete call to `site` (Google AI or Vertex AI).
    pub(crate) async fn complete_at(
        &self,
        request: ProviderRequest<'_>,
        site: &Site,
    ) -> Result<Completion, ProviderError> {
        let target = request.target;
        match request.op {
            Operation::Chat => {
                let options = ChatOptions {
                    model: &target.model,
                    max_tokens: target.max_tokens,
                };
                let body = request::chat_request(&request.body, options)?;
                let answer = self.json(&request, site, "generateContent", &body).await?;
                let (body, usage) = response::chat_completion(&answer, &target.model)?;
                Ok(Completion { body, usage })
            }
            Operation::Embeddings => {
                let embed = embeddings::embed_request(&request.body, &target.model)?;
                let answer = self
                    .json(&request, site, embed.method.name(), &embed.body)
                    .await?;
                let (body, usage) = embeddings::embed_response(&answer, &embed, &target.model)?;
                Ok(Completion { body, usage })
            }
            Operation::GeminiGenerateContent => {
                let body = native_body(&request.body);
                let answer = self.json(&request, site, "generateContent", &body).await?;
                let usage = answer
                    .get("usageMetadata")
                    .and_then(response::usage)
                    .unwrap_or_default();
                let Value::Object(body) = answer else {
                    return Err(ProviderError::InvalidResponse {
                        detail: "the answer was not a JSON object".into(),
                    });
                };
                Ok(Completion { body, usage })
            }
            op => Err(unsupported(op)),
        }
    }

    /// A streaming call to `site` (Google AI or Vertex AI).
    pub(crate) async fn stream_at(
        &self,
        request: ProviderRequest<'_>,
        site: &Site,
    ) -> Result<EventStream, ProviderError> {
        let target = request.target;
        let key = site.auth.secret();
        match request.op {
            Operation::Chat => {
                let options = ChatOptions {
                    model: &target.model,
                    max_tokens: target.max_tokens,
                };
                let body = request::chat_request(&request.body, options)?;
                let response = self.sse(&request, site, &body).await?;
                let translator = ChatStream::new(&target.model, request.client_wants_usage, key);
                event_stream(response, translator).await
            }
            Operation::GeminiGenerateContent => {
                let body = native_body(&request.body);
                let response = self.sse(&request, site, &body).await?;
                event_stream(response, NativeStream::new(key)).await
            }
            op => Err(unsupported(op)),
        }
    }
}

impl Provider for GeminiProvider {
    async fn complete(&self, request: ProviderRequest<'_>) -> Result<Completion, ProviderError> {
        let site = Site::google_ai(&request);
        self.complete_at(request, &site).await
    }

    async fn stream(&self, request: ProviderRequest<'_>) -> Result<EventStream, ProviderError> {
        let site = Site::google_ai(&request);
        self.stream_at(request, &site).await
    }
}
