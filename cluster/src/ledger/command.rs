//! The ledger's commands (the payload of every Raft log entry) and what applying one did.
//!
//! Commands carry no time: the proposer stamps each log entry with the leader's clock and
//! [`super::apply`] receives it, so `ExpireLeases` and window rollover use that stamp and a
//! replay lands every charge in the same window. Nothing here holds a plaintext secret:
//! credentials are sealed and gateway keys hashed before a command is built.

use serde::{Deserialize, Serialize};

use super::budget::BudgetSpec;
use super::config::{EndpointSpec, PriceEntry, Team, User};
use super::credential::ProviderCredential;
use super::keys::NewKey;
use super::lease::{
    Alert, ExpiredLease, Lease, LeasePolicy, LeaseRequest, Refusal, SettleResult, Settlement,
};
use super::window::UnixMillis;

/// A change proposed to the ledger. Every variant is validated in full before anything is
/// written: a refused command changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Creates or replaces an endpoint (identical content: no change, no new revision).
    PutEndpoint(EndpointSpec),
    /// Deletes an endpoint no key or budget refers to.
    DeleteEndpoint {
        /// The endpoint.
        name: String,
    },
    /// Creates or replaces a price table entry.
    PutPrice(PriceEntry),
    /// Deletes a price table entry.
    DeletePrice {
        /// Provider, `None` for the any-provider entry.
        provider: Option<String>,
        /// Model.
        model: String,
    },
    /// Creates or replaces a provider credential (sealed before it gets here).
    PutCredential(ProviderCredential),
    /// Deletes a credential no target uses.
    DeleteCredential {
        /// The credential.
        name: String,
    },
    /// Creates or replaces a team.
    PutTeam(Team),
    /// Deletes a team no user, key or budget refers to.
    DeleteTeam {
        /// The team.
        id: String,
    },
    /// Creates or replaces a user.
    PutUser(User),
    /// Deletes a user no key or budget refers to.
    DeleteUser {
        /// The user.
        id: String,
    },
    /// Creates a gateway key from its hash (the key itself never enters the ledger).
    CreateKey(NewKey),
    /// Revokes a key from the command's time on (idempotent).
    RevokeKey {
        /// The key.
        id: String,
    },
    /// Deletes a key no budget refers to.
    DeleteKey {
        /// The key.
        id: String,
    },
    /// Creates or updates a budget (its metric and window are fixed once created; a
    /// `reject` limit may not drop below the current window's usage).
    PutBudget(BudgetSpec),
    /// Deletes a budget and its leases.
    DeleteBudget {
        /// The budget.
        id: String,
    },
    /// Replaces the lease sizing policy.
    SetLeasePolicy(LeasePolicy),
    /// Grants an edge a lease on a budget's current window, or refuses.
    GrantLease(LeaseRequest),
    /// Settles a batch of leases (each item independent; unknown leases are reported).
    Settle {
        /// The settlements, applied in order.
        settlements: Vec<Settlement>,
    },
    /// Records that an alert reached its budget's webhook (the leader proposes it after the
    /// webhook answered), so no leader calls it again for that window.
    AlertDelivered {
        /// The budget.
        budget: String,
        /// The window whose alert was delivered.
        window_start: UnixMillis,
    },
    /// Rolls every budget into the current window and charges in full every lease whose
    /// expiry has passed (at the entry's time). The leader proposes it periodically.
    ExpireLeases,
    /// Applies several commands atomically with one new revision: all or nothing. Cannot
    /// contain another batch.
    Batch(Vec<Command>),
}

impl Command {
    /// A stable, low-cardinality name (for logs and metrics).
    pub fn name(&self) -> &'static str {
        match self {
            Self::PutEndpoint(_) => "put_endpoint",
            Self::DeleteEndpoint { .. } => "delete_endpoint",
            Self::PutPrice(_) => "put_price",
            Self::DeletePrice { .. } => "delete_price",
            Self::PutCredential(_) => "put_credential",
            Self::DeleteCredential { .. } => "delete_credential",
            Self::PutTeam(_) => "put_team",
            Self::DeleteTeam { .. } => "delete_team",
            Self::PutUser(_) => "put_user",
            Self::DeleteUser { .. } => "delete_user",
            Self::CreateKey(_) => "create_key",
            Self::RevokeKey { .. } => "revoke_key",
            Self::DeleteKey { .. } => "delete_key",
            Self::PutBudget(_) => "put_budget",
            Self::DeleteBudget { .. } => "delete_budget",
            Self::SetLeasePolicy(_) => "set_lease_policy",
            Self::GrantLease(_) => "grant_lease",
            Self::Settle { .. } => "settle",
            Self::AlertDelivered { .. } => "alert_delivered",
            Self::ExpireLeases => "expire_leases",
            Self::Batch(_) => "batch",
        }
    }
}

/// A Raft log entry's payload: a command stamped by the proposing leader with its clock.
/// The state machine applies it with [`super::apply_proposal`], so followers and replays
/// use the leader's time, never their own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The leader's time when it proposed the entry (Unix ms).
    pub at: UnixMillis,
    /// The command.
    pub command: Command,
}

/// What an accepted command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    /// A config command: `changed` is false when it asked for what already was.
    Written {
        /// Whether the state changed.
        changed: bool,
    },
    /// A lease was granted.
    Granted(Lease),
    /// No lease: the budget has too little left.
    Refused(Refusal),
    /// Settlements, one result per item, and any alerts they fired.
    Settled {
        /// Per settlement, in order.
        results: Vec<SettleResult>,
        /// Alert budgets crossed for the first time in their window.
        alerts: Vec<Alert>,
    },
    /// Expired leases, charged in full, and any alerts that fired.
    Expired {
        /// The leases charged.
        leases: Vec<ExpiredLease>,
        /// Alert budgets crossed for the first time in their window.
        alerts: Vec<Alert>,
    },
    /// A batch: one effect per command, in order.
    Batch(Vec<Effect>),
}

/// An accepted command: the state's revision after it, and its effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The revision after applying (unchanged if nothing changed).
    pub revision: u64,
    /// What happened.
    pub effect: Effect,
}
