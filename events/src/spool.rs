//! The edge's spool: every usage event is appended here (sled) before it is published, and
//! removed only once the event log acknowledged it, so a NATS outage or an edge restart
//! loses nothing.
//!
//! Group commit: [`Spool::append`] only sends the encoded event down a lock-free channel
//! (it never touches the disk, nor a lock, on the request's path); one writer task
//! ([`Spool::run_writer`]) takes everything received, writes it as one sled batch and
//! flushes per [`FlushPolicy`]: after every batch (`always`: [`Spool::durable`] resolves
//! only then), or at most every interval (events younger than the interval are at risk on
//! a crash).
//!
//! Keys are a gapless sequence (`u64`, big-endian) the writer assigns in receive order, so
//! sled order is append order and the publisher drains in it. The cap is an admission
//! policy: [`Spool::is_full`] says when the edge must refuse new requests; appends
//! themselves are never refused, so no record of an admitted request is dropped.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use floodgate_proto::v1::UsageEvent;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::envelope;

/// sled's page cache for the spool (its default is 1 GiB): the spool's working set is the
/// few events between append and publish ack.
const CACHE_BYTES: u64 = 16 << 20;

/// How long the writer waits before retrying after a disk error.
const WRITE_RETRY: Duration = Duration::from_millis(200);

/// When appended events become durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// Flush after every group commit; [`Spool::durable`] waits for it.
    Always,
    /// Flush at most this often; a crash may lose up to this much of the newest events.
    Every(Duration),
}

/// Why the spool failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// sled failed to open, write or flush.
    #[error("spool storage error: {0}")]
    Storage(#[from] sled::Error),
    /// A stored entry is not in the spool's format (reported with its key).
    #[error("corrupt spool entry {key}")]
    Corrupt {
        /// Its key.
        key: u64,
    },
}

/// One spooled event, as the publisher reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Spooled {
    /// Its position in the spool.
    pub key: u64,
    /// The event's id (the JetStream `Nats-Msg-Id`).
    pub event_id: String,
    /// The encoded [`envelope`].
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

/// The spool. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: sled::Db,
    tree: sled::Tree,
    /// Unreadable entries, kept for inspection.
    parked: sled::Tree,
    policy: FlushPolicy,
    cap: u64,
    /// Framed events on their way to the writer.
    sender: mpsc::UnboundedSender<Bytes>,
    /// The writer's end, taken once by [`Spool::run_writer`].
    receiver: Mutex<Option<mpsc::UnboundedReceiver<Bytes>>>,
    /// Events appended since open, counted before they are sent.
    appended: AtomicU64,
    /// Events appended since open that are durable under the policy (kept under `always`).
    durable: watch::Sender<u64>,
    /// Highest key written to sled: what the publisher may read.
    written: watch::Sender<u64>,
    depth: AtomicU64,
}

impl Spool {
    /// Opens (or creates) the spool in `dir`. `cap` is the depth at which
    /// [`Spool::is_full`] turns true.
    pub fn open(dir: &Path, policy: FlushPolicy, cap: u64) -> Result<Self, SpoolError> {
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(None)
            .cache_capacity(CACHE_BYTES)
            .open()?;
        let tree = db.open_tree("spool")?;
        let parked = db.open_tree("parked")?;
        let last = match tree.last()? {
            Some((key, _)) => key_of(&key).ok_or(SpoolError::Corrupt { key: 0 })?,
            None => 0,
        };
        let depth = tree.len() as u64;
        let (sender, receiver) = mpsc::unbounded_channel();
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                tree,
                parked,
                policy,
                cap,
                sender,
                receiver: Mutex::new(Some(receiver)),
                appended: AtomicU64::new(0),
                durable: watch::Sender::new(0),
                written: watch::Sender::new(last),
                depth: AtomicU64::new(depth),
            }),
        })
    }

    /// Queues `event` for the next group commit. Never blocks, never waits on disk or a
    /// lock, and never refuses: admission is [`Spool::is_full`]'s job.
    pub fn append(&self, event: &UsageEvent) {
        let value = frame(&event.event_id, &envelope::encode(event));
        self.inner.depth.fetch_add(1, Ordering::Relaxed);
        // Counted before it is sent, with nothing in between: see `durable`.
        self.inner.appended.fetch_add(1, Ordering::SeqCst);
        // The receiver lives as long as the spool; after the writer stopped (shutdown),
        // an event is left where it is, as it would be in an unflushed queue.
        let _ = self.inner.sender.send(value);
    }

    /// Resolves once every event appended so far is durable under the flush policy: after
    /// the next group commit's flush with `always`; at once with an interval.
    ///
    /// Why a count is enough: the target is the number of appends counted when this is
    /// called, and each append is counted before it is sent. Every event sent before the
    /// caller's own (which was appended before this call) was therefore counted before this
    /// call too, so the caller's event is among the first `target` events the channel
    /// delivers. The writer receives in channel order and counts an event durable only
    /// once it and every event received before it are written and flushed; so once that
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

    /// Whether the spool holds `cap` events or more: the edge refuses new requests.
    pub fn is_full(&self) -> bool {
        self.inner.depth.load(Ordering::Relaxed) >= self.inner.cap
    }

    /// Depth, oldest age and cap.
    pub fn stats(&self) -> SpoolStats {
        let depth = self.inner.depth.load(Ordering::Relaxed);
        let oldest_age = match self.inner.tree.first() {
            Ok(Some((_, value))) => appended_at(&value).map(|at| {
                SystemTime::now()
                    .duration_since(at)
                    .unwrap_or(Duration::ZERO)
            }),
            // Queued, not yet written: just appended.
            _ if depth > 0 => Some(Duration::ZERO),
            _ => None,
        };
        SpoolStats {
            depth,
            oldest_age,
            cap: self.inner.cap,
        }
    }

    /// Up to `max` of the oldest spooled events, in order. An entry that is not in the
    /// spool's format (a damaged file) is moved to the `parked` tree and logged, so it
    /// cannot block the events behind it.
    pub fn peek(&self, max: usize) -> Result<Vec<Spooled>, SpoolError> {
        let mut out = Vec::with_capacity(max.min(1024));
        for item in self.inner.tree.iter().take(max) {
            let (raw, value) = item?;
            match key_of(&raw).and_then(|key| unframe(key, &value)) {
                Some(spooled) => out.push(spooled),
                None => {
                    self.inner.parked.insert(&raw, value)?;
                    self.inner.tree.remove(&raw)?;
                    self.inner.depth.fetch_sub(1, Ordering::Relaxed);
                    tracing::error!(key = ?raw, "unreadable usage spool entry parked");
                }
            }
        }
        Ok(out)
    }

    /// Removes events the event log acknowledged. Not flushed: an event that reappears
    /// after a crash is published again and dropped by the log's deduplication.
    pub fn remove(&self, keys: &[u64]) -> Result<(), SpoolError> {
        let mut batch = sled::Batch::default();
        for key in keys {
            batch.remove(&key.to_be_bytes());
        }
        self.inner.tree.apply_batch(batch)?;
        self.inner
            .depth
            .fetch_sub(keys.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// The highest key readable by [`Spool::peek`] so far.
    pub fn written_key(&self) -> u64 {
        *self.inner.written.borrow()
    }

    /// Waits until an event with a key above `key` is readable by [`Spool::peek`].
    pub async fn written_after(&self, key: u64) {
        let mut written = self.inner.written.subscribe();
        let _ = written.wait_for(|&k| k > key).await;
    }

    /// The writer: group-commits appended events until `stop`, then writes and flushes
    /// what is left. Run it once per spool, on the node's task tracker (a second writer
    /// logs an error and returns).
    pub async fn run_writer(self, stop: CancellationToken) {
        let receiver = self
            .inner
            .receiver
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(mut receiver) = receiver else {
            tracing::error!("the usage spool already has a writer");
            return;
        };
        let interval = match self.inner.policy {
            FlushPolicy::Always => None,
            FlushPolicy::Every(interval) => Some(interval),
        };
        let mut writer = Writer {
            last: self.written_key(),
            pending: Vec::new(),
            unflushed: 0,
            durable: 0,
        };
        let mut next_flush = tokio::time::Instant::now();
        loop {
            // A batch that failed to write is retried at once, with anything sent since.
            if writer.pending.is_empty() {
                tokio::select! {
                    _ = receiver.recv_many(&mut writer.pending, usize::MAX) => {}
                    () = tokio::time::sleep_until(next_flush), if writer.unflushed > 0 => {}
                    () = stop.cancelled() => {}
                }
            }
            while let Ok(value) = receiver.try_recv() {
                writer.pending.push(value);
            }
            let stopping = stop.is_cancelled();
            if let Err(error) = self.commit(&mut writer) {
                tracing::error!(%error, "cannot write the usage spool; retrying");
                tokio::time::sleep(WRITE_RETRY).await;
                continue;
            }
            let due = match interval {
                None => true,
                Some(_) => stopping || tokio::time::Instant::now() >= next_flush,
            };
            if writer.unflushed > 0 && due {
                if let Err(error) = self.flush(&mut writer).await {
                    tracing::error!(%error, "cannot flush the usage spool; retrying");
                    tokio::time::sleep(WRITE_RETRY).await;
                    continue;
                }
                if let Some(interval) = interval {
                    next_flush = tokio::time::Instant::now() + interval;
                }
            }
            if stopping && writer.pending.is_empty() && writer.unflushed == 0 {
                return;
            }
        }
    }

    /// Writes everything pending as one batch, keyed after the last key written.
    fn commit(&self, writer: &mut Writer) -> Result<(), SpoolError> {
        if writer.pending.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        let mut key = writer.last;
        for value in &writer.pending {
            key += 1;
            batch.insert(&key.to_be_bytes(), value.as_ref());
        }
        // On an error nothing was written: the same entries get the same keys next time.
        self.inner.tree.apply_batch(batch)?;
        writer.unflushed += writer.pending.len() as u64;
        writer.pending.clear();
        writer.last = key;
        self.inner.written.send_replace(key);
        Ok(())
    }

    /// Flushes sled; under `always`, the events written so far then count as durable.
    async fn flush(&self, writer: &mut Writer) -> Result<(), SpoolError> {
        let db = self.inner.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| SpoolError::Storage(sled::Error::Io(std::io::Error::other(e))))??;
        writer.durable += writer.unflushed;
        writer.unflushed = 0;
        if self.inner.policy == FlushPolicy::Always {
            self.inner.durable.send_replace(writer.durable);
        }
        Ok(())
    }
}

/// The writer task's state.
#[derive(Debug)]
struct Writer {
    /// The last key written.
    last: u64,
    /// Received, not yet written, in receive order.
    pending: Vec<Bytes>,
    /// Written since the last flush.
    unflushed: u64,
    /// Received since open and flushed.
    durable: u64,
}

fn key_of(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// `[appended_at unix ms: u64][id length: u16][id][payload]`.
fn frame(event_id: &str, payload: &[u8]) -> Bytes {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let id = &event_id.as_bytes()[..event_id.len().min(u16::MAX as usize)];
    let mut out = Vec::with_capacity(10 + id.len() + payload.len());
    out.extend_from_slice(&now.to_be_bytes());
    out.extend_from_slice(&(id.len() as u16).to_be_bytes());
    out.extend_from_slice(id);
    out.extend_from_slice(payload);
    Bytes::from(out)
}

fn appended_at(value: &[u8]) -> Option<SystemTime> {
    let millis = u64::from_be_bytes(value.get(..8)?.try_into().ok()?);
    Some(UNIX_EPOCH + Duration::from_millis(millis))
}

fn unframe(key: u64, value: &[u8]) -> Option<Spooled> {
    let len = u16::from_be_bytes(value.get(8..10)?.try_into().ok()?) as usize;
    let id = value.get(10..10 + len)?;
    Some(Spooled {
        key,
        event_id: String::from_utf8(id.to_vec()).ok()?,
        payload: Bytes::copy_from_slice(value.get(10 + len..)?),
    })
}
