//! Measures the projector's fold throughput: folds `N` synthetic events (default 50 000;
//! varied endpoints, keys, models and statuses over a day) into a fresh store in batches of
//! `BATCH` (default 512), flushing after each batch as the projector loop does, and prints
//! events per second.
//!
//! `cargo run --release -p floodgate-projector --example fold_throughput -- [N] [BATCH]`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use floodgate_events::Delivered;
use floodgate_projector::Projection;
use floodgate_projector::runner::now_us;
use floodgate_proto::v1::{TokenCounts, UsageEvent};

fn event(i: u64) -> UsageEvent {
    let mix = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20;
    UsageEvent {
        event_id: format!("ev-{i:010}"),
        time_unix_us: 1_795_132_800_000_000 + (i * 1_700_000) as i64 % 86_400_000_000,
        request_id: format!("req-{i:010}"),
        endpoint: ["chat", "embeddings", "completions"][(mix % 3) as usize].into(),
        provider: ["openai", "anthropic"][(mix % 2) as usize].into(),
        model: ["gpt-4o", "claude", "mini"][(mix / 3 % 3) as usize].into(),
        status: [200, 200, 200, 429, 502][(mix / 7 % 5) as usize],
        key_id: format!("k{}", mix / 11 % 20),
        team: format!("t{}", mix / 13 % 4),
        tokens: Some(TokenCounts {
            input: mix % 1_000,
            output: mix % 300,
            ..TokenCounts::default()
        }),
        cost_micros: Some(mix % 10_000),
        total_latency_us: 2_000 + mix % 1_000_000,
        upstream_latency_us: 1_500 + mix % 900_000,
        overhead_us: 500,
        ttft_us: Some(1_000 + mix % 100_000),
        ..UsageEvent::default()
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().map_or(50_000, |a| a.parse().expect("N"));
    let batch: u64 = args.next().map_or(512, |a| a.parse().expect("BATCH"));
    let dir = tempfile::tempdir().expect("temp dir");
    let projection = Projection::open(dir.path()).expect("store");
    let events: Vec<Delivered> = (1..=n)
        .map(|sequence| Delivered {
            sequence,
            event: event(sequence),
        })
        .collect();
    let started = Instant::now();
    for chunk in events.chunks(batch as usize) {
        projection.fold(chunk, now_us()).expect("fold");
        projection.flush().await.expect("flush");
    }
    let elapsed = started.elapsed();
    println!(
        "folded {n} events in batches of {batch} in {:.2}s: {:.0} events/s",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
}
