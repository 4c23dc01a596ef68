//! [`Reservation`]: what one request holds on each budget that applies to it, from before
//! the upstream call until it settles — exactly once, by [`Reservation::settle`], or by
//! `Drop` charging the whole reservation (a request dropped without a verdict may have
//! been billed in full).
//!
//! Settling charges the actual usage to the leases the request reserved from and returns
//! the unused part to them for later requests; the settlement task sends the charges to
//! the ledger in batches.

use std::sync::Arc;

use floodgate_cluster::ledger::Metric;

use super::lease::LocalLease;
use super::shared::Core;

/// What a finished request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// The provider reported usage: these tokens, at this cost (`None`: unpriced, charged
    /// in full on USD budgets).
    Used {
        /// Input plus output tokens.
        tokens: u64,
        /// Cost in micro-dollars.
        micros: Option<u64>,
    },
    /// Tried, but no provider billed anything (every attempt answered an error): one
    /// request, nothing else.
    Failed,
    /// Never sent upstream (refused before any attempt): nothing at all.
    Refused,
    /// Unknown (cancelled or cut off with no usage reported): everything reserved.
    Full,
}

/// One budget's share of a reservation: the parts reserved, possibly from several leases
/// (a fallback to a pricier target grows it).
#[derive(Debug)]
struct Hold {
    metric: Metric,
    parts: Vec<(Arc<LocalLease>, u64)>,
}

/// A request's reservations on every budget that applies to it.
#[derive(Debug)]
pub struct Reservation {
    core: Arc<Core>,
    holds: Vec<Hold>,
    settled: bool,
}

impl Reservation {
    /// An empty reservation.
    pub fn new(core: Arc<Core>) -> Self {
        Self {
            core,
            holds: Vec::new(),
            settled: false,
        }
    }

    /// Number of budgets held.
    pub fn holds(&self) -> usize {
        self.holds.len()
    }

    /// Amount held on the `index`-th budget (in the order budgets were first added).
    pub fn held(&self, index: usize) -> u64 {
        self.holds
            .get(index)
            .map_or(0, |hold| hold.parts.iter().map(|(_, amount)| amount).sum())
    }

    /// Adds a hold for a budget counting `metric` (possibly empty: an `alert` budget whose
    /// lease could not be had).
    pub fn add_hold(&mut self, metric: Metric) -> usize {
        self.holds.push(Hold {
            metric,
            parts: Vec::new(),
        });
        self.holds.len() - 1
    }

    /// Records `amount` reserved from `lease` on the `index`-th budget.
    pub fn add_part(&mut self, index: usize, lease: Arc<LocalLease>, amount: u64) {
        if let Some(hold) = self.holds.get_mut(index) {
            hold.parts.push((lease, amount));
        }
    }

    /// Charges `charge` and frees the rest; only the first call (or the drop) counts.
    pub fn settle(&mut self, charge: Charge) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        for hold in &self.holds {
            let reserved: u64 = hold.parts.iter().map(|(_, amount)| amount).sum();
            let mut actual = match (charge, hold.metric) {
                (Charge::Full, _) => reserved,
                (Charge::Refused, _) => 0,
                (_, Metric::Requests) => 1,
                (Charge::Failed, _) => 0,
                (Charge::Used { tokens, .. }, Metric::Tokens) => tokens,
                (Charge::Used { micros, .. }, Metric::Micros) => micros.unwrap_or(reserved),
            };
            // Fill the parts in order; whatever exceeds them all lands on the last.
            let last = hold.parts.len().saturating_sub(1);
            for (index, (lease, amount)) in hold.parts.iter().enumerate() {
                let used = if index == last {
                    actual
                } else {
                    actual.min(*amount)
                };
                actual -= used;
                lease.finish(*amount, used);
            }
        }
        self.core.request_finished();
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.settle(Charge::Full);
    }
}
