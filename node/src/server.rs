//! Running an edge: bind, serve, and shut down gracefully.
//!
//! Shutdown phases: (1) the shutdown future resolves; (2) `/readyz` turns 503 and the
//! listener stops accepting; (3) in-flight requests and streams finish, for at most the
//! grace period; (4) whatever is still open is dropped (each dropped request still emits
//! its usage record, as cancelled); (5) the caller flushes the usage sink and logs.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::edge::Gateway;

/// Serves `gateway` on `listener` until `shutdown` resolves, then drains for up to `grace`.
/// Returns whether every in-flight request finished within the grace period.
pub async fn run(
    listener: TcpListener,
    gateway: Gateway,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<bool> {
    let stop_accepting = CancellationToken::new();
    let serve = axum::serve(listener, gateway.router())
        .with_graceful_shutdown(stop_accepting.clone().cancelled_owned());
    let serve = tokio::spawn(serve.into_future());
    tokio::pin!(serve);
    tokio::select! {
        result = &mut serve => return join_result(result).map(|()| true),
        () = shutdown => {}
    }
    tracing::info!(
        grace_ms = grace.as_millis() as u64,
        "shutting down: draining in-flight requests"
    );
    gateway.start_draining();
    stop_accepting.cancel();
    match tokio::time::timeout(grace, &mut serve).await {
        Ok(result) => join_result(result).map(|()| true),
        Err(_) => {
            tracing::warn!("grace period over: closing the requests still open");
            serve.abort();
            Ok(false)
        }
    }
}

fn join_result(result: Result<std::io::Result<()>, tokio::task::JoinError>) -> std::io::Result<()> {
    result.map_err(std::io::Error::other)?
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
