//! The command line: `upstream` starts the mock, `run` offers load and prints the report
//! (with `--check`, the invariant checks; with `--pid`/`--process-name`, resources),
//! `compare` and `frontier` are the two measuring modes, `ledger` the ledger benchmark.
//! Parses and validates values and glues the library modules together (the books are read
//! before and after a checked run here); the logic lives in the modules.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use std::fmt;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::books;
use crate::check::{self, Books, BudgetBook, CheckOutcome, ProjectorTotals, RunBudget};
use crate::compare::CompareConfig;
use crate::frontier::FrontierConfig;
use crate::report::Report;
use crate::resources::{self, ResourceReport, Sampler};

use crate::ledger::LedgerBench;
use crate::load::{Mode, RunConfig};
use crate::scenario::Scenario;
use crate::spec::{Latency, Stall, parse_duration, probability};
use crate::upstream::{Price, StatsSnapshot, Upstream, UpstreamConfig};

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
    /// Serve the mock upstream (OpenAI chat, completions, embeddings; Anthropic messages;
    /// `GET /__stats`).
    Upstream(UpstreamArgs),
    /// Offer load to one or more base URLs and report latencies (and, with `--check`,
    /// whether the books balance).
    Run(RunArgs),
    /// The same load straight at the mock and through the gateway, interleaved: the added
    /// latency and the throughput ratio.
    Compare(CompareArgs),
    /// Step the open-loop rate up until p99 passes a bound or errors pass 1%.
    Frontier(FrontierArgs),
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
    /// Wait before answering: `fixed:5ms`, `uniform:1ms..10ms` or `lognormal:MEDIAN,SIGMA`
    /// (e.g. `lognormal:2ms,0.5`) (default: none).
    #[arg(long)]
    pub latency: Option<Latency>,
    /// Share of requests answered with an injected 500.
    #[arg(long, default_value = "0", value_parser = probability)]
    pub error_rate: f64,
    /// Share of requests answered with an injected 429.
    #[arg(long, default_value = "0", value_parser = probability)]
    pub throttle_rate: f64,
    /// Completion tokens of an answer to a request without `max_tokens`, and the most any
    /// answer has (a request's `max_tokens` lowers it); a stream sends one content chunk
    /// per token. Prompt tokens are a quarter of the request's prompt text in bytes.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub completion_tokens: u32,
    /// Pause between stream chunks.
    #[arg(long, default_value = "0ms", value_parser = parse_duration)]
    pub chunk_interval: Duration,
    /// One synthetic stall, `AT:LENGTH` counted from the first request (e.g. `5s:200ms`).
    #[arg(long)]
    pub stall_once: Option<Stall>,
    /// Price of input tokens in the books, USD per million tokens.
    #[arg(long, default_value_t = 0.0)]
    pub price_input: f64,
    /// Price of output tokens in the books, USD per million tokens.
    #[arg(long, default_value_t = 0.0)]
    pub price_output: f64,
    /// Most requests served at once; later ones queue (default: unlimited).
    #[arg(long)]
    pub max_concurrency: Option<usize>,
}

/// What each request is: the mix, and how long to wait for an answer.
#[derive(Debug, clap::Args)]
pub struct MixArgs {
    /// Ask for streams with usage and record TTFT (ignored with `--scenario`).
    #[arg(long)]
    pub stream: bool,
    /// The `model` field (the gateway endpoint; ignored with `--scenario`).
    #[arg(long, default_value = "chat")]
    pub model: String,
    /// A scenario file (YAML, or JSON if it ends in `.json`): the mix of requests.
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// Per-request timeout.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
}

impl MixArgs {
    fn scenario(&self) -> anyhow::Result<Arc<Scenario>> {
        Ok(Arc::new(match &self.scenario {
            Some(path) => Scenario::load(path)?,
            None => Scenario::single(&self.model, self.stream),
        }))
    }
}

/// How load is offered.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
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
    /// The requests.
    #[command(flatten)]
    pub mix: MixArgs,
}

impl LoadArgs {
    /// The run configuration these options describe against `urls` (reads the scenario
    /// file, if any).
    pub fn config(&self, urls: Vec<String>) -> anyhow::Result<RunConfig> {
        let mode = match self.concurrency {
            Some(concurrency) => Mode::Closed { concurrency },
            None => Mode::Open {
                rate: self.rate,
                connections: self.connections,
            },
        };
        Ok(RunConfig {
            urls,
            mode,
            duration: self.duration,
            warmup: self.warmup,
            scenario: self.mix.scenario()?,
            timeout: self.mix.timeout,
        })
    }
}

/// Invariant checks after a run (`--check`).
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// After the run, check that the books balance against the mock's `/__stats`; a failed
    /// invariant fails the run.
    #[arg(long, requires = "mock")]
    pub check: bool,
    /// The mock upstream's root URL (for `GET /__stats`), e.g. `http://127.0.0.1:18091`.
    #[arg(long)]
    pub mock: Option<String>,
    /// Also check the projector's totals (`GET /usage/v1/usage`) at this root URL.
    #[arg(long, requires = "check")]
    pub projector: Option<String>,
    /// Also check that no budget was exceeded (`GET /admin/v1/status`) at this root URL.
    #[arg(long, requires = "check")]
    pub ledger_admin: Option<String>,
    /// A budget every request of the run counts against, and nothing else meanwhile, in a
    /// window the run does not cross (e.g. `total`): checks that what the mock served, in
    /// the budget's unit, stayed within its limit (zero overspend) and that the ledger
    /// settled exactly that.
    #[arg(long, requires = "ledger_admin")]
    pub budget: Option<String>,
    /// How long to wait for the projector to fold the run's events.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub check_wait: Duration,
}

/// Which process to sample for RSS and CPU during the load.
#[derive(Debug, clap::Args)]
pub struct ResourceArgs {
    /// Sample this process (the gateway).
    #[arg(long, conflicts_with = "process_name")]
    pub pid: Option<u32>,
    /// Sample the one process with this name (e.g. `floodgate`).
    #[arg(long)]
    pub process_name: Option<String>,
}

impl ResourceArgs {
    fn start(&self) -> anyhow::Result<Option<Sampler>> {
        let pid = match (&self.pid, &self.process_name) {
            (Some(pid), _) => *pid,
            (None, Some(name)) => resources::find_pid(name)?,
            (None, None) => return Ok(None),
        };
        Ok(Some(Sampler::start(pid, resources::PERIOD)?))
    }
}

/// Options of `floodgate-loadtest run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Base URLs, comma-separated, used round-robin (e.g. `http://127.0.0.1:8080/v1`).
    #[arg(long, value_delimiter = ',', required = true)]
    pub url: Vec<String>,
    /// The load.
    #[command(flatten)]
    pub load: LoadArgs,
    /// Invariant checks.
    #[command(flatten)]
    pub checks: CheckArgs,
    /// Resource sampling.
    #[command(flatten)]
    pub resources: ResourceArgs,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Options of `floodgate-loadtest compare`.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// Base URL of the mock, for the baseline (e.g. `http://127.0.0.1:18091/v1`).
    #[arg(long)]
    pub direct: String,
    /// Base URL of the gateway in front of the same mock.
    #[arg(long)]
    pub gateway: String,
    /// Alternating slices per side (`--duration` is per side, split into them).
    #[arg(long, default_value_t = 10)]
    pub slices: u32,
    /// The load of each side.
    #[command(flatten)]
    pub load: LoadArgs,
    /// Resource sampling.
    #[command(flatten)]
    pub resources: ResourceArgs,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Options of `floodgate-loadtest frontier`.
#[derive(Debug, clap::Args)]
pub struct FrontierArgs {
    /// Base URL of the target (e.g. `http://127.0.0.1:8080/v1`).
    #[arg(long)]
    pub url: String,
    /// The first step's rate, requests per second.
    #[arg(long, default_value_t = 500.0)]
    pub start_rate: f64,
    /// Each step's rate over the previous one.
    #[arg(long, default_value_t = 1.5)]
    pub factor: f64,
    /// The highest rate offered.
    #[arg(long, default_value_t = 1_000_000.0)]
    pub max_rate: f64,
    /// Measured time per step.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub step: Duration,
    /// Unmeasured time before each step.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// A step holds while its p99 is at most this.
    #[arg(long, default_value = "50ms", value_parser = parse_duration)]
    pub p99_bound: Duration,
    /// Open-loop connections.
    #[arg(long, default_value_t = 256)]
    pub connections: usize,
    /// The requests.
    #[command(flatten)]
    pub mix: MixArgs,
    /// Resource sampling.
    #[command(flatten)]
    pub resources: ResourceArgs,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// A report with what was measured beside it, as printed and written.
#[derive(Debug, Serialize)]
struct Output<T: Serialize> {
    #[serde(flatten)]
    report: T,
    #[serde(skip_serializing_if = "Option::is_none")]
    resources: Option<ResourceReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    checks: Option<CheckOutcome>,
}

impl<T: Serialize + fmt::Display> Output<T> {
    /// Prints the tables, writes the JSON, and fails if an invariant failed.
    fn finish(self, json: Option<&Path>) -> anyhow::Result<()> {
        print!("{}", self.report);
        if let Some(r) = &self.resources {
            println!(
                "\nprocess {}: peak RSS {:.1} MiB, RSS {:.1} → {:.1} MiB ({:+.1} MiB), \
                 CPU {:.2} s over {:.1} s ({:.0}% of a core), {} samples",
                r.pid,
                r.peak_rss_kib as f64 / 1024.0,
                r.first_rss_kib as f64 / 1024.0,
                r.last_rss_kib as f64 / 1024.0,
                r.rss_growth_kib as f64 / 1024.0,
                r.cpu_seconds,
                r.wall_seconds,
                r.cpu_percent,
                r.samples
            );
        }
        if let Some(checks) = &self.checks {
            print!("\n{checks}");
        }
        write_json(json, &self)?;
        match &self.checks {
            Some(checks) if !checks.passed() => {
                let failed: Vec<&str> = checks
                    .violations
                    .iter()
                    .map(|v| v.invariant.as_str())
                    .collect();
                bail!("the books do not balance: {}", failed.join(", "))
            }
            _ => Ok(()),
        }
    }
}

async fn stop(sampler: Option<Sampler>) -> Option<ResourceReport> {
    match sampler {
        Some(sampler) => sampler.stop().await,
        None => None,
    }
}

/// The books before a checked run, to compare their growth with.
struct Before {
    client: reqwest::Client,
    mock: StatsSnapshot,
    /// The projector's range (Unix seconds) and its totals before the run.
    projector: Option<(i64, i64, ProjectorTotals)>,
    /// What the run's budget had settled before the run.
    budget_settled: Option<u64>,
}

/// Budget `id` among `budgets`, or an error naming the ones there are.
fn find_budget(budgets: Vec<BudgetBook>, id: &str) -> anyhow::Result<BudgetBook> {
    let known: Vec<String> = budgets.iter().map(|b| b.id.clone()).collect();
    budgets
        .into_iter()
        .find(|b| b.id == id)
        .with_context(|| format!("--budget {id}: the ledger has no such budget (it has {known:?})"))
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Before {
    async fn take(args: &CheckArgs, run: &RunConfig) -> anyhow::Result<Option<Before>> {
        let Some(mock) = args.mock.as_deref().filter(|_| args.check) else {
            return Ok(None);
        };
        let client = books::client()?;
        let stats = books::mock_stats(&client, mock).await?;
        let projector = match &args.projector {
            Some(url) => {
                // From a minute before to two after the run: the projector widens to whole
                // minutes, and the growth over the same range is what the run added.
                let from = unix_now() - 60;
                let length = i64::try_from((run.warmup + run.duration).as_secs()).unwrap_or(0);
                let to = from + 60 + length + 120;
                Some((
                    from,
                    to,
                    books::projector_totals(&client, url, from, to).await?,
                ))
            }
            None => None,
        };
        let budget_settled = match (&args.ledger_admin, &args.budget) {
            (Some(url), Some(id)) => {
                Some(find_budget(books::budgets(&client, url).await?, id)?.settled)
            }
            _ => None,
        };
        Ok(Some(Before {
            client,
            mock: stats,
            projector,
            budget_settled,
        }))
    }

    async fn check(self, args: &CheckArgs, report: &Report) -> anyhow::Result<CheckOutcome> {
        let mock_url = args.mock.as_deref().unwrap_or_default();
        let now = books::mock_stats(&self.client, mock_url).await?;
        let mock = books::growth(&self.mock, &now);
        let projector = match (&args.projector, self.projector) {
            (Some(url), Some((from, to, before))) => {
                // The projector folds asynchronously: poll until it has at least what the
                // mock served and two readings agree, or the deadline passes.
                let deadline = tokio::time::Instant::now() + args.check_wait;
                let mut last = None;
                loop {
                    let now = books::projector_totals(&self.client, url, from, to).await?;
                    let grown = books::projector_growth(&before, &now);
                    let settled = last == Some(grown)
                        && grown.requests.saturating_sub(grown.errors) >= mock.completed;
                    if settled || tokio::time::Instant::now() >= deadline {
                        break Some(grown);
                    }
                    last = Some(grown);
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
            _ => None,
        };
        let budget = match (&args.ledger_admin, &args.budget, self.budget_settled) {
            (Some(url), Some(id), Some(before)) => {
                // Edges send their charges in batches: poll until the ledger settled what
                // the mock served and two readings agree, or the deadline passes.
                let deadline = tokio::time::Instant::now() + args.check_wait;
                let mut last = None;
                loop {
                    let after = find_budget(books::budgets(&self.client, url).await?, id)?;
                    let run = RunBudget {
                        after,
                        settled_before: before,
                    };
                    let caught_up = run
                        .truth(&mock)
                        .is_some_and(|truth| run.after.settled.saturating_sub(before) >= truth);
                    let settled = last.as_ref() == Some(&run) && caught_up;
                    if settled || tokio::time::Instant::now() >= deadline {
                        break Some(run);
                    }
                    last = Some(run);
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
            _ => None,
        };
        let budgets = match &args.ledger_admin {
            Some(url) => Some(books::budgets(&self.client, url).await?),
            None => None,
        };
        Ok(check::check(&Books {
            mock,
            client: report.sent,
            projector,
            budgets,
            budget,
        }))
    }
}

impl UpstreamArgs {
    /// The mock's configuration these options describe.
    pub fn config(&self) -> UpstreamConfig {
        UpstreamConfig {
            latency: self.latency.unwrap_or_default(),
            error_rate: self.error_rate,
            throttle_rate: self.throttle_rate,
            completion_tokens: self.completion_tokens,
            chunk_interval: self.chunk_interval,
            stall: self.stall_once,
            price: Price {
                input_usd_per_mtok: self.price_input,
                output_usd_per_mtok: self.price_output,
            },
            max_concurrency: self.max_concurrency,
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
                    let config = args.load.config(args.url.clone())?;
                    let before = Before::take(&args.checks, &config).await?;
                    let sampler = args.resources.start()?;
                    let report = crate::load::run(config).await?;
                    let resources = stop(sampler).await;
                    let checks = match before {
                        Some(before) => Some(before.check(&args.checks, &report).await?),
                        None => None,
                    };
                    Output {
                        report,
                        resources,
                        checks,
                    }
                    .finish(args.json.as_deref())
                }
                Command::Compare(args) => {
                    let config = CompareConfig {
                        load: args.load.config(vec![args.gateway.clone()])?,
                        direct: args.direct.clone(),
                        gateway: args.gateway.clone(),
                        slices: args.slices,
                    };
                    let sampler = args.resources.start()?;
                    let report = crate::compare::run(config).await?;
                    Output {
                        report,
                        resources: stop(sampler).await,
                        checks: None,
                    }
                    .finish(args.json.as_deref())
                }
                Command::Frontier(args) => {
                    let config = FrontierConfig {
                        load: RunConfig {
                            urls: vec![args.url.clone()],
                            mode: Mode::Open {
                                rate: args.start_rate,
                                connections: args.connections,
                            },
                            duration: args.step,
                            warmup: args.warmup,
                            scenario: args.mix.scenario()?,
                            timeout: args.mix.timeout,
                        },
                        start_rate: args.start_rate,
                        factor: args.factor,
                        max_rate: args.max_rate,
                        connections: args.connections,
                        p99_bound: args.p99_bound,
                    };
                    let sampler = args.resources.start()?;
                    let report = crate::frontier::search(config).await?;
                    Output {
                        report,
                        resources: stop(sampler).await,
                        checks: None,
                    }
                    .finish(args.json.as_deref())
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
