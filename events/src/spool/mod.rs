//! The edge's spool: every usage event is appended here before it is published, and let
//! go of only once the event log acknowledged it, so a NATS outage or an edge restart
//! loses nothing.
//!
//! On disk it is a directory of append-only segment files ([`segment`]) of checksummed
//! records ([`record`]), an `acked` file with the last key the event log acknowledged, and
//! `parked/` for bytes that are not whole records. A segment is deleted whole once every
//! event in it is acknowledged: there is no per-event delete, no index and no compaction,
//! which is what made the earlier sled spool cost the edge more than serving did.
//!
//! Group commit: [`Spool::append`] only sends the encoded event down a lock-free channel
//! (it never touches the disk, nor a lock, on the request's path); one writer thread
//! ([`writer`], started by [`Spool::run_writer`]) takes everything received, appends it to
//! the segment in one write and syncs it (`fdatasync`): as soon as it can under `always`
//! ([`Spool::durable`] resolves only then), or once per interval under
//! [`FlushPolicy::Every`] (events younger than the interval are at risk on a crash).
//!
//! Keys are a sequence (`u64`) the writer assigns in receive order, so file order is
//! append order and the publisher drains in it. The cap is an admission policy:
//! [`Spool::is_full`] says when the edge must refuse new requests; appends themselves are
//! never refused, so no record of an admitted request is dropped.

mod migrate;
mod reader;
mod record;
mod segment;
mod writer;

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use floodgate_proto::v1::UsageEvent;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use reader::{Pos, Reader};
use writer::{Message, Writer};

/// A segment is closed, and the next one begun, once it holds this many bytes.
const SEGMENT_BYTES: u64 = 8 << 20;

/// When appended events become durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// Write and sync each group as soon as possible; [`Spool::durable`] waits for it.
    Always,
    /// Write and sync what arrived once per interval; a crash may lose up to an interval
    /// (and a sync) of the newest events.
    Every(Duration),
}

/// Why the spool failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file of the spool could not be created, read, written or synced.
    #[error("spool storage error: {0}")]
    Io(#[from] std::io::Error),
    /// Another process has the spool open.
    #[error("the usage spool in {} is in use by another process", .0.display())]
    Locked(PathBuf),
    /// The sled spool of an earlier version could not be read to move it.
    #[error("cannot read the earlier (sled) usage spool: {0}")]
    Migrate(#[from] sled::Error),
}

/// One spooled event, as the publisher reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Spooled {
    /// Its position in the spool.
    pub key: u64,
    /// The event's id (the JetStream `Nats-Msg-Id`).
    pub event_id: String,
    /// The encoded [`crate::envelope`].
    pub payload: Bytes,
}

/// The spool's state for `/readyz` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolStats {
    /// Events appended and not yet acknowledged by the event log.
    pub depth: u64,
    /// Age of the oldest of them.
    pub oldest_age: Option<Duration>,
    /// The depth at which the edge refuses new requests.
    pub cap: u64,
}

/// How far the writer got: the last key written, and where its record ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mark {
    key: u64,
    /// The segment being written (its first key).
    segment: u64,
    /// Its length after that record.
    end: u64,
}

/// The spool. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    /// Held (locked) while the spool is open.
    _lock: File,
    policy: FlushPolicy,
    cap: u64,
    segment_bytes: u64,
    /// Record bodies on their way to the writer.
    sender: mpsc::Sender<Message>,
    /// The writer's end, taken once by [`Spool::run_writer`].
    receiver: Mutex<Option<mpsc::Receiver<Message>>>,
    /// Events appended since open, counted before they are sent.
    appended: AtomicU64,
    /// Events appended since open that are durable under the policy (kept under `always`).
    durable: watch::Sender<u64>,
    /// What the publisher may read.
    written: watch::Sender<Mark>,
    /// The segments on disk (first keys): the writer adds, the reader deletes.
    segments: Mutex<BTreeSet<u64>>,
    reader: Mutex<Reader>,
    depth: AtomicU64,
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, taking it over from an earlier sled spool if
    /// it finds one. `cap` is the depth at which [`Spool::is_full`] turns true.
    pub fn open(dir: &Path, policy: FlushPolicy, cap: u64) -> Result<Self, SpoolError> {
        Self::open_with(dir, policy, cap, SEGMENT_BYTES)
    }

    fn open_with(
        dir: &Path,
        policy: FlushPolicy,
        cap: u64,
        segment_bytes: u64,
    ) -> Result<Self, SpoolError> {
        std::fs::create_dir_all(dir)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))?;
        lock.try_lock().map_err(|e| match e {
            TryLockError::WouldBlock => SpoolError::Locked(dir.to_owned()),
            TryLockError::Error(e) => SpoolError::Io(e),
        })?;
        migrate::from_sled(dir)?;
        let (acked_file, acked) = reader::open_acked(dir)?;
        let mut segments = segment::list(dir)?;
        let last = reader::recover(dir, &mut segments)?;
        let first = segments.first().copied();
        // The acked file is not synced: it may be behind the segments already deleted.
        let acked = acked.max(first.map_or(0, |first| first - 1));
        let last = last.unwrap_or(0).max(acked);
        let mark = match segments.last() {
            Some(&newest) => Mark {
                key: last,
                segment: newest,
                end: std::fs::metadata(segment::path(dir, newest))?.len(),
            },
            None => Mark {
                key: last,
                segment: 0,
                end: 0,
            },
        };
        let head = Pos {
            segment: first.unwrap_or(0),
            offset: 0,
        };
        let (sender, receiver) = mpsc::channel();
        Ok(Self {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                _lock: lock,
                policy,
                cap,
                segment_bytes,
                sender,
                receiver: Mutex::new(Some(receiver)),
                appended: AtomicU64::new(0),
                durable: watch::Sender::new(0),
                written: watch::Sender::new(mark),
                segments: Mutex::new(segments),
                reader: Mutex::new(Reader::new(dir, head, acked, acked_file)),
                depth: AtomicU64::new(last - acked),
            }),
        })
    }

    /// Queues `event` for the next group commit. Never blocks, never waits on disk or a
    /// lock, and never refuses: admission is [`Spool::is_full`]'s job.
    pub fn append(&self, event: &UsageEvent) {
        let body = record::body(event);
        self.inner.depth.fetch_add(1, Ordering::Relaxed);
        // Counted before it is sent, with nothing in between: see `durable`.
        self.inner.appended.fetch_add(1, Ordering::SeqCst);
        // The receiver lives as long as the spool; after the writer stopped (shutdown),
        // an event is left where it is, as it would be in an unflushed queue.
        let _ = self.inner.sender.send(Message::Event(body));
    }

    /// Resolves once every event appended so far is durable under the flush policy: after
    /// the next group commit's sync with `always`; at once with an interval.
    ///
    /// Why a count is enough: the target is the number of appends counted when this is
    /// called, and each append is counted before it is sent. Every event sent before the
    /// caller's own (which was appended before this call) was therefore counted before this
    /// call too, so the caller's event is among the first `target` events the channel
    /// delivers. The writer receives in channel order and counts an event durable only
    /// once it and every event received before it are written and synced; so once that
    /// count reaches `target`, the caller's event is durable.
    pub fn durable(&self) -> impl Future<Output = ()> + Send + 'static {
        let target = match self.inner.policy {
            FlushPolicy::Always => self.inner.appended.load(Ordering::SeqCst),
            FlushPolicy::Every(_) => 0,
        };
        let mut durable = self.inner.durable.subscribe();
        async move {
            // Err only if the spool is gone, when there is nothing left to wait for.
            let _ = durable.wait_for(|&n| n >= target).await;
        }
    }

    /// Events appended and not yet acknowledged by the event log.
    pub fn depth(&self) -> u64 {
        self.inner.depth.load(Ordering::Relaxed)
    }

    /// Whether the spool holds `cap` events or more: the edge refuses new requests.
    pub fn is_full(&self) -> bool {
        self.depth() >= self.inner.cap
    }

    /// Depth, oldest age and cap.
    pub fn stats(&self) -> SpoolStats {
        let depth = self.depth();
        let oldest_age = (depth > 0).then(|| {
            let mark = *self.inner.written.borrow();
            // Unknown: appended and not yet written, so just now.
            lock(&self.inner.reader)
                .oldest(mark)
                .and_then(|at| SystemTime::now().duration_since(at).ok())
                .unwrap_or(Duration::ZERO)
        });
        SpoolStats {
            depth,
            oldest_age,
            cap: self.inner.cap,
        }
    }

    /// Up to `max` of the oldest events not yet acknowledged, in order. Bytes that are not
    /// a whole record (a torn write, a damaged file) are moved to `parked/` and logged, so
    /// they cannot block the events behind them.
    pub fn peek(&self, max: usize) -> Result<Vec<Spooled>, SpoolError> {
        let mark = *self.inner.written.borrow();
        let events =
            lock(&self.inner.reader).read(max, mark, &self.inner.segments, &self.inner.depth)?;
        Ok(events)
    }

    /// Lets go of the events of the last [`Spool::peek`] up to key `through`, which the
    /// event log acknowledged; a segment is deleted once all of its events are. Not synced:
    /// an event that reappears after a crash is published again and dropped by the log's
    /// deduplication.
    pub fn ack(&self, through: u64) -> Result<(), SpoolError> {
        lock(&self.inner.reader).ack(through, &self.inner.segments, &self.inner.depth)?;
        Ok(())
    }

    /// The highest key readable by [`Spool::peek`] so far.
    pub fn written_key(&self) -> u64 {
        self.inner.written.borrow().key
    }

    /// Waits until an event with a key above `key` is readable by [`Spool::peek`].
    pub async fn written_after(&self, key: u64) {
        let mut written = self.inner.written.subscribe();
        let _ = written.wait_for(|mark| mark.key > key).await;
    }

    /// The writer: group-commits appended events on a thread of its own until `stop`, then
    /// writes and syncs what is left. Run it once per spool, on the node's task tracker (a
    /// second writer logs an error and returns).
    pub async fn run_writer(self, stop: CancellationToken) {
        let receiver = lock(&self.inner.receiver).take();
        let Some(receiver) = receiver else {
            tracing::error!("the usage spool already has a writer");
            return;
        };
        let (done, mut finished) = oneshot::channel();
        let spool = Arc::downgrade(&self.inner);
        let writer = Writer::new(self.written_key());
        let policy = self.inner.policy;
        let spawned = std::thread::Builder::new()
            .name("usage-spool".into())
            .spawn(move || {
                writer.run(spool, receiver, policy);
                let _ = done.send(());
            });
        let thread = match spawned {
            Ok(handle) => handle.thread().clone(),
            Err(error) => {
                tracing::error!(%error, "cannot start the usage spool writer");
                return;
            }
        };
        tokio::select! {
            _ = &mut finished => return,
            () = stop.cancelled() => {}
        }
        let _ = self.inner.sender.send(Message::Stop);
        thread.unpark();
        let _ = finished.await;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEADLINE: Duration = Duration::from_secs(30);

    fn event(n: u64) -> UsageEvent {
        UsageEvent {
            event_id: format!("event-{n}"),
            request_id: format!("req-{n}"),
            ..UsageEvent::default()
        }
    }

    async fn append_durably(spool: &Spool, n: u64) {
        spool.append(&event(n));
        tokio::time::timeout(DEADLINE, spool.durable())
            .await
            .expect("durable in time");
    }

    #[tokio::test]
    async fn segments_roll_over_and_are_deleted_once_every_event_in_them_is_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let segments = || segment::list(dir.path()).unwrap().len();
        {
            let spool = Spool::open_with(dir.path(), FlushPolicy::Always, 1000, 256).unwrap();
            let stop = CancellationToken::new();
            let writer = tokio::spawn(spool.clone().run_writer(stop.clone()));
            for n in 1..=40 {
                append_durably(&spool, n).await;
            }
            let rolled = segments();
            assert!(rolled >= 5, "256-byte segments: {rolled}");
            let read = spool.peek(15).unwrap();
            spool.ack(read[14].key).unwrap();
            assert_eq!(spool.stats().depth, 25);
            let read = spool.peek(100).unwrap();
            assert_eq!(read.first().map(|s| s.key), Some(16));
            assert!(segments() < rolled, "segments behind the head are deleted");
            spool.ack(read[read.len() - 1].key).unwrap();
            assert!(spool.peek(100).unwrap().is_empty());
            assert_eq!(segments(), 1, "only the segment being written is left");
            assert_eq!(spool.stats().depth, 0);
            stop.cancel();
            writer.await.unwrap();
        }
        let spool = Spool::open_with(dir.path(), FlushPolicy::Always, 1000, 256).unwrap();
        assert_eq!(
            spool.stats().depth,
            0,
            "the acknowledgements survive reopening"
        );
        assert!(spool.peek(100).unwrap().is_empty());
        let stop = CancellationToken::new();
        let writer = tokio::spawn(spool.clone().run_writer(stop.clone()));
        append_durably(&spool, 41).await;
        let read = spool.peek(100).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].key, 41, "keys go on after the last one");
        stop.cancel();
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn a_stop_ends_a_long_interval_at_once_and_writes_what_came() {
        let dir = tempfile::tempdir().unwrap();
        let hour = FlushPolicy::Every(Duration::from_secs(3600));
        {
            let spool = Spool::open(dir.path(), hour, 10).unwrap();
            let stop = CancellationToken::new();
            let writer = tokio::spawn(spool.clone().run_writer(stop.clone()));
            for n in 0..3 {
                spool.append(&event(n));
            }
            stop.cancel();
            tokio::time::timeout(DEADLINE, writer)
                .await
                .expect("the writer stops without waiting out the interval")
                .unwrap();
        }
        let spool = Spool::open(dir.path(), hour, 10).unwrap();
        assert_eq!(spool.peek(10).unwrap().len(), 3);
    }

    #[test]
    fn a_spool_is_open_in_one_place_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), FlushPolicy::Always, 10).unwrap();
        assert!(matches!(
            Spool::open(dir.path(), FlushPolicy::Always, 10),
            Err(SpoolError::Locked(_))
        ));
        drop(spool);
        Spool::open(dir.path(), FlushPolicy::Always, 10).unwrap();
    }
}
