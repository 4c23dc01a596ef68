//! What a trace carries, read back from the projector as an operator would: an in-process
//! edge writes its usage events to the local event log, a projector folds it, and
//! `GET /usage/v1/traces/{request id}` shows the captured request and response bodies —
//! the gateway key, a provider key and a configured pattern redacted, long bodies cut at the
//! cap and flagged — or no bodies when capture is off; and every trace has a trace id, the
//! client's or one the edge made. The real binary keeps its edge id across restarts.

use std::net::SocketAddr;
use std::time::Duration;

use floodgate::config::events::EventsConfig;
use floodgate::projector_role::{self, Feed};
use floodgate_events::{EventSource, LocalLog};
use floodgate_projector::ProjectorSettings;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::binary::{Node, write};
use crate::common::upstream::{UPSTREAM_KEY, Upstream};
use crate::common::{DEADLINE, Reply, TestGateway, client, config, eventually, send};

/// The gateway key of the tests.
const KEY: &str = "fg-payload-key-0123456789";
/// The cap of one captured body.
const CAP: usize = 2048;
/// A client's trace id.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
/// A value the configured pattern redacts.
const RECORD: &str = "MRN-123456";

fn yaml(upstream: &str, capture: bool) -> String {
    format!(
        "keys:
  - id: k1
    key: ${{KEY}}
payload_capture:
  enabled: {capture}
  max_bytes: {CAP}
  redact: ['MRN-\\d{{6}}']
endpoints:
  - name: echo
    kind: chat
    targets: [{{provider: mock, model: echo}}]
  - name: upstream
    kind: chat
    targets:
      - {{provider: openai, model: gpt-test, api_base: \"{upstream}\", credentials: {{api_key: $UPSTREAM_KEY}}}}
  - name: quiet
    kind: chat
    targets: [{{provider: mock, model: echo}}]
    payload_capture: {{enabled: false}}
"
    )
}

/// An edge whose usage goes to a local event log folded by a projector.
struct Pipeline {
    edge: TestGateway,
    upstream: Upstream,
    usage: SocketAddr,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Pipeline {
    async fn start() -> Self {
        let upstream = Upstream::start().await;
        let dir = tempfile::tempdir().unwrap();
        let (stop, tracker) = (CancellationToken::new(), TaskTracker::new());
        let events = EventsConfig::local(dir.path());
        let pipeline = floodgate::events::start(&events, "edge-traces".to_owned(), &tracker, &stop)
            .await
            .unwrap();
        let mut settings = ProjectorSettings::new(dir.path().join("projection"));
        settings.grpc_listen = "127.0.0.1:0".parse().unwrap();
        settings.http_listen = "127.0.0.1:0".parse().unwrap();
        let log = pipeline.local.clone().unwrap();
        let (_projector, listening) =
            projector_role::start(settings, Feed::Local(log), &stop, &tracker)
                .await
                .unwrap();
        let edge = TestGateway::start_with_sink(
            config(&yaml(&upstream.base(), true), &Self::env()),
            pipeline.sink.clone(),
        )
        .await;
        Self {
            edge,
            upstream,
            usage: listening.http,
            stop,
            _dir: dir,
        }
    }

    fn env() -> [(&'static str, &'static str); 2] {
        [("KEY", KEY), ("UPSTREAM_KEY", UPSTREAM_KEY)]
    }

    /// A chat request to `endpoint` whose message is `content`.
    async fn chat(&self, endpoint: &str, content: &str, stream: bool) -> Reply {
        let body = json!({"model": endpoint, "stream": stream,
            "messages": [{"role": "user", "content": content}]});
        self.post("/v1/chat/completions", body.to_string()).await
    }

    async fn post(&self, path: &str, body: String) -> Reply {
        let reply = send(
            client()
                .post(self.edge.url(path))
                .bearer_auth(KEY)
                .header("content-type", "application/json")
                .body(body),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply
    }

    /// The trace of the request answered by `reply`, once the projector has it.
    async fn trace(&self, reply: &Reply) -> Value {
        let url = format!(
            "http://{}/usage/v1/traces/{}",
            self.usage,
            reply.header("x-request-id")
        );
        eventually("the request's trace", DEADLINE, || async {
            let response = client().get(&url).send().await.ok()?;
            if response.status() != 200 {
                return None;
            }
            Some(response.json::<Value>().await.ok()?["trace"].clone())
        })
        .await
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn body(payload: &Value) -> &str {
    payload["body"]
        .as_str()
        .unwrap_or_else(|| panic!("no body in {payload}"))
}

/// Asserts no secret of the tests shows in `text`.
fn clean(text: &str) {
    for secret in [KEY, UPSTREAM_KEY, RECORD] {
        assert!(!text.contains(secret), "{secret} shows in {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_bodies_reach_the_trace_redacted_and_capped() {
    let pipeline = Pipeline::start().await;
    let secrets = format!("my key {KEY}, the provider's {UPSTREAM_KEY}, patient {RECORD}");

    // Plain: the request as sent and the JSON answer as received (the mock echoes).
    let plain = pipeline.chat("echo", &secrets, false).await;
    let trace = pipeline.trace(&plain).await;
    let request = &trace["request_payload"];
    assert_eq!(request["truncated"], false, "{trace}");
    clean(body(request));
    assert!(
        body(request).contains(
            r#""content":"my key [REDACTED], the provider's [REDACTED], patient [REDACTED]""#
        ),
        "{request}"
    );
    let response = &trace["response_payload"];
    assert_eq!(response["truncated"], false, "{trace}");
    clean(body(response));
    let answer: Value = serde_json::from_str(body(response)).unwrap();
    assert_eq!(answer["provider"], "mock", "the bytes the client got");
    assert_eq!(answer["id"], plain.body["id"]);

    // Streamed: the SSE bytes the client received, frames and all.
    let streamed = pipeline.chat("echo", &secrets, true).await;
    let trace = pipeline.trace(&streamed).await;
    let response = body(&trace["response_payload"]);
    clean(response);
    assert!(response.starts_with("data: {"), "{response}");
    assert!(response.contains("[REDACTED]"), "{response}");
    assert!(response.ends_with("data: [DONE]\n\n"), "{response}");
    assert_eq!(trace["response_payload"]["truncated"], false);

    // Longer than the cap: cut on it, and flagged.
    let long = format!("{} {secrets}", "é".repeat(3 * CAP));
    let reply = pipeline.chat("echo", &long, false).await;
    let trace = pipeline.trace(&reply).await;
    for side in ["request_payload", "response_payload"] {
        let payload = &trace[side];
        assert_eq!(payload["truncated"], true, "{side}");
        let text = body(payload);
        assert!(
            text.len() <= CAP && text.len() > CAP - 4,
            "{side}: {}",
            text.len()
        );
    }
    let long_stream = pipeline.chat("echo", &long, true).await;
    let trace = pipeline.trace(&long_stream).await;
    assert_eq!(trace["response_payload"]["truncated"], true);
    assert!(body(&trace["response_payload"]).len() <= CAP);

    // The gateway key straddling the cap: not one character of it shows.
    let head = r#"{"model":"echo","messages":[{"role":"user","content":""#;
    let at = CAP - 8;
    let straddling = format!("{head}{}{KEY} and more\"}}]}}", "x".repeat(at - head.len()));
    assert_eq!(straddling.find(KEY), Some(at));
    let reply = pipeline
        .post("/v1/chat/completions", straddling.clone())
        .await;
    let trace = pipeline.trace(&reply).await;
    let request = &trace["request_payload"];
    assert_eq!(request["truncated"], true);
    assert_eq!(body(request), &straddling[..at], "cut before the secret");

    // The raw proxy: the bytes forwarded and the provider's answer.
    let proxied = pipeline
        .post(
            "/gateway/proxy/upstream/chat/completions",
            json!({"model": "gpt-test", "messages": [{"role": "user", "content": secrets}]})
                .to_string(),
        )
        .await;
    let trace = pipeline.trace(&proxied).await;
    clean(body(&trace["request_payload"]));
    assert!(body(&trace["request_payload"]).contains("[REDACTED]"));
    assert!(body(&trace["response_payload"]).contains("Hello from upstream"));
    assert_eq!(pipeline.upstream.count(), 1);

    // An endpoint that turns capture off.
    let quiet = pipeline.chat("quiet", &secrets, false).await;
    let trace = pipeline.trace(&quiet).await;
    assert!(trace.get("request_payload").is_none(), "{trace}");
    assert!(trace.get("response_payload").is_none(), "{trace}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_capture_off_traces_carry_no_bodies() {
    let pipeline = Pipeline::start().await;
    let on = pipeline.chat("echo", "captured", false).await;
    assert!(
        pipeline.trace(&on).await.get("request_payload").is_some(),
        "on before the reload"
    );
    let off = config(&yaml(&pipeline.upstream.base(), false), &Pipeline::env());
    pipeline.edge.gateway.apply(off);
    for stream in [false, true] {
        let reply = pipeline.chat("echo", "not captured", stream).await;
        let trace = pipeline.trace(&reply).await;
        assert!(trace.get("request_payload").is_none(), "{trace}");
        assert!(trace.get("response_payload").is_none(), "{trace}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_trace_has_a_trace_id_the_clients_or_a_new_one() {
    let pipeline = Pipeline::start().await;
    let body = json!({"model": "echo", "messages": [{"role": "user", "content": "hi"}]});
    let given = send(
        client()
            .post(pipeline.edge.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
            .json(&body),
    )
    .await;
    assert_eq!(pipeline.trace(&given).await["trace_id"], TRACE_ID);

    let mut made = Vec::new();
    for _ in 0..2 {
        let reply = pipeline.chat("echo", "hi", false).await;
        let trace = pipeline.trace(&reply).await;
        let id = trace["trace_id"].as_str().unwrap().to_owned();
        assert_eq!(id.len(), 32, "{id}");
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{id}"
        );
        assert!(id.bytes().any(|b| b != b'0'), "{id}");
        made.push(id);
    }
    assert_ne!(made[0], made[1], "each request its own");
    assert_ne!(made[0], TRACE_ID);
}

/// The edge ids of every event in the local log at `dir`, in order (the edge has exited).
async fn edge_ids(dir: &std::path::Path) -> Vec<String> {
    let log = LocalLog::open(dir).unwrap();
    let mut source = log.source("test").unwrap();
    let events = source.fetch(100, Duration::from_millis(100)).await.unwrap();
    events.into_iter().map(|d| d.event.edge_id).collect()
}

/// `floodgate serve` keeps the id it made on first start (in its spool's dir) across a
/// restart; `FLOODGATE_EDGE_ID` overrides it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_id_survives_a_restart_and_can_be_given() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    let file = write(
        dir.path(),
        "edge.yaml",
        &format!(
            "listen: 127.0.0.1:0
auth: none
endpoints:
  - {{name: chat, kind: chat, targets: [{{provider: mock, model: echo}}]}}
events:
  backend: local
  local: {{dir: \"{}\"}}
",
            events.display()
        ),
    );
    let run = |env: &'static [(&'static str, &'static str)]| {
        let file = file.clone();
        async move {
            let mut node = Node::spawn(&["serve", "--config", &file], env);
            let addr = node.listening().await;
            let reply = send(
                client()
                    .post(format!("http://{addr}/v1/chat/completions"))
                    .json(
                        &json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}),
                    ),
            )
            .await;
            assert_eq!(reply.status, 200, "{}", reply.text);
            node.terminate();
            assert!(node.exited().await.success(), "{}", node.stdout());
        }
    };
    run(&[]).await;
    run(&[]).await;
    run(&[("FLOODGATE_EDGE_ID", "edge-given-1")]).await;

    let ids = edge_ids(&events).await;
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(ids[0].starts_with("edge-"), "{ids:?}");
    assert_eq!(ids[0], ids[1], "the same id after a restart");
    assert_eq!(ids[2], "edge-given-1");
    let kept = std::fs::read_to_string(events.join("spool").join("edge-id")).unwrap();
    assert_eq!(kept.trim(), ids[0]);
}
