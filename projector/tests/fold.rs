//! The fold's accounting: exact totals, roll-ups, merged percentiles, and exactly-once
//! through lost acks, crashes before the commit, republished events, replicas and rebuilds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{BASE_S, MemoryLog, events, wait_until};
use floodgate_events::EventSource;
use floodgate_projector::dims::Filter;
use floodgate_projector::query::{UsageQuery, UsageReport, usage};
use floodgate_projector::runner::{self, LoopSettings, LoopStats, Step};
use floodgate_projector::{Projection, rebuild};
use floodgate_proto::v1::UsageEvent;
use tokio_util::sync::CancellationToken;

const SETTINGS: LoopSettings = LoopSettings {
    batch: 64,
    wait: Duration::from_millis(20),
    linger: Duration::ZERO,
};

fn report(projection: &Projection, granularity: &str, group_by: &[&str]) -> UsageReport {
    let group_by: Vec<String> = group_by.iter().map(|s| (*s).to_owned()).collect();
    let query = UsageQuery::new(
        BASE_S - 86_400,
        BASE_S + 5 * 86_400,
        granularity,
        &group_by,
        Filter::default(),
    )
    .unwrap();
    usage::query(projection, &query).unwrap()
}

#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
struct Totals {
    requests: u64,
    errors: u64,
    input: u64,
    output: u64,
    cost: u64,
    unknown_cost: u64,
}

fn expected(events: &[UsageEvent], by: impl Fn(&UsageEvent) -> String) -> BTreeMap<String, Totals> {
    let mut totals: BTreeMap<String, Totals> = BTreeMap::new();
    for e in events {
        let t = totals.entry(by(e)).or_default();
        t.requests += 1;
        t.errors += u64::from(e.status >= 400);
        let tokens = e.tokens.unwrap();
        t.input += tokens.input;
        t.output += tokens.output;
        match e.cost_micros {
            Some(c) => t.cost += c,
            None => t.unknown_cost += 1,
        }
    }
    totals
}

fn actual(report: &UsageReport, dimension: &str) -> BTreeMap<String, Totals> {
    report
        .series
        .iter()
        .map(|s| {
            let t = &s.total;
            (
                s.group.get(dimension).cloned().unwrap_or_default(),
                Totals {
                    requests: t.requests,
                    errors: t.errors,
                    input: t.tokens.input,
                    output: t.tokens.output,
                    cost: t.cost_micros,
                    unknown_cost: t.unknown_cost,
                },
            )
        })
        .collect()
}

fn overall(projection: &Projection) -> Totals {
    actual(&report(projection, "day", &[]), "")
        .remove("")
        .unwrap_or_default()
}

/// Folds everything the source has, acking as it goes.
async fn drain<E: EventSource>(source: &mut E, projection: &Projection, settings: LoopSettings) {
    let stats = LoopStats::default();
    while runner::step(source, projection, settings, &stats)
        .await
        .unwrap()
        != Step::Idle
    {}
}

#[tokio::test]
async fn folding_n_events_gives_exact_totals_per_key_and_overall() {
    let dir = tempfile::tempdir().unwrap();
    let projection = Projection::open(dir.path()).unwrap();
    let events = events(2_000, 7);
    let log = MemoryLog::default();
    log.append(events.clone());
    drain(&mut log.source(), &projection, SETTINGS).await;

    let by_key = report(&projection, "day", &["key"]);
    assert_eq!(
        actual(&by_key, "key"),
        expected(&events, |e| e.key_id.clone())
    );
    let by_endpoint = report(&projection, "hour", &["endpoint"]);
    assert_eq!(
        actual(&by_endpoint, "endpoint"),
        expected(&events, |e| e.endpoint.clone())
    );
    assert_eq!(
        overall(&projection),
        expected(&events, |_| String::new())[""]
    );
    assert_eq!(projection.position().unwrap(), 2_000);
    assert_eq!(log.acked(), 2_000);
}

#[tokio::test]
async fn hour_and_day_roll_ups_equal_the_sum_of_minutes() {
    let dir = tempfile::tempdir().unwrap();
    let projection = Projection::open(dir.path()).unwrap();
    let log = MemoryLog::default();
    log.append(events(1_500, 11));
    drain(&mut log.source(), &projection, SETTINGS).await;

    let all = [
        "endpoint", "provider", "model", "key", "team", "user", "status",
    ];
    let minutes = report(&projection, "minute", &all);
    let hours = report(&projection, "hour", &all);
    let days = report(&projection, "day", &all);
    assert_eq!(minutes.series.len(), hours.series.len());
    for ((m, h), d) in minutes.series.iter().zip(&hours.series).zip(&days.series) {
        assert_eq!(m.group, h.group);
        // Every hour point is the sum of the minute points inside it.
        let mut per_hour: BTreeMap<i64, (u64, u64, u64, u64)> = BTreeMap::new();
        for p in &m.points {
            let slot = per_hour.entry(p.start - p.start % 3_600).or_default();
            slot.0 += p.requests;
            slot.1 += p.cost_micros;
            slot.2 += p.tokens.input + p.tokens.output;
            slot.3 += p.latency_us.count;
        }
        let hour_points: BTreeMap<i64, (u64, u64, u64, u64)> = h
            .points
            .iter()
            .map(|p| {
                (
                    p.start,
                    (
                        p.requests,
                        p.cost_micros,
                        p.tokens.input + p.tokens.output,
                        p.latency_us.count,
                    ),
                )
            })
            .collect();
        assert_eq!(per_hour, hour_points);
        // And the whole range agrees at every granularity, percentiles included.
        let mut m_total = m.total.clone();
        let mut d_total = d.total.clone();
        m_total.start = 0;
        d_total.start = 0;
        assert_eq!(m_total, d_total);
    }
}

fn exact_percentile(sorted: &[u64], q: f64) -> u64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[tokio::test]
async fn percentiles_of_merged_histograms_match_a_direct_computation() {
    let dir = tempfile::tempdir().unwrap();
    let projection = Projection::open(dir.path()).unwrap();
    let events = events(5_000, 3);
    let log = MemoryLog::default();
    log.append(events.clone());
    drain(&mut log.source(), &projection, SETTINGS).await;

    let mut latencies: Vec<u64> = events.iter().map(|e| e.total_latency_us).collect();
    latencies.sort_unstable();
    let mut ttfts: Vec<u64> = events.iter().filter_map(|e| e.ttft_us).collect();
    ttfts.sort_unstable();
    // Merged across thousands of minute cells, every key and three days.
    let total = report(&projection, "minute", &[]).series[0].total.clone();
    for (raw, got) in [(&latencies, total.latency_us), (&ttfts, total.ttft_us)] {
        assert_eq!(got.count, raw.len() as u64);
        for (q, value) in [(0.5, got.p50), (0.9, got.p90), (0.99, got.p99)] {
            let want = exact_percentile(raw, q) as f64;
            let error = (value as f64 - want).abs() / want;
            assert!(error <= 0.01, "p{q}: {value} vs {want} ({error})");
        }
    }
}

#[tokio::test]
async fn a_lost_ack_after_the_commit_is_redelivered_and_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let events = events(300, 5);
    let log = MemoryLog::default();
    log.append(events.clone());
    {
        let projection = Projection::open(dir.path()).unwrap();
        log.lose_acks(true);
        drain(&mut log.source(), &projection, SETTINGS).await;
        assert_eq!(log.acked(), 0);
    } // the projector "crashes" with every fold committed and no ack recorded
    log.lose_acks(false);
    let projection = Projection::open(dir.path()).unwrap();
    let mut restarted = log.source();
    let redelivered = restarted.fetch(1_000, SETTINGS.wait).await.unwrap();
    assert_eq!(redelivered.len(), 300);
    let folded = projection.fold(&redelivered, runner::now_us()).unwrap();
    assert_eq!((folded.stale, folded.events.len()), (300, 0));
    assert_eq!(
        overall(&projection),
        expected(&events, |_| String::new())[""]
    );
}

#[tokio::test]
async fn a_crash_before_the_commit_redelivers_and_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    let events = events(200, 9);
    let log = MemoryLog::default();
    log.append(events.clone());
    let projection = Projection::open(dir.path()).unwrap();
    let mut source = log.source();
    drain_some(&mut source, &projection, 2).await;
    // Fetched but never committed: the process dies here.
    let lost = source.fetch(64, SETTINGS.wait).await.unwrap();
    assert!(!lost.is_empty());
    drop(source);
    drain(&mut log.source(), &projection, SETTINGS).await;
    assert_eq!(
        overall(&projection),
        expected(&events, |_| String::new())[""]
    );
}

async fn drain_some<E: EventSource>(source: &mut E, projection: &Projection, batches: usize) {
    let stats = LoopStats::default();
    for _ in 0..batches {
        runner::step(source, projection, SETTINGS, &stats)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn an_event_republished_at_a_new_sequence_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    let projection = Projection::open(dir.path()).unwrap();
    let events = events(100, 13);
    let log = MemoryLog::default();
    log.append(events.clone());
    drain(&mut log.source(), &projection, SETTINGS).await;
    // The publisher's ack was lost and its retry landed after the dedup window.
    log.append(events[40..60].iter().cloned());
    let stats = LoopStats::default();
    runner::step(&mut log.source(), &projection, SETTINGS, &stats)
        .await
        .unwrap();
    assert_eq!(stats.skipped.load(std::sync::atomic::Ordering::Relaxed), 20);
    assert_eq!(projection.position().unwrap(), 120);
    assert_eq!(
        overall(&projection),
        expected(&events, |_| String::new())[""]
    );
}

#[tokio::test]
async fn two_projectors_fed_the_same_events_hold_identical_totals() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let events = events(1_000, 17);
    let log = MemoryLog::default();
    log.append(events);
    let first = Projection::open(a.path()).unwrap();
    let second = Projection::open(b.path()).unwrap();
    drain(&mut log.source_from_start(), &first, SETTINGS).await;
    let odd = LoopSettings {
        batch: 7,
        ..SETTINGS
    };
    drain(&mut log.source_from_start(), &second, odd).await;
    let all = [
        "endpoint", "provider", "model", "key", "team", "user", "status",
    ];
    assert_eq!(
        report(&first, "minute", &all),
        report(&second, "minute", &all)
    );
    assert_eq!(report(&first, "day", &all), report(&second, "day", &all));
}

#[tokio::test]
async fn rebuild_reproduces_the_totals() {
    let (live, rebuilt) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let events = events(800, 19);
    let log = MemoryLog::default();
    log.append(events[..400].iter().cloned());
    log.append_garbage();
    log.append(events[400..].iter().cloned());
    log.append(events[..10].iter().cloned()); // a late republish
    let projection = Projection::open(live.path()).unwrap();
    drain(&mut log.source(), &projection, SETTINGS).await;

    let done = rebuild(log.source_from_start(), rebuilt.path(), SETTINGS)
        .await
        .unwrap();
    assert_eq!((done.folded, done.skipped, done.undecodable), (800, 10, 1));
    assert_eq!(done.position, 811);
    let again = Projection::open(rebuilt.path()).unwrap();
    assert_eq!(
        again.parked(0, 10).unwrap()[0].sequence,
        401,
        "parked again"
    );
    let all = ["endpoint", "key", "status"];
    assert_eq!(
        report(&projection, "hour", &all),
        report(&again, "hour", &all)
    );
    assert_eq!(overall(&again), expected(&events, |_| String::new())[""]);
    drop(again);
    assert!(matches!(
        rebuild(log.source_from_start(), rebuilt.path(), SETTINGS).await,
        Err(floodgate_projector::RebuildError::NotEmpty(_))
    ));
}

#[tokio::test]
async fn a_bad_message_is_parked_once_and_folding_goes_on_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let projection = Projection::open(dir.path()).unwrap();
    let events = events(300, 29);
    let log = MemoryLog::default();
    log.append(events[..100].iter().cloned());
    log.append_garbage();
    log.append(events[100..].iter().cloned());
    log.lose_acks(true);
    drain(&mut log.source(), &projection, SETTINGS).await;
    assert_eq!(log.acked(), 0, "every ack lost");
    // A restarted projector gets everything again: nothing is parked or counted twice.
    log.lose_acks(false);
    drain(&mut log.source(), &projection, SETTINGS).await;
    assert_eq!(log.acked(), 301);

    let parked = projection.parked(0, 10).unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].sequence, 101);
    assert_eq!(parked[0].reason, "garbage");
    assert_eq!(parked[0].payload, common::GARBAGE);
    assert_eq!(projection.parked_count().unwrap(), 1);
    assert!(projection.parked(101, 10).unwrap().is_empty());
    assert_eq!(projection.position().unwrap(), 301);
    assert_eq!(
        overall(&projection),
        expected(&events, |_| String::new())[""]
    );
}

#[tokio::test]
async fn the_loop_retries_an_unavailable_log_and_folds_what_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let projection = Projection::open(dir.path()).unwrap();
    let log = MemoryLog::default();
    log.fail_fetches(3);
    let stop = CancellationToken::new();
    let stats = Arc::new(LoopStats::default());
    let running = tokio::spawn(runner::run(
        log.source(),
        projection.clone(),
        SETTINGS,
        stats.clone(),
        stop.clone(),
    ));
    log.append(events(50, 23));
    wait_until(Duration::from_secs(10), || {
        let log = log.clone();
        async move { log.acked() == 50 }
    })
    .await;
    stop.cancel();
    running.await.unwrap().unwrap();
    assert_eq!(overall(&projection).requests, 50);
}

#[test]
fn pruning_forgets_old_traces_and_ids_only() {
    let dir = tempfile::tempdir().unwrap();
    let projection = Projection::open(dir.path()).unwrap();
    let events = events(50, 29);
    let log: Vec<_> = events
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, event)| floodgate_events::Delivered {
            sequence: i as u64 + 1,
            event,
        })
        .collect();
    let folded_at = (BASE_S as u64 + 10 * 86_400) * 1_000_000;
    projection.fold(&log, folded_at).unwrap();
    let day = Duration::from_secs(86_400);
    // Ten days on: traces are older than a 1-day retention, ids younger than a 30-day horizon.
    let pruned = projection.prune(folded_at, day, 30 * day).unwrap();
    assert_eq!((pruned.traces, pruned.seen), (50, 0));
    assert!(projection.trace(&events[0].event_id).unwrap().is_none());
    let pruned = projection
        .prune(folded_at + 31 * 86_400_000_000, day, 30 * day)
        .unwrap();
    assert_eq!(pruned.seen, 50);
    assert_eq!(overall(&projection).requests, 50, "aggregates are kept");
}
