//! The one API error of the edge: an HTTP status, an OpenAI-style JSON body
//! (`{"error":{"message","type","param","code"}}`) and a stable, low-cardinality code used in
//! usage records and metrics. Every failure on an API route ends here.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::json;

use crate::providers::{ProviderError, UpstreamError, anthropic_error_type, google_status_name};

/// Stable error codes: part of the API, never renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The body is not valid JSON.
    InvalidJson,
    /// The body is JSON but not a valid request.
    InvalidRequest,
    /// The body is larger than the configured limit.
    RequestTooLarge,
    /// No endpoint has that name.
    ModelNotFound,
    /// The endpoint's kind does not serve this route.
    EndpointKindMismatch,
    /// No gateway key was presented.
    MissingApiKey,
    /// The presented gateway key is not valid.
    InvalidApiKey,
    /// The presented gateway key was valid but its expiry has passed.
    ExpiredApiKey,
    /// The key may not call this endpoint.
    EndpointNotAllowed,
    /// The endpoint's rate limit, or a minute-window request or token budget, is used up.
    RateLimitExceeded,
    /// A USD budget, or a token or request budget over a longer window, is used up.
    BudgetExceeded,
    /// The gateway could not connect to the provider.
    UpstreamConnectFailed,
    /// The provider did not answer in time.
    UpstreamTimeout,
    /// The provider answered with an error status.
    UpstreamError,
    /// The provider's answer was not in its wire format.
    UpstreamInvalidResponse,
    /// The provider connection broke mid-answer.
    UpstreamInterrupted,
    /// The operation is not available for this target.
    UnsupportedOperation,
    /// The gateway is shutting down.
    ShuttingDown,
    /// The usage spool is full (the event log has been unreachable for long): new requests
    /// are refused rather than served unaccounted.
    UsageSpoolFull,
    /// A bug in the gateway.
    Internal,
}

impl ErrorCode {
    /// The code as sent to clients and recorded in usage.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::InvalidRequest => "invalid_request",
            Self::RequestTooLarge => "request_too_large",
            Self::ModelNotFound => "model_not_found",
            Self::EndpointKindMismatch => "endpoint_kind_mismatch",
            Self::MissingApiKey => "missing_api_key",
            Self::InvalidApiKey => "invalid_api_key",
            Self::ExpiredApiKey => "expired_api_key",
            Self::EndpointNotAllowed => "endpoint_not_allowed",
            Self::RateLimitExceeded => "rate_limit_exceeded",
            Self::BudgetExceeded => "budget_exceeded",
            Self::UpstreamConnectFailed => "upstream_connect_failed",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::UpstreamError => "upstream_error",
            Self::UpstreamInvalidResponse => "upstream_invalid_response",
            Self::UpstreamInterrupted => "upstream_interrupted",
            Self::UnsupportedOperation => "unsupported_operation",
            Self::ShuttingDown => "shutting_down",
            Self::UsageSpoolFull => "usage_spool_full",
            Self::Internal => "internal_error",
        }
    }

    /// OpenAI's error `type` for this code.
    fn error_type(self) -> &'static str {
        match self {
            Self::MissingApiKey | Self::InvalidApiKey | Self::ExpiredApiKey => {
                "authentication_error"
            }
            Self::EndpointNotAllowed => "permission_error",
            Self::RateLimitExceeded => "rate_limit_error",
            Self::BudgetExceeded => "insufficient_quota",
            Self::UpstreamConnectFailed
            | Self::UpstreamTimeout
            | Self::UpstreamError
            | Self::UpstreamInvalidResponse
            | Self::UpstreamInterrupted => "upstream_error",
            Self::ShuttingDown | Self::UsageSpoolFull | Self::Internal => "server_error",
            _ => "invalid_request_error",
        }
    }
}

/// The error format a route's clients parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorShape {
    /// `{"error":{"message","type","param","code"}}` (OpenAI and MLflow routes).
    #[default]
    OpenAi,
    /// `{"type":"error","error":{"type","message"}}` (Anthropic routes).
    Anthropic,
    /// `{"error":{"code","message","status"}}` (Gemini routes).
    Google,
}

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: ErrorCode,
    /// Human-readable message (never a secret).
    pub message: String,
    /// Rarer details, boxed to keep `Result<_, ApiError>` small.
    detail: Option<Box<Detail>>,
}

/// The optional parts of an error.
#[derive(Debug, Clone, Default)]
struct Detail {
    /// The request field at fault.
    param: Option<String>,
    /// Provider-supplied type and code, passed through for upstream errors.
    upstream: Option<(Option<String>, Option<String>)>,
    /// `Retry-After` to send.
    retry_after: Option<HeaderValue>,
    /// Other headers to send (the `x-ratelimit-*` headers of a 429).
    headers: HeaderMap,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            detail: None,
        }
    }

    fn detail_mut(&mut self) -> &mut Detail {
        self.detail.get_or_insert_with(Default::default)
    }

    /// Names the request field at fault.
    pub fn param(mut self, param: impl Into<String>) -> Self {
        self.detail_mut().param = Some(param.into());
        self
    }

    /// Sets the `Retry-After` header to send.
    pub fn retry_after(mut self, value: HeaderValue) -> Self {
        self.detail_mut().retry_after = Some(value);
        self
    }

    /// Adds headers to send with the error.
    pub fn headers(mut self, headers: HeaderMap) -> Self {
        self.detail_mut().headers.extend(headers);
        self
    }

    /// 400 `invalid_request`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message)
    }

    /// The JSON body clients parse.
    pub fn body(&self) -> serde_json::Value {
        let detail = self.detail.as_deref();
        let upstream = detail.and_then(|d| d.upstream.as_ref());
        let param = detail.and_then(|d| d.param.as_deref());
        let (error_type, code) = match upstream {
            Some((error_type, code)) => (
                error_type
                    .clone()
                    .unwrap_or_else(|| self.code.error_type().to_owned()),
                code.clone()
                    .map(serde_json::Value::String)
                    .unwrap_or(serde_json::Value::Null),
            ),
            None => (
                self.code.error_type().to_owned(),
                serde_json::Value::String(self.code.as_str().to_owned()),
            ),
        };
        json!({"error": {"message": self.message, "type": error_type, "param": param, "code": code}})
    }
}

impl From<ProviderError> for ApiError {
    fn from(err: ProviderError) -> Self {
        let message = err.to_string();
        match err {
            ProviderError::Connect { .. } => Self::new(
                StatusCode::BAD_GATEWAY,
                ErrorCode::UpstreamConnectFailed,
                message,
            ),
            ProviderError::Timeout { .. } => Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                ErrorCode::UpstreamTimeout,
                message,
            ),
            ProviderError::Status(upstream) => {
                let UpstreamError {
                    status,
                    message,
                    error_type,
                    code,
                    param,
                    retry_after,
                } = *upstream;
                Self {
                    status,
                    code: ErrorCode::UpstreamError,
                    message,
                    detail: Some(Box::new(Detail {
                        param,
                        upstream: Some((error_type, code)),
                        retry_after,
                        headers: HeaderMap::new(),
                    })),
                }
            }
            ProviderError::InvalidResponse { .. } => Self::new(
                StatusCode::BAD_GATEWAY,
                ErrorCode::UpstreamInvalidResponse,
                message,
            ),
            ProviderError::Interrupted { .. } => Self::new(
                StatusCode::BAD_GATEWAY,
                ErrorCode::UpstreamInterrupted,
                message,
            ),
            ProviderError::InvalidRequest(_) => {
                Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message)
            }
            ProviderError::Unsupported(_) => Self::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::UnsupportedOperation,
                message,
            ),
        }
    }
}

impl ApiError {
    /// The body in `shape`.
    pub fn body_in(&self, shape: ErrorShape) -> serde_json::Value {
        match shape {
            ErrorShape::OpenAi => self.body(),
            ErrorShape::Anthropic => {
                let upstream_type = self
                    .detail
                    .as_deref()
                    .and_then(|d| d.upstream.as_ref())
                    .and_then(|(kind, _)| kind.clone());
                let kind =
                    upstream_type.unwrap_or_else(|| anthropic_error_type(self.status).to_owned());
                json!({"type": "error", "error": {"type": kind, "message": self.message}})
            }
            ErrorShape::Google => json!({"error": {
                "code": self.status.as_u16(),
                "message": self.message,
                "status": google_status_name(self.status),
            }}),
        }
    }

    /// The response in `shape`.
    pub fn into_response_in(self, shape: ErrorShape) -> Response {
        let mut response = (self.status, Json(self.body_in(shape))).into_response();
        let detail = self.detail.map(|d| *d).unwrap_or_default();
        if let Some(retry_after) = detail.retry_after {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, retry_after);
        }
        response.headers_mut().extend(detail.headers);
        response
    }

    /// The final SSE event that ends a stream which failed after it began, in `shape`.
    pub fn stream_frame(&self, shape: ErrorShape) -> bytes::Bytes {
        let body = self.body_in(shape).to_string();
        let frame = match shape {
            ErrorShape::Anthropic => format!("event: error\ndata: {body}\n\n"),
            ErrorShape::OpenAi | ErrorShape::Google => format!("data: {body}\n\n"),
        };
        bytes::Bytes::from(frame)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.into_response_in(ErrorShape::OpenAi)
    }
}
