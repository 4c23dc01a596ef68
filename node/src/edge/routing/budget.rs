//! The retry budget: retries (and fallbacks) over a 10 s window may not exceed a fraction
//! of the requests in it, plus a small floor per second, so retries cannot multiply an
//! outage. One atomic word, no lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Window over which requests and retries are counted.
const WINDOW_MS: u64 = 10_000;

/// One endpoint's budget.
#[derive(Debug)]
pub struct RetryBudget {
    epoch: Instant,
    ratio: f64,
    floor: u64,
    /// Window tag (high 24 bits), requests (middle 20), retries (low 20).
    state: AtomicU64,
}

impl RetryBudget {
    /// A budget of `ratio` retries per request plus `min_per_second` always allowed.
    pub fn new(ratio: f64, min_per_second: u32) -> Self {
        Self {
            epoch: Instant::now(),
            ratio,
            floor: u64::from(min_per_second) * WINDOW_MS / 1000,
            state: AtomicU64::new(0),
        }
    }

    fn update(&self, apply: impl Fn(u64, u64) -> Option<(u64, u64)>) -> bool {
        let tag = (self.epoch.elapsed().as_millis() as u64 / WINDOW_MS + 1) & 0xFF_FFFF;
        let mut current = self.state.load(Ordering::Relaxed);
        loop {
            let (requests, retries) = if current >> 40 == tag {
                ((current >> 20) & 0xF_FFFF, current & 0xF_FFFF)
            } else {
                (0, 0)
            };
            let Some((requests, retries)) = apply(requests, retries) else {
                return false;
            };
            let next = (tag << 40) | (requests.min(0xF_FFFF) << 20) | retries.min(0xF_FFFF);
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    /// Counts an original request.
    pub fn deposit(&self) {
        self.update(|requests, retries| Some((requests + 1, retries)));
    }

    /// Takes one retry from the budget; false when the budget is spent.
    pub fn withdraw(&self) -> bool {
        self.update(|requests, retries| {
            let allowed = self.floor + (self.ratio * requests as f64) as u64;
            (retries < allowed).then_some((requests, retries + 1))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_bounded_by_ratio_plus_floor() {
        let budget = RetryBudget::new(0.2, 0);
        for _ in 0..100 {
            budget.deposit();
        }
        let granted = (0..100).filter(|_| budget.withdraw()).count();
        assert_eq!(granted, 20);
    }

    #[test]
    fn the_floor_allows_retries_at_low_traffic() {
        let budget = RetryBudget::new(0.0, 1);
        budget.deposit();
        let granted = (0..100).filter(|_| budget.withdraw()).count();
        assert_eq!(granted, 10, "1 per second over a 10 s window");
    }
}
