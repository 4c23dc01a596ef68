//! Running an edge: the accept loop, HTTP/1.1 and HTTP/2 (h2c) connections, and graceful
//! shutdown. The server owns every connection task, so shutdown can wait for them and, when
//! the grace period runs out, close them — each closed request still writes its usage
//! record (as cancelled) before the caller flushes the sink.
//!
//! Shutdown phases: (1) the shutdown future resolves; (2) the listener closes and `/readyz`
//! turns 503; (3) every connection is asked to finish (HTTP/1: after the current response;
//! HTTP/2: GOAWAY) and in-flight requests and streams run to completion, for at most the
//! grace period; (4) connections still open are aborted; (5) the caller flushes the usage
//! sink and the logs.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::edge::Gateway;

/// Pause after an accept error (e.g. out of file descriptors) before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves `gateway` on `listener` until `shutdown` resolves, then drains for up to `grace`.
/// Returns whether every in-flight request finished within the grace period.
pub async fn run(
    listener: TcpListener,
    gateway: Gateway,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<bool> {
    let service = TowerToHyperService::new(gateway.router());
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let connection = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service.clone())
                    .into_owned();
                let connection = graceful.watch(connection);
                connections.spawn(async move {
                    let _ = connection.await;
                });
            }
        }
    }
    drop(listener);
    gateway.start_draining();
    tracing::info!(
        grace_ms = grace.as_millis() as u64,
        connections = connections.len(),
        "shutting down: draining in-flight requests"
    );
    let drained = tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_ok();
    if !drained {
        tracing::warn!(
            connections = connections.len(),
            "grace period over: closing the requests still open"
        );
        connections.abort_all();
    }
    while connections.join_next().await.is_some() {}
    Ok(drained)
}

/// Binds the configured address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
