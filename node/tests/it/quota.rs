//! Budgets across edges: three edges share one real ledger member (Raft on sled, gRPC on
//! loopback) through the `QuotaLedger` trait and reserve, then settle, against it. A USD
//! budget driven to exhaustion from all three never overspends, the upstream serves exactly
//! the admitted requests and refused ones get `429 budget_exceeded` without reaching it; a
//! requests-per-minute limit holds across the edges; an edge that vanishes holding a lease
//! is charged in full at expiry and the budget stays exact; ledger writes stay far below
//! one per request.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use floodgate::alerts::WebhookSender;
use floodgate::edge::quota::{LedgerFuture, QuotaError, QuotaLedger, QuotaSettings, Quotas};
use floodgate_cluster::consensus::{AlertSender, LedgerHandle, now_millis};
use floodgate_cluster::ledger::{
    Action, BudgetSpec, Effect, EndpointKind, EndpointSpec, Lease, LeaseRequest, Metric, Refusal,
    Scope, SettleResult, Settlement, TargetCredential, TargetSpec, Window,
};
use floodgate_cluster::{Command, LedgerNode, LedgerNodeConfig, LedgerState};
use serde_json::json;
use tempfile::TempDir;
use tokio_util::task::TaskTracker;

use crate::common::upstream::{COMPLETION_TOKENS, PROMPT_TOKENS, UPSTREAM_KEY, Upstream};
use crate::common::{self, DEADLINE, Reply, TestGateway, client, send, wait_until};

/// The target's price in the config: $1 per million input tokens, $1000 per million
/// output tokens, i.e. 1 and 1000 micro-dollars per token.
const PRICE: &str = "{input: 1.0, output: 1000.0}";
/// What one mock answer costs at [`PRICE`] (11 input, 7 output tokens).
const COST: u64 = PROMPT_TOKENS + COMPLETION_TOKENS * 1000;

/// A running one-member ledger.
struct Ledger {
    node: LedgerNode,
    _dir: TempDir,
}

impl Ledger {
    /// Starts member 1 on `127.0.0.1:0` with sled in a temp dir, forms the cluster and
    /// registers endpoint `chat` (budgets scoped to it need it).
    async fn start() -> Self {
        Self::start_with(None).await
    }

    /// The same, with `alerts` delivering budget alerts while it leads.
    async fn start_with(alerts: Option<Arc<dyn AlertSender>>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let raft = openraft::Config {
            cluster_name: "floodgate-quota-test".into(),
            heartbeat_interval: 50,
            election_timeout_min: 200,
            election_timeout_max: 400,
            ..Default::default()
        };
        let mut config = LedgerNodeConfig::new(1, dir.path(), "127.0.0.1:0".parse().unwrap());
        config.raft = raft;
        config.connect_timeout = Duration::from_millis(500);
        config.alerts = alerts;
        let node = LedgerNode::start(config).await.unwrap();
        node.initialize(BTreeMap::from([(1, node.addr().to_string())]))
            .await
            .unwrap();
        node.handle()
            .raft()
            .wait(Some(DEADLINE))
            .current_leader(1, "member 1 leads")
            .await
            .unwrap();
        let ledger = Self { node, _dir: dir };
        ledger
            .propose(Command::PutEndpoint(EndpointSpec {
                name: "chat".into(),
                kind: EndpointKind::Chat,
                targets: vec![TargetSpec {
                    provider: "openai".into(),
                    model: "gpt-test".into(),
                    api_base: None,
                    credential: TargetCredential::None,
                    weight: 1,
                    max_tokens: None,
                    price: None,
                    options_json: String::new(),
                }],
                fallbacks: Vec::new(),
                options_json: String::new(),
            }))
            .await;
        ledger
    }

    fn handle(&self) -> &LedgerHandle {
        self.node.handle()
    }

    /// Proposes `command` and checks the ledger accepted it.
    async fn propose(&self, command: Command) -> Effect {
        let committed = self.handle().propose(command, false).await.unwrap();
        committed.outcome.unwrap().effect
    }

    fn read<T>(&self, read: impl FnOnce(&LedgerState) -> T) -> T {
        self.handle().reader().read(read).unwrap()
    }

    /// (settled, outstanding, live leases) of budget `id`.
    fn usage(&self, id: &str) -> (u64, u64, usize) {
        self.read(|state| {
            let budget = &state.budgets()[id];
            (
                budget.usage.settled,
                budget.usage.outstanding,
                budget.leases.len(),
            )
        })
    }
}

/// A budget on endpoint `chat`.
fn budget(id: &str, metric: Metric, limit: u64, window: Window) -> BudgetSpec {
    BudgetSpec {
        id: id.into(),
        metric,
        limit,
        window,
        scope: Scope {
            endpoint: Some("chat".into()),
            ..Scope::default()
        },
        action: Action::Reject,
        webhook: None,
    }
}

/// The edge config: endpoint `chat` on the mock upstream at [`PRICE`], plus `budgets`.
fn config(upstream: &Upstream, budgets: &[BudgetSpec]) -> floodgate::config::Config {
    let yaml = format!(
        "auth: none
endpoints:
  - name: chat
    kind: chat
    targets:
      - provider: openai
        model: gpt-test
        api_base: \"{}\"
        credentials: {{api_key: $UPSTREAM_KEY}}
        price: {PRICE}
",
        upstream.base()
    );
    let mut config = common::config(&yaml, &[("UPSTREAM_KEY", UPSTREAM_KEY)]);
    config.budgets = budgets.into();
    config
}

/// Three edges sharing `ledger`, each with the same config.
async fn edges(
    ledger: Arc<dyn QuotaLedger>,
    upstream: &Upstream,
    budgets: &[BudgetSpec],
) -> Vec<(TestGateway, Quotas)> {
    let mut edges = Vec::new();
    for id in ["edge-a", "edge-b", "edge-c"] {
        let quotas = Quotas::start(
            ledger.clone(),
            id,
            QuotaSettings::default(),
            &TaskTracker::new(),
        );
        let gateway =
            TestGateway::start_with(config(upstream, budgets), Some(quotas.clone())).await;
        edges.push((gateway, quotas));
    }
    edges
}

fn chat_body() -> serde_json::Value {
    json!({"model": "chat", "max_tokens": COMPLETION_TOKENS,
           "messages": [{"role": "user", "content": "spend"}]})
}

/// Sends `per_edge` requests to every edge at once.
async fn burst(edges: &[(TestGateway, Quotas)], per_edge: usize) -> Vec<Reply> {
    let http = client();
    let mut tasks = Vec::new();
    for (gateway, _) in edges {
        for _ in 0..per_edge {
            let request = http
                .post(gateway.url("/v1/chat/completions"))
                .json(&chat_body());
            tasks.push(tokio::spawn(send(request)));
        }
    }
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.unwrap());
    }
    replies
}

/// Settles and closes every edge's leases.
async fn close_all(edges: &[(TestGateway, Quotas)]) {
    for (_, quotas) in edges {
        assert_eq!(quotas.close(DEADLINE).await, 0, "every lease closed");
    }
}

/// Checks a refusal: 429 with `code`, `Retry-After` and the budget's headers; returns
/// nothing, panics with the reply otherwise.
fn assert_refused(reply: &Reply, code: &str, limit: u64) {
    assert_eq!(reply.status, 429, "{}", reply.text);
    assert_eq!(reply.code(), code);
    assert!(reply.header("retry-after").parse::<u64>().unwrap() >= 1);
    assert_eq!(reply.header("x-ratelimit-limit"), limit.to_string());
    let remaining: u64 = reply.header("x-ratelimit-remaining").parse().unwrap();
    assert!(remaining <= limit);
    reply.header("x-ratelimit-reset").parse::<u64>().unwrap();
}

#[tokio::test]
async fn quota_usd_budget_holds_across_three_edges() {
    let ledger = Ledger::start().await;
    // Room for 71 answers at their actual cost, fewer at their worst case.
    let limit = 500_000;
    let spec = budget("usd", Metric::Micros, limit, Window::Month);
    ledger.propose(Command::PutBudget(spec.clone())).await;
    let upstream = Upstream::start().await;
    let shared: Arc<dyn QuotaLedger> = Arc::new(ledger.handle().clone());
    let edges = edges(shared, &upstream, std::slice::from_ref(&spec)).await;

    let replies = burst(&edges, 40).await;
    let served: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
    let refused: Vec<&Reply> = replies.iter().filter(|r| r.status != 200).collect();
    assert!(!served.is_empty(), "some requests fit the budget");
    assert!(!refused.is_empty(), "120 answers cost more than the budget");
    for reply in &refused {
        assert_refused(reply, "budget_exceeded", limit);
        assert_eq!(reply.body["error"]["type"], "insufficient_quota");
    }
    for reply in &served {
        assert_eq!(reply.header("x-ratelimit-limit"), limit.to_string());
    }
    assert_eq!(
        upstream.count(),
        served.len(),
        "refusals never reached the upstream"
    );

    // Every request has a usage record; refused ones say why.
    let mut spent = 0;
    let mut refused_records = 0;
    for (gateway, _) in &edges {
        for record in gateway.usage.all() {
            match record.status {
                200 => spent += record.cost_micros.unwrap(),
                429 => {
                    assert_eq!(record.error_type, Some("budget_exceeded"));
                    refused_records += 1;
                }
                other => panic!("unexpected status {other}"),
            }
        }
    }
    assert_eq!(refused_records, refused.len());
    assert_eq!(spent, served.len() as u64 * COST);
    assert!(spent <= limit, "spent {spent} of {limit}");
    eprintln!(
        "usd budget: {} served, {} refused, {spent} of {limit} micro-USD spent",
        served.len(),
        refused.len()
    );

    close_all(&edges).await;
    let (settled, outstanding, leases) = ledger.usage("usd");
    assert_eq!((outstanding, leases), (0, 0));
    assert_eq!(settled, spent, "the ledger charged exactly what was spent");
}

/// A streamed request the budget refuses never reached a provider, so its usage record
/// carries no tokens (the input estimate is only for streams cut after they were sent).
#[tokio::test]
async fn quota_a_refused_stream_records_no_tokens() {
    let ledger = Ledger::start().await;
    let spec = budget("one", Metric::Requests, 1, Window::Month);
    ledger.propose(Command::PutBudget(spec.clone())).await;
    let upstream = Upstream::start().await;
    let shared: Arc<dyn QuotaLedger> = Arc::new(ledger.handle().clone());
    let edges = edges(shared, &upstream, std::slice::from_ref(&spec)).await;
    let (gateway, _) = &edges[0];
    let http = client();
    let url = gateway.url("/v1/chat/completions");
    let served = send(http.post(&url).json(&chat_body())).await;
    assert_eq!(served.status, 200, "{}", served.text);
    let mut streamed = chat_body();
    streamed["stream"] = json!(true);
    let refused = send(http.post(&url).json(&streamed)).await;
    assert_refused(&refused, "budget_exceeded", 1);
    assert_eq!(
        upstream.count(),
        1,
        "the refused stream never reached the upstream"
    );

    let records = gateway.usage.all();
    let record = records
        .iter()
        .find(|r| r.status == 429)
        .expect("the refusal's usage record");
    assert_eq!(
        (record.usage.input_tokens, record.usage.output_tokens),
        (0, 0),
        "{record:?}"
    );
    assert_eq!(record.cost_micros, Some(0));
    close_all(&edges).await;
}

#[tokio::test]
async fn quota_requests_per_minute_hold_across_three_edges() {
    // Keep the burst inside one minute window.
    let into_minute = now_millis() % 60_000;
    if into_minute > 45_000 {
        tokio::time::sleep(Duration::from_millis(60_000 - into_minute + 50)).await;
    }
    let ledger = Ledger::start().await;
    let limit = 20;
    let spec = budget("rpm", Metric::Requests, limit, Window::Minute);
    ledger.propose(Command::PutBudget(spec.clone())).await;
    let upstream = Upstream::start().await;
    let shared: Arc<dyn QuotaLedger> = Arc::new(ledger.handle().clone());
    let edges = edges(shared, &upstream, std::slice::from_ref(&spec)).await;

    let window = now_millis() / 60_000;
    let replies = burst(&edges, 15).await;
    assert_eq!(
        now_millis() / 60_000,
        window,
        "the burst stayed in one window"
    );
    let served = replies.iter().filter(|r| r.status == 200).count();
    assert!(served >= 1 && served as u64 <= limit, "served {served}");
    for reply in replies.iter().filter(|r| r.status != 200) {
        assert_refused(reply, "rate_limit_exceeded", limit);
    }
    assert_eq!(upstream.count(), served);

    close_all(&edges).await;
    let (settled, outstanding, _) = ledger.usage("rpm");
    assert_eq!(settled, served as u64);
    assert_eq!(outstanding, 0);
}

/// A link to the ledger that can be cut, as when an edge's machine goes away.
struct Cuttable {
    inner: LedgerHandle,
    cut: AtomicBool,
}

impl Cuttable {
    fn check(&self) -> Result<(), QuotaError> {
        if self.cut.load(Ordering::SeqCst) {
            return Err(QuotaError::Unavailable("cut".into()));
        }
        Ok(())
    }
}

impl QuotaLedger for Cuttable {
    fn grant(&self, request: LeaseRequest) -> LedgerFuture<'_, Result<Lease, Refusal>> {
        Box::pin(async move {
            self.check()?;
            self.inner.grant(request).await
        })
    }

    fn settle(&self, settlements: Vec<Settlement>) -> LedgerFuture<'_, Vec<SettleResult>> {
        Box::pin(async move {
            self.check()?;
            self.inner.settle(settlements).await
        })
    }
}

#[tokio::test]
async fn quota_lease_of_a_vanished_edge_is_charged_at_expiry() {
    let ledger = Ledger::start().await;
    let limit = 1_000_000;
    let spec = budget("usd", Metric::Micros, limit, Window::Month);
    ledger.propose(Command::PutBudget(spec.clone())).await;
    let upstream = Upstream::start().await;
    let budgets = std::slice::from_ref(&spec);

    // The edge that will vanish holds short leases.
    let link = Arc::new(Cuttable {
        inner: ledger.handle().clone(),
        cut: AtomicBool::new(false),
    });
    let settings = QuotaSettings {
        lease_ttl: Duration::from_secs(1),
        ..QuotaSettings::default()
    };
    let doomed_quotas = Quotas::start(link.clone(), "edge-doomed", settings, &TaskTracker::new());
    let doomed =
        TestGateway::start_with(config(&upstream, budgets), Some(doomed_quotas.clone())).await;
    let http = client();
    let reply = send(
        http.post(doomed.url("/v1/chat/completions"))
            .json(&chat_body()),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let held: Vec<(u64, u64, u64)> = ledger.read(|state| {
        state
            .leases()
            .values()
            .filter(|lease| lease.edge_id == "edge-doomed")
            .map(|lease| (lease.id, lease.granted, lease.expires_at))
            .collect()
    });
    assert_eq!(held.len(), 1, "the edge holds one lease");
    let (lease_id, granted, expires_at) = held[0];
    assert!(granted > COST, "the lease has room left");
    link.cut.store(true, Ordering::SeqCst);
    drop(doomed_quotas);
    drop(doomed);

    // The other edges go on spending meanwhile.
    let shared: Arc<dyn QuotaLedger> = Arc::new(ledger.handle().clone());
    let others = edges(shared, &upstream, budgets).await;
    let replies = burst(&others, 5).await;
    assert!(replies.iter().all(|r| r.status == 200));
    close_all(&others).await;

    // Past the lease's expiry the ledger charges whatever it still holds.
    wait_until("the lease's expiry", || {
        (now_millis() > expires_at).then_some(())
    })
    .await;
    let Effect::Expired { leases, .. } = ledger.propose(Command::ExpireLeases).await else {
        panic!("expire_leases answers the expired leases");
    };
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].lease, lease_id);

    let (settled, outstanding, live) = ledger.usage("usd");
    assert_eq!((outstanding, live), (0, 0));
    // The vanished edge is charged its whole grant (its one answer included, whether or
    // not it was settled before the link went); the others exactly what they spent.
    assert_eq!(settled, granted + replies.len() as u64 * COST);
    assert!(settled <= limit);
}

#[tokio::test]
async fn quota_ledger_writes_stay_far_below_one_per_request() {
    let ledger = Ledger::start().await;
    let spec = budget("rpm-big", Metric::Requests, 1_000_000, Window::Month);
    ledger.propose(Command::PutBudget(spec.clone())).await;
    let upstream = Upstream::start().await;
    let shared: Arc<dyn QuotaLedger> = Arc::new(ledger.handle().clone());
    let edges = edges(shared, &upstream, std::slice::from_ref(&spec)).await;

    let mut served = 0;
    for _ in 0..10 {
        // 10 rounds of 3 × 34 concurrent requests: 1020 in all.
        served += burst(&edges, 34)
            .await
            .iter()
            .filter(|r| r.status == 200)
            .count();
    }
    assert_eq!(served, 1020);
    close_all(&edges).await;
    let writes: u64 = edges.iter().map(|(_, q)| q.ledger_writes()).sum();
    eprintln!("ledger writes for {served} requests on 3 edges: {writes}");
    assert!(writes * 10 < served as u64, "{writes} ledger writes");
    assert_eq!(ledger.usage("rpm-big").0, 1020);
}

/// A webhook receiver: every POST's `idempotency-key` header and JSON body.
#[derive(Clone, Default)]
struct Hook {
    calls: Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>,
}

impl Hook {
    /// Serves on `127.0.0.1:0`; the URL to post to.
    async fn start(&self) -> String {
        let calls = self.calls.clone();
        let app = axum::Router::new().route(
            "/hooks/budget",
            axum::routing::post(
                move |headers: http::HeaderMap, body: axum::Json<serde_json::Value>| async move {
                    let key = headers
                        .get("idempotency-key")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    calls.lock().unwrap().push((key, body.0));
                    http::StatusCode::NO_CONTENT
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/hooks/budget")
    }

    fn calls(&self) -> Vec<(String, serde_json::Value)> {
        self.calls.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn quota_an_alert_budget_calls_its_webhook_once_at_the_first_crossing() {
    let hook = Hook::default();
    let url = hook.start().await;
    let sender: Arc<dyn AlertSender> = Arc::new(WebhookSender::new().unwrap());
    let ledger = Ledger::start_with(Some(sender)).await;
    let mut spec = budget("watch", Metric::Requests, 5, Window::Total);
    spec.action = Action::Alert;
    spec.webhook = Some(url);
    ledger.propose(Command::PutBudget(spec.clone())).await;
    let upstream = Upstream::start().await;
    let shared: Arc<dyn QuotaLedger> = Arc::new(ledger.handle().clone());
    let edges = edges(shared, &upstream, std::slice::from_ref(&spec)).await;

    let replies = burst(&edges, 3).await;
    assert!(
        replies.iter().all(|r| r.status == 200),
        "alert budgets never refuse"
    );
    close_all(&edges).await;
    assert_eq!(ledger.usage("watch").0, 9);
    let calls = wait_until("the webhook call", || {
        let calls = hook.calls();
        (!calls.is_empty()).then_some(calls)
    })
    .await;
    let window_start = ledger.read(|s| s.budgets()["watch"].usage.window_start);
    assert_eq!(calls[0].0, format!("watch:{window_start}"));
    let body = &calls[0].1;
    assert_eq!(body["type"], "floodgate.budget_alert");
    assert_eq!(body["alert"]["budget"], "watch");
    assert_eq!(body["alert"]["limit"], 5);
    assert!(body["alert"]["settled"].as_u64().unwrap() >= 5);
    assert!(body["alert"].get("webhook").is_none());
    wait_until("the delivery to be recorded", || {
        ledger
            .read(|s| s.budgets()["watch"].usage.alert_delivered)
            .then_some(())
    })
    .await;

    // More spending in the same window calls nobody again.
    let replies = burst(&edges, 2).await;
    assert!(replies.iter().all(|r| r.status == 200));
    close_all(&edges).await;
    assert_eq!(ledger.usage("watch").0, 15);
    assert!(ledger.read(LedgerState::pending_alerts).is_empty());
    assert_eq!(hook.calls().len(), 1, "once per window");
}
