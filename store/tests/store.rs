//! Behaviour of the sled Raft store beyond openraft's suite: application commands, what a
//! reopen brings back, snapshots, the committed-id check, and typed errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::io::Cursor;

use common::Kv;
use common::KvCommand;
use common::KvConfig;
use common::KvResponse;
use common::open;
use floodgate_store::StoreError;
use openraft::CommittedLeaderId;
use openraft::Entry;
use openraft::EntryPayload;
use openraft::LogId;
use openraft::Membership;
use openraft::RaftLogReader;
use openraft::RaftSnapshotBuilder;
use openraft::Vote;
use openraft::storage::RaftLogStorage;
use openraft::storage::RaftLogStorageExt;
use openraft::storage::RaftStateMachine;

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn set(term: u64, index: u64, key: &str, value: &str) -> Entry<KvConfig> {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(KvCommand::Set {
            key: key.to_owned(),
            value: value.to_owned(),
        }),
    }
}

fn membership(term: u64, index: u64) -> Entry<KvConfig> {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Membership(Membership::new(vec![BTreeSet::from([1u64])], None)),
    }
}

fn blank(term: u64, index: u64) -> Entry<KvConfig> {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Blank,
    }
}

#[tokio::test]
async fn log_vote_and_committed_id_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let written = vec![
        blank(1, 1),
        membership(1, 2),
        set(1, 3, "a", "1"),
        set(1, 4, "b", "2"),
    ];
    {
        let (mut log, _sm) = open(dir.path());
        log.blocking_append(written.clone()).await.unwrap();
        log.save_vote(&Vote::new(1, 1)).await.unwrap();
        log.save_committed(Some(log_id(1, 4))).await.unwrap();
    }
    let (mut log, _sm) = open(dir.path());
    assert_eq!(log.try_get_log_entries(..).await.unwrap(), written);
    assert_eq!(log.try_get_log_entries(2..4).await.unwrap(), written[1..3]);
    assert_eq!(log.try_get_log_entries(3..=3).await.unwrap(), written[2..3]);
    assert!(log.try_get_log_entries(5..).await.unwrap().is_empty());
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(log_id(1, 4)));
    assert_eq!(state.last_purged_log_id, None);
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(1, 1)));
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 4)));
}

#[tokio::test]
async fn a_committed_id_the_log_does_not_hold_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _sm) = open(dir.path());
    log.blocking_append([blank(1, 1), set(1, 2, "a", "1")])
        .await
        .unwrap();

    log.save_committed(Some(log_id(1, 2))).await.unwrap();
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 2)));

    // Beyond the end of the log (the entries it names never reached the disk).
    log.save_committed(Some(log_id(1, 9))).await.unwrap();
    assert_eq!(log.read_committed().await.unwrap(), None);

    // The index exists, but holds another term's entry.
    log.save_committed(Some(log_id(2, 2))).await.unwrap();
    assert_eq!(log.read_committed().await.unwrap(), None);

    // Purged entries are covered by the snapshot the purge followed.
    log.save_committed(Some(log_id(1, 2))).await.unwrap();
    log.purge(log_id(1, 2)).await.unwrap();
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 2)));
}

#[tokio::test]
async fn truncate_and_purge_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, _sm) = open(dir.path());
        let entries: Vec<_> = (1..=10).map(|i| set(1, i, &format!("k{i}"), "v")).collect();
        log.blocking_append(entries).await.unwrap();
        log.purge(log_id(1, 3)).await.unwrap();
        log.truncate(log_id(1, 8)).await.unwrap();
        log.blocking_append([set(2, 8, "k8", "new")]).await.unwrap();
    }
    let (mut log, _sm) = open(dir.path());
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 3)));
    assert_eq!(state.last_log_id, Some(log_id(2, 8)));
    let indexes: Vec<u64> = log
        .try_get_log_entries(..)
        .await
        .unwrap()
        .iter()
        .map(|e| e.log_id.index)
        .collect();
    assert_eq!(indexes, vec![4, 5, 6, 7, 8]);
    assert_eq!(
        log.try_get_log_entries(8..9).await.unwrap(),
        vec![set(2, 8, "k8", "new")]
    );
    // A purge never moves backwards.
    log.purge(log_id(1, 2)).await.unwrap();
    assert_eq!(
        log.get_log_state().await.unwrap().last_purged_log_id,
        Some(log_id(1, 3))
    );
}

#[tokio::test]
async fn commands_apply_in_order_and_a_reopen_restarts_from_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_log, mut sm) = open(dir.path());
        let reader = sm.reader();
        let responses = sm
            .apply([
                blank(1, 1),
                membership(1, 2),
                set(1, 3, "a", "1"),
                set(1, 4, "a", "2"),
            ])
            .await
            .unwrap();
        assert_eq!(
            responses,
            vec![
                KvResponse::default(),
                KvResponse::default(),
                KvResponse {
                    previous: None,
                    index: 3
                },
                KvResponse {
                    previous: Some("1".to_owned()),
                    index: 4
                },
            ]
        );
        assert_eq!(
            reader.read(|kv| kv.entries.get("a").cloned()).unwrap(),
            Some("2".to_owned())
        );
        assert_eq!(reader.last_applied().unwrap(), Some(log_id(1, 4)));

        let snapshot = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 4)));
        assert_eq!(snapshot.meta.last_membership.log_id(), &Some(log_id(1, 2)));

        // Applied after the snapshot: in memory only, replayed from the log after a restart.
        sm.apply([set(1, 5, "b", "3")]).await.unwrap();
        assert_eq!(reader.read(|kv| kv.entries.len()).unwrap(), 2);
    }
    let (_log, mut sm) = open(dir.path());
    let reader = sm.reader();
    let (applied, membership) = sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 4)));
    assert_eq!(membership.log_id(), &Some(log_id(1, 2)));
    let expected = Kv {
        entries: BTreeMap::from([("a".to_owned(), "2".to_owned())]),
        last_index: 4,
    };
    assert_eq!(reader.read(Kv::clone).unwrap(), expected);
    let current = sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta.last_log_id, Some(log_id(1, 4)));
    let data: Kv = serde_json::from_slice(current.snapshot.get_ref()).unwrap();
    assert_eq!(data, expected);
}

#[tokio::test]
async fn an_installed_snapshot_replaces_the_state_and_survives_a_reopen() {
    let leader_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let (_leader_log, mut leader) = open(leader_dir.path());
    leader
        .apply([
            membership(1, 1),
            set(1, 2, "x", "leader"),
            set(1, 3, "y", "leader"),
        ])
        .await
        .unwrap();
    let snapshot = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();

    {
        let (_log, mut follower) = open(follower_dir.path());
        follower
            .apply([set(1, 1, "stale", "follower")])
            .await
            .unwrap();
        let mut receiving = follower.begin_receiving_snapshot().await.unwrap();
        *receiving = Cursor::new(snapshot.snapshot.get_ref().clone());
        follower
            .install_snapshot(&snapshot.meta, receiving)
            .await
            .unwrap();
        let reader = follower.reader();
        assert_eq!(reader.read(|kv| kv.entries.clone()).unwrap().len(), 2);
        assert!(reader.read(|kv| !kv.entries.contains_key("stale")).unwrap());
    }
    let (_log, mut follower) = open(follower_dir.path());
    assert_eq!(
        follower.applied_state().await.unwrap().0,
        Some(log_id(1, 3))
    );
    assert_eq!(
        follower.get_current_snapshot().await.unwrap().unwrap().meta,
        snapshot.meta
    );
    let leader_state = leader.reader().read(Kv::clone).unwrap();
    assert_eq!(follower.reader().read(Kv::clone).unwrap(), leader_state);
}

#[tokio::test]
async fn a_snapshot_that_does_not_decode_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm) = open(dir.path());
    sm.apply([set(1, 1, "a", "1")]).await.unwrap();
    let before = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();

    let mut bad_meta = before.meta.clone();
    bad_meta.last_log_id = Some(log_id(2, 10));
    bad_meta.snapshot_id = "garbage".to_owned();
    let garbage = Box::new(Cursor::new(b"{not json".to_vec()));
    let error = sm.install_snapshot(&bad_meta, garbage).await.unwrap_err();
    assert!(error.to_string().contains("cannot decode"), "{error}");

    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(1, 1)));
    assert_eq!(
        sm.get_current_snapshot().await.unwrap().unwrap().meta,
        before.meta
    );
}

#[tokio::test]
async fn a_second_open_of_the_same_directory_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let _open = open(dir.path());
    let second = floodgate_store::raft::open::<KvConfig, Kv>(dir.path());
    match second {
        Err(StoreError::Open { path, .. }) => assert_eq!(path, dir.path()),
        Err(other) => panic!("expected StoreError::Open, got {other}"),
        Ok(_) => panic!("a second open of a locked store succeeded"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_member_rebuilds_its_state_from_snapshot_and_log() {
    let dir = tempfile::tempdir().unwrap();
    let writes = 45u64;
    {
        let (raft, _reader) = common::start_single(dir.path(), 10).await;
        for n in 0..writes {
            let command = KvCommand::Set {
                key: format!("k{n}"),
                value: format!("v{n}"),
            };
            raft.client_write(command).await.unwrap();
        }
        raft.shutdown().await.unwrap();
    }
    let (log, _sm) = open(dir.path());
    let mut log = log;
    let state = log.get_log_state().await.unwrap();
    assert!(
        state.last_purged_log_id.is_some(),
        "snapshots every 10 entries purge the log: {state:?}"
    );
    drop((log, _sm));

    let (raft, reader) = common::start_single(dir.path(), 10).await;
    let last = raft.metrics().borrow().last_log_index.unwrap();
    raft.wait(Some(std::time::Duration::from_secs(10)))
        .applied_index_at_least(Some(last), "re-applied")
        .await
        .unwrap();
    let entries = reader.read(|kv| kv.entries.clone()).unwrap();
    let expected: BTreeMap<String, String> = (0..writes)
        .map(|n| (format!("k{n}"), format!("v{n}")))
        .collect();
    assert_eq!(entries, expected);
    raft.shutdown().await.unwrap();
}
