//! The settlement task: sends what requests used to the ledger in batches — every
//! `flush_interval`, or as soon as `flush_at` requests have finished — and closes leases.
//!
//! Each round, for every lease not yet closed:
//! * due to retire (its expiry minus the margin has come): retired, no new reservations;
//! * retired with nothing in flight: its usage is settled with `close: true`, which frees
//!   what it still holds for other edges;
//! * past its expiry with requests still in flight: forgotten — the ledger charges it in
//!   full, which covers anything those requests spend (an edge can only under-use);
//! * otherwise: the usage finished since the last round is settled, the lease stays open.
//!
//! All of that goes out as one `Settle` command (one ledger write). If it fails, the usage
//! is put back and sent again next round; a batch that committed but whose answer was lost
//! is charged twice, which over-charges the budget, never the other way round.
//!
//! The task holds only a weak reference to the book: when the edge is dropped without
//! [`super::Quotas::close`] (a crash, in effect), it stops, and the ledger's expiry charges
//! the leases left behind.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use floodgate_cluster::ledger::Settlement;

use super::lease::LocalLease;
use super::ledger::QuotaError;
use super::shared::Core;

/// Runs rounds until the book is dropped; `wake` (the core's) cuts a wait short.
pub async fn run(core: Weak<Core>, wake: Arc<Notify>, interval: Duration) {
    loop {
        let woken = wake.notified();
        tokio::pin!(woken);
        // Registered before waiting, so a wake-up between rounds is not lost.
        woken.as_mut().enable();
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = woken => {}
        }
        let Some(core) = core.upgrade() else {
            return;
        };
        if let Err(error) = round(&core, false).await {
            tracing::warn!(%error, "settling quota leases failed; retrying next round");
        }
    }
}

/// One round; with `closing`, every lease is retired first (shutdown). Returns how many
/// leases remain open.
pub async fn round(core: &Core, closing: bool) -> Result<usize, QuotaError> {
    let now = Instant::now();
    let mut batch: Vec<(Arc<LocalLease>, Settlement)> = Vec::new();
    {
        let mut leases = core.registry();
        leases.retain(|lease| {
            if closing || lease.is_due(now) {
                lease.retire();
            }
            if lease.is_retired() && lease.in_flight() == 0 {
                let actual = lease.take_unsent();
                let close = Settlement {
                    lease: lease.id(),
                    actual,
                    close: true,
                };
                batch.push((lease.clone(), close));
                return false;
            }
            if lease.is_expired(now) {
                tracing::debug!(lease = lease.id(), "lease expired with requests in flight");
                return false;
            }
            let actual = lease.take_unsent();
            if actual > 0 {
                let settle = Settlement {
                    lease: lease.id(),
                    actual,
                    close: false,
                };
                batch.push((lease.clone(), settle));
            }
            true
        });
    }
    core.batch_started();
    if batch.is_empty() {
        return Ok(core.registry().len());
    }
    let settlements = batch.iter().map(|(_, s)| *s).collect();
    if let Err(error) = core.settle(settlements).await {
        let mut leases = core.registry();
        for (lease, settlement) in batch {
            lease.restore_unsent(settlement.actual);
            if settlement.close {
                leases.push(lease);
            }
        }
        return Err(error);
    }
    Ok(core.registry().len())
}
