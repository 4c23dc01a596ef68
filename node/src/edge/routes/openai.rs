//! OpenAI-shaped routes: `/v1/*`, MLflow 3.x's `/gateway/mlflow/v1/*` (the same API under
//! another prefix) and the OpenAI passthrough `/gateway/openai/v1/*`.

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use http::HeaderMap;
use serde_json::{Value, json};

use crate::edge::Gateway;
use crate::edge::auth::authenticate;
use crate::edge::context::RequestContext;
use crate::edge::error::ErrorShape;
use crate::edge::invoke::{CallSpec, EndpointFrom, OperationFrom, StreamFrom, invoke};
use crate::providers::Operation;
use crate::usage::RouteKind;

/// A unified (OpenAI-shaped, `provider` added) call of `op`; the body's `model` names the
/// endpoint.
pub fn unified(op: Operation) -> CallSpec {
    CallSpec {
        route: RouteKind::Unified,
        endpoint: EndpointFrom::BodyModel,
        operation: OperationFrom::Fixed(op),
        stream: StreamFrom::Body,
        shape: ErrorShape::OpenAi,
    }
}

/// An OpenAI passthrough call of `op`: the provider's own answer, unchanged but the model.
pub fn passthrough(op: Operation) -> CallSpec {
    CallSpec {
        route: RouteKind::Passthrough,
        ..unified(op)
    }
}

/// A `POST` route serving `spec` through [`invoke`].
pub fn serve(spec: CallSpec) -> MethodRouter<Gateway> {
    post(
        move |State(gateway): State<Gateway>,
              Extension(context): Extension<RequestContext>,
              headers: HeaderMap,
              body: Body| {
            let spec = spec.clone();
            async move { invoke(&gateway, context, spec, headers, body).await }
        },
    )
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
