//! The query API over gRPC and JSON: filters, group-by, granularity, top, paging, traces,
//! the live watch, and the stable error codes for bad questions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use axum::body::Body;
use common::{BASE_S, MemoryLog, events};
use floodgate_events::Delivered;
use floodgate_projector::{Projection, Projector, ProjectorSettings};
use floodgate_proto::v1::usage_service_client::UsageServiceClient;
use floodgate_proto::v1::{
    GetTraceRequest, ListTracesRequest, QueryUsageRequest, TopUsageRequest, UsageEvent,
    UsageFilter, WatchUsageRequest,
};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::Channel;
use tower::ServiceExt;

const FROM: i64 = BASE_S;
const TO: i64 = BASE_S + 3 * 86_400;

fn delivered(events: &[UsageEvent]) -> Vec<Delivered> {
    events
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, event)| Delivered {
            sequence: i as u64 + 1,
            event,
        })
        .collect()
}

struct Running {
    projector: Projector,
    grpc: UsageServiceClient<Channel>,
    events: Vec<UsageEvent>,
    stop: CancellationToken,
    tracker: TaskTracker,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn start(n: usize) -> Self {
        Self::start_with(n, |_| {}).await
    }

    async fn start_with(n: usize, adjust: impl FnOnce(&mut ProjectorSettings)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = ProjectorSettings::new(dir.path());
        adjust(&mut settings);
        settings.grpc_listen = "127.0.0.1:0".parse().unwrap();
        settings.http_listen = "127.0.0.1:0".parse().unwrap();
        let projector = Projector::open(settings.validate().unwrap()).unwrap();
        let events = events(n, 41);
        projector
            .projection()
            .fold(&delivered(&events), floodgate_projector::runner::now_us())
            .unwrap();
        let (stop, tracker) = (CancellationToken::new(), TaskTracker::new());
        let listening = projector.serve_queries(&stop, &tracker).await.unwrap();
        let grpc = UsageServiceClient::connect(format!("http://{}", listening.grpc))
            .await
            .unwrap();
        Self {
            projector,
            grpc,
            events,
            stop,
            tracker,
            _dir: dir,
        }
    }

    fn projection(&self) -> &Projection {
        self.projector.projection()
    }

    async fn json(&self, uri: &str) -> (u16, Value) {
        let router =
            floodgate_projector::http::router(self.projection().clone(), self.stop.clone());
        let response = router
            .oneshot(http::Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    async fn stop(self) {
        self.stop.cancel();
        self.tracker.close();
        tokio::time::timeout(Duration::from_secs(10), self.tracker.wait())
            .await
            .unwrap();
    }
}

fn error_code(status: &tonic::Status) -> String {
    let body: Value = serde_json::from_str(status.message()).unwrap();
    body["error"]["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn query_usage_filters_groups_and_buckets_the_same_over_grpc_and_json() {
    let mut running = Running::start(600).await;
    let want: Vec<&UsageEvent> = running
        .events
        .iter()
        .filter(|e| e.endpoint == "chat" && e.status == 200)
        .collect();
    let reply = running
        .grpc
        .query_usage(QueryUsageRequest {
            from: FROM,
            to: TO,
            granularity: "hour".into(),
            group_by: vec!["key".into()],
            filter: Some(UsageFilter {
                endpoint: "chat".into(),
                status: "2xx".into(),
                ..UsageFilter::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let keys: Vec<String> = reply
        .series
        .iter()
        .map(|s| s.group["key"].clone())
        .collect();
    assert_eq!(keys, ["k1", "k2", "k3", "k4"]);
    for series in &reply.series {
        let mine: Vec<_> = want
            .iter()
            .filter(|e| e.key_id == series.group["key"])
            .collect();
        let total = series.total.as_ref().unwrap();
        assert_eq!(total.requests, mine.len() as u64);
        assert_eq!(total.errors, 0);
        let cost: u64 = mine.iter().filter_map(|e| e.cost_micros).sum();
        assert_eq!(total.cost_micros, cost);
        let points: u64 = series.points.iter().map(|p| p.requests).sum();
        assert_eq!(points, total.requests);
        assert!(series.points.iter().all(|p| p.start % 3_600 == 0));
    }

    let (status, json) = running
        .json(&format!(
            "/usage/v1/usage?from={FROM}&to={TO}&granularity=day&group_by=status&endpoint=chat"
        ))
        .await;
    assert_eq!(status, 200, "{json}");
    let series = json["series"].as_array().unwrap();
    let classes: Vec<&str> = series
        .iter()
        .map(|s| s["group"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(classes, ["2xx", "499", "4xx", "5xx"]);
    let ok = &series[0];
    assert_eq!(ok["total"]["requests"], want.len());
    assert_eq!(ok["points"].as_array().unwrap().len(), 3, "three days");
    let errors = &series[3]["total"];
    assert_eq!(errors["error_rate"], 1.0);
    assert!(errors["errors_by_type"]["upstream_error"].as_u64().unwrap() > 0);
    assert!(ok["total"]["latency_us"]["p99"].as_u64().unwrap() > 0);
    running.stop().await;
}

#[tokio::test]
async fn top_usage_ranks_by_cost_tokens_or_requests() {
    let mut running = Running::start(400).await;
    let mut cost = std::collections::BTreeMap::<String, u64>::new();
    for e in &running.events {
        *cost.entry(e.team.clone()).or_default() += e.cost_micros.unwrap_or(0);
    }
    let reply = running
        .grpc
        .top_usage(TopUsageRequest {
            from: FROM,
            to: TO,
            dimension: "team".into(),
            by: "cost".into(),
            limit: 1,
            filter: None,
        })
        .await
        .unwrap()
        .into_inner();
    let (best, most) = cost.iter().max_by_key(|(_, c)| **c).unwrap();
    assert_eq!(reply.entries.len(), 1);
    assert_eq!(
        (&reply.entries[0].value, reply.entries[0].cost_micros),
        (best, *most)
    );

    // An unaligned range reads minutes and still sees only what is inside.
    let first_hour = running
        .events
        .iter()
        .filter(|e| e.time_unix_us < (FROM + 90 * 60) * 1_000_000)
        .count();
    let (status, json) = running
        .json(&format!(
            "/usage/v1/top?from={FROM}&to={}&dimension=endpoint&by=requests&limit=5",
            FROM + 90 * 60
        ))
        .await;
    assert_eq!(status, 200, "{json}");
    let entries = json["entries"].as_array().unwrap();
    let requests: u64 = entries
        .iter()
        .map(|e| e["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(requests, first_hour as u64);
    let ordered: Vec<u64> = entries
        .iter()
        .map(|e| e["requests"].as_u64().unwrap())
        .collect();
    assert!(ordered.windows(2).all(|w| w[0] >= w[1]));
    running.stop().await;
}

#[tokio::test]
async fn traces_page_by_cursor_newest_first_and_are_found_by_event_or_request_id() {
    let mut running = Running::start(300).await;
    let want: Vec<&UsageEvent> = running
        .events
        .iter()
        .filter(|e| e.key_id == "k2" && e.model == "claude")
        .collect();
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = running
            .grpc
            .list_traces(ListTracesRequest {
                from: FROM,
                to: TO,
                filter: Some(UsageFilter {
                    key: "k2".into(),
                    model: "claude".into(),
                    ..UsageFilter::default()
                }),
                cursor: cursor.clone(),
                limit: 7,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.traces.len() <= 7);
        assert!(page.traces.iter().all(|t| t.request_payload.is_none()));
        seen.extend(page.traces);
        if page.next_cursor.is_empty() {
            break;
        }
        cursor = page.next_cursor;
    }
    assert_eq!(seen.len(), want.len());
    assert!(
        seen.windows(2)
            .all(|w| w[0].time_unix_us >= w[1].time_unix_us)
    );

    let (status, json) = running
        .json(&format!(
            "/usage/v1/traces?from={FROM}&to={TO}&endpoint=chat&limit=1000"
        ))
        .await;
    assert_eq!(status, 200);
    let chat = running
        .events
        .iter()
        .filter(|e| e.endpoint == "chat")
        .count();
    assert_eq!(json["traces"].as_array().unwrap().len(), chat);
    assert!(json["next_cursor"].is_null());

    let captured = &running.events[0];
    let got = running
        .grpc
        .get_trace(GetTraceRequest {
            id: captured.request_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.trace.as_ref(), Some(captured), "payloads included");
    assert_eq!(got.sequence, 1);
    let (status, json) = running
        .json(&format!("/usage/v1/traces/{}", captured.event_id))
        .await;
    assert_eq!(status, 200);
    assert_eq!(json["trace"]["request_id"], captured.request_id);
    assert_eq!(json["trace"]["attempts"][0]["provider"], "openai");
    running.stop().await;
}

#[tokio::test]
async fn watch_usage_streams_newly_folded_events() {
    let mut running = Running::start(0).await;
    let mut stream = running
        .grpc
        .watch_usage(WatchUsageRequest {
            filter: Some(UsageFilter {
                endpoint: "embeddings".into(),
                ..UsageFilter::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let fresh = events(40, 43);
    let folded = running
        .projection()
        .fold(&delivered(&fresh), floodgate_projector::runner::now_us())
        .unwrap();
    running.projection().publish(&folded.events);
    let want: Vec<&str> = fresh
        .iter()
        .filter(|e| e.endpoint == "embeddings")
        .map(|e| e.event_id.as_str())
        .collect();
    for id in want {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(event.event_id, id);
    }
    running.stop().await;
}

#[tokio::test]
async fn the_json_watch_streams_newly_folded_events_as_server_sent_events() {
    let running = Running::start(0).await;
    let router =
        floodgate_projector::http::router(running.projection().clone(), running.stop.clone());
    let response = router
        .oneshot(
            http::Request::get("/usage/v1/watch?key=k3")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let fresh = events(30, 47);
    let folded = running
        .projection()
        .fold(&delivered(&fresh), floodgate_projector::runner::now_us())
        .unwrap();
    running.projection().publish(&folded.events);
    let want: Vec<String> = fresh
        .iter()
        .filter(|e| e.key_id == "k3")
        .map(|e| e.event_id.clone())
        .collect();
    let mut got = Vec::new();
    let mut text = String::new();
    while got.len() < want.len() {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&frame.into_data().unwrap()));
        while let Some(end) = text.find("\n\n") {
            let message: String = text.drain(..end + 2).collect();
            if let Some(data) = message.trim().strip_prefix("data: ") {
                let trace: Value = serde_json::from_str(data).unwrap();
                assert_eq!(trace["key_id"], "k3");
                got.push(trace["event_id"].as_str().unwrap().to_owned());
            }
        }
    }
    assert_eq!(got, want);
    running.stop().await;
}

#[tokio::test]
async fn bad_questions_get_stable_error_codes_over_both_transports() {
    let mut running = Running::start(10).await;
    let cases = [
        (
            format!("/usage/v1/usage?from={TO}&to={FROM}"),
            400,
            "invalid_range",
        ),
        (
            format!("/usage/v1/usage?from={FROM}&to={TO}&group_by=colour"),
            400,
            "unknown_group_by",
        ),
        (
            format!("/usage/v1/usage?from={FROM}&to={TO}&granularity=week"),
            400,
            "unknown_granularity",
        ),
        (
            format!("/usage/v1/usage?from=0&to={TO}&granularity=minute"),
            400,
            "range_too_large",
        ),
        (
            format!("/usage/v1/usage?from=yesterday&to={TO}"),
            400,
            "invalid_parameter",
        ),
        (
            format!("/usage/v1/usage?from=0&to={}&granularity=day", i64::MAX),
            400,
            "range_too_large",
        ),
        (
            format!("/usage/v1/top?from=0&to={}&dimension=key", i64::MAX),
            200,
            "",
        ),
        (
            format!("/usage/v1/usage?from={FROM}&to={TO}&colour=red"),
            400,
            "invalid_parameter",
        ),
        (
            format!("/usage/v1/top?from={FROM}&to={TO}&dimension=colour"),
            400,
            "unknown_dimension",
        ),
        (
            format!("/usage/v1/top?from={FROM}&to={TO}&dimension=key&by=joy"),
            400,
            "unknown_metric",
        ),
        (
            format!("/usage/v1/top?from={FROM}&to={TO}&dimension=key&limit=5000"),
            400,
            "invalid_limit",
        ),
        (
            format!("/usage/v1/traces?from={FROM}&to={TO}&cursor=nope"),
            400,
            "invalid_cursor",
        ),
        (
            "/usage/v1/traces/missing".to_owned(),
            404,
            "trace_not_found",
        ),
    ];
    for (uri, want_status, want_code) in cases {
        let (status, json) = running.json(&uri).await;
        if want_status == 200 {
            assert_eq!(status, 200, "{uri}: {json}");
            continue;
        }
        assert_eq!(
            (status, json["error"]["code"].as_str()),
            (want_status, Some(want_code)),
            "{uri}"
        );
        assert!(json["error"]["message"].is_string());
        assert!(json["error"]["type"].is_string());
    }

    let refused = running
        .grpc
        .query_usage(QueryUsageRequest {
            from: FROM,
            to: TO,
            granularity: "hour".into(),
            group_by: vec!["colour".into()],
            filter: None,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(error_code(&refused), "unknown_group_by");
    let refused = running
        .grpc
        .query_usage(QueryUsageRequest {
            from: TO,
            to: FROM,
            granularity: "hour".into(),
            ..QueryUsageRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error_code(&refused), "invalid_range");
    let missing = running
        .grpc
        .get_trace(GetTraceRequest { id: "nope".into() })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    assert_eq!(error_code(&missing), "trace_not_found");
    running.stop().await;
}

#[tokio::test]
async fn a_running_projector_folds_what_its_source_delivers_and_answers_for_it() {
    let mut running = Running::start(0).await;
    let log = MemoryLog::default();
    running
        .projector
        .start_loop(log.source(), &running.stop, &running.tracker);
    let fresh = events(250, 53);
    log.append(fresh[..100].iter().cloned());
    log.append_garbage();
    log.append(fresh[100..].iter().cloned());
    let ask = QueryUsageRequest {
        from: FROM,
        to: TO,
        granularity: "day".into(),
        ..QueryUsageRequest::default()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let reply = running
            .grpc
            .query_usage(ask.clone())
            .await
            .unwrap()
            .into_inner();
        let requests = reply
            .series
            .first()
            .and_then(|s| s.total.as_ref())
            .map_or(0, |t| t.requests);
        // The fold is visible before its ack is sent: wait for both.
        if requests == 250 && log.acked() == 251 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "folded {requests} of 250"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = running.projector.stats();
    assert_eq!(
        stats.undecodable.load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    // The bad message is parked with its position, reason and bytes.
    let (status, parked) = running.json("/usage/v1/parked").await;
    assert_eq!(status, 200, "{parked}");
    let hex: String = common::GARBAGE.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(parked["parked"].as_array().unwrap().len(), 1, "{parked}");
    assert_eq!(parked["parked"][0]["sequence"], 101);
    assert_eq!(parked["parked"][0]["reason"], "garbage");
    assert_eq!(parked["parked"][0]["size"], common::GARBAGE.len());
    assert_eq!(parked["parked"][0]["payload_hex"], hex);
    assert!(parked["next_after"].is_null());
    let (_, none_after) = running.json("/usage/v1/parked?after=101&limit=5").await;
    assert_eq!(none_after["parked"], serde_json::json!([]));
    let (status, refused) = running.json("/usage/v1/parked?limit=5000").await;
    assert_eq!(
        (status, &refused["error"]["code"]),
        (400, &"invalid_limit".into())
    );
    let (status, refused) = running.json("/usage/v1/parked?endpoint=chat").await;
    assert_eq!(
        (status, &refused["error"]["param"]),
        (400, &"endpoint".into())
    );
    let stats_router = floodgate_projector::http::stats_router(
        running.projector.stats().clone(),
        running.projection().clone(),
    );
    let response = stats_router
        .oneshot(
            http::Request::get("/usage/v1/stats")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let stats: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (&stats["undecodable"], &stats["parked"]),
        (&1.into(), &1.into())
    );
    assert_eq!(stats["folded"], 250);
    running.stop().await;
}

#[tokio::test]
async fn the_background_pruner_drops_traces_past_retention_and_keeps_aggregates() {
    // The oldest generated event is more than an hour old; keep traces for an hour, prune
    // every 10 ms.
    let running = Running::start_with(120, |settings| {
        settings.trace_retention = Duration::from_secs(3_600);
        settings.prune_interval = Duration::from_millis(10);
    })
    .await;
    let oldest = running
        .events
        .iter()
        .min_by_key(|e| e.time_unix_us)
        .unwrap();
    assert!(oldest.time_unix_us < (floodgate_projector::runner::now_us() as i64) - 7_200_000_000);
    let first = oldest.event_id.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while running.projection().trace(&first).unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "traces were not pruned"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, json) = running
        .json(&format!(
            "/usage/v1/usage?from={FROM}&to={TO}&granularity=day"
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(json["series"][0]["total"]["requests"], 120);
    running.stop().await;
}
