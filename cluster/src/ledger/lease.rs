//! Quota leases: reserve, then settle.
//!
//! An edge asks for a slice of a budget's current window (`GrantLease`); the ledger grants
//! `min(asked, limit − settled − outstanding)`, further capped by an adaptive size
//! ([`lease_size`]). The edge spends from the slice locally, then settles the actual usage
//! (`Settle`, batched), which frees the rest. A lease not settled by its expiry is charged
//! in full (`ExpireLeases`), so an edge that vanishes can only under-use a budget.
//!
//! A lease never outlives its window: its expiry is capped at the window's end, and when a
//! budget rolls into a new window the old window's leases are dropped with the old
//! window's usage. A late settlement of a dropped lease answers [`SettleResult::Unknown`]
//! and charges nothing, which is safe: the old window is closed.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::budget::{Action, Budget, Metric, WindowUsage};
use super::config::check_id;
use super::error::{LedgerError, ObjectKind};
use super::window::UnixMillis;
use super::{Change, LedgerState};

/// A lease's id: assigned by the ledger from a counter, so replay assigns the same ids.
pub type LeaseId = u64;

/// How leases are sized and how long they may live. Held in the state (changed by
/// [`super::Command::SetLeasePolicy`]) so every member sizes leases identically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeasePolicy {
    /// Largest single grant, in thousandths of the budget's limit (1..=1000).
    pub max_grant_permille: u32,
    /// A grant is at most `remaining / (spread × holders)`, where `holders` counts the
    /// edges holding leases on the budget, the asking edge included (at least 1).
    pub spread: u32,
    /// Longest lease, in milliseconds.
    pub max_ttl_ms: u64,
}

impl Default for LeasePolicy {
    fn default() -> Self {
        Self {
            max_grant_permille: 100,
            spread: 2,
            max_ttl_ms: 300_000,
        }
    }
}

impl LeasePolicy {
    pub(super) fn check(&self) -> Result<(), LedgerError> {
        if !(1..=1000).contains(&self.max_grant_permille) {
            return Err(LedgerError::invalid(
                "lease_policy.max_grant_permille",
                format!("{} is not in 1..=1000", self.max_grant_permille),
            ));
        }
        if self.spread == 0 {
            return Err(LedgerError::invalid(
                "lease_policy.spread",
                "must be at least 1",
            ));
        }
        if self.max_ttl_ms == 0 {
            return Err(LedgerError::invalid(
                "lease_policy.max_ttl_ms",
                "must be greater than 0",
            ));
        }
        Ok(())
    }
}

/// The size of a grant on a `reject` budget; 0 means refuse.
///
/// * never more than `asked` nor `remaining` (the invariant),
/// * large while much is left, small near the limit: at most
///   `remaining / (spread × holders)` — a fair share of what is left for each edge holding a
///   lease — and at most `max_grant_permille` of the limit, so a crashed edge strands little,
/// * at least `at_least` (the asking request's worst case) or nothing, and at least 1.
pub fn lease_size(
    policy: &LeasePolicy,
    limit: u64,
    remaining: u64,
    holders: usize,
    asked: u64,
    at_least: u64,
) -> u64 {
    if asked == 0 || remaining == 0 || remaining < at_least {
        return 0;
    }
    let by_limit = u128::from(limit) * u128::from(policy.max_grant_permille) / 1000;
    let share = u128::from(remaining)
        / (u128::from(policy.spread.max(1)) * u128::try_from(holders.max(1)).unwrap_or(u128::MAX));
    let adaptive = u64::try_from(by_limit.min(share))
        .unwrap_or(u64::MAX)
        .max(1);
    adaptive.max(at_least).min(asked).min(remaining)
}

/// A slice of a budget's window held by one edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Id.
    pub id: LeaseId,
    /// The budget it draws from.
    pub budget: String,
    /// The edge holding it.
    pub edge_id: String,
    /// The window it belongs to (its budget's `window_start` when granted).
    pub window_start: UnixMillis,
    /// Amount granted.
    pub granted: u64,
    /// Amount still held (counted in the budget's `outstanding`).
    pub held: u64,
    /// Amount charged so far by partial settlements.
    pub settled: u64,
    /// Grant time.
    pub granted_at: UnixMillis,
    /// From this instant the lease is charged in full; never past its window's end.
    /// Edges stop spending from it a little earlier to allow for clock skew.
    pub expires_at: UnixMillis,
}

/// The `GrantLease` command's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRequest {
    /// Budget to draw from.
    pub budget: String,
    /// Asking edge.
    pub edge_id: String,
    /// Amount wanted.
    pub asked: u64,
    /// Smallest useful amount (the pending request's worst case); less is refused.
    pub at_least: u64,
    /// Wanted lifetime in milliseconds (capped by the policy and the window's end).
    pub ttl_ms: u64,
}

/// Why a lease was not granted. Not an error: the budget is (nearly) exhausted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The budget.
    pub budget: String,
    /// What is left to grant.
    pub remaining: u64,
    /// When asking again may succeed: the next lease expiry if leases are outstanding
    /// (they may free capacity), else the window's end; `None` for an exhausted `total`.
    pub retry_at: Option<UnixMillis>,
}

/// One settlement in a `Settle` batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// The lease.
    pub lease: LeaseId,
    /// Actual usage to charge (at most what the lease holds; any excess is recorded as
    /// overrun, not charged).
    pub actual: u64,
    /// Release the rest and end the lease; `false` keeps it open for more spending.
    pub close: bool,
}

/// What one settlement did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SettleResult {
    /// Charged.
    Settled {
        /// The lease.
        lease: LeaseId,
        /// Amount charged.
        charged: u64,
        /// Amount freed (when closed).
        released: u64,
        /// Reported beyond what the lease held.
        excess: u64,
        /// Whether the lease ended.
        closed: bool,
    },
    /// No such lease: already settled, expired, dropped at a window rollover, or its budget
    /// deleted. Nothing charged.
    Unknown {
        /// The lease.
        lease: LeaseId,
    },
}

/// A lease charged in full at expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiredLease {
    /// The lease.
    pub lease: LeaseId,
    /// Its budget.
    pub budget: String,
    /// The edge that held it.
    pub edge_id: String,
    /// Amount charged (all it still held).
    pub charged: u64,
}

/// The first crossing of an `alert` budget's limit in a window: call its webhook once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// The budget.
    pub budget: String,
    /// The window.
    pub window_start: UnixMillis,
    /// Settled when it fired.
    pub settled: u64,
    /// The limit crossed.
    pub limit: u64,
}

/// An alert waiting for its webhook (see [`LedgerState::pending_alerts`]): what the leader
/// POSTs, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAlert {
    /// Where to send it.
    #[serde(skip)]
    pub webhook: String,
    /// The crossing.
    #[serde(flatten)]
    pub alert: Alert,
    /// End of the window (exclusive).
    pub window_end: UnixMillis,
    /// What the budget counts.
    pub metric: Metric,
}

/// Moves a budget into the window containing `now`: a new window starts with nothing
/// settled or outstanding, and the old window's leases are dropped. True when it rolled.
pub(super) fn roll_budget(state: &mut LedgerState, id: &str, now: UnixMillis) -> bool {
    let Some(budget) = state.budgets.get_mut(id) else {
        return false;
    };
    if !budget.is_stale(now) {
        return false;
    }
    budget.usage = WindowUsage::fresh(budget.spec.window, now);
    for lease in std::mem::take(&mut budget.leases) {
        state.leases.remove(&lease);
    }
    true
}

fn alert_if_crossed(budget: &mut Budget) -> Option<Alert> {
    let crossed = budget.spec.action == Action::Alert
        && !budget.usage.alerted
        && budget.usage.settled >= budget.spec.limit;
    if !crossed {
        return None;
    }
    budget.usage.alerted = true;
    Some(Alert {
        budget: budget.spec.id.clone(),
        window_start: budget.usage.window_start,
        settled: budget.usage.settled,
        limit: budget.spec.limit,
    })
}

/// Outcome of [`grant`].
pub(super) enum Granted {
    Lease(Lease),
    Refused(Refusal),
}

pub(super) fn grant(
    state: &mut LedgerState,
    request: LeaseRequest,
    now: UnixMillis,
) -> Result<(Granted, Change), LedgerError> {
    check_id("lease.edge_id", &request.edge_id)?;
    if request.asked == 0 {
        return Err(LedgerError::invalid(
            "lease.asked",
            "must be greater than 0",
        ));
    }
    if request.at_least > request.asked {
        return Err(LedgerError::invalid(
            "lease.at_least",
            format!(
                "{} is more than asked ({})",
                request.at_least, request.asked
            ),
        ));
    }
    if request.ttl_ms == 0 {
        return Err(LedgerError::invalid(
            "lease.ttl_ms",
            "must be greater than 0",
        ));
    }
    if !state.budgets.contains_key(&request.budget) {
        return Err(LedgerError::not_found(ObjectKind::Budget, request.budget));
    }
    let rolled = roll_budget(state, &request.budget, now);
    let policy = state.lease_policy;
    let Some(budget) = state.budgets.get_mut(&request.budget) else {
        return Err(LedgerError::not_found(ObjectKind::Budget, request.budget));
    };
    let size = match budget.spec.action {
        Action::Reject => {
            let mut holders: BTreeSet<&str> = budget
                .leases
                .iter()
                .filter_map(|id| state.leases.get(id))
                .map(|l| l.edge_id.as_str())
                .collect();
            holders.insert(&request.edge_id);
            lease_size(
                &policy,
                budget.spec.limit,
                budget.remaining(),
                holders.len(),
                request.asked,
                request.at_least,
            )
        }
        // Alert budgets do not limit: grant what is asked, within the counters' range.
        Action::Alert => request.asked.min(u64::MAX - budget.usage.used()),
    };
    let change = if rolled { Change::Lease } else { Change::None };
    if size == 0 {
        let next_expiry = budget
            .leases
            .iter()
            .filter_map(|id| state.leases.get(id))
            .map(|l| l.expires_at)
            .min();
        let retry_at = next_expiry
            .or((budget.usage.window_end != u64::MAX).then_some(budget.usage.window_end));
        let refusal = Refusal {
            budget: request.budget,
            remaining: budget.remaining(),
            retry_at,
        };
        return Ok((Granted::Refused(refusal), change));
    }
    let id = state.next_lease;
    state.next_lease += 1;
    let ttl = request.ttl_ms.min(policy.max_ttl_ms);
    let lease = Lease {
        id,
        budget: request.budget,
        edge_id: request.edge_id,
        window_start: budget.usage.window_start,
        granted: size,
        held: size,
        settled: 0,
        granted_at: now,
        expires_at: now.saturating_add(ttl).min(budget.usage.window_end),
    };
    budget.usage.outstanding += size;
    budget.leases.insert(id);
    state.leases.insert(id, lease.clone());
    Ok((Granted::Lease(lease), Change::Lease))
}

pub(super) fn settle(
    state: &mut LedgerState,
    settlements: Vec<Settlement>,
    now: UnixMillis,
) -> (Vec<SettleResult>, Vec<Alert>, Change) {
    let mut results = Vec::with_capacity(settlements.len());
    let mut alerts = Vec::new();
    let mut change = Change::None;
    for settlement in settlements {
        if let Some(budget) = state
            .leases
            .get(&settlement.lease)
            .map(|l| l.budget.clone())
            && roll_budget(state, &budget, now)
        {
            change = Change::Lease;
        }
        let Some(lease) = state.leases.get_mut(&settlement.lease) else {
            results.push(SettleResult::Unknown {
                lease: settlement.lease,
            });
            continue;
        };
        let Some(budget) = state.budgets.get_mut(&lease.budget) else {
            results.push(SettleResult::Unknown {
                lease: settlement.lease,
            });
            continue;
        };
        let charged = settlement.actual.min(lease.held);
        let excess = settlement.actual - charged;
        if charged > 0 || excess > 0 || settlement.close {
            change = Change::Lease;
        }
        lease.held -= charged;
        lease.settled += charged;
        budget.usage.outstanding = budget.usage.outstanding.saturating_sub(charged);
        budget.usage.settled = budget.usage.settled.saturating_add(charged);
        budget.usage.overrun = budget.usage.overrun.saturating_add(excess);
        let released = if settlement.close { lease.held } else { 0 };
        if settlement.close {
            budget.usage.outstanding = budget.usage.outstanding.saturating_sub(released);
            budget.leases.remove(&settlement.lease);
            state.leases.remove(&settlement.lease);
        }
        if charged > 0
            && let Some(alert) = alert_if_crossed(budget)
        {
            alerts.push(alert);
        }
        results.push(SettleResult::Settled {
            lease: settlement.lease,
            charged,
            released,
            excess,
            closed: settlement.close,
        });
    }
    (results, alerts, change)
}

/// Whether `ExpireLeases` at `now` would change anything: a live lease whose expiry has
/// passed, or a budget whose window has. Reads only; the leader's expiry timer asks this
/// before it proposes, so an idle ledger writes no log entries.
pub(super) fn expiry_due(state: &LedgerState, now: UnixMillis) -> bool {
    state.leases.values().any(|lease| lease.expires_at <= now)
        || state.budgets.values().any(|budget| budget.is_stale(now))
}

pub(super) fn expire(
    state: &mut LedgerState,
    now: UnixMillis,
) -> (Vec<ExpiredLease>, Vec<Alert>, Change) {
    let mut change = Change::None;
    let ids: Vec<String> = state.budgets.keys().cloned().collect();
    for id in &ids {
        if roll_budget(state, id, now) {
            change = Change::Lease;
        }
    }
    let due: Vec<LeaseId> = state
        .leases
        .values()
        .filter(|l| l.expires_at <= now)
        .map(|l| l.id)
        .collect();
    let mut expired = Vec::with_capacity(due.len());
    let mut alerts = Vec::new();
    for id in due {
        let Some(lease) = state.leases.remove(&id) else {
            continue;
        };
        change = Change::Lease;
        if let Some(budget) = state.budgets.get_mut(&lease.budget) {
            budget.leases.remove(&id);
            budget.usage.outstanding = budget.usage.outstanding.saturating_sub(lease.held);
            budget.usage.settled = budget.usage.settled.saturating_add(lease.held);
            if lease.held > 0
                && let Some(alert) = alert_if_crossed(budget)
            {
                alerts.push(alert);
            }
        }
        expired.push(ExpiredLease {
            lease: id,
            budget: lease.budget,
            edge_id: lease.edge_id,
            charged: lease.held,
        });
    }
    (expired, alerts, change)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: LeasePolicy = LeasePolicy {
        max_grant_permille: 100,
        spread: 2,
        max_ttl_ms: 300_000,
    };

    #[test]
    fn large_while_much_is_left_small_near_the_limit() {
        // $500 budget, untouched: capped at 10% of the limit.
        assert_eq!(
            lease_size(&POLICY, 500_000_000, 500_000_000, 1, u64::MAX, 0),
            50_000_000
        );
        // Asking for less gets what was asked.
        assert_eq!(
            lease_size(&POLICY, 500_000_000, 500_000_000, 1, 1_000, 0),
            1_000
        );
        // Near the limit, half of what is left.
        assert_eq!(
            lease_size(&POLICY, 500_000_000, 10_000, 1, u64::MAX, 0),
            5_000
        );
        // At the very end, still at least 1 while anything is left.
        assert_eq!(lease_size(&POLICY, 500_000_000, 1, 1, u64::MAX, 0), 1);
        assert_eq!(lease_size(&POLICY, 500_000_000, 0, 1, u64::MAX, 0), 0);
    }

    #[test]
    fn fair_across_holders() {
        // Four edges share what is left: each gets an eighth of it.
        assert_eq!(
            lease_size(&POLICY, 1_000_000, 80_000, 4, u64::MAX, 0),
            10_000
        );
        assert_eq!(
            lease_size(&POLICY, 1_000_000, 80_000, 1, u64::MAX, 0),
            40_000
        );
    }

    #[test]
    fn at_least_or_nothing() {
        // The pending request needs 30_000: granted even above the fair share …
        assert_eq!(
            lease_size(&POLICY, 1_000_000, 40_000, 4, 50_000, 30_000),
            30_000
        );
        // … but never above what is left.
        assert_eq!(lease_size(&POLICY, 1_000_000, 20_000, 1, 50_000, 30_000), 0);
        // Small rate limits still grant one request at a time.
        assert_eq!(lease_size(&POLICY, 10, 10, 3, 5, 1), 1);
    }

    #[test]
    fn policy_checks() {
        assert!(POLICY.check().is_ok());
        assert!(
            LeasePolicy {
                spread: 0,
                ..POLICY
            }
            .check()
            .is_err()
        );
        assert!(
            LeasePolicy {
                max_grant_permille: 1001,
                ..POLICY
            }
            .check()
            .is_err()
        );
    }
}
