//! The usage event pipeline end to end, with a real `nats-server` per test: requests through
//! an edge become exactly one JetStream message each, with the request's fields; a NATS
//! outage fails no request and loses no event; a full spool refuses new requests with 503
//! `usage_spool_full`; an edge SIGKILLed right after answering (spool flush `always`)
//! publishes every answered request's event after its restart.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use floodgate::config::events::{EventsBackend, EventsConfig, NatsEvents};
use floodgate::events::EventSink;
use floodgate_events::stream::{self, STREAM, StreamSettings};
use floodgate_events::testing::NatsServer;
use floodgate_events::{EventSource, FlushPolicy, JetStreamSource};
use floodgate_proto::v1::{RouteKind, UsageEvent};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::binary::{Node, write};
use crate::common::upstream::{UPSTREAM_KEY, Upstream};
use crate::common::{Reply, TestGateway, client, config, eventually, send};

/// Longer than the common deadline: a reconnect after an outage takes the client's backoff.
const DEADLINE: Duration = Duration::from_secs(30);
/// The gateway key of the tests (team `t1`, user `u1`).
const KEY: &str = "fg-events-key-0123456789";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

async fn nats() -> NatsServer {
    NatsServer::start().await.unwrap_or_else(|e| panic!("{e}"))
}

fn edge_yaml(base: &str) -> String {
    format!(
        "keys:
  - id: k1
    key: ${{KEY}}
    team: t1
    user: u1
endpoints:
  - name: chat
    kind: chat
    targets:
      - provider: openai
        model: gpt-4o-mini
        api_base: \"{base}\"
        credentials: {{api_key: $UPSTREAM_KEY}}
"
    )
}

fn events_config(
    url: String,
    spool: &std::path::Path,
    flush: FlushPolicy,
    cap: u64,
) -> EventsConfig {
    EventsConfig {
        backend: EventsBackend::Nats(NatsEvents {
            urls: vec![url],
            shard: "0".to_owned(),
            stream: StreamSettings::default(),
            ack_timeout: Duration::from_secs(1),
        }),
        spool_dir: spool.to_owned(),
        flush,
        max_events: cap,
        drain: Duration::ZERO,
    }
}

/// An in-process edge whose usage goes through the real pipeline to `nats_url`.
struct Edge {
    gateway: TestGateway,
    sink: Arc<EventSink>,
    stop: CancellationToken,
    _spool: tempfile::TempDir,
}

impl Edge {
    async fn start(upstream: &Upstream, nats_url: String, flush: FlushPolicy, cap: u64) -> Self {
        let spool = tempfile::tempdir().unwrap();
        let events = events_config(nats_url, spool.path(), flush, cap);
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let pipeline = floodgate::events::start(&events, "edge-test".to_owned(), &tracker, &stop)
            .await
            .unwrap();
        let config = config(
            &edge_yaml(&upstream.base()),
            &[("KEY", KEY), ("UPSTREAM_KEY", UPSTREAM_KEY)],
        );
        let gateway = TestGateway::start_with_sink(config, pipeline.sink.clone()).await;
        Self {
            gateway,
            sink: pipeline.sink,
            stop,
            _spool: spool,
        }
    }

    async fn chat(&self, stream: bool) -> Reply {
        send(
            client()
                .post(self.gateway.url("/v1/chat/completions"))
                .bearer_auth(KEY)
                .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
                .json(&json!({"model": "chat", "stream": stream,
                    "stream_options": {"include_usage": true},
                    "messages": [{"role": "user", "content": "hi"}]})),
        )
        .await
    }

    fn depth(&self) -> u64 {
        self.sink.spool().stats().depth
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn jetstream(server: &NatsServer) -> jetstream::Context {
    let client = stream::connect(&[server.url()], Duration::from_secs(5))
        .await
        .unwrap();
    jetstream::new(client)
}

async fn stream_count(js: &jetstream::Context) -> Option<u64> {
    Some(
        js.get_stream(STREAM)
            .await
            .ok()?
            .info()
            .await
            .ok()?
            .state
            .messages,
    )
}

/// Waits for the stream to hold `n` messages, checks it holds no more, and returns them.
async fn stream_events(server: &NatsServer, n: u64) -> Vec<UsageEvent> {
    let js = jetstream(server).await;
    eventually("the events in the stream", DEADLINE, || async {
        (stream_count(&js).await? >= n).then_some(())
    })
    .await;
    assert_eq!(
        stream_count(&js).await,
        Some(n),
        "exactly one message per request"
    );
    let mut source = JetStreamSource::fresh(&js, "test-reader", "*")
        .await
        .unwrap();
    let mut out = Vec::new();
    while (out.len() as u64) < n {
        let batch = source.fetch(1000, Duration::from_secs(2)).await.unwrap();
        assert!(!batch.is_empty(), "the stream ran dry");
        out.extend(batch.into_iter().map(|d| d.event));
    }
    out
}

fn by_request(events: Vec<UsageEvent>) -> HashMap<String, UsageEvent> {
    let n = events.len();
    let map: HashMap<String, UsageEvent> = events
        .into_iter()
        .map(|e| (e.request_id.clone(), e))
        .collect();
    assert_eq!(map.len(), n, "one event per request id");
    map
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_becomes_exactly_one_event_with_its_fields() {
    let server = nats().await;
    let upstream = Upstream::start().await;
    let edge = Edge::start(
        &upstream,
        server.url(),
        FlushPolicy::Every(Duration::from_millis(5)),
        10_000,
    )
    .await;
    let mut plain = Vec::new();
    for _ in 0..20 {
        let reply = edge.chat(false).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        plain.push(reply.header("x-request-id").to_owned());
    }
    let streamed = edge.chat(true).await;
    assert_eq!(streamed.status, 200);
    let missing = send(
        client()
            .post(edge.gateway.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&json!({"model": "nope", "messages": [{"role": "user", "content": "hi"}]})),
    )
    .await;
    assert_eq!(missing.status, 404);

    let events = by_request(stream_events(&server, 22).await);
    for id in &plain {
        let event = &events[id];
        assert_eq!(event.edge_id, "edge-test");
        assert_eq!(event.endpoint, "chat");
        assert_eq!(event.route, RouteKind::Unified as i32);
        assert_eq!((event.status, event.error_type.as_str()), (200, ""));
        assert_eq!(
            (
                event.key_id.as_str(),
                event.team.as_str(),
                event.user.as_str()
            ),
            ("k1", "t1", "u1")
        );
        assert_eq!(event.trace_id, TRACE_ID);
        assert_eq!(
            (event.provider.as_str(), event.model.as_str()),
            ("openai", "gpt-4o-mini")
        );
        let tokens = event.tokens.unwrap();
        assert_eq!((tokens.input, tokens.output, tokens.cached), (11, 7, 3));
        assert!(event.cost_micros.is_some_and(|c| c > 0));
        assert_eq!(event.attempts.len(), 1);
        assert_eq!(
            (event.attempts[0].status, event.attempts[0].target),
            (200, 0)
        );
        assert!(!event.streamed && event.ttft_us.is_none());
        assert!(event.total_latency_us >= event.upstream_latency_us);
        assert_eq!(
            uuid::Uuid::parse_str(&event.event_id)
                .unwrap()
                .get_version_num(),
            7
        );
    }
    let streamed = &events[streamed.header("x-request-id")];
    assert!(streamed.streamed && streamed.ttft_us.is_some());
    let missing = &events[missing.header("x-request-id")];
    assert_eq!(
        (missing.status, missing.error_type.as_str()),
        (404, "model_not_found")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_during_load_fails_no_request_and_loses_no_event() {
    let mut server = nats().await;
    let upstream = Upstream::start().await;
    let edge = Arc::new(
        Edge::start(
            &upstream,
            server.url(),
            FlushPolicy::Every(Duration::from_millis(5)),
            100_000,
        )
        .await,
    );
    let answered = Arc::new(std::sync::Mutex::new(Vec::new()));
    let load = |edge: Arc<Edge>, answered: Arc<std::sync::Mutex<Vec<String>>>, n: usize| async move {
        for _ in 0..n {
            let reply = edge.chat(false).await;
            assert_eq!(reply.status, 200, "a request failed: {}", reply.text);
            answered
                .lock()
                .unwrap()
                .push(reply.header("x-request-id").to_owned());
        }
    };
    let clients: Vec<_> = (0..4)
        .map(|_| tokio::spawn(load(edge.clone(), answered.clone(), 75)))
        .collect();
    eventually("load under way", DEADLINE, || async {
        (answered.lock().unwrap().len() >= 40).then_some(())
    })
    .await;
    server.kill();
    eventually("requests served while NATS is down", DEADLINE, || async {
        (answered.lock().unwrap().len() >= 150 && edge.depth() > 0).then_some(())
    })
    .await;
    server.restart().await.unwrap();
    for task in clients {
        task.await.unwrap();
    }
    eventually("the spool drained", DEADLINE, || async {
        (edge.depth() == 0).then_some(())
    })
    .await;
    let answered: HashSet<String> = answered.lock().unwrap().iter().cloned().collect();
    assert_eq!(answered.len(), 300);
    let events = by_request(stream_events(&server, 300).await);
    let evented: HashSet<String> = events.into_keys().collect();
    assert_eq!(evented, answered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_refuses_new_requests_with_503_until_it_drains() {
    let mut server = nats().await;
    let url = server.url();
    server.kill();
    let upstream = Upstream::start().await;
    let edge = Edge::start(
        &upstream,
        url,
        FlushPolicy::Every(Duration::from_millis(5)),
        5,
    )
    .await;
    for _ in 0..5 {
        assert_eq!(edge.chat(false).await.status, 200);
    }
    let refused = edge.chat(false).await;
    assert_eq!(refused.status, 503, "{}", refused.text);
    assert_eq!(refused.code(), "usage_spool_full");
    assert_eq!(refused.body["error"]["type"], "server_error");
    let ready = send(client().get(edge.gateway.url("/readyz"))).await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.body["usage"]["spool_depth"], 5);
    assert_eq!(ready.body["usage"]["spool_full"], true);
    assert!(
        ready.body["usage"]["spool_oldest_age_seconds"]
            .as_f64()
            .is_some()
    );
    assert_eq!(ready.body["usage"]["refused"], 1);
    assert_eq!(edge.depth(), 5, "the refused request was never served");

    server.restart().await.unwrap();
    eventually("the spool drained", DEADLINE, || async {
        (edge.depth() == 0).then_some(())
    })
    .await;
    assert_eq!(edge.chat(false).await.status, 200);
    stream_events(&server, 6).await;
}

/// The real binary, NATS down while it answers, SIGKILLed right after the last answer: with
/// flush `always` every answered request's event is on disk, and after a restart (NATS up)
/// it reaches the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_killed_right_after_answering_publishes_every_answered_event_after_restart() {
    let mut server = nats().await;
    server.kill();
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let yaml = format!(
        "listen: 127.0.0.1:0\n{}events:\n  backend: nats\n  nats:\n    urls: [\"{}\"]\n    ack_timeout: 1s\n  spool:\n    dir: \"{}\"\n    flush: always\n",
        edge_yaml(&upstream.base()),
        server.url(),
        spool.display()
    );
    let file = write(dir.path(), "edge.yaml", &yaml);
    let env = [("KEY", KEY), ("UPSTREAM_KEY", UPSTREAM_KEY)];
    let mut edge = Node::spawn(&["serve", "--config", &file], &env);
    let addr = edge.listening().await;
    let mut answered = HashSet::new();
    let requests = (0..30).map(|i| {
        send(
            client()
                .post(format!("http://{addr}/v1/chat/completions"))
                .bearer_auth(KEY)
                .json(&json!({"model": "chat", "stream": i % 3 == 0,
                    "messages": [{"role": "user", "content": "hi"}]})),
        )
    });
    for reply in futures::future::join_all(requests).await {
        assert_eq!(reply.status, 200, "{}", reply.text);
        answered.insert(reply.header("x-request-id").to_owned());
    }
    edge.kill();

    server.restart().await.unwrap();
    let mut edge = Node::spawn(&["serve", "--config", &file], &env);
    edge.listening().await;
    let events = by_request(stream_events(&server, 30).await);
    let evented: HashSet<String> = events.into_keys().collect();
    assert_eq!(evented, answered, "edge output:\n{}", edge.stdout());
}

/// The real binary stopped with SIGTERM right after its last answer: before it exits it
/// publishes every answered request's event, so nothing waits in the spool for a restart
/// (an edge whose disk goes with it, as in a replaced container, loses nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_edge_publishes_its_spool_before_it_exits() {
    let server = nats().await;
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "listen: 127.0.0.1:0\n{}events:\n  backend: nats\n  nats:\n    urls: [\"{}\"]\n  spool:\n    dir: \"{}\"\n    flush: 50ms\n",
        edge_yaml(&upstream.base()),
        server.url(),
        dir.path().join("spool").display()
    );
    let file = write(dir.path(), "edge.yaml", &yaml);
    let env = [("KEY", KEY), ("UPSTREAM_KEY", UPSTREAM_KEY)];
    let mut edge = Node::spawn(&["serve", "--config", &file], &env);
    let addr = edge.listening().await;
    let requests = (0..20).map(|_| {
        send(
            client()
                .post(format!("http://{addr}/v1/chat/completions"))
                .bearer_auth(KEY)
                .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]})),
        )
    });
    let mut answered = HashSet::new();
    for reply in futures::future::join_all(requests).await {
        assert_eq!(reply.status, 200, "{}", reply.text);
        answered.insert(reply.header("x-request-id").to_owned());
    }
    edge.terminate();
    assert!(edge.exited().await.success(), "{}", edge.stdout());
    let js = jetstream(&server).await;
    assert_eq!(
        stream_count(&js).await,
        Some(20),
        "published before it exited"
    );
    let events = by_request(stream_events(&server, 20).await);
    let evented: HashSet<String> = events.into_keys().collect();
    assert_eq!(evented, answered, "edge output:\n{}", edge.stdout());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_events_init_creates_then_updates_the_stream_from_the_config_file() {
    let server = nats().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = |window: &str| {
        format!(
            "auth: none\nevents:\n  backend: nats\n  nats:\n    urls: [\"{}\"]\n    duplicate_window: {window}\n    max_age: 7d\n    max_bytes: 1048576\n  spool:\n    dir: unused\n",
            server.url()
        )
    };
    for (window, seconds) in [("10m", 600), ("15m", 900)] {
        let file = write(dir.path(), "edge.yaml", &yaml(window));
        let mut ctl = Node::spawn(&["ctl", "events", "init", "--config", &file], &[]);
        let status = ctl.exited().await;
        assert!(status.success(), "{}", ctl.stderr());
        let out: serde_json::Value = serde_json::from_str(&ctl.stdout()).unwrap();
        assert_eq!(out["stream"], STREAM);
        assert_eq!(out["subjects"], json!(["floodgate.usage.*"]));
        assert_eq!(out["duplicate_window_seconds"], seconds);
        assert_eq!(out["max_age_seconds"], 7 * 24 * 3600);
        assert_eq!(out["max_bytes"], 1_048_576);
        let js = jetstream(&server).await;
        let info = js
            .get_stream(STREAM)
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .clone();
        assert_eq!(info.config.duplicate_window, Duration::from_secs(seconds));
    }
    // Without a NATS backend it says so and fails.
    let file = write(dir.path(), "plain.yaml", "auth: none\n");
    let mut ctl = Node::spawn(&["ctl", "events", "init", "--config", &file], &[]);
    assert!(!ctl.exited().await.success());
    assert!(ctl.stderr().contains("backend `nats`"), "{}", ctl.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_the_spool_and_the_publisher() {
    let mut server = nats().await;
    let upstream = Upstream::start().await;
    let edge = Edge::start(&upstream, server.url(), FlushPolicy::Always, 1000).await;
    assert_eq!(edge.chat(false).await.status, 200);
    eventually("the event published", DEADLINE, || async {
        (edge.depth() == 0).then_some(())
    })
    .await;
    server.kill();
    assert_eq!(edge.chat(false).await.status, 200);
    let metrics = send(client().get(edge.gateway.url("/metrics"))).await;
    assert_eq!(metrics.status, 200);
    let value = |name: &str| -> f64 {
        metrics
            .text
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in\n{}", metrics.text))
            .parse()
            .unwrap()
    };
    assert_eq!(value("floodgate_usage_spool_depth"), 1.0);
    assert_eq!(value("floodgate_usage_spool_cap"), 1000.0);
    assert_eq!(value("floodgate_usage_events_published_total"), 1.0);
    assert!(value("floodgate_usage_spool_oldest_age_seconds") >= 0.0);
    assert!(
        metrics
            .text
            .contains("# TYPE floodgate_usage_events_published_total counter")
    );
}
