//! The raw proxy, `/gateway/proxy/{endpoint}/{*path}`: any method and path below the
//! target's base URL, with the target's credentials in place of the client's gateway key,
//! the answer streamed back unchanged. Tokens are not parsed here, so cost is recorded as
//! unknown; request budgets are reserved (and charged one request), and a `reject` budget
//! counting tokens or USD refuses the call, since its worst case cannot be bounded.

use axum::body::Body;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use http::{HeaderMap, Method, StatusCode};

use crate::config::Credentials;
use crate::edge::Gateway;
use crate::edge::accounting::Accounting;
use crate::edge::admit::resolve;
use crate::edge::auth::authenticate;
use crate::edge::body::read_limited;
use crate::edge::context::{RequestContext, UpstreamTime};
use crate::edge::error::{ApiError, ErrorCode, ErrorShape};
use crate::edge::quota::{self, RequestQuota};
use crate::providers::{ProviderKind, client_for};
use crate::usage::RouteKind;

/// Request headers never forwarded: hop-by-hop, the client's credentials, and the ones the
/// HTTP client sets itself.
const DROPPED_REQUEST_HEADERS: &[&str] = &[
    "host",
    "authorization",
    "x-api-key",
    "x-goog-api-key",
    "api-key",
    "cookie",
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "x-request-id",
];

/// Response headers never passed back.
const DROPPED_RESPONSE_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "set-cookie",
    "content-length",
];

/// The proxy handler.
pub async fn proxy(
    State(gateway): State<Gateway>,
    Extension(context): Extension<RequestContext>,
    Path((endpoint, path)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let runtime = gateway.runtime();
    let mut accounting = Accounting::open(gateway.sink(), &runtime, &context, RouteKind::Proxy);
    let prepared = async {
        let key = authenticate(&runtime.config.auth, &headers)?;
        if let Some(key) = &key {
            accounting.key(key);
        }
        let endpoint = resolve(&runtime, &endpoint, key.as_deref())?;
        accounting.endpoint(&endpoint.name);
        let bytes = read_limited(&headers, body, runtime.config.limits.max_body_bytes).await?;
        accounting.capture_request(&headers, &bytes);
        Ok::<_, ApiError>((key, endpoint, bytes))
    }
    .await;
    let (key, endpoint, bytes) = match prepared {
        Ok(ok) => ok,
        Err(error) => return accounting.reject(error, ErrorShape::OpenAi),
    };
    let index = endpoint.split_index(fastrand::u32(0..endpoint.total_weight));
    let target = endpoint.candidate(index);
    if target.provider == ProviderKind::Mock {
        let error = ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::UnsupportedOperation,
            "The raw proxy needs a network provider; this endpoint's target is the built-in mock.",
        );
        return accounting.reject(error, ErrorShape::OpenAi);
    }
    let subject = quota::subject(&endpoint.name, key.as_deref());
    if let Some(quota) = RequestQuota::new(gateway.quotas(), &runtime.config.budgets, &subject)
        && let Err(denied) = quota.prepare_unmetered(&mut accounting).await
    {
        return accounting.reject(denied.to_api_error(), ErrorShape::OpenAi);
    }
    let mut url = format!("{}/{}", target.api_base, path.trim_start_matches('/'));
    if let Some(query) = query {
        url.push('?');
        url.push_str(&query);
    }
    // The client header that carries a `from_header` provider key is sent only as the
    // provider's auth header, never under its own name.
    let credential_header = match &target.credentials {
        Credentials::FromClientHeader(name) => Some(name),
        _ => None,
    };
    let mut forwarded = HeaderMap::new();
    for (name, value) in &headers {
        if !DROPPED_REQUEST_HEADERS.contains(&name.as_str()) && Some(name) != credential_header {
            forwarded.append(name.clone(), value.clone());
        }
    }
    accounting.upstream_begins(index, target, false);
    accounting.mark_cost_unknown();
    // The target's timeouts (its own, else its endpoint's), the connect timeout included:
    // the call goes out on the pooled client built for it.
    let timeouts = target.timeouts;
    let client = match client_for(gateway.providers().http(), timeouts.connect) {
        Ok(client) => client,
        Err(err) => return accounting.reject(err, ErrorShape::OpenAi),
    };
    let builder = client
        .request(method, url)
        .headers(forwarded)
        .body(bytes)
        .timeout(timeouts.total);
    let builder = crate::providers::authorize(builder, target, &headers);
    let upstream = match crate::providers::first_byte(builder.send(), timeouts.first_byte).await {
        Ok(upstream) => upstream,
        Err(err) => return accounting.reject(err, ErrorShape::OpenAi),
    };
    let status = upstream.status();
    let encoded = upstream
        .headers()
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes() != b"identity");
    if encoded {
        accounting.skip_response_capture();
    }
    let mut response = Response::builder().status(status);
    for (name, value) in upstream.headers() {
        if !DROPPED_RESPONSE_HEADERS.contains(&name.as_str()) {
            response = response.header(name, value);
        }
    }
    let waited = accounting.upstream_elapsed();
    let stream = ProxyBody {
        inner: Box::pin(upstream.bytes_stream().map_err(std::io::Error::other)),
        accounting: Some(accounting),
        status: status.as_u16(),
    };
    match response.body(Body::from_stream(stream)) {
        Ok(mut response) => {
            response.extensions_mut().insert(UpstreamTime(waited));
            response
        }
        Err(_) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            ErrorCode::UpstreamInvalidResponse,
            "The provider sent headers that cannot be forwarded.",
        )
        .into_response(),
    }
}

type ByteStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send>>;

/// The proxied body; closes the usage record at its end (or on drop, as cancelled).
struct ProxyBody {
    inner: ByteStream,
    accounting: Option<Accounting>,
    status: u16,
}

impl futures::Stream for ProxyBody {
    type Item = Result<bytes::Bytes, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let polled = self.inner.as_mut().poll_next(cx);
        match &polled {
            std::task::Poll::Ready(Some(Ok(chunk))) => {
                if let Some(accounting) = self.accounting.as_mut() {
                    accounting.capture_response(chunk);
                }
            }
            std::task::Poll::Ready(None) => {
                if let Some(accounting) = self.accounting.take() {
                    accounting.finish(self.status);
                }
            }
            std::task::Poll::Ready(Some(Err(_))) => {
                if let Some(accounting) = self.accounting.take() {
                    let error = ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        ErrorCode::UpstreamInterrupted,
                        "The provider connection failed mid-answer.",
                    );
                    accounting.fail(&error);
                }
            }
            std::task::Poll::Pending => {}
        }
        polled
    }
}
