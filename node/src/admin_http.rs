//! The ledger's admin API over JSON/HTTP, for the web UI and `curl`: the same operations
//! and errors as the gRPC `ConfigService` (both call [`Admin`]).
//!
//! | method and path | does |
//! | --- | --- |
//! | `GET /admin/v1/status` | revision, leader, members, budget usage |
//! | `GET /admin/v1/{kind}` | list (`endpoint`, `price`, `credential`, `key`, `team`, `user`, `budget`, `lease_policy`) |
//! | `PUT /admin/v1/{kind}` | create or replace; the body is the object |
//! | `GET /admin/v1/{kind}/{id}` | one object |
//! | `DELETE /admin/v1/{kind}/{id}` | delete |
//! | `POST /admin/v1/keys` | create a gateway key; the answer holds it, once |
//! | `POST /admin/v1/keys/{id}/revoke` | revoke a key on every edge |
//!
//! Every call needs `Authorization: Bearer <FLOODGATE_ADMIN_TOKEN>` when that variable is
//! set; without it the API binds only to loopback addresses. Errors are
//! `{"error": {"code", "message", "errors": [{"field", "reason"}]}}` with an HTTP status
//! matching the code.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use floodgate_cluster::admin::{Admin, AdminError};
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

/// The variable holding the admin bearer token.
pub const ADMIN_TOKEN_VAR: &str = "FLOODGATE_ADMIN_TOKEN";

#[derive(Clone)]
struct AdminState {
    admin: Admin,
}

/// The admin router over `admin`; `token`, when set, is required as a bearer token.
pub fn router(admin: Admin, token: Option<String>) -> Router {
    let token: Option<Arc<str>> = token.map(Arc::from);
    Router::new()
        .route("/admin/v1/status", get(status))
        .route("/admin/v1/keys", post(create_key))
        .route("/admin/v1/keys/{id}/revoke", post(revoke_key))
        .route("/admin/v1/{kind}", get(list).put(put))
        .route("/admin/v1/{kind}/{id}", get(one).delete(delete))
        .with_state(AdminState { admin })
        .layer(middleware::from_fn_with_state(token, require_token))
}

/// Refuses every call without the admin token, when one is required.
async fn require_token(
    State(token): State<Option<Arc<str>>>,
    request: Request,
    next: Next,
) -> Response {
    match denied(token.as_deref(), request.headers()) {
        Some(refusal) => refusal,
        None => next.run(request).await,
    }
}

/// The refusal for a request without the admin token, when one is required.
fn denied(token: Option<&str>, headers: &HeaderMap) -> Option<Response> {
    let token = token?;
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(presented.as_bytes().ct_eq(token.as_bytes())) {
        None
    } else {
        Some(error_response(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "send the admin token as `Authorization: Bearer <token>`",
            Vec::new(),
        ))
    }
}

fn error_response(
    status: StatusCode,
    code: &str,
    message: &str,
    errors: Vec<floodgate_cluster::admin::FieldError>,
) -> Response {
    let mut body = json!({"error": {"code": code, "message": message}});
    if !errors.is_empty() {
        body["error"]["errors"] = json!(errors);
    }
    (status, axum::Json(body)).into_response()
}

fn admin_error(error: &AdminError) -> Response {
    let body = error.body();
    let status = match error.code() {
        "invalid_argument" => StatusCode::BAD_REQUEST,
        "not_found" => StatusCode::NOT_FOUND,
        "conflict" => StatusCode::CONFLICT,
        "kek_missing" => StatusCode::PRECONDITION_FAILED,
        "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error_response(status, &body.code, &body.message, body.errors)
}

fn answer(result: Result<Value, AdminError>) -> Response {
    match result {
        Ok(value) => axum::Json(value).into_response(),
        Err(error) => admin_error(&error),
    }
}

async fn status(State(state): State<AdminState>) -> Response {
    answer(state.admin.status().await.map(|status| json!(status)))
}

async fn list(State(state): State<AdminState>, Path(kind): Path<String>) -> Response {
    answer(
        state
            .admin
            .list(&kind)
            .map(|listed| json!({"objects": listed.objects, "revision": listed.revision})),
    )
}

async fn one(
    State(state): State<AdminState>,
    Path((kind, id)): Path<(String, String)>,
) -> Response {
    answer(
        state
            .admin
            .get(&kind, &id)
            .map(|one| json!({"object": one.object, "revision": one.revision})),
    )
}

async fn put(State(state): State<AdminState>, Path(kind): Path<String>, body: Bytes) -> Response {
    answer(
        state
            .admin
            .put(&kind, &body)
            .await
            .map(|one| json!({"object": one.object, "revision": one.revision})),
    )
}

async fn delete(
    State(state): State<AdminState>,
    Path((kind, id)): Path<(String, String)>,
) -> Response {
    answer(
        state
            .admin
            .delete(&kind, &id)
            .await
            .map(|revision| json!({"deleted": id, "revision": revision})),
    )
}

async fn create_key(State(state): State<AdminState>, body: Bytes) -> Response {
    let body = if body.is_empty() {
        Bytes::from_static(b"{}")
    } else {
        body
    };
    answer(state.admin.create_key(&body).await.map(|created| {
        json!({
            "key": created.key.as_str(),
            "id": created.id,
            "prefix": created.prefix,
            "object": created.object,
            "revision": created.revision,
        })
    }))
}

async fn revoke_key(State(state): State<AdminState>, Path(id): Path<String>) -> Response {
    answer(
        state
            .admin
            .revoke_key(&id)
            .await
            .map(|one| json!({"object": one.object, "revision": one.revision})),
    )
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use tower::ServiceExt;

    use super::*;

    fn guarded(token: Option<&str>) -> Router {
        Router::new()
            .route("/admin/v1/status", get(|| async { "ok" }))
            .layer(middleware::from_fn_with_state(
                token.map(Arc::<str>::from),
                require_token,
            ))
    }

    async fn status_code(router: Router, authorization: Option<&str>) -> StatusCode {
        let mut request = http::Request::get("/admin/v1/status");
        if let Some(value) = authorization {
            request = request.header(http::header::AUTHORIZATION, value);
        }
        router
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
            .status()
    }

    #[tokio::test]
    async fn a_required_token_must_be_presented_exactly() {
        let token = Some("admin-secret");
        assert_eq!(
            status_code(guarded(token), None).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status_code(guarded(token), Some("Bearer wrong")).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status_code(guarded(token), Some("Bearer admin-secret")).await,
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn without_a_token_configured_calls_pass() {
        assert_eq!(status_code(guarded(None), None).await, StatusCode::OK);
    }
}
