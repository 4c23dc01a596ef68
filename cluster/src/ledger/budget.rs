//! Budgets and rate limits: what is counted (micro-dollars, requests or tokens), over which
//! window, for which scope, and what happens at the limit; with each budget's usage in its
//! current window. Rate limits (RPM, TPM) are budgets with a `minute` window.
//!
//! A budget's usage has two parts: `settled` (charged for good) and `outstanding` (held by
//! live leases, see [`super::lease`]). For a `reject` budget the ledger keeps
//! `settled + outstanding ≤ limit` at every step, which is the whole spending guarantee.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::config::check_id;
use super::error::{LedgerError, ObjectKind};
use super::lease::LeaseId;
use super::window::{UnixMillis, Window};
use super::{Change, LedgerState};

/// What a budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Cost in integer micro-dollars.
    Micros,
    /// Requests.
    Requests,
    /// Tokens (input plus output).
    Tokens,
}

impl Metric {
    /// The config name (`micros`, `requests`, `tokens`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Micros => "micros",
            Self::Requests => "requests",
            Self::Tokens => "tokens",
        }
    }
}

/// What happens at the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Refuse requests that could exceed it (leases are capped by the limit).
    Reject,
    /// Let traffic through; record the first crossing per window so the webhook fires once.
    Alert,
}

impl Action {
    /// The config name (`reject`, `alert`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Reject => "reject",
            Self::Alert => "alert",
        }
    }
}

/// Which requests a budget counts. Every field set must match (a combination narrows);
/// all `None` is global.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// Only requests to this endpoint.
    pub endpoint: Option<String>,
    /// Only requests by keys of this team.
    pub team: Option<String>,
    /// Only requests by keys of this user.
    pub user: Option<String>,
    /// Only requests with this key (by id).
    pub key: Option<String>,
}

/// Who made a request and what it called, for matching budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subject<'a> {
    /// Endpoint called.
    pub endpoint: &'a str,
    /// The key's team.
    pub team: Option<&'a str>,
    /// The key's user.
    pub user: Option<&'a str>,
    /// The key's id.
    pub key: Option<&'a str>,
}

impl Scope {
    /// Whether a request by `subject` counts against this scope.
    pub fn matches(&self, subject: &Subject<'_>) -> bool {
        fn field(want: &Option<String>, have: Option<&str>) -> bool {
            want.as_deref().is_none_or(|w| have == Some(w))
        }
        field(&self.endpoint, Some(subject.endpoint))
            && field(&self.team, subject.team)
            && field(&self.user, subject.user)
            && field(&self.key, subject.key)
    }

    /// True for the global scope.
    pub fn is_global(&self) -> bool {
        *self == Self::default()
    }
}

/// A budget as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetSpec {
    /// Stable id.
    pub id: String,
    /// What is counted.
    pub metric: Metric,
    /// The limit per window, in the metric's unit.
    pub limit: u64,
    /// The window.
    pub window: Window,
    /// Which requests count (global when absent).
    #[serde(default)]
    pub scope: Scope,
    /// What happens at the limit.
    pub action: Action,
    /// For `alert` budgets: the `http(s)://` URL the ledger's leader POSTs the alert to,
    /// once per window, at the first crossing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
}

/// The longest webhook URL accepted.
const MAX_WEBHOOK_LEN: usize = 2048;

/// A budget's usage in its current window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowUsage {
    /// Start of the current window (Unix ms).
    pub window_start: UnixMillis,
    /// End of the current window (exclusive).
    pub window_end: UnixMillis,
    /// Charged for good in this window.
    pub settled: u64,
    /// Held by this window's live leases.
    pub outstanding: u64,
    /// Reported beyond what leases held (an edge under-reserved); not charged, recorded.
    pub overrun: u64,
    /// Whether this window's alert already fired.
    pub alerted: bool,
    /// Whether this window's alert reached the budget's webhook (the leader records it
    /// after the webhook answered 2xx, so a new leader does not call it again).
    #[serde(default)]
    pub alert_delivered: bool,
}

impl WindowUsage {
    pub(super) fn fresh(window: Window, now: UnixMillis) -> Self {
        let (window_start, window_end) = window.bounds(now);
        Self {
            window_start,
            window_end,
            settled: 0,
            outstanding: 0,
            overrun: 0,
            alerted: false,
            alert_delivered: false,
        }
    }

    /// `settled + outstanding`, saturating.
    pub fn used(&self) -> u64 {
        self.settled.saturating_add(self.outstanding)
    }
}

/// A budget with its usage and the leases granted against it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// Configuration.
    pub spec: BudgetSpec,
    /// Usage in the current window.
    pub usage: WindowUsage,
    /// Live leases of the current window.
    pub leases: BTreeSet<LeaseId>,
}

impl Budget {
    /// What is left to grant in the current window (for `reject` budgets).
    pub fn remaining(&self) -> u64 {
        self.spec.limit.saturating_sub(self.usage.used())
    }

    /// Whether `now` lies past the current window.
    pub(super) fn is_stale(&self, now: UnixMillis) -> bool {
        self.spec.window.start(now) != self.usage.window_start
    }
}

impl LedgerState {
    /// The budgets a request by `subject` counts against.
    pub fn budgets_for<'a>(&'a self, subject: &'a Subject<'a>) -> impl Iterator<Item = &'a Budget> {
        self.budgets
            .values()
            .filter(move |b| b.spec.scope.matches(subject))
    }
}

fn check_scope(state: &LedgerState, scope: &Scope) -> Result<(), LedgerError> {
    if let Some(endpoint) = &scope.endpoint
        && !state.endpoints.contains_key(endpoint)
    {
        return Err(LedgerError::not_found(
            ObjectKind::Endpoint,
            endpoint.clone(),
        ));
    }
    if let Some(team) = &scope.team
        && !state.teams.contains_key(team)
    {
        return Err(LedgerError::not_found(ObjectKind::Team, team.clone()));
    }
    if let Some(user) = &scope.user
        && !state.users.contains_key(user)
    {
        return Err(LedgerError::not_found(ObjectKind::User, user.clone()));
    }
    if let Some(key) = &scope.key
        && !state.keys.contains_key(key)
    {
        return Err(LedgerError::not_found(ObjectKind::Key, key.clone()));
    }
    Ok(())
}

pub(super) fn put_budget(
    state: &mut LedgerState,
    spec: BudgetSpec,
    now: UnixMillis,
) -> Result<Change, LedgerError> {
    check_id("budget.id", &spec.id)?;
    check_scope(state, &spec.scope)?;
    check_webhook(&spec)?;
    let Some(existing) = state.budgets.get(&spec.id) else {
        let usage = WindowUsage::fresh(spec.window, now);
        state.budgets.insert(
            spec.id.clone(),
            Budget {
                spec,
                usage,
                leases: BTreeSet::new(),
            },
        );
        return Ok(Change::Config);
    };
    if existing.spec == spec {
        return Ok(Change::None);
    }
    let immutable = |field: &str| LedgerError::Immutable {
        budget: spec.id.clone(),
        field: field.to_owned(),
    };
    if existing.spec.metric != spec.metric {
        return Err(immutable("metric"));
    }
    if existing.spec.window != spec.window {
        return Err(immutable("window"));
    }
    // Usage as it stands at `now` (a past window no longer counts).
    let (settled, outstanding) = if existing.is_stale(now) {
        (0, 0)
    } else {
        (existing.usage.settled, existing.usage.outstanding)
    };
    if spec.action == Action::Reject && spec.limit < settled.saturating_add(outstanding) {
        return Err(LedgerError::LimitBelowUsage {
            budget: spec.id,
            limit: spec.limit,
            settled,
            outstanding,
        });
    }
    let id = spec.id.clone();
    super::lease::roll_budget(state, &id, now);
    if let Some(budget) = state.budgets.get_mut(&id) {
        budget.spec = spec;
    }
    Ok(Change::Config)
}

/// A webhook belongs to an `alert` budget and is an absolute `http(s)://` URL.
fn check_webhook(spec: &BudgetSpec) -> Result<(), LedgerError> {
    let Some(url) = &spec.webhook else {
        return Ok(());
    };
    let invalid = |reason: &str| LedgerError::Invalid {
        field: "budget.webhook".into(),
        reason: reason.into(),
    };
    if spec.action != Action::Alert {
        return Err(invalid("only `alert` budgets call a webhook"));
    }
    let host = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| invalid("must start with http:// or https://"))?;
    if host.is_empty() || host.starts_with('/') {
        return Err(invalid("has no host"));
    }
    if url.len() > MAX_WEBHOOK_LEN || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("is not a valid URL"));
    }
    Ok(())
}

/// Records that the alert of `budget`'s window starting at `window_start` reached its
/// webhook; a stale window (already rolled) changes nothing.
pub(super) fn alert_delivered(
    state: &mut LedgerState,
    budget: &str,
    window_start: UnixMillis,
) -> Result<Change, LedgerError> {
    let budget = state
        .budgets
        .get_mut(budget)
        .ok_or_else(|| LedgerError::not_found(ObjectKind::Budget, budget))?;
    let usage = &mut budget.usage;
    if usage.window_start != window_start || !usage.alerted || usage.alert_delivered {
        return Ok(Change::None);
    }
    usage.alert_delivered = true;
    Ok(Change::Lease)
}

pub(super) fn delete_budget(state: &mut LedgerState, id: &str) -> Result<Change, LedgerError> {
    let budget = state
        .budgets
        .remove(id)
        .ok_or_else(|| LedgerError::not_found(ObjectKind::Budget, id))?;
    // Its leases go with it: settling them later answers `unknown lease`.
    for lease in &budget.leases {
        state.leases.remove(lease);
    }
    Ok(Change::Config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_narrow_by_every_field_set() {
        let subject = Subject {
            endpoint: "chat",
            team: Some("research"),
            user: Some("ada"),
            key: Some("k1"),
        };
        assert!(Scope::default().matches(&subject));
        assert!(Scope::default().is_global());
        let team_chat = Scope {
            endpoint: Some("chat".into()),
            team: Some("research".into()),
            ..Scope::default()
        };
        assert!(team_chat.matches(&subject));
        assert!(!team_chat.matches(&Subject {
            endpoint: "embed",
            ..subject
        }));
        assert!(!team_chat.matches(&Subject {
            team: None,
            ..subject
        }));
        let key = Scope {
            key: Some("k2".into()),
            ..Scope::default()
        };
        assert!(!key.matches(&subject));
    }
}
