//! openraft 0.9 storage (the `storage-v2` API) for the Raft ledger, on sled.
//!
//! [`open`] opens one sled database in a data directory and returns its two halves, which
//! are handed to `openraft::Raft::new`:
//!
//! * [`LogStore`] implements `RaftLogStorage`: log entries, the vote, the committed log id,
//!   truncation and purging. [`LogReader`] is its cheap, cloneable reader for replication.
//! * [`StateMachineStore`] implements `RaftStateMachine`: it applies committed entries to an
//!   [`Application`] value held in memory and persists it as snapshots.
//!   [`StateReader`] lets the rest of the node read the application value.
//!
//! The code is generic over the Raft type config, so the `cluster` crate keeps its own types;
//! [`StoreTypeConfig`] names the two choices the store fixes (openraft's `Entry` and
//! in-memory snapshot data).
//!
//! ## On disk
//!
//! | sled tree | key | value |
//! | --- | --- | --- |
//! | `raft_log` | index as 8 big-endian bytes | the entry (JSON) |
//! | `raft_log` | the empty key (sorts before every index) | the last purged log id (JSON) |
//! | `raft_meta` | `vote` | the vote (JSON) |
//! | `raft_meta` | `committed` | the last committed log id known (JSON) |
//! | `raft_snapshot` | `meta`, `data` | the current snapshot's metadata (JSON) and bytes |
//!
//! Keeping the purge marker in the log tree lets one sled batch remove entries and move the
//! marker together, so no crash can leave one without the other.
//!
//! ## Durability
//!
//! * Appends, truncations and purges are applied as one sled batch each and then flushed
//!   (`flush_async`) before openraft hears of them: an append's `LogFlushed` callback is
//!   called only after the flush returned.
//! * The vote is flushed before `save_vote` returns.
//! * The committed log id is written without a flush: it only lets a restart re-apply
//!   entries early, and on reading it back the store checks that the log (or the snapshot)
//!   still holds it, else reports none (openraft then learns it from the leader again).
//! * The state machine lives in memory; its durable form is the snapshot, written and
//!   flushed as one batch (metadata and data together) when openraft builds or installs one.
//!   On open the state machine is the last snapshot, and openraft re-applies the committed
//!   entries after it (openraft's "persistent snapshot" mode). Log entries are only ever
//!   purged up to a snapshot that is already on disk.

mod application;
mod codec;
mod log;
mod state_machine;

use std::io::Cursor;
use std::path::Path;

use openraft::AnyError;
use openraft::ErrorSubject;
use openraft::ErrorVerb;
use openraft::NodeId;
use openraft::RaftTypeConfig;
use openraft::StorageError;
use openraft::StorageIOError;

pub use self::application::Application;
pub use self::log::LogReader;
pub use self::log::LogStore;
pub use self::state_machine::SnapshotBuilder;
pub use self::state_machine::StateMachineStore;
pub use self::state_machine::StateReader;
use crate::StoreError;

/// A Raft type config this store can hold: any config whose log entry is openraft's own
/// [`openraft::Entry`] and whose snapshot data is an in-memory `Cursor<Vec<u8>>`.
///
/// Implemented for every such config; declare one with `openraft::declare_raft_types!`
/// (both are its defaults). The entry, the vote and the membership are persisted with serde,
/// so openraft's `serde` feature must be on.
pub trait StoreTypeConfig:
    RaftTypeConfig<Entry = openraft::Entry<Self>, SnapshotData = Cursor<Vec<u8>>>
{
}

impl<C> StoreTypeConfig for C where
    C: RaftTypeConfig<Entry = openraft::Entry<C>, SnapshotData = Cursor<Vec<u8>>>
{
}

/// sled tree names. Changing one orphans existing data.
const LOG_TREE: &str = "raft_log";
const META_TREE: &str = "raft_meta";
const SNAPSHOT_TREE: &str = "raft_snapshot";
/// sled's page cache for the ledger (its default is 1 GiB, which a process grows into as
/// the log does): the ledger's working set is the log tail and a small state machine.
const CACHE_BYTES: u64 = 32 << 20;

/// Opens (or creates) the Raft store in the directory `dir` and returns the log store and the
/// state machine for `openraft::Raft::new`.
///
/// The state machine starts from the last snapshot on disk (or `A::default()` when there is
/// none). sled locks the directory: a second `open` of the same directory fails while the
/// first store (or any [`LogReader`] or [`StateReader`] taken from it) is alive.
pub fn open<C, A>(
    dir: impl AsRef<Path>,
) -> Result<(LogStore<C>, StateMachineStore<C, A>), StoreError>
where
    C: StoreTypeConfig<D = A::Command, R = A::Response>,
    A: Application,
{
    let dir = dir.as_ref();
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(CACHE_BYTES)
        .open()
        .map_err(|source| StoreError::Open {
            path: dir.to_path_buf(),
            source,
        })?;
    let open_tree = |name: &'static str| {
        db.open_tree(name)
            .map_err(StoreError::sled("open a sled tree"))
    };
    let log = open_tree(LOG_TREE)?;
    let meta = open_tree(META_TREE)?;
    let snapshots = open_tree(SNAPSHOT_TREE)?;
    let state_machine = StateMachineStore::load(snapshots)?;
    Ok((LogStore::new(log, meta), state_machine))
}

/// Maps a store error into the `StorageError` openraft's traits must return, keeping the
/// store error (and its causes) as the source.
fn storage_error<NID: NodeId>(
    subject: ErrorSubject<NID>,
    verb: ErrorVerb,
    error: &StoreError,
) -> StorageError<NID> {
    StorageIOError::new(subject, verb, AnyError::new(error)).into()
}
