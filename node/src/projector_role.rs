//! The projector role: opens the projection store, serves the usage query API (gRPC
//! `UsageService` and JSON) and folds the event log into it.
//!
//! * `floodgate serve --roles projector --config FILE --data-dir D`: its own process,
//!   reading the JetStream stream named by the file's `events.nats` through the durable
//!   consumer [`DURABLE`] (started, or resumed, once NATS answers).
//! * `floodgate dev`: in the edge's process, reading the local event log the edge writes
//!   ([`start`] with [`Feed::Local`]).
//! * `floodgate projector rebuild --config FILE --data-dir D`: replays the whole stream into
//!   an empty store ([`rebuild`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use floodgate_events::jetstream::JetStreamSource;
use floodgate_events::local::LocalLog;
use floodgate_events::stream;
use floodgate_projector::{Listening, Projector, ProjectorSettings};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cli::EXIT_CONFIG;
use crate::config::events::NatsEvents;
use crate::{server, telemetry};

/// The durable JetStream consumer projectors read through (one reader per name: give
/// replicas their own with `--consumer`).
pub const DURABLE: &str = "floodgate-projector";
/// The longest pause between attempts to open the JetStream consumer.
const OPEN_RETRY_MAX: Duration = Duration::from_secs(5);

/// Where a projector's events come from.
#[derive(Debug, Clone)]
pub enum Feed {
    /// The local event log of this process (`floodgate dev`).
    Local(LocalLog),
    /// The JetStream stream, through the durable consumer named here.
    Nats {
        /// The stream settings and server URLs.
        nats: NatsEvents,
        /// The durable consumer's name.
        consumer: String,
    },
}

/// Opens the projection, serves its query API and starts folding `feed` into it, on
/// `tracker`, until `stop`; the projector and where its query API listens. JetStream is
/// opened in the background, retried until NATS answers, so the query API serves from the
/// start.
pub async fn start(
    settings: ProjectorSettings,
    feed: Feed,
    stop: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<(Projector, Listening), floodgate_projector::StartError> {
    let projector = Projector::open(settings)?;
    let listening = projector.serve_queries(stop, tracker).await?;
    match feed {
        Feed::Local(log) => match log.source("projector") {
            Ok(source) => projector.start_loop(source, stop, tracker),
            Err(error) => tracing::error!(%error, "the local event log cannot be read"),
        },
        Feed::Nats { nats, consumer } => {
            let (projector, stop, loops) = (projector.clone(), stop.clone(), tracker.clone());
            tracker.spawn(async move {
                tokio::select! {
                    () = stop.cancelled() => {}
                    source = open_jetstream(&nats, &consumer) => {
                        projector.start_loop(source, &stop, &loops);
                    }
                }
            });
        }
    }
    Ok((projector, listening))
}

/// The durable consumer, once NATS and the stream answer (retried with backoff).
async fn open_jetstream(nats: &NatsEvents, consumer: &str) -> JetStreamSource {
    let mut pause = Duration::from_millis(100);
    loop {
        let opened = async {
            let client = stream::connect_lazily(&nats.urls)
                .await
                .map_err(|e| e.to_string())?;
            let js = async_nats::jetstream::new(client);
            JetStreamSource::open(&js, consumer, "*")
                .await
                .map_err(|e| e.to_string())
        };
        match opened.await {
            Ok(source) => {
                tracing::info!(consumer, "projector reading the usage event stream");
                return source;
            }
            Err(error) => {
                tracing::warn!(%error, "the usage event stream is not readable yet; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(OPEN_RETRY_MAX);
            }
        }
    }
}

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
    /// The events to fold.
    pub feed: Feed,
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
    match runtime.block_on(run(settings, role.feed)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "the projector stopped");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    settings: ProjectorSettings,
    feed: Feed,
) -> Result<(), floodgate_projector::StartError> {
    let (stop, tracker) = (CancellationToken::new(), TaskTracker::new());
    let (projector, _) = start(settings, feed, &stop, &tracker).await?;
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

/// `floodgate projector rebuild`: replays the stream of `nats` from its start through the
/// durable consumer `consumer` (recreated) into the empty store at `data_dir`.
pub fn rebuild(nats: &NatsEvents, data_dir: &std::path::Path, consumer: &str) -> ExitCode {
    let _log_guard = telemetry::init(telemetry::LogFormat::from_env());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let replayed = runtime.block_on(async {
        let client = stream::connect(&nats.urls, OPEN_RETRY_MAX)
            .await
            .map_err(|e| e.to_string())?;
        let js = async_nats::jetstream::new(client);
        let source = JetStreamSource::fresh(&js, consumer, "*")
            .await
            .map_err(|e| e.to_string())?;
        floodgate_projector::rebuild(source, data_dir, ProjectorSettings::new(data_dir).fetch)
            .await
            .map_err(|e| e.to_string())
    });
    match replayed {
        Ok(rebuilt) => {
            println!(
                "rebuilt {}: {} events folded, {} duplicates skipped, {} undecodable, position {}",
                data_dir.display(),
                rebuilt.folded,
                rebuilt.skipped,
                rebuilt.undecodable,
                rebuilt.position
            );
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("rebuild failed: {message}");
            ExitCode::FAILURE
        }
    }
}
