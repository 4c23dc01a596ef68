//! The usage query API as JSON over HTTP, for the web UI and `floodgate ctl usage/traces`:
//! the same questions, validation and errors as the gRPC `UsageService`.
//!
//! | method and path | answers |
//! | --- | --- |
//! | `GET /usage/v1/usage?from&to&granularity&group_by&<filters>` | [`UsageReport`](crate::query::UsageReport) |
//! | `GET /usage/v1/top?from&to&dimension&by&limit&<filters>` | [`TopReport`](crate::query::TopReport) |
//! | `GET /usage/v1/traces?from&to&cursor&limit&<filters>` | `{"traces": [TraceView], "next_cursor"}` |
//! | `GET /usage/v1/traces/{id}` | `{"trace": TraceView, "sequence"}` (event or request id) |
//! | `GET /usage/v1/watch?<filters>` | server-sent events, one `TraceView` (no payloads) per event folded from now on |
//! | `GET /usage/v1/parked?after&limit` | `{"parked": [ParkedView], "next_after"}`: messages that were not readable events, by sequence |
//! | `GET /usage/v1/stats` | the fold loop's counters and lag, and how many messages are parked ([`stats_router`]) |
//!
//! `from`/`to` are Unix seconds; `group_by` is comma-separated; filters are the dimension
//! names (`endpoint`, `provider`, `model`, `key`, `team`, `user`, `status`). An unknown
//! parameter is refused (`invalid_parameter`). Errors are
//! `{"error": {"message", "type", "param", "code"}}` ([`QueryError`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use http::StatusCode;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::dims::{Dimension, Filter};
use crate::parked::ParkedView;
use crate::query::{self, ParkedQuery, QueryError, TopQuery, TraceQuery, UsageQuery, blocking};
use crate::runner::LoopStats;
use crate::store::Projection;
use crate::view::TraceView;

#[derive(Clone)]
struct HttpState {
    projection: Projection,
    stop: CancellationToken,
}

/// The JSON router over `projection`; live watches end when `stop` is cancelled.
pub fn router(projection: Projection, stop: CancellationToken) -> Router {
    Router::new()
        .route("/usage/v1/usage", get(usage))
        .route("/usage/v1/top", get(top))
        .route("/usage/v1/traces", get(traces))
        .route("/usage/v1/traces/{id}", get(trace))
        .route("/usage/v1/watch", get(watch))
        .route("/usage/v1/parked", get(parked))
        .with_state(HttpState { projection, stop })
}

/// `GET /usage/v1/stats`: the fold loop's counters and lag (answer → visible) since start,
/// and the messages parked in `projection` in all, as JSON.
pub fn stats_router(stats: Arc<LoopStats>, projection: Projection) -> Router {
    Router::new().route(
        "/usage/v1/stats",
        get(move || {
            let (stats, projection) = (stats.clone(), projection.clone());
            async move {
                let parked = blocking(&projection, |p| Ok(p.parked_count()?)).await;
                let parked = match parked {
                    Ok(parked) => parked,
                    Err(error) => return refusal(&error),
                };
                axum::Json(json!({
                    "folded": stats.folded.load(Ordering::Relaxed),
                    "skipped": stats.skipped.load(Ordering::Relaxed),
                    "undecodable": stats.undecodable.load(Ordering::Relaxed),
                    "parked": parked,
                    "lag_us": stats.lag(),
                }))
                .into_response()
            }
        }),
    )
}

fn refusal(error: &QueryError) -> Response {
    let status = StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    (status, axum::Json(error.body())).into_response()
}

fn answer<T: serde::Serialize>(result: Result<T, QueryError>) -> Response {
    match result {
        Ok(value) => axum::Json(value).into_response(),
        Err(error) => refusal(&error),
    }
}

/// Query parameters, checked against what an endpoint accepts.
struct Params(HashMap<String, String>);

impl Params {
    fn new(raw: HashMap<String, String>, accepted: &[&str]) -> Result<Self, QueryError> {
        for name in raw.keys() {
            if !accepted.contains(&name.as_str()) && Dimension::parse(name).is_none() {
                return Err(QueryError::InvalidParameter {
                    param: name.clone(),
                    reason: "unknown parameter".to_owned(),
                });
            }
        }
        Ok(Self(raw))
    }

    fn text(&self, name: &str) -> &str {
        self.0.get(name).map_or("", String::as_str)
    }

    fn number<T: std::str::FromStr + Default>(&self, name: &str) -> Result<T, QueryError> {
        match self.0.get(name) {
            None => Ok(T::default()),
            Some(text) => text.parse().map_err(|_| QueryError::InvalidParameter {
                param: name.to_owned(),
                reason: format!("`{text}` is not a number"),
            }),
        }
    }

    fn filter(&self) -> Filter {
        Filter(
            Dimension::ALL
                .into_iter()
                .filter_map(|d| Some((d, self.0.get(d.name())?.clone())))
                .filter(|(_, v)| !v.is_empty())
                .collect(),
        )
    }
}

fn usage_query(raw: HashMap<String, String>) -> Result<UsageQuery, QueryError> {
    let p = Params::new(raw, &["from", "to", "granularity", "group_by"])?;
    let group_by: Vec<String> = p.text("group_by").split(',').map(str::to_owned).collect();
    UsageQuery::new(
        p.number("from")?,
        p.number("to")?,
        p.text("granularity"),
        &group_by,
        p.filter(),
    )
}

async fn usage(
    State(HttpState { projection, .. }): State<HttpState>,
    Query(raw): Query<HashMap<String, String>>,
) -> Response {
    match usage_query(raw) {
        Ok(asked) => answer(blocking(&projection, move |p| query::usage::query(p, &asked)).await),
        Err(error) => refusal(&error),
    }
}

fn top_query(raw: HashMap<String, String>) -> Result<TopQuery, QueryError> {
    let p = Params::new(raw, &["from", "to", "dimension", "by", "limit"])?;
    TopQuery::new(
        p.number("from")?,
        p.number("to")?,
        p.text("dimension"),
        p.text("by"),
        p.number("limit")?,
        p.filter(),
    )
}

async fn top(
    State(HttpState { projection, .. }): State<HttpState>,
    Query(raw): Query<HashMap<String, String>>,
) -> Response {
    match top_query(raw) {
        Ok(asked) => answer(blocking(&projection, move |p| query::usage::top(p, &asked)).await),
        Err(error) => refusal(&error),
    }
}

fn trace_query(raw: HashMap<String, String>) -> Result<TraceQuery, QueryError> {
    let p = Params::new(raw, &["from", "to", "cursor", "limit"])?;
    TraceQuery::new(
        p.number("from")?,
        p.number("to")?,
        p.filter(),
        p.text("cursor"),
        p.number("limit")?,
    )
}

async fn traces(
    State(HttpState { projection, .. }): State<HttpState>,
    Query(raw): Query<HashMap<String, String>>,
) -> Response {
    let asked = match trace_query(raw) {
        Ok(asked) => asked,
        Err(error) => return refusal(&error),
    };
    answer(
        blocking(&projection, move |p| query::traces::list(p, &asked))
            .await
            .map(|page| {
                let traces: Vec<TraceView> = page.traces.iter().map(TraceView::from).collect();
                json!({"traces": traces, "next_cursor": page.next_cursor})
            }),
    )
}

async fn trace(
    State(HttpState { projection, .. }): State<HttpState>,
    Path(id): Path<String>,
) -> Response {
    answer(
        blocking(&projection, move |p| query::traces::get(p, &id))
            .await
            .map(
                |trace| json!({"trace": TraceView::from(&trace.event), "sequence": trace.sequence}),
            ),
    )
}

fn parked_query(raw: HashMap<String, String>) -> Result<ParkedQuery, QueryError> {
    // No filters: a parked message is not an event, it has no dimensions.
    if let Some(name) = raw
        .keys()
        .find(|n| !["after", "limit"].contains(&n.as_str()))
    {
        return Err(QueryError::InvalidParameter {
            param: name.clone(),
            reason: "unknown parameter".to_owned(),
        });
    }
    let p = Params(raw);
    ParkedQuery::new(p.number("after")?, p.number("limit")?)
}

async fn parked(
    State(HttpState { projection, .. }): State<HttpState>,
    Query(raw): Query<HashMap<String, String>>,
) -> Response {
    let asked = match parked_query(raw) {
        Ok(asked) => asked,
        Err(error) => return refusal(&error),
    };
    answer(
        blocking(
            &projection,
            move |p| Ok(p.parked(asked.after, asked.limit)?),
        )
        .await
        .map(|page| {
            let next_after = (page.len() == asked.limit)
                .then(|| page.last().map(|p| p.sequence))
                .flatten();
            let parked: Vec<ParkedView> = page.iter().map(ParkedView::from).collect();
            json!({"parked": parked, "next_after": next_after})
        }),
    )
}

async fn watch(
    State(state): State<HttpState>,
    Query(raw): Query<HashMap<String, String>>,
) -> Response {
    let filter = match Params::new(raw, &[]) {
        Ok(params) => params.filter(),
        Err(error) => return refusal(&error),
    };
    let events = crate::watch::events(&state.projection, filter, state.stop.clone())
        .map(|event| Event::default().json_data(TraceView::from(&*event)));
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
