//! The edge: the HTTP API that clients call.
//!
//! # The request path
//!
//! Layers, outermost first, and what each adds to or reads from the request:
//!
//! 1. [`context::request_context`] — inserts [`context::RequestContext`] (request id, start
//!    time); on the way out sets `x-request-id` and the MLflow timing headers, reading
//!    [`context::UpstreamTime`] from the response extensions.
//! 2. `CatchPanicLayer` — a bug in a handler becomes a 500 JSON error, never a dropped
//!    connection.
//! 3. [`usage_gate::usage_gate`] (API routes only) — refuses new requests with 503
//!    `usage_spool_full` while the usage sink is full; with spool flush `always`, holds the
//!    answer (or a stream's end) until the request's usage record is durable.
//! 4. The route handler. Unified and passthrough calls go through [`invoke::invoke`]:
//!    authenticate ([`auth`]) → read and parse the body under the size limit ([`body`]) →
//!    resolve the endpoint and operation → admit against the endpoint's local limit
//!    ([`limiter`]) → match the ledger's budgets by endpoint, team, user and key
//!    ([`quota::RequestQuota`]) → plan the targets ([`routing`]) → per attempt: reserve
//!    the worst case at that target from this edge's leases ([`quota`]; `429
//!    budget_exceeded` / `rate_limit_exceeded` before any provider is called if a budget
//!    refuses or the ledger is unreachable with no local room), cap the output limit sent
//!    upstream, call the provider ([`crate::providers`]) → answer as JSON, or as SSE
//!    through [`stream::MeteredStream`], with the tightest limit's `x-ratelimit-*`
//!    headers. The usage record ([`accounting::Accounting`]) is opened first and closed
//!    exactly once on every path; it holds the quota reservation and settles it when it
//!    closes (actual usage charged, the rest returned to the lease), and with payload
//!    capture on ([`capture`]) the first bytes of the request and response bodies, redacted
//!    and cut when it closes. A background task
//!    ([`quota::flusher`]) sends settlements to the ledger in batches.
//!
//! A request reads one [`runtime::Runtime`] snapshot (config + limiter state) taken at its
//! start; reloads swap the snapshot atomically and never touch a request in flight. The
//! quota book ([`quota::Quotas`]) lives outside the snapshot, for the edge's lifetime:
//! leases outlive config generations.

pub mod accounting;
pub mod admit;
pub mod auth;
pub mod body;
pub mod capture;
pub mod context;
pub mod error;
pub mod invoke;
pub mod limiter;
pub mod quota;
pub mod routes;
pub mod routing;
pub mod runtime;
pub mod stream;
pub mod usage_gate;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use http::StatusCode;

use crate::config::Config;
use crate::providers::Providers;
use crate::usage::UsageSink;
use error::{ApiError, ErrorCode};
use quota::Quotas;
use runtime::Runtime;

/// The shared state of one edge. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: ArcSwap<Runtime>,
    providers: Providers,
    sink: Arc<dyn UsageSink>,
    quotas: Option<Quotas>,
    draining: AtomicBool,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("generation", &self.runtime().generation)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway serving `config`, enforcing no budgets (the config carries none without
    /// a ledger).
    pub fn new(config: Config, providers: Providers, sink: Arc<dyn UsageSink>) -> Self {
        Self::build(config, providers, sink, None)
    }

    /// A gateway serving `config` that enforces the config's budgets through `quotas`
    /// (this edge's quota book over the ledger).
    pub fn with_quotas(
        config: Config,
        providers: Providers,
        sink: Arc<dyn UsageSink>,
        quotas: Quotas,
    ) -> Self {
        Self::build(config, providers, sink, Some(quotas))
    }

    fn build(
        config: Config,
        providers: Providers,
        sink: Arc<dyn UsageSink>,
        quotas: Option<Quotas>,
    ) -> Self {
        if let Some(quotas) = &quotas {
            quotas.sync(&config.budgets);
        }
        Self {
            inner: Arc::new(Inner {
                runtime: ArcSwap::from_pointee(Runtime::next(config, None)),
                providers,
                sink,
                quotas,
                draining: AtomicBool::new(false),
            }),
        }
    }

    /// The current snapshot.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.inner.runtime.load_full()
    }

    /// Swaps in a new config; requests already running keep the old one. Returns the new
    /// generation. The pooled HTTP clients are prepared for the new config's connect
    /// timeouts first (a changed `timeouts.connect` applies to the next call), and the
    /// clients no longer used are dropped.
    pub fn apply(&self, config: Config) -> u64 {
        if let Err(error) = self
            .inner
            .providers
            .http()
            .prepare(config.connect_timeouts())
        {
            // Not fatal: a missing client is built on first use, and fails that call if it
            // still cannot be built.
            tracing::warn!(%error, "cannot build the upstream HTTP clients for the new config");
        }
        if let Some(quotas) = &self.inner.quotas {
            // Books first: a request on the new config finds its budgets' books.
            quotas.sync(&config.budgets);
        }
        let current = self.runtime();
        let next = Runtime::next(config, Some(&current));
        let generation = next.generation;
        self.inner.runtime.store(Arc::new(next));
        generation
    }

    /// The providers.
    pub fn providers(&self) -> &Providers {
        &self.inner.providers
    }

    /// The quota book, when budgets are enforced.
    pub fn quotas(&self) -> Option<&Quotas> {
        self.inner.quotas.as_ref()
    }

    /// The usage sink.
    pub fn sink(&self) -> Arc<dyn UsageSink> {
        self.inner.sink.clone()
    }

    /// Marks the gateway as shutting down (`/readyz` turns 503).
    pub fn start_draining(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Relaxed)
    }

    /// The HTTP API.
    pub fn router(&self) -> Router {
        use crate::providers::Operation::{Chat, Completions, Embeddings, Responses};
        use routes::openai::{passthrough, unified};
        use routes::{health, metrics, mlflow, native, openai, proxy};
        let api = Router::new()
            .route("/v1/chat/completions", openai::serve(unified(Chat)))
            .route("/v1/completions", openai::serve(unified(Completions)))
            .route("/v1/embeddings", openai::serve(unified(Embeddings)))
            .route("/v1/models", get(openai::models))
            .route(
                "/gateway/mlflow/v1/chat/completions",
                openai::serve(unified(Chat)),
            )
            .route(
                "/gateway/mlflow/v1/completions",
                openai::serve(unified(Completions)),
            )
            .route(
                "/gateway/mlflow/v1/embeddings",
                openai::serve(unified(Embeddings)),
            )
            .route("/gateway/mlflow/v1/models", get(openai::models))
            .route(
                "/gateway/openai/v1/chat/completions",
                openai::serve(passthrough(Chat)),
            )
            .route(
                "/gateway/openai/v1/embeddings",
                openai::serve(passthrough(Embeddings)),
            )
            .route(
                "/gateway/openai/v1/responses",
                openai::serve(passthrough(Responses)),
            )
            .route(
                "/gateway/anthropic/v1/messages",
                native::anthropic_messages(),
            )
            .route("/gateway/gemini/v1beta/models/{call}", post(native::gemini))
            .route("/gateway/proxy/{endpoint}/{*path}", any(proxy::proxy))
            .route(
                "/gateway/{endpoint}/mlflow/invocations",
                post(mlflow::invocations),
            )
            .route(
                "/endpoints/{endpoint}/invocations",
                post(mlflow::invocations),
            )
            .route("/api/2.0/endpoints", get(mlflow::list_endpoints))
            .route("/api/2.0/endpoints/", get(mlflow::list_endpoints))
            .route("/api/2.0/endpoints/{name}", get(mlflow::get_endpoint))
            .route_layer(axum::middleware::from_fn_with_state(
                self.clone(),
                usage_gate::usage_gate,
            ));
        Router::new()
            .route("/healthz", get(health::healthz))
            .route("/readyz", get(health::readyz))
            .route("/health", get(health::mlflow_health))
            .route("/metrics", get(metrics::metrics))
            .merge(api)
            .fallback(not_found)
            .layer(DefaultBodyLimit::disable())
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(
                panic_response,
            ))
            .layer(axum::middleware::from_fn(context::request_context))
            .with_state(self.clone())
    }
}

async fn not_found() -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::InvalidRequest,
        "No such route.",
    )
    .into_response()
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::Internal,
        "Internal error.",
    )
    .into_response()
}
