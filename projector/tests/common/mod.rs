//! Test fixtures: an in-memory event log with an at-least-once [`MemorySource`] over it
//! (a new source redelivers everything after the last ack, as after a restart), a
//! deterministic event generator, and a deadline wait.

#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use floodgate_events::{Delivered, EventSource, SourceError};
use floodgate_proto::v1::{Payload, TokenCounts, UsageAttempt, UsageEvent};
use tokio::sync::Notify;

/// The bytes of every undecodable message of a [`MemoryLog`].
pub const GARBAGE: &[u8] = b"\x00\xffnot an event";

/// Base time of generated events: 2026-11-20T00:00:00Z.
pub const BASE_S: i64 = 1_795_132_800;

#[derive(Default)]
struct Log {
    events: Vec<Delivered>,
    acked: u64,
    undecodable: BTreeSet<u64>,
    unavailable: usize,
    lose_acks: bool,
}

/// The shared log.
#[derive(Clone, Default)]
pub struct MemoryLog {
    log: Arc<Mutex<Log>>,
    appended: Arc<Notify>,
}

impl MemoryLog {
    /// Appends events at the next sequences.
    pub fn append(&self, events: impl IntoIterator<Item = UsageEvent>) {
        let mut log = self.log.lock().unwrap();
        for event in events {
            let sequence = log.events.len() as u64 + 1;
            log.events.push(Delivered { sequence, event });
        }
        drop(log);
        self.appended.notify_waiters();
    }

    /// Marks the next appended message as undecodable garbage.
    pub fn append_garbage(&self) {
        let mut log = self.log.lock().unwrap();
        let sequence = log.events.len() as u64 + 1;
        log.undecodable.insert(sequence);
        log.events.push(Delivered {
            sequence,
            event: UsageEvent::default(),
        });
    }

    /// The next `n` fetches fail as unavailable.
    pub fn fail_fetches(&self, n: usize) {
        self.log.lock().unwrap().unavailable = n;
    }

    /// Acks are lost (not recorded) while set.
    pub fn lose_acks(&self, lose: bool) {
        self.log.lock().unwrap().lose_acks = lose;
    }

    /// The last acknowledged sequence.
    pub fn acked(&self) -> u64 {
        self.log.lock().unwrap().acked
    }

    /// A consumer resuming after the last ack (a restarted projector).
    pub fn source(&self) -> MemorySource {
        let cursor = self.acked();
        MemorySource {
            log: self.clone(),
            cursor,
        }
    }

    /// A fresh consumer from the log's start (a rebuild).
    pub fn source_from_start(&self) -> MemorySource {
        MemorySource {
            log: self.clone(),
            cursor: 0,
        }
    }
}

/// An at-least-once reader over a [`MemoryLog`].
pub struct MemorySource {
    log: MemoryLog,
    cursor: u64,
}

impl MemorySource {
    fn take(&mut self, max: usize) -> Result<Vec<Delivered>, SourceError> {
        let mut log = self.log.log.lock().unwrap();
        if log.unavailable > 0 {
            log.unavailable -= 1;
            return Err(SourceError::Unavailable("injected".into()));
        }
        let mut batch = Vec::new();
        for delivered in log.events.iter().filter(|d| d.sequence > self.cursor) {
            if log.undecodable.contains(&delivered.sequence) {
                if batch.is_empty() {
                    self.cursor = delivered.sequence;
                    return Err(SourceError::Undecodable {
                        sequence: delivered.sequence,
                        reason: "garbage".into(),
                        payload: GARBAGE.into(),
                    });
                }
                break;
            }
            if batch.len() == max {
                break;
            }
            batch.push(delivered.clone());
        }
        if let Some(last) = batch.last() {
            self.cursor = last.sequence;
        }
        Ok(batch)
    }
}

impl EventSource for MemorySource {
    async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivered>, SourceError> {
        let appended = self.log.appended.clone();
        let notified = appended.notified();
        let batch = self.take(max)?;
        if !batch.is_empty() {
            return Ok(batch);
        }
        let _ = tokio::time::timeout(wait, notified).await;
        self.take(max)
    }

    async fn ack(&mut self, sequence: u64) -> Result<(), SourceError> {
        let mut log = self.log.log.lock().unwrap();
        if log.lose_acks {
            return Err(SourceError::Unavailable("ack lost".into()));
        }
        log.acked = log.acked.max(sequence);
        Ok(())
    }
}

/// A small deterministic generator (xorshift).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// `n` varied events over about three days from [`BASE_S`].
pub fn events(n: usize, seed: u64) -> Vec<UsageEvent> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let status = *[200, 200, 200, 200, 429, 499, 502]
                .get(rng.below(7) as usize)
                .unwrap();
            let streamed = rng.below(2) == 0;
            let latency = 1_000 + rng.below(2_000_000);
            let upstream = latency * 9 / 10;
            UsageEvent {
                event_id: format!("ev-{seed}-{i:06}"),
                time_unix_us: (BASE_S + rng.below(3 * 86_400) as i64) * 1_000_000
                    + rng.below(1_000_000) as i64,
                edge_id: "edge-a".into(),
                request_id: format!("req-{seed}-{i:06}"),
                endpoint: rng.pick(&["chat", "embeddings", "completions"]).into(),
                provider: rng.pick(&["openai", "anthropic"]).into(),
                model: rng.pick(&["gpt-4o", "claude", "mini"]).into(),
                attempts: vec![UsageAttempt {
                    provider: "openai".into(),
                    model: "gpt-4o".into(),
                    status,
                    latency_us: upstream,
                    ..UsageAttempt::default()
                }],
                status,
                error_type: match status {
                    429 => "rate_limited".into(),
                    502 => "upstream_error".into(),
                    _ => String::new(),
                },
                key_id: rng.pick(&["k1", "k2", "k3", "k4"]).into(),
                team: rng.pick(&["red", "blue"]).into(),
                user: rng.pick(&["ann", "bob", "cy"]).into(),
                tokens: Some(TokenCounts {
                    input: rng.below(1_000),
                    output: rng.below(500),
                    cached: rng.below(100),
                    cache_write: rng.below(10),
                }),
                cost_micros: if rng.below(10) == 0 {
                    None
                } else {
                    Some(rng.below(50_000))
                },
                total_latency_us: latency,
                upstream_latency_us: upstream,
                overhead_us: latency - upstream,
                ttft_us: streamed.then_some(latency / 3),
                streamed,
                request_payload: (i % 10 == 0).then(|| Payload {
                    body: "{\"messages\":[]}".into(),
                    truncated: false,
                }),
                ..UsageEvent::default()
            }
        })
        .collect()
}

/// Waits until `check` holds, failing after `within`.
pub async fn wait_until<F, Fut>(within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
