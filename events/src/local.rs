//! The local event log of `floodgate dev`: an append-only log in sled behind the same
//! [`EventLog`] trait as JetStream, so the whole pipeline runs in one process with no NATS.
//!
//! Positions are the log index (1, 2, ...). Publishing is idempotent by event id (the ids
//! index is kept for the log's life: a dev log is small), and a batch is flushed before it
//! is acknowledged. [`LocalSource`] reads it with a durable cursor per reader name.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use tokio::sync::watch;

use crate::buffer::{Pending, decoded};
use crate::publish::{EventLog, PublishError, Published};
use crate::source::{Delivered, EventSource, SourceError};
use crate::spool::Spooled;

/// sled's page cache for the log (its default is 1 GiB, which a process grows into as the
/// log does): readers follow the tail.
const CACHE_BYTES: u64 = 32 << 20;

/// Why the local log could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the local event log: {0}")]
pub struct LocalLogError(#[from] sled::Error);

/// The log. Cheap to clone; one per data dir and process.
#[derive(Debug, Clone)]
pub struct LocalLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: sled::Db,
    log: sled::Tree,
    ids: sled::Tree,
    cursors: sled::Tree,
    /// The last index; held while publishing so appends are serial.
    last: Mutex<u64>,
    appended: watch::Sender<u64>,
}

impl LocalLog {
    /// Opens (or creates) the log in `dir`.
    pub fn open(dir: &Path) -> Result<Self, LocalLogError> {
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(None)
            .cache_capacity(CACHE_BYTES)
            .open()?;
        let log = db.open_tree("log")?;
        let ids = db.open_tree("ids")?;
        let cursors = db.open_tree("cursors")?;
        let last = log.last()?.and_then(|(key, _)| index_of(&key)).unwrap_or(0);
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                log,
                ids,
                cursors,
                last: Mutex::new(last),
                appended: watch::Sender::new(last),
            }),
        })
    }

    /// A reader named `name` that resumes after its last acknowledged position.
    pub fn source(&self, name: &str) -> Result<LocalSource, SourceError> {
        let acked = self
            .inner
            .cursors
            .get(name.as_bytes())
            .map_err(unavailable)?
            .and_then(|v| index_of(&v))
            .unwrap_or(0);
        Ok(LocalSource {
            log: self.clone(),
            name: name.to_owned(),
            next: acked + 1,
            pending: Pending::default(),
        })
    }

    /// A reader named `name` that replays the log from the start (its cursor is reset), for
    /// rebuilding a projection.
    pub fn fresh_source(&self, name: &str) -> Result<LocalSource, SourceError> {
        self.inner
            .cursors
            .remove(name.as_bytes())
            .map_err(unavailable)?;
        self.source(name)
    }

    /// Appends `batch` (skipping ids already in the log) in one transaction.
    fn append(&self, batch: &[Spooled]) -> Result<(), PublishError> {
        let mut last = self.inner.last.lock().unwrap_or_else(|p| p.into_inner());
        let start = *last;
        let end = (&self.inner.log, &self.inner.ids)
            .transaction(|(log, ids)| {
                let mut index = start;
                for event in batch {
                    if ids.get(event.event_id.as_bytes())?.is_some() {
                        continue;
                    }
                    index += 1;
                    log.insert(&index.to_be_bytes(), event.payload.as_ref())?;
                    ids.insert(event.event_id.as_bytes(), &index.to_be_bytes())?;
                }
                Ok::<_, ConflictableTransactionError<()>>(index)
            })
            .map_err(|e: TransactionError<()>| PublishError::Storage(format!("{e:?}")))?;
        *last = end;
        Ok(())
    }
}

impl EventLog for LocalLog {
    async fn publish(&self, batch: &[Spooled]) -> Published {
        let result = async {
            self.append(batch)?;
            let db = self.inner.db.clone();
            tokio::task::spawn_blocking(move || db.flush())
                .await
                .map_err(|e| PublishError::Storage(e.to_string()))?
                .map_err(|e| PublishError::Storage(e.to_string()))?;
            let last = *self.inner.last.lock().unwrap_or_else(|p| p.into_inner());
            self.inner.appended.send_replace(last);
            Ok::<_, PublishError>(())
        }
        .await;
        match result {
            Ok(()) => Published {
                acked: batch.len(),
                error: None,
            },
            Err(error) => Published {
                acked: 0,
                error: Some(error),
            },
        }
    }
}

/// A durable reader of the local log.
#[derive(Debug)]
pub struct LocalSource {
    log: LocalLog,
    name: String,
    next: u64,
    pending: Pending,
}

impl LocalSource {
    fn read(&mut self, max: usize) -> Result<usize, SourceError> {
        let mut read = 0;
        let from = self.next.to_be_bytes();
        for item in self.log.inner.log.range(from..).take(max) {
            let (key, value) = item.map_err(unavailable)?;
            let Some(sequence) = index_of(&key) else {
                continue;
            };
            self.pending.push(decoded(sequence, &value));
            self.next = sequence + 1;
            read += 1;
        }
        Ok(read)
    }
}

impl EventSource for LocalSource {
    async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivered>, SourceError> {
        if let Some(out) = self.pending.take(max) {
            return out;
        }
        if self.read(max)? == 0 {
            let mut appended = self.log.inner.appended.subscribe();
            let next = self.next;
            let _ = tokio::time::timeout(wait, appended.wait_for(|&last| last >= next)).await;
            self.read(max)?;
        }
        self.pending.take(max).unwrap_or(Ok(Vec::new()))
    }

    /// Moves the reader's cursor. It is not flushed here: it becomes durable with the
    /// log's next flush (every publish flushes), and a cursor lost in a crash only means a
    /// redelivery, which the projector's stored position skips. One flush per fold less.
    async fn ack(&mut self, sequence: u64) -> Result<(), SourceError> {
        self.log
            .inner
            .cursors
            .insert(self.name.as_bytes(), &sequence.to_be_bytes())
            .map_err(unavailable)?;
        Ok(())
    }
}

fn index_of(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

fn unavailable(error: sled::Error) -> SourceError {
    SourceError::Unavailable(error.to_string())
}
