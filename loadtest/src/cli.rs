//! The command line: `upstream` starts the mock, `run` offers load and prints the report.
//! Parses and validates values, then hands over to [`crate::upstream`] and [`crate::load`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::ledger::LedgerBench;
use crate::load::{Mode, RunConfig};
use crate::spec::{Latency, Stall, parse_duration, probability};
use crate::upstream::{Upstream, UpstreamConfig};

/// `floodgate-loadtest`: the mock upstream and the load generator of Floodgate's benchmarks.
#[derive(Debug, Parser)]
#[command(name = "floodgate-loadtest", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a mock OpenAI-compatible upstream (`POST /v1/chat/completions`, `GET /__stats`).
    Upstream(UpstreamArgs),
    /// Offer load to one or more OpenAI-compatible base URLs and report latencies.
    Run(RunArgs),
    /// Measure the Raft ledger: writes per second and lease grant latency.
    Ledger(LedgerArgs),
}

/// Options of `floodgate-loadtest ledger`.
#[derive(Debug, clap::Args)]
pub struct LedgerArgs {
    /// Ledger members started in this process.
    #[arg(long, default_value_t = 3)]
    pub members: u64,
    /// Concurrent clients; one measured run per value.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub concurrency: Vec<usize>,
    /// Measured time per concurrency level.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured time before each level.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Options of `floodgate-loadtest upstream`.
#[derive(Debug, clap::Args)]
pub struct UpstreamArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18091")]
    pub listen: SocketAddr,
    /// Wait before answering: `fixed:5ms` or `uniform:1ms..10ms` (default: none).
    #[arg(long)]
    pub latency: Option<Latency>,
    /// Share of requests answered with an injected 500.
    #[arg(long, default_value = "0", value_parser = probability)]
    pub error_rate: f64,
    /// Share of requests answered with an injected 429.
    #[arg(long, default_value = "0", value_parser = probability)]
    pub throttle_rate: f64,
    /// Content chunks per stream (also the completion tokens of every response).
    #[arg(long, default_value_t = 8)]
    pub stream_chunks: u32,
    /// Pause between stream chunks.
    #[arg(long, default_value = "0ms", value_parser = parse_duration)]
    pub chunk_interval: Duration,
    /// One synthetic stall, `AT:LENGTH` counted from the first request (e.g. `5s:200ms`).
    #[arg(long)]
    pub stall_once: Option<Stall>,
}

/// Options of `floodgate-loadtest run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Base URLs, comma-separated, used round-robin (e.g. `http://127.0.0.1:8080/v1`).
    #[arg(long, value_delimiter = ',', required = true)]
    pub url: Vec<String>,
    /// Open-loop arrival rate, requests per second.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Open loop: most requests in flight at once (the connection pool).
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Closed loop at this many workers instead of the open loop.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Measured duration.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up before the measured duration (sent, not recorded).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Ask for streams with usage and record TTFT.
    #[arg(long)]
    pub stream: bool,
    /// The `model` field (the gateway endpoint).
    #[arg(long, default_value = "chat")]
    pub model: String,
    /// Per-request timeout.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl RunArgs {
    /// The run configuration these options describe.
    pub fn config(&self) -> RunConfig {
        let mode = match self.concurrency {
            Some(concurrency) => Mode::Closed { concurrency },
            None => Mode::Open {
                rate: self.rate,
                connections: self.connections,
            },
        };
        RunConfig {
            urls: self.url.clone(),
            mode,
            duration: self.duration,
            warmup: self.warmup,
            stream: self.stream,
            model: self.model.clone(),
            timeout: self.timeout,
        }
    }
}

impl UpstreamArgs {
    /// The mock's configuration these options describe.
    pub fn config(&self) -> UpstreamConfig {
        UpstreamConfig {
            latency: self.latency.unwrap_or_default(),
            error_rate: self.error_rate,
            throttle_rate: self.throttle_rate,
            stream_chunks: self.stream_chunks,
            chunk_interval: self.chunk_interval,
            stall: self.stall_once,
        }
    }
}

impl Cli {
    /// Runs the chosen subcommand to completion on a fresh multi-threaded runtime.
    pub fn run(self) -> anyhow::Result<()> {
        let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
        runtime.block_on(async move {
            match self.command {
                Command::Upstream(args) => {
                    let listener = tokio::net::TcpListener::bind(args.listen)
                        .await
                        .with_context(|| format!("binding {}", args.listen))?;
                    eprintln!(
                        "floodgate-loadtest upstream listening on {}",
                        listener.local_addr()?
                    );
                    let shutdown = async {
                        // If the signal handler cannot be installed, serve until killed.
                        if tokio::signal::ctrl_c().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    };
                    Upstream::new(args.config())
                        .serve(listener, shutdown)
                        .await
                        .context("serving the mock upstream")
                }
                Command::Run(args) => {
                    let report = crate::load::run(args.config()).await?;
                    print!("{report}");
                    write_json(args.json.as_deref(), &report)
                }
                Command::Ledger(args) => {
                    let report = crate::ledger::run(&LedgerBench {
                        members: args.members,
                        concurrency: args.concurrency.clone(),
                        duration: args.duration,
                        warmup: args.warmup,
                    })
                    .await?;
                    print!("{}", report.table());
                    write_json(args.json.as_deref(), &report)
                }
            }
        })
    }
}

/// Writes `report` as pretty JSON to `path`, when one was given.
fn write_json(path: Option<&Path>, report: &impl serde::Serialize) -> anyhow::Result<()> {
    if let Some(path) = path {
        let json = serde_json::to_vec_pretty(report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
