//! The edge's spool: every usage event is appended here (sled) before it is published, and
//! removed only once the event log acknowledged it, so a NATS outage or an edge restart
//! loses nothing.
//!
//! Group commit: [`Spool::append`] only queues the encoded event in memory under a short
//! lock (it never touches the disk on the request's path); one writer task
//! ([`Spool::run_writer`]) takes everything queued, writes it as one sled batch and flushes
//! per [`FlushPolicy`]: after every batch (`always`: [`Spool::durable`] resolves only then),
//! or at most every interval (events younger than the interval are at risk on a crash).
//!
//! Keys are a gapless sequence (`u64`, big-endian) assigned at append, so the publisher
//! drains in append order. The cap is an admission policy: [`Spool::is_full`] says when the
//! edge must refuse new requests; appends themselves are never refused, so no record of an
//! admitted request is dropped.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use floodgate_proto::v1::UsageEvent;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::envelope;

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
    queue: Mutex<Queue>,
    queued: Notify,
    /// Highest key written to sled (and flushed, under `always`).
    durable: watch::Sender<u64>,
    /// Highest key written to sled: what the publisher may read.
    written: watch::Sender<u64>,
    depth: AtomicU64,
}

#[derive(Debug, Default)]
struct Queue {
    /// The last key handed out.
    last: u64,
    entries: Vec<(u64, Bytes)>,
}

impl Spool {
    /// Opens (or creates) the spool in `dir`. `cap` is the depth at which
    /// [`Spool::is_full`] turns true.
    pub fn open(dir: &Path, policy: FlushPolicy, cap: u64) -> Result<Self, SpoolError> {
        let db = sled::Config::new().path(dir).flush_every_ms(None).open()?;
        let tree = db.open_tree("spool")?;
        let parked = db.open_tree("parked")?;
        let last = match tree.last()? {
            Some((key, _)) => key_of(&key).ok_or(SpoolError::Corrupt { key: 0 })?,
            None => 0,
        };
        let depth = tree.len() as u64;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                tree,
                parked,
                policy,
                cap,
                queue: Mutex::new(Queue {
                    last,
                    entries: Vec::new(),
                }),
                queued: Notify::new(),
                durable: watch::Sender::new(last),
                written: watch::Sender::new(last),
                depth: AtomicU64::new(depth),
            }),
        })
    }

    /// Queues `event` for the next group commit and returns its key. Never blocks on disk
    /// and never refuses: admission is [`Spool::is_full`]'s job.
    pub fn append(&self, event: &UsageEvent) -> u64 {
        let value = frame(&event.event_id, &envelope::encode(event));
        let key = {
            let mut queue = self.inner.queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.last += 1;
            let key = queue.last;
            queue.entries.push((key, value));
            key
        };
        self.inner.depth.fetch_add(1, Ordering::Relaxed);
        self.inner.queued.notify_one();
        key
    }

    /// Resolves once every event appended so far is durable under the flush policy: after
    /// the next group commit's flush with `always`; at once with an interval.
    pub fn durable(&self) -> impl Future<Output = ()> + Send + 'static {
        let target = match self.inner.policy {
            FlushPolicy::Always => self.last_appended(),
            FlushPolicy::Every(_) => 0,
        };
        let mut durable = self.inner.durable.subscribe();
        async move {
            // Err only if the spool is gone, when there is nothing left to wait for.
            let _ = durable.wait_for(|&k| k >= target).await;
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

    /// The writer: group-commits queued events until `stop`, then writes and flushes what
    /// is left. Run it once per spool, on the node's task tracker.
    pub async fn run_writer(self, stop: CancellationToken) {
        let interval = match self.inner.policy {
            FlushPolicy::Always => None,
            FlushPolicy::Every(interval) => Some(interval),
        };
        let mut dirty = false;
        let mut next_flush = tokio::time::Instant::now();
        loop {
            let stopping = tokio::select! {
                () = self.inner.queued.notified() => false,
                () = tokio::time::sleep_until(next_flush), if dirty => false,
                () = stop.cancelled() => true,
            };
            match self.commit().await {
                Ok(wrote) => dirty |= wrote,
                Err(error) => {
                    tracing::error!(%error, "cannot write the usage spool; retrying");
                    tokio::time::sleep(WRITE_RETRY).await;
                    continue;
                }
            }
            let due = match interval {
                None => true,
                Some(_) => stopping || tokio::time::Instant::now() >= next_flush,
            };
            if dirty && due {
                if let Err(error) = self.flush().await {
                    tracing::error!(%error, "cannot flush the usage spool; retrying");
                    tokio::time::sleep(WRITE_RETRY).await;
                    continue;
                }
                dirty = false;
                if let Some(interval) = interval {
                    next_flush = tokio::time::Instant::now() + interval;
                }
            }
            if stopping && self.queue_is_empty() {
                return;
            }
        }
    }

    /// Writes everything queued as one batch; returns whether anything was written.
    async fn commit(&self) -> Result<bool, SpoolError> {
        let entries = {
            let mut queue = self.inner.queue.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut queue.entries)
        };
        let Some(&(last, _)) = entries.last() else {
            return Ok(false);
        };
        let mut batch = sled::Batch::default();
        for (key, value) in &entries {
            batch.insert(&key.to_be_bytes(), value.as_ref());
        }
        if let Err(error) = self.inner.tree.apply_batch(batch) {
            // Put them back in front of anything queued since, and retry.
            let mut queue = self.inner.queue.lock().unwrap_or_else(|p| p.into_inner());
            let newer = std::mem::replace(&mut queue.entries, entries);
            queue.entries.extend(newer);
            return Err(error.into());
        }
        self.inner.written.send_replace(last);
        if self.inner.policy != FlushPolicy::Always {
            self.inner.durable.send_replace(last);
        }
        Ok(true)
    }

    async fn flush(&self) -> Result<(), SpoolError> {
        let written = *self.inner.written.borrow();
        let db = self.inner.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| SpoolError::Storage(sled::Error::Io(std::io::Error::other(e))))??;
        if self.inner.policy == FlushPolicy::Always {
            self.inner.durable.send_replace(written);
        }
        Ok(())
    }

    fn last_appended(&self) -> u64 {
        self.inner
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last
    }

    fn queue_is_empty(&self) -> bool {
        self.inner
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entries
            .is_empty()
    }
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
