//! [`LedgerStatus`]: a member's view of the ledger for operators: revisions, the leader,
//! the membership and every budget's usage in its current window. Built from the applied
//! state and openraft's metrics; changes nothing.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::consensus::NodeId;
use crate::ledger::{Action, Budget, Metric};
use crate::{LedgerState, ledger::UnixMillis};

/// What `Status` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerStatus {
    /// The ledger revision (every change).
    pub revision: u64,
    /// The config revision (what edges reload on).
    pub config_revision: u64,
    /// The last Raft log index applied on this member (0 when none).
    pub applied_index: u64,
    /// The member answering.
    pub node_id: NodeId,
    /// The leader this member knows of.
    pub leader_id: Option<NodeId>,
    /// The ledger group's members, by id.
    pub members: Vec<MemberStatus>,
    /// Every budget, by id, with its current window's usage.
    pub budgets: Vec<BudgetStatus>,
}

/// One member of the ledger group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberStatus {
    /// Its id.
    pub id: NodeId,
    /// Its gRPC address.
    pub addr: String,
    /// A voter (else a learner).
    pub voter: bool,
}

/// One budget's usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BudgetStatus {
    /// The budget's id.
    pub id: String,
    /// What it counts.
    pub metric: Metric,
    /// Its window (`minute` ... `total`).
    pub window: &'static str,
    /// What happens at the limit.
    pub action: Action,
    /// The limit per window.
    pub limit: u64,
    /// Start of the current window (Unix ms).
    pub window_start: UnixMillis,
    /// End of the current window (exclusive).
    pub window_end: UnixMillis,
    /// Charged for good in this window.
    pub settled: u64,
    /// Held by live leases.
    pub outstanding: u64,
    /// Reported beyond what leases held.
    pub overrun: u64,
    /// Whether this window's alert fired.
    pub alerted: bool,
    /// Live leases.
    pub leases: u64,
}

impl From<&Budget> for BudgetStatus {
    fn from(budget: &Budget) -> Self {
        Self {
            id: budget.spec.id.clone(),
            metric: budget.spec.metric,
            window: budget.spec.window.name(),
            action: budget.spec.action,
            limit: budget.spec.limit,
            window_start: budget.usage.window_start,
            window_end: budget.usage.window_end,
            settled: budget.usage.settled,
            outstanding: budget.usage.outstanding,
            overrun: budget.usage.overrun,
            alerted: budget.usage.alerted,
            leases: u64::try_from(budget.leases.len()).unwrap_or(u64::MAX),
        }
    }
}

/// The membership as openraft's metrics show it.
pub(super) fn members(
    metrics: &openraft::RaftMetrics<NodeId, openraft::BasicNode>,
) -> Vec<MemberStatus> {
    let membership = metrics.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    membership
        .nodes()
        .map(|(id, node)| MemberStatus {
            id: *id,
            addr: node.addr.clone(),
            voter: voters.contains(id),
        })
        .collect()
}

/// The state's part of the status: revisions and budgets.
pub(super) fn from_state(state: &LedgerState) -> (u64, u64, Vec<BudgetStatus>) {
    (
        state.revision(),
        state.config_revision(),
        state.budgets().values().map(BudgetStatus::from).collect(),
    )
}
