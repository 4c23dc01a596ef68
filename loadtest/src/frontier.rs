//! `frontier`: how much load the target takes. Steps the open-loop arrival rate up
//! geometrically (`start`, `start·factor`, ...), one short run per step, until a step's p99
//! (from the intended send time, so queueing counts) passes the bound or its errors pass
//! 1%; reports the highest rate that held and, for p99 bounds of 1, 5 and 50 ms, the highest
//! rate whose p99 stayed within each. The search stops at the first failing step:
//! beyond saturation, the latency only grows.

use std::fmt;
use std::time::Duration;

use anyhow::bail;
use serde::{Deserialize, Serialize};

use crate::load::{Mode, RunConfig, run};

/// The p99 bounds the report always answers for, microseconds.
pub const THRESHOLDS_US: [u64; 3] = [1_000, 5_000, 50_000];

/// Largest error share of a step that still holds.
pub const MAX_ERROR_SHARE: f64 = 0.01;

/// A frontier search.
#[derive(Debug, Clone)]
pub struct FrontierConfig {
    /// The load of each step (its mode is replaced by the step's open loop; `duration` and
    /// `warmup` are per step).
    pub load: RunConfig,
    /// The first rate, requests per second.
    pub start_rate: f64,
    /// Each step's rate over the previous one (> 1).
    pub factor: f64,
    /// Never offer more than this.
    pub max_rate: f64,
    /// Open-loop connections.
    pub connections: usize,
    /// A step holds while its p99 is at most this.
    pub p99_bound: Duration,
}

/// One step's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Offered rate, requests per second.
    pub rate: f64,
    /// Achieved successful requests per second.
    pub throughput_rps: f64,
    /// p99 from the intended send time, µs.
    pub p99_us: u64,
    /// Errors over requests.
    pub error_share: f64,
    /// Whether the step held (p99 within the bound, errors ≤ 1%).
    pub held: bool,
}

/// The highest rate that held within one p99 bound.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    /// The p99 bound, µs.
    pub p99_bound_us: u64,
    /// The highest stepped rate with p99 within it and errors ≤ 1% (none if even the first
    /// step missed it).
    pub rate: Option<f64>,
}

/// The search's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrontierReport {
    /// The bound that ended the search, µs.
    pub p99_bound_us: u64,
    /// Every step run, in order.
    pub steps: Vec<Step>,
    /// The highest rate that held.
    pub highest_held_rate: Option<f64>,
    /// Throughput at p99 ≤ 1 ms, 5 ms and 50 ms.
    pub thresholds: Vec<Threshold>,
}

/// Summarises steps: pure, so the verdicts are tested without load.
pub fn summarize(p99_bound: Duration, steps: Vec<Step>) -> FrontierReport {
    let best = |bound_us: u64| {
        steps
            .iter()
            .filter(|s| s.p99_us <= bound_us && s.error_share <= MAX_ERROR_SHARE)
            .map(|s| s.rate)
            .reduce(f64::max)
    };
    FrontierReport {
        p99_bound_us: u64::try_from(p99_bound.as_micros()).unwrap_or(u64::MAX),
        highest_held_rate: steps
            .iter()
            .filter(|s| s.held)
            .map(|s| s.rate)
            .reduce(f64::max),
        thresholds: THRESHOLDS_US
            .iter()
            .map(|&bound| Threshold {
                p99_bound_us: bound,
                rate: best(bound),
            })
            .collect(),
        steps,
    }
}

/// Runs the search.
pub async fn search(config: FrontierConfig) -> anyhow::Result<FrontierReport> {
    if !(config.factor.is_finite() && config.factor > 1.0) {
        bail!("--factor must be above 1, got {}", config.factor);
    }
    if !(config.start_rate > 0.0 && config.start_rate <= config.max_rate) {
        bail!(
            "--start-rate must be positive and at most --max-rate, got {} and {}",
            config.start_rate,
            config.max_rate
        );
    }
    let bound_us = u64::try_from(config.p99_bound.as_micros()).unwrap_or(u64::MAX);
    let mut steps = Vec::new();
    let mut rate = config.start_rate;
    while rate <= config.max_rate {
        let report = run(RunConfig {
            mode: Mode::Open {
                rate,
                connections: config.connections,
            },
            ..config.load.clone()
        })
        .await?;
        let error_share = if report.requests == 0 {
            1.0
        } else {
            report.errors() as f64 / report.requests as f64
        };
        let held =
            report.ok > 0 && report.latency.p99_us <= bound_us && error_share <= MAX_ERROR_SHARE;
        steps.push(Step {
            rate,
            throughput_rps: report.throughput_rps,
            p99_us: report.latency.p99_us,
            error_share,
            held,
        });
        if !held {
            break;
        }
        // Whole rates; at least one more per step, so small rates cannot stall the search.
        rate = (rate * config.factor).round().max(rate + 1.0);
    }
    Ok(summarize(config.p99_bound, steps))
}

impl fmt::Display for FrontierReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "| offered req/s | achieved req/s | p99 | errors | held |"
        )?;
        writeln!(f, "| --- | --- | --- | --- | --- |")?;
        for s in &self.steps {
            writeln!(
                f,
                "| {:.0} | {:.0} | {:.3} ms | {:.2}% | {} |",
                s.rate,
                s.throughput_rps,
                s.p99_us as f64 / 1000.0,
                s.error_share * 100.0,
                if s.held { "yes" } else { "no" }
            )?;
        }
        let rate =
            |r: Option<f64>| r.map_or_else(|| "none".to_owned(), |r| format!("{r:.0} req/s"));
        writeln!(
            f,
            "\nhighest rate that held (p99 ≤ {:.3} ms, errors ≤ 1%): {}",
            self.p99_bound_us as f64 / 1000.0,
            rate(self.highest_held_rate)
        )?;
        for t in &self.thresholds {
            writeln!(
                f,
                "  at p99 ≤ {} ms: {}",
                t.p99_bound_us / 1000,
                rate(t.rate)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(rate: f64, p99_us: u64, error_share: f64, bound_us: u64) -> Step {
        Step {
            rate,
            throughput_rps: rate,
            p99_us,
            error_share,
            held: p99_us <= bound_us && error_share <= MAX_ERROR_SHARE,
        }
    }

    #[test]
    fn thresholds_take_the_highest_rate_within_each_bound() {
        let bound = 50_000;
        let steps = vec![
            step(100.0, 800, 0.0, bound),
            step(200.0, 3_000, 0.0, bound),
            step(400.0, 40_000, 0.005, bound),
            step(800.0, 900_000, 0.0, bound),
        ];
        let report = summarize(Duration::from_millis(50), steps);
        assert_eq!(report.highest_held_rate, Some(400.0));
        let rates: Vec<Option<f64>> = report.thresholds.iter().map(|t| t.rate).collect();
        assert_eq!(rates, [Some(100.0), Some(200.0), Some(400.0)]);
    }

    #[test]
    fn errors_above_one_percent_do_not_hold() {
        let steps = vec![step(100.0, 2_000, 0.02, 50_000)];
        let report = summarize(Duration::from_millis(50), steps);
        assert_eq!(report.highest_held_rate, None);
        assert!(report.thresholds.iter().all(|t| t.rate.is_none()));
        assert!(report.to_string().contains("none"));
    }
}
