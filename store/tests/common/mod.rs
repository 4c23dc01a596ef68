//! Fixtures shared by the store's integration tests: a tiny key-value [`Application`], its
//! Raft type config, a network for single-member clusters, and a Raft config.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::collections::BTreeMap;
use std::io;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use floodgate_store::raft::Application;
use floodgate_store::raft::LogStore;
use floodgate_store::raft::StateMachineStore;
use openraft::BasicNode;
use openraft::Config;
use openraft::Raft;
use openraft::SnapshotPolicy;
use openraft::error::InstallSnapshotError;
use openraft::error::RPCError;
use openraft::error::RaftError;
use openraft::error::Unreachable;
use openraft::network::RPCOption;
use openraft::network::RaftNetwork;
use openraft::network::RaftNetworkFactory;
use openraft::raft::AppendEntriesRequest;
use openraft::raft::AppendEntriesResponse;
use openraft::raft::InstallSnapshotRequest;
use openraft::raft::InstallSnapshotResponse;
use openraft::raft::VoteRequest;
use openraft::raft::VoteResponse;
use serde::Deserialize;
use serde::Serialize;

/// A command of the test key-value store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvCommand {
    /// Sets `key` to `value`.
    Set { key: String, value: String },
    /// Removes `key`.
    Delete { key: String },
}

/// What a command answers: the value it replaced and the index it was applied at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvResponse {
    pub previous: Option<String>,
    pub index: u64,
}

/// The test application: a map and the index of the last command applied to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kv {
    pub entries: BTreeMap<String, String>,
    pub last_index: u64,
}

impl Application for Kv {
    type Command = KvCommand;
    type Response = KvResponse;

    fn apply(&mut self, index: u64, command: KvCommand) -> KvResponse {
        assert!(
            index > self.last_index,
            "indexes must increase: {index} after {}",
            self.last_index
        );
        self.last_index = index;
        let previous = match command {
            KvCommand::Set { key, value } => self.entries.insert(key, value),
            KvCommand::Delete { key } => self.entries.remove(&key),
        };
        KvResponse { previous, index }
    }
}

openraft::declare_raft_types!(
    /// The Raft type config of the test key-value store.
    pub KvConfig: D = KvCommand, R = KvResponse
);

/// The test store's halves.
pub type KvLog = LogStore<KvConfig>;
/// The test store's state machine.
pub type KvStateMachine = StateMachineStore<KvConfig, Kv>;
/// A Raft node of the test key-value store.
pub type KvRaft = Raft<KvConfig>;

/// Opens the test store in `dir`. After `Raft::shutdown` a snapshot build openraft spawned
/// may still hold the store (and so sled's file lock) for a moment; opening waits for it
/// to let go, within a deadline.
pub fn open(dir: &Path) -> (KvLog, KvStateMachine) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match floodgate_store::raft::open::<KvConfig, Kv>(dir) {
            Ok(store) => return store,
            Err(error)
                if error.to_string().contains("could not acquire lock")
                    || format!("{error:?}").contains("could not acquire lock") =>
            {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the store stayed locked: {error:?}"
                );
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(error) => panic!("open the store: {error:?}"),
        }
    }
}

/// A Raft config for one-member test clusters: quick elections, and a snapshot (with a log
/// purge) every `snapshot_every` entries.
pub fn raft_config(snapshot_every: u64) -> Arc<Config> {
    let config = Config {
        cluster_name: "floodgate-store-test".to_owned(),
        heartbeat_interval: 50,
        election_timeout_min: 100,
        election_timeout_max: 200,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(snapshot_every),
        max_in_snapshot_log_to_keep: 8,
        purge_batch_size: 1,
        ..Config::default()
    };
    Arc::new(config.validate().expect("valid raft config"))
}

/// The network of a one-member cluster: there is nobody to talk to.
pub struct NoPeers;

fn unreachable<E: std::error::Error>() -> RPCError<u64, BasicNode, E> {
    RPCError::Unreachable(Unreachable::new(&io::Error::other(
        "a one-member test cluster has no peers",
    )))
}

impl RaftNetworkFactory<KvConfig> for NoPeers {
    type Network = NoPeers;

    async fn new_client(&mut self, _target: u64, _node: &BasicNode) -> NoPeers {
        NoPeers
    }
}

impl RaftNetwork<KvConfig> for NoPeers {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<KvConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        Err(unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<KvConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        Err(unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        Err(unreachable())
    }
}

/// Starts member 1 of a one-member cluster on the store in `dir`, initializing the cluster
/// on first use, and waits (up to 10 s) until it leads.
pub async fn start_single(
    dir: &Path,
    snapshot_every: u64,
) -> (KvRaft, floodgate_store::raft::StateReader<KvConfig, Kv>) {
    let (log, state_machine) = open(dir);
    let reader = state_machine.reader();
    let raft = Raft::new(1, raft_config(snapshot_every), NoPeers, log, state_machine)
        .await
        .expect("start raft");
    if !raft.is_initialized().await.expect("raft is running") {
        let members = BTreeMap::from([(1u64, BasicNode::default())]);
        raft.initialize(members)
            .await
            .expect("initialize the cluster");
    }
    raft.wait(Some(std::time::Duration::from_secs(10)))
        .current_leader(1, "member 1 leads")
        .await
        .expect("member 1 becomes leader");
    (raft, reader)
}

/// Keeps `Cursor` in scope for `declare_raft_types!`, which names it unqualified.
type _SnapshotData = Cursor<Vec<u8>>;
