//! [`Projection`]: a projector's sled store (layout in [`crate::keys`]). Folding a batch
//! reads the aggregates it touches (from the write-through cache [`crate::rows`] when it
//! holds them), merges all of the batch's events of each key into it, and writes each back
//! encoded once, with the traces, the dedup entries and the new position, in **one**
//! `apply_batch`, so a crash leaves either all of a batch or none of it. One fold or prune
//! runs at a time (a write lock, which also guards the cache), which is what makes the
//! read-merge-write safe without sled transactions.
//!
//! Skipped on fold: events at or below the stored position (redelivered after a lost ack)
//! and events whose id was folded within the dedup horizon (a publisher retry that got a
//! new sequence after JetStream's dedup window). An event without an id cannot be
//! deduplicated by id; only its sequence protects it.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use floodgate_events::Delivered;
use floodgate_proto::v1::UsageEvent;
use tokio::sync::broadcast;

use crate::aggregate::{Aggregate, CodecError};
use crate::dims::Dims;
use crate::keys::{self, Granularity, TraceIndex};
use crate::parked::Parked;
use crate::rows::{self, Rows};
use crate::trace::{self, Trace};

/// How many folded events a slow live watcher may fall behind before it skips some.
const FEED_CAPACITY: usize = 4_096;
/// Keys removed per prune batch.
const PRUNE_CHUNK: usize = 1_000;
/// sled's page cache for the store (its default is 1 GiB); hot aggregate rows are also
/// cached decoded ([`crate::rows`]).
const CACHE_BYTES: u64 = 32 << 20;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed (I/O, corruption).
    #[error("projection store: {0}")]
    Sled(#[from] sled::Error),
    /// A stored aggregate is unreadable.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A stored trace is unreadable.
    #[error("unreadable trace: {0}")]
    Trace(#[from] prost::DecodeError),
    /// A stored record is too short to be what its key says.
    #[error("a stored {0} is corrupt")]
    Corrupt(&'static str),
}

/// What one fold did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Folded {
    /// The position after the fold (the last sequence seen, folded or skipped).
    pub position: u64,
    /// The events counted, in order.
    pub events: Vec<Arc<UsageEvent>>,
    /// Events skipped because their sequence was at or below the position.
    pub stale: usize,
    /// Events skipped because their id was already folded.
    pub duplicates: usize,
}

/// What one prune removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Traces removed.
    pub traces: usize,
    /// Dedup entries removed.
    pub seen: usize,
}

/// A projector's store: aggregates, traces, the dedup set and the consumer position.
#[derive(Clone)]
pub struct Projection {
    db: sled::Db,
    tree: sled::Tree,
    /// Held by the one fold or prune running; the cache belongs to the fold.
    write: Arc<Mutex<Rows>>,
    feed: broadcast::Sender<Arc<UsageEvent>>,
}

impl std::fmt::Debug for Projection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projection").finish_non_exhaustive()
    }
}

impl Projection {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_BYTES)
            .open()?;
        let tree = db.open_tree("projection")?;
        Ok(Self {
            db,
            tree,
            write: Arc::new(Mutex::new(Rows::new(rows::DEFAULT_CAPACITY))),
            feed: broadcast::channel(FEED_CAPACITY).0,
        })
    }

    pub(crate) fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    /// The last folded sequence (0 before any).
    pub fn position(&self) -> Result<u64, StoreError> {
        match self.tree.get(keys::POSITION)? {
            None => Ok(0),
            Some(bytes) => Ok(u64::from_be_bytes(
                bytes
                    .as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("position"))?,
            )),
        }
    }

    /// Whether the store holds nothing yet.
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// Folds `batch` (in sequence order) and commits it with the new position in one sled
    /// batch; `now_us` stamps the dedup entries. Not yet durable: [`Self::flush`] before
    /// acknowledging.
    pub fn fold(&self, batch: &[Delivered], now_us: u64) -> Result<Folded, StoreError> {
        let mut cache = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let start = self.position()?;
        let mut folded = Folded {
            position: start,
            ..Folded::default()
        };
        let mut writes = sled::Batch::default();
        let mut touched: BTreeMap<Vec<u8>, Vec<&UsageEvent>> = BTreeMap::new();
        let mut ids: HashSet<&str> = HashSet::new();
        for delivered in batch {
            if delivered.sequence <= folded.position {
                folded.stale += 1;
                continue;
            }
            folded.position = delivered.sequence;
            let event = &delivered.event;
            let id = event.event_id.as_str();
            if !id.is_empty() {
                if ids.contains(id) || self.tree.contains_key(keys::seen(id))? {
                    folded.duplicates += 1;
                    continue;
                }
                ids.insert(id);
                writes.insert(keys::seen(id), &now_us.to_be_bytes()[..]);
                writes.insert(keys::seen_expiry(now_us, id), &[][..]);
            }
            let dims = Dims::of(event);
            let unix_s = event.time_unix_us.div_euclid(1_000_000);
            for gran in Granularity::ALL {
                let key = keys::aggregate(gran, gran.bucket(unix_s), &dims);
                touched.entry(key).or_default().push(event);
            }
            Trace {
                sequence: delivered.sequence,
                event: event.clone(),
            }
            .write(&mut writes);
            folded.events.push(Arc::new(trace::without_payloads(event)));
        }
        let mut rows = Vec::with_capacity(touched.len());
        for (key, events) in touched {
            let mut aggregate = match cache.take(&key) {
                Some(cached) => cached,
                None => match self.tree.get(&key)? {
                    Some(bytes) => Aggregate::decode(&bytes)?,
                    None => Aggregate::default(),
                },
            };
            for event in events {
                aggregate.record(event);
            }
            writes.insert(key.as_slice(), aggregate.encode());
            rows.push((key, aggregate));
        }
        if folded.position > start {
            writes.insert(keys::POSITION, &folded.position.to_be_bytes()[..]);
        }
        // On an error the rows taken out stay out: the next fold reads them from sled.
        self.tree.apply_batch(writes)?;
        cache.put(rows);
        Ok(folded)
    }

    /// Parks the message at `sequence`, which is not a readable event (its bytes and why),
    /// with the position advanced past it in the same sled batch. Returns false, parking
    /// nothing, when the position is already at or past it (it was parked, or passed over,
    /// before an ack was lost). Not yet durable: [`Self::flush`] before acknowledging.
    pub fn park(
        &self,
        sequence: u64,
        reason: &str,
        payload: &[u8],
        now_us: u64,
    ) -> Result<bool, StoreError> {
        let _writer = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        if sequence <= self.position()? {
            return Ok(false);
        }
        let parked = Parked {
            sequence,
            parked_at_us: now_us,
            reason: reason.to_owned(),
            payload: payload.to_vec(),
        };
        let mut writes = sled::Batch::default();
        writes.insert(
            keys::parked(sequence),
            prost::Message::encode_to_vec(&parked),
        );
        writes.insert(keys::POSITION, &sequence.to_be_bytes()[..]);
        self.tree.apply_batch(writes)?;
        Ok(true)
    }

    /// Up to `limit` parked messages after sequence `after`, in sequence order.
    pub fn parked(&self, after: u64, limit: usize) -> Result<Vec<Parked>, StoreError> {
        let start = keys::parked(after.saturating_add(1));
        let mut out = Vec::new();
        for entry in self.tree.range(start..).take(limit) {
            let (key, value) = entry?;
            if !key.starts_with(keys::PARKED) {
                break;
            }
            let parked: Parked = prost::Message::decode(value.as_ref())
                .map_err(|_| StoreError::Corrupt("parked message"))?;
            out.push(parked);
        }
        Ok(out)
    }

    /// How many messages are parked.
    pub fn parked_count(&self) -> Result<u64, StoreError> {
        let mut count = 0;
        for entry in self.tree.scan_prefix(keys::PARKED) {
            entry?;
            count += 1;
        }
        Ok(count)
    }

    /// Makes everything committed so far durable.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// Hands folded events to live watchers ([`Self::subscribe`]).
    pub fn publish(&self, events: &[Arc<UsageEvent>]) {
        for event in events {
            // No watcher is not an error.
            let _ = self.feed.send(event.clone());
        }
    }

    /// A live feed of the events folded from now on (without payloads).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<UsageEvent>> {
        self.feed.subscribe()
    }

    /// Removes traces older than `now_us - trace_retention` and dedup entries recorded
    /// before `now_us - dedup_horizon`.
    pub fn prune(
        &self,
        now_us: u64,
        trace_retention: Duration,
        dedup_horizon: Duration,
    ) -> Result<Pruned, StoreError> {
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let mut pruned = Pruned::default();
        loop {
            let removed = self.prune_seen(now_us.saturating_sub(micros(dedup_horizon)))?;
            pruned.seen += removed;
            if removed < PRUNE_CHUNK {
                break;
            }
        }
        loop {
            let removed = self.prune_traces(now_us.saturating_sub(micros(trace_retention)))?;
            pruned.traces += removed;
            if removed < PRUNE_CHUNK {
                break;
            }
        }
        Ok(pruned)
    }

    fn prune_seen(&self, before_us: u64) -> Result<usize, StoreError> {
        let _writer = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        let range = keys::seen_expiry_bound(0)..keys::seen_expiry_bound(before_us);
        for entry in self.tree.range(range).take(PRUNE_CHUNK) {
            let (key, _) = entry?;
            if let Some(id) = keys::parse_seen_expiry(&key) {
                batch.remove(keys::seen(id));
            }
            batch.remove(key);
            removed += 1;
        }
        self.tree.apply_batch(batch)?;
        Ok(removed)
    }

    fn prune_traces(&self, before_us: u64) -> Result<usize, StoreError> {
        let _writer = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        let index = TraceIndex::Time;
        let prefix = index.prefix().len();
        for entry in self
            .tree
            .range(index.key(0, "")..index.key(before_us, ""))
            .take(PRUNE_CHUNK)
        {
            let (key, _) = entry?;
            removed += 1;
            let Some((_, id)) = keys::parse_trace_index(&key, prefix) else {
                batch.remove(key);
                continue;
            };
            match self.tree.get(keys::trace(id))? {
                Some(bytes) => Trace::decode(&bytes)?.remove(&mut batch),
                None => batch.remove(key),
            }
        }
        self.tree.apply_batch(batch)?;
        Ok(removed)
    }

    /// The stored trace of an event id.
    pub fn trace(&self, event_id: &str) -> Result<Option<Trace>, StoreError> {
        match self.tree.get(keys::trace(event_id))? {
            Some(bytes) => Ok(Some(Trace::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// The event id of a request id's trace.
    pub fn event_id_of_request(&self, request_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .tree
            .get(keys::request(request_id))?
            .map(|id| String::from_utf8_lossy(&id).into_owned()))
    }
}
