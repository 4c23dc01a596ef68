//! Property tests of the ledger's `apply`: random sequences of lease grants, batched
//! settlements, expiries, clock moves (forwards across window boundaries, and backwards as
//! after a leader change), limit changes and policy changes, over several budgets and edges.
//!
//! After every step: the invariants hold (above all `settled + outstanding ≤ limit` for
//! every `reject` budget), a refused command changed nothing, and each budget's usage
//! equals a model computed only from the effects the ledger reported. At the end: replaying
//! the command log from an empty state, or from a serialized snapshot taken midway, rebuilds
//! an identical state with identical outcomes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use floodgate_cluster::ledger::*;
use proptest::prelude::*;

/// 2025-03-15T12:34:56.789Z.
const T0: u64 = 1_742_042_096_789;
const EDGES: [&str; 3] = ["edge-a", "edge-b", "edge-c"];

#[derive(Debug, Clone)]
struct BudgetSetup {
    limit: u64,
    window: Window,
    alert: bool,
}

#[derive(Debug, Clone)]
enum Op {
    Grant {
        budget: usize,
        edge: usize,
        asked: u64,
        at_least_percent: u64,
        ttl_ms: u64,
    },
    Settle(Vec<(usize, u64, bool)>),
    SettleUnknown(u64),
    Expire,
    Advance(u64),
    Rewind(u64),
    SetLimit {
        budget: usize,
        limit: u64,
    },
    Policy {
        permille: u32,
        spread: u32,
    },
    GrantBatch(Vec<(usize, usize, u64)>),
}

fn budget_setup() -> impl Strategy<Value = BudgetSetup> {
    (
        0u64..5_000,
        prop_oneof![
            Just(Window::Minute),
            Just(Window::Hour),
            Just(Window::Day),
            Just(Window::Total)
        ],
        prop::bool::weighted(0.2),
    )
        .prop_map(|(limit, window, alert)| BudgetSetup {
            limit,
            window,
            alert,
        })
}

fn op(budgets: usize) -> impl Strategy<Value = Op> {
    let b = 0..budgets;
    prop_oneof![
        6 => (b.clone(), 0..EDGES.len(), 1u64..3_000, 0u64..=100, 1u64..120_000).prop_map(
            |(budget, edge, asked, at_least_percent, ttl_ms)| Op::Grant {
                budget,
                edge,
                asked,
                at_least_percent,
                ttl_ms
            }
        ),
        5 => prop::collection::vec(
            (any::<usize>(), prop_oneof![4 => 0u64..=100, 1 => 100u64..400], any::<bool>()),
            1..5,
        )
        .prop_map(Op::Settle),
        1 => (0u64..1_000).prop_map(Op::SettleUnknown),
        2 => Just(Op::Expire),
        3 => (0u64..90_000).prop_map(Op::Advance),
        1 => (0u64..120_000).prop_map(Op::Rewind),
        1 => (b.clone(), 0u64..6_000).prop_map(|(budget, limit)| Op::SetLimit { budget, limit }),
        1 => (1u32..=1000, 1u32..4).prop_map(|(permille, spread)| Op::Policy { permille, spread }),
        1 => prop::collection::vec((b, 0..EDGES.len(), 1u64..2_000), 1..4).prop_map(Op::GrantBatch),
    ]
}

fn scenario() -> impl Strategy<Value = (Vec<BudgetSetup>, Vec<Op>)> {
    prop::collection::vec(budget_setup(), 1..4).prop_flat_map(|budgets| {
        let n = budgets.len();
        (Just(budgets), prop::collection::vec(op(n), 1..150))
    })
}

fn budget_id(index: usize) -> String {
    format!("b{index}")
}

fn spec(index: usize, setup: &BudgetSetup, limit: u64) -> BudgetSpec {
    BudgetSpec {
        id: budget_id(index),
        metric: Metric::Micros,
        limit,
        window: setup.window,
        scope: Scope::default(),
        action: if setup.alert {
            Action::Alert
        } else {
            Action::Reject
        },
        webhook: None,
    }
}

/// Expected `settled + outstanding` per (budget, window start), from reported effects only:
/// grants add, releases subtract; settling, expiring and rolling only move or forget.
#[derive(Default)]
struct Model {
    used: BTreeMap<(String, u64), u64>,
    lease_window: BTreeMap<LeaseId, (String, u64)>,
}

impl Model {
    fn observe(&mut self, effect: &Effect) {
        match effect {
            Effect::Granted(lease) => {
                let key = (lease.budget.clone(), lease.window_start);
                *self.used.entry(key.clone()).or_default() += lease.granted;
                self.lease_window.insert(lease.id, key);
            }
            Effect::Settled { results, .. } => {
                for result in results {
                    if let SettleResult::Settled {
                        lease, released, ..
                    } = result
                    {
                        let key = &self.lease_window[lease];
                        *self.used.get_mut(key).unwrap() -= released;
                    }
                }
            }
            Effect::Batch(effects) => effects.iter().for_each(|e| self.observe(e)),
            Effect::Written { .. } | Effect::Refused(_) | Effect::Expired { .. } => {}
        }
    }

    fn check(&self, state: &LedgerState) -> Result<(), TestCaseError> {
        for (id, budget) in state.budgets() {
            let expected = self
                .used
                .get(&(id.clone(), budget.usage.window_start))
                .copied()
                .unwrap_or(0);
            prop_assert_eq!(budget.usage.used(), expected, "budget {} usage", id);
        }
        Ok(())
    }
}

/// The command log: each command, its time, and what applying it answered.
type Log = Vec<(Command, u64, Outcome)>;

/// Runs a scenario, checking after every step; returns the final state and the log.
fn run(budgets: &[BudgetSetup], ops: &[Op]) -> Result<(LedgerState, Log), TestCaseError> {
    let mut state = LedgerState::new();
    let mut log = Vec::new();
    let mut model = Model::default();
    let mut now = T0;
    let mut step = |state: &mut LedgerState,
                    command: Command,
                    now: u64,
                    model: &mut Model|
     -> Result<(), TestCaseError> {
        let before = state.clone();
        let outcome = apply(state, command.clone(), now);
        if let Err(violation) = state.check_invariants() {
            return Err(TestCaseError::fail(format!(
                "{violation} after {command:?}"
            )));
        }
        for budget in state.budgets().values() {
            if budget.spec.action == Action::Reject {
                prop_assert!(budget.usage.settled + budget.usage.outstanding <= budget.spec.limit);
            }
        }
        match &outcome {
            Ok(applied) => {
                model.observe(&applied.effect);
                prop_assert_eq!(applied.revision, state.revision());
                prop_assert!(state.revision() >= before.revision());
            }
            Err(_) => {
                // Refused: nothing but the clock moved.
                let mut expected = before;
                apply(&mut expected, Command::Batch(vec![]), now).unwrap();
                prop_assert_eq!(&*state, &expected);
            }
        }
        model.check(state)?;
        log.push((command, now, outcome));
        Ok(())
    };
    step(
        &mut state,
        Command::SetLeasePolicy(LeasePolicy {
            max_grant_permille: 1000,
            spread: 1,
            max_ttl_ms: 60_000,
        }),
        now,
        &mut model,
    )?;
    for (index, setup) in budgets.iter().enumerate() {
        step(
            &mut state,
            Command::PutBudget(spec(index, setup, setup.limit)),
            now,
            &mut model,
        )?;
    }
    for op in ops {
        let command = match op {
            Op::Grant {
                budget,
                edge,
                asked,
                at_least_percent,
                ttl_ms,
            } => Command::GrantLease(LeaseRequest {
                budget: budget_id(*budget),
                edge_id: EDGES[*edge].into(),
                asked: *asked,
                at_least: asked * at_least_percent / 100,
                ttl_ms: *ttl_ms,
            }),
            Op::Settle(items) => {
                let live: Vec<&Lease> = state.leases().values().collect();
                if live.is_empty() {
                    Command::ExpireLeases
                } else {
                    Command::Settle {
                        settlements: items
                            .iter()
                            .map(|(pick, percent, close)| {
                                let lease = live[pick % live.len()];
                                Settlement {
                                    lease: lease.id,
                                    // Mostly at most what it holds; sometimes more (an under-reserving edge).
                                    actual: lease.held * percent / 100,
                                    close: *close,
                                }
                            })
                            .collect(),
                    }
                }
            }
            Op::SettleUnknown(id) => Command::Settle {
                settlements: vec![Settlement {
                    lease: 1_000_000 + id,
                    actual: 1,
                    close: true,
                }],
            },
            Op::Expire => Command::ExpireLeases,
            Op::Advance(ms) => {
                now += ms;
                Command::ExpireLeases
            }
            Op::Rewind(ms) => {
                now = now.saturating_sub(*ms);
                Command::ExpireLeases
            }
            Op::SetLimit { budget, limit } => {
                Command::PutBudget(spec(*budget, &budgets[*budget], *limit))
            }
            Op::Policy { permille, spread } => Command::SetLeasePolicy(LeasePolicy {
                max_grant_permille: *permille,
                spread: *spread,
                max_ttl_ms: 60_000,
            }),
            Op::GrantBatch(items) => Command::Batch(
                items
                    .iter()
                    .map(|(budget, edge, asked)| {
                        Command::GrantLease(LeaseRequest {
                            budget: budget_id(*budget),
                            edge_id: EDGES[*edge].into(),
                            asked: *asked,
                            at_least: 0,
                            ttl_ms: 10_000,
                        })
                    })
                    .collect(),
            ),
        };
        step(&mut state, command, now, &mut model)?;
    }
    Ok((state, log))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Spend never exceeds a budget, at any step of any interleaving, and every budget's
    /// usage is exactly what the reported grants and releases account for.
    #[test]
    fn settled_plus_outstanding_never_exceeds_the_limit((budgets, ops) in scenario()) {
        run(&budgets, &ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Replaying the command log rebuilds an identical state with identical outcomes, from
    /// the start or from a serialized snapshot taken at any point.
    #[test]
    fn replaying_the_log_rebuilds_the_state((budgets, ops) in scenario(), cut in any::<prop::sample::Index>()) {
        let (state, log) = run(&budgets, &ops)?;

        let mut replayed = LedgerState::new();
        for (command, now, outcome) in &log {
            let again = apply(&mut replayed, command.clone(), *now);
            prop_assert_eq!(&again, outcome);
        }
        prop_assert_eq!(&replayed, &state);

        // Snapshot midway (as Raft installs one), then apply the rest of the log.
        let cut = cut.index(log.len() + 1);
        let mut prefix = LedgerState::new();
        for (command, now, _) in &log[..cut] {
            let _ = apply(&mut prefix, command.clone(), *now);
        }
        let snapshot = serde_json::to_vec(&prefix).unwrap();
        let mut restored: LedgerState = serde_json::from_slice(&snapshot).unwrap();
        prop_assert_eq!(&restored, &prefix);
        for (command, now, outcome) in &log[cut..] {
            // Log entries travel serialized too, stamped with the leader's time.
            let wire = serde_json::to_vec(&Proposal { at: *now, command: command.clone() }).unwrap();
            let proposal: Proposal = serde_json::from_slice(&wire).unwrap();
            let again = apply_proposal(&mut restored, proposal);
            prop_assert_eq!(&again, outcome);
        }
        prop_assert_eq!(&restored, &state);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Several edges draining one reject budget through leases, settling at most what each
    /// lease holds, never get more than the limit granted net of releases, and once nothing
    /// is outstanding the settled total is at most the limit.
    #[test]
    fn edges_draining_one_budget_stop_at_the_limit(
        limit in 1u64..100_000,
        asks in prop::collection::vec((0..EDGES.len(), 1u64..20_000, 0u64..=100), 1..200),
    ) {
        let mut state = LedgerState::new();
        let setup = BudgetSetup { limit, window: Window::Total, alert: false };
        apply(&mut state, Command::PutBudget(spec(0, &setup, limit)), T0).unwrap();
        let mut served = 0u64;
        for (edge, asked, percent) in asks {
            let effect = apply(
                &mut state,
                Command::GrantLease(LeaseRequest {
                    budget: "b0".into(),
                    edge_id: EDGES[edge].into(),
                    asked,
                    at_least: 0,
                    ttl_ms: 1_000,
                }),
                T0,
            )
            .unwrap()
            .effect;
            if let Effect::Granted(lease) = effect {
                let actual = lease.granted * percent / 100;
                served += actual;
                apply(
                    &mut state,
                    Command::Settle { settlements: vec![Settlement { lease: lease.id, actual, close: true }] },
                    T0,
                )
                .unwrap();
            }
            state.check_invariants().unwrap();
        }
        let usage = &state.budgets()["b0"].usage;
        prop_assert_eq!(usage.outstanding, 0);
        prop_assert_eq!(usage.settled, served);
        prop_assert!(served <= limit);
    }
}
