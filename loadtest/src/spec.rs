//! Small value languages of the command line: latency distributions (`fixed:5ms`,
//! `uniform:1ms..10ms`, `lognormal:2ms,0.5`) and one-off stalls (`500ms:200ms`). Pure
//! parsing and sampling, no I/O.

use std::str::FromStr;
use std::time::Duration;

/// How long the mock upstream waits before answering.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Latency {
    /// Answer at once.
    #[default]
    Zero,
    /// Always wait this long.
    Fixed(Duration),
    /// Wait a duration drawn uniformly from `[low, high]`.
    Uniform {
        /// The shortest wait.
        low: Duration,
        /// The longest wait.
        high: Duration,
    },
    /// Wait `median · e^(sigma · Z)` with `Z` standard normal: a long right tail, like real
    /// model latencies.
    LogNormal {
        /// The median wait.
        median: Duration,
        /// The standard deviation of the wait's logarithm.
        sigma: f64,
    },
}

/// Draws a standard normal value (Box–Muller over two uniform draws).
fn standard_normal() -> f64 {
    // `1 - u` keeps the logarithm's argument in (0, 1].
    let (u1, u2) = (1.0 - fastrand::f64(), fastrand::f64());
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

impl Latency {
    /// Draws one wait from the distribution.
    pub fn sample(&self) -> Duration {
        match *self {
            Latency::Zero => Duration::ZERO,
            Latency::Fixed(d) => d,
            Latency::Uniform { low, high } => {
                let (lo, hi) = (low.as_nanos() as u64, high.as_nanos() as u64);
                Duration::from_nanos(fastrand::u64(lo..=hi))
            }
            Latency::LogNormal { median, sigma } => {
                let factor = (sigma * standard_normal()).exp();
                // Capped at an hour so a wild draw cannot overflow the duration.
                Duration::from_secs_f64((median.as_secs_f64() * factor).min(3600.0))
            }
        }
    }
}

fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("bad duration {text:?}: {e}"))
}

impl FromStr for Latency {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once(':') {
            Some(("fixed", d)) => Ok(Latency::Fixed(duration(d)?)),
            Some(("uniform", range)) => {
                let (low, high) = range
                    .split_once("..")
                    .ok_or_else(|| format!("uniform latency needs LOW..HIGH, got {range:?}"))?;
                let (low, high) = (duration(low)?, duration(high)?);
                if low > high {
                    return Err(format!("uniform latency {text:?}: low is above high"));
                }
                Ok(Latency::Uniform { low, high })
            }
            Some(("lognormal", spec)) => {
                let (median, sigma) = spec.split_once(',').ok_or_else(|| {
                    format!("log-normal latency needs MEDIAN,SIGMA (e.g. 2ms,0.5), got {spec:?}")
                })?;
                let sigma: f64 = sigma
                    .trim()
                    .parse()
                    .map_err(|e| format!("bad log-normal sigma {sigma:?}: {e}"))?;
                if !(sigma.is_finite() && sigma >= 0.0) {
                    return Err(format!("log-normal sigma must be ≥ 0, got {sigma}"));
                }
                Ok(Latency::LogNormal {
                    median: duration(median)?,
                    sigma,
                })
            }
            _ => Err(format!(
                "latency must be fixed:DUR, uniform:LOW..HIGH or lognormal:MEDIAN,SIGMA, got {text:?}"
            )),
        }
    }
}

/// A single synthetic stall: every request that arrives in the window
/// `[first request + at, first request + at + length)` is held until the window closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    /// When the stall begins, counted from the first request the upstream serves.
    pub at: Duration,
    /// How long it lasts.
    pub length: Duration,
}

impl FromStr for Stall {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (at, length) = text
            .split_once(':')
            .ok_or_else(|| format!("stall must be AT:LENGTH (e.g. 500ms:200ms), got {text:?}"))?;
        Ok(Stall {
            at: duration(at)?,
            length: duration(length)?,
        })
    }
}

/// Parses a probability in `[0, 1]` (for error-injection rates).
pub fn probability(text: &str) -> Result<f64, String> {
    let p: f64 = text
        .trim()
        .parse()
        .map_err(|e| format!("bad rate {text:?}: {e}"))?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("rate {p} is outside [0, 1]"))
    }
}

/// Parses a humantime duration (`5ms`, `2s`, `1m`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    duration(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_latencies() {
        assert_eq!(
            "fixed:5ms".parse::<Latency>(),
            Ok(Latency::Fixed(Duration::from_millis(5)))
        );
        let uniform: Latency = "uniform:1ms..10ms".parse().unwrap();
        assert_eq!(
            uniform,
            Latency::Uniform {
                low: Duration::from_millis(1),
                high: Duration::from_millis(10)
            }
        );
        for _ in 0..100 {
            let d = uniform.sample();
            assert!(d >= Duration::from_millis(1) && d <= Duration::from_millis(10));
        }
        assert!("uniform:10ms..1ms".parse::<Latency>().is_err());
        assert!("lognormal:1ms".parse::<Latency>().is_err());
        assert!("lognormal:1ms,-1".parse::<Latency>().is_err());
        let lognormal: Latency = "lognormal:2ms,0.5".parse().unwrap();
        let mut draws: Vec<Duration> = (0..2001).map(|_| lognormal.sample()).collect();
        draws.sort();
        // The sample median of 2001 draws lies well within 20% of the true median.
        let median = draws[1000].as_secs_f64();
        assert!((0.0016..0.0024).contains(&median), "{median}");
        assert!("fixed:soon".parse::<Latency>().is_err());
    }

    #[test]
    fn parses_stalls_and_probabilities() {
        assert_eq!(
            "500ms:200ms".parse::<Stall>(),
            Ok(Stall {
                at: Duration::from_millis(500),
                length: Duration::from_millis(200)
            })
        );
        assert!("200ms".parse::<Stall>().is_err());
        assert_eq!(probability("0.01"), Ok(0.01));
        assert!(probability("1.5").is_err());
        assert!(probability("x").is_err());
    }
}
