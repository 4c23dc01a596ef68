//! The ledger's invariants, checkable on any state: the spending guarantee and the
//! bookkeeping it rests on. Property tests run [`LedgerState::check_invariants`] after every
//! command; the store may run it after installing a snapshot.

use std::collections::BTreeMap;

use super::LedgerState;
use super::budget::Action;

/// An invariant that does not hold, described for a test failure or a log line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ledger invariant violated: {0}")]
pub struct InvariantViolation(pub String);

impl LedgerState {
    /// Checks, for every budget and lease:
    ///
    /// * **spend never exceeds a budget**: for a `reject` budget,
    ///   `settled + outstanding ≤ limit` in its current window;
    /// * a budget's `outstanding` is exactly what its live leases hold, and those leases
    ///   belong to its current window, expire no later than its end, and name it;
    /// * every lease holds at most what it was granted, minus what it settled;
    /// * lease ids are below the next id to assign;
    /// * the key hash index and the keys agree;
    /// * the revision counters are ordered.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        let fail = |message: String| Err(InvariantViolation(message));
        if self.config_revision > self.revision {
            return fail(format!(
                "config revision {} above revision {}",
                self.config_revision, self.revision
            ));
        }
        let mut held_by_budget: BTreeMap<&str, u128> = BTreeMap::new();
        for (id, lease) in &self.leases {
            if *id != lease.id || *id >= self.next_lease {
                return fail(format!(
                    "lease {id} has id {} (next {})",
                    lease.id, self.next_lease
                ));
            }
            if u128::from(lease.held) + u128::from(lease.settled) > u128::from(lease.granted) {
                return fail(format!(
                    "lease {id} holds {} and settled {} of {} granted",
                    lease.held, lease.settled, lease.granted
                ));
            }
            let Some(budget) = self.budgets.get(&lease.budget) else {
                return fail(format!(
                    "lease {id} names missing budget `{}`",
                    lease.budget
                ));
            };
            if !budget.leases.contains(id) {
                return fail(format!(
                    "budget `{}` does not list lease {id}",
                    lease.budget
                ));
            }
            if lease.window_start != budget.usage.window_start
                || lease.expires_at > budget.usage.window_end
            {
                return fail(format!(
                    "lease {id} (window {}, expires {}) outside budget `{}` window [{}, {})",
                    lease.window_start,
                    lease.expires_at,
                    lease.budget,
                    budget.usage.window_start,
                    budget.usage.window_end
                ));
            }
            *held_by_budget.entry(lease.budget.as_str()).or_default() += u128::from(lease.held);
        }
        for (id, budget) in &self.budgets {
            if *id != budget.spec.id {
                return fail(format!("budget `{id}` has id `{}`", budget.spec.id));
            }
            for lease in &budget.leases {
                if !self.leases.contains_key(lease) {
                    return fail(format!("budget `{id}` lists missing lease {lease}"));
                }
            }
            let held = held_by_budget.get(id.as_str()).copied().unwrap_or(0);
            let usage = &budget.usage;
            if u128::from(usage.outstanding) != held {
                return fail(format!(
                    "budget `{id}` outstanding {} but its leases hold {held}",
                    usage.outstanding
                ));
            }
            let (start, end) = budget.spec.window.bounds(usage.window_start);
            if (start, end) != (usage.window_start, usage.window_end) {
                return fail(format!(
                    "budget `{id}` window [{}, {}) is not a {} window",
                    usage.window_start,
                    usage.window_end,
                    budget.spec.window.name()
                ));
            }
            let used = u128::from(usage.settled) + u128::from(usage.outstanding);
            if budget.spec.action == Action::Reject && used > u128::from(budget.spec.limit) {
                return fail(format!(
                    "budget `{id}`: settled {} + outstanding {} > limit {}",
                    usage.settled, usage.outstanding, budget.spec.limit
                ));
            }
        }
        if self.key_hashes.len() != self.keys.len() {
            return fail(format!(
                "{} key hashes for {} keys",
                self.key_hashes.len(),
                self.keys.len()
            ));
        }
        for (hash, id) in &self.key_hashes {
            if self.keys.get(id).map(|k| k.hash) != Some(*hash) {
                return fail(format!("key hash index points {hash:?} at `{id}`"));
            }
        }
        Ok(())
    }
}
