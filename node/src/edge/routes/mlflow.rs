//! MLflow routes: the 3.x per-endpoint invocations route and the 2.x deployments server
//! API (`mlflow.deployments.get_deploy_client(url)` works unchanged against these).

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Path, Query, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::Endpoint;
use crate::edge::Gateway;
use crate::edge::admit::resolve;
use crate::edge::auth::authenticate;
use crate::edge::context::RequestContext;
use crate::edge::error::ApiError;
use crate::edge::error::ErrorShape;
use crate::edge::invoke::{CallSpec, EndpointFrom, OperationFrom, StreamFrom, invoke};
use crate::usage::RouteKind;

/// MLflow's page size for `list_endpoints`.
const DEFAULT_PAGE_SIZE: usize = 3000;

/// `POST /gateway/{endpoint}/mlflow/invocations` and `POST /endpoints/{name}/invocations`:
/// chat when the body has `messages`, completions for `prompt`, embeddings for `input`.
pub async fn invocations(
    State(gateway): State<Gateway>,
    Extension(context): Extension<RequestContext>,
    Path(endpoint): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let spec = CallSpec {
        route: RouteKind::Unified,
        endpoint: EndpointFrom::Path(endpoint),
        operation: OperationFrom::BodyKeys,
        stream: StreamFrom::Body,
        shape: ErrorShape::OpenAi,
    };
    invoke(&gateway, context, spec, headers, body).await
}

/// An endpoint as MLflow's deployments client reads it.
fn describe(endpoint: &Endpoint) -> Value {
    let target = &endpoint.targets[0];
    let limit = endpoint.rate_limit.map(|l| {
        let period = match l.period.as_secs() {
            1 => "second",
            60 => "minute",
            3600 => "hour",
            _ => "day",
        };
        json!({"calls": l.calls, "renewal_period": period})
    });
    json!({
        "name": endpoint.name,
        "endpoint_type": endpoint.kind.mlflow_type(),
        "model": {"name": target.model, "provider": target.provider.name()},
        "endpoint_url": format!("/endpoints/{}/invocations", endpoint.name),
        "limit": limit,
    })
}

/// Query of `GET /api/2.0/endpoints/`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    page_token: Option<String>,
    max_results: Option<usize>,
}

/// `GET /api/2.0/endpoints/`: endpoints in config order, paged by `page_token`.
pub async fn list_endpoints(
    State(gateway): State<Gateway>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> Response {
    let runtime = gateway.runtime();
    let key = match authenticate(&runtime.config.auth, &headers) {
        Ok(key) => key,
        Err(error) => return error.into_response(),
    };
    let start = match query.page_token.as_deref().map(decode_token) {
        None => 0,
        Some(Some(offset)) => offset,
        Some(None) => {
            return ApiError::invalid("Invalid `page_token`.")
                .param("page_token")
                .into_response();
        }
    };
    let size = query
        .max_results
        .unwrap_or(DEFAULT_PAGE_SIZE)
        .clamp(1, DEFAULT_PAGE_SIZE);
    let visible: Vec<&Endpoint> = runtime
        .config
        .endpoints
        .values()
        .map(AsRef::as_ref)
        .filter(|e| {
            key.as_ref()
                .is_none_or(|k| k.endpoints.is_empty() || k.endpoints.contains(&e.name))
        })
        .collect();
    let page: Vec<Value> = visible
        .iter()
        .skip(start)
        .take(size)
        .map(|e| describe(e))
        .collect();
    let next = start + page.len();
    let mut body = json!({"endpoints": page});
    if next < visible.len() {
        body["next_page_token"] = Value::String(encode_token(next));
    }
    Json(body).into_response()
}

/// `GET /api/2.0/endpoints/{name}`.
pub async fn get_endpoint(
    State(gateway): State<Gateway>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let runtime = gateway.runtime();
    let result = authenticate(&runtime.config.auth, &headers)
        .and_then(|key| resolve(&runtime, &name, key.as_deref()));
    match result {
        Ok(endpoint) => Json(describe(&endpoint)).into_response(),
        Err(error) => error.into_response(),
    }
}

fn encode_token(offset: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("offset:{offset}"))
}

fn decode_token(token: &str) -> Option<usize> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    String::from_utf8(bytes)
        .ok()?
        .strip_prefix("offset:")?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        assert_eq!(decode_token(&encode_token(42)), Some(42));
        assert_eq!(decode_token("not-a-token"), None);
    }
}
