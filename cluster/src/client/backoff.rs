//! [`Backoff`]: capped exponential backoff with jitter, for the client's retries and watch
//! reconnects. Pure arithmetic plus one random draw; no sleeping here.

use std::time::Duration;

/// Capped exponential backoff: the `n`th delay (from 0) is drawn uniformly from
/// `[d/2, d]` where `d = min(initial × 2ⁿ, max)` ("equal jitter"), so many clients that lost
/// the same member do not come back in lockstep, and none waits less than half the base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay's upper bound.
    pub initial: Duration,
    /// The cap on any delay.
    pub max: Duration,
}

impl Default for Backoff {
    /// 50 ms doubling up to 2 s.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(2),
        }
    }
}

impl Backoff {
    /// The un-jittered delay before retry number `attempt` (0 for the first retry).
    pub fn base(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The delay before retry number `attempt`, jittered within `[base/2, base]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self.base(attempt);
        let half = base / 2;
        let spread = u64::try_from((base - half).as_micros()).unwrap_or(u64::MAX);
        half + Duration::from_micros(fastrand::u64(0..=spread))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let bases: Vec<u128> = (0..6).map(|n| backoff.base(n).as_millis()).collect();
        assert_eq!(bases, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff.base(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_within_half_and_full_base() {
        let backoff = Backoff::default();
        for attempt in 0..40 {
            let base = backoff.base(attempt);
            for _ in 0..20 {
                let delay = backoff.delay(attempt);
                assert!(delay >= base / 2 && delay <= base, "{delay:?} vs {base:?}");
            }
        }
    }
}
