//! [`Projector`]: a projector's parts started together: the store, the query API (gRPC and
//! JSON), the background pruner and, given an [`EventSource`], the fold loop. Every task is
//! spawned on the caller's [`TaskTracker`] and stops when the caller's
//! [`CancellationToken`] is cancelled.

use std::net::SocketAddr;
use std::sync::Arc;

use floodgate_events::EventSource;
use floodgate_proto::v1::usage_service_server::UsageServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::server::TcpIncoming;

use crate::config::ProjectorSettings;
use crate::grpc::UsageGrpc;
use crate::runner::{self, LoopStats, now_us};
use crate::store::{Projection, StoreError};

/// Why a projector could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Where the query API listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listening {
    /// gRPC `UsageService`.
    pub grpc: SocketAddr,
    /// JSON API.
    pub http: SocketAddr,
}

/// A projector: its store, settings and counters.
#[derive(Debug, Clone)]
pub struct Projector {
    projection: Projection,
    settings: ProjectorSettings,
    stats: Arc<LoopStats>,
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let bound = async {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        Ok((listener, local))
    };
    bound
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

impl Projector {
    /// Opens the store named by `settings`.
    pub fn open(settings: ProjectorSettings) -> Result<Self, StartError> {
        Ok(Self {
            projection: Projection::open(&settings.data_dir)?,
            settings,
            stats: Arc::default(),
        })
    }

    /// The store.
    pub fn projection(&self) -> &Projection {
        &self.projection
    }

    /// The fold loop's counters.
    pub fn stats(&self) -> &Arc<LoopStats> {
        &self.stats
    }

    /// Binds and serves the query API (gRPC and JSON) and starts the pruner.
    pub async fn serve_queries(
        &self,
        stop: &CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Listening, StartError> {
        let (grpc_listener, grpc) = bind(self.settings.grpc_listen).await?;
        let (http_listener, http) = bind(self.settings.http_listen).await?;
        let service =
            UsageServiceServer::new(UsageGrpc::new(self.projection.clone(), stop.clone()));
        let stopped = stop.clone();
        tracker.spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    TcpIncoming::from(grpc_listener),
                    stopped.cancelled_owned(),
                )
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "the usage gRPC server failed");
            }
        });
        let app = crate::http::router(self.projection.clone(), stop.clone()).merge(
            crate::http::stats_router(self.stats.clone(), self.projection.clone()),
        );
        let stopped = stop.clone();
        tracker.spawn(async move {
            let served = axum::serve(http_listener, app)
                .with_graceful_shutdown(stopped.cancelled_owned())
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "the usage JSON server failed");
            }
        });
        self.start_pruner(stop, tracker);
        tracing::info!(%grpc, %http, "usage query API listening");
        Ok(Listening { grpc, http })
    }

    fn start_pruner(&self, stop: &CancellationToken, tracker: &TaskTracker) {
        let projection = self.projection.clone();
        let settings = self.settings.clone();
        let stop = stop.clone();
        tracker.spawn(async move {
            let mut every = tokio::time::interval(settings.prune_interval);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = every.tick() => {}
                }
                let projection = projection.clone();
                let (retention, horizon) = (settings.trace_retention, settings.dedup_horizon);
                let pruned = tokio::task::spawn_blocking(move || {
                    projection.prune(now_us(), retention, horizon)
                })
                .await;
                match pruned {
                    Ok(Ok(pruned)) if pruned.traces + pruned.seen > 0 => {
                        tracing::info!(traces = pruned.traces, seen = pruned.seen, "pruned");
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => tracing::error!(%error, "pruning failed"),
                    Err(error) => tracing::error!(%error, "the pruner panicked"),
                }
            }
        });
    }

    /// Starts the fold loop over `source`. A store failure stops the loop (logged): going
    /// on could lose or double-count events.
    pub fn start_loop<E: EventSource + 'static>(
        &self,
        source: E,
        stop: &CancellationToken,
        tracker: &TaskTracker,
    ) {
        let projection = self.projection.clone();
        let stats = self.stats.clone();
        let fetch = self.settings.fetch;
        let stop = stop.clone();
        tracker.spawn(async move {
            if let Err(error) = runner::run(source, projection, fetch, stats, stop).await {
                tracing::error!(%error, "the projector loop stopped");
            }
        });
    }
}
