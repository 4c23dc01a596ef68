//! Validation of the ledger-held parts of a config file: teams, users and budgets. Only
//! their shape is checked here; references between objects (a budget's team, a user's
//! team) are checked by the ledger when the file is applied, because the file is a base
//! that objects created through the admin API extend.

use floodgate_cluster::ledger::{Action, BudgetSpec, Metric, Scope, Window};

use super::raw::{RawBudget, RawTeam, RawUser};
use super::validate::Problems;

/// Largest USD limit accepted (a billion dollars), so micro-dollars stay far from overflow.
const MAX_USD: f64 = 1e9;

/// Checks ids of teams and users: present, unique.
pub(super) fn check_people(teams: &[RawTeam], users: &[RawUser], problems: &mut Problems) {
    let mut seen = std::collections::HashSet::new();
    for (index, team) in teams.iter().enumerate() {
        check_id(&team.id, &format!("teams[{index}].id"), problems);
        if !seen.insert(&team.id) {
            problems.add(
                format!("teams[{index}].id"),
                format!("duplicate team `{}`", team.id),
            );
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (index, user) in users.iter().enumerate() {
        check_id(&user.id, &format!("users[{index}].id"), problems);
        if !seen.insert(&user.id) {
            problems.add(
                format!("users[{index}].id"),
                format!("duplicate user `{}`", user.id),
            );
        }
    }
}

/// Validates every budget; the valid ones, in file order.
pub(super) fn budgets(raw: &[RawBudget], problems: &mut Problems) -> Vec<BudgetSpec> {
    let mut out: Vec<BudgetSpec> = Vec::with_capacity(raw.len());
    for (index, budget) in raw.iter().enumerate() {
        let path = format!("budgets[{index}]");
        if let Some(spec) = budget_spec(budget, &path, problems) {
            if out.iter().any(|other| other.id == spec.id) {
                problems.add(
                    format!("{path}.id"),
                    format!("duplicate budget `{}`", spec.id),
                );
                continue;
            }
            out.push(spec);
        }
    }
    out
}

fn budget_spec(raw: &RawBudget, path: &str, problems: &mut Problems) -> Option<BudgetSpec> {
    let before = problems.len();
    check_id(&raw.id, &format!("{path}.id"), problems);
    let limit = match (raw.limit_usd, raw.limit_requests, raw.limit_tokens) {
        (Some(usd), None, None) => usd_to_micros(usd, &format!("{path}.limit_usd"), problems)
            .map(|micros| (Metric::Micros, micros)),
        (None, Some(requests), None) => Some((Metric::Requests, requests)),
        (None, None, Some(tokens)) => Some((Metric::Tokens, tokens)),
        _ => {
            problems.add(
                path,
                "give exactly one of `limit_usd`, `limit_requests` or `limit_tokens`",
            );
            None
        }
    };
    let window = match raw.window.as_str() {
        "minute" => Some(Window::Minute),
        "hour" => Some(Window::Hour),
        "day" => Some(Window::Day),
        "week" => Some(Window::Week),
        "month" => Some(Window::Month),
        "total" => Some(Window::Total),
        other => {
            problems.add(
                format!("{path}.window"),
                format!(
                    "unknown window `{other}` (expected minute, hour, day, week, month or total)"
                ),
            );
            None
        }
    };
    let action = match raw.action.as_deref() {
        None | Some("reject") => Some(Action::Reject),
        Some("alert") => Some(Action::Alert),
        Some(other) => {
            problems.add(
                format!("{path}.action"),
                format!("unknown action `{other}` (expected reject or alert)"),
            );
            None
        }
    };
    let scope = Scope {
        endpoint: raw.scope.endpoint.clone(),
        team: raw.scope.team.clone(),
        user: raw.scope.user.clone(),
        key: raw.scope.key.clone(),
    };
    for (field, value) in [
        ("endpoint", &scope.endpoint),
        ("team", &scope.team),
        ("user", &scope.user),
        ("key", &scope.key),
    ] {
        if let Some(value) = value {
            check_id(value, &format!("{path}.scope.{field}"), problems);
        }
    }
    if let Some(url) = &raw.webhook {
        if action != Some(Action::Alert) {
            problems.add(
                format!("{path}.webhook"),
                "only `action: alert` budgets call a webhook",
            );
        } else if !(url.starts_with("https://") || url.starts_with("http://")) {
            problems.add(
                format!("{path}.webhook"),
                "must be an http:// or https:// URL",
            );
        }
    }
    let ((metric, limit), window, action) = (limit?, window?, action?);
    if problems.len() > before {
        return None;
    }
    Some(BudgetSpec {
        id: raw.id.clone(),
        metric,
        limit,
        window,
        scope,
        action,
        webhook: raw.webhook.clone(),
    })
}

/// USD to integer micro-dollars; six decimals is the precision, so rounding only removes
/// binary float noise.
fn usd_to_micros(usd: f64, path: &str, problems: &mut Problems) -> Option<u64> {
    if !usd.is_finite() || !(0.0..=MAX_USD).contains(&usd) {
        problems.add(
            path,
            format!("{usd} is not a USD amount between 0 and {MAX_USD}"),
        );
        return None;
    }
    // In range and finite: the product fits a u64 exactly after rounding.
    Some((usd * 1_000_000.0).round() as u64)
}

fn check_id(id: &str, path: &str, problems: &mut Problems) {
    if id.trim().is_empty() {
        problems.add(path, "must not be empty");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::RawScope;

    fn raw(usd: Option<f64>, requests: Option<u64>, window: &str) -> RawBudget {
        RawBudget {
            id: "b".into(),
            limit_usd: usd,
            limit_requests: requests,
            limit_tokens: None,
            window: window.into(),
            scope: RawScope::default(),
            action: None,
            webhook: None,
        }
    }

    #[test]
    fn a_webhook_belongs_to_an_alert_budget_and_is_an_http_url() {
        let mut problems = Problems::default();
        let mut alert = raw(None, Some(10), "day");
        alert.action = Some("alert".into());
        alert.webhook = Some("https://hooks.example.com/abc".into());
        let specs = budgets(std::slice::from_ref(&alert), &mut problems);
        assert_eq!(
            specs[0].webhook.as_deref(),
            Some("https://hooks.example.com/abc")
        );
        assert_eq!(problems.len(), 0);

        let mut on_reject = raw(None, Some(10), "day");
        on_reject.webhook = Some("https://hooks.example.com/abc".into());
        let mut not_http = alert.clone();
        not_http.webhook = Some("hooks.example.com/abc".into());
        for bad in [on_reject, not_http] {
            let mut problems = Problems::default();
            assert!(budgets(&[bad], &mut problems).is_empty());
            let text = problems.into_result().unwrap_err().to_string();
            assert!(text.contains("budgets[0].webhook"), "{text}");
        }
    }

    #[test]
    fn usd_limits_become_exact_micro_dollars() {
        let mut problems = Problems::default();
        let specs = budgets(&[raw(Some(0.07), None, "month")], &mut problems);
        assert_eq!(problems.len(), 0);
        assert_eq!(specs[0].limit, 70_000);
        assert_eq!(specs[0].metric, Metric::Micros);
        assert_eq!(specs[0].action, Action::Reject);
    }

    #[test]
    fn a_budget_needs_exactly_one_limit_and_a_known_window() {
        let mut problems = Problems::default();
        let specs = budgets(
            &[
                raw(Some(1.0), Some(5), "month"),
                raw(None, Some(5), "fortnight"),
            ],
            &mut problems,
        );
        assert!(specs.is_empty());
        assert_eq!(problems.len(), 2);
    }

    #[test]
    fn negative_and_non_finite_amounts_are_refused() {
        for usd in [-1.0, f64::NAN, f64::INFINITY, 2e9] {
            let mut problems = Problems::default();
            assert!(budgets(&[raw(Some(usd), None, "day")], &mut problems).is_empty());
            assert_eq!(problems.len(), 1, "{usd}");
        }
    }
}
