//! Budgets and rate limits held by the ledger, enforced on the edge: reserve, then settle
//! (ARCHITECTURE.md, "Money and quotas").
//!
//! Before a request goes upstream it reserves its worst case ([`worst`]) on every budget
//! whose scope it matches, from a lease this edge holds on that budget ([`book`],
//! [`lease`]). A lease with room costs no lock and no network; an empty one is replaced by
//! one ledger grant that concurrent requests share. A budget the ledger refuses, or a
//! ledger that cannot be reached when no local room is left, refuses the request with a
//! `429` before any provider is called ([`refusal`]); `alert` budgets never refuse. When
//! the answer is complete — or failed, or the client left — the request settles its actual
//! usage exactly once ([`reservation`], driven by the usage record's close), the unused
//! part returns to the lease, and a background task sends the charges to the ledger in
//! batches and closes retired leases ([`flusher`]).
//!
//! Module map: [`ledger`] (the [`QuotaLedger`] trait and its in-process implementation),
//! [`shared`] (what the parts share, settings, the ledger-write counter), [`lease`],
//! [`book`], [`worst`], [`reservation`], [`request`] (one request's use of all of it, as
//! the attempt loop calls it), [`refusal`], [`flusher`].
//!
//! This module never touches the endpoint's local `rate_limit` ([`super::limiter`]), which
//! keeps working as before and is checked first.

pub mod book;
pub mod flusher;
pub mod lease;
pub mod ledger;
pub mod refusal;
pub mod request;
pub mod reservation;
pub mod shared;
pub mod worst;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use floodgate_cluster::ledger::BudgetSpec;
use tokio_util::task::TaskTracker;

pub use self::shared::QuotaSettings;
pub use ledger::{LedgerFuture, QuotaError, QuotaLedger};
pub use refusal::{Denial, Denied};
pub use request::{RequestQuota, subject};
pub use reservation::{Charge, Reservation};

use self::shared::Core;
use book::Book;

/// One edge's quota book: a [`Book`] per budget in the config, over one ledger. Cheap to
/// clone.
#[derive(Clone, Debug)]
pub struct Quotas {
    core: Arc<Core>,
    books: Arc<ArcSwap<HashMap<String, Arc<Book>>>>,
    /// Serializes [`Quotas::sync`] (config reloads), never taken by requests.
    syncing: Arc<Mutex<()>>,
}

impl Quotas {
    /// A quota book for the edge `edge_id` over `ledger`, with no budgets until
    /// [`Quotas::sync`]; starts the settlement task on `tracker` (call within a Tokio
    /// runtime).
    pub fn start(
        ledger: Arc<dyn QuotaLedger>,
        edge_id: impl Into<String>,
        settings: QuotaSettings,
        tracker: &TaskTracker,
    ) -> Self {
        let core = Arc::new(Core::new(ledger, edge_id.into(), settings));
        tracker.spawn(flusher::run(
            Arc::downgrade(&core),
            core.wake(),
            settings.flush_interval,
        ));
        Self {
            core,
            books: Arc::new(ArcSwap::from_pointee(HashMap::new())),
            syncing: Arc::new(Mutex::new(())),
        }
    }

    /// Follows a config change: keeps the book (and leases) of every budget still there
    /// with the same metric, adds books for new budgets, drops the others (their leases
    /// are still settled and closed by the settlement task).
    pub fn sync(&self, budgets: &[BudgetSpec]) {
        let _one_at_a_time = self
            .syncing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.books.load();
        let next: HashMap<String, Arc<Book>> = budgets
            .iter()
            .map(|spec| {
                let book = current
                    .get(&spec.id)
                    .filter(|book| book.metric() == spec.metric)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Book::new(spec.metric)));
                (spec.id.clone(), book)
            })
            .collect();
        self.books.store(Arc::new(next));
    }

    /// The book of budget `id`, if the config has it.
    pub fn book(&self, id: &str) -> Option<Arc<Book>> {
        self.books.load().get(id).cloned()
    }

    /// Ledger writes so far: lease grants asked plus settlement batches sent.
    pub fn ledger_writes(&self) -> u64 {
        self.core.writes()
    }

    /// An empty reservation on this book.
    pub fn reservation(&self) -> Reservation {
        Reservation::new(self.core.clone())
    }

    /// Shutdown: retires every lease and settles and closes them as their requests finish,
    /// for at most `grace`. Returns how many leases were left open (the ledger charges
    /// those in full when they expire).
    pub async fn close(&self, grace: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let open = match flusher::round(&self.core, true).await {
                Ok(open) => open,
                Err(error) => {
                    tracing::warn!(%error, "settling quota leases at shutdown failed");
                    self.core.registry().len()
                }
            };
            if open == 0 || tokio::time::Instant::now() >= deadline {
                return open;
            }
            // Requests still in flight hold leases open; look again shortly.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Quotas {
    /// Reserves `amount` on budget `spec` through its `book` (fast path, else one grant).
    pub async fn reserve_on(
        &self,
        book: &Book,
        spec: &BudgetSpec,
        amount: u64,
    ) -> Result<Arc<lease::LocalLease>, Denied> {
        book.reserve(&self.core, spec, amount).await
    }
}
