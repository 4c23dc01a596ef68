//! Unit tests of the quota book over an in-memory ledger: the real, pure ledger logic
//! (`floodgate_cluster::apply` on a `LedgerState`) behind a mutex, with a grant counter and
//! an optional delay that holds grants in flight.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use floodgate_cluster::consensus::now_millis;
use floodgate_cluster::ledger::{
    Action, BudgetSpec, Effect, Lease, LeaseRequest, Metric, Refusal, Scope, SettleResult,
    Settlement, Window,
};
use floodgate_cluster::{Command, LedgerState, apply};
use tokio_util::task::TaskTracker;

use super::lease::LocalLease;
use super::ledger::{LedgerFuture, QuotaError, QuotaLedger};
use super::{Charge, QuotaSettings, Quotas, flusher};

#[derive(Default)]
struct MemLedger {
    state: Mutex<LedgerState>,
    grants: AtomicUsize,
    grant_delay: Option<Duration>,
}

impl MemLedger {
    fn with(budgets: &[BudgetSpec], grant_delay: Option<Duration>) -> Arc<Self> {
        let ledger = Self {
            grant_delay,
            ..Self::default()
        };
        for spec in budgets {
            ledger.apply(Command::PutBudget(spec.clone())).unwrap();
        }
        Arc::new(ledger)
    }

    fn apply(&self, command: Command) -> Result<Effect, QuotaError> {
        let mut state = self.state.lock().unwrap();
        Ok(apply(&mut state, command, now_millis())?.effect)
    }

    /// (settled, outstanding) of budget `id`.
    fn usage(&self, id: &str) -> (u64, u64) {
        let state = self.state.lock().unwrap();
        let usage = &state.budgets()[id].usage;
        (usage.settled, usage.outstanding)
    }

    fn leases(&self) -> usize {
        self.state.lock().unwrap().leases().len()
    }
}

impl QuotaLedger for MemLedger {
    fn grant(&self, request: LeaseRequest) -> LedgerFuture<'_, Result<Lease, Refusal>> {
        Box::pin(async move {
            self.grants.fetch_add(1, Ordering::SeqCst);
            if let Some(delay) = self.grant_delay {
                tokio::time::sleep(delay).await;
            }
            match self.apply(Command::GrantLease(request))? {
                Effect::Granted(lease) => Ok(Ok(lease)),
                Effect::Refused(refusal) => Ok(Err(refusal)),
                _ => Err(QuotaError::UnexpectedEffect {
                    command: "grant_lease",
                    answered: "other",
                }),
            }
        })
    }

    fn settle(&self, settlements: Vec<Settlement>) -> LedgerFuture<'_, Vec<SettleResult>> {
        Box::pin(async move {
            match self.apply(Command::Settle { settlements })? {
                Effect::Settled { results, .. } => Ok(results),
                _ => Err(QuotaError::UnexpectedEffect {
                    command: "settle",
                    answered: "other",
                }),
            }
        })
    }
}

fn budget(id: &str, metric: Metric, limit: u64) -> BudgetSpec {
    BudgetSpec {
        id: id.into(),
        metric,
        limit,
        window: Window::Total,
        scope: Scope::default(),
        action: Action::Reject,
        webhook: None,
    }
}

fn lease(granted: u64, life_ms: u64) -> Lease {
    Lease {
        id: 1,
        budget: "b".into(),
        edge_id: "edge".into(),
        window_start: 0,
        granted,
        held: granted,
        settled: 0,
        granted_at: 1_000,
        expires_at: 1_000 + life_ms,
    }
}

fn quotas(ledger: Arc<MemLedger>, settings: QuotaSettings, budgets: &[BudgetSpec]) -> Quotas {
    let quotas = Quotas::start(ledger, "edge-1", settings, &TaskTracker::new());
    quotas.sync(budgets);
    quotas
}

#[test]
fn concurrent_reservations_never_exceed_a_lease() {
    let local = Arc::new(LocalLease::new(
        &lease(1_000, 60_000),
        Instant::now(),
        Duration::from_secs(1),
    ));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let local = local.clone();
            std::thread::spawn(move || {
                (0..200)
                    .filter(|_| local.try_reserve(7, Instant::now()))
                    .count() as u64
            })
        })
        .collect();
    let reserved: u64 = threads.into_iter().map(|t| t.join().unwrap() * 7).sum();
    assert!(reserved <= 1_000);
    assert_eq!(reserved + local.room(), 1_000);
    assert!(
        local.room() < 7,
        "reservations stopped only when the room ran out"
    );
    assert_eq!(local.in_flight(), reserved / 7);
}

#[tokio::test]
async fn concurrent_requests_that_find_no_room_share_one_grant() {
    let spec = budget("rpm", Metric::Requests, 10_000);
    let ledger = MemLedger::with(std::slice::from_ref(&spec), Some(Duration::from_millis(50)));
    let settings = QuotaSettings {
        ask_requests: 100,
        ..QuotaSettings::default()
    };
    let quotas = quotas(ledger.clone(), settings, std::slice::from_ref(&spec));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let quotas = quotas.clone();
            let spec = spec.clone();
            tokio::spawn(async move {
                let book = quotas.book(&spec.id).unwrap();
                quotas.reserve_on(&book, &spec, 1).await.is_ok()
            })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap());
    }
    assert_eq!(ledger.grants.load(Ordering::SeqCst), 1, "single flight");
    assert_eq!(quotas.ledger_writes(), 1);
    assert_eq!(quotas.book(&spec.id).unwrap().room(), 50);
}

#[tokio::test]
async fn settling_returns_the_unused_reservation_and_batches_the_charge() {
    let spec = budget("usd", Metric::Micros, 1_000_000);
    let ledger = MemLedger::with(std::slice::from_ref(&spec), None);
    let quotas = quotas(
        ledger.clone(),
        QuotaSettings::default(),
        std::slice::from_ref(&spec),
    );
    let book = quotas.book(&spec.id).unwrap();
    let mut settled_micros = 0;
    for used in [30, 55, 100] {
        let mut reservation = quotas.reservation();
        let index = reservation.add_hold(spec.metric);
        let lease = quotas.reserve_on(&book, &spec, 100).await.unwrap();
        let granted = lease.granted();
        reservation.add_part(index, lease.clone(), 100);
        assert_eq!(lease.room(), granted - settled_micros - 100);
        reservation.settle(Charge::Used {
            tokens: 0,
            micros: Some(used),
        });
        settled_micros += used;
        assert_eq!(
            lease.room(),
            granted - settled_micros,
            "unused part returned"
        );
        assert_eq!(lease.in_flight(), 0);
    }
    assert_eq!(ledger.usage("usd").0, 0, "nothing sent before the batch");
    flusher::round(&quotas.core, false).await.unwrap();
    let (settled, outstanding) = ledger.usage("usd");
    assert_eq!(settled, 185);
    let granted = quotas.book(&spec.id).unwrap().room() + 185;
    assert_eq!(outstanding, granted - 185, "the lease stays open");
    // One grant, one settlement batch for three requests.
    assert_eq!(quotas.ledger_writes(), 2);
}

#[tokio::test]
async fn a_dropped_reservation_charges_in_full() {
    let spec = budget("tokens", Metric::Tokens, 100_000);
    let ledger = MemLedger::with(std::slice::from_ref(&spec), None);
    let quotas = quotas(
        ledger.clone(),
        QuotaSettings::default(),
        std::slice::from_ref(&spec),
    );
    let book = quotas.book(&spec.id).unwrap();
    let mut reservation = quotas.reservation();
    let index = reservation.add_hold(spec.metric);
    let lease = quotas.reserve_on(&book, &spec, 400).await.unwrap();
    reservation.add_part(index, lease, 400);
    drop(reservation);
    flusher::round(&quotas.core, false).await.unwrap();
    assert_eq!(ledger.usage("tokens").0, 400);
}

#[test]
fn leases_stop_taking_reservations_before_they_expire() {
    // A 10 s lease asked 9.5 s ago, with a 1 s margin: retired, though not expired.
    let asked = Instant::now() - Duration::from_millis(9_500);
    let old = LocalLease::new(&lease(1_000, 10_000), asked, Duration::from_secs(1));
    let now = Instant::now();
    assert!(old.is_due(now));
    assert!(!old.is_expired(now));
    assert!(!old.try_reserve(1, now));
    assert_eq!(old.in_flight(), 0);
    // A short lease near its window's end keeps three quarters of its life.
    let short = LocalLease::new(&lease(10, 400), Instant::now(), Duration::from_secs(1));
    assert!(short.try_reserve(1, Instant::now()));
    assert!(!short.is_due(Instant::now() + Duration::from_millis(299)));
    assert!(short.is_due(Instant::now() + Duration::from_millis(301)));
}

#[tokio::test]
async fn a_retired_lease_closes_only_when_its_requests_have_finished() {
    let spec = budget("usd", Metric::Micros, 1_000_000);
    let ledger = MemLedger::with(std::slice::from_ref(&spec), None);
    let quotas = quotas(
        ledger.clone(),
        QuotaSettings::default(),
        std::slice::from_ref(&spec),
    );
    let book = quotas.book(&spec.id).unwrap();
    let mut reservation = quotas.reservation();
    let index = reservation.add_hold(spec.metric);
    let lease = quotas.reserve_on(&book, &spec, 500).await.unwrap();
    reservation.add_part(index, lease.clone(), 500);

    // Shutdown retires every lease, but this one has a request in flight: it stays open.
    assert_eq!(flusher::round(&quotas.core, true).await.unwrap(), 1);
    assert!(lease.is_retired());
    assert_eq!(ledger.leases(), 1);
    let next = quotas.reserve_on(&book, &spec, 1).await.unwrap();
    assert_ne!(next.id(), lease.id(), "a new lease for new requests");
    next.finish(1, 0);

    reservation.settle(Charge::Used {
        tokens: 0,
        micros: Some(120),
    });
    assert_eq!(quotas.close(Duration::from_secs(1)).await, 0);
    assert_eq!(ledger.leases(), 0);
    let (settled, outstanding) = ledger.usage("usd");
    assert_eq!(settled, 120, "the in-flight request's charge");
    assert_eq!(outstanding, 0, "both leases closed, their rest returned");
}
