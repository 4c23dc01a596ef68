//! The event pipeline against a real `nats-server` (started per test on a free loopback
//! port; see `floodgate_events::testing`) and the local sled log: spool, publisher, stream
//! setup, deduplication, and the same source tests over both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::future::Future;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use floodgate_events::publish::EventLog;
use floodgate_events::spool::{FlushPolicy, Spool, Spooled};
use floodgate_events::stream::{self, STREAM, StreamSettings};
use floodgate_events::testing::NatsServer;
use floodgate_events::{
    EventSource, JetStreamLog, JetStreamSource, LocalLog, Publisher, SourceError, envelope,
};
use floodgate_proto::v1::UsageEvent;
use tokio_util::sync::CancellationToken;

/// How long any wait in a test may take before it fails.
const DEADLINE: Duration = Duration::from_secs(30);

fn event(n: u64) -> UsageEvent {
    UsageEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        request_id: format!("req-{n}"),
        status: 200,
        cost_micros: Some(n),
        ..UsageEvent::default()
    }
}

fn spooled(key: u64, event: &UsageEvent) -> Spooled {
    Spooled {
        key,
        event_id: event.event_id.clone(),
        payload: envelope::encode(event),
    }
}

/// Polls `check` until it returns `Some`, failing after [`DEADLINE`].
async fn wait_until<T, F: Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Starts `spool`'s writer: cancel the token to stop it, then await the handle.
fn start_writer(spool: &Spool) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = CancellationToken::new();
    (stop.clone(), tokio::spawn(spool.clone().run_writer(stop)))
}

/// Waits, within [`DEADLINE`], until every event appended to `spool` so far is durable.
async fn all_durable(spool: &Spool) {
    tokio::time::timeout(DEADLINE, spool.durable())
        .await
        .expect("durable in time");
}

async fn server() -> (NatsServer, jetstream::Context) {
    let server = NatsServer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let client = stream::connect(&[server.url()], Duration::from_secs(5))
        .await
        .unwrap();
    (server, jetstream::new(client))
}

async fn jetstream_log(server: &NatsServer) -> JetStreamLog {
    let client = stream::connect_lazily(&[server.url()]).await.unwrap();
    JetStreamLog::new(
        client,
        "0",
        StreamSettings::default(),
        Duration::from_secs(1),
    )
}

async fn stream_messages(js: &jetstream::Context) -> u64 {
    js.get_stream(STREAM)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages
}

/// Every event in the stream, decoded, in order.
async fn read_all(js: &jetstream::Context) -> Vec<UsageEvent> {
    let mut source = JetStreamSource::fresh(js, "reader", "*").await.unwrap();
    let total = stream_messages(js).await as usize;
    let mut out = Vec::new();
    while out.len() < total {
        let batch = source.fetch(1000, Duration::from_secs(2)).await.unwrap();
        assert!(
            !batch.is_empty(),
            "the stream ran dry at {} of {total}",
            out.len()
        );
        out.extend(batch.into_iter().map(|d| d.event));
    }
    out
}

#[tokio::test]
async fn the_spool_group_commits_in_order_survives_reopening_and_reports_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<UsageEvent> = (0..50).map(event).collect();
    {
        let spool = once_unlocked(|| Spool::open(dir.path(), FlushPolicy::Always, 40));
        let (stop, writer) = start_writer(&spool);
        for event in &events {
            spool.append(event);
        }
        all_durable(&spool).await;
        assert!(spool.is_full(), "50 events over a cap of 40");
        let stats = spool.stats();
        assert_eq!((stats.depth, stats.cap), (50, 40));
        assert!(stats.oldest_age.is_some());
        let read = spool.peek(100).unwrap();
        let ids: Vec<&str> = read.iter().map(|s| s.event_id.as_str()).collect();
        let want: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids, want, "drained in append order");
        assert_eq!(envelope::decode(&read[7].payload).unwrap(), events[7]);
        spool.ack(read[1].key).unwrap();
        assert!(spool.stats().oldest_age.is_some());
        stop.cancel();
        writer.await.unwrap();
    }
    let spool = once_unlocked(|| Spool::open(dir.path(), FlushPolicy::Always, 40));
    assert_eq!(spool.stats().depth, 48);
    assert!(spool.is_full());
    let read = spool.peek(100).unwrap();
    assert_eq!(read.len(), 48);
    assert_eq!(read[0].event_id, events[2].event_id);
    // Keys continue after the ones on disk.
    let (stop, writer) = start_writer(&spool);
    let late = event(99);
    spool.append(&late);
    all_durable(&spool).await;
    let read_again = spool.peek(100).unwrap();
    assert_eq!(read_again.len(), 49);
    assert_eq!(read_again[48].event_id, late.event_id);
    assert!(read_again[48].key > read[47].key);
    stop.cancel();
    writer.await.unwrap();
}

/// Under `always`, `durable()` must not resolve before the caller's own event is written
/// and flushed, however many other requests append at the same time: many tasks on several
/// threads each append, wait, and then look for their event in the spool, and after a
/// reopen every one of them is there, in keys without gaps.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn durable_never_resolves_before_the_callers_own_event_is_written() {
    const TASKS: u64 = 16;
    const EACH: u64 = 40;
    let dir = tempfile::tempdir().unwrap();
    let mut ids = HashSet::new();
    {
        let spool = Spool::open(dir.path(), FlushPolicy::Always, 1_000_000).unwrap();
        let (stop, writer) = start_writer(&spool);
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..TASKS {
            let spool = spool.clone();
            tasks.spawn(async move {
                let mut mine = Vec::new();
                for i in 0..EACH {
                    let e = event(t * EACH + i);
                    spool.append(&e);
                    all_durable(&spool).await;
                    // Readable at once: written (and flushed) before `durable` resolved.
                    let written: HashSet<String> = spool
                        .peek(usize::MAX)
                        .unwrap()
                        .into_iter()
                        .map(|s| s.event_id)
                        .collect();
                    assert!(
                        written.contains(&e.event_id),
                        "durable() resolved before event {} of task {t} was written",
                        i
                    );
                    mine.push(e.event_id);
                }
                mine
            });
        }
        while let Some(mine) = tasks.join_next().await {
            ids.extend(mine.unwrap());
        }
        stop.cancel();
        writer.await.unwrap();
    }
    let spool = once_unlocked(|| Spool::open(dir.path(), FlushPolicy::Always, 1_000_000));
    let read = spool.peek(usize::MAX).unwrap();
    let keys: Vec<u64> = read.iter().map(|s| s.key).collect();
    assert_eq!(keys, (1..=TASKS * EACH).collect::<Vec<_>>(), "gapless keys");
    let stored: HashSet<String> = read.into_iter().map(|s| s.event_id).collect();
    assert_eq!(stored, ids);
}

/// The one segment file in a spool directory.
fn only_segment(dir: &std::path::Path) -> std::path::PathBuf {
    let segments: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    assert_eq!(segments.len(), 1, "{segments:?}");
    segments[0].clone()
}

/// Where each record of a segment starts (a record is a 16-byte header, its body length
/// first, then the body).
fn record_starts(bytes: &[u8]) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut at = 0;
    while at + 16 <= bytes.len() {
        starts.push(at);
        at += 16 + u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    }
    starts
}

/// A flipped byte in one record and a torn last record: the records around them are read
/// in order, their bytes are parked (once), the depth lets go of the lost keys as the
/// publisher passes them, and the spool goes on past them into a new segment.
#[tokio::test]
async fn damaged_spool_bytes_are_parked_and_do_not_block_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<UsageEvent> = (0..4).map(event).collect();
    {
        let spool = Spool::open(dir.path(), FlushPolicy::Always, 100).unwrap();
        let (stop, writer) = start_writer(&spool);
        for event in &events {
            spool.append(event);
        }
        all_durable(&spool).await;
        stop.cancel();
        writer.await.unwrap();
    }
    let segment = only_segment(dir.path());
    let mut bytes = std::fs::read(&segment).unwrap();
    let starts = record_starts(&bytes);
    assert_eq!(starts.len(), 4);
    // A flipped byte in the second event's body, and the fourth cut short.
    bytes[starts[1] + 30] ^= 0xff;
    bytes.truncate(starts[3] + 20);
    std::fs::write(&segment, &bytes).unwrap();

    let spool = Spool::open(dir.path(), FlushPolicy::Always, 100).unwrap();
    assert_eq!(
        spool.stats().depth,
        3,
        "keys 1 to 3; the torn fourth never was"
    );
    let read = spool.peek(10).unwrap();
    let ids: Vec<&str> = read.iter().map(|s| s.event_id.as_str()).collect();
    assert_eq!(
        ids,
        [events[0].event_id.as_str(), events[2].event_id.as_str()]
    );
    let parked = || {
        std::fs::read_dir(dir.path().join("parked"))
            .unwrap()
            .count()
    };
    assert_eq!(parked(), 2, "the damaged record and the torn tail");
    spool.ack(read[1].key).unwrap();
    assert_eq!(
        spool.stats().depth,
        0,
        "the lost key went with the acknowledgement"
    );

    let (stop, writer) = start_writer(&spool);
    let late = event(9);
    spool.append(&late);
    all_durable(&spool).await;
    let read = spool.peek(10).unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(
        (read[0].key, read[0].event_id.as_str()),
        (4, late.event_id.as_str())
    );
    assert_eq!(parked(), 2, "parked once");
    assert!(!segment.exists(), "the damaged segment is gone once passed");
    spool.ack(4).unwrap();
    assert_eq!(
        spool.stats(),
        floodgate_events::spool::SpoolStats {
            depth: 0,
            oldest_age: None,
            cap: 100
        }
    );
    stop.cancel();
    writer.await.unwrap();
}

/// A damaged length field that points past the end of the segment hides nothing: the
/// records after it are read, and new keys go on after the highest one on disk.
#[tokio::test]
async fn a_damaged_length_does_not_hide_the_records_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<UsageEvent> = (0..3).map(event).collect();
    {
        let spool = Spool::open(dir.path(), FlushPolicy::Always, 100).unwrap();
        let (stop, writer) = start_writer(&spool);
        for event in &events {
            spool.append(event);
        }
        all_durable(&spool).await;
        stop.cancel();
        writer.await.unwrap();
    }
    let segment = only_segment(dir.path());
    let mut bytes = std::fs::read(&segment).unwrap();
    let second = record_starts(&bytes)[1];
    bytes[second..second + 4].copy_from_slice(&1_000_000u32.to_le_bytes());
    std::fs::write(&segment, &bytes).unwrap();

    let spool = Spool::open(dir.path(), FlushPolicy::Always, 100).unwrap();
    assert_eq!(
        spool.stats().depth,
        3,
        "keys 1 to 3, the damaged one included"
    );
    let read = spool.peek(10).unwrap();
    let ids: Vec<&str> = read.iter().map(|s| s.event_id.as_str()).collect();
    assert_eq!(
        ids,
        [events[0].event_id.as_str(), events[2].event_id.as_str()]
    );
    let (stop, writer) = start_writer(&spool);
    spool.append(&event(3));
    all_durable(&spool).await;
    let keys: Vec<u64> = spool.peek(10).unwrap().iter().map(|s| s.key).collect();
    assert_eq!(
        keys,
        [1, 3, 4],
        "the new event's key follows the last on disk"
    );
    stop.cancel();
    writer.await.unwrap();
}

/// An edge upgraded from a version that spooled in sled publishes what it left behind,
/// under the same keys, and removes sled's files.
#[tokio::test]
async fn a_sled_spool_from_an_earlier_version_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<UsageEvent> = (0..3).map(event).collect();
    {
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("spool").unwrap();
        for (i, event) in events.iter().enumerate() {
            // The sled spool's value: appended-at ms, id length, id, envelope (big-endian).
            let mut value = 1_700_000_000_000u64.to_be_bytes().to_vec();
            value.extend_from_slice(&(event.event_id.len() as u16).to_be_bytes());
            value.extend_from_slice(event.event_id.as_bytes());
            value.extend_from_slice(&envelope::encode(event));
            tree.insert((i as u64 + 5).to_be_bytes(), value).unwrap();
        }
        db.flush().unwrap();
    }
    let spool = once_unlocked(|| Spool::open(dir.path(), FlushPolicy::Always, 100));
    assert!(!dir.path().join("db").exists() && !dir.path().join("conf").exists());
    assert_eq!(spool.stats().depth, 3);
    let read = spool.peek(10).unwrap();
    let keys: Vec<u64> = read.iter().map(|s| s.key).collect();
    assert_eq!(keys, [5, 6, 7]);
    assert_eq!(envelope::decode(&read[2].payload).unwrap(), events[2]);
    let age = spool.stats().oldest_age.unwrap();
    assert!(
        age > Duration::from_secs(3600),
        "the old append time is kept: {age:?}"
    );
}

#[tokio::test]
async fn an_interval_flush_writes_within_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(
        dir.path(),
        FlushPolicy::Every(Duration::from_millis(5)),
        1000,
    )
    .unwrap();
    let (stop, writer) = start_writer(&spool);
    let started = Instant::now();
    let n = 20_000;
    for i in 0..n {
        spool.append(&event(i));
    }
    let appended = started.elapsed();
    wait_until("the writer", || async {
        (spool.peek(n as usize + 1).unwrap().len() == n as usize).then_some(())
    })
    .await;
    eprintln!(
        "spool: {n} appends in {appended:?} ({:.0}/s on the request path), written and flushed in {:?}",
        n as f64 / appended.as_secs_f64(),
        started.elapsed()
    );
    stop.cancel();
    writer.await.unwrap();
}

#[tokio::test]
async fn stream_setup_creates_then_updates_the_stream() {
    let (_server, js) = server().await;
    let settings = StreamSettings::default();
    let info = stream::ensure_stream(&js, &settings).await.unwrap();
    assert_eq!(info.config.name, STREAM);
    assert_eq!(info.config.subjects, vec!["floodgate.usage.*".to_owned()]);
    assert_eq!(info.config.storage, jetstream::stream::StorageType::File);
    assert_eq!(info.config.duplicate_window, settings.duplicate_window);
    let changed = StreamSettings {
        duplicate_window: Duration::from_secs(30),
        max_age: Duration::from_secs(3600),
        max_bytes: 1 << 20,
        ..settings
    };
    let info = stream::ensure_stream(&js, &changed).await.unwrap();
    assert_eq!(info.config.duplicate_window, Duration::from_secs(30));
    assert_eq!(info.config.max_age, Duration::from_secs(3600));
    assert_eq!(info.config.max_bytes, 1 << 20);
}

#[tokio::test]
async fn a_retried_publish_with_the_same_id_is_stored_once() {
    let (server, js) = server().await;
    let log = jetstream_log(&server).await;
    let batch: Vec<Spooled> = (0..10).map(|i| spooled(i, &event(i))).collect();
    let first = log.publish(&batch).await;
    assert_eq!(first.acked, 10, "{:?}", first.error);
    // The same events again, as after a lost ack: acknowledged, not stored twice.
    let again = log.publish(&batch[3..]).await;
    assert_eq!(again.acked, 7, "{:?}", again.error);
    assert_eq!(stream_messages(&js).await, 10);
}

/// A stopped publisher keeps publishing until every event appended before the stop is in
/// the stream; with the log down, it gives up after the drain time and the events stay
/// spooled.
#[tokio::test]
async fn a_stopped_publisher_drains_the_spool_within_the_drain_time() {
    let (mut server, js) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(
        dir.path(),
        FlushPolicy::Every(Duration::from_millis(5)),
        1_000_000,
    )
    .unwrap();
    let (stop, writer) = start_writer(&spool);
    let log = jetstream_log(&server).await;
    let publisher = tokio::spawn(
        Publisher::new(spool.clone(), log.clone()).run(stop.clone(), Duration::from_secs(20)),
    );
    for i in 0..300 {
        spool.append(&event(i));
    }
    stop.cancel();
    tokio::time::timeout(DEADLINE, publisher)
        .await
        .unwrap()
        .unwrap();
    writer.await.unwrap();
    assert_eq!(spool.stats().depth, 0);
    assert_eq!(
        stream_messages(&js).await,
        300,
        "all of them, before it returned"
    );

    // The log down: the drain ends at its time with the events still spooled.
    drop(spool);
    server.kill();
    let spool = Spool::open(dir.path(), FlushPolicy::Always, 1_000_000).unwrap();
    let (stop, writer) = start_writer(&spool);
    let drain = Duration::from_millis(300);
    let publisher = tokio::spawn(Publisher::new(spool.clone(), log).run(stop.clone(), drain));
    spool.append(&event(300));
    all_durable(&spool).await;
    let started = Instant::now();
    stop.cancel();
    tokio::time::timeout(DEADLINE, publisher)
        .await
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() >= drain,
        "it tried for the whole drain time"
    );
    assert_eq!(spool.stats().depth, 1, "left for the next start");
    writer.await.unwrap();
}

#[tokio::test]
async fn the_publisher_rides_out_a_nats_outage_and_drains_every_event_exactly_once() {
    let (mut server, js) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(
        dir.path(),
        FlushPolicy::Every(Duration::from_millis(5)),
        1_000_000,
    )
    .unwrap();
    let (stop, _writer) = start_writer(&spool);
    let log = jetstream_log(&server).await;
    tokio::spawn(Publisher::new(spool.clone(), log).run(stop.clone(), Duration::ZERO));

    let mut ids = HashSet::new();
    for i in 0..200 {
        let e = event(i);
        ids.insert(e.event_id.clone());
        spool.append(&e);
    }
    wait_until("the first events published", || async {
        (spool.stats().depth == 0).then_some(())
    })
    .await;
    assert!(server.pid().is_some());
    server.kill();
    assert!(server.pid().is_none(), "killed and reaped");
    let n = 5_000;
    for i in 200..n {
        let e = event(i);
        ids.insert(e.event_id.clone());
        spool.append(&e);
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // the outage lasts a while
    assert_eq!(
        spool.stats().depth,
        n - 200,
        "nothing leaves the spool while NATS is down"
    );
    server.restart().await.unwrap();
    let restarted = Instant::now();
    wait_until("the spool drained", || async {
        (spool.stats().depth == 0).then_some(())
    })
    .await;
    eprintln!(
        "drained {} events in {:?} after NATS returned",
        n - 200,
        restarted.elapsed()
    );
    let client = stream::connect(&[server.url()], Duration::from_secs(5))
        .await
        .unwrap();
    let js2 = jetstream::new(client);
    drop(js);
    let stored = read_all(&js2).await;
    assert_eq!(stored.len() as u64, n, "every event exactly once");
    let stored_ids: HashSet<String> = stored.into_iter().map(|e| e.event_id).collect();
    assert_eq!(stored_ids, ids);
    stop.cancel();
}

/// A backend under test: publishes through its log, opens sources on it, and can add a
/// message that is not an event.
trait Backend {
    type Source: EventSource;
    async fn publish(&self, batch: &[Spooled]);
    async fn garbage(&self, bytes: &'static [u8]);
    async fn source(&self, name: &str) -> Self::Source;
    async fn fresh(&self, name: &str) -> Self::Source;
}

struct Nats {
    _server: NatsServer,
    js: jetstream::Context,
    log: JetStreamLog,
}

impl Backend for Nats {
    type Source = JetStreamSource;
    async fn publish(&self, batch: &[Spooled]) {
        let published = self.log.publish(batch).await;
        assert_eq!(published.acked, batch.len(), "{:?}", published.error);
    }
    async fn garbage(&self, bytes: &'static [u8]) {
        self.js
            .publish(stream::subject("0"), bytes.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    async fn source(&self, name: &str) -> JetStreamSource {
        JetStreamSource::open(&self.js, name, "*").await.unwrap()
    }
    async fn fresh(&self, name: &str) -> JetStreamSource {
        JetStreamSource::fresh(&self.js, name, "*").await.unwrap()
    }
}

struct Local {
    _dir: tempfile::TempDir,
    log: LocalLog,
}

impl Backend for Local {
    type Source = floodgate_events::LocalSource;
    async fn publish(&self, batch: &[Spooled]) {
        let published = self.log.publish(batch).await;
        assert_eq!(published.acked, batch.len(), "{:?}", published.error);
    }
    async fn garbage(&self, bytes: &'static [u8]) {
        let id = uuid::Uuid::now_v7().to_string();
        self.publish(&[Spooled {
            key: 0,
            event_id: id,
            payload: bytes.into(),
        }])
        .await;
    }
    async fn source(&self, name: &str) -> Self::Source {
        self.log.source(name).unwrap()
    }
    async fn fresh(&self, name: &str) -> Self::Source {
        self.log.fresh_source(name).unwrap()
    }
}

async fn nats() -> Nats {
    let (server, js) = server().await;
    let log = jetstream_log(&server).await;
    Nats {
        _server: server,
        js,
        log,
    }
}

fn local() -> Local {
    let dir = tempfile::tempdir().unwrap();
    let log = LocalLog::open(dir.path()).unwrap();
    Local { _dir: dir, log }
}

async fn fetch_n<S: EventSource>(source: &mut S, n: usize) -> Vec<floodgate_events::Delivered> {
    let mut out = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while out.len() < n {
        assert!(Instant::now() < deadline, "fetched {} of {n}", out.len());
        match source
            .fetch(n - out.len(), Duration::from_millis(200))
            .await
        {
            Ok(batch) => out.extend(batch),
            Err(SourceError::Undecodable { .. }) => {}
            Err(other) => panic!("{other}"),
        }
    }
    out
}

/// In order, deduplicated, resumed after the last ack, replayed by a fresh source.
async fn source_contract(backend: impl Backend) {
    let events: Vec<UsageEvent> = (0..30).map(event).collect();
    let batch: Vec<Spooled> = events
        .iter()
        .enumerate()
        .map(|(i, e)| spooled(i as u64, e))
        .collect();
    backend.publish(&batch[..20]).await;
    backend.publish(&batch[10..]).await; // a retry overlapping the first batch
    let mut source = backend.source("projector").await;
    let first = fetch_n(&mut source, 12).await;
    let got: Vec<&UsageEvent> = first.iter().map(|d| &d.event).collect();
    assert_eq!(got, events[..12].iter().collect::<Vec<_>>());
    assert!(first.windows(2).all(|w| w[0].sequence < w[1].sequence));
    source.ack(first[9].sequence).await.unwrap();
    drop(source);

    // A new reader of the same name resumes after the acknowledged position.
    let mut source = backend.source("projector").await;
    let rest = fetch_n(&mut source, 20).await;
    assert_eq!(rest[0].event, events[10]);
    assert_eq!(rest.last().unwrap().event, events[29]);
    assert!(
        source
            .fetch(10, Duration::from_millis(100))
            .await
            .unwrap()
            .is_empty(),
        "exactly the 30 distinct events"
    );

    // Bad messages are reported with their position and skipped.
    backend.garbage(b"\xff\xfe not protobuf").await;
    let late = event(30);
    backend.publish(&[spooled(30, &late)]).await;
    let bad = loop {
        match source.fetch(10, Duration::from_millis(200)).await {
            Err(SourceError::Undecodable {
                sequence, payload, ..
            }) => {
                assert_eq!(
                    &payload[..],
                    b"\xff\xfe not protobuf",
                    "the bytes as stored"
                );
                break sequence;
            }
            Ok(batch) => assert!(batch.is_empty(), "the bad message comes first"),
            Err(other) => panic!("{other}"),
        }
    };
    let after = fetch_n(&mut source, 1).await;
    assert_eq!(after[0].event, late);
    assert!(after[0].sequence > bad);
    source.ack(after[0].sequence).await.unwrap();
    drop(source);

    // A fresh reader replays everything from the start.
    let mut replay = backend.fresh("projector").await;
    let all = fetch_n(&mut replay, 31).await;
    assert_eq!(all[0].event, events[0]);
    assert_eq!(all[30].event, late);
}

#[tokio::test]
async fn jetstream_source_contract() {
    source_contract(nats().await).await;
}

#[tokio::test]
async fn local_log_source_contract() {
    source_contract(local()).await;
}

/// Opens a sled-backed store that was just dropped: sled lets go of its file lock a moment
/// after the last handle is dropped (its flusher thread ends on its own), so this retries
/// while the lock is still held, within the deadline.
fn once_unlocked<T, E: std::fmt::Debug>(mut open: impl FnMut() -> Result<T, E>) -> T {
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        match open() {
            Ok(store) => return store,
            Err(error) if format!("{error:?}").contains("could not acquire lock") => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "still locked: {error:?}"
                );
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(error) => panic!("open: {error:?}"),
        }
    }
}
