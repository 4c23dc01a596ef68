//! OpenAI-shaped routes: `/v1/*`, MLflow 3.x's `/gateway/mlflow/v1/*` (the same API under
//! another prefix) and the OpenAI passthrough `/gateway/openai/v1/*`.

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use serde_json::{Value, json};

use crate::edge::Gateway;
use crate::edge::auth::authenticate;
use crate::edge::context::RequestContext;
use crate::edge::invoke::{CallSpec, EndpointFrom, OperationFrom, invoke};
use crate::providers::Operation;
use crate::usage::RouteKind;

fn unified(op: Operation) -> CallSpec {
    CallSpec {
        route: RouteKind::Unified,
        endpoint: EndpointFrom::BodyModel,
        operation: OperationFrom::Fixed(op),
    }
}

fn passthrough(op: Operation) -> CallSpec {
    CallSpec {
        route: RouteKind::Passthrough,
        ..unified(op)
    }
}

/// `POST /v1/chat/completions`, `POST /gateway/mlflow/v1/chat/completions`.
pub async fn chat(
    State(gateway): State<Gateway>,
    Extension(context): Extension<RequestContext>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    invoke(&gateway, context, unified(Operation::Chat), headers, body).await
}

/// `POST /v1/completions`.
pub async fn completions(
    State(gateway): State<Gateway>,
    Extension(context): Extension<RequestContext>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    invoke(
        &gateway,
        context,
        unified(Operation::Completions),
        headers,
        body,
    )
    .await
}

/// `POST /v1/embeddings`, `POST /gateway/mlflow/v1/embeddings`.
pub async fn embeddings(
    State(gateway): State<Gateway>,
    Extension(context): Extension<RequestContext>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    invoke(
        &gateway,
        context,
        unified(Operation::Embeddings),
        headers,
        body,
    )
    .await
}

/// `POST /gateway/openai/v1/chat/completions`: native OpenAI in and out.
pub async fn passthrough_chat(
    State(gateway): State<Gateway>,
    Extension(context): Extension<RequestContext>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    invoke(
        &gateway,
        context,
        passthrough(Operation::Chat),
        headers,
        body,
    )
    .await
}

/// `POST /gateway/openai/v1/embeddings`.
pub async fn passthrough_embeddings(
    State(gateway): State<Gateway>,
    Extension(context): Extension<RequestContext>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    invoke(
        &gateway,
        context,
        passthrough(Operation::Embeddings),
        headers,
        body,
    )
    .await
}

/// `POST /gateway/openai/v1/responses`: the Responses API.
pub async fn passthrough_responses(
    State(gateway): State<Gateway>,
    Extension(context): Extension<RequestContext>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    invoke(
        &gateway,
        context,
        passthrough(Operation::Responses),
        headers,
        body,
    )
    .await
}

/// `GET /v1/models`, `GET /gateway/mlflow/v1/models`: the endpoints this key may call.
pub async fn models(State(gateway): State<Gateway>, headers: HeaderMap) -> Response {
    let runtime = gateway.runtime();
    let key = match authenticate(&runtime.config.auth, &headers) {
        Ok(key) => key,
        Err(error) => return error.into_response(),
    };
    let data: Vec<Value> = runtime
        .config
        .endpoints
        .values()
        .filter(|e| {
            key.as_ref()
                .is_none_or(|k| k.endpoints.is_empty() || k.endpoints.contains(&e.name))
        })
        .map(|e| json!({"id": e.name, "object": "model", "created": 0, "owned_by": "floodgate"}))
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}
