//! Native passthrough routes, so provider SDKs work unchanged against the gateway:
//! `POST /gateway/anthropic/v1/messages` (Anthropic SDK with
//! `base_url=".../gateway/anthropic"`) and
//! `POST /gateway/gemini/v1beta/models/{endpoint}:generateContent` /
//! `:streamGenerateContent` (Gemini clients). Bodies and answers stay in the provider's own
//! format; errors come back in that provider's shape.

use axum::body::Body;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode};

use super::openai::serve;
use crate::edge::Gateway;
use crate::edge::context::RequestContext;
use crate::edge::error::{ApiError, ErrorCode, ErrorShape};
use crate::edge::invoke::{CallSpec, EndpointFrom, OperationFrom, StreamFrom, invoke};
use crate::providers::Operation;
use crate::usage::RouteKind;

/// `POST /gateway/anthropic/v1/messages`: `model` names the endpoint.
pub fn anthropic_messages() -> axum::routing::MethodRouter<Gateway> {
    serve(CallSpec {
        route: RouteKind::Passthrough,
        endpoint: EndpointFrom::BodyModel,
        operation: OperationFrom::Fixed(Operation::AnthropicMessages),
        stream: StreamFrom::Body,
        shape: ErrorShape::Anthropic,
    })
}

/// `POST /gateway/gemini/v1beta/models/{endpoint}:{method}`, method `generateContent` or
/// `streamGenerateContent` (answered as SSE, as with `?alt=sse`). The gateway key may come
/// as `x-goog-api-key` or `?key=`, as Gemini clients send it.
pub async fn gemini(
    State(gateway): State<Gateway>,
    Extension(context): Extension<RequestContext>,
    Path(call): Path<String>,
    RawQuery(query): RawQuery,
    mut headers: HeaderMap,
    body: Body,
) -> Response {
    let (endpoint, stream) = match call.rsplit_once(':') {
        Some((endpoint, "generateContent")) => (endpoint, false),
        Some((endpoint, "streamGenerateContent")) => (endpoint, true),
        _ => {
            return ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::InvalidRequest,
                "Expected models/{endpoint}:generateContent or :streamGenerateContent.",
            )
            .into_response_in(ErrorShape::Google);
        }
    };
    if !headers.contains_key("x-goog-api-key")
        && let Some(key) = query_key(query.as_deref())
        && let Ok(value) = HeaderValue::from_str(&key)
    {
        headers.insert("x-goog-api-key", value);
    }
    let spec = CallSpec {
        route: RouteKind::Passthrough,
        endpoint: EndpointFrom::Path(endpoint.to_owned()),
        operation: OperationFrom::Fixed(Operation::GeminiGenerateContent),
        stream: StreamFrom::Fixed(stream),
        shape: ErrorShape::Google,
    };
    invoke(&gateway, context, spec, headers, body).await
}

/// The `key` query parameter, percent-decoded.
fn query_key(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(name, _)| name == "key")
        .map(|(_, value)| value.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_comes_from_the_query_string() {
        assert_eq!(
            query_key(Some("alt=sse&key=fg%2Dabc")).as_deref(),
            Some("fg-abc")
        );
        assert_eq!(query_key(Some("alt=sse")), None);
        assert_eq!(query_key(None), None);
    }
}
