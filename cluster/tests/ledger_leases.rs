//! One test (or a few) per budget and lease command of the ledger (budgets, grants,
//! settlements, expiry, window rollover, alerts, lease policy), through the public `apply`,
//! checking effects and the invariants after every command.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use floodgate_cluster::ledger::*;

#[test]
fn put_budget_creates_and_updates_within_rules() {
    let mut state = exact_ledger();
    ok(
        &mut state,
        Command::PutBudget(budget("b", 1_000, Window::Day, Action::Reject)),
        T0,
    );
    let usage = &state.budgets()["b"].usage;
    assert_eq!(
        (usage.window_start, usage.window_end),
        Window::Day.bounds(T0)
    );
    let lease = granted(ok(&mut state, ask("b", "edge-1", 600), T0));
    ok(&mut state, settle(lease.id, 400, false), T0);
    assert_eq!(used(&state, "b"), (400, 200));
    assert_eq!(
        err(
            &mut state,
            Command::PutBudget(budget("b", 599, Window::Day, Action::Reject)),
            T0
        ),
        LedgerError::LimitBelowUsage {
            budget: "b".into(),
            limit: 599,
            settled: 400,
            outstanding: 200
        }
    );
    // Lowering to exactly what is used exhausts the budget now.
    ok(
        &mut state,
        Command::PutBudget(budget("b", 600, Window::Day, Action::Reject)),
        T0,
    );
    assert!(matches!(
        ok(&mut state, ask("b", "edge-2", 1), T0),
        Effect::Refused(_)
    ));
    assert_eq!(
        err(
            &mut state,
            Command::PutBudget(budget("b", 600, Window::Hour, Action::Reject)),
            T0
        ),
        LedgerError::Immutable {
            budget: "b".into(),
            field: "window".into()
        }
    );
    let mut tokens = budget("b", 600, Window::Day, Action::Reject);
    tokens.metric = Metric::Tokens;
    assert!(matches!(
        err(&mut state, Command::PutBudget(tokens), T0),
        LedgerError::Immutable { field, .. } if field == "metric"
    ));
    // The next day the old usage no longer counts, so a lower limit is fine.
    let tomorrow = Window::Day.bounds(T0).1 + 1;
    ok(
        &mut state,
        Command::PutBudget(budget("b", 100, Window::Day, Action::Reject)),
        tomorrow,
    );
    assert_eq!(used(&state, "b"), (0, 0));
    let mut scoped = budget("c", 1, Window::Total, Action::Reject);
    scoped.scope.team = Some("nobody".into());
    assert_eq!(
        err(&mut state, Command::PutBudget(scoped), T0),
        LedgerError::not_found(ObjectKind::Team, "nobody")
    );
}

#[test]
fn delete_budget_drops_its_leases() {
    let mut state = exact_ledger();
    ok(
        &mut state,
        Command::PutBudget(budget("b", 1_000, Window::Day, Action::Reject)),
        T0,
    );
    let lease = granted(ok(&mut state, ask("b", "edge-1", 100), T0));
    ok(&mut state, Command::DeleteBudget { id: "b".into() }, T0);
    assert!(state.leases().is_empty());
    assert_eq!(
        ok(&mut state, settle(lease.id, 10, true), T0),
        Effect::Settled {
            results: vec![SettleResult::Unknown { lease: lease.id }],
            alerts: vec![]
        }
    );
}

#[test]
fn grant_lease_is_capped_by_what_is_left() {
    let mut state = exact_ledger();
    ok(
        &mut state,
        Command::PutBudget(budget("b", 1_000, Window::Day, Action::Reject)),
        T0,
    );
    let config_revision = state.config_revision();
    let first = granted(ok(&mut state, ask("b", "edge-1", 700), T0));
    assert_eq!((first.id, first.granted, first.held), (0, 700, 700));
    assert_eq!(first.expires_at, T0 + 30_000);
    // Leases bump the revision, not the config revision.
    assert_eq!(state.config_revision(), config_revision);
    assert_eq!(state.revision(), config_revision + 1);
    // The same edge asking again gets what is left, not more.
    let second = granted(ok(&mut state, ask("b", "edge-1", 700), T0));
    assert_eq!(second.granted, 300);
    assert_eq!(used(&state, "b"), (0, 1_000));
    let refused = ok(&mut state, ask("b", "edge-3", 1), T0 + 1);
    assert_eq!(
        refused,
        Effect::Refused(Refusal {
            budget: "b".into(),
            remaining: 0,
            retry_at: Some(T0 + 30_000),
        })
    );
    assert_eq!(
        err(&mut state, ask("missing", "edge-1", 1), T0),
        LedgerError::not_found(ObjectKind::Budget, "missing")
    );
    assert!(matches!(
        err(&mut state, ask("b", "edge-1", 0), T0),
        LedgerError::Invalid { field, .. } if field == "lease.asked"
    ));
}

#[test]
fn grant_lease_at_least_or_nothing() {
    let mut state = exact_ledger();
    ok(
        &mut state,
        Command::PutBudget(budget("b", 100, Window::Total, Action::Reject)),
        T0,
    );
    granted(ok(&mut state, ask("b", "edge-1", 80), T0));
    let request = |at_least| {
        Command::GrantLease(LeaseRequest {
            budget: "b".into(),
            edge_id: "edge-2".into(),
            asked: 50,
            at_least,
            ttl_ms: 1_000,
        })
    };
    // 20 left: a request needing 30 is refused; one needing 20 gets it.
    assert!(matches!(
        ok(&mut state, request(30), T0),
        Effect::Refused(_)
    ));
    assert_eq!(granted(ok(&mut state, request(20), T0)).granted, 20);
    // A total budget has no window end to wait for once nothing is outstanding.
    ok(
        &mut state,
        Command::Settle {
            settlements: vec![
                Settlement {
                    lease: 0,
                    actual: 80,
                    close: true,
                },
                Settlement {
                    lease: 1,
                    actual: 20,
                    close: true,
                },
            ],
        },
        T0,
    );
    assert_eq!(
        ok(&mut state, ask("b", "edge-2", 1), T0),
        Effect::Refused(Refusal {
            budget: "b".into(),
            remaining: 0,
            retry_at: None
        })
    );
}

#[test]
fn adaptive_leases_shrink_and_share() {
    let mut state = LedgerState::new(); // default policy: 10% of the limit, half a fair share
    ok(
        &mut state,
        Command::PutBudget(budget("b", 1_000_000, Window::Month, Action::Reject)),
        T0,
    );
    let a = granted(ok(&mut state, ask("b", "edge-a", u64::MAX), T0));
    assert_eq!(a.granted, 100_000, "10% of the limit while much is left");
    let b = granted(ok(&mut state, ask("b", "edge-b", u64::MAX), T0));
    assert_eq!(b.granted, 100_000);
    ok(
        &mut state,
        Command::Settle {
            settlements: vec![
                Settlement {
                    lease: a.id,
                    actual: 100_000,
                    close: true,
                },
                Settlement {
                    lease: b.id,
                    actual: 100_000,
                    close: true,
                },
            ],
        },
        T0,
    );
    // Spend most of it, then leases shrink with what is left.
    let mut spent = 200_000;
    while spent < 960_000 {
        let lease = granted(ok(&mut state, ask("b", "edge-a", u64::MAX), T0));
        ok(&mut state, settle(lease.id, lease.granted, true), T0);
        spent += lease.granted;
    }
    let left = 1_000_000 - used(&state, "b").0;
    let small = granted(ok(&mut state, ask("b", "edge-a", u64::MAX), T0));
    assert_eq!(
        small.granted,
        left / 2,
        "near the limit: half of what is left"
    );
    // A second edge asking now gets its share of the rest, split between two holders.
    let rest = granted(ok(&mut state, ask("b", "edge-b", u64::MAX), T0));
    assert_eq!(rest.granted, (left - small.granted) / 4);
}

#[test]
fn settle_charges_actual_and_frees_the_rest() {
    let mut state = exact_ledger();
    ok(
        &mut state,
        Command::PutBudget(budget("b", 1_000, Window::Day, Action::Reject)),
        T0,
    );
    let lease = granted(ok(&mut state, ask("b", "edge-1", 500), T0));
    // A partial settlement keeps the lease open.
    assert_eq!(
        ok(&mut state, settle(lease.id, 120, false), T0),
        Effect::Settled {
            results: vec![SettleResult::Settled {
                lease: lease.id,
                charged: 120,
                released: 0,
                excess: 0,
                closed: false
            }],
            alerts: vec![]
        }
    );
    assert_eq!(used(&state, "b"), (120, 380));
    assert_eq!(state.leases()[&lease.id].held, 380);
    // An empty report changes nothing, so no new revision.
    let revision = state.revision();
    ok(&mut state, settle(lease.id, 0, false), T0);
    assert_eq!(state.revision(), revision);
    // Closing charges the actual and frees what was not used.
    ok(&mut state, settle(lease.id, 80, true), T0);
    assert_eq!(used(&state, "b"), (200, 0));
    assert!(state.leases().is_empty() && state.budgets()["b"].leases.is_empty());
    // Settling it again is answered, not charged.
    assert_eq!(
        ok(&mut state, settle(lease.id, 80, true), T0),
        Effect::Settled {
            results: vec![SettleResult::Unknown { lease: lease.id }],
            alerts: vec![]
        }
    );
    assert_eq!(used(&state, "b"), (200, 0));
    assert_eq!(
        state.revision(),
        revision + 1,
        "unknown leases change nothing"
    );
}

#[test]
fn settle_never_charges_beyond_the_lease() {
    let mut state = exact_ledger();
    ok(
        &mut state,
        Command::PutBudget(budget("b", 1_000, Window::Day, Action::Reject)),
        T0,
    );
    let lease = granted(ok(&mut state, ask("b", "edge-1", 100), T0));
    let effect = ok(&mut state, settle(lease.id, 150, true), T0);
    assert_eq!(
        effect,
        Effect::Settled {
            results: vec![SettleResult::Settled {
                lease: lease.id,
                charged: 100,
                released: 0,
                excess: 50,
                closed: true
            }],
            alerts: vec![]
        }
    );
    assert_eq!(used(&state, "b"), (100, 0));
    assert_eq!(state.budgets()["b"].usage.overrun, 50);
}

#[test]
fn settle_batches_are_independent_items() {
    let mut state = exact_ledger();
    ok(
        &mut state,
        Command::PutBudget(budget("a", 1_000, Window::Day, Action::Reject)),
        T0,
    );
    ok(
        &mut state,
        Command::PutBudget(budget("b", 1_000, Window::Hour, Action::Reject)),
        T0,
    );
    let la = granted(ok(&mut state, ask("a", "edge-1", 100), T0));
    let lb = granted(ok(&mut state, ask("b", "edge-1", 200), T0));
    let Effect::Settled { results, .. } = ok(
        &mut state,
        Command::Settle {
            settlements: vec![
                Settlement {
                    lease: la.id,
                    actual: 10,
                    close: true,
                },
                Settlement {
                    lease: 99,
                    actual: 10,
                    close: true,
                },
                Settlement {
                    lease: lb.id,
                    actual: 20,
                    close: false,
                },
            ],
        },
        T0,
    ) else {
        panic!("expected settlements");
    };
    assert_eq!(results.len(), 3);
    assert_eq!(results[1], SettleResult::Unknown { lease: 99 });
    assert_eq!(used(&state, "a"), (10, 0));
    assert_eq!(used(&state, "b"), (20, 180));
}

#[test]
fn expire_leases_charges_in_full() {
    let mut state = exact_ledger();
    ok(
        &mut state,
        Command::PutBudget(budget("b", 1_000, Window::Day, Action::Reject)),
        T0,
    );
    let lease = granted(ok(&mut state, ask("b", "edge-1", 300), T0));
    ok(&mut state, settle(lease.id, 100, false), T0);
    let other = granted(ok(&mut state, ask("b", "edge-2", 50), T0 + 20_000));
    // Not yet due: nothing happens, no new revision.
    let revision = state.revision();
    assert_eq!(
        ok(&mut state, Command::ExpireLeases, T0 + 29_999),
        Effect::Expired {
            leases: vec![],
            alerts: vec![]
        }
    );
    assert_eq!(state.revision(), revision);
    // The vanished edge's lease is charged everything it still held.
    assert_eq!(
        ok(&mut state, Command::ExpireLeases, T0 + 30_000),
        Effect::Expired {
            leases: vec![ExpiredLease {
                lease: lease.id,
                budget: "b".into(),
                edge_id: "edge-1".into(),
                charged: 200
            }],
            alerts: vec![]
        }
    );
    assert_eq!(used(&state, "b"), (300, 50));
    assert!(state.leases().contains_key(&other.id));
    // A settlement arriving after expiry is not charged again.
    ok(&mut state, settle(lease.id, 10, true), T0 + 30_001);
    assert_eq!(used(&state, "b"), (300, 50));
}

#[test]
fn expiry_is_due_exactly_when_expire_leases_would_change_something() {
    let mut state = exact_ledger();
    ok(
        &mut state,
        Command::PutBudget(budget("b", 1_000, Window::Day, Action::Reject)),
        T0,
    );
    assert!(!state.expiry_due(T0 + 29_999));
    let lease = granted(ok(&mut state, ask("b", "edge-1", 300), T0));
    assert!(!state.expiry_due(T0 + 29_999));
    assert!(state.expiry_due(T0 + 30_000));
    ok(&mut state, Command::ExpireLeases, T0 + 30_000);
    assert!(!state.leases().contains_key(&lease.id));
    assert!(!state.expiry_due(T0 + 30_001));
    // A time behind the ledger's clock counts as the clock.
    assert!(!state.expiry_due(0));
    // With no lease at all, a budget whose window has passed is due (it rolls).
    let (_, day_end) = Window::Day.bounds(T0);
    assert!(state.expiry_due(day_end));
    let revision = state.revision();
    ok(&mut state, Command::ExpireLeases, day_end);
    assert!(state.revision() > revision);
    assert!(!state.expiry_due(day_end));
}

#[test]
fn leases_end_with_their_window_and_rollover_resets() {
    let mut state = exact_ledger();
    ok(
        &mut state,
        Command::PutBudget(budget("rpm", 10, Window::Minute, Action::Reject)),
        T0,
    );
    let (_, minute_end) = Window::Minute.bounds(T0);
    let lease = granted(ok(&mut state, ask("rpm", "edge-1", 10), T0));
    assert_eq!(
        lease.expires_at, minute_end,
        "a lease never outlives its window"
    );
    assert!(
        matches!(ok(&mut state, ask("rpm", "edge-2", 1), T0), Effect::Refused(r) if r.retry_at == Some(minute_end))
    );
    // Next minute: a fresh window, the old lease gone with the old window.
    let next = granted(ok(&mut state, ask("rpm", "edge-2", 4), minute_end));
    assert_eq!(next.window_start, minute_end);
    assert_eq!(used(&state, "rpm"), (0, 4));
    assert!(!state.leases().contains_key(&lease.id));
    // The late settlement of last minute's lease charges nothing in this one.
    assert_eq!(
        ok(&mut state, settle(lease.id, 10, true), minute_end + 1),
        Effect::Settled {
            results: vec![SettleResult::Unknown { lease: lease.id }],
            alerts: vec![]
        }
    );
    assert_eq!(used(&state, "rpm"), (0, 4));
    // ExpireLeases rolls budgets nobody touched.
    ok(&mut state, Command::ExpireLeases, minute_end + 3 * MINUTE);
    let usage = &state.budgets()["rpm"].usage;
    assert_eq!(usage.window_start, minute_end + 3 * MINUTE);
    assert_eq!((usage.settled, usage.outstanding), (0, 0));
}

#[test]
fn the_clock_never_runs_backwards() {
    let mut state = exact_ledger();
    ok(
        &mut state,
        Command::PutBudget(budget("rpm", 10, Window::Minute, Action::Reject)),
        T0,
    );
    let (_, minute_end) = Window::Minute.bounds(T0);
    let lease = granted(ok(&mut state, ask("rpm", "edge-1", 10), minute_end + 5));
    // A new leader whose clock is a minute behind cannot reopen the previous window.
    assert!(matches!(
        ok(&mut state, ask("rpm", "edge-2", 1), T0),
        Effect::Refused(_)
    ));
    assert_eq!(state.clock(), minute_end + 5);
    assert_eq!(
        state.budgets()["rpm"].usage.window_start,
        lease.window_start
    );
}

#[test]
fn alert_budgets_fire_once_per_window() {
    let mut state = exact_ledger();
    ok(
        &mut state,
        Command::PutBudget(budget("watch", 100, Window::Hour, Action::Alert)),
        T0,
    );
    // Alert budgets never refuse: the grant is what was asked.
    let lease = granted(ok(&mut state, ask("watch", "edge-1", 500), T0));
    assert_eq!(lease.granted, 500);
    let first = ok(&mut state, settle(lease.id, 60, false), T0);
    assert!(matches!(first, Effect::Settled { alerts, .. } if alerts.is_empty()));
    let crossing = ok(&mut state, settle(lease.id, 60, false), T0);
    let window_start = Window::Hour.start(T0);
    assert_eq!(
        crossing,
        Effect::Settled {
            results: vec![SettleResult::Settled {
                lease: lease.id,
                charged: 60,
                released: 0,
                excess: 0,
                closed: false
            }],
            alerts: vec![Alert {
                budget: "watch".into(),
                window_start,
                settled: 120,
                limit: 100
            }]
        }
    );
    let later = ok(&mut state, settle(lease.id, 60, true), T0);
    assert!(matches!(later, Effect::Settled { alerts, .. } if alerts.is_empty()));
    // The next hour fires again, here through an expired lease.
    let next_hour = Window::Hour.bounds(T0).1;
    let lease = granted(ok(&mut state, ask("watch", "edge-1", 150), next_hour));
    let expired = ok(&mut state, Command::ExpireLeases, lease.expires_at);
    assert!(
        matches!(expired, Effect::Expired { alerts, .. } if alerts.len() == 1 && alerts[0].window_start == next_hour)
    );
    // An alert budget above its limit cannot become a reject budget in the same window.
    assert!(matches!(
        err(
            &mut state,
            Command::PutBudget(budget("watch", 100, Window::Hour, Action::Reject)),
            lease.expires_at
        ),
        LedgerError::LimitBelowUsage { .. }
    ));
}

#[test]
fn a_crossed_alert_waits_for_its_webhook_until_delivered_once_per_window() {
    let mut state = exact_ledger();
    let mut spec = budget("watch", 100, Window::Hour, Action::Alert);
    spec.webhook = Some("https://hooks.example.com/T000/secret".into());
    ok(&mut state, Command::PutBudget(spec.clone()), T0);
    let lease = granted(ok(&mut state, ask("watch", "edge-1", 500), T0));
    ok(&mut state, settle(lease.id, 60, false), T0);
    assert!(state.pending_alerts().is_empty(), "not crossed yet");
    ok(&mut state, settle(lease.id, 60, false), T0);
    let window_start = Window::Hour.start(T0);
    let pending = state.pending_alerts();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].webhook, "https://hooks.example.com/T000/secret");
    assert_eq!(pending[0].alert.settled, 120);
    let body = serde_json::to_value(&pending[0]).unwrap();
    assert_eq!(body["budget"], "watch");
    assert_eq!(body["limit"], 100);
    assert!(
        body.get("webhook").is_none(),
        "the URL stays out of the body"
    );

    // A delivery for another window changes nothing; the right one clears it for good.
    let stale = Command::AlertDelivered {
        budget: "watch".into(),
        window_start: window_start - 1,
    };
    assert_eq!(
        ok(&mut state, stale, T0),
        Effect::Written { changed: false }
    );
    assert_eq!(state.pending_alerts().len(), 1);
    let delivered = Command::AlertDelivered {
        budget: "watch".into(),
        window_start,
    };
    assert_eq!(
        ok(&mut state, delivered.clone(), T0),
        Effect::Written { changed: true }
    );
    assert!(state.pending_alerts().is_empty());
    assert_eq!(
        ok(&mut state, delivered, T0),
        Effect::Written { changed: false }
    );
    ok(&mut state, settle(lease.id, 60, true), T0);
    assert!(state.pending_alerts().is_empty(), "once per window");

    // The next window fires (and waits) again.
    let next_hour = Window::Hour.bounds(T0).1;
    let lease = granted(ok(&mut state, ask("watch", "edge-1", 150), next_hour));
    ok(&mut state, Command::ExpireLeases, lease.expires_at);
    assert_eq!(state.pending_alerts()[0].alert.window_start, next_hour);

    // Without a webhook nothing waits.
    spec.webhook = None;
    ok(&mut state, Command::PutBudget(spec), lease.expires_at);
    assert!(state.pending_alerts().is_empty());
}

#[test]
fn webhooks_are_http_urls_on_alert_budgets_only() {
    let mut state = exact_ledger();
    for (action, url) in [
        (Action::Reject, "https://hooks.example.com/x"),
        (Action::Alert, "ftp://hooks.example.com/x"),
        (Action::Alert, "https://"),
        (Action::Alert, "https://hooks.example.com/a b"),
    ] {
        let mut spec = budget("watch", 100, Window::Hour, action);
        spec.webhook = Some(url.into());
        let error = err(&mut state, Command::PutBudget(spec), T0);
        assert!(
            matches!(&error, LedgerError::Invalid { field, .. } if field == "budget.webhook"),
            "{url}: {error:?}"
        );
    }
    assert!(state.budgets().is_empty());
}

#[test]
fn set_lease_policy_is_validated() {
    let mut state = LedgerState::new();
    assert!(matches!(
        err(
            &mut state,
            Command::SetLeasePolicy(LeasePolicy {
                max_grant_permille: 0,
                spread: 1,
                max_ttl_ms: 1
            }),
            T0
        ),
        LedgerError::Invalid { .. }
    ));
    let policy = LeasePolicy {
        max_grant_permille: 500,
        spread: 3,
        max_ttl_ms: 5_000,
    };
    ok(&mut state, Command::SetLeasePolicy(policy), T0);
    assert_eq!(*state.lease_policy(), policy);
    ok(
        &mut state,
        Command::PutBudget(budget("b", 1_000, Window::Day, Action::Reject)),
        T0,
    );
    let lease = granted(ok(&mut state, ask("b", "edge-1", 1_000), T0));
    assert_eq!(
        lease.granted, 333,
        "a third of what is left (spread 3, one holder)"
    );
    assert_eq!(lease.expires_at, T0 + 5_000, "TTL capped by the policy");
}
