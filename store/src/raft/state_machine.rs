//! [`StateMachineStore`]: openraft's `RaftStateMachine` over an [`Application`] value, with
//! snapshots on sled; [`SnapshotBuilder`] and [`StateReader`].
//!
//! The application value lives in memory behind a lock and is changed only by `apply` and
//! `install_snapshot`. Its durable form is the current snapshot in the `raft_snapshot` tree:
//! metadata and data written in one sled batch and flushed, so a crash leaves either the old
//! snapshot or the new one, never a mix. On open the value is the last snapshot; openraft then
//! re-applies the committed entries after it. This module touches only the `raft_snapshot`
//! tree.

use std::io::Cursor;
use std::sync::Arc;
use std::sync::RwLock;
use std::sync::RwLockReadGuard;
use std::sync::RwLockWriteGuard;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;

use openraft::EntryPayload;
use openraft::ErrorSubject;
use openraft::ErrorVerb;
use openraft::LogId;
use openraft::OptionalSend;
use openraft::RaftSnapshotBuilder;
use openraft::RaftTypeConfig;
use openraft::Snapshot;
use openraft::SnapshotMeta;
use openraft::StorageError;
use openraft::StoredMembership;
use openraft::storage::RaftStateMachine;

use super::Application;
use super::StoreTypeConfig;
use super::codec::decode;
use super::codec::encode;
use super::storage_error;
use crate::StoreError;

/// Key of the current snapshot's metadata in the snapshot tree.
const META_KEY: &[u8] = b"meta";
/// Key of the current snapshot's data (the serialized application) in the snapshot tree.
const DATA_KEY: &[u8] = b"data";

type NodeIdOf<C> = <C as RaftTypeConfig>::NodeId;
type MetaOf<C> = SnapshotMeta<<C as RaftTypeConfig>::NodeId, <C as RaftTypeConfig>::Node>;
/// A snapshot as stored: its metadata and its data.
type StoredSnapshot<C> = (MetaOf<C>, Vec<u8>);
type MembershipOf<C> = StoredMembership<<C as RaftTypeConfig>::NodeId, <C as RaftTypeConfig>::Node>;

/// The application value and the Raft bookkeeping that must always match it.
struct Machine<C: RaftTypeConfig, A> {
    app: A,
    last_applied: Option<LogId<C::NodeId>>,
    membership: MembershipOf<C>,
}

/// What the state machine, its snapshot builders and its readers share.
struct Shared<C: RaftTypeConfig, A> {
    machine: RwLock<Machine<C, A>>,
    snapshots: sled::Tree,
    /// Serializes snapshot writes, so a slow build never overwrites a newer snapshot.
    snapshot_write: tokio::sync::Mutex<()>,
    /// Makes snapshot ids unique within a process.
    snapshot_seq: AtomicU64,
}

/// The replicated state machine of one member: an [`Application`] value in memory, made
/// durable through snapshots on sled. Created by [`super::open`]; implements
/// `RaftStateMachine` for openraft.
pub struct StateMachineStore<C: RaftTypeConfig, A> {
    shared: Arc<Shared<C, A>>,
}

/// Builds a snapshot of the state machine as it is when the build runs (openraft runs builds
/// in a task of their own, beside `apply`).
pub struct SnapshotBuilder<C: RaftTypeConfig, A> {
    shared: Arc<Shared<C, A>>,
}

/// Read access to the application value for the rest of the node (e.g. the ledger's read
/// API and watch streams). Cheap to clone; readers briefly share a lock with `apply`.
pub struct StateReader<C: RaftTypeConfig, A> {
    shared: Arc<Shared<C, A>>,
}

impl<C: RaftTypeConfig, A> Clone for StateReader<C, A> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C: StoreTypeConfig, A: Application> StateReader<C, A> {
    /// Calls `read` with the application value as of the last applied entry and returns its
    /// result. Keep `read` short: `apply` waits for it.
    pub fn read<T>(&self, read: impl FnOnce(&A) -> T) -> Result<T, StoreError> {
        Ok(read(&self.shared.read()?.app))
    }

    /// The log id of the last entry applied to the value (or covered by the snapshot it was
    /// loaded from); `None` before the first.
    pub fn last_applied(&self) -> Result<Option<LogId<C::NodeId>>, StoreError> {
        Ok(self.shared.read()?.last_applied.clone())
    }
}

impl<C: RaftTypeConfig, A> Shared<C, A> {
    fn read(&self) -> Result<RwLockReadGuard<'_, Machine<C, A>>, StoreError> {
        self.machine.read().map_err(|_| StoreError::Poisoned)
    }

    fn write(&self) -> Result<RwLockWriteGuard<'_, Machine<C, A>>, StoreError> {
        self.machine.write().map_err(|_| StoreError::Poisoned)
    }

    fn stored_meta(&self) -> Result<Option<MetaOf<C>>, StoreError> {
        let bytes = self
            .snapshots
            .get(META_KEY)
            .map_err(StoreError::sled("read the snapshot metadata"))?;
        bytes
            .map(|bytes| decode(|| "the snapshot metadata".to_owned(), &bytes))
            .transpose()
    }

    /// The current snapshot on disk: its metadata and its data.
    fn stored_snapshot(&self) -> Result<Option<StoredSnapshot<C>>, StoreError> {
        let meta = self.stored_meta()?;
        let data = self
            .snapshots
            .get(DATA_KEY)
            .map_err(StoreError::sled("read the snapshot data"))?;
        match (meta, data) {
            (Some(meta), Some(data)) => Ok(Some((meta, data.to_vec()))),
            (None, None) => Ok(None),
            (meta, _) => Err(StoreError::Corrupt {
                what: "snapshot",
                detail: format!(
                    "the snapshot {} is stored without its {}",
                    if meta.is_some() { "metadata" } else { "data" },
                    if meta.is_some() { "data" } else { "metadata" },
                ),
            }),
        }
    }

    /// Makes `meta` and `data` the current snapshot, durably, in one batch. Unless `always`,
    /// a snapshot already stored with a later last log id is kept and `false` returned.
    async fn persist_snapshot(
        &self,
        meta: &MetaOf<C>,
        data: &[u8],
        always: bool,
    ) -> Result<bool, StoreError> {
        let _serial = self.snapshot_write.lock().await;
        if !always
            && let Some(current) = self.stored_meta()?
            && current.last_log_id > meta.last_log_id
        {
            return Ok(false);
        }
        let mut batch = sled::Batch::default();
        batch.insert(
            META_KEY,
            encode(|| format!("snapshot metadata {meta}"), meta)?,
        );
        batch.insert(DATA_KEY, data);
        self.snapshots
            .apply_batch(batch)
            .map_err(StoreError::sled("write a snapshot"))?;
        self.snapshots
            .flush_async()
            .await
            .map_err(StoreError::sled("flush a snapshot"))?;
        Ok(true)
    }
}

impl<C, A> StateMachineStore<C, A>
where
    C: StoreTypeConfig<D = A::Command, R = A::Response>,
    A: Application,
{
    /// Loads the state machine from the snapshot stored in `snapshots`, or starts empty.
    pub(super) fn load(snapshots: sled::Tree) -> Result<Self, StoreError> {
        let shared = Shared {
            machine: RwLock::new(Machine {
                app: A::default(),
                last_applied: None,
                membership: StoredMembership::default(),
            }),
            snapshots,
            snapshot_write: tokio::sync::Mutex::new(()),
            snapshot_seq: AtomicU64::new(0),
        };
        if let Some((meta, data)) = shared.stored_snapshot()? {
            let app = decode(|| format!("the application in snapshot {meta}"), &data)?;
            *shared.write()? = Machine {
                app,
                last_applied: meta.last_log_id,
                membership: meta.last_membership,
            };
        }
        Ok(Self {
            shared: Arc::new(shared),
        })
    }

    /// A reader of the application value that stays valid after the state machine is handed
    /// to openraft.
    pub fn reader(&self) -> StateReader<C, A> {
        StateReader {
            shared: Arc::clone(&self.shared),
        }
    }

    fn apply_entries<I>(&self, entries: I) -> Result<Vec<A::Response>, StoreError>
    where
        I: IntoIterator<Item = openraft::Entry<C>>,
    {
        let mut machine = self.shared.write()?;
        let entries = entries.into_iter();
        let mut responses = Vec::with_capacity(entries.size_hint().0);
        for entry in entries {
            let response = match entry.payload {
                EntryPayload::Blank => A::Response::default(),
                EntryPayload::Normal(command) => machine.app.apply(entry.log_id.index, command),
                EntryPayload::Membership(membership) => {
                    machine.membership =
                        StoredMembership::new(Some(entry.log_id.clone()), membership);
                    A::Response::default()
                }
            };
            machine.last_applied = Some(entry.log_id);
            responses.push(response);
        }
        Ok(responses)
    }

    async fn install(&self, meta: &MetaOf<C>, data: Vec<u8>) -> Result<(), StoreError> {
        // Decode first: a snapshot that does not decode must change nothing.
        let app = decode(|| format!("the application in snapshot {meta}"), &data)?;
        self.shared.persist_snapshot(meta, &data, true).await?;
        *self.shared.write()? = Machine {
            app,
            last_applied: meta.last_log_id.clone(),
            membership: meta.last_membership.clone(),
        };
        Ok(())
    }
}

impl<C: StoreTypeConfig, A: Application> SnapshotBuilder<C, A> {
    async fn build(&self) -> Result<Snapshot<C>, StoreError> {
        // Serialize under the read lock, so the data, the last applied id and the membership
        // describe the same state; write after releasing it, so `apply` is not held up by IO.
        let (meta, data) = {
            let machine = self.shared.read()?;
            let data = encode(|| "the application state".to_owned(), &machine.app)?;
            let seq = self.shared.snapshot_seq.fetch_add(1, Ordering::Relaxed);
            let snapshot_id = match &machine.last_applied {
                Some(id) => format!("{}-{}-{seq}", id.leader_id, id.index),
                None => format!("empty-{seq}"),
            };
            let meta = SnapshotMeta {
                last_log_id: machine.last_applied.clone(),
                last_membership: machine.membership.clone(),
                snapshot_id,
            };
            (meta, data)
        };
        if !self.shared.persist_snapshot(&meta, &data, false).await? {
            tracing::info!(snapshot = %meta, "a newer snapshot was installed meanwhile; keeping it");
        }
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl<C: StoreTypeConfig<D = A::Command, R = A::Response>, A: Application> RaftSnapshotBuilder<C>
    for SnapshotBuilder<C, A>
{
    async fn build_snapshot(&mut self) -> Result<Snapshot<C>, StorageError<NodeIdOf<C>>> {
        self.build()
            .await
            .map_err(|e| storage_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, &e))
    }
}

impl<C: StoreTypeConfig<D = A::Command, R = A::Response>, A: Application> RaftStateMachine<C>
    for StateMachineStore<C, A>
{
    type SnapshotBuilder = SnapshotBuilder<C, A>;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeIdOf<C>>>, MembershipOf<C>), StorageError<NodeIdOf<C>>> {
        let machine = self
            .shared
            .read()
            .map_err(|e| storage_error(ErrorSubject::StateMachine, ErrorVerb::Read, &e))?;
        Ok((machine.last_applied.clone(), machine.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<C::R>, StorageError<NodeIdOf<C>>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.apply_entries(entries)
            .map_err(|e| storage_error(ErrorSubject::StateMachine, ErrorVerb::Write, &e))
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            shared: Arc::clone(&self.shared),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeIdOf<C>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &MetaOf<C>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeIdOf<C>>> {
        self.install(meta, snapshot.into_inner())
            .await
            .map_err(|e| {
                storage_error(
                    ErrorSubject::Snapshot(Some(meta.signature())),
                    ErrorVerb::Write,
                    &e,
                )
            })
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<C>>, StorageError<NodeIdOf<C>>> {
        let stored = self
            .shared
            .stored_snapshot()
            .map_err(|e| storage_error(ErrorSubject::Snapshot(None), ErrorVerb::Read, &e))?;
        Ok(stored.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use openraft::CommittedLeaderId;

    use super::*;

    openraft::declare_raft_types!(TestConfig:);

    type _SnapshotData = Cursor<Vec<u8>>;

    fn meta(index: u64, id: &str) -> MetaOf<TestConfig> {
        SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 0), index)),
            last_membership: StoredMembership::default(),
            snapshot_id: id.to_owned(),
        }
    }

    /// openraft builds snapshots in a task of their own: a build that read the state before
    /// a snapshot was installed must not overwrite the installed, newer one.
    #[tokio::test]
    async fn a_stale_build_never_replaces_a_newer_snapshot() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let shared: Shared<TestConfig, ()> = Shared {
            machine: RwLock::new(Machine {
                app: (),
                last_applied: None,
                membership: StoredMembership::default(),
            }),
            snapshots: db.open_tree("snapshots").unwrap(),
            snapshot_write: tokio::sync::Mutex::new(()),
            snapshot_seq: AtomicU64::new(0),
        };
        assert!(
            shared
                .persist_snapshot(&meta(10, "installed"), b"ten", true)
                .await
                .unwrap()
        );
        assert!(
            !shared
                .persist_snapshot(&meta(5, "stale"), b"five", false)
                .await
                .unwrap()
        );
        let (stored, data) = shared.stored_snapshot().unwrap().unwrap();
        assert_eq!(
            (stored.snapshot_id.as_str(), data.as_slice()),
            ("installed", &b"ten"[..])
        );

        assert!(
            shared
                .persist_snapshot(&meta(12, "newer"), b"twelve", false)
                .await
                .unwrap()
        );
        let (stored, data) = shared.stored_snapshot().unwrap().unwrap();
        assert_eq!(
            (stored.snapshot_id.as_str(), data.as_slice()),
            ("newer", &b"twelve"[..])
        );

        // An install always wins: openraft only installs what it decided to.
        assert!(
            shared
                .persist_snapshot(&meta(11, "installed again"), b"eleven", true)
                .await
                .unwrap()
        );
        let (stored, _) = shared.stored_snapshot().unwrap().unwrap();
        assert_eq!(stored.snapshot_id, "installed again");
    }
}
