//! Liveness and readiness: `/healthz` (the process answers), `/readyz` (config loaded and
//! not draining; with the event pipeline, the spool's depth and oldest age in `usage`), and
//! MLflow's `/health`.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

use crate::edge::Gateway;

/// `GET /healthz`.
pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// `GET /health` (MLflow deployments server).
pub async fn mlflow_health() -> Response {
    Json(json!({"status": "OK"})).into_response()
}

/// `GET /readyz`: 200 while serving, 503 once shutdown has begun.
pub async fn readyz(State(gateway): State<Gateway>) -> Response {
    let runtime = gateway.runtime();
    let mut body = json!({
        "status": if gateway.is_draining() { "draining" } else { "ready" },
        "config_generation": runtime.generation,
        "endpoints": runtime.config.endpoints.len(),
    });
    if let Some(stats) = gateway.sink().pipeline() {
        body["usage"] = json!({
            "spool_depth": stats.spool_depth,
            "spool_oldest_age_seconds": stats.spool_oldest_age.map(|a| a.as_secs_f64()),
            "spool_cap": stats.spool_cap,
            "spool_full": stats.spool_depth >= stats.spool_cap,
            "published": stats.published,
            "publish_failures": stats.publish_failures,
            "refused": stats.refused,
        });
    }
    let status = if gateway.is_draining() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, Json(body)).into_response()
}
