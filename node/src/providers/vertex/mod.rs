//! Google Vertex AI: Gemini models (`publishers/google`) and Anthropic Claude models
//! (`publishers/anthropic`) in a Google Cloud project, authorised by an OAuth2 access
//! token obtained from a service-account key ([`auth`]).
//!
//! The wire formats are Gemini's and Anthropic's, so the translation is theirs: this
//! module only builds the publisher-model URL
//! (`{api_base}/v1/projects/{project}/locations/{region}/publishers/{publisher}/models/{model}`)
//! and the credential, and hands the call to the Gemini or Anthropic provider. A model
//! whose name starts with `claude` is Anthropic's; any other is Gemini's.

pub mod auth;

use std::sync::Arc;

use super::anthropic::{self, AnthropicProvider};
use super::gemini::{self, GeminiProvider, SiteAuth};
use super::{
    Completion, EventStream, Operation, Provider, ProviderError, ProviderRequest, api_key,
};
use crate::config::{Credentials, Target};
use crate::http_client::HttpClients;
use auth::TokenSources;

/// The Vertex AI client.
#[derive(Debug, Clone)]
pub struct VertexProvider {
    http: HttpClients,
    anthropic: AnthropicProvider,
    gemini: GeminiProvider,
    tokens: Arc<TokenSources>,
}

/// The publisher of a Vertex model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Publisher {
    Google,
    Anthropic,
}

impl Publisher {
    fn of(model: &str) -> Self {
        if model.starts_with("claude") {
            Self::Anthropic
        } else {
            Self::Google
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Google => "google",
            Self::Anthropic => "anthropic",
        }
    }
}

/// The model's resource URL. `@` (Claude's version separator) stays literal, as Vertex
/// documents it; anything else outside the unreserved set is percent-encoded.
fn model_url(target: &Target, publisher: Publisher) -> String {
    let project = target.project.as_deref().unwrap_or_default();
    let region = target.region.as_deref().unwrap_or_default();
    let model = gemini::encode_path(&target.model).replace("%40", "@");
    format!(
        "{}/v1/projects/{project}/locations/{region}/publishers/{}/models/{model}",
        target.api_base.trim_end_matches('/'),
        publisher.name()
    )
}

impl VertexProvider {
    /// Wraps the shared pooled clients.
    pub fn new(http: HttpClients) -> Self {
        Self {
            anthropic: AnthropicProvider::new(http.clone()),
            gemini: GeminiProvider::new(http.clone()),
            http,
            tokens: Arc::new(TokenSources::default()),
        }
    }

    /// The access token for a call: from the service account (cached), a configured static
    /// token, or the client header named by `from_header`.
    async fn token(&self, request: &ProviderRequest<'_>) -> Result<String, ProviderError> {
        match &request.target.credentials {
            Credentials::ServiceAccount(key) => {
                let source = self.tokens.get(key)?;
                let http = request.client(&self.http)?;
                source.token(&http, request.timeouts.first_byte).await
            }
            _ => api_key(request.target, request.client_headers).ok_or_else(|| {
                ProviderError::Unsupported(
                    "provider `vertex` needs a service account (or an access token) to call Vertex AI"
                        .into(),
                )
            }),
        }
    }

    fn check(op: Operation, publisher: Publisher) -> Result<(), ProviderError> {
        let served = matches!(
            (op, publisher),
            (Operation::Chat, _)
                | (Operation::GeminiGenerateContent, Publisher::Google)
                | (Operation::AnthropicMessages, Publisher::Anthropic)
        );
        if served {
            Ok(())
        } else {
            Err(ProviderError::Unsupported(format!(
                "provider `vertex` does not serve {op:?} for {} models",
                publisher.name()
            )))
        }
    }
}

impl Provider for VertexProvider {
    async fn complete(&self, request: ProviderRequest<'_>) -> Result<Completion, ProviderError> {
        let publisher = Publisher::of(&request.target.model);
        Self::check(request.op, publisher)?;
        let token = self.token(&request).await?;
        let model_url = model_url(request.target, publisher);
        match publisher {
            Publisher::Google => {
                let site = gemini::Site {
                    model_url,
                    auth: SiteAuth::Bearer(token),
                };
                self.gemini.complete_at(request, &site).await
            }
            Publisher::Anthropic => {
                let site = anthropic::Site::Vertex { model_url, token };
                self.anthropic.complete_at(request, &site).await
            }
        }
    }

    async fn stream(&self, request: ProviderRequest<'_>) -> Result<EventStream, ProviderError> {
        let publisher = Publisher::of(&request.target.model);
        Self::check(request.op, publisher)?;
        let token = self.token(&request).await?;
        let model_url = model_url(request.target, publisher);
        match publisher {
            Publisher::Google => {
                let site = gemini::Site {
                    model_url,
                    auth: SiteAuth::Bearer(token),
                };
                self.gemini.stream_at(request, &site).await
            }
            Publisher::Anthropic => {
                let site = anthropic::Site::Vertex { model_url, token };
                self.anthropic.stream_at(request, &site).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publisher_follows_the_model_name() {
        assert_eq!(
            Publisher::of("claude-sonnet-4-5@20250929"),
            Publisher::Anthropic
        );
        assert_eq!(Publisher::of("gemini-2.5-flash"), Publisher::Google);
    }
}
