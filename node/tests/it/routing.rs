//! Routing: weighted and sticky splits, least-latency choice, fallback chains on every
//! retryable class and never on client errors, retries that honour `Retry-After` and the
//! retry budget, outlier ejection and recovery, per-target and idle timeouts (connect
//! timeouts per target and per endpoint, against an address that never answers), and the
//! attempts listed in the usage record.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::common;
use crate::common::upstream::{UPSTREAM_KEY, Upstream};
use crate::common::{BlackHole, TestGateway, client, send, wait_until};
use serde_json::{Value, json};

/// One OpenAI target on `upstream` serving `model`, as a YAML flow mapping.
fn target(upstream: &Upstream, model: &str, extra: &str) -> String {
    format!(
        "{{provider: openai, model: '{model}', api_base: '{}', credentials: {{api_key: $UPSTREAM_KEY}}{extra}}}",
        upstream.base()
    )
}

fn chat(endpoint: &str) -> Value {
    json!({"model": endpoint, "messages": [{"role": "user", "content": "route me"}]})
}

async fn gateway(endpoints: &str) -> TestGateway {
    let yaml = format!("auth: none\nendpoints:\n{endpoints}");
    TestGateway::from_yaml(&yaml, &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await
}

async fn post(gw: &TestGateway, body: Value) -> common::Reply {
    send(client().post(gw.url("/v1/chat/completions")).json(&body)).await
}

#[tokio::test]
async fn weighted_split_holds_its_proportions() {
    let gw = gateway(
        "  - name: ab\n    kind: chat\n    targets:\n      - {provider: mock, model: arm-a, weight: 70}\n      - {provider: mock, model: arm-b, weight: 30}\n",
    )
    .await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..1000 {
        let reply = post(&gw, chat("ab")).await;
        assert_eq!(reply.status, 200);
        *counts
            .entry(reply.header("x-floodgate-target").to_owned())
            .or_default() += 1;
    }
    // Binomial(1000, 0.7): standard deviation 14.5; five of them either side.
    let a = counts.get("mock/arm-a").copied().unwrap_or(0);
    assert!((628..=772).contains(&a), "{counts:?}");
    assert_eq!(a + counts.get("mock/arm-b").copied().unwrap_or(0), 1000);
}

#[tokio::test]
async fn sticky_split_keeps_a_user_on_one_arm() {
    let gw = gateway(
        "  - name: ab\n    kind: chat\n    routing: {sticky: {header: x-user-id}}\n    targets:\n      - {provider: mock, model: arm-a}\n      - {provider: mock, model: arm-b}\n",
    )
    .await;
    let mut arms_seen = std::collections::HashSet::new();
    for user in 0..40 {
        let mut arm = None;
        for _ in 0..5 {
            let reply = send(
                client()
                    .post(gw.url("/v1/chat/completions"))
                    .header("x-user-id", format!("user-{user}"))
                    .json(&chat("ab")),
            )
            .await;
            let served = reply.header("x-floodgate-target").to_owned();
            assert_eq!(
                *arm.get_or_insert(served.clone()),
                served,
                "user-{user} moved"
            );
        }
        arms_seen.extend(arm);
    }
    assert_eq!(arms_seen.len(), 2, "forty users spread over both arms");

    // A body field works too.
    let gw = gateway(
        "  - name: ab\n    kind: chat\n    routing: {sticky: {body_field: user}}\n    targets:\n      - {provider: mock, model: arm-a}\n      - {provider: mock, model: arm-b}\n",
    )
    .await;
    let mut body = chat("ab");
    body["user"] = json!("alice");
    let first = post(&gw, body.clone())
        .await
        .header("x-floodgate-target")
        .to_owned();
    for _ in 0..10 {
        assert_eq!(
            post(&gw, body.clone()).await.header("x-floodgate-target"),
            first
        );
    }
}

/// An endpoint whose primary fails as `primary_model` with a healthy fallback.
async fn with_fallback(
    primary: &Upstream,
    primary_model: &str,
    backup: &Upstream,
    extra: &str,
) -> TestGateway {
    gateway(&format!(
        "  - name: chain\n    kind: chat\n{extra}    targets:\n      - {}\n    fallbacks:\n      - {}\n",
        target(primary, primary_model, ""),
        target(backup, "gpt-4o-mini", ""),
    ))
    .await
}

#[tokio::test]
async fn fallback_on_every_retryable_class() {
    for (model, expected_status, code) in [
        ("error-429", 429, "upstream_error"),
        ("error-500", 500, "upstream_error"),
        ("error-503", 503, "upstream_error"),
        ("error-529", 529, "upstream_error"),
        ("garbage", 502, "upstream_invalid_response"),
    ] {
        let primary = Upstream::start().await;
        let backup = Upstream::start().await;
        let gw = with_fallback(&primary, model, &backup, "").await;
        let reply = send(
            client()
                .post(gw.url("/v1/chat/completions"))
                .header("x-request-id", format!("fb-{model}"))
                .json(&chat("chain")),
        )
        .await;
        assert_eq!(reply.status, 200, "{model}: {}", reply.text);
        assert_eq!(
            reply.header("x-floodgate-target"),
            "openai/gpt-4o-mini",
            "{model}"
        );
        assert_eq!(
            reply.body["choices"][0]["message"]["content"],
            "Hello from upstream"
        );
        assert_eq!((primary.count(), backup.count()), (1, 1), "{model}");
        let record = gw.usage.wait_for_request(&format!("fb-{model}")).await;
        assert_eq!(record.status, 200);
        assert_eq!(record.attempts.len(), 2, "{model}: {:?}", record.attempts);
        assert_eq!(record.attempts[0].model, model);
        assert_eq!(record.attempts[0].status, expected_status, "{model}");
        assert_eq!(record.attempts[0].error_type, Some(code));
        assert_eq!(record.attempts[1].status, 200);
        assert_eq!(record.model.as_deref(), Some("gpt-4o-mini"));
        // Tokens and cost are the serving attempt's.
        assert_eq!(
            record.usage.output_tokens,
            common::upstream::COMPLETION_TOKENS
        );
    }
}

#[tokio::test]
async fn fallback_on_connect_failure_and_timeouts() {
    let backup = Upstream::start().await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let slow = Upstream::start().await;
    let gw = gateway(&format!(
        "  - name: chain\n    kind: chat\n    targets:\n      - {{provider: openai, model: m, api_base: 'http://127.0.0.1:{closed}/v1', credentials: {{api_key: $UPSTREAM_KEY}}}}\n    fallbacks:\n      - {}\n      - {}\n",
        target(&slow, "slow-3000", ", timeouts: {first_byte: 150ms}"),
        target(&backup, "gpt-4o-mini", ""),
    ))
    .await;
    let started = Instant::now();
    let reply = send(
        client()
            .post(gw.url("/v1/chat/completions"))
            .header("x-request-id", "connect-and-timeout")
            .json(&chat("chain")),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the per-target first-byte timeout cut the slow target"
    );
    let record = gw.usage.wait_for_request("connect-and-timeout").await;
    let codes: Vec<_> = record.attempts.iter().map(|a| a.error_type).collect();
    assert_eq!(
        codes,
        vec![
            Some("upstream_connect_failed"),
            Some("upstream_timeout"),
            None
        ]
    );
    assert_eq!(backup.count(), 1);
}

#[tokio::test]
async fn client_errors_never_fall_back() {
    for model in ["error-400", "error-404", "error-422"] {
        let primary = Upstream::start().await;
        let backup = Upstream::start().await;
        let gw = with_fallback(&primary, model, &backup, "").await;
        let reply = post(&gw, chat("chain")).await;
        assert_eq!(reply.status.to_string(), model.trim_start_matches("error-"));
        assert_eq!(backup.count(), 0, "{model} reached the fallback");
        let record = gw.usage.wait_for(1).await.remove(0);
        assert_eq!(record.attempts.len(), 1);
    }
}

#[tokio::test]
async fn streams_fall_back_before_their_first_byte() {
    let primary = Upstream::start().await;
    let backup = Upstream::start().await;
    let gw = with_fallback(&primary, "error-503", &backup, "").await;
    let mut body = chat("chain");
    body["stream"] = json!(true);
    let reply = post(&gw, body.clone()).await;
    assert_eq!(reply.status, 200);
    assert!(reply.text.contains("Hello"), "{}", reply.text);
    assert!(reply.text.trim_end().ends_with("data: [DONE]"));
    assert_eq!((primary.count(), backup.count()), (1, 1));

    // Once a chunk has reached the client there is no fallback: the stream ends with an
    // error event instead.
    let primary = Upstream::start().await;
    let backup = Upstream::start().await;
    let gw = with_fallback(&primary, "cut", &backup, "").await;
    let reply = post(&gw, body).await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.text.contains("upstream_interrupted"),
        "{}",
        reply.text
    );
    assert_eq!(backup.count(), 0);
}

#[tokio::test]
async fn retries_honour_retry_after() {
    let upstream = Upstream::start().await;
    let gw = gateway(&format!(
        "  - name: retried\n    kind: chat\n    routing: {{retry: {{attempts: 2, backoff: 10ms, max_backoff: 3s}}}}\n    targets:\n      - {}\n",
        target(&upstream, "flaky-1-429", ""),
    ))
    .await;
    let started = Instant::now();
    let reply = post(&gw, chat("retried")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the retry waited for Retry-After: 1 ({:?})",
        started.elapsed()
    );
    assert_eq!(upstream.count(), 2);

    // A Retry-After longer than max_backoff is not waited for: the error comes back.
    let upstream = Upstream::start().await;
    let gw = gateway(&format!(
        "  - name: retried\n    kind: chat\n    routing: {{retry: {{attempts: 3, backoff: 10ms, max_backoff: 500ms}}}}\n    targets:\n      - {}\n",
        target(&upstream, "flaky-1-429", ""),
    ))
    .await;
    let started = Instant::now();
    let reply = post(&gw, chat("retried")).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("retry-after"), "1");
    assert!(started.elapsed() < Duration::from_millis(900));
    assert_eq!(upstream.count(), 1);
}

#[tokio::test]
async fn retries_without_retry_after_back_off_exponentially() {
    let upstream = Upstream::start().await;
    let gw = gateway(&format!(
        "  - name: retried\n    kind: chat\n    routing: {{retry: {{attempts: 4, backoff: 5ms, max_backoff: 50ms}}}}\n    targets:\n      - {}\n",
        target(&upstream, "error-502", ""),
    ))
    .await;
    let reply = send(
        client()
            .post(gw.url("/v1/chat/completions"))
            .header("x-request-id", "four-tries")
            .json(&chat("retried")),
    )
    .await;
    assert_eq!(reply.status, 502);
    assert_eq!(upstream.count(), 4, "attempts: 4");
    let record = gw.usage.wait_for_request("four-tries").await;
    assert_eq!(record.attempts.len(), 4);
    assert!(record.attempts.iter().all(|a| a.status == 502));
}

#[tokio::test]
async fn the_retry_budget_stops_retry_storms() {
    let primary = Upstream::start().await;
    let backup = Upstream::start().await;
    let gw = with_fallback(
        &primary,
        "error-503",
        &backup,
        "    routing: {retry: {budget: 0.0, budget_min_per_second: 0}, ejection: {consecutive_failures: 0}}\n",
    )
    .await;
    for _ in 0..5 {
        let reply = post(&gw, chat("chain")).await;
        assert_eq!(reply.status, 503, "no budget, no fallback");
    }
    assert_eq!((primary.count(), backup.count()), (5, 0));

    // A budget of half the requests lets about half of them fail over.
    let primary = Upstream::start().await;
    let backup = Upstream::start().await;
    let gw = with_fallback(
        &primary,
        "error-503",
        &backup,
        "    routing: {retry: {budget: 0.5, budget_min_per_second: 0}, ejection: {consecutive_failures: 0}}\n",
    )
    .await;
    let mut served = 0;
    for _ in 0..20 {
        if post(&gw, chat("chain")).await.status == 200 {
            served += 1;
        }
    }
    assert_eq!(served, 10, "retries ≤ 0.5 × requests");
    assert_eq!(backup.count(), 10);
}

#[tokio::test]
async fn failing_targets_are_ejected_then_probed_back() {
    let primary = Upstream::start().await;
    let backup = Upstream::start().await;
    let gw = with_fallback(
        &primary,
        "flaky-2-503",
        &backup,
        "    routing: {ejection: {consecutive_failures: 2, cooldown: 300ms}}\n",
    )
    .await;
    for _ in 0..2 {
        assert_eq!(post(&gw, chat("chain")).await.status, 200);
    }
    assert_eq!(primary.count(), 2, "two failures eject the primary");
    for _ in 0..5 {
        let reply = post(&gw, chat("chain")).await;
        assert_eq!(reply.header("x-floodgate-target"), "openai/gpt-4o-mini");
    }
    assert_eq!(primary.count(), 2, "an ejected target gets no traffic");

    let runtime = gw.gateway.runtime();
    let health = runtime.endpoints["chain"].routing.health[0].clone();
    wait_until("the cooldown to pass", || health.is_healthy().then_some(())).await;
    // The probe goes to the primary, which has recovered.
    let reply = post(&gw, chat("chain")).await;
    assert_eq!(reply.header("x-floodgate-target"), "openai/flaky-2-503");
    assert_eq!(primary.count(), 3);
    let reply = post(&gw, chat("chain")).await;
    assert_eq!(reply.header("x-floodgate-target"), "openai/flaky-2-503");
}

#[tokio::test]
async fn least_latency_prefers_the_faster_target() {
    let fast = Upstream::start().await;
    let slow = Upstream::start().await;
    let gw = gateway(&format!(
        "  - name: lat\n    kind: chat\n    routing: {{balance: least_latency}}\n    targets:\n      - {}\n      - {}\n",
        target(&fast, "fast", ""),
        target(&slow, "slow-60", ""),
    ))
    .await;
    for _ in 0..40 {
        assert_eq!(post(&gw, chat("lat")).await.status, 200);
    }
    assert!(
        fast.count() >= 30,
        "fast {} vs slow {}",
        fast.count(),
        slow.count()
    );
}

#[tokio::test]
async fn an_idle_stream_is_cut() {
    let upstream = Upstream::start().await;
    let gw = gateway(&format!(
        "  - name: idle\n    kind: chat\n    targets:\n      - {}\n",
        target(&upstream, "drip-400", ", timeouts: {idle: 100ms}"),
    ))
    .await;
    let mut body = chat("idle");
    body["stream"] = json!(true);
    let reply = post(&gw, body).await;
    assert_eq!(reply.status, 200);
    assert!(reply.text.contains("upstream_timeout"), "{}", reply.text);
    assert!(reply.text.contains("idle"), "{}", reply.text);
    assert!(!reply.text.contains("[DONE]"));
}

#[test]
fn routing_options_are_validated() {
    let env: HashMap<String, String> = HashMap::new();
    let bad = "auth: none\nendpoints:\n  - name: e\n    kind: chat\n    routing: {retry: {attempts: 0, on_status: [400]}, balance: fastest, ejection: {error_rate: 2, cooldown: 10s, max_cooldown: 1s}, sticky: {}}\n    targets:\n      - {provider: mock, model: echo, timeouts: {connect: 0s}}\n";
    let message = floodgate::config::load_str(bad, floodgate::config::Mode::Serve, &env)
        .unwrap_err()
        .to_string();
    for path in [
        "endpoints[0].routing.retry.attempts",
        "endpoints[0].routing.retry.on_status",
        "endpoints[0].routing.balance",
        "endpoints[0].routing.ejection.error_rate",
        "endpoints[0].routing.ejection.max_cooldown",
        "endpoints[0].routing.sticky",
        "endpoints[0].targets[0].timeouts.connect",
    ] {
        assert!(message.contains(path), "{path} missing from:\n{message}");
    }
}

#[test]
fn connect_timeouts_are_accepted_per_endpoint_and_per_target() {
    let env: HashMap<String, String> = HashMap::new();
    let yaml = "auth: none\ntimeouts: {connect: 7s}\nendpoints:\n  - name: e\n    kind: chat\n    timeouts: {connect: 2s}\n    targets:\n      - {provider: mock, model: a, timeouts: {connect: 250ms}}\n      - {provider: mock, model: b}\n    fallbacks:\n      - {provider: mock, model: c, timeouts: {first_byte: 5s}}\n  - name: f\n    kind: chat\n    targets:\n      - {provider: mock, model: d}\n";
    let config = floodgate::config::load_str(yaml, floodgate::config::Mode::Serve, &env).unwrap();
    let e = &config.endpoints["e"];
    let connect: Vec<Duration> = e.candidates().map(|t| t.timeouts.connect).collect();
    assert_eq!(
        connect,
        [
            Duration::from_millis(250),
            Duration::from_secs(2),
            Duration::from_secs(2)
        ],
        "a target's own, else its endpoint's"
    );
    assert_eq!(
        config.endpoints["f"].targets[0].timeouts.connect,
        Duration::from_secs(7),
        "else the top level's"
    );
    assert_eq!(
        config.connect_timeouts().into_iter().collect::<Vec<_>>(),
        [
            Duration::from_millis(250),
            Duration::from_secs(2),
            Duration::from_secs(7)
        ]
    );
}

/// A chat target on the black hole, as a YAML flow mapping (`extra` inside it).
fn hole_target(hole: &BlackHole, extra: &str) -> String {
    format!(
        "{{provider: openai, model: m, api_base: 'http://{}/v1', credentials: {{api_key: $UPSTREAM_KEY}}{extra}}}",
        hole.addr()
    )
}

#[tokio::test]
async fn a_short_connect_timeout_fails_over_while_other_endpoints_keep_theirs() {
    // The black hole never completes a handshake, so only a connect timeout ends a connect:
    // the top level's is 30 s, far beyond the test's 10 s deadline.
    let hole = BlackHole::start().await;
    let backup = Upstream::start().await;
    let yaml = format!(
        "auth: none
timeouts: {{connect: 30s}}
endpoints:
  - name: short
    kind: chat
    targets:
      - {}
    fallbacks:
      - {}
  - name: by-endpoint
    kind: chat
    timeouts: {{connect: 200ms}}
    targets:
      - {}
  - name: default
    kind: chat
    timeouts: {{first_byte: 600ms}}
    targets:
      - {}
",
        hole_target(&hole, ", timeouts: {connect: 200ms}"),
        target(&backup, "gpt-4o-mini", ""),
        hole_target(&hole, ""),
        hole_target(&hole, ""),
    );
    let gw = TestGateway::from_yaml(&yaml, &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    assert_eq!(
        gw.gateway.providers().http().timeouts(),
        [Duration::from_millis(200), Duration::from_secs(30)],
        "one pooled client per distinct connect timeout"
    );

    // The target's own 200 ms connect timeout fires and the fallback serves.
    let started = Instant::now();
    let reply = send(
        client()
            .post(gw.url("/v1/chat/completions"))
            .header("x-request-id", "short-connect")
            .json(&chat("short")),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.header("x-floodgate-target"), "openai/gpt-4o-mini");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let record = gw.usage.wait_for_request("short-connect").await;
    let codes: Vec<_> = record.attempts.iter().map(|a| a.error_type).collect();
    assert_eq!(codes, vec![Some("upstream_timeout"), None]);
    assert_eq!(backup.count(), 1);

    // An endpoint's connect timeout applies to its targets.
    let reply = post(&gw, chat("by-endpoint")).await;
    assert_eq!(reply.status, 504, "{}", reply.text);
    assert_eq!(reply.code(), "upstream_timeout");
    assert!(reply.text.contains("connect timeout"), "{}", reply.text);

    // An endpoint without one keeps the 30 s default: its connect is still pending when its
    // 600 ms first-byte timeout ends the call.
    let reply = post(&gw, chat("default")).await;
    assert_eq!(reply.status, 504, "{}", reply.text);
    assert!(reply.text.contains("first byte timeout"), "{}", reply.text);
}

#[tokio::test]
async fn a_top_level_connect_timeout_change_applies_on_reload() {
    let hole = BlackHole::start().await;
    let config = |connect: &str| {
        common::config(
            &format!(
                "auth: none\ntimeouts: {{connect: {connect}}}\nendpoints:\n  - name: hole\n    kind: chat\n    timeouts: {{first_byte: 600ms}}\n    targets:\n      - {}\n",
                hole_target(&hole, "")
            ),
            &[("UPSTREAM_KEY", UPSTREAM_KEY)],
        )
    };
    let gw = TestGateway::start(config("30s")).await;
    let reply = post(&gw, chat("hole")).await;
    assert_eq!(reply.status, 504, "{}", reply.text);
    assert!(reply.text.contains("first byte timeout"), "{}", reply.text);

    gw.gateway.apply(config("150ms"));
    assert_eq!(
        gw.gateway.providers().http().timeouts(),
        [Duration::from_millis(150)],
        "the 30 s client is dropped, the 150 ms one built"
    );
    let reply = post(&gw, chat("hole")).await;
    assert_eq!(reply.status, 504, "{}", reply.text);
    assert!(reply.text.contains("connect timeout"), "{}", reply.text);
}

#[tokio::test]
async fn a_missing_feature_fails_over_but_a_malformed_request_does_not() {
    // The Anthropic target is never reached: translation decides before any call.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let gw = gateway(&format!(
        "  - name: mixed\n    kind: chat\n    targets:\n      - {{provider: anthropic, model: claude-sonnet-4-5, api_base: 'http://127.0.0.1:{closed}', credentials: {{api_key: sk-ant-test-000000}}}}\n    fallbacks:\n      - {{provider: mock, model: echo}}\n"
    ))
    .await;
    // `n: 2` is a feature Anthropic lacks: the mock fallback serves it.
    let mut body = chat("mixed");
    body["n"] = json!(2);
    let reply = post(&gw, body).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.header("x-floodgate-target"), "mock/echo");

    // A malformed image URL is the request's fault: no fallback, 400 invalid_request.
    let body = json!({"model": "mixed", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]});
    let reply = post(&gw, body).await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(reply.code(), "invalid_request");
    assert!(reply.headers.get("x-floodgate-target").is_none());
}
