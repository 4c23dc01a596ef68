//! A node-local fixed-window request limit per endpoint (MLflow's `limit`): one atomic word
//! holding the window number and the count, updated with compare-and-swap, no lock.
//!
//! Node-local means exact on one node; the ledger's leases make limits cluster-wide.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::RateLimit;

/// The outcome of one admission check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The limit per window.
    pub limit: u64,
    /// Calls left in this window after this one.
    pub remaining: u64,
    /// Time until the window resets.
    pub reset: Duration,
}

/// One endpoint's window state.
#[derive(Debug)]
pub struct WindowLimiter {
    limit: RateLimit,
    /// High 32 bits: window number (mod 2^32); low 32 bits: calls admitted in it.
    state: AtomicU64,
}

impl WindowLimiter {
    /// A limiter for `limit`.
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            state: AtomicU64::new(0),
        }
    }

    /// The limit this limiter enforces.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Admits one call at the current wall-clock time.
    pub fn admit(&self) -> Admission {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.admit_at(now)
    }

    /// Admits one call at `now` (since the Unix epoch).
    pub fn admit_at(&self, now: Duration) -> Admission {
        let period = self.limit.period.as_millis().max(1);
        let window = now.as_millis() / period;
        let reset_ms = period - now.as_millis() % period;
        let reset = Duration::from_millis(u64::try_from(reset_ms).unwrap_or(u64::MAX));
        let cap = self.limit.calls.min(u64::from(u32::MAX));
        let window_tag = (window as u64) & 0xFFFF_FFFF;
        let mut current = self.state.load(Ordering::Relaxed);
        loop {
            let count = if current >> 32 == window_tag {
                current & 0xFFFF_FFFF
            } else {
                0
            };
            if count >= cap {
                return Admission {
                    allowed: false,
                    limit: cap,
                    remaining: 0,
                    reset,
                };
            }
            let next = (window_tag << 32) | (count + 1);
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Admission {
                        allowed: true,
                        limit: cap,
                        remaining: cap - count - 1,
                        reset,
                    };
                }
                Err(actual) => current = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_limit_then_resets_with_the_window() {
        let limiter = WindowLimiter::new(RateLimit {
            calls: 2,
            period: Duration::from_secs(60),
        });
        let t = Duration::from_secs(6_000);
        assert!(limiter.admit_at(t).allowed);
        let second = limiter.admit_at(t + Duration::from_secs(1));
        assert!(second.allowed);
        assert_eq!(second.remaining, 0);
        let third = limiter.admit_at(t + Duration::from_secs(2));
        assert!(!third.allowed);
        assert_eq!(third.reset, Duration::from_secs(58));
        assert!(limiter.admit_at(t + Duration::from_secs(60)).allowed);
    }

    #[test]
    fn concurrent_admissions_never_exceed_the_limit() {
        let limiter = std::sync::Arc::new(WindowLimiter::new(RateLimit {
            calls: 1000,
            period: Duration::from_secs(3600),
        }));
        let t = Duration::from_secs(7_200);
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let limiter = limiter.clone();
                std::thread::spawn(move || (0..500).filter(|_| limiter.admit_at(t).allowed).count())
            })
            .collect();
        let admitted: usize = handles.into_iter().map(|h| h.join().expect("thread")).sum();
        assert_eq!(admitted, 1000);
    }
}
