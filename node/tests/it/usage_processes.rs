//! The usage pipeline as an operator runs it: two edges and a projector, each its own
//! `floodgate serve` process, and a real `nats-server`. Under load, NATS is killed and
//! restarted and the projector is SIGKILLed and restarted; afterwards `floodgate ctl usage`
//! reports exactly what the mock upstream served: every request once, its tokens and cost.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use floodgate_events::testing::NatsServer;
use serde_json::{Value, json};

use crate::binary::{Node, write};
use crate::common::upstream::{COMPLETION_TOKENS, PROMPT_TOKENS, UPSTREAM_KEY, Upstream};
use crate::common::{client, eventually};

const BIN: &str = env!("CARGO_BIN_EXE_floodgate");
/// 1 µ$ per input token, 1000 µ$ per output token.
const PRICE: &str = "{input: 1.0, output: 1000.0}";
const COST: u64 = PROMPT_TOKENS + COMPLETION_TOKENS * 1000;
/// Requests per client, and clients.
const PER_CLIENT: usize = 60;
const CLIENTS: usize = 4;
/// Reconnects after an outage take the clients' backoff.
const DEADLINE: Duration = Duration::from_secs(45);

/// A config file for an edge (and the projector, which reads its `events:` section).
fn config(dir: &Path, name: &str, upstream: &str, nats: &str) -> String {
    let spool = dir.join(format!("spool-{name}"));
    write(
        dir,
        &format!("{name}.yaml"),
        &format!(
            "listen: 127.0.0.1:0
auth: none
endpoints:
  - name: chat
    kind: chat
    targets:
      - {{provider: openai, model: gpt-test, api_base: \"{upstream}\", credentials: {{api_key: \"{UPSTREAM_KEY}\"}}, price: {PRICE}}}
events:
  backend: nats
  nats: {{urls: [\"{nats}\"], ack_timeout: 1s}}
  spool: {{dir: \"{}\", flush: 5ms}}
",
            spool.display()
        ),
    )
}

/// Starts the projector over `config` with its store in `store`; the process and its
/// usage JSON API's address.
async fn projector(config: &str, store: &Path) -> (Node, SocketAddr) {
    let mut node = Node::spawn(
        &[
            "serve",
            "--roles",
            "projector",
            "--config",
            config,
            "--data-dir",
            store.to_str().unwrap(),
            "--projector-listen",
            "127.0.0.1:0",
            "--usage-listen",
            "127.0.0.1:0",
        ],
        &[("FLOODGATE_LOG_FORMAT", "json")],
    );
    let http = node
        .logged_address("usage query API listening", "http")
        .await;
    (node, http)
}

/// `floodgate ctl usage --json` totals over the last hour: (requests, errors, tokens, cost).
fn ctl_totals(usage: SocketAddr) -> Option<(u64, u64, u64, u64)> {
    let output = std::process::Command::new(BIN)
        .args(["ctl", "usage", "--since", "1h", "--json", "--projector"])
        .arg(format!("http://{usage}"))
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let report: Value = serde_json::from_slice(&output.stdout).ok()?;
    let series = report["series"].as_array()?;
    let mut totals = (0, 0, 0, 0);
    for series in series {
        let total = &series["total"];
        totals.0 += total["requests"].as_u64()?;
        totals.1 += total["errors"].as_u64()?;
        let tokens = &total["tokens"];
        totals.2 += tokens["input"].as_u64()? + tokens["output"].as_u64()?;
        totals.3 += total["cost_micros"].as_u64()?;
    }
    Some(totals)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_nats_and_a_projector_as_processes_count_exactly_through_faults() {
    let mut nats = NatsServer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let edge_a = config(dir.path(), "edge-a", &upstream.base(), &nats.url());
    let edge_b = config(dir.path(), "edge-b", &upstream.base(), &nats.url());
    let env = [("FLOODGATE_LOG_FORMAT", "json")];
    let mut edges = [
        Node::spawn(&["serve", "--config", &edge_a], &env),
        Node::spawn(&["serve", "--config", &edge_b], &env),
    ];
    let addrs = [edges[0].listening().await, edges[1].listening().await];
    let store = dir.path().join("projection");
    let (mut projector_node, _) = projector(&edge_a, &store).await;

    let answered = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let answered = answered.clone();
            tokio::spawn(async move {
                for i in 0..PER_CLIENT {
                    let edge = addrs[(c + i) % 2];
                    let response = client()
                        .post(format!("http://{edge}/v1/chat/completions"))
                        .json(&json!({"model": "chat", "stream": i % 2 == 0,
                            "stream_options": {"include_usage": true},
                            "messages": [{"role": "user", "content": "count me"}]}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 200);
                    response.bytes().await.unwrap();
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let total = CLIENTS * PER_CLIENT;
    let reached = |n: usize| {
        let answered = answered.clone();
        move || {
            let answered = answered.clone();
            async move { (answered.load(Ordering::Relaxed) >= n).then_some(()) }
        }
    };

    // Faults under load: NATS down for a while, the projector killed and restarted.
    eventually("a quarter of the load", DEADLINE, reached(total / 4)).await;
    nats.kill();
    projector_node.kill();
    eventually("half of the load, NATS down", DEADLINE, reached(total / 2)).await;
    nats.restart().await.unwrap();
    let (_projector_node, usage) = projector(&edge_a, &store).await;
    for task in clients {
        task.await.unwrap();
    }
    assert_eq!(answered.load(Ordering::Relaxed), total);

    let served = upstream.count() as u64;
    assert_eq!(served, total as u64, "the mock served every request once");
    let expected = (
        served,
        0,
        served * (PROMPT_TOKENS + COMPLETION_TOKENS),
        served * COST,
    );
    let totals = eventually("ctl usage to report every request", DEADLINE, || async {
        ctl_totals(usage).filter(|totals| totals.0 >= expected.0)
    })
    .await;
    assert_eq!(totals, expected, "(requests, errors, tokens, cost)");
    for edge in &mut edges {
        edge.kill();
    }
}
