//! Graceful shutdown: in-flight requests and streams finish, new connections are refused,
//! and the grace period bounds how long a stuck stream can hold shutdown up.

use std::time::{Duration, Instant};

use crate::common::upstream::{UPSTREAM_KEY, Upstream};
use crate::common::{TestGateway, client, wait_until, within};
use serde_json::json;

fn yaml(upstream: &Upstream, grace: &str) -> String {
    let base = upstream.base();
    format!(
        "auth: none
shutdown_grace: {grace}
endpoints:
  - name: slow
    kind: chat
    targets:
      - {{provider: openai, model: slow-600, api_base: '{base}', credentials: {{api_key: $UPSTREAM_KEY}}}}
  - name: held
    kind: chat
    targets:
      - {{provider: openai, model: hold, api_base: '{base}', credentials: {{api_key: $UPSTREAM_KEY}}}}
"
    )
}

#[tokio::test]
async fn in_flight_requests_finish_and_new_connections_are_refused() {
    let upstream = Upstream::start().await;
    let gw =
        TestGateway::from_yaml(&yaml(&upstream, "10s"), &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let url = gw.url("/v1/chat/completions");
    let addr = gw.addr;
    let in_flight = tokio::spawn(async move {
        client()
            .post(url)
            .json(
                &json!({"model": "slow", "messages": [{"role": "user", "content": "still here"}]}),
            )
            .send()
            .await
    });
    // In flight: the gateway has passed it to the (slow) upstream.
    wait_until("the slow request to reach the upstream", || {
        (upstream.count() == 1).then_some(())
    })
    .await;
    let started = Instant::now();
    let gateway = gw.gateway.clone();
    let usage = gw.usage.clone();
    let drained = tokio::spawn(gw.shutdown());
    wait_until("draining to begin", || gateway.is_draining().then_some(())).await;

    let response = within("the in-flight request", in_flight)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello from upstream"
    );
    assert!(
        within("shutdown", drained).await.unwrap(),
        "drained within the grace period"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(usage.wait_for(1).await[0].status, 200);

    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(refused.is_err(), "the listener is closed after shutdown");
}

#[tokio::test]
async fn grace_period_bounds_a_stream_that_never_ends() {
    let upstream = Upstream::start().await;
    let gw =
        TestGateway::from_yaml(&yaml(&upstream, "300ms"), &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let mut stream = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": "held", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let first = within("the first chunk", stream.chunk())
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&first).contains("Hello"));

    let started = Instant::now();
    let usage = gw.usage.clone();
    let drained = within("shutdown", gw.shutdown()).await;
    assert!(!drained, "the held stream outlived the grace period");
    assert!(started.elapsed() >= Duration::from_millis(300));
    // The cut stream still produced its usage record.
    let record = usage.wait_for(1).await.remove(0);
    assert!(record.client_cancelled, "{record:?}");
    assert_eq!(record.status, 499);
    assert!(record.streamed);
    upstream.release();
}
