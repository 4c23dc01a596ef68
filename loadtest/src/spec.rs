//! Small value languages of the command line: latency distributions (`fixed:5ms`,
//! `uniform:1ms..10ms`) and one-off stalls (`500ms:200ms`). Pure parsing, no I/O.

use std::str::FromStr;
use std::time::Duration;

/// How long the mock upstream waits before answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
            _ => Err(format!(
                "latency must be fixed:DUR or uniform:LOW..HIGH, got {text:?}"
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
