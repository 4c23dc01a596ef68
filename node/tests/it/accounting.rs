//! Every request accounted exactly once, end to end: two edges publish their usage events
//! through their spools to a real NATS JetStream, a projector folds the stream, and its
//! totals equal what the mock upstream actually served: requests (plain, streamed and
//! failed), tokens and cost, per endpoint.

use std::sync::Arc;
use std::time::Duration;

use floodgate::config::events::{EventsBackend, EventsConfig, NatsEvents};
use floodgate::projector_role::{self, Feed};
use floodgate_events::FlushPolicy;
use floodgate_events::stream::StreamSettings;
use floodgate_events::testing::NatsServer;
use floodgate_projector::ProjectorSettings;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::common::upstream::{COMPLETION_TOKENS, PROMPT_TOKENS, UPSTREAM_KEY, Upstream};
use crate::common::{Reply, TestGateway, client, config, send};

/// The targets' price: 1 µ$ per input token, 1000 µ$ per output token.
const PRICE: &str = "{input: 1.0, output: 1000.0}";
/// What one answer of the mock costs at [`PRICE`].
const COST: u64 = PROMPT_TOKENS + COMPLETION_TOKENS * 1000;
/// Requests sent, a third each plain, streamed and failing.
const REQUESTS: usize = 60;
/// Folding waits on two spools, NATS and the projector's fetch loop.
const DEADLINE: Duration = Duration::from_secs(30);

fn nats_events(url: &str) -> NatsEvents {
    NatsEvents {
        urls: vec![url.to_owned()],
        shard: "0".to_owned(),
        stream: StreamSettings::default(),
        ack_timeout: Duration::from_secs(1),
    }
}

/// An in-process edge whose usage goes through its own spool to NATS.
async fn edge(
    name: &str,
    upstream: &Upstream,
    nats_url: &str,
    spool: &std::path::Path,
    tracker: &TaskTracker,
    stop: &CancellationToken,
) -> TestGateway {
    let events = EventsConfig {
        backend: EventsBackend::Nats(nats_events(nats_url)),
        spool_dir: spool.to_owned(),
        flush: FlushPolicy::Every(Duration::from_millis(5)),
        max_events: 100_000,
        drain: Duration::ZERO,
    };
    let pipeline = floodgate::events::start(&events, name.to_owned(), tracker, stop)
        .await
        .unwrap();
    let base = upstream.base();
    let yaml = format!(
        "auth: none
endpoints:
  - name: chat
    kind: chat
    targets:
      - {{provider: openai, model: gpt-test, api_base: \"{base}\", credentials: {{api_key: $UPSTREAM_KEY}}, price: {PRICE}}}
  - name: failing
    kind: chat
    targets:
      - {{provider: openai, model: error-500, api_base: \"{base}\", credentials: {{api_key: $UPSTREAM_KEY}}, price: {PRICE}}}
"
    );
    let config = config(&yaml, &[("UPSTREAM_KEY", UPSTREAM_KEY)]);
    TestGateway::start_with_sink(config, pipeline.sink.clone()).await
}

/// One request of kind `i % 3`: plain `chat`, streamed `chat`, or `failing`.
async fn request(gateway: &TestGateway, i: usize) -> Reply {
    let (model, stream) = match i % 3 {
        0 => ("chat", false),
        1 => ("chat", true),
        _ => ("failing", false),
    };
    send(
        client()
            .post(gateway.url("/v1/chat/completions"))
            .json(&json!({
        "model": model, "stream": stream, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "count me once"}]})),
    )
    .await
}

/// The projector's per-endpoint totals, once it has folded `expected` requests.
async fn totals(http: std::net::SocketAddr, expected: u64) -> Vec<Value> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let url = format!(
        "http://{http}/usage/v1/top?from={}&to={}&dimension=endpoint&by=requests",
        now - 3_600,
        now + 3_600
    );
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let top: Value = client()
            .get(&url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let entries = top["entries"].as_array().cloned().unwrap_or_default();
        let folded: u64 = entries.iter().filter_map(|e| e["requests"].as_u64()).sum();
        assert!(folded <= expected, "more requests folded than sent: {top}");
        if folded == expected {
            return entries;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the projector folded {folded} of {expected} requests: {top}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projector_totals_equal_what_the_upstream_served_across_two_edges() {
    let server = NatsServer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let upstream = Upstream::start().await;
    let (stop, tracker) = (CancellationToken::new(), TaskTracker::new());
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let edges = Arc::new([
        edge(
            "edge-a",
            &upstream,
            &server.url(),
            dirs[0].path(),
            &tracker,
            &stop,
        )
        .await,
        edge(
            "edge-b",
            &upstream,
            &server.url(),
            dirs[1].path(),
            &tracker,
            &stop,
        )
        .await,
    ]);
    let mut settings = ProjectorSettings::new(dirs[2].path());
    settings.grpc_listen = "127.0.0.1:0".parse().unwrap();
    settings.http_listen = "127.0.0.1:0".parse().unwrap();
    let feed = Feed::Nats {
        nats: nats_events(&server.url()),
        consumer: "totals-test".to_owned(),
    };
    let (_projector, listening) = projector_role::start(settings, feed, &stop, &tracker)
        .await
        .unwrap();

    // Four clients at once, each over both edges.
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let edges = edges.clone();
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for i in (c..REQUESTS).step_by(4) {
                    statuses.push((i % 3, request(&edges[i % 2], i).await.status));
                }
                statuses
            })
        })
        .collect();
    let mut answered = 0;
    for task in clients {
        for (kind, status) in task.await.unwrap() {
            assert_eq!(status, if kind == 2 { 500 } else { 200 }, "kind {kind}");
            answered += 1;
        }
    }
    assert_eq!(answered, REQUESTS);

    let served = upstream
        .seen()
        .iter()
        .filter(|seen| !seen.body.to_string().contains("error-500"))
        .count() as u64;
    assert_eq!(served, (REQUESTS as u64) * 2 / 3, "the mock's own count");
    let entries = totals(listening.http, REQUESTS as u64).await;
    let entry = |name: &str| {
        entries
            .iter()
            .find(|e| e["value"] == name)
            .unwrap_or_else(|| panic!("no totals for {name}: {entries:?}"))
            .clone()
    };
    let chat = entry("chat");
    assert_eq!(chat["requests"], served);
    assert_eq!(chat["errors"], 0);
    assert_eq!(chat["tokens"], served * (PROMPT_TOKENS + COMPLETION_TOKENS));
    assert_eq!(chat["cost_micros"], served * COST);
    assert_eq!(chat["unknown_cost"], 0);
    let failing = entry("failing");
    assert_eq!(failing["requests"], REQUESTS as u64 / 3);
    assert_eq!(failing["errors"], REQUESTS as u64 / 3);
    assert_eq!(failing["tokens"], 0);
    assert_eq!(failing["cost_micros"], 0);

    // The fold loop's own account: every event folded once, each with its lag measured.
    let stats: Value = client()
        .get(format!("http://{}/usage/v1/stats", listening.http))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["folded"], REQUESTS as u64, "{stats}");
    assert_eq!(stats["lag_us"]["count"], REQUESTS as u64, "{stats}");
    let p99 = stats["lag_us"]["p99"].as_u64().unwrap();
    assert!(
        p99 > 0 && p99 <= stats["lag_us"]["max"].as_u64().unwrap(),
        "{stats}"
    );
    stop.cancel();
}
