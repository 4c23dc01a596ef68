//! Criterion micro-benchmarks of the request path's pieces, each called the way the edge
//! calls it (`node/src/edge/invoke.rs`), on realistic payloads: a few-message chat
//! (system, user, assistant, user; ~0.5 KB) and a single 2 KB prompt.
//!
//! * `request/*`: read and parse the body, authenticate the key, resolve the endpoint in
//!   the config snapshot and check the request ([`admit`]), then order the targets
//!   ([`plan`]).
//! * `translate/*`: OpenAI chat → Anthropic Messages request (as sent: serialised), and an
//!   Anthropic answer's bytes → the OpenAI answer's bytes.
//! * `sse/*`: an Anthropic stream's bytes, one network read per event, parsed as SSE,
//!   translated into OpenAI chunks and framed for the client by [`MeteredStream`] (usage
//!   record included).
//! * `quota/*`: a reservation against this edge's lease and its settlement, alone and as
//!   the attempt loop makes it (two budgets: a USD budget and a requests-per-minute limit).
//!
//! The ledger behind the quota book is an in-process stand-in that grants what is asked:
//! only the edge's side is measured (its fast path takes no lock and makes no ledger call;
//! a new lease is asked for only when one runs out). Usage records go to a sink that
//! drops them.
//!
//! Run: `cargo bench -p floodgate-node --bench hot_path [-- FILTER]`.

// Set-up failures are bugs in the benchmark itself: fail loudly.
#![allow(clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use axum::body::Body;
use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use eventsource_stream::Eventsource;
use floodgate::config::{self, Config, Mode, Target};
use floodgate::edge::accounting::Accounting;
use floodgate::edge::admit::admit;
use floodgate::edge::context::RequestContext;
use floodgate::edge::error::ErrorShape;
use floodgate::edge::quota::{
    Charge, LedgerFuture, QuotaLedger, QuotaSettings, Quotas, RequestQuota, subject,
};
use floodgate::edge::routes::openai::unified;
use floodgate::edge::routing::plan::plan;
use floodgate::edge::runtime::Runtime;
use floodgate::edge::stream::MeteredStream;
use floodgate::providers::anthropic::request::to_anthropic;
use floodgate::providers::anthropic::response::to_openai;
use floodgate::providers::anthropic::stream::{self, Translator};
use floodgate::providers::{Operation, ProviderError};
use floodgate::usage::{RouteKind, Usage, UsageRecord, UsageSink};
use floodgate_cluster::consensus::now_millis;
use floodgate_cluster::ledger::{
    Action, BudgetSpec, Lease, LeaseRequest, Metric, Refusal, Scope, SettleResult, Settlement,
    Window,
};
use futures::StreamExt;
use http::{HeaderMap, HeaderValue};
use serde_json::{Map, Value, json};
use tokio_util::task::TaskTracker;

const KEY: &str = "fg-bench-0123456789abcdef0123456789";

/// The edge's config: a keyed gateway with a two-target chat split (priced), an Anthropic
/// endpoint, and a few dozen other endpoints so the lookup is not in a map of one.
fn config() -> Config {
    let mut yaml = format!(
        "keys:
  - {{id: bench, key: \"{KEY}\"}}
endpoints:
  - name: chat
    kind: chat
    targets:
      - {{provider: openai, model: gpt-4o-mini, api_base: \"http://127.0.0.1:9/v1\", credentials: {{api_key: sk-bench}}, weight: 3, price: {{input: 2.5, output: 10}}}}
      - {{provider: openai, model: gpt-4o, api_base: \"http://127.0.0.1:9/v1\", credentials: {{api_key: sk-bench}}, weight: 1, price: {{input: 2.5, output: 10}}}}
  - name: claude
    kind: chat
    targets:
      - {{provider: anthropic, model: claude-sonnet-4-5, credentials: {{api_key: sk-ant-bench}}, max_tokens: 1024}}
"
    );
    for i in 0..40 {
        yaml.push_str(&format!(
            "  - {{name: other-{i}, kind: chat, targets: [{{provider: openai, model: m{i}, api_base: \"http://127.0.0.1:9/v1\", credentials: {{api_key: sk-bench}}}}]}}\n"
        ));
    }
    config::load_str(&yaml, Mode::Serve, &HashMap::<String, String>::new())
        .expect("the benchmark config is valid")
}

/// Prose-like text of exactly `bytes` bytes.
fn text(bytes: usize) -> String {
    let words = [
        "the", "gateway", "measures", "what", "a", "client", "sees", "under", "load", "and",
        "checks", "that", "every", "request", "is", "counted", "once",
    ];
    let mut out = String::with_capacity(bytes + 16);
    let mut i = 0;
    while out.len() < bytes {
        out.push_str(words[i % words.len()]);
        out.push(' ');
        i += 1;
    }
    out.truncate(bytes);
    out
}

/// The two request bodies, by name.
fn bodies(model: &str) -> Vec<(&'static str, Value)> {
    let few = json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a terse assistant. Answer in one sentence."},
            {"role": "user", "content": "What does a gateway add to the latency of a model call?"},
            {"role": "assistant", "content": "The time to authenticate, route, meter and forward the request and its answer."},
            {"role": "user", "content": "And how would you measure that without hiding queueing?"}
        ],
        "temperature": 0.2,
        "max_tokens": 256,
        "user": "bench"
    });
    let long = json!({
        "model": model,
        "messages": [{"role": "user", "content": text(2048)}],
        "max_tokens": 512
    });
    vec![("few_messages", few), ("prompt_2k", long)]
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// A sink that drops usage records.
struct Discard;

impl UsageSink for Discard {
    fn record(&self, record: UsageRecord) {
        black_box(record);
    }
}

fn context() -> RequestContext {
    RequestContext {
        request_id: Arc::from("0193f1c2-bench"),
        started: Instant::now(),
        started_at: SystemTime::now(),
        trace_id: Arc::from("4bf92f3577b34da6a3ce929d0e0e4736"),
    }
}

fn open(runtime: &Runtime, sink: &Arc<dyn UsageSink>) -> Accounting {
    Accounting::open(sink.clone(), runtime, &context(), RouteKind::Unified)
}

fn request(c: &mut Criterion) {
    let runtime = Runtime::next(config(), None);
    let sink: Arc<dyn UsageSink> = Arc::new(Discard);
    let spec = unified(Operation::Chat);
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_static("Bearer fg-bench-0123456789abcdef0123456789"),
    );
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let mut group = c.benchmark_group("request");
    for (name, body) in bodies("chat") {
        let bytes = Bytes::from(body.to_string());
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(format!("admit_and_plan/{name}"), |b| {
            b.iter_batched(
                || (open(&runtime, &sink), Body::from(bytes.clone())),
                |(mut accounting, body)| {
                    let admitted = futures::executor::block_on(admit(
                        &runtime,
                        &spec,
                        &headers,
                        body,
                        &mut accounting,
                    ))
                    .unwrap_or_else(|e| panic!("admitted: {}", e.message));
                    let state = &runtime.endpoints[&admitted.endpoint.name];
                    let order = plan(
                        &admitted.endpoint,
                        &state.routing,
                        admitted.sticky_key.as_deref(),
                    );
                    black_box(admitted.endpoint.candidate(order[0]));
                    // Dropped after the measurement: the usage record is not part of it.
                    (accounting, admitted, order)
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

/// An Anthropic answer of `tokens` words, as the API sends it.
fn anthropic_answer(tokens: usize) -> Bytes {
    let text = text(tokens * 5);
    Bytes::from(
        json!({
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 512, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0, "output_tokens": tokens}
        })
        .to_string(),
    )
}

fn translate(c: &mut Criterion) {
    let config = config();
    let target: &Target = &config.endpoints["claude"].targets[0];
    let mut group = c.benchmark_group("translate");
    for (name, body) in bodies(&target.model) {
        let body = object(body);
        group.bench_function(format!("openai_to_anthropic_request/{name}"), |b| {
            b.iter(|| {
                let translated = to_anthropic(black_box(&body), target).expect("translates");
                serde_json::to_vec(&translated).expect("serialises")
            });
        });
    }
    let answer = anthropic_answer(200);
    group.throughput(Throughput::Bytes(answer.len() as u64));
    group.bench_function("anthropic_to_openai_answer/200_tokens", |b| {
        b.iter(|| {
            let message: Map<String, Value> =
                serde_json::from_slice(black_box(&answer)).expect("an object");
            let (body, usage) = to_openai(&message, 1_750_000_000);
            (
                serde_json::to_vec(&Value::Object(body)).expect("serialises"),
                usage,
            )
        });
    });
    group.finish();
}

/// An Anthropic stream of `tokens` text deltas, one `Bytes` per event (one network read
/// per event, as a token-by-token stream arrives).
fn anthropic_stream(tokens: usize) -> Vec<Bytes> {
    let event = |name: &str, data: Value| Bytes::from(format!("event: {name}\ndata: {data}\n\n"));
    let mut events = vec![
        event(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_01XFDUDYJgAACzvnptvVoYEL",
                "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 512, "cache_creation_input_tokens": 0,
                          "cache_read_input_tokens": 0, "output_tokens": 1}}}),
        ),
        event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
                   "content_block": {"type": "text", "text": ""}}),
        ),
        event("ping", json!({"type": "ping"})),
    ];
    for i in 0..tokens {
        events.push(event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "text_delta", "text": format!("word{i} ")}}),
        ));
    }
    events.push(event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
               "usage": {"output_tokens": tokens}}),
    ));
    events.push(event("message_stop", json!({"type": "message_stop"})));
    events
}

fn sse(c: &mut Criterion) {
    let runtime = Runtime::next(config(), None);
    let sink: Arc<dyn UsageSink> = Arc::new(Discard);
    let mut group = c.benchmark_group("sse");
    for tokens in [16usize, 256] {
        let reads = anthropic_stream(tokens);
        group.throughput(Throughput::Elements(reads.len() as u64));
        group.bench_function(format!("anthropic_to_openai_chunks/{tokens}_tokens"), |b| {
            b.iter_batched(
                || open(&runtime, &sink),
                |accounting| {
                    // The provider's half (`AnthropicProvider::stream_at`): SSE parsing and
                    // translation; the edge's half: framing for the client and metering.
                    let events = futures::stream::iter(reads.clone())
                        .map(Ok::<Bytes, Infallible>)
                        .eventsource()
                        .map(|item| match item {
                            Ok(event) => Ok((event.event, event.data)),
                            Err(error) => Err(ProviderError::InvalidResponse {
                                detail: error.to_string(),
                            }),
                        });
                    let translator = Translator::new(
                        stream::Mode::Chat {
                            forward_usage: true,
                        },
                        None,
                        0,
                    );
                    let body = MeteredStream::new(
                        stream::translate(events, translator),
                        accounting,
                        200,
                        ErrorShape::OpenAi,
                    );
                    futures::executor::block_on(body.fold(0usize, |sent, frame| async move {
                        sent + frame.map_or(0, |f| f.len())
                    }))
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

/// A ledger that grants whatever is asked at once: the edge's side of a reservation is
/// what is measured.
struct Granting {
    next: AtomicU64,
}

impl QuotaLedger for Granting {
    fn grant(&self, request: LeaseRequest) -> LedgerFuture<'_, Result<Lease, Refusal>> {
        let now = now_millis();
        let lease = Lease {
            id: self.next.fetch_add(1, Ordering::Relaxed),
            budget: request.budget,
            edge_id: request.edge_id,
            window_start: 0,
            granted: request.asked,
            held: request.asked,
            settled: 0,
            granted_at: now,
            expires_at: now + request.ttl_ms,
        };
        Box::pin(async move { Ok(Ok(lease)) })
    }

    fn settle(&self, settlements: Vec<Settlement>) -> LedgerFuture<'_, Vec<SettleResult>> {
        let results = settlements
            .into_iter()
            .map(|s| SettleResult::Settled {
                lease: s.lease,
                charged: s.actual,
                released: 0,
                excess: 0,
                closed: s.close,
            })
            .collect();
        Box::pin(async move { Ok(results) })
    }
}

fn budget(id: &str, metric: Metric, window: Window) -> BudgetSpec {
    BudgetSpec {
        id: id.to_owned(),
        metric,
        limit: u64::MAX / 4,
        window,
        scope: Scope {
            endpoint: Some("chat".to_owned()),
            ..Scope::default()
        },
        action: Action::Reject,
        webhook: None,
    }
}

fn quota(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let _entered = rt.enter();
    let runtime = Runtime::next(config(), None);
    let sink: Arc<dyn UsageSink> = Arc::new(Discard);
    let budgets = [
        budget("team-usd", Metric::Micros, Window::Month),
        budget("chat-rpm", Metric::Requests, Window::Minute),
    ];
    let quotas = Quotas::start(
        Arc::new(Granting {
            next: AtomicU64::new(1),
        }),
        "edge-bench",
        QuotaSettings::default(),
        &TaskTracker::new(),
    );
    quotas.sync(&budgets);
    let endpoint = &runtime.config.endpoints["chat"];
    let target = &endpoint.targets[0];
    let (_, few) = bodies("chat").swap_remove(0);
    let body = object(few);
    let used = Usage {
        input_tokens: 60,
        output_tokens: 40,
        ..Usage::default()
    };
    let mut group = c.benchmark_group("quota");

    let usd = &budgets[0];
    let book = quotas.book(&usd.id).expect("the book");
    group.bench_function("reserve_and_settle/one_budget", |b| {
        b.to_async(&rt).iter(|| async {
            let mut reservation = quotas.reservation();
            reservation.add_hold(usd.metric);
            let lease = quotas
                .reserve_on(&book, usd, black_box(5_000))
                .await
                .expect("granted");
            reservation.add_part(0, lease, 5_000);
            reservation.settle(Charge::Used {
                tokens: 100,
                micros: Some(550),
            });
        });
    });

    group.bench_function("request/two_budgets", |b| {
        b.to_async(&rt).iter(|| async {
            let mut accounting = open(&runtime, &sink);
            let subject = subject(&endpoint.name, None);
            let quota = RequestQuota::new(Some(&quotas), &budgets, &subject).expect("applies");
            let limit = quota
                .prepare(
                    Operation::Chat,
                    target,
                    &runtime.config.prices,
                    black_box(&body),
                    &mut accounting,
                )
                .await
                .expect("reserved");
            accounting.usage(used);
            // Closing the record settles the reservation.
            accounting.finish(200);
            limit
        });
    });
    group.finish();
}

criterion_group!(benches, request, translate, sse, quota);
criterion_main!(benches);
