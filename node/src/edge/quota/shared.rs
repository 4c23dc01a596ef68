//! [`Core`]: what every part of one edge's quota book shares — the ledger, this edge's id,
//! the settings, the registry of leases still to be closed, and the ledger-write counter.
//!
//! The registry's lock is taken only on the slow path (a new lease was granted) and by the
//! settlement task, never by a request reserving from a lease that has room.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use floodgate_cluster::ledger::{Lease, LeaseRequest, Refusal, SettleResult, Settlement};
use tokio::sync::Notify;

use super::lease::LocalLease;
use super::ledger::{QuotaError, QuotaLedger};

/// How an edge asks for, spends and settles leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaSettings {
    /// Lifetime asked for each lease.
    pub lease_ttl: Duration,
    /// A lease stops taking reservations this long before it expires (at most a quarter of
    /// its life), so it can be closed before the ledger charges it in full.
    pub retire_margin: Duration,
    /// A new lease asks for at least this many worst cases of the request that needed it.
    pub ask_requests: u64,
    /// Settlements are sent at least this often.
    pub flush_interval: Duration,
    /// … and as soon as this many requests have finished since the last batch.
    pub flush_at: usize,
    /// Longest wait for one ledger call.
    pub ledger_timeout: Duration,
}

impl Default for QuotaSettings {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(30),
            retire_margin: Duration::from_secs(2),
            ask_requests: 16,
            flush_interval: Duration::from_millis(200),
            flush_at: 256,
            ledger_timeout: Duration::from_secs(2),
        }
    }
}

/// The shared part of an edge's quota book.
pub struct Core {
    ledger: Arc<dyn QuotaLedger>,
    edge_id: String,
    settings: QuotaSettings,
    leases: Mutex<Vec<Arc<LocalLease>>>,
    finished: AtomicUsize,
    wake: Arc<Notify>,
    writes: AtomicU64,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("edge_id", &self.edge_id)
            .field("writes", &self.writes)
            .finish_non_exhaustive()
    }
}

impl Core {
    /// A core over `ledger` for the edge `edge_id`.
    pub fn new(ledger: Arc<dyn QuotaLedger>, edge_id: String, settings: QuotaSettings) -> Self {
        Self {
            ledger,
            edge_id,
            settings,
            leases: Mutex::new(Vec::new()),
            finished: AtomicUsize::new(0),
            wake: Arc::new(Notify::new()),
            writes: AtomicU64::new(0),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &QuotaSettings {
        &self.settings
    }

    /// Ledger writes so far (grants asked plus settlement batches sent).
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Asks the ledger for a lease on `budget` (one write).
    pub async fn grant(
        &self,
        budget: &str,
        asked: u64,
        at_least: u64,
    ) -> Result<Result<Lease, Refusal>, QuotaError> {
        let request = LeaseRequest {
            budget: budget.to_owned(),
            edge_id: self.edge_id.clone(),
            asked: asked.max(at_least).max(1),
            at_least,
            ttl_ms: u64::try_from(self.settings.lease_ttl.as_millis()).unwrap_or(u64::MAX),
        };
        self.writes.fetch_add(1, Ordering::Relaxed);
        tokio::time::timeout(self.settings.ledger_timeout, self.ledger.grant(request))
            .await
            .unwrap_or_else(|_| Err(timed_out(self.settings.ledger_timeout)))
    }

    /// Sends one settlement batch (one write).
    pub async fn settle(
        &self,
        settlements: Vec<Settlement>,
    ) -> Result<Vec<SettleResult>, QuotaError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        tokio::time::timeout(
            self.settings.ledger_timeout,
            self.ledger.settle(settlements),
        )
        .await
        .unwrap_or_else(|_| Err(timed_out(self.settings.ledger_timeout)))
    }

    /// Adds a newly granted lease to those the settlement task watches.
    pub fn register(&self, lease: Arc<LocalLease>) {
        self.registry().push(lease);
    }

    /// The leases not yet closed (slow path and settlement task only).
    pub fn registry(&self) -> MutexGuard<'_, Vec<Arc<LocalLease>>> {
        // A panic while holding this lock cannot leave the list inconsistent: every
        // critical section is a push, a retain or a clone.
        self.leases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Notes that a request finished; wakes the settlement task once enough have.
    pub fn request_finished(&self) {
        let finished = self.finished.fetch_add(1, Ordering::Relaxed) + 1;
        if finished == self.settings.flush_at {
            self.wake.notify_one();
        }
    }

    /// What wakes the settlement task early.
    pub fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Starts a new batch count.
    pub fn batch_started(&self) {
        self.finished.store(0, Ordering::Relaxed);
    }
}

fn timed_out(after: Duration) -> QuotaError {
    QuotaError::Unavailable(format!("no answer within {after:?}"))
}
