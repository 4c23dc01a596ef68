//! Helpers shared by the ledger command tests: fixtures and an `apply` wrapper that checks
//! the invariants after every command. Each test crate uses a subset of them.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use floodgate_cluster::ledger::*;

/// 2025-03-15T12:34:56.789Z.
pub const T0: u64 = 1_742_042_096_789;
pub const MINUTE: u64 = 60_000;

pub fn run(state: &mut LedgerState, command: Command, now: u64) -> Outcome {
    let outcome = apply(state, command, now);
    state.check_invariants().unwrap();
    outcome
}

pub fn ok(state: &mut LedgerState, command: Command, now: u64) -> Effect {
    run(state, command, now).unwrap().effect
}

pub fn err(state: &mut LedgerState, command: Command, now: u64) -> LedgerError {
    let before = state.clone();
    let error = run(state, command, now).unwrap_err();
    // A refused command changes nothing but the clock.
    let mut expected = before;
    apply(&mut expected, Command::Batch(vec![]), now).unwrap();
    assert_eq!(*state, expected, "refused command changed the state");
    error
}

pub fn target(provider: &str, model: &str) -> TargetSpec {
    TargetSpec {
        provider: provider.into(),
        model: model.into(),
        api_base: None,
        credential: TargetCredential::None,
        weight: 1,
        max_tokens: None,
        price: None,
        options_json: String::new(),
    }
}

pub fn endpoint(name: &str) -> EndpointSpec {
    EndpointSpec {
        name: name.into(),
        kind: EndpointKind::Chat,
        targets: vec![target("mock", "echo")],
        fallbacks: vec![],
        options_json: String::new(),
    }
}

pub fn budget(id: &str, limit: u64, window: Window, action: Action) -> BudgetSpec {
    BudgetSpec {
        id: id.into(),
        metric: Metric::Micros,
        limit,
        window,
        scope: Scope::default(),
        action,
        webhook: None,
    }
}

pub fn ask(budget: &str, edge: &str, asked: u64) -> Command {
    Command::GrantLease(LeaseRequest {
        budget: budget.into(),
        edge_id: edge.into(),
        asked,
        at_least: 0,
        ttl_ms: 30_000,
    })
}

pub fn granted(effect: Effect) -> Lease {
    match effect {
        Effect::Granted(lease) => lease,
        other => panic!("expected a grant, got {other:?}"),
    }
}

pub fn settle(lease: LeaseId, actual: u64, close: bool) -> Command {
    Command::Settle {
        settlements: vec![Settlement {
            lease,
            actual,
            close,
        }],
    }
}

/// A ledger whose policy grants exactly what is asked (up to what is left).
pub fn exact_ledger() -> LedgerState {
    let mut state = LedgerState::new();
    ok(
        &mut state,
        Command::SetLeasePolicy(LeasePolicy {
            max_grant_permille: 1000,
            spread: 1,
            max_ttl_ms: 600_000,
        }),
        T0,
    );
    state
}

pub fn used(state: &LedgerState, id: &str) -> (u64, u64) {
    let usage = &state.budgets()[id].usage;
    (usage.settled, usage.outstanding)
}

pub fn keyed_ledger() -> (LedgerState, GeneratedKey) {
    let mut state = LedgerState::new();
    ok(&mut state, Command::PutEndpoint(endpoint("chat")), T0);
    ok(&mut state, Command::PutEndpoint(endpoint("embed")), T0);
    ok(
        &mut state,
        Command::PutTeam(Team {
            id: "research".into(),
            name: "Research".into(),
        }),
        T0,
    );
    let key = generate_key().unwrap();
    let mut new = NewKey::from_generated("k1", "notebook", &key);
    new.team = Some("research".into());
    new.endpoints = vec!["chat".into()];
    new.expires_at = Some(T0 + 10 * MINUTE);
    ok(&mut state, Command::CreateKey(new), T0);
    (state, key)
}
