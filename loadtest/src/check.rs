//! The invariant checker: after a run, do the books balance? A pure function over numbers
//! ([`check`]), so every invariant is unit-tested with books that balance and books that do
//! not. Gathering the numbers over HTTP is [`crate::books`]'s job.
//!
//! The invariants, against the mock's ground truth for the run (its counters' growth):
//! * **refused requests never reached the upstream**: the mock received exactly the requests
//!   the client saw answered 2xx or with an upstream error (5xx); a 429 or other refusal by
//!   the gateway (budget, rate limit) must not have cost an upstream call. Assumes the
//!   gateway does not retry (run checks with the mock's error injection off).
//! * **exactly-once accounting** (with a projector): the projector's successful requests,
//!   input and output tokens and cost over the run equal what the mock served.
//! * **no overspend** (with a ledger): every enforced (`reject`) budget's own books — what
//!   it settled plus any overrun (usage reported beyond what leases held) — stay within
//!   its limit.
//! * **the run's budget against ground truth** (with a ledger and a budget every request of
//!   the run counts against): what the mock really served, in the budget's unit (requests
//!   that reached it, tokens, or µ$ at the mock's price), added to what the budget had
//!   settled before the run, stays within the limit (the overspend is zero), and the
//!   ledger settled exactly that much during the run.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::upstream::StatsSnapshot;

/// What the load generator saw, over the whole run (warm-up included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientCounts {
    /// 2xx answers.
    pub ok: u64,
    /// 5xx answers: upstream errors the gateway passed on.
    pub upstream_errors: u64,
    /// Other non-2xx answers (refusals: 429 budget or rate limit, 4xx).
    pub refused: u64,
    /// Connection errors, timeouts, broken bodies.
    pub transport_errors: u64,
}

/// The projector's totals over the run's time range (growth during the run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectorTotals {
    /// Requests, any status.
    pub requests: u64,
    /// Requests with a status ≥ 400.
    pub errors: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cost of the priced requests, micro-dollars.
    pub cost_micros: u64,
}

/// One budget's books, from the ledger's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetBook {
    /// The budget's id.
    pub id: String,
    /// Its limit per window.
    pub limit: u64,
    /// Charged for good in the current window.
    pub settled: u64,
    /// Whether it refuses at the limit (`reject`), so overspend is a bug; `alert` budgets
    /// may pass their limit.
    pub enforced: bool,
    /// What it counts: `requests`, `tokens` or `micros`.
    #[serde(default)]
    pub metric: String,
    /// Usage reported beyond what leases held (an edge under-reserved), not settled.
    #[serde(default)]
    pub overrun: u64,
}

/// The budget a run was measured against: every request of the run counts against it, and
/// nothing else did during the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunBudget {
    /// The budget after the run (settled once the edges had sent their charges).
    pub after: BudgetBook,
    /// What it had settled before the run.
    pub settled_before: u64,
}

impl RunBudget {
    /// What the mock served during the run in the budget's unit: requests that reached it
    /// (a failed one counts as a request), input plus output tokens, or cost; `None` for an
    /// unknown metric.
    pub fn truth(&self, mock: &StatsSnapshot) -> Option<u64> {
        match self.after.metric.as_str() {
            "requests" => Some(mock.requests),
            "tokens" => Some(mock.prompt_tokens + mock.completion_tokens),
            "micros" => Some(mock.cost_micros),
            _ => None,
        }
    }
}

/// The run's budget as the checks found it, for reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetVerdict {
    /// The budget's id.
    pub id: String,
    /// What it counts.
    pub metric: String,
    /// Its limit.
    pub limit: u64,
    /// Settled before the run.
    pub settled_before: u64,
    /// Settled by the ledger during the run.
    pub settled: u64,
    /// What the mock served during the run, in the budget's unit.
    pub truth: u64,
    /// Spent in truth by the end: `settled_before + truth`.
    pub spent: u64,
    /// How far `spent` passed the limit (must be 0).
    pub overspend: u64,
}

/// Every number the checks compare.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Books {
    /// The mock's counters' growth over the run: the ground truth.
    pub mock: StatsSnapshot,
    /// What the client saw.
    pub client: ClientCounts,
    /// The projector's totals, when a projector was given.
    pub projector: Option<ProjectorTotals>,
    /// The ledger's budgets, when a ledger admin URL was given.
    pub budgets: Option<Vec<BudgetBook>>,
    /// The budget the run was measured against, when one was named.
    #[serde(default)]
    pub budget: Option<RunBudget>,
}

/// One invariant that does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// The invariant (`refusals_never_reach_upstream`, `projector_requests`, ...).
    pub invariant: String,
    /// Which books disagree, with both numbers.
    pub detail: String,
}

/// The verdict: the invariants checked and the ones violated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckOutcome {
    /// Names of the invariants that were checked.
    pub checked: Vec<String>,
    /// The ones that failed; empty when the books balance.
    pub violations: Vec<Violation>,
    /// The run's budget against the mock's ground truth, when one was named.
    #[serde(default)]
    pub budget: Option<BudgetVerdict>,
    /// The numbers compared.
    pub books: Books,
}

impl CheckOutcome {
    /// Whether every checked invariant held.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

struct Checker {
    checked: Vec<String>,
    violations: Vec<Violation>,
}

impl Checker {
    fn equal(&mut self, invariant: &str, what: &str, truth: (&str, u64), seen: (&str, u64)) {
        self.checked.push(invariant.to_owned());
        if truth.1 != seen.1 {
            self.violations.push(Violation {
                invariant: invariant.to_owned(),
                detail: format!(
                    "{what}: {} says {} but {} says {} (off by {})",
                    truth.0,
                    truth.1,
                    seen.0,
                    seen.1,
                    i128::from(seen.1) - i128::from(truth.1)
                ),
            });
        }
    }
}

/// Checks every invariant the books allow; pure.
pub fn check(books: &Books) -> CheckOutcome {
    let mut c = Checker {
        checked: Vec::new(),
        violations: Vec::new(),
    };
    let mock = &books.mock;
    c.equal(
        "refusals_never_reach_upstream",
        "requests that reached the upstream",
        ("the mock", mock.requests),
        (
            "the client (2xx + upstream 5xx)",
            books.client.ok + books.client.upstream_errors,
        ),
    );
    if let Some(p) = &books.projector {
        let served = p.requests.saturating_sub(p.errors);
        c.equal(
            "projector_requests",
            "successful requests",
            ("the mock", mock.completed),
            ("the projector", served),
        );
        c.equal(
            "projector_input_tokens",
            "input tokens",
            ("the mock", mock.prompt_tokens),
            ("the projector", p.input_tokens),
        );
        c.equal(
            "projector_output_tokens",
            "output tokens",
            ("the mock", mock.completion_tokens),
            ("the projector", p.output_tokens),
        );
        c.equal(
            "projector_cost",
            "cost (µ$)",
            ("the mock", mock.cost_micros),
            ("the projector", p.cost_micros),
        );
    }
    if let Some(budgets) = &books.budgets {
        for budget in budgets.iter().filter(|b| b.enforced) {
            let invariant = format!("budget_not_exceeded:{}", budget.id);
            c.checked.push(invariant.clone());
            let spent = budget.settled.saturating_add(budget.overrun);
            if spent > budget.limit {
                c.violations.push(Violation {
                    invariant,
                    detail: format!(
                        "budget {} settled {} with {} overrun over its limit {} (overspend {})",
                        budget.id,
                        budget.settled,
                        budget.overrun,
                        budget.limit,
                        spent - budget.limit
                    ),
                });
            }
        }
    }
    let budget = books
        .budget
        .as_ref()
        .map(|run| run_budget(&mut c, run, mock));
    CheckOutcome {
        checked: c.checked,
        violations: c.violations,
        budget: budget.flatten(),
        books: books.clone(),
    }
}

/// The run's budget against the mock: within its limit in truth, and settled exactly.
fn run_budget(c: &mut Checker, run: &RunBudget, mock: &StatsSnapshot) -> Option<BudgetVerdict> {
    let id = &run.after.id;
    let Some(truth) = run.truth(mock) else {
        let invariant = format!("budget_truth:{id}");
        c.checked.push(invariant.clone());
        c.violations.push(Violation {
            invariant,
            detail: format!(
                "budget {id} counts `{}`, which the mock's books do not know",
                run.after.metric
            ),
        });
        return None;
    };
    let settled = run.after.settled.saturating_sub(run.settled_before);
    let spent = run.settled_before.saturating_add(truth);
    let overspend = spent.saturating_sub(run.after.limit);
    let invariant = format!("budget_no_overspend:{id}");
    c.checked.push(invariant.clone());
    if overspend > 0 {
        c.violations.push(Violation {
            invariant,
            detail: format!(
                "budget {id}: the mock served {truth} {} during the run on top of {} settled \
                 before, {spent} against a limit of {} (overspend {overspend})",
                run.after.metric, run.settled_before, run.after.limit
            ),
        });
    }
    c.equal(
        &format!("budget_settled_exactly:{id}"),
        &format!("{} charged to budget {id} during the run", run.after.metric),
        ("the mock", truth),
        ("the ledger", settled),
    );
    Some(BudgetVerdict {
        id: id.clone(),
        metric: run.after.metric.clone(),
        limit: run.after.limit,
        settled_before: run.settled_before,
        settled,
        truth,
        spent,
        overspend,
    })
}

impl fmt::Display for CheckOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(b) = &self.budget {
            writeln!(
                f,
                "budget {} ({}): limit {}, {} settled before the run; the mock served {} \
                 during it and the ledger settled {}; spent {}, overspend {}",
                b.id, b.metric, b.limit, b.settled_before, b.truth, b.settled, b.spent, b.overspend
            )?;
        }
        if self.passed() {
            writeln!(
                f,
                "invariants: all {} hold ({})",
                self.checked.len(),
                self.checked.join(", ")
            )
        } else {
            writeln!(
                f,
                "invariants: {} of {} FAILED — the books do not balance:",
                self.violations.len(),
                self.checked.len()
            )?;
            for v in &self.violations {
                writeln!(f, "  {}: {}", v.invariant, v.detail)?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 100 requests: 90 served (12 + 8 tokens, 110 µ$ each), 2 upstream 500s, 8 refused by
    /// the gateway; the projector saw all 100 with 10 errors.
    /// The names of the invariants `outcome` found broken, in order.
    fn failed(outcome: &CheckOutcome) -> Vec<&str> {
        outcome
            .violations
            .iter()
            .map(|v| v.invariant.as_str())
            .collect()
    }

    fn balanced() -> Books {
        Books {
            mock: StatsSnapshot {
                requests: 92,
                completed: 90,
                prompt_tokens: 90 * 12,
                completion_tokens: 90 * 8,
                cost_micros: 90 * 110,
                injected_500: 2,
                ..StatsSnapshot::default()
            },
            client: ClientCounts {
                ok: 90,
                upstream_errors: 2,
                refused: 8,
                transport_errors: 0,
            },
            projector: Some(ProjectorTotals {
                requests: 100,
                errors: 10,
                input_tokens: 90 * 12,
                output_tokens: 90 * 8,
                cost_micros: 90 * 110,
            }),
            budgets: Some(vec![
                BudgetBook {
                    id: "team".to_owned(),
                    limit: 10_000,
                    settled: 9_900,
                    enforced: true,
                    metric: "micros".to_owned(),
                    overrun: 0,
                },
                BudgetBook {
                    id: "watch".to_owned(),
                    limit: 10,
                    settled: 9_900,
                    enforced: false,
                    metric: "micros".to_owned(),
                    overrun: 0,
                },
            ]),
            budget: None,
        }
    }

    /// The balanced books, measured against a requests budget of 100 that had settled 5
    /// before the run: 92 requests reached the mock (90 served, 2 failed upstream), and
    /// the ledger settled all 92.
    fn with_run_budget() -> Books {
        let mut books = balanced();
        books.budget = Some(RunBudget {
            after: BudgetBook {
                id: "run".to_owned(),
                limit: 100,
                settled: 5 + 92,
                enforced: true,
                metric: "requests".to_owned(),
                overrun: 0,
            },
            settled_before: 5,
        });
        books
    }

    #[test]
    fn balanced_books_pass_every_invariant() {
        let outcome = check(&balanced());
        assert!(outcome.passed(), "{outcome}");
        assert_eq!(outcome.checked.len(), 6, "{:?}", outcome.checked);
        assert!(outcome.to_string().contains("all 6 hold"));
    }

    #[test]
    fn a_refusal_that_reached_the_upstream_fails() {
        let mut books = balanced();
        books.mock.requests += 1;
        let outcome = check(&books);
        assert_eq!(outcome.violations.len(), 1);
        assert_eq!(
            outcome.violations[0].invariant,
            "refusals_never_reach_upstream"
        );
        assert!(
            outcome.to_string().contains("the mock says 93"),
            "{outcome}"
        );
    }

    #[test]
    fn a_request_counted_twice_or_missing_in_the_projector_fails() {
        let mut books = balanced();
        let projector = books.projector.as_mut().unwrap_or_else(|| unreachable!());
        projector.requests += 1;
        projector.output_tokens -= 8;
        projector.cost_micros += 110;
        let outcome = check(&books);
        let failed = failed(&outcome);
        assert_eq!(
            failed,
            [
                "projector_requests",
                "projector_output_tokens",
                "projector_cost"
            ]
        );
        let text = outcome.to_string();
        assert!(text.contains("3 of 6 FAILED"), "{text}");
        assert!(text.contains("off by -8"), "{text}");
    }

    #[test]
    fn overspend_on_an_enforced_budget_fails_and_names_it() {
        let mut books = balanced();
        let budgets = books.budgets.as_mut().unwrap_or_else(|| unreachable!());
        budgets[0].settled = 10_001;
        let outcome = check(&books);
        assert_eq!(outcome.violations.len(), 1);
        assert_eq!(outcome.violations[0].invariant, "budget_not_exceeded:team");
        assert!(
            outcome.violations[0].detail.contains("overspend 1"),
            "{outcome}"
        );
    }

    #[test]
    fn an_overrun_counts_as_spend() {
        let mut books = balanced();
        let budgets = books.budgets.as_mut().unwrap_or_else(|| unreachable!());
        budgets[0].overrun = 150;
        let outcome = check(&books);
        assert_eq!(outcome.violations.len(), 1);
        assert!(
            outcome.violations[0].detail.contains("overspend 50"),
            "{outcome}"
        );
    }

    #[test]
    fn a_run_budget_within_its_limit_and_settled_exactly_passes() {
        let outcome = check(&with_run_budget());
        assert!(outcome.passed(), "{outcome}");
        assert!(
            outcome
                .checked
                .contains(&"budget_no_overspend:run".to_owned())
        );
        let verdict = outcome.budget.unwrap_or_else(|| unreachable!());
        assert_eq!(
            (verdict.truth, verdict.spent, verdict.overspend),
            (92, 97, 0)
        );
    }

    #[test]
    fn a_run_budget_the_mock_served_past_fails_with_the_overspend() {
        // The ledger's books look fine (it settled exactly its limit), but the mock served
        // 4 more requests than the budget allowed.
        let mut books = with_run_budget();
        books.projector = None;
        books.mock.requests += 4;
        books.mock.completed += 4;
        books.client.ok += 4;
        let run = books.budget.as_mut().unwrap_or_else(|| unreachable!());
        run.after.settled = 100;
        let outcome = check(&books);
        let failed = failed(&outcome);
        assert_eq!(
            failed,
            ["budget_no_overspend:run", "budget_settled_exactly:run"],
            "{outcome}"
        );
        assert_eq!(outcome.budget.as_ref().map(|v| v.overspend), Some(1));
        assert!(outcome.to_string().contains("(overspend 1)"), "{outcome}");
    }

    #[test]
    fn a_run_budget_settled_short_of_the_truth_fails() {
        let mut books = with_run_budget();
        let run = books.budget.as_mut().unwrap_or_else(|| unreachable!());
        run.after.settled -= 3;
        let outcome = check(&books);
        assert_eq!(outcome.violations.len(), 1, "{outcome}");
        assert_eq!(
            outcome.violations[0].invariant,
            "budget_settled_exactly:run"
        );
        assert!(outcome.to_string().contains("off by -3"), "{outcome}");
    }

    #[test]
    fn a_run_budget_in_tokens_or_micros_is_compared_in_its_unit() {
        let mut books = with_run_budget();
        let run = books.budget.as_mut().unwrap_or_else(|| unreachable!());
        run.after.metric = "micros".to_owned();
        run.after.limit = 10_000;
        run.settled_before = 200;
        // 90 answers at 110 µ$ = 9,900 µ$, on top of 200: 100 over the limit.
        run.after.settled = 200 + 90 * 110;
        let outcome = check(&books);
        assert_eq!(outcome.budget.as_ref().map(|v| v.overspend), Some(100));
        assert_eq!(outcome.violations.len(), 1, "{outcome}");

        let run = books.budget.as_mut().unwrap_or_else(|| unreachable!());
        run.after.metric = "tokens".to_owned();
        run.after.limit = 1_000_000;
        run.after.settled = 200 + 90 * 20;
        assert!(check(&books).passed());

        let run = books.budget.as_mut().unwrap_or_else(|| unreachable!());
        run.after.metric = "minutes".to_owned();
        let outcome = check(&books);
        assert_eq!(outcome.violations[0].invariant, "budget_truth:run");
    }

    #[test]
    fn without_projector_or_ledger_only_the_upstream_count_is_checked() {
        let mut books = balanced();
        books.projector = None;
        books.budgets = None;
        let outcome = check(&books);
        assert_eq!(outcome.checked, ["refusals_never_reach_upstream"]);
        assert!(outcome.passed());
    }
}
