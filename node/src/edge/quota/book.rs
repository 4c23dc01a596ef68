//! [`Book`]: this edge's account on one budget — the lease it currently spends from.
//!
//! The fast path (the lease has room) is an `ArcSwap` load and two atomic operations.
//! Only when the lease lacks room does a request take the book's async mutex and ask the
//! ledger for a new lease; requests that arrive meanwhile queue on the same mutex and, once
//! in, first try the lease the one before them obtained — so N concurrent requests that
//! find the lease empty cause one grant, not N (single flight). The replaced lease is
//! retired: it is closed at the ledger, returning what it still holds, once its requests in
//! flight have finished.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arc_swap::ArcSwapOption;
use floodgate_cluster::ledger::{BudgetSpec, Metric, Refusal};

use super::lease::LocalLease;
use super::refusal::{Denial, Denied};
use super::shared::Core;

/// One budget's leases on this edge.
#[derive(Debug)]
pub struct Book {
    metric: Metric,
    current: ArcSwapOption<LocalLease>,
    flight: tokio::sync::Mutex<()>,
    /// The size to ask for next; grows when leases run out quickly.
    ask: AtomicU64,
}

impl Book {
    /// An empty book for a budget counting `metric`.
    pub fn new(metric: Metric) -> Self {
        Self {
            metric,
            current: ArcSwapOption::empty(),
            flight: tokio::sync::Mutex::new(()),
            ask: AtomicU64::new(0),
        }
    }

    /// What the budget counts.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// Room left in the current lease (0 without one).
    pub fn room(&self) -> u64 {
        self.current
            .load()
            .as_ref()
            .filter(|lease| !lease.is_retired())
            .map_or(0, |lease| lease.room())
    }

    /// Reserves `amount` from the current lease if it has room: no lock, no ledger call.
    pub fn try_fast(&self, amount: u64) -> Option<Arc<LocalLease>> {
        let lease = self.current.load_full()?;
        lease.try_reserve(amount, Instant::now()).then_some(lease)
    }

    /// Reserves `amount`, asking the ledger for a new lease if the current one lacks room.
    pub async fn reserve(
        &self,
        core: &Core,
        spec: &BudgetSpec,
        amount: u64,
    ) -> Result<Arc<LocalLease>, Denied> {
        if let Some(lease) = self.try_fast(amount) {
            return Ok(lease);
        }
        let _flight = self.flight.lock().await;
        // The request before us in the queue may have brought a lease with room.
        if let Some(lease) = self.try_fast(amount) {
            return Ok(lease);
        }
        let settings = core.settings();
        let asked = amount
            .saturating_mul(settings.ask_requests)
            .max(self.ask.load(Ordering::Relaxed));
        let asked_at = Instant::now();
        let denied = |denial| Denied {
            spec: spec.clone(),
            denial,
        };
        let lease = match core.grant(&spec.id, asked, amount).await {
            Ok(Ok(lease)) => lease,
            Ok(Err(refusal)) => return Err(denied(Denial::Refused(refusal))),
            Err(error) => return Err(denied(Denial::Unavailable(error))),
        };
        let local = Arc::new(LocalLease::new(&lease, asked_at, settings.retire_margin));
        core.register(local.clone());
        if let Some(old) = self.current.swap(Some(local.clone())) {
            // A lease used up in less than half its life: ask for twice as much next time.
            if old.asked_at().elapsed() < settings.lease_ttl / 2 {
                self.ask
                    .fetch_max(old.granted().saturating_mul(2), Ordering::Relaxed);
            }
            old.retire();
        }
        if local.try_reserve(amount, Instant::now()) {
            Ok(local)
        } else {
            // Granted, but too close to its window's end to be spent from.
            Err(denied(Denial::Refused(Refusal {
                budget: spec.id.clone(),
                remaining: 0,
                retry_at: Some(lease.expires_at),
            })))
        }
    }
}
