//! `floodgate-loadtest ledger`: how fast the Raft ledger commits. Starts a ledger of
//! `members` real members in this process (openraft over gRPC on loopback, sled in a temp
//! dir, every log append flushed before it counts as durable), then, for each concurrency
//! level, runs that many clients for the duration, each granting a lease and settling it at
//! once through [`LedgerClient`], exactly as edges do. Every grant and every settle is one
//! Raft write through the leader; the report gives writes per second and the latency of
//! each kind.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use floodgate_cluster::ledger::{
    Action, BudgetSpec, LeaseRequest, Metric, Scope, Settlement, Window,
};
use floodgate_cluster::{ClientConfig, Command, LedgerClient, LedgerNode, LedgerNodeConfig};
use hdrhistogram::Histogram;
use serde::Serialize;

/// The budget the benchmark draws leases from: large enough never to refuse.
const BUDGET: &str = "bench";

/// What to run.
#[derive(Debug, Clone)]
pub struct LedgerBench {
    /// Ledger members (voters).
    pub members: u64,
    /// Concurrent clients, one run per level.
    pub concurrency: Vec<usize>,
    /// Measured time per level.
    pub duration: Duration,
    /// Unmeasured time before each level.
    pub warmup: Duration,
}

/// One concurrency level's result.
#[derive(Debug, Clone, Serialize)]
pub struct LevelReport {
    /// Concurrent clients.
    pub concurrency: usize,
    /// Committed Raft writes (grants plus settles) per second.
    pub writes_per_sec: f64,
    /// Lease grant latency percentiles, microseconds: p50, p90, p99, p99.9, max.
    pub grant_us: [u64; 5],
    /// Settle latency percentiles, microseconds, likewise.
    pub settle_us: [u64; 5],
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct LedgerReport {
    /// Ledger members.
    pub members: u64,
    /// One entry per concurrency level.
    pub levels: Vec<LevelReport>,
}

impl LedgerReport {
    /// A Markdown table of the levels.
    pub fn table(&self) -> String {
        let mut out = format!(
            "ledger of {} member(s); latencies in µs (p50 / p99 / p99.9)\n\n\
             | clients | writes/s | grant p50 | grant p99 | grant p99.9 | settle p50 | settle p99 |\n\
             | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
            self.members
        );
        for level in &self.levels {
            out.push_str(&format!(
                "| {} | {:.0} | {} | {} | {} | {} | {} |\n",
                level.concurrency,
                level.writes_per_sec,
                level.grant_us[0],
                level.grant_us[2],
                level.grant_us[3],
                level.settle_us[0],
                level.settle_us[2],
            ));
        }
        out
    }
}

/// Starts the ledger, runs every level and shuts the ledger down.
pub async fn run(bench: &LedgerBench) -> anyhow::Result<LedgerReport> {
    if bench.members == 0 || bench.concurrency.contains(&0) {
        bail!("members and every concurrency level must be at least 1");
    }
    let dir = tempfile::tempdir().context("a temp dir for the ledger's data")?;
    let mut nodes = Vec::new();
    for id in 1..=bench.members {
        let config = LedgerNodeConfig::new(
            id,
            dir.path().join(format!("member-{id}")),
            "127.0.0.1:0".parse()?,
        );
        nodes.push(LedgerNode::start(config).await?);
    }
    let voters: BTreeMap<u64, String> = nodes
        .iter()
        .map(|n| (n.id(), n.addr().to_string()))
        .collect();
    nodes[0].initialize(voters).await?;
    let urls: Vec<String> = nodes
        .iter()
        .map(|n| format!("http://{}", n.addr()))
        .collect();
    let client = Arc::new(LedgerClient::new(ClientConfig::new(urls))?);
    client
        .propose(Command::PutBudget(BudgetSpec {
            id: BUDGET.into(),
            metric: Metric::Requests,
            limit: u64::MAX / 4,
            window: Window::Total,
            scope: Scope::default(),
            action: Action::Reject,
            webhook: None,
        }))
        .await?
        .outcome?;

    let mut levels = Vec::new();
    for &concurrency in &bench.concurrency {
        level(&client, concurrency, bench.warmup).await?;
        levels.push(level(&client, concurrency, bench.duration).await?);
    }
    for node in nodes {
        node.shutdown().await?;
    }
    Ok(LedgerReport {
        members: bench.members,
        levels,
    })
}

/// Runs `concurrency` clients for `duration`.
async fn level(
    client: &Arc<LedgerClient>,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<LevelReport> {
    let until = Instant::now() + duration;
    let started = Instant::now();
    let mut workers = Vec::with_capacity(concurrency);
    for worker in 0..concurrency {
        let client = Arc::clone(client);
        workers.push(tokio::spawn(async move {
            let mut grants = histogram()?;
            let mut settles = histogram()?;
            while Instant::now() < until {
                let asked = Instant::now();
                let lease = client
                    .grant_lease(LeaseRequest {
                        budget: BUDGET.into(),
                        edge_id: format!("bench-{worker}"),
                        asked: 1,
                        at_least: 1,
                        ttl_ms: 60_000,
                    })
                    .await?
                    .map_err(|refusal| anyhow::anyhow!("lease refused: {refusal:?}"))?;
                grants.saturating_record(micros(asked.elapsed()));
                let settling = Instant::now();
                client
                    .settle(vec![Settlement {
                        lease: lease.id,
                        actual: 1,
                        close: true,
                    }])
                    .await?;
                settles.saturating_record(micros(settling.elapsed()));
            }
            anyhow::Ok((grants, settles))
        }));
    }
    let mut grants = histogram()?;
    let mut settles = histogram()?;
    for worker in workers {
        let (g, s) = worker.await??;
        grants.add(&g)?;
        settles.add(&s)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let writes = grants.len() + settles.len();
    Ok(LevelReport {
        concurrency,
        writes_per_sec: writes as f64 / elapsed,
        grant_us: percentiles(&grants),
        settle_us: percentiles(&settles),
    })
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

fn percentiles(histogram: &Histogram<u64>) -> [u64; 5] {
    [
        histogram.value_at_quantile(0.5),
        histogram.value_at_quantile(0.9),
        histogram.value_at_quantile(0.99),
        histogram.value_at_quantile(0.999),
        histogram.max(),
    ]
}
