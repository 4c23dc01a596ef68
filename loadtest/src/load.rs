//! The load generator: sends the requests of a [`Scenario`] to one or more base URLs and
//! records latencies in HDR histograms.
//!
//! * **Open loop** (the default): request `i` is *intended* to be sent at
//!   `start + i / rate`. A pacer thread releases each request at that time into a queue; a
//!   fixed pool of workers (the connections) drains it, sends, and records the latency
//!   **from the intended time**, so when the target (or the pool) falls behind, the queueing
//!   shows in the numbers instead of silently slowing the load down: coordinated-omission
//!   correct, like wrk2. The naive service time (from the actual send) is recorded beside it
//!   so a report shows how much the two differ. The pacer sleeps on the OS timer, so the
//!   latency carries its wake-up slack (typically tens of microseconds on Linux).
//! * **Closed loop** (`concurrency`): C workers each send the next request as soon as the
//!   previous one finished; latency is the service time.
//!
//! Requests whose intended (or, closed loop, actual) send time falls in the warm-up are sent
//! but not recorded. Owns no server; it only talks HTTP to the URLs it is given.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use hdrhistogram::Histogram;
use tokio::sync::Mutex;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::check::ClientCounts;
use crate::report::Report;
use crate::scenario::Scenario;

/// How load is offered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Constant arrival rate (requests per second) over a pool of `connections`.
    Open {
        /// Requests per second.
        rate: f64,
        /// Most requests in flight at once (the connection pool).
        connections: usize,
    },
    /// Fixed number of workers, each sending back to back.
    Closed {
        /// Workers.
        concurrency: usize,
    },
}

/// One load run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Base URLs (e.g. `http://127.0.0.1:8080/v1`), used round-robin.
    pub urls: Vec<String>,
    /// Open or closed loop.
    pub mode: Mode,
    /// Measured duration (after the warm-up).
    pub duration: Duration,
    /// Leading period whose requests are not recorded.
    pub warmup: Duration,
    /// The mix of requests; streamed ones record TTFT.
    pub scenario: Arc<Scenario>,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl RunConfig {
    /// Checks the values that would make a run meaningless, naming the bad one.
    pub fn validate(self) -> anyhow::Result<RunConfig> {
        if self.urls.is_empty() {
            bail!("--url: at least one URL is needed");
        }
        match self.mode {
            Mode::Open { rate, connections } => {
                if !(rate.is_finite() && rate > 0.0) {
                    bail!("--rate must be a positive number, got {rate}");
                }
                if connections == 0 {
                    bail!("--connections must be at least 1");
                }
            }
            Mode::Closed { concurrency: 0 } => bail!("--concurrency must be at least 1"),
            Mode::Closed { .. } => {}
        }
        if self.duration.is_zero() {
            bail!("--duration must be above zero");
        }
        Ok(self)
    }
}

/// What one worker recorded; merged at the end, so workers share no locks.
#[derive(Debug)]
pub(crate) struct Tally {
    pub(crate) latency: Histogram<u64>,
    pub(crate) service: Histogram<u64>,
    pub(crate) ttft: Histogram<u64>,
    pub(crate) ok: u64,
    pub(crate) status_errors: BTreeMap<u16, u64>,
    pub(crate) transport_errors: u64,
    pub(crate) last_done: Option<Instant>,
    /// Every outcome, warm-up included (for the invariant checks).
    pub(crate) sent: ClientCounts,
    /// Non-2xx answers by their error `code` (or `type`), warm-up included.
    pub(crate) error_codes: BTreeMap<String, u64>,
}

/// Histograms hold microseconds from 1 µs to one hour at 3 significant digits.
pub(crate) fn histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

impl Tally {
    pub(crate) fn new() -> Tally {
        Tally {
            latency: histogram(),
            service: histogram(),
            ttft: histogram(),
            ok: 0,
            status_errors: BTreeMap::new(),
            transport_errors: 0,
            last_done: None,
            sent: ClientCounts::default(),
            error_codes: BTreeMap::new(),
        }
    }

    pub(crate) fn merge(&mut self, other: Tally) {
        // Same bounds everywhere, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.service.add(&other.service);
        let _ = self.ttft.add(&other.ttft);
        self.ok += other.ok;
        for (status, n) in other.status_errors {
            *self.status_errors.entry(status).or_default() += n;
        }
        self.transport_errors += other.transport_errors;
        self.last_done = self.last_done.max(other.last_done);
        self.sent.ok += other.sent.ok;
        self.sent.upstream_errors += other.sent.upstream_errors;
        self.sent.refused += other.sent.refused;
        self.sent.transport_errors += other.sent.transport_errors;
        for (code, n) in other.error_codes {
            *self.error_codes.entry(code).or_default() += n;
        }
    }

    /// Counts an outcome, measured or not.
    fn count(&mut self, outcome: &Outcome) {
        if let Some(code) = &outcome.code {
            *self.error_codes.entry(code.clone()).or_default() += 1;
        }
        match outcome.status {
            Ok(200..=299) => self.sent.ok += 1,
            Ok(500..) => self.sent.upstream_errors += 1,
            Ok(_) => self.sent.refused += 1,
            Err(()) => self.sent.transport_errors += 1,
        }
    }
}

/// The most of an error body read for its code.
const ERROR_BODY_CAP: usize = 4096;

/// The error code of a non-2xx body: `error.code`, else `error.type` (OpenAI and Anthropic
/// shapes), else `unknown`.
pub(crate) fn error_code(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Body {
        error: Error,
    }
    #[derive(serde::Deserialize)]
    struct Error {
        #[serde(default)]
        code: Option<serde_json::Value>,
        #[serde(default, rename = "type")]
        kind: Option<String>,
    }
    let parsed: Option<Body> = serde_json::from_slice(body).ok();
    let error = parsed.map(|b| b.error);
    let code = error.as_ref().and_then(|e| match &e.code {
        Some(serde_json::Value::String(code)) => Some(code.clone()),
        _ => None,
    });
    code.or_else(|| error.and_then(|e| e.kind))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Shared, read-only context of a run's workers.
struct Shared {
    client: reqwest::Client,
    /// Full URLs by base URL, then by request kind.
    endpoints: Vec<Vec<String>>,
    scenario: Arc<Scenario>,
    start: Instant,
    measure_from: Instant,
    end: Instant,
    next: AtomicU64,
}

/// The outcome of one request.
struct Outcome {
    status: Result<u16, ()>,
    /// A non-2xx answer's error code.
    code: Option<String>,
    streamed: bool,
    ttft: Option<Instant>,
    done: Instant,
}

impl Shared {
    async fn send(&self, index: u64) -> Outcome {
        let (kind_index, streamed) = self.scenario.pick(index);
        let kind = &self.scenario.kinds()[kind_index];
        let url = &self.endpoints[(index % self.endpoints.len() as u64) as usize][kind_index];
        let body = if streamed {
            &kind.streaming
        } else {
            &kind.plain
        };
        let mut request = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(key) = &kind.key {
            request = request.bearer_auth(key);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(_) => {
                return Outcome {
                    status: Err(()),
                    code: None,
                    streamed,
                    ttft: None,
                    done: Instant::now(),
                };
            }
        };
        let status = response.status().as_u16();
        let failed = !response.status().is_success();
        let mut ttft = None;
        let mut body = response.bytes_stream();
        let mut broken = false;
        // A refusal's body, kept (up to a few KiB) to read its error code.
        let mut error_body = Vec::new();
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(bytes) if !bytes.is_empty() => {
                    ttft.get_or_insert_with(Instant::now);
                    if failed && error_body.len() < ERROR_BODY_CAP {
                        error_body.extend_from_slice(&bytes);
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    broken = true;
                    break;
                }
            }
        }
        Outcome {
            status: if broken { Err(()) } else { Ok(status) },
            code: failed.then(|| error_code(&error_body)),
            streamed,
            ttft,
            done: Instant::now(),
        }
    }

    fn record(&self, tally: &mut Tally, intended: Instant, sent: Instant, outcome: Outcome) {
        match outcome.status {
            Ok(200..=299) => {
                tally.ok += 1;
                let _ = tally.latency.record(micros(outcome.done - intended));
                let _ = tally.service.record(micros(outcome.done - sent));
                if outcome.streamed
                    && let Some(first) = outcome.ttft
                {
                    let _ = tally.ttft.record(micros(first - intended));
                }
            }
            Ok(status) => *tally.status_errors.entry(status).or_default() += 1,
            Err(()) => tally.transport_errors += 1,
        }
        tally.last_done = tally.last_done.max(Some(outcome.done));
    }

    /// The intended send time of request `index` at `rate`.
    fn intended(&self, index: u64, rate: f64) -> Instant {
        self.start + Duration::from_secs_f64(index as f64 / rate)
    }

    /// Takes the next due request from the pacer, sends it, records it from its intended
    /// time; stops when the pacer has finished and the queue is empty.
    async fn open_worker(
        self: Arc<Self>,
        rate: f64,
        due: Arc<Mutex<UnboundedReceiver<u64>>>,
    ) -> Tally {
        let mut tally = Tally::new();
        loop {
            let next = due.lock().await.recv().await;
            let Some(index) = next else { break };
            let intended = self.intended(index, rate);
            let sent = Instant::now();
            let outcome = self.send(index).await;
            tally.count(&outcome);
            if intended >= self.measure_from {
                self.record(&mut tally, intended, sent, outcome);
            }
        }
        tally
    }

    async fn closed_worker(self: Arc<Self>) -> Tally {
        let mut tally = Tally::new();
        tokio::time::sleep_until(self.start).await;
        loop {
            let sent = Instant::now();
            if sent >= self.end {
                break;
            }
            let index = self.next.fetch_add(1, Ordering::Relaxed);
            let outcome = self.send(index).await;
            tally.count(&outcome);
            if sent >= self.measure_from {
                self.record(&mut tally, sent, sent, outcome);
            }
        }
        tally
    }
}

/// The open loop's clock: a dedicated thread (the OS timer is precise to tens of
/// microseconds, tokio's to a millisecond) that releases request `i` at its intended time
/// into a queue the workers drain. If every worker is busy, due requests wait in the queue
/// and that wait counts in their latency.
fn pace(shared: &Shared, rate: f64, due: UnboundedSender<u64>) {
    for index in 0u64.. {
        let intended = shared.intended(index, rate);
        if intended >= shared.end {
            break;
        }
        let wait = intended.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
        if due.send(index).is_err() {
            break;
        }
    }
}

/// Runs the load and returns its report. Needs the rustls provider installed
/// ([`crate::install_crypto_provider`]).
pub async fn run(config: RunConfig) -> anyhow::Result<Report> {
    let config = config.validate()?;
    let (total, elapsed) = execute(&config).await?;
    Ok(Report::new(&config, &total, elapsed))
}

/// Runs a validated configuration and returns what its workers recorded, with the measured
/// window's length (to the last completion).
pub(crate) async fn execute(config: &RunConfig) -> anyhow::Result<(Tally, Duration)> {
    let workers = match config.mode {
        Mode::Open { connections, .. } => connections,
        Mode::Closed { concurrency } => concurrency,
    };
    let client = reqwest::Client::builder()
        .timeout(config.timeout)
        .pool_max_idle_per_host(workers)
        .build()
        .context("building the HTTP client")?;
    let endpoints = config
        .urls
        .iter()
        .map(|u| {
            let base = u.trim_end_matches('/');
            config
                .scenario
                .kinds()
                .iter()
                .map(|k| format!("{base}{}", k.api.path()))
                .collect()
        })
        .collect();
    // A short lead so every worker is waiting before the first slot.
    let start = Instant::now() + Duration::from_millis(10);
    let shared = Arc::new(Shared {
        client,
        endpoints,
        scenario: Arc::clone(&config.scenario),
        start,
        measure_from: start + config.warmup,
        end: start + config.warmup + config.duration,
        next: AtomicU64::new(0),
    });
    let mut set = JoinSet::new();
    let mut pacer = None;
    match config.mode {
        Mode::Open { rate, .. } => {
            let (send, receive) = tokio::sync::mpsc::unbounded_channel();
            let receive = Arc::new(Mutex::new(receive));
            for _ in 0..workers {
                set.spawn(Arc::clone(&shared).open_worker(rate, Arc::clone(&receive)));
            }
            let shared = Arc::clone(&shared);
            pacer = Some(
                std::thread::Builder::new()
                    .name("loadtest-pacer".to_owned())
                    .spawn(move || pace(&shared, rate, send))
                    .context("starting the pacer thread")?,
            );
        }
        Mode::Closed { .. } => {
            for _ in 0..workers {
                set.spawn(Arc::clone(&shared).closed_worker());
            }
        }
    }
    let mut total = Tally::new();
    while let Some(tally) = set.join_next().await {
        total.merge(tally.context("a load worker panicked")?);
    }
    if let Some(pacer) = pacer
        && pacer.join().is_err()
    {
        bail!("the pacer thread panicked");
    }
    let elapsed = total.last_done.map_or(config.duration, |t| {
        t.saturating_duration_since(shared.measure_from)
    });
    Ok((total, elapsed))
}

#[cfg(test)]
mod tests {
    use super::error_code;

    #[test]
    fn error_codes_are_read_from_openai_and_anthropic_bodies() {
        let budget = br#"{"error":{"message":"m","type":"insufficient_quota","param":null,"code":"budget_exceeded"}}"#;
        assert_eq!(error_code(budget), "budget_exceeded");
        let no_code = br#"{"error":{"message":"m","type":"server_error","code":null}}"#;
        assert_eq!(error_code(no_code), "server_error");
        let anthropic = br#"{"type":"error","error":{"type":"rate_limit_error","message":"m"}}"#;
        assert_eq!(error_code(anthropic), "rate_limit_error");
        assert_eq!(error_code(b"<html>bad gateway</html>"), "unknown");
    }
}
