//! `compare`: the same load straight at the mock (the baseline) and through the gateway,
//! interleaved in alternating slices (direct, gateway, direct, ...) so drift in the machine
//! (other processes, CPU frequency, caches) falls on both sides alike. Each side's slices
//! are merged into one histogram; the report gives the added latency at p50/p90/p99/p99.9
//! (gateway percentile minus direct percentile) and the ratio of throughputs.

use std::fmt;
use std::time::Duration;

use anyhow::bail;
use serde::{Deserialize, Serialize};

use crate::load::{RunConfig, Tally, execute};
use crate::report::Report;

/// A comparison.
#[derive(Debug, Clone)]
pub struct CompareConfig {
    /// The load of each side (its `urls` are replaced; `duration` is per side, split into
    /// the slices; the warm-up runs once per side before the first slice).
    pub load: RunConfig,
    /// Base URL of the mock (direct).
    pub direct: String,
    /// Base URL of the gateway in front of the same mock.
    pub gateway: String,
    /// Slices per side.
    pub slices: u32,
}

/// Added latency, microseconds (gateway minus direct; may be negative within noise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Added {
    /// At the median.
    pub p50_us: i64,
    /// At p90.
    pub p90_us: i64,
    /// At p99.
    pub p99_us: i64,
    /// At p99.9.
    pub p999_us: i64,
}

/// The comparison's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareReport {
    /// Slices per side.
    pub slices: u32,
    /// The baseline, all slices merged.
    pub direct: Report,
    /// Through the gateway, all slices merged.
    pub gateway: Report,
    /// Added latency from the intended send time.
    pub added_latency: Added,
    /// Added TTFT, when the load streams.
    pub added_ttft: Option<Added>,
    /// Gateway throughput over direct throughput.
    pub throughput_ratio: f64,
}

fn diff(a: u64, b: u64) -> i64 {
    i64::try_from(a).unwrap_or(i64::MAX) - i64::try_from(b).unwrap_or(i64::MAX)
}

fn added(gateway: &crate::report::Summary, direct: &crate::report::Summary) -> Added {
    Added {
        p50_us: diff(gateway.p50_us, direct.p50_us),
        p90_us: diff(gateway.p90_us, direct.p90_us),
        p99_us: diff(gateway.p99_us, direct.p99_us),
        p999_us: diff(gateway.p999_us, direct.p999_us),
    }
}

/// Runs the comparison.
pub async fn run(config: CompareConfig) -> anyhow::Result<CompareReport> {
    if config.slices == 0 {
        bail!("--slices must be at least 1");
    }
    let slice = config.load.duration / config.slices;
    if slice.is_zero() {
        bail!("--duration is too short for {} slices", config.slices);
    }
    let side = |url: &str, first: bool| {
        RunConfig {
            urls: vec![url.to_owned()],
            duration: slice,
            warmup: if first {
                config.load.warmup
            } else {
                Duration::ZERO
            },
            ..config.load.clone()
        }
        .validate()
    };
    let (mut direct, mut gateway) = (Tally::new(), Tally::new());
    let (mut direct_time, mut gateway_time) = (Duration::ZERO, Duration::ZERO);
    for i in 0..config.slices {
        let (tally, elapsed) = execute(&side(&config.direct, i == 0)?).await?;
        direct.merge(tally);
        direct_time += elapsed.max(slice);
        let (tally, elapsed) = execute(&side(&config.gateway, i == 0)?).await?;
        gateway.merge(tally);
        gateway_time += elapsed.max(slice);
    }
    let whole = |url: &str| RunConfig {
        urls: vec![url.to_owned()],
        duration: slice * config.slices,
        ..config.load.clone()
    };
    let direct = Report::new(&whole(&config.direct), &direct, direct_time);
    let gateway = Report::new(&whole(&config.gateway), &gateway, gateway_time);
    let added_ttft = match (&gateway.ttft, &direct.ttft) {
        (Some(g), Some(d)) => Some(added(g, d)),
        _ => None,
    };
    Ok(CompareReport {
        slices: config.slices,
        added_latency: added(&gateway.latency, &direct.latency),
        added_ttft,
        throughput_ratio: if direct.throughput_rps > 0.0 {
            gateway.throughput_rps / direct.throughput_rps
        } else {
            0.0
        },
        direct,
        gateway,
    })
}

fn us(v: i64) -> String {
    format!("{v} µs")
}

fn added_row(f: &mut fmt::Formatter<'_>, name: &str, a: &Added) -> fmt::Result {
    writeln!(
        f,
        "| {name} | {} | {} | {} | {} |",
        us(a.p50_us),
        us(a.p90_us),
        us(a.p99_us),
        us(a.p999_us)
    )
}

impl fmt::Display for CompareReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "direct (baseline), {} slices merged:", self.slices)?;
        write!(f, "{}", self.direct)?;
        writeln!(f)?;
        writeln!(f, "through the gateway, {} slices merged:", self.slices)?;
        write!(f, "{}", self.gateway)?;
        writeln!(f)?;
        writeln!(f, "| added by the gateway | p50 | p90 | p99 | p99.9 |")?;
        writeln!(f, "| --- | --- | --- | --- | --- |")?;
        added_row(f, "latency", &self.added_latency)?;
        if let Some(ttft) = &self.added_ttft {
            added_row(f, "TTFT", ttft)?;
        }
        writeln!(
            f,
            "\nthroughput ratio (gateway / direct): {:.3}",
            self.throughput_ratio
        )
    }
}
