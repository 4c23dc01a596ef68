//! A whole cluster as an operator runs it from the README: three ledger members and two
//! edges, each its own `floodgate serve` process on loopback, sled in temp dirs, one mock
//! OpenAI upstream. Members are killed with SIGKILL. The test follows one story:
//!
//! 1. the members form the ledger from `--init` and apply the config file's declarations;
//!    edge A follows every member, edge B follows only member 3;
//! 2. a key and an endpoint created through member 1's admin API reach edge B (attached to
//!    member 3), and a key whose expiry has passed is refused there;
//! 3. both edges drive one request budget to exhaustion: the upstream served exactly the
//!    admitted requests, never more than the limit, and the ledger settled exactly that;
//! 4. the leader is killed: a new one is elected, writes through a survivor reach the
//!    edges, and the restarted member catches up;
//! 5. the whole ledger is killed: both edges keep serving from their last config; when the
//!    members come back, a change reaches both edges again.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::binary::{Node, reserve_port, write};
use crate::common::upstream::{UPSTREAM_KEY, Upstream};
use crate::common::{client, eventually};

/// The gateway key declared in the file.
const KEY: &str = "fg-cluster-test-key-0123456789";
/// The request budget on endpoint `metered`.
const LIMIT: u64 = 24;
/// Every process's environment: the key-encryption key (32 bytes of 7, base64), the
/// cluster token, and JSON logs.
const ENV: [(&str, &str); 3] = [
    (
        "FLOODGATE_KEK",
        "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=",
    ),
    ("FLOODGATE_CLUSTER_TOKEN", "cluster-test-token"),
    ("FLOODGATE_LOG_FORMAT", "json"),
];
/// How long cluster-level changes (elections, restarts, watch reconnects) may take.
const CLUSTER_DEADLINE: Duration = Duration::from_secs(30);

/// One ledger member: its process (when running), id, ports and data dir.
struct Member {
    id: u64,
    grpc: SocketAddr,
    admin: SocketAddr,
    data: PathBuf,
    process: Option<Node>,
}

impl Member {
    fn url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    fn admin_url(&self, path: &str) -> String {
        format!("http://{}/admin/v1/{path}", self.admin)
    }

    /// Starts (or restarts, on the same ports and data) the member process.
    fn start(&mut self, init: &str, config: &str, env: &[(&str, &str)]) {
        let (id, grpc, admin) = (
            self.id.to_string(),
            self.grpc.to_string(),
            self.admin.to_string(),
        );
        let data = self.data.to_str().unwrap().to_owned();
        self.process = Some(Node::spawn(
            &[
                "serve",
                "--roles",
                "ledger",
                "--node-id",
                &id,
                "--data-dir",
                &data,
                "--ledger-listen",
                &grpc,
                "--admin-listen",
                &admin,
                "--init",
                init,
                "--config",
                config,
            ],
            env,
        ));
    }

    fn kill(&mut self) {
        self.process.take().expect("the member runs").kill();
    }

    /// The member's status, when its admin API answers.
    async fn status(&self) -> Option<Value> {
        let response = client()
            .get(self.admin_url("status"))
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .ok()?;
        response.status().is_success().then_some(())?;
        response.json().await.ok()
    }
}

/// Sends one chat request to `edge` for endpoint `model` with `key`; the status and body.
async fn chat(edge: SocketAddr, model: &str, key: &str) -> (u16, Value) {
    let response = client()
        .post(format!("http://{edge}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": model, "max_tokens": 16,
                      "messages": [{"role": "user", "content": "hello cluster"}]}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Waits until `edge` answers `model` with `status`.
async fn serves(edge: SocketAddr, model: &str, key: &str, status: u16) {
    eventually(
        &format!("{edge} to answer {model} with {status}"),
        CLUSTER_DEADLINE,
        || async move { (chat(edge, model, key).await.0 == status).then_some(()) },
    )
    .await;
}

/// An endpoint object for the admin API, pointing at the mock upstream through the
/// credential `upstream` stored through the admin API.
fn endpoint(name: &str, base: &str) -> Value {
    json!({"name": name, "kind": "chat", "targets": [{
        "provider": "openai", "model": "gpt-test", "api_base": base,
        "credential": {"stored": {"name": "upstream"}}, "weight": 1, "max_tokens": null, "price": null}]})
}

/// A write through `member`'s admin API, retried while the member answers `503` (no
/// leader for a moment: elections on a busy machine); any other failure fails the test.
/// The reply's JSON.
async fn admin_write(member: &Member, method: reqwest::Method, path: &str, body: Value) -> Value {
    eventually(
        &format!("member {} to accept {method} {path}", member.id),
        CLUSTER_DEADLINE,
        || {
            let (method, body) = (method.clone(), body.clone());
            async move {
                let response = client()
                    .request(method.clone(), member.admin_url(path))
                    .json(&body)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                    .ok()?;
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                assert!(
                    status.is_success() || status == 503,
                    "{method} {path} refused with {status}: {text}"
                );
                if status.is_success() {
                    Some(serde_json::from_str(&text).unwrap_or(Value::Null))
                } else {
                    None
                }
            }
        },
    )
    .await
}

/// Puts an endpoint through `member`'s admin API.
async fn put_endpoint(member: &Member, name: &str, base: &str) {
    admin_write(
        member,
        reqwest::Method::PUT,
        "endpoint",
        endpoint(name, base),
    )
    .await;
}

fn gateway_yaml(base: &str) -> String {
    format!(
        r#"
teams: [{{ id: ml, name: Machine learning }}]
keys:
  - {{ id: ci, key: "{KEY}", team: ml }}
endpoints:
  - name: chat
    kind: chat
    targets: [{{ provider: openai, model: gpt-test, api_base: "{base}", credentials: {{ api_key: "{UPSTREAM_KEY}" }} }}]
  - name: metered
    kind: chat
    targets: [{{ provider: openai, model: gpt-test, api_base: "{base}", credentials: {{ api_key: "{UPSTREAM_KEY}" }} }}]
budgets:
  - {{ id: metered-total, limit_requests: {LIMIT}, window: total, scope: {{ endpoint: metered }} }}
"#
    )
}

fn start_edge(dir: &Path, name: &str, ledger: &[&Member], env: &[(&str, &str)]) -> Node {
    let config = write(dir, &format!("{name}.yaml"), "listen: 127.0.0.1:0\n");
    let urls: Vec<String> = ledger.iter().map(|m| m.url()).collect();
    Node::spawn(
        &[
            "serve",
            "--roles",
            "edge",
            "--config",
            &config,
            "--ledger",
            &urls.join(","),
        ],
        env,
    )
}

/// Three members on free loopback ports with data dirs in `dir`, not started yet, and the
/// `--init` list that names them.
fn three_members(dir: &Path) -> (Vec<Member>, String) {
    let ports: Vec<_> = (0..6).map(|_| reserve_port()).collect();
    let addrs: Vec<SocketAddr> = ports.iter().map(|l| l.local_addr().unwrap()).collect();
    drop(ports);
    let members: Vec<Member> = (0..3)
        .map(|i| Member {
            id: i as u64 + 1,
            grpc: addrs[i],
            admin: addrs[i + 3],
            data: dir.join(format!("ledger-{}", i + 1)),
            process: None,
        })
        .collect();
    let init = members
        .iter()
        .map(|m| format!("{}={}", m.id, m.grpc))
        .collect::<Vec<_>>()
        .join(",");
    (members, init)
}

/// The JSON log lines of `node` at warn level whose message contains `message`.
fn warnings(node: &Node, message: &str) -> Vec<Value> {
    node.stdout()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| {
            line["level"] == "WARN"
                && line["message"]
                    .as_str()
                    .is_some_and(|text| text.contains(message))
        })
        .collect()
}

/// The leader's id as `member` reports it, when it knows one.
async fn leader(member: &Member) -> Option<u64> {
    member.status().await?["leader_id"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_and_two_edges_survive_losing_members() {
    let upstream = Upstream::start().await;
    let base = upstream.base();
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "gateway.yaml", &gateway_yaml(&base));

    // 1. Three members from the README's commands.
    let (mut members, init) = three_members(dir.path());
    for member in &mut members {
        member.start(&init, &config, &ENV);
    }
    let mut edge_a = start_edge(
        dir.path(),
        "edge-a",
        &members.iter().collect::<Vec<_>>(),
        &ENV,
    );
    let mut edge_b = start_edge(dir.path(), "edge-b", &[&members[2]], &ENV);
    let (a, b) = (edge_a.listening().await, edge_b.listening().await);
    for edge in [a, b] {
        serves(edge, "chat", KEY, 200).await;
        let (status, body) = chat(edge, "chat", "fg-not-a-key").await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"]["code"], "invalid_api_key");
    }

    // 2. Changes through member 1 reach edge B, which only knows member 3.
    let shown = admin_write(
        &members[0],
        reqwest::Method::PUT,
        "credential",
        json!({"name": "upstream", "kind": "api_key", "api_key": UPSTREAM_KEY}),
    )
    .await
    .to_string();
    assert!(
        !shown.contains(UPSTREAM_KEY),
        "the credential is only shown masked: {shown}"
    );
    // An endpoint no edge could serve is refused by field at write time.
    let mut unservable = endpoint("unservable", &base);
    unservable["targets"][0]["provider"] = json!("no-such-provider");
    let refused = client()
        .put(members[0].admin_url("endpoint"))
        .json(&unservable)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_argument", "{body}");
    let field = body["error"]["errors"][0]["field"].as_str().unwrap();
    assert!(field.starts_with("endpoint.targets[0]"), "{body}");
    put_endpoint(&members[0], "added", &base).await;
    serves(b, "added", KEY, 200).await;
    let created = admin_write(
        &members[0],
        reqwest::Method::POST,
        "keys",
        json!({"id": "fresh", "team": "ml"}),
    )
    .await;
    let fresh = created["key"]
        .as_str()
        .expect("the key is shown once")
        .to_owned();
    serves(b, "chat", &fresh, 200).await;
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 3_000;
    let expired = admin_write(
        &members[0],
        reqwest::Method::POST,
        "keys",
        json!({"id": "expiring", "team": "ml", "expires_at": expiry}),
    )
    .await;
    let expired = expired["key"]
        .as_str()
        .unwrap_or_else(|| panic!("{expired}"))
        .to_owned();
    serves(b, "chat", &expired, 200).await;
    serves(b, "chat", &expired, 401).await;
    assert_eq!(
        chat(b, "chat", &expired).await.1["error"]["code"],
        "expired_api_key"
    );
    admin_write(
        &members[0],
        reqwest::Method::POST,
        "keys/fresh/revoke",
        Value::Null,
    )
    .await;
    serves(b, "chat", &fresh, 401).await;
    serves(a, "chat", &fresh, 401).await;

    // 3. One request budget, driven from both edges.
    let before = upstream.count();
    let (mut served, mut refused) = (0u64, 0u64);
    for i in 0..(LIMIT + 16) {
        let edge = if i % 2 == 0 { a } else { b };
        let (status, body) = chat(edge, "metered", KEY).await;
        match status {
            200 => served += 1,
            429 => {
                assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let upstream_served = (upstream.count() - before) as u64;
    assert!(served <= LIMIT, "{served} served over a limit of {LIMIT}");
    assert_eq!(served + refused, LIMIT + 16);
    assert!(refused >= 16, "only {refused} refused");
    assert_eq!(
        upstream_served, served,
        "the upstream saw exactly the admitted requests"
    );
    let settled = eventually(
        "the ledger to settle every admitted request",
        CLUSTER_DEADLINE,
        || async {
            let status = members[1].status().await?;
            let budget = status["budgets"]
                .as_array()?
                .iter()
                .find(|b| b["id"] == "metered-total")?
                .clone();
            (budget["settled"].as_u64()? == served).then_some(budget)
        },
    )
    .await;
    assert_eq!(settled["overrun"], 0);

    // 4. Lose the leader.
    let old_leader = eventually("a leader", CLUSTER_DEADLINE, || leader(&members[0])).await;
    let lost = usize::try_from(old_leader - 1).unwrap();
    members[lost].kill();
    let survivor = (lost + 1) % 3;
    let new_leader = eventually("a new leader", CLUSTER_DEADLINE, || async {
        leader(&members[survivor])
            .await
            .filter(|id| *id != old_leader)
    })
    .await;
    assert_ne!(new_leader, old_leader);
    put_endpoint(&members[survivor], "after-failover", &base).await;
    serves(a, "after-failover", KEY, 200).await;
    if lost != 2 {
        serves(b, "after-failover", KEY, 200).await;
    }
    for edge in [a, b] {
        serves(edge, "chat", KEY, 200).await;
    }
    members[lost].start(&init, &config, &ENV);
    let target = members[survivor].status().await.unwrap()["config_revision"].clone();
    eventually(
        "the restarted member to catch up",
        CLUSTER_DEADLINE,
        || async {
            let status = members[lost].status().await?;
            (status["config_revision"] == target).then_some(())
        },
    )
    .await;
    serves(b, "after-failover", KEY, 200).await;

    // 5. Lose the whole ledger: the edges keep serving their last config.
    for member in &mut members {
        member.kill();
    }
    for _ in 0..3 {
        for edge in [a, b] {
            let (status, body) = chat(edge, "after-failover", KEY).await;
            assert_eq!(
                status, 200,
                "an edge stopped serving without its ledger: {body}"
            );
        }
    }
    for member in &mut members {
        member.start(&init, &config, &ENV);
    }
    put_endpoint(&members[0], "after-outage", &base).await;
    serves(a, "after-outage", KEY, 200).await;
    serves(b, "after-outage", KEY, 200).await;
}

/// An edge started before its ledger does not wait silently: while its only member is down
/// it warns that the member refuses the watch, naming it and why; while that member is up
/// but the ledger has no leader (so there is no config to send) it warns that no config
/// came; once the other members start, it gets its config and serves. (A member that died
/// at start once left an edge waiting with nothing in its logs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_started_before_its_ledger_says_why_it_waits_then_serves() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "gateway.yaml", &gateway_yaml(&upstream.base()));
    let (mut members, init) = three_members(dir.path());

    // Its only member is down.
    let mut edge = start_edge(dir.path(), "edge", &[&members[0]], &ENV);
    let refused = eventually(
        "the edge to warn that its member refuses the watch",
        CLUSTER_DEADLINE,
        || async { warnings(&edge, "cannot attach").pop() },
    )
    .await;
    assert_eq!(refused["member"], members[0].grpc.to_string(), "{refused}");
    assert!(
        refused["why"].as_str().is_some_and(|why| !why.is_empty()),
        "{refused}"
    );

    // The member is up, but alone it elects no leader and has no config to send.
    members[0].start(&init, &config, &ENV);
    eventually("member 1 to answer", CLUSTER_DEADLINE, || {
        members[0].status()
    })
    .await;
    let before = warnings(&edge, "no config from the ledger yet").len();
    eventually(
        "the edge to warn that no config came from a ledger without a leader",
        CLUSTER_DEADLINE,
        || async {
            (warnings(&edge, "no config from the ledger yet").len() > before).then_some(())
        },
    )
    .await;
    assert_eq!(
        leader(&members[0]).await,
        None,
        "a lone member elected itself"
    );

    // With a quorum the ledger elects a leader, and the edge gets its config.
    for member in &mut members[1..] {
        member.start(&init, &config, &ENV);
    }
    let addr = edge.listening().await;
    serves(addr, "chat", KEY, 200).await;
}
