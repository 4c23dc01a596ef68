//! [`LogStore`]: openraft's `RaftLogStorage` on sled (log entries, vote, committed log id),
//! and [`LogReader`], the reader openraft hands to its replication tasks.
//!
//! Every write that openraft must be able to rely on after a crash (an append, a truncation,
//! a purge, the vote) is applied as one sled batch or insert and then flushed before openraft
//! hears of it. openraft 0.9 serializes all calls that write, so no locking is needed here.
//! This module touches only the `raft_log` and `raft_meta` trees.

use std::fmt::Debug;
use std::io;
use std::marker::PhantomData;
use std::ops::Bound;
use std::ops::RangeBounds;

use openraft::ErrorSubject;
use openraft::ErrorVerb;
use openraft::LogId;
use openraft::OptionalSend;
use openraft::RaftLogReader;
use openraft::RaftTypeConfig;
use openraft::StorageError;
use openraft::Vote;
use openraft::storage::LogFlushed;
use openraft::storage::LogState;
use openraft::storage::RaftLogStorage;

use super::StoreTypeConfig;
use super::codec::decode;
use super::codec::encode;
use super::codec::index_key;
use super::codec::key_index;
use super::storage_error;
use crate::StoreError;

/// Key of the last purged log id in the log tree: the empty key sorts before every index.
const PURGED_KEY: &[u8] = b"";
/// Key of the vote in the meta tree.
const VOTE_KEY: &[u8] = b"vote";
/// Key of the committed log id in the meta tree.
const COMMITTED_KEY: &[u8] = b"committed";

type NodeIdOf<C> = <C as RaftTypeConfig>::NodeId;
type Entry<C> = openraft::Entry<C>;

/// The Raft log and vote of one member, on sled. Created by [`super::open`]; implements
/// `RaftLogStorage` for openraft.
pub struct LogStore<C> {
    log: sled::Tree,
    meta: sled::Tree,
    config: PhantomData<C>,
}

/// A read-only handle on the log, for openraft's replication tasks. Cheap to clone.
pub struct LogReader<C> {
    log: sled::Tree,
    config: PhantomData<C>,
}

impl<C> Clone for LogReader<C> {
    fn clone(&self) -> Self {
        Self {
            log: self.log.clone(),
            config: PhantomData,
        }
    }
}

impl<C: StoreTypeConfig> LogStore<C> {
    pub(super) fn new(log: sled::Tree, meta: sled::Tree) -> Self {
        Self {
            log,
            meta,
            config: PhantomData,
        }
    }

    fn last_purged(&self) -> Result<Option<LogId<NodeIdOf<C>>>, StoreError> {
        let value = self
            .log
            .get(PURGED_KEY)
            .map_err(StoreError::sled("read the last purged log id"))?;
        value
            .map(|bytes| decode(|| "the last purged log id".to_owned(), &bytes))
            .transpose()
    }

    fn log_state(&self) -> Result<LogState<C>, StoreError> {
        let last_purged_log_id = self.last_purged()?;
        let last_entry = match self
            .log
            .last()
            .map_err(StoreError::sled("read the last log entry"))?
        {
            Some((key, value)) if key.as_ref() != PURGED_KEY => {
                Some(decode_entry::<C>(&key, &value)?.log_id)
            }
            _ => None,
        };
        let last_log_id = match (last_entry, &last_purged_log_id) {
            (Some(last), Some(purged)) if last.index <= purged.index => Some(purged.clone()),
            (Some(last), _) => Some(last),
            (None, purged) => purged.clone(),
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    fn vote(&self) -> Result<Option<Vote<NodeIdOf<C>>>, StoreError> {
        let value = self
            .meta
            .get(VOTE_KEY)
            .map_err(StoreError::sled("read the vote"))?;
        value
            .map(|bytes| decode(|| "the vote".to_owned(), &bytes))
            .transpose()
    }

    /// The committed log id saved last, if the log (or the snapshot, for purged entries)
    /// still holds it. It is written without a flush, so a crash can leave it ahead of what
    /// reached the disk; such a value is dropped rather than trusted.
    fn committed(&self) -> Result<Option<LogId<NodeIdOf<C>>>, StoreError> {
        let value = self
            .meta
            .get(COMMITTED_KEY)
            .map_err(StoreError::sled("read the committed log id"))?;
        let Some(committed) = value
            .map(|bytes| {
                decode::<Option<LogId<NodeIdOf<C>>>>(|| "the committed log id".to_owned(), &bytes)
            })
            .transpose()?
            .flatten()
        else {
            return Ok(None);
        };
        if let Some(purged) = self.last_purged()?
            && committed.index <= purged.index
        {
            return Ok(Some(committed));
        }
        let key = index_key(committed.index);
        let stored = self
            .log
            .get(key)
            .map_err(StoreError::sled("read a log entry"))?;
        if let Some(bytes) = stored
            && decode_entry::<C>(&key, &bytes)?.log_id == committed
        {
            return Ok(Some(committed));
        }
        tracing::warn!(
            committed = %committed,
            "the saved committed log id is not in the log; ignoring it"
        );
        Ok(None)
    }

    fn save_vote_sync(&self, vote: &Vote<NodeIdOf<C>>) -> Result<(), StoreError> {
        let value = encode(|| format!("the vote {vote}"), vote)?;
        self.meta
            .insert(VOTE_KEY, value)
            .map_err(StoreError::sled("write the vote"))?;
        Ok(())
    }

    async fn flush(&self, op: &'static str) -> Result<(), StoreError> {
        // One flush covers the whole database: every tree shares sled's page cache.
        self.log.flush_async().await.map_err(StoreError::sled(op))?;
        Ok(())
    }

    async fn append_entries<I>(&self, entries: I) -> Result<(), StoreError>
    where
        I: IntoIterator<Item = Entry<C>>,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            let value = encode(|| format!("log entry {}", entry.log_id), &entry)?;
            batch.insert(&index_key(entry.log_id.index)[..], value);
        }
        self.log
            .apply_batch(batch)
            .map_err(StoreError::sled("append log entries"))?;
        self.flush("flush appended log entries").await
    }

    async fn truncate_since(&self, index: u64) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for key in self.log.range(index_key(index)..) {
            let (key, _) = key.map_err(StoreError::sled("scan log entries to truncate"))?;
            batch.remove(key);
        }
        self.log
            .apply_batch(batch)
            .map_err(StoreError::sled("truncate the log"))?;
        self.flush("flush a log truncation").await
    }

    async fn purge_upto(&self, log_id: &LogId<NodeIdOf<C>>) -> Result<(), StoreError> {
        if self
            .last_purged()?
            .is_some_and(|purged| purged.index >= log_id.index)
        {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        batch.insert(
            PURGED_KEY,
            encode(|| format!("the last purged log id {log_id}"), log_id)?,
        );
        for key in self.log.range(index_key(0)..=index_key(log_id.index)) {
            let (key, _) = key.map_err(StoreError::sled("scan log entries to purge"))?;
            batch.remove(key);
        }
        self.log
            .apply_batch(batch)
            .map_err(StoreError::sled("purge the log"))?;
        self.flush("flush a log purge").await
    }
}

/// Reads the entries whose indexes fall in `range`, in log order.
fn read_range<C: StoreTypeConfig>(
    log: &sled::Tree,
    range: &impl RangeBounds<u64>,
) -> Result<Vec<Entry<C>>, StoreError> {
    let start = match range.start_bound() {
        Bound::Included(&start) => start,
        Bound::Excluded(&start) => match start.checked_add(1) {
            Some(start) => start,
            None => return Ok(Vec::new()),
        },
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&end) => Some(end),
        Bound::Excluded(&end) => match end.checked_sub(1) {
            Some(end) => Some(end),
            None => return Ok(Vec::new()),
        },
        Bound::Unbounded => None,
    };
    let entries = match end {
        Some(end) if end < start => return Ok(Vec::new()),
        Some(end) => log.range(index_key(start)..=index_key(end)),
        // Starting at index 0's key also skips the purge marker under the empty key.
        None => log.range(index_key(start)..),
    };
    entries
        .map(|item| {
            let (key, value) = item.map_err(StoreError::sled("read log entries"))?;
            decode_entry::<C>(&key, &value)
        })
        .collect()
}

/// Decodes the entry stored under `key` and checks that it is the entry for that index.
fn decode_entry<C: StoreTypeConfig>(key: &[u8], value: &[u8]) -> Result<Entry<C>, StoreError> {
    let index = key_index(key)?;
    let entry: Entry<C> = decode(|| format!("log entry {index}"), value)?;
    if entry.log_id.index != index {
        return Err(StoreError::Corrupt {
            what: "log entry",
            detail: format!("stored under index {index} but has log id {}", entry.log_id),
        });
    }
    Ok(entry)
}

fn read_error<C: StoreTypeConfig>(error: &StoreError) -> StorageError<NodeIdOf<C>> {
    storage_error(ErrorSubject::Logs, ErrorVerb::Read, error)
}

impl<C: StoreTypeConfig> RaftLogReader<C> for LogReader<C> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<C>>, StorageError<NodeIdOf<C>>> {
        read_range::<C>(&self.log, &range).map_err(|e| read_error::<C>(&e))
    }
}

impl<C: StoreTypeConfig> RaftLogReader<C> for LogStore<C> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<C>>, StorageError<NodeIdOf<C>>> {
        read_range::<C>(&self.log, &range).map_err(|e| read_error::<C>(&e))
    }
}

impl<C: StoreTypeConfig> RaftLogStorage<C> for LogStore<C> {
    type LogReader = LogReader<C>;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<NodeIdOf<C>>> {
        self.log_state().map_err(|e| read_error::<C>(&e))
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader {
            log: self.log.clone(),
            config: PhantomData,
        }
    }

    async fn save_vote(
        &mut self,
        vote: &Vote<NodeIdOf<C>>,
    ) -> Result<(), StorageError<NodeIdOf<C>>> {
        let saved = match self.save_vote_sync(vote) {
            Ok(()) => self.flush("flush the vote").await,
            Err(e) => Err(e),
        };
        saved.map_err(|e| storage_error(ErrorSubject::Vote, ErrorVerb::Write, &e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeIdOf<C>>>, StorageError<NodeIdOf<C>>> {
        self.vote()
            .map_err(|e| storage_error(ErrorSubject::Vote, ErrorVerb::Read, &e))
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeIdOf<C>>>,
    ) -> Result<(), StorageError<NodeIdOf<C>>> {
        // Not flushed: see `committed()` for why a lost or stale value is harmless.
        let saved = encode(|| "the committed log id".to_owned(), &committed).and_then(|value| {
            self.meta
                .insert(COMMITTED_KEY, value)
                .map(drop)
                .map_err(StoreError::sled("write the committed log id"))
        });
        saved.map_err(|e| storage_error(ErrorSubject::Store, ErrorVerb::Write, &e))
    }

    async fn read_committed(
        &mut self,
    ) -> Result<Option<LogId<NodeIdOf<C>>>, StorageError<NodeIdOf<C>>> {
        self.committed()
            .map_err(|e| storage_error(ErrorSubject::Store, ErrorVerb::Read, &e))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<C>,
    ) -> Result<(), StorageError<NodeIdOf<C>>>
    where
        I: IntoIterator<Item = Entry<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // The callback is the promise of durability: it is called only after the flush
        // returned. (openraft 0.9 awaits it before going on, so flushing inline costs nothing
        // over flushing in the background.)
        match self.append_entries(entries).await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(io::Error::other(e.chain())));
                Err(storage_error(ErrorSubject::Logs, ErrorVerb::Write, &e))
            }
        }
    }

    async fn truncate(
        &mut self,
        log_id: LogId<NodeIdOf<C>>,
    ) -> Result<(), StorageError<NodeIdOf<C>>> {
        self.truncate_since(log_id.index)
            .await
            .map_err(|e| storage_error(ErrorSubject::Log(log_id), ErrorVerb::Delete, &e))
    }

    async fn purge(&mut self, log_id: LogId<NodeIdOf<C>>) -> Result<(), StorageError<NodeIdOf<C>>> {
        self.purge_upto(&log_id)
            .await
            .map_err(|e| storage_error(ErrorSubject::Log(log_id), ErrorVerb::Delete, &e))
    }
}
