//! `GET /metrics`: Prometheus text exposition. Every metric the edge exports is named and
//! described here, prefixed `floodgate_`. Today: the usage event pipeline (spool depth,
//! oldest age, cap; events published; failed publish rounds; requests refused while the
//! spool was full), present when the pipeline is on.

use std::fmt::Write;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE;

use crate::edge::Gateway;

/// The Prometheus text format's content type.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`.
pub async fn metrics(State(gateway): State<Gateway>) -> Response {
    let mut out = String::new();
    if let Some(stats) = gateway.sink().pipeline() {
        let oldest = stats.spool_oldest_age.map_or(0.0, |a| a.as_secs_f64());
        let metrics: [(&str, &str, &str, f64); 6] = [
            (
                "floodgate_usage_spool_depth",
                "gauge",
                "Usage events spooled and not yet acknowledged by the event log.",
                stats.spool_depth as f64,
            ),
            (
                "floodgate_usage_spool_oldest_age_seconds",
                "gauge",
                "Age of the oldest spooled usage event (0 when the spool is empty).",
                oldest,
            ),
            (
                "floodgate_usage_spool_cap",
                "gauge",
                "Spool depth at which new requests are refused with 503 usage_spool_full.",
                stats.spool_cap as f64,
            ),
            (
                "floodgate_usage_events_published_total",
                "counter",
                "Usage events acknowledged by the event log since start.",
                stats.published as f64,
            ),
            (
                "floodgate_usage_publish_failures_total",
                "counter",
                "Failed usage event publish rounds since start (each retried).",
                stats.publish_failures as f64,
            ),
            (
                "floodgate_usage_spool_refused_total",
                "counter",
                "Requests refused with 503 usage_spool_full since start.",
                stats.refused as f64,
            ),
        ];
        for (name, kind, help, value) in metrics {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
    }
    ([(CONTENT_TYPE, TEXT_FORMAT)], out).into_response()
}
