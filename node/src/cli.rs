//! The command line: `dev`, `serve`, `config check`, `version`. Parses arguments, loads
//! config (a bad one exits 64 before any port is bound), and runs the node.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{self, Config, Mode, ProcessEnv};
use crate::edge::Gateway;
use crate::http_client::HttpClients;
use crate::providers::Providers;
use crate::usage::LogSink;
use crate::{server, telemetry};

/// Exit code for a bad configuration or command line (EX_USAGE).
pub const EXIT_CONFIG: u8 = 64;

/// Capacity of the usage queue between requests and the log writer.
const USAGE_QUEUE: usize = 65_536;

/// Floodgate: a distributed LLM gateway.
#[derive(Debug, Parser)]
#[command(name = "floodgate", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a development gateway: mock endpoints, no auth, nothing else to install.
    Dev {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// Run a gateway from a config file (watched and hot-reloaded).
    Serve {
        /// The config file (Floodgate or MLflow 2.x gateway YAML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print the version.
    Version,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a config file; prints every problem and exits 64 if there is one.
    Check {
        /// The file to check.
        file: PathBuf,
    },
}

const DEV_BANNER: &str = "\
*********************************************************************************
* FLOODGATE DEVELOPMENT MODE: no authentication, built-in mock provider only.   *
* Do not expose this to a network. Use `floodgate serve --config FILE`.         *
*********************************************************************************";

impl Cli {
    /// Runs the command.
    pub fn run(self) -> ExitCode {
        match self.command {
            Command::Version => {
                println!("floodgate {}", env!("CARGO_PKG_VERSION"));
                ExitCode::SUCCESS
            }
            Command::Config {
                command: ConfigCommand::Check { file },
            } => match config::load_file(&file, Mode::Serve, &ProcessEnv) {
                Ok(config) => {
                    println!(
                        "{}: ok ({} endpoints, listen {})",
                        file.display(),
                        config.endpoints.len(),
                        config.listen
                    );
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("{}: invalid configuration\n{error}", file.display());
                    ExitCode::from(EXIT_CONFIG)
                }
            },
            Command::Dev { listen } => {
                let mut config = match config::load_str(config::DEV_CONFIG, Mode::Dev, &ProcessEnv)
                {
                    Ok(config) => config,
                    Err(error) => {
                        eprintln!("built-in dev config is invalid: {error}");
                        return ExitCode::from(EXIT_CONFIG);
                    }
                };
                config.listen = listen;
                eprintln!("{DEV_BANNER}");
                serve(config, None)
            }
            Command::Serve { config: path } => {
                match config::load_file(&path, Mode::Serve, &ProcessEnv) {
                    Ok(config) => serve(config, Some(path)),
                    Err(error) => {
                        eprintln!("{}: invalid configuration\n{error}", path.display());
                        ExitCode::from(EXIT_CONFIG)
                    }
                }
            }
        }
    }
}

/// Starts the runtime and serves until SIGINT/SIGTERM.
fn serve(config: Config, watched: Option<PathBuf>) -> ExitCode {
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
    match runtime.block_on(run_node(config, watched)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "floodgate stopped");
            ExitCode::FAILURE
        }
    }
}

/// Why the node stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The upstream HTTP clients could not be built.
    #[error("cannot build the upstream HTTP clients: {0}")]
    Client(#[from] reqwest::Error),
    /// The config watcher could not start.
    #[error(transparent)]
    Watch(#[from] config::watch::WatchError),
    /// Serving failed.
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

async fn run_node(config: Config, watched: Option<PathBuf>) -> Result<(), NodeError> {
    let tracker = TaskTracker::new();
    let stop = CancellationToken::new();
    let clients = HttpClients::with_timeouts(config.connect_timeouts())?;
    let sink = LogSink::start(USAGE_QUEUE, &tracker);
    let listen = config.listen;
    let grace = config.shutdown_grace;
    let gateway = Gateway::new(config, Providers::new(clients), Arc::new(sink));
    if let Some(path) = &watched {
        let target = gateway.clone();
        config::watch::watch(
            path,
            Mode::Serve,
            Box::new(ProcessEnv),
            stop.clone(),
            &tracker,
            move |config| {
                if config.listen != target.runtime().config.listen {
                    tracing::warn!("`listen` changed: the new address takes effect at restart");
                }
                target.apply(config);
            },
        )?;
    }
    let listener = server::bind(listen)
        .await
        .map_err(|source| NodeError::Bind {
            addr: listen,
            source,
        })?;
    let local = listener.local_addr().map_err(NodeError::Serve)?;
    tracing::info!(address = %local, version = env!("CARGO_PKG_VERSION"), "floodgate listening");
    let drained = server::run(listener, gateway.clone(), server::shutdown_signal(), grace)
        .await
        .map_err(NodeError::Serve)?;
    if let Some(quotas) = gateway.quotas() {
        // Settle and close this edge's leases so their rest returns to the budgets now.
        let open = quotas.close(grace).await;
        if open > 0 {
            tracing::warn!(
                open,
                "quota leases left open; the ledger charges them at expiry"
            );
        }
    }
    // The last handle on the usage sink: dropping it lets the usage writer finish.
    drop(gateway);
    stop.cancel();
    tracker.close();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!("background tasks did not finish within the grace period");
    }
    tracing::info!(drained, "floodgate stopped");
    Ok(())
}
