//! The projector role (`floodgate serve --roles projector`): opens the projection store in
//! `--data-dir` and serves the usage query API (gRPC `UsageService` and JSON) until
//! SIGINT/SIGTERM.
//!
//! No event source is wired here yet: the JetStream and local-log sources live in
//! `floodgate-events`; once one exists, [`serve`] hands it to
//! [`Projector::start_loop`](floodgate_projector::Projector::start_loop). Until then the
//! role answers queries over whatever the store holds (a rebuilt or copied projection).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use floodgate_projector::{Projector, ProjectorSettings};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cli::EXIT_CONFIG;
use crate::{server, telemetry};

/// How long the query servers get to finish after a stop signal.
const GRACE: Duration = Duration::from_secs(10);

/// Where the projector keeps its store and serves.
#[derive(Debug, Clone)]
pub struct ProjectorRole {
    /// The store's directory.
    pub data_dir: PathBuf,
    /// gRPC `UsageService` address.
    pub grpc_listen: SocketAddr,
    /// JSON API address.
    pub http_listen: SocketAddr,
}

/// Runs the projector role until SIGINT/SIGTERM.
pub fn serve(role: ProjectorRole) -> ExitCode {
    let mut settings = ProjectorSettings::new(role.data_dir);
    settings.grpc_listen = role.grpc_listen;
    settings.http_listen = role.http_listen;
    let settings = match settings.validate() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let _log_guard = telemetry::init(telemetry::LogFormat::from_env());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "the projector stopped");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: ProjectorSettings) -> Result<(), floodgate_projector::StartError> {
    let projector = Projector::open(settings)?;
    let (stop, tracker) = (CancellationToken::new(), TaskTracker::new());
    projector.serve_queries(&stop, &tracker).await?;
    tracing::warn!(
        "no event source is wired to this projector yet: serving the stored projection only"
    );
    server::shutdown_signal().await;
    stop.cancel();
    tracker.close();
    if tokio::time::timeout(GRACE, tracker.wait()).await.is_err() {
        tracing::warn!("the query servers did not stop within the grace period");
    }
    if let Err(error) = projector.projection().flush().await {
        tracing::error!(%error, "the projection store did not flush");
    }
    tracing::info!("projector stopped");
    Ok(())
}
