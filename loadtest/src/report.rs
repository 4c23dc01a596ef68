//! The end-of-run report: percentiles of the latency (from the intended send time), of the
//! naive service time and of TTFT, throughput and errors; printed as a table for people and
//! written as JSON for scripts. Pure formatting, no I/O besides the writer it is given.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::check::ClientCounts;
use crate::load::{Mode, RunConfig, Tally};

/// Percentiles of one histogram, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Recorded values.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest value.
    pub max_us: u64,
    /// Mean.
    pub mean_us: f64,
}

impl Summary {
    pub(crate) fn of(h: &Histogram<u64>) -> Summary {
        Summary {
            count: h.len(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            mean_us: h.mean(),
        }
    }
}

/// The result of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `open` or `closed`.
    pub mode: String,
    /// Target arrival rate (open loop).
    pub target_rate: Option<f64>,
    /// Workers (open loop: connections; closed loop: concurrency).
    pub workers: usize,
    /// Whether requests asked for streams.
    pub stream: bool,
    /// Measured duration asked for, seconds.
    pub duration_s: f64,
    /// Measured window actually spanned, to the last completion, seconds.
    pub elapsed_s: f64,
    /// Recorded requests (ok + errors).
    pub requests: u64,
    /// Successful (2xx) requests.
    pub ok: u64,
    /// Non-2xx responses by status.
    pub status_errors: BTreeMap<u16, u64>,
    /// Connection errors, timeouts and broken bodies.
    pub transport_errors: u64,
    /// Successful requests per second over the measured window.
    pub throughput_rps: f64,
    /// Latency from the intended send time (coordinated-omission correct), successes only.
    pub latency: Summary,
    /// Naive service time (from the actual send), for comparison.
    pub service_time: Summary,
    /// Time to first byte of the body from the intended send time (streams only).
    pub ttft: Option<Summary>,
    /// Every request's outcome, warm-up included (what the invariant checks compare).
    pub sent: ClientCounts,
    /// Non-2xx answers by error code (`budget_exceeded`, `rate_limit_exceeded`, ...),
    /// warm-up included.
    #[serde(default)]
    pub error_codes: BTreeMap<String, u64>,
}

impl Report {
    pub(crate) fn new(config: &RunConfig, tally: &Tally, elapsed: Duration) -> Report {
        let (mode, target_rate, workers) = match config.mode {
            Mode::Open { rate, connections } => ("open", Some(rate), connections),
            Mode::Closed { concurrency } => ("closed", None, concurrency),
        };
        let errors: u64 = tally.status_errors.values().sum::<u64>() + tally.transport_errors;
        let elapsed_s = elapsed.as_secs_f64().max(config.duration.as_secs_f64());
        Report {
            mode: mode.to_owned(),
            target_rate,
            workers,
            stream: config.scenario.streams(),
            duration_s: config.duration.as_secs_f64(),
            elapsed_s,
            requests: tally.ok + errors,
            ok: tally.ok,
            status_errors: tally.status_errors.clone(),
            transport_errors: tally.transport_errors,
            throughput_rps: tally.ok as f64 / elapsed_s,
            latency: Summary::of(&tally.latency),
            service_time: Summary::of(&tally.service),
            ttft: config.scenario.streams().then(|| Summary::of(&tally.ttft)),
            sent: tally.sent,
            error_codes: tally.error_codes.clone(),
        }
    }

    /// Errors of any kind.
    pub fn errors(&self) -> u64 {
        self.requests - self.ok
    }
}

fn ms(us: u64) -> String {
    format!("{:.3} ms", us as f64 / 1000.0)
}

fn row(f: &mut fmt::Formatter<'_>, name: &str, s: &Summary) -> fmt::Result {
    writeln!(
        f,
        "| {name} | {} | {} | {} | {} | {} |",
        ms(s.p50_us),
        ms(s.p90_us),
        ms(s.p99_us),
        ms(s.p999_us),
        ms(s.max_us)
    )
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.target_rate {
            Some(rate) => writeln!(
                f,
                "open loop at {rate} req/s over {} connections, {:.1} s measured{}",
                self.workers,
                self.duration_s,
                if self.stream { ", streaming" } else { "" }
            )?,
            None => writeln!(
                f,
                "closed loop at concurrency {}, {:.1} s measured{}",
                self.workers,
                self.duration_s,
                if self.stream { ", streaming" } else { "" }
            )?,
        }
        writeln!(f)?;
        writeln!(f, "| measure | p50 | p90 | p99 | p99.9 | max |")?;
        writeln!(f, "| --- | --- | --- | --- | --- | --- |")?;
        row(f, "latency (from intended send)", &self.latency)?;
        row(f, "service time (naive)", &self.service_time)?;
        if let Some(ttft) = &self.ttft {
            row(f, "TTFT (from intended send)", ttft)?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "requests {}  ok {}  errors {}  throughput {:.1} req/s",
            self.requests,
            self.ok,
            self.errors(),
            self.throughput_rps
        )?;
        for (status, n) in &self.status_errors {
            writeln!(f, "  HTTP {status}: {n}")?;
        }
        for (code, n) in &self.error_codes {
            writeln!(f, "  code {code}: {n} (warm-up included)")?;
        }
        if self.transport_errors > 0 {
            writeln!(f, "  transport errors: {}", self.transport_errors)?;
        }
        Ok(())
    }
}
