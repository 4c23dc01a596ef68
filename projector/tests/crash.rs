//! A projector process killed with SIGKILL in the middle of folding: on restart its store
//! holds every committed batch exactly once (totals equal the events up to the stored
//! position, nothing after it), and folding on from the position ends with exact totals.
//!
//! The folding process is this test binary re-run on [`crash_child_folds_until_killed`]
//! with [`CHILD_DIR`] set; without it, that test does nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use floodgate_events::Delivered;
use floodgate_projector::Projection;
use floodgate_projector::dims::Filter;
use floodgate_projector::query::{UsageQuery, usage};
use floodgate_proto::v1::{TokenCounts, UsageEvent};

/// Set in the child: the store directory to fold into.
const CHILD_DIR: &str = "FLOODGATE_PROJECTOR_CRASH_CHILD_DIR";
const BATCH: u64 = 50;
const TOTAL: u64 = 100_000;
const BASE_S: i64 = common::BASE_S;

fn event(sequence: u64) -> Delivered {
    Delivered {
        sequence,
        event: UsageEvent {
            event_id: format!("ev-{sequence}"),
            time_unix_us: (BASE_S + (sequence % 7_200) as i64) * 1_000_000,
            endpoint: "chat".into(),
            key_id: format!("k{}", sequence % 5),
            status: 200,
            tokens: Some(TokenCounts {
                input: sequence % 100,
                ..TokenCounts::default()
            }),
            cost_micros: Some(sequence % 1_000),
            total_latency_us: 1_000 + sequence % 5_000,
            ..UsageEvent::default()
        },
    }
}

fn batch_after(position: u64) -> Vec<Delivered> {
    (position + 1..=(position + BATCH).min(TOTAL))
        .map(event)
        .collect()
}

/// (requests, cost) in the store.
fn totals(projection: &Projection) -> (u64, u64) {
    let query = UsageQuery::new(BASE_S, BASE_S + 86_400, "day", &[], Filter::default()).unwrap();
    let report = usage::query(projection, &query).unwrap();
    report
        .series
        .first()
        .map_or((0, 0), |s| (s.total.requests, s.total.cost_micros))
}

fn expected(position: u64) -> (u64, u64) {
    (position, (1..=position).map(|s| s % 1_000).sum())
}

/// The child: folds batch after batch, flushing every other one, printing each position.
#[tokio::test]
async fn crash_child_folds_until_killed() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let projection = Projection::open(dir.as_ref()).unwrap();
    let mut position = projection.position().unwrap();
    let mut round = 0u64;
    while position < TOTAL {
        let folded = projection.fold(&batch_after(position), round).unwrap();
        position = folded.position;
        round += 1;
        if round.is_multiple_of(2) {
            projection.flush().await.unwrap();
        }
        println!("position {position}");
    }
}

#[test]
fn a_projector_killed_mid_fold_keeps_each_committed_batch_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..3 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child_folds_until_killed", "--nocapture"])
            .env(CHILD_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("position ") && tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Let it fold a few dozen batches, then kill it wherever it is.
        for _ in 0..40 {
            rx.recv_timeout(Duration::from_secs(30))
                .expect("the child folds");
        }
        child.kill().unwrap();
        child.wait().unwrap();
        drop(rx);
        reader.join().unwrap();

        let projection = Projection::open(dir.path()).unwrap();
        let position = projection.position().unwrap();
        assert!(
            position > 0 && position.is_multiple_of(BATCH),
            "position {position}"
        );
        assert_eq!(totals(&projection), expected(position));
    }
    let projection = Projection::open(dir.path()).unwrap();
    let mut position = projection.position().unwrap();
    let target = TOTAL.min(position + 20 * BATCH);
    while position < target {
        position = projection.fold(&batch_after(position), 0).unwrap().position;
    }
    assert_eq!(totals(&projection), expected(position));
}
