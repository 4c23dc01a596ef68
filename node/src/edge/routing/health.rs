//! Passive health of one target: outlier ejection on consecutive failures or on the failure
//! rate over a window, a cooldown that doubles on each repeat, half-open probing by real
//! traffic once the cooldown has passed, and the latency and load used by least-latency
//! balancing. Everything is atomics: no request waits on another.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::EjectionPolicy;

/// Decay time of the latency average.
const EWMA_DECAY: Duration = Duration::from_secs(10);
/// Longest a probe may block further probes without a verdict.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether a target may take a request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// In rotation.
    Healthy,
    /// Cooldown over: this request is the one probe.
    Probe,
    /// Ejected (or another request is probing).
    Ejected,
}

/// One request in flight to a target; see [`TargetHealth::begin`].
#[derive(Debug)]
pub struct InFlight<'a> {
    health: &'a TargetHealth,
    open: bool,
    probe: bool,
}

impl InFlight<'_> {
    /// The request succeeded in `latency`; a successful probe returns the target to
    /// rotation.
    pub fn success(mut self, latency: Duration, policy: &EjectionPolicy) {
        self.health.record_success(latency, policy);
        self.close();
    }

    /// The request failed in a way that says something about the target (connect error,
    /// timeout, 429/5xx); returns whether this ejected it.
    pub fn failure(mut self, latency: Duration, policy: &EjectionPolicy) -> bool {
        let ejected = self.health.record_failure(latency, policy, self.probe);
        self.close();
        ejected
    }

    /// The request ended with no verdict on the target (a client error).
    pub fn neutral(mut self) {
        self.close();
    }

    fn close(&mut self) {
        if std::mem::take(&mut self.open) {
            self.health.end(self.probe);
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.close();
    }
}

/// Health and load of one target; shared by every request to it.
#[derive(Debug)]
pub struct TargetHealth {
    epoch: Instant,
    consecutive_failures: AtomicU32,
    /// Window tag (high 32 bits), requests (middle 16), failures (low 16).
    window: AtomicU64,
    /// Ejected until this many ms after `epoch` (0: never ejected).
    ejected_until_ms: AtomicU64,
    ejections: AtomicU32,
    /// A probe is in flight until this many ms after `epoch` (0: none). A probe whose
    /// request vanished without a verdict stops blocking new probes after
    /// [`PROBE_TIMEOUT`].
    probe_until_ms: AtomicU64,
    /// Peak-EWMA latency in µs, as f64 bits.
    latency_us: AtomicU64,
    latency_at_ms: AtomicU64,
    in_flight: AtomicU32,
}

impl Default for TargetHealth {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            consecutive_failures: AtomicU32::new(0),
            window: AtomicU64::new(0),
            ejected_until_ms: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            probe_until_ms: AtomicU64::new(0),
            latency_us: AtomicU64::new(0f64.to_bits()),
            latency_at_ms: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
        }
    }
}

impl TargetHealth {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn probe_in_flight(&self, now: u64) -> bool {
        now < self.probe_until_ms.load(Ordering::Acquire)
    }

    /// Whether the target is in rotation (without claiming a probe).
    pub fn is_healthy(&self) -> bool {
        let now = self.now_ms();
        now >= self.ejected_until_ms.load(Ordering::Acquire) && !self.probe_in_flight(now)
    }

    /// Whether a request could be sent to the target now (healthy, or due for a probe),
    /// without claiming anything.
    pub fn is_available(&self) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Acquire);
        let now = self.now_ms();
        until == 0 || (now >= until && !self.probe_in_flight(now))
    }

    /// Claims the target for one request that will be sent now: healthy, the one probe
    /// after a cooldown, or ejected. A claimed probe must be followed by [`Self::begin`].
    pub fn claim(&self) -> Availability {
        let until = self.ejected_until_ms.load(Ordering::Acquire);
        if until == 0 {
            return Availability::Healthy;
        }
        let now = self.now_ms();
        if now < until {
            return Availability::Ejected;
        }
        let current = self.probe_until_ms.load(Ordering::Acquire);
        if now < current {
            return Availability::Ejected;
        }
        let probe_until = now + u64::try_from(PROBE_TIMEOUT.as_millis()).unwrap_or(u64::MAX);
        match self.probe_until_ms.compare_exchange(
            current,
            probe_until,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => Availability::Probe,
            Err(_) => Availability::Ejected,
        }
    }

    /// Starts one request to the target (`probe`: it is the probe [`Self::claim`] granted).
    /// The returned guard counts it as in flight until a verdict ([`InFlight::success`],
    /// [`InFlight::failure`], [`InFlight::neutral`]) or until it is dropped (the request
    /// was abandoned), which also releases its probe.
    pub fn begin(&self, probe: bool) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            health: self,
            open: true,
            probe,
        }
    }

    fn end(&self, probe: bool) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        if probe {
            self.probe_until_ms.store(0, Ordering::Release);
        }
    }

    fn record_success(&self, latency: Duration, policy: &EjectionPolicy) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.count(false, policy.window);
        self.observe_latency(latency);
        if self.ejected_until_ms.load(Ordering::Acquire) != 0 {
            self.ejected_until_ms.store(0, Ordering::Release);
            self.ejections.store(0, Ordering::Relaxed);
        }
    }

    fn record_failure(&self, latency: Duration, policy: &EjectionPolicy, was_probe: bool) -> bool {
        self.observe_latency(latency);
        let in_a_row = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        let (requests, failures) = self.count(true, policy.window);
        let by_count = policy.consecutive_failures > 0 && in_a_row >= policy.consecutive_failures;
        let by_rate = policy.error_rate > 0.0
            && requests >= policy.min_requests
            && f64::from(failures) >= policy.error_rate * f64::from(requests);
        if was_probe || by_count || by_rate {
            self.eject(policy);
            true
        } else {
            false
        }
    }

    fn eject(&self, policy: &EjectionPolicy) {
        let repeat = self.ejections.fetch_add(1, Ordering::Relaxed).min(16);
        let cooldown = policy
            .cooldown
            .saturating_mul(1u32 << repeat)
            .min(policy.max_cooldown);
        let until = self.now_ms() + u64::try_from(cooldown.as_millis()).unwrap_or(u64::MAX);
        self.ejected_until_ms.store(until.max(1), Ordering::Release);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.window.store(0, Ordering::Relaxed);
    }

    /// Counts a request in the current `window`; returns (requests, failures) in it.
    fn count(&self, failed: bool, window: Duration) -> (u32, u32) {
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
        let tag = self.now_ms() / window_ms + 1;
        let mut current = self.window.load(Ordering::Relaxed);
        loop {
            let (requests, failures) = if current >> 32 == tag {
                ((current >> 16) & 0xFFFF, current & 0xFFFF)
            } else {
                (0, 0)
            };
            let requests = (requests + 1).min(0xFFFF);
            let failures = (failures + u64::from(failed)).min(0xFFFF);
            let next = (tag << 32) | (requests << 16) | failures;
            match self.window.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return (requests as u32, failures as u32),
                Err(actual) => current = actual,
            }
        }
    }

    /// Peak EWMA: a slower sample is taken at once, faster ones pull the average down with
    /// a decay of [`EWMA_DECAY`].
    fn observe_latency(&self, latency: Duration) {
        let sample = latency.as_micros() as f64;
        let now = self.now_ms();
        let last = self.latency_at_ms.swap(now, Ordering::Relaxed);
        let current = f64::from_bits(self.latency_us.load(Ordering::Relaxed));
        let next = if sample > current || current == 0.0 {
            sample
        } else {
            let elapsed = now.saturating_sub(last) as f64;
            let weight = (-elapsed / EWMA_DECAY.as_millis() as f64).exp();
            current * weight + sample * (1.0 - weight)
        };
        self.latency_us.store(next.to_bits(), Ordering::Relaxed);
    }

    /// Cost for least-latency choice: latency × (in-flight + 1).
    pub fn load_cost(&self) -> f64 {
        let latency = f64::from_bits(self.latency_us.load(Ordering::Relaxed)).max(1.0);
        latency * f64::from(self.in_flight.load(Ordering::Relaxed) + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> EjectionPolicy {
        EjectionPolicy {
            consecutive_failures: 3,
            error_rate: 0.0,
            min_requests: 20,
            window: Duration::from_secs(10),
            cooldown: Duration::from_millis(40),
            max_cooldown: Duration::from_secs(1),
        }
    }

    fn fail(health: &TargetHealth, policy: &EjectionPolicy) -> bool {
        health
            .begin(false)
            .failure(Duration::from_millis(1), policy)
    }

    #[test]
    fn ejects_after_consecutive_failures_then_probes_once() {
        let health = TargetHealth::default();
        let policy = policy();
        assert!(!fail(&health, &policy));
        assert!(!fail(&health, &policy));
        assert!(fail(&health, &policy), "third failure in a row ejects");
        assert_eq!(health.claim(), Availability::Ejected);
        assert!(!health.is_healthy());
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(health.claim(), Availability::Probe);
        assert_eq!(
            health.claim(),
            Availability::Ejected,
            "only one probe at a time"
        );
        health
            .begin(false)
            .success(Duration::from_millis(1), &policy);
        assert_eq!(health.claim(), Availability::Healthy);
    }

    #[test]
    fn an_abandoned_probe_releases_the_target() {
        let health = TargetHealth::default();
        let policy = policy();
        for _ in 0..3 {
            fail(&health, &policy);
        }
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(health.claim(), Availability::Probe);
        // The probe's request is dropped (client gone) before any verdict.
        drop(health.begin(true));
        assert_eq!(health.in_flight.load(Ordering::Relaxed), 0);
        assert_eq!(health.claim(), Availability::Probe, "a new probe may go");
    }

    #[test]
    fn a_failed_probe_doubles_the_cooldown() {
        let health = TargetHealth::default();
        let policy = policy();
        for _ in 0..3 {
            fail(&health, &policy);
        }
        let first = health.ejected_until_ms.load(Ordering::Relaxed) - health.now_ms();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(health.claim(), Availability::Probe);
        assert!(
            health
                .begin(true)
                .failure(Duration::from_millis(1), &policy),
            "a failed probe ejects again"
        );
        let second = health.ejected_until_ms.load(Ordering::Relaxed) - health.now_ms();
        assert!(second > first + 20, "{first} then {second}");
    }

    #[test]
    fn success_resets_the_failure_run() {
        let health = TargetHealth::default();
        let policy = policy();
        fail(&health, &policy);
        fail(&health, &policy);
        health
            .begin(false)
            .success(Duration::from_millis(1), &policy);
        assert!(!fail(&health, &policy));
        assert_eq!(health.claim(), Availability::Healthy);
    }

    #[test]
    fn error_rate_ejects_when_enough_requests_fail() {
        let health = TargetHealth::default();
        let policy = EjectionPolicy {
            consecutive_failures: 0,
            error_rate: 0.5,
            min_requests: 4,
            ..policy()
        };
        health
            .begin(false)
            .success(Duration::from_millis(1), &policy);
        assert!(!fail(&health, &policy));
        health
            .begin(false)
            .success(Duration::from_millis(1), &policy);
        assert!(fail(&health, &policy), "2 of 4 failed");
    }

    #[test]
    fn the_error_rate_counts_only_the_configured_window() {
        let health = TargetHealth::default();
        let policy = EjectionPolicy {
            consecutive_failures: 0,
            error_rate: 0.5,
            min_requests: 4,
            window: Duration::from_millis(50),
            ..policy()
        };
        health
            .begin(false)
            .success(Duration::from_millis(1), &policy);
        assert!(!fail(&health, &policy));
        // Let the window pass: the next two requests start a fresh count of two.
        std::thread::sleep(Duration::from_millis(60));
        health
            .begin(false)
            .success(Duration::from_millis(1), &policy);
        assert!(
            !fail(&health, &policy),
            "2 of 2 in the new window is below min_requests"
        );
        assert_eq!(health.claim(), Availability::Healthy);
    }

    #[test]
    fn peak_ewma_takes_slow_samples_at_once() {
        let health = TargetHealth::default();
        health
            .begin(false)
            .success(Duration::from_millis(10), &policy());
        let fast = health.load_cost();
        health
            .begin(false)
            .success(Duration::from_millis(100), &policy());
        assert!(health.load_cost() >= fast * 9.0);
    }
}
