//! Crash test: a writer process is killed with SIGKILL while it writes, and nothing that
//! openraft was told was durable may be missing or damaged when the store is reopened.
//!
//! The test re-runs its own binary as the writer (`crash_writer_child`, ignored in normal
//! runs and selected by an environment variable). The writer runs a one-member Raft on the
//! store with several concurrent clients and prints `DURABLE <index> <n>` after each
//! `client_write` returns: on a one-member cluster that means openraft's `LogFlushed`
//! callback for the entry has fired (the leader commits only flushed entries) and the entry
//! was applied. Snapshots (and log purges) happen every few entries, so kills also land
//! while a snapshot is written. All iterations share one data directory, so each writer
//! starts from a store that has already been through every earlier crash.
//!
//! After each kill the parent reopens the store and checks, for every reported entry, that
//! the log holds it intact at its index or that the snapshot covers it; that the log is
//! contiguous; that the snapshot agrees with the log entries it still overlaps; and that
//! openraft's own start-up recovery (`StorageHelper::get_initial_state`) yields exactly the
//! state obtained by replaying the log onto the snapshot. At the end a real Raft member is
//! started on the store and must serve every reported write.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::io::BufReader;
use std::path::Path;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;
use std::time::Instant;

use common::Kv;
use common::KvCommand;
use floodgate_store::raft::Application;
use openraft::EntryPayload;
use openraft::RaftLogReader;
use openraft::storage::RaftLogStorage;
use openraft::storage::RaftStateMachine;
use openraft::storage::StorageHelper;

/// Set in the writer process: the data directory.
const DIR_ENV: &str = "FLOODGATE_STORE_CRASH_DIR";
/// Set in the writer process: the first command number it uses (each run gets its own range).
const START_ENV: &str = "FLOODGATE_STORE_CRASH_START";
/// A snapshot (and a purge) every this many entries.
const SNAPSHOT_EVERY: u64 = 40;
/// Writer processes started and killed.
const ITERATIONS: u64 = 20;
/// Concurrent clients in each writer.
const CLIENTS: u64 = 4;
/// How long any one wait may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(30);

fn key(n: u64) -> String {
    format!("k{n:010}")
}

fn value(n: u64) -> String {
    format!("value of command {n}")
}

/// The writer process. Does nothing unless started by `kill_9_loses_no_durable_entry`.
#[test]
#[ignore = "the writer process of kill_9_loses_no_durable_entry, which starts it"]
fn crash_writer_child() {
    let (Ok(dir), Ok(start)) = (std::env::var(DIR_ENV), std::env::var(START_ENV)) else {
        return;
    };
    let start: u64 = start.parse().expect("a numeric start");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let (raft, _reader) = common::start_single(Path::new(&dir), SNAPSHOT_EVERY).await;
        let next = Arc::new(AtomicU64::new(start));
        // The writer stops by itself if nobody kills it.
        let give_up = Instant::now() + DEADLINE;
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let raft = raft.clone();
                let next = Arc::clone(&next);
                tokio::spawn(async move {
                    while Instant::now() < give_up {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let command = KvCommand::Set {
                            key: key(n),
                            value: value(n),
                        };
                        let written = raft.client_write(command).await.expect("write");
                        // `println!` writes the whole line under stdout's lock, and stdout
                        // is line-buffered: the line is in the pipe when this returns.
                        println!("DURABLE {} {n}", written.log_id.index);
                    }
                })
            })
            .collect();
        for client in clients {
            client.await.expect("client task");
        }
    });
}

/// What a writer reported: command number → log index.
type Reported = BTreeMap<u64, u64>;

/// Kills the child with SIGKILL when dropped, so a failing test leaves no writer behind.
struct Writer(Child);

impl Writer {
    fn kill_9(&mut self) {
        let status = Command::new("kill")
            .args(["-9", &self.0.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -9 failed: {status}");
        let exit = self.0.wait().expect("reap the writer");
        assert!(!exit.success(), "the writer exited by itself: {exit}");
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs one writer on `dir` until it has reported `kill_after` durable writes, kills it with
/// SIGKILL, and returns everything it reported (including lines it printed before dying).
fn run_and_kill(dir: &Path, start: u64, kill_after: usize) -> Reported {
    let child = Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "--exact",
            "crash_writer_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_ENV, dir)
        .env(START_ENV, start.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the writer");
    let mut writer = Writer(child);
    let stdout = writer.0.stdout.take().expect("the writer's stdout");
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });

    let mut reported = Reported::new();
    let mut record = |line: String| {
        if let Some(rest) = line.strip_prefix("DURABLE ") {
            let (index, n) = rest.split_once(' ').expect("DURABLE <index> <n>");
            let previous = reported.insert(n.parse().unwrap(), index.parse().unwrap());
            assert!(previous.is_none(), "command {n} reported twice");
        }
    };
    let deadline = Instant::now() + DEADLINE;
    let mut seen = 0;
    while seen < kill_after {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("the writer reported {seen} of {kill_after} writes: {e}"));
        if line.starts_with("DURABLE ") {
            seen += 1;
        }
        record(line);
    }
    writer.kill_9();
    // Lines printed before the kill are still in the pipe; the reader thread ends at EOF.
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => record(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("the writer's stdout did not close"),
        }
    }
    reported
}

/// What one check of a reopened store saw.
struct Checked {
    last_log_index: u64,
    purged: Option<u64>,
    snapshot: Option<u64>,
    applied: Option<u64>,
}

/// Reopens the store and checks every reported write against it (see the module docs).
async fn check_store(dir: &Path, reported: &Reported) -> Checked {
    let (mut log, mut sm) = common::open(dir);
    let snapshot_app = sm.reader().read(Kv::clone).unwrap();
    let snapshot = sm.get_current_snapshot().await.unwrap();
    let snapshot_index = snapshot
        .as_ref()
        .and_then(|s| s.meta.last_log_id.as_ref().map(|id| id.index));
    let state = log.get_log_state().await.unwrap();
    let purged = state.last_purged_log_id.as_ref().map(|id| id.index);
    let last_log_index = state.last_log_id.as_ref().map_or(0, |id| id.index);
    let entries = log.try_get_log_entries(..).await.unwrap();

    // The log is contiguous from the purge point to its end, every entry intact (decoding
    // already checked each entry against its key).
    let first = purged.map_or(0, |p| p + 1);
    let indexes: Vec<u64> = entries.iter().map(|e| e.log_id.index).collect();
    let expected: Vec<u64> = (first..=last_log_index).collect();
    assert_eq!(indexes, expected, "the log has a hole");
    assert!(
        purged <= snapshot_index,
        "entries up to {purged:?} were purged but the snapshot covers only {snapshot_index:?}"
    );
    let by_index: BTreeMap<u64, _> = entries.iter().map(|e| (e.log_id.index, e)).collect();

    for (&n, &index) in reported {
        if let Some(entry) = by_index.get(&index) {
            let expected = KvCommand::Set {
                key: key(n),
                value: value(n),
            };
            match &entry.payload {
                EntryPayload::Normal(command) => assert_eq!(
                    command, &expected,
                    "entry {index} (reported durable for command {n}) holds another command"
                ),
                other => panic!("entry {index} (reported for command {n}) is {other:?}"),
            }
        } else {
            assert!(
                snapshot_index.is_some_and(|s| s >= index),
                "command {n}, reported durable at index {index}, is lost: the log holds \
                 {first}..={last_log_index} and the snapshot ends at {snapshot_index:?}"
            );
            assert_eq!(
                snapshot_app.entries.get(&key(n)),
                Some(&value(n)),
                "command {n} (index {index}) is covered by the snapshot but not in it"
            );
        }
    }

    // The snapshot agrees with the log entries it still overlaps.
    for entry in entries
        .iter()
        .filter(|e| Some(e.log_id.index) <= snapshot_index)
    {
        if let EntryPayload::Normal(KvCommand::Set { key, value }) = &entry.payload {
            assert_eq!(
                snapshot_app.entries.get(key),
                Some(value),
                "snapshot misses {key}"
            );
        }
    }

    // openraft's start-up recovery re-applies the committed entries after the snapshot; the
    // result must be the snapshot plus exactly those entries.
    let initial = StorageHelper::new(&mut log, &mut sm)
        .get_initial_state()
        .await
        .unwrap();
    let applied = sm.applied_state().await.unwrap().0.map(|id| id.index);
    assert_eq!(applied, initial.committed.as_ref().map(|id| id.index));
    let mut replayed = snapshot_app;
    for entry in &entries {
        let index = Some(entry.log_id.index);
        if index > snapshot_index
            && index <= applied
            && let EntryPayload::Normal(command) = &entry.payload
        {
            replayed.apply(entry.log_id.index, command.clone());
        }
    }
    assert_eq!(
        sm.reader().read(Kv::clone).unwrap(),
        replayed,
        "the recovered state machine is not the snapshot plus the committed log"
    );
    Checked {
        last_log_index,
        purged,
        snapshot: snapshot_index,
        applied,
    }
}

#[test]
fn kill_9_loses_no_durable_entry() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let mut all = Reported::new();
    let mut snapshots_seen = 0;
    let mut purges_seen = 0;
    for iteration in 0..ITERATIONS {
        // Vary the kill point; each run numbers its commands from its own range.
        let kill_after = 10 + (iteration as usize * 37) % 90;
        let reported = run_and_kill(dir.path(), iteration * 1_000_000, kill_after);
        assert!(reported.len() >= kill_after);
        all.extend(reported);
        let checked = runtime.block_on(check_store(dir.path(), &all));
        snapshots_seen += usize::from(checked.snapshot.is_some());
        purges_seen += usize::from(checked.purged.is_some());
        println!(
            "iteration {iteration}: {} durable writes so far, log ..={}, purged {:?}, \
             snapshot {:?}, applied after recovery {:?}",
            all.len(),
            checked.last_log_index,
            checked.purged,
            checked.snapshot,
            checked.applied,
        );
    }
    assert!(
        snapshots_seen > 0 && purges_seen > 0,
        "the runs never snapshotted or purged"
    );

    // Finally a real member on the crashed store: it must serve every reported write.
    runtime.block_on(async {
        let (raft, reader) = common::start_single(dir.path(), SNAPSHOT_EVERY).await;
        let last = all.values().copied().max().unwrap();
        raft.wait(Some(DEADLINE))
            .applied_index_at_least(Some(last), "every reported write applied")
            .await
            .unwrap();
        let state = reader.read(|kv| kv.entries.clone()).unwrap();
        for n in all.keys() {
            assert_eq!(state.get(&key(*n)), Some(&value(*n)), "command {n} lost");
        }
        raft.shutdown().await.unwrap();
    });
    println!(
        "{ITERATIONS} kill -9 runs, {} writes reported durable, none lost, {:.1} s",
        all.len(),
        started.elapsed().as_secs_f64()
    );
}
