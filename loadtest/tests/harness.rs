//! The harness tested against its own mock upstream, in process on port 0: coordinated-omission
//! correction against a synthetic stall, the open loop's request count, the mock's
//! ground-truth counters matching what the load generator saw, its four wire formats, a
//! scenario mix, the frontier against a mock of known capacity, and `run --check`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use floodgate_loadtest::frontier::{FrontierConfig, search};
use floodgate_loadtest::load::{Mode, RunConfig, run};
use floodgate_loadtest::scenario::Scenario;
use floodgate_loadtest::spec::{Latency, Stall};
use floodgate_loadtest::upstream::{Price, StatsSnapshot, Upstream, UpstreamConfig};

/// Starts the mock on `127.0.0.1:0`; it stops when the test's runtime ends.
async fn start_upstream(config: UpstreamConfig) -> (Arc<Upstream>, SocketAddr) {
    floodgate_loadtest::install_crypto_provider();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let upstream = Upstream::new(config);
    tokio::spawn(Arc::clone(&upstream).serve(listener, std::future::pending()));
    (upstream, addr)
}

fn open_loop(addr: SocketAddr, rate: f64, connections: usize, duration: Duration) -> RunConfig {
    RunConfig {
        urls: vec![format!("http://{addr}/v1")],
        mode: Mode::Open { rate, connections },
        duration,
        warmup: Duration::ZERO,
        scenario: Arc::new(Scenario::single("chat", false)),
        timeout: Duration::from_secs(10),
    }
}

/// One connection at 200 req/s for 1.5 s; the mock stalls every request arriving in a 200 ms
/// window. About 40 requests are *scheduled* inside the stall and wait behind it, so the
/// latency from the intended send time must show it at p99, while the naive service time sees
/// only the one request that was in flight and stays low at p99.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_latency_reflects_a_stall_that_service_time_hides() {
    let (_upstream, addr) = start_upstream(UpstreamConfig {
        stall: Some(Stall {
            at: Duration::from_millis(500),
            length: Duration::from_millis(200),
        }),
        ..UpstreamConfig::default()
    })
    .await;
    let report = run(open_loop(addr, 200.0, 1, Duration::from_millis(1500)))
        .await
        .unwrap();
    println!("{report}");
    assert_eq!(report.errors(), 0);
    // The stalled request itself is seen by both measures.
    assert!(report.service_time.max_us >= 150_000, "{report:?}");
    assert!(report.latency.max_us >= 150_000, "{report:?}");
    // ~13% of the requests queued behind the stall: the corrected p99 shows it ...
    assert!(report.latency.p99_us >= 150_000, "{report:?}");
    assert!(report.latency.p90_us >= 20_000, "{report:?}");
    // ... the naive service time (one stalled request out of 300) does not.
    assert!(report.service_time.p99_us < 100_000, "{report:?}");
    assert!(report.service_time.p90_us < 20_000, "{report:?}");
}

/// A short open loop sends what the schedule says (rate × duration), all successfully, and
/// the mock served exactly that many.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_sends_the_scheduled_number_of_requests() {
    let (upstream, addr) = start_upstream(UpstreamConfig::default()).await;
    let report = run(open_loop(addr, 300.0, 16, Duration::from_secs(1)))
        .await
        .unwrap();
    println!("{report}");
    assert_eq!(report.errors(), 0, "{report:?}");
    assert!(report.requests.abs_diff(300) <= 3, "{report:?}");
    assert_eq!(report.latency.count, report.ok);
    assert_eq!(upstream.stats().requests, report.requests);
    assert!(report.throughput_rps > 250.0 && report.throughput_rps < 330.0);
}

/// Streams in a closed loop against a mock that injects 429s and 500s: `GET /__stats`
/// accounts for every request the generator saw, by outcome, with the tokens of each success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_endpoint_counts_what_was_served() {
    let (_upstream, addr) = start_upstream(UpstreamConfig {
        error_rate: 0.1,
        throttle_rate: 0.1,
        ..UpstreamConfig::default()
    })
    .await;
    let mut config = open_loop(addr, 1.0, 1, Duration::from_millis(500));
    config.mode = Mode::Closed { concurrency: 4 };
    config.scenario = Arc::new(Scenario::single("chat", true));
    let report = run(config).await.unwrap();
    println!("{report}");

    let stats: StatsSnapshot = reqwest::get(format!("http://{addr}/__stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(report.requests > 20, "{report:?}");
    assert_eq!(report.transport_errors, 0);
    assert_eq!(stats.requests, report.requests);
    assert_eq!(stats.completed, report.ok);
    assert_eq!(stats.streams, report.ok);
    let status = |code| report.status_errors.get(&code).copied().unwrap_or(0);
    assert_eq!(stats.injected_429, status(429));
    assert_eq!(stats.injected_500, status(500));
    assert!(stats.injected_429 + stats.injected_500 > 0, "{stats:?}");
    // `Scenario::single` sends 8 tokens of prompt text ("tok " × 8) and no `max_tokens`,
    // so every answer has the mock's default 8 completion tokens.
    assert_eq!(stats.prompt_tokens, report.ok * 8);
    assert_eq!(stats.completion_tokens, report.ok * 8);
    assert_eq!(report.ttft.map(|t| t.count), Some(report.ok));
}

/// The stream speaks OpenAI's SSE format: role first, content chunks, a finish chunk, the
/// usage chunk when asked for, then `[DONE]`; the JSON answer carries the same usage.
#[tokio::test]
async fn responses_follow_the_openai_wire_format() {
    let (_upstream, addr) = start_upstream(UpstreamConfig {
        completion_tokens: 3,
        ..UpstreamConfig::default()
    })
    .await;
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/v1/chat/completions");
    let body = |extra: &str| format!(r#"{{"model":"m","messages":[]{extra}}}"#);

    let json: serde_json::Value = client
        .post(&url)
        .body(body(""))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json["usage"]["completion_tokens"], 3);
    assert_eq!(json["choices"][0]["message"]["content"], "tok tok tok ");

    let sse = |extra: &'static str| {
        let request = client.post(&url).body(body(extra));
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    let with_usage = sse(r#","stream":true,"stream_options":{"include_usage":true}"#).await;
    let frames: Vec<&str> = with_usage
        .split("\n\n")
        .filter(|f| !f.is_empty())
        .map(|f| f.strip_prefix("data: ").unwrap())
        .collect();
    assert_eq!(frames.len(), 6, "{with_usage}");
    let chunk = |i: usize| serde_json::from_str::<serde_json::Value>(frames[i]).unwrap();
    assert_eq!(chunk(0)["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chunk(3)["choices"][0]["finish_reason"], "stop");
    // No prompt text: one prompt token; no `max_tokens`: the default 3.
    assert_eq!(chunk(4)["usage"]["total_tokens"], 1 + 3);
    assert_eq!(frames[5], "[DONE]");

    let without_usage = sse(r#","stream":true"#).await;
    assert!(!without_usage.contains("usage"), "{without_usage}");
    assert!(without_usage.ends_with("data: [DONE]\n\n"));

    let bad = client.post(&url).body("not json").send().await.unwrap();
    assert_eq!(bad.status(), 400);
}

/// The real binary: `run` against the in-process mock prints the table and writes a JSON
/// report that parses back; a bad value fails before any load is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_writes_a_json_report() {
    let (upstream, addr) = start_upstream(UpstreamConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_floodgate-loadtest"))
        .args([
            "run",
            "--url",
            &format!("http://{addr}/v1"),
            "--rate",
            "100",
        ])
        .args(["--duration", "300ms", "--json"])
        .arg(&json)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let table = String::from_utf8(output.stdout).unwrap();
    assert!(table.contains("latency (from intended send)"), "{table}");
    let report: floodgate_loadtest::report::Report =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report.mode, "open");
    assert_eq!(report.requests, 30);
    assert_eq!(report.errors(), 0);
    assert_eq!(upstream.stats().requests, 30);

    let bad = tokio::process::Command::new(env!("CARGO_BIN_EXE_floodgate-loadtest"))
        .args(["run", "--url", &format!("http://{addr}/v1"), "--rate", "0"])
        .output()
        .await
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--rate"));
    assert_eq!(upstream.stats().requests, 30);
}

/// Requests alternate over the given URLs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_round_robin_over_urls() {
    let (first, a) = start_upstream(UpstreamConfig::default()).await;
    let (second, b) = start_upstream(UpstreamConfig::default()).await;
    let mut config = open_loop(a, 200.0, 4, Duration::from_millis(500));
    config.urls.push(format!("http://{b}/v1/"));
    let report = run(config).await.unwrap();
    assert_eq!(report.requests, 100, "{report:?}");
    assert_eq!(report.errors(), 0, "{report:?}");
    assert_eq!(first.stats().requests, 50);
    assert_eq!(second.stats().requests, 50);
}

/// The mock speaks completions, embeddings and Anthropic Messages too, in their real framing,
/// and counts tokens and cost for each.
#[tokio::test]
async fn the_mock_speaks_completions_embeddings_and_anthropic_messages() {
    let (upstream, addr) = start_upstream(UpstreamConfig {
        completion_tokens: 2,
        price: Price {
            input_usd_per_mtok: 1.0,
            output_usd_per_mtok: 2.0,
        },
        ..UpstreamConfig::default()
    })
    .await;
    let client = reqwest::Client::new();
    let post = |path: &str, body: &'static str| {
        client
            .post(format!("http://{addr}/v1{path}"))
            .body(body)
            .send()
    };

    let completion: serde_json::Value = post("/completions", r#"{"model":"m","prompt":"hi"}"#)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(completion["object"], "text_completion");
    assert_eq!(completion["choices"][0]["text"], "tok tok ");
    let stream = post(
        "/completions",
        r#"{"model":"m","prompt":"hi","stream":true,"stream_options":{"include_usage":true}}"#,
    )
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(stream.contains(r#""text":"tok ""#), "{stream}");
    assert!(stream.contains(r#""completion_tokens":2"#), "{stream}");
    assert!(stream.ends_with("data: [DONE]\n\n"), "{stream}");

    let embedding: serde_json::Value = post("/embeddings", r#"{"model":"e","input":"hi"}"#)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(embedding["data"][0]["object"], "embedding");
    assert_eq!(embedding["usage"]["prompt_tokens"], 1);

    let message: serde_json::Value =
        post("/messages", r#"{"model":"c","max_tokens":5,"messages":[]}"#)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(message["type"], "message");
    assert_eq!(message["usage"]["output_tokens"], 2);
    let events = post(
        "/messages",
        r#"{"model":"c","max_tokens":5,"messages":[],"stream":true}"#,
    )
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let names: Vec<&str> = events
        .split("\n\n")
        .filter_map(|frame| frame.strip_prefix("event: ")?.split('\n').next())
        .collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );

    let stats = upstream.stats();
    assert_eq!((stats.requests, stats.completed, stats.streams), (5, 5, 2));
    // Every prompt is under 4 bytes of text (one token). Four answers with 2 output tokens
    // (the cap: the messages asked for 5), one embedding with none.
    assert_eq!(stats.prompt_tokens, 5);
    assert_eq!(stats.completion_tokens, 8);
    // Per answer: 1 × $1 + 2 × $2 per Mtok = 5 µ$; the embedding 1 µ$.
    assert_eq!(stats.cost_micros, 4 * 5 + 1);
}

/// A scenario mixes APIs: every request lands on the path of its kind, streamed ones record
/// TTFT, and the mock counts them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_mix_reaches_every_api() {
    let (upstream, addr) = start_upstream(UpstreamConfig::default()).await;
    let scenario = Scenario::parse(
        "requests:
  - { api: chat, model: chat, weight: 2, stream: 0.5 }
  - { api: completions, model: text }
  - { api: embeddings, model: embed }
  - { api: messages, model: claude, stream: 1.0, max_tokens: 64 }
",
        false,
        "mix.yaml",
    )
    .unwrap();
    let mut config = open_loop(addr, 400.0, 8, Duration::from_millis(500));
    config.scenario = Arc::new(scenario);
    let report = run(config).await.unwrap();
    assert_eq!(report.errors(), 0, "{report:?}");
    let stats = upstream.stats();
    assert_eq!(stats.completed, report.ok);
    assert_eq!(stats.bad_requests, 0);
    let ttft = report.ttft.unwrap();
    assert_eq!(ttft.count, stats.streams, "{report:?}");
    assert!(stats.streams > 0 && stats.streams < report.ok, "{stats:?}");
}

/// The mock's books follow each request: prompt tokens from its prompt's size (a 2 KB
/// prompt is 512 tokens), completion tokens from its `max_tokens` up to the mock's cap,
/// and the cost from both; recomputed here request by request from the scenario's
/// deterministic mix, they equal what `GET /__stats` says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_books_follow_prompt_size_and_max_tokens() {
    let price = Price {
        input_usd_per_mtok: 2.5,
        output_usd_per_mtok: 10.0,
    };
    let (upstream, addr) = start_upstream(UpstreamConfig {
        completion_tokens: 16,
        price,
        ..UpstreamConfig::default()
    })
    .await;
    let scenario = Scenario::parse(
        "requests:
  - { api: chat, model: chat, prompt_tokens: 512, max_tokens: 4, stream: 0.5 }
  - { api: chat, model: chat, prompt_tokens: 3 }
  - { api: messages, model: claude, prompt_tokens: 40, max_tokens: 100, stream: 1.0 }
  - { api: embeddings, model: embed, prompt_tokens: 64 }
",
        false,
        "tokens.yaml",
    )
    .unwrap();
    // (prompt, completion) per kind: max_tokens 100 is capped at 16, no max_tokens is 16.
    let expected = [(512, 4), (3, 16), (40, 16), (64, 0)];
    let mut config = open_loop(addr, 200.0, 4, Duration::from_millis(500));
    config.scenario = Arc::new(scenario.clone());
    let report = run(config).await.unwrap();
    assert_eq!(report.errors(), 0, "{report:?}");
    let (mut prompt, mut completion, mut cost) = (0, 0, 0);
    for index in 0..report.requests {
        let (p, c) = expected[scenario.pick(index).0];
        prompt += p;
        completion += c;
        cost += price.cost_micros(p, c);
    }
    let stats = upstream.stats();
    assert_eq!(stats.completed, report.requests);
    assert_eq!(
        (
            stats.prompt_tokens,
            stats.completion_tokens,
            stats.cost_micros
        ),
        (prompt, completion, cost)
    );
}

/// The frontier on a mock of known capacity: 4 requests at a time, 100 ms each, is at most
/// 40 req/s. Stepping 10, 15, 23, 35, 53 req/s with a 300 ms p99 bound, the search must
/// hold below the capacity and stop at the first step past it (where the backlog grows by
/// 13 requests a second), reporting the highest rate that held. Long service times keep
/// the scheduling noise of a busy machine small beside them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_frontier_finds_a_known_capacity() {
    let (_upstream, addr) = start_upstream(UpstreamConfig {
        latency: Latency::Fixed(Duration::from_millis(100)),
        max_concurrency: Some(4),
        ..UpstreamConfig::default()
    })
    .await;
    let mut load = open_loop(addr, 1.0, 64, Duration::from_millis(1500));
    load.warmup = Duration::from_millis(200);
    let report = search(FrontierConfig {
        load,
        start_rate: 10.0,
        factor: 1.5,
        max_rate: 1_000.0,
        connections: 64,
        p99_bound: Duration::from_millis(300),
    })
    .await
    .unwrap();
    println!("{report}");
    let rates: Vec<f64> = report.steps.iter().map(|s| s.rate).collect();
    let held = report.highest_held_rate.unwrap();
    assert!((20.0..=40.0).contains(&held), "{report:?}");
    let last = report.steps.last().unwrap();
    assert!(
        !last.held,
        "the search stops at the first failing step: {rates:?}"
    );
    assert!((35.0..=53.0).contains(&last.rate), "{report:?}");
    assert!(rates.iter().all(|&r| r < 60.0), "{rates:?}");
}

/// `run --check` against the mock itself: books balance with clean answers (exit 0), and
/// a mock that answers 429 — a refusal that reached the upstream — fails the run, naming
/// the invariant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_check_fails_when_refusals_reached_the_upstream() {
    let binary = env!("CARGO_BIN_EXE_floodgate-loadtest");
    let (_clean, addr) = start_upstream(UpstreamConfig::default()).await;
    let checked = |addr: SocketAddr| {
        let mut command = tokio::process::Command::new(binary);
        command
            .args(["run", "--rate", "200", "--duration", "300ms", "--check"])
            .args(["--url", &format!("http://{addr}/v1")])
            .args(["--mock", &format!("http://{addr}")])
            .args(["--pid", &std::process::id().to_string()]);
        command
    };
    let output = checked(addr).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains("invariants: all 1 hold"), "{stdout}");
    assert!(stdout.contains("peak RSS"), "{stdout}");

    let (_throttling, addr) = start_upstream(UpstreamConfig {
        throttle_rate: 0.5,
        ..UpstreamConfig::default()
    })
    .await;
    let output = checked(addr).output().await.unwrap();
    assert!(!output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stdout.contains("FAILED"), "{stdout}");
    assert!(
        stderr.contains("the books do not balance: refusals_never_reach_upstream"),
        "{stderr}"
    );
}

/// `compare` with the same mock on both sides, the "gateway" side slowed by a known 5 ms
/// (a second mock with a fixed latency): the added latency is about 5 ms at every
/// percentile, and both sides sent the same closed-loop load in alternating slices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_reports_the_latency_a_slower_hop_adds() {
    let (direct, a) = start_upstream(UpstreamConfig::default()).await;
    let (slow, b) = start_upstream(UpstreamConfig {
        latency: Latency::Fixed(Duration::from_millis(5)),
        ..UpstreamConfig::default()
    })
    .await;
    let mut load = open_loop(a, 1.0, 1, Duration::from_millis(800));
    load.mode = Mode::Closed { concurrency: 1 };
    let report = floodgate_loadtest::compare::run(floodgate_loadtest::compare::CompareConfig {
        load,
        direct: format!("http://{a}/v1"),
        gateway: format!("http://{b}/v1"),
        slices: 4,
    })
    .await
    .unwrap();
    println!("{report}");
    assert_eq!(report.direct.errors() + report.gateway.errors(), 0);
    assert_eq!(direct.stats().requests, report.direct.requests);
    assert_eq!(slow.stats().requests, report.gateway.requests);
    // tokio's timer serves a 5 ms wait in 5–7 ms.
    let added = report.added_latency;
    assert!((4_500..9_000).contains(&added.p50_us), "{report:?}");
    assert!(added.p90_us >= 4_500, "{report:?}");
    // A closed loop one at a time: the slow side does far fewer requests per second.
    assert!(report.throughput_ratio < 0.5, "{report:?}");
}
