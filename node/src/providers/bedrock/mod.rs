//! Amazon Bedrock Runtime.
//!
//! * Chat (OpenAI's shape) → `Converse` (`POST /model/{modelId}/converse`) and
//!   `ConverseStream` (`/converse-stream`, answered as an `application/vnd.amazon.eventstream`
//!   binary stream), translated both ways ([`request`], [`response`], [`stream`]).
//! * Anthropic Messages (native passthrough) → `InvokeModel` (`/invoke`) and
//!   `InvokeModelWithResponseStream` (`/invoke-with-response-stream`) ([`anthropic`]).
//! * Authentication ([`signing`]): `aws_*` credentials sign every request with SigV4 (service
//!   `bedrock`, the target's region); an `api_key` (a Bedrock API key) is sent as
//!   `Authorization: Bearer`.
//! * Streams ([`drive`](mod@drive), [`eventstream`]): the binary event stream is cut into messages and
//!   checksum-verified by AWS's `aws-smithy-eventstream`, then translated message by message.
//! * Errors ([`error`]): Bedrock's status, message and exception name, before or during a
//!   stream, with the request's secrets scrubbed.
//!
//! The model id is percent-encoded as one path segment (`…-v1:0` → `…-v1%3A0`). Only chat
//! and Anthropic Messages are served; other operations are refused without a call. This
//! module owns the Bedrock wire format only: routing, retries, limits and accounting stay in
//! the edge.

mod anthropic;
mod drive;
mod error;
mod eventstream;
#[cfg(test)]
mod golden_tests;
mod request;
mod response;
mod signing;
mod stream;

use std::time::SystemTime;

use http::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Map, Value};

use self::drive::drive;
use self::error::Scrub;
use self::response::AnswerMeta;
use super::{
    Completion, EventStream, Operation, Provider, ProviderError, ProviderRequest, TimeoutPhase,
    api_key,
};
use crate::config::{Credentials, Target};
use crate::http_client::HttpClients;

/// The event-stream media type of Bedrock's streaming answers.
const EVENT_STREAM: &str = "application/vnd.amazon.eventstream";

/// One Bedrock Runtime action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Converse,
    ConverseStream,
    Invoke,
    InvokeStream,
}

impl Action {
    fn path(self) -> &'static str {
        match self {
            Self::Converse => "converse",
            Self::ConverseStream => "converse-stream",
            Self::Invoke => "invoke",
            Self::InvokeStream => "invoke-with-response-stream",
        }
    }

    fn streams(self) -> bool {
        matches!(self, Self::ConverseStream | Self::InvokeStream)
    }
}

/// The URL of `action` on `target`'s model.
fn action_url(target: &Target, action: Action) -> String {
    format!(
        "{}/model/{}/{}",
        target.api_base,
        signing::encode_segment(&target.model),
        action.path()
    )
}

/// The Bedrock client.
#[derive(Debug, Clone)]
pub struct BedrockProvider {
    http: HttpClients,
}

impl BedrockProvider {
    /// Wraps the shared pooled clients.
    pub fn new(http: HttpClients) -> Self {
        Self { http }
    }

    /// Adds the target's credentials to `http_request`; returns what to scrub from errors.
    fn authorize(
        http_request: &mut reqwest::Request,
        request: &ProviderRequest<'_>,
    ) -> Result<Scrub, ProviderError> {
        let target = request.target;
        let refused = |e: signing::SigningError| ProviderError::Connect {
            detail: format!("the Bedrock request could not be authenticated: {e}"),
        };
        match &target.credentials {
            Credentials::Aws {
                access_key_id,
                secret_access_key,
                session_token,
            } => {
                let region = target.region.as_deref().ok_or_else(|| {
                    ProviderError::Unsupported("a Bedrock target needs a `region` to sign".into())
                })?;
                let keys = signing::AwsKeys {
                    access_key_id,
                    secret_access_key,
                    session_token: session_token.as_ref(),
                };
                signing::sign_request(http_request, keys, region, SystemTime::now())
                    .map_err(refused)?;
                Ok(Scrub::new(
                    std::iter::once(secret_access_key.expose())
                        .chain(session_token.as_ref().map(|t| t.expose())),
                ))
            }
            Credentials::ServiceAccount(_) => Err(ProviderError::Unsupported(
                "a service account cannot authenticate to Bedrock".into(),
            )),
            Credentials::None | Credentials::ApiKey(_) | Credentials::FromClientHeader(_) => {
                match api_key(target, request.client_headers) {
                    Some(key) => {
                        signing::bearer(http_request, &key).map_err(refused)?;
                        Ok(Scrub::new([key.as_str()]))
                    }
                    None => Ok(Scrub::default()),
                }
            }
        }
    }

    /// Sends `body` to `action`; an error answer becomes [`ProviderError::Status`].
    async fn send(
        &self,
        request: &ProviderRequest<'_>,
        action: Action,
        body: &Map<String, Value>,
    ) -> Result<(reqwest::Response, Scrub), ProviderError> {
        let body =
            serde_json::to_vec(body).map_err(|e| ProviderError::Unsupported(e.to_string()))?;
        let http = request.client(&self.http)?;
        let builder = http
            .post(action_url(request.target, action))
            .header(CONTENT_TYPE, "application/json")
            .timeout(request.timeouts.total);
        let builder = match action {
            Action::InvokeStream => builder
                .header(ACCEPT, EVENT_STREAM)
                .header("x-amzn-bedrock-accept", "application/json"),
            Action::ConverseStream => builder.header(ACCEPT, EVENT_STREAM),
            Action::Converse | Action::Invoke => builder.header(ACCEPT, "application/json"),
        };
        let mut http_request = builder
            .body(body)
            .build()
            .map_err(|e| ProviderError::from_transport(e, TimeoutPhase::FirstByte))?;
        let scrub = Self::authorize(&mut http_request, request)?;
        let pending = http.execute(http_request);
        let response = super::first_byte(pending, request.timeouts.first_byte).await?;
        if !response.status().is_success() {
            return Err(error::status_error(response, &scrub).await);
        }
        if action.streams() {
            let is_event_stream = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with(EVENT_STREAM));
            if !is_event_stream {
                return Err(ProviderError::InvalidResponse {
                    detail: format!("a streaming request was not answered with {EVENT_STREAM}"),
                });
            }
        }
        Ok((response, scrub))
    }

    async fn read_json(response: reqwest::Response) -> Result<Map<String, Value>, ProviderError> {
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ProviderError::from_transport(e, TimeoutPhase::Total))?;
        serde_json::from_slice(&bytes).map_err(|e| ProviderError::InvalidResponse {
            detail: format!("the Bedrock answer is not a JSON object: {e}"),
        })
    }
}

fn converse_body(request: &ProviderRequest<'_>) -> Result<Map<String, Value>, ProviderError> {
    match request::converse_body(&request.body, request.target.max_tokens) {
        Ok(Value::Object(body)) => Ok(body),
        Ok(_) => Err(ProviderError::Unsupported(
            "the Converse body is not an object".into(),
        )),
        Err(e) => Err(ProviderError::Unsupported(format!(
            "this request cannot be sent to Bedrock: {e}"
        ))),
    }
}

fn request_id(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("x-amzn-requestid")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn unsupported(op: Operation) -> ProviderError {
    ProviderError::Unsupported(format!(
        "provider `bedrock` serves chat and Anthropic Messages, not {op:?}"
    ))
}

impl Provider for BedrockProvider {
    async fn complete(&self, request: ProviderRequest<'_>) -> Result<Completion, ProviderError> {
        match request.op {
            Operation::Chat => {
                let body = converse_body(&request)?;
                let (response, _) = self.send(&request, Action::Converse, &body).await?;
                let meta = AnswerMeta::new(&request.target.model, request_id(&response).as_deref());
                let answer = Value::Object(Self::read_json(response).await?);
                let (body, usage) = response::chat_completion(&answer, &meta).map_err(|e| {
                    ProviderError::InvalidResponse {
                        detail: e.to_string(),
                    }
                })?;
                Ok(Completion { body, usage })
            }
            Operation::AnthropicMessages => {
                let body = anthropic::invoke_body(
                    &request.body,
                    request.target.max_tokens,
                    request.client_headers,
                );
                let (response, _) = self.send(&request, Action::Invoke, &body).await?;
                let headers = response.headers().clone();
                let answer = Self::read_json(response).await?;
                let usage = anthropic::answer_usage(&answer, &headers);
                Ok(Completion {
                    body: answer,
                    usage,
                })
            }
            other => Err(unsupported(other)),
        }
    }

    async fn stream(&self, request: ProviderRequest<'_>) -> Result<EventStream, ProviderError> {
        match request.op {
            Operation::Chat => {
                let body = converse_body(&request)?;
                let (response, scrub) = self.send(&request, Action::ConverseStream, &body).await?;
                let meta = AnswerMeta::new(&request.target.model, request_id(&response).as_deref());
                let translator =
                    stream::ConverseTranslator::new(meta, request.client_wants_usage, scrub);
                Ok(drive(response, translator))
            }
            Operation::AnthropicMessages => {
                let body = anthropic::invoke_body(
                    &request.body,
                    request.target.max_tokens,
                    request.client_headers,
                );
                let (response, scrub) = self.send(&request, Action::InvokeStream, &body).await?;
                Ok(drive(response, anthropic::MessagesTranslator::new(scrub)))
            }
            other => Err(unsupported(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::PriceTable;
    use crate::providers::ProviderKind;

    #[test]
    fn urls_encode_the_model_id() {
        let yaml = "auth: none\nendpoints:\n  - name: chat\n    kind: chat\n    targets:\n      - provider: bedrock\n        model: anthropic.claude-sonnet-4-5-20250929-v1:0\n        region: us-east-1\n        credentials: {api_key: ABSKexample}\n";
        let config = crate::config::load_str(
            yaml,
            crate::config::Mode::Serve,
            &std::collections::HashMap::<String, String>::new(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let target = &config.endpoints["chat"].targets[0];
        assert_eq!(
            action_url(target, Action::ConverseStream),
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse-stream"
        );
        assert!(action_url(target, Action::InvokeStream).ends_with("/invoke-with-response-stream"));
    }

    #[test]
    fn bedrock_model_ids_are_priced() {
        let table = PriceTable::shipped();
        let price = |model: &str| {
            table
                .lookup(ProviderKind::Bedrock, model)
                .map(|p| (p.input, p.cached_input, p.output))
        };
        assert_eq!(
            price("anthropic.claude-sonnet-4-5-20250929-v1:0"),
            Some((3_000_000, 300_000, 15_000_000))
        );
        assert_eq!(
            price("us.anthropic.claude-haiku-4-5-20251001-v1:0"),
            Some((1_100_000, 110_000, 5_500_000))
        );
        assert_eq!(
            price("amazon.nova-lite-v1:0"),
            Some((60_000, 15_000, 240_000))
        );
        assert_eq!(
            price("meta.llama3-3-70b-instruct-v1:0"),
            Some((720_000, 720_000, 720_000))
        );
        assert_eq!(
            price("openai.gpt-oss-120b-1:0"),
            Some((150_000, 150_000, 600_000))
        );
    }
}
