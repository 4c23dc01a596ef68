//! The ledger's state machine, pure: [`apply`]`(state, command, now) -> outcome`.
//!
//! [`LedgerState`] is everything the ledger agrees on: endpoints, prices, sealed provider
//! credentials, hashed gateway keys, teams, users, budgets with their window usage, and the
//! quota leases held by edges. It changes only through [`apply`], which does no I/O, reads
//! no clock and draws no randomness, so every Raft member applying the same log reaches the
//! same state, and a snapshot is just the serialized state.
//!
//! Time: each log entry carries the leader's clock (`now`, Unix ms). The state keeps the
//! largest time it has seen and uses `max(seen, now)`, so a new leader whose clock runs
//! behind can never move a budget back into an earlier window and reset its usage.
//!
//! Revisions: `revision` goes up by one for every command (or batch) that changed anything;
//! `config_revision` is the revision of the last config change (endpoints, prices,
//! credentials, keys, teams, users, budgets, policy), which is what edges watch. Lease
//! traffic bumps only `revision`.
//!
//! Module map: [`window`] (UTC windows), [`config`] (endpoints, prices, teams, users),
//! [`credential`] (sealed provider credentials), [`keys`] (gateway keys), [`budget`]
//! (budgets, scopes, usage), [`lease`] (grant, settle, expire), [`command`] (commands and
//! effects), [`error`], [`invariants`] (the checks property tests run after every step).

pub mod budget;
pub mod command;
pub mod config;
pub mod credential;
pub mod error;
pub mod invariants;
pub mod keys;
pub mod lease;
pub mod window;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use budget::{Action, Budget, BudgetSpec, Metric, Scope, Subject, WindowUsage};
pub use command::{Applied, Command, Effect, Proposal};
pub use config::{
    EndpointKind, EndpointSpec, ModelPrice, PriceEntry, TargetCredential, TargetSpec, Team,
    TokenCounts, User,
};
pub use credential::{CredentialSecret, MaskedCredential, ProviderCredential, RevealedCredential};
pub use error::{LedgerError, ObjectKind};
pub use invariants::InvariantViolation;
pub use keys::{GatewayKey, GeneratedKey, KeyHash, KeyRejected, NewKey, generate_key};
pub use lease::{
    Alert, ExpiredLease, Lease, LeaseId, LeasePolicy, LeaseRequest, PendingAlert, Refusal,
    SettleResult, Settlement, lease_size,
};
pub use window::{UnixMillis, Window};

/// The result of applying one command: what it did, or why it was refused.
pub type Outcome = Result<Applied, LedgerError>;

/// Everything the ledger agrees on. Serializable as a whole (the Raft snapshot); changed
/// only by [`apply`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerState {
    revision: u64,
    config_revision: u64,
    clock: UnixMillis,
    endpoints: BTreeMap<String, EndpointSpec>,
    prices: BTreeMap<String, PriceEntry>,
    credentials: BTreeMap<String, ProviderCredential>,
    teams: BTreeMap<String, Team>,
    users: BTreeMap<String, User>,
    keys: BTreeMap<String, GatewayKey>,
    key_hashes: BTreeMap<KeyHash, String>,
    budgets: BTreeMap<String, Budget>,
    leases: BTreeMap<LeaseId, Lease>,
    next_lease: LeaseId,
    lease_policy: LeasePolicy,
}

/// What kind of change a command made, for the revision counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Change {
    /// Nothing changed.
    None,
    /// Only lease and usage accounting changed.
    Lease,
    /// Config changed (and possibly accounting).
    Config,
}

/// Applies one command at time `now` (the log entry's timestamp, Unix ms). Deterministic:
/// the same state, command and time always give the same new state and outcome. A refused
/// command leaves the state as it was, apart from the clock having seen `now`.
pub fn apply(state: &mut LedgerState, command: Command, now: UnixMillis) -> Outcome {
    state.clock = state.clock.max(now);
    let now = state.clock;
    let (effect, change) = match command {
        Command::Batch(commands) => apply_batch(state, commands, now)?,
        command => apply_one(state, command, now)?,
    };
    if change != Change::None {
        state.revision += 1;
        if change == Change::Config {
            state.config_revision = state.revision;
        }
    }
    Ok(Applied {
        revision: state.revision,
        effect,
    })
}

/// Applies a stamped log entry: [`apply`] at the entry's time.
pub fn apply_proposal(state: &mut LedgerState, proposal: Proposal) -> Outcome {
    apply(state, proposal.command, proposal.at)
}

fn apply_batch(
    state: &mut LedgerState,
    commands: Vec<Command>,
    now: UnixMillis,
) -> Result<(Effect, Change), LedgerError> {
    let mut draft = state.clone();
    let mut effects = Vec::with_capacity(commands.len());
    let mut change = Change::None;
    for (index, command) in commands.into_iter().enumerate() {
        if matches!(command, Command::Batch(_)) {
            return Err(LedgerError::Batch {
                index,
                error: Box::new(LedgerError::NestedBatch),
            });
        }
        let (effect, one) =
            apply_one(&mut draft, command, now).map_err(|error| LedgerError::Batch {
                index,
                error: Box::new(error),
            })?;
        effects.push(effect);
        change = change.max(one);
    }
    *state = draft;
    Ok((Effect::Batch(effects), change))
}

fn written(change: Change) -> (Effect, Change) {
    (
        Effect::Written {
            changed: change != Change::None,
        },
        change,
    )
}

fn apply_one(
    state: &mut LedgerState,
    command: Command,
    now: UnixMillis,
) -> Result<(Effect, Change), LedgerError> {
    let change = match command {
        Command::PutEndpoint(spec) => config::put_endpoint(state, spec)?,
        Command::DeleteEndpoint { name } => config::delete_endpoint(state, &name)?,
        Command::PutPrice(entry) => config::put_price(state, entry)?,
        Command::DeletePrice { provider, model } => {
            config::delete_price(state, provider.as_deref(), &model)?
        }
        Command::PutCredential(credential) => credential::put_credential(state, credential)?,
        Command::DeleteCredential { name } => credential::delete_credential(state, &name)?,
        Command::PutTeam(team) => config::put_team(state, team)?,
        Command::DeleteTeam { id } => config::delete_team(state, &id)?,
        Command::PutUser(user) => config::put_user(state, user)?,
        Command::DeleteUser { id } => config::delete_user(state, &id)?,
        Command::CreateKey(new) => keys::create_key(state, new, now)?,
        Command::RevokeKey { id } => keys::revoke_key(state, &id, now)?,
        Command::DeleteKey { id } => keys::delete_key(state, &id)?,
        Command::PutBudget(spec) => budget::put_budget(state, spec, now)?,
        Command::DeleteBudget { id } => budget::delete_budget(state, &id)?,
        Command::SetLeasePolicy(policy) => {
            policy.check()?;
            if state.lease_policy == policy {
                Change::None
            } else {
                state.lease_policy = policy;
                Change::Config
            }
        }
        Command::GrantLease(request) => {
            let (granted, change) = lease::grant(state, request, now)?;
            let effect = match granted {
                lease::Granted::Lease(lease) => Effect::Granted(lease),
                lease::Granted::Refused(refusal) => Effect::Refused(refusal),
            };
            return Ok((effect, change));
        }
        Command::Settle { settlements } => {
            let (results, alerts, change) = lease::settle(state, settlements, now);
            return Ok((Effect::Settled { results, alerts }, change));
        }
        Command::AlertDelivered {
            budget,
            window_start,
        } => budget::alert_delivered(state, &budget, window_start)?,
        Command::ExpireLeases => {
            let (leases, alerts, change) = lease::expire(state, now);
            return Ok((Effect::Expired { leases, alerts }, change));
        }
        Command::Batch(_) => return Err(LedgerError::NestedBatch),
    };
    Ok(written(change))
}

impl LedgerState {
    /// An empty ledger (revision 0).
    pub fn new() -> Self {
        Self::default()
    }

    /// Revision: bumped by every command that changed anything.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Revision of the last config change (what edges need to reload).
    pub fn config_revision(&self) -> u64 {
        self.config_revision
    }

    /// The latest time the ledger has applied (Unix ms).
    pub fn clock(&self) -> UnixMillis {
        self.clock
    }

    /// Endpoints by name.
    pub fn endpoints(&self) -> &BTreeMap<String, EndpointSpec> {
        &self.endpoints
    }

    /// Price table entries by `provider/model` (`*` for any provider).
    pub fn prices(&self) -> &BTreeMap<String, PriceEntry> {
        &self.prices
    }

    /// Sealed provider credentials by name (show them with [`ProviderCredential::masked`]).
    pub fn credentials(&self) -> &BTreeMap<String, ProviderCredential> {
        &self.credentials
    }

    /// Teams by id.
    pub fn teams(&self) -> &BTreeMap<String, Team> {
        &self.teams
    }

    /// Users by id.
    pub fn users(&self) -> &BTreeMap<String, User> {
        &self.users
    }

    /// Gateway keys by id.
    pub fn keys(&self) -> &BTreeMap<String, GatewayKey> {
        &self.keys
    }

    /// Budgets by id, with their current window's usage.
    pub fn budgets(&self) -> &BTreeMap<String, Budget> {
        &self.budgets
    }

    /// Live leases by id.
    pub fn leases(&self) -> &BTreeMap<LeaseId, Lease> {
        &self.leases
    }

    /// Whether [`Command::ExpireLeases`] applied at `now` (Unix ms; never before the
    /// ledger's clock) would change anything: a live lease has reached its expiry, or a
    /// budget's window has passed. Cheap, and reads only.
    pub fn expiry_due(&self, now: UnixMillis) -> bool {
        lease::expiry_due(self, now.max(self.clock))
    }

    /// Alerts that fired in their budget's current window and still wait for their
    /// webhook: `alert` budgets with a webhook, crossed, not yet delivered.
    pub fn pending_alerts(&self) -> Vec<PendingAlert> {
        self.budgets
            .values()
            .filter(|b| b.usage.alerted && !b.usage.alert_delivered)
            .filter_map(|b| {
                Some(PendingAlert {
                    webhook: b.spec.webhook.clone()?,
                    alert: Alert {
                        budget: b.spec.id.clone(),
                        window_start: b.usage.window_start,
                        settled: b.usage.settled,
                        limit: b.spec.limit,
                    },
                    window_end: b.usage.window_end,
                    metric: b.spec.metric,
                })
            })
            .collect()
    }

    /// The lease sizing policy.
    pub fn lease_policy(&self) -> &LeasePolicy {
        &self.lease_policy
    }
}
