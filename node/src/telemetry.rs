//! Logging: `tracing` to stdout through a non-blocking writer (a request never waits on the
//! terminal), human-readable by default, JSON when `FLOODGATE_LOG_FORMAT=json`; the level
//! from `RUST_LOG` (default `info`).

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// From `FLOODGATE_LOG_FORMAT` (`json` or anything else).
    pub fn from_env() -> Self {
        match std::env::var("FLOODGATE_LOG_FORMAT").as_deref() {
            Ok("json") => Self::Json,
            _ => Self::Text,
        }
    }
}

/// `filter` with the targets that would log secrets turned off, whatever `RUST_LOG` says
/// (a directive for the same target replaces the user's): AWS's SigV4 signer traces the
/// canonical request, session token included.
pub fn quiet_secrets(mut filter: EnvFilter) -> EnvFilter {
    if let Ok(directive) = "aws_sigv4=off".parse() {
        filter = filter.add_directive(directive);
    }
    filter
}

/// Installs the global subscriber. Keep the guard alive until exit: dropping it flushes.
pub fn init(format: LogFormat) -> WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stdout());
    let filter =
        quiet_secrets(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_target(true);
    let installed = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    if installed.is_err() {
        eprintln!("floodgate: a tracing subscriber was already installed");
    }
    guard
}
