//! A small in-process cluster builder for the Raft tests: members on `127.0.0.1:0` with sled
//! in temp dirs, started, stopped and restarted from their data dir at the same address,
//! [`LedgerClient`]s over them, and waits on openraft's metrics with deadlines (never bare
//! sleeps).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use floodgate_cluster::token::ClusterToken;
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use floodgate_cluster::admin::EndpointValidator;
use floodgate_cluster::consensus::Committed;
use floodgate_cluster::consensus::Formation;
use floodgate_cluster::ledger::Team;
use floodgate_cluster::secrets::Keyring;
use floodgate_cluster::{
    ClientConfig, Command, LedgerClient, LedgerNode, LedgerNodeConfig, LedgerState,
};
use floodgate_proto::v1::ledger_service_client::LedgerServiceClient;
use openraft::RaftMetrics;
use openraft::ServerState;
use openraft::SnapshotPolicy;
use tempfile::TempDir;
use tonic::transport::Channel;

/// How long any awaited condition may take.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// How often the leader looks for expired leases in tests.
pub const EXPIRE_EVERY: Duration = Duration::from_millis(100);

/// Fast timing for tests; with `snapshot_every`, a snapshot every that many entries and
/// logs purged right behind it.
pub fn raft_config(snapshot_every: Option<u64>) -> openraft::Config {
    let mut config = openraft::Config {
        cluster_name: "floodgate-test".into(),
        heartbeat_interval: 50,
        election_timeout_min: 200,
        election_timeout_max: 400,
        install_snapshot_timeout: 1_000,
        ..Default::default()
    };
    if let Some(every) = snapshot_every {
        config.snapshot_policy = SnapshotPolicy::LogsSinceLast(every);
        config.max_in_snapshot_log_to_keep = 0;
        config.purge_batch_size = 1;
    }
    config
}

/// A team command whose effect is easy to check.
pub fn put_team(id: &str) -> Command {
    Command::PutTeam(Team {
        id: id.into(),
        name: format!("Team {id}"),
    })
}

/// Members by id, running or stopped.
pub struct TestCluster {
    raft: openraft::Config,
    keyring: Option<Keyring>,
    validator: Option<Arc<dyn EndpointValidator>>,
    token: Option<ClusterToken>,
    dirs: BTreeMap<u64, TempDir>,
    addrs: BTreeMap<u64, SocketAddr>,
    nodes: BTreeMap<u64, LedgerNode>,
}

impl TestCluster {
    /// Starts members `1..=voters` and forms the cluster on member 1.
    pub async fn start(voters: u64, snapshot_every: Option<u64>) -> Self {
        Self::start_with(voters, snapshot_every, None, None).await
    }

    /// Like [`Self::start`], every member with this keyring and endpoint validator for its
    /// `ConfigService`.
    pub async fn start_with(
        voters: u64,
        snapshot_every: Option<u64>,
        keyring: Option<Keyring>,
        validator: Option<Arc<dyn EndpointValidator>>,
    ) -> Self {
        Self::build(voters, snapshot_every, keyring, validator, None).await
    }

    /// Like [`Self::start`], every member requiring `token` on every gRPC call (and
    /// sending it to its peers).
    pub async fn start_guarded(voters: u64, token: ClusterToken) -> Self {
        Self::build(voters, None, None, None, Some(token)).await
    }

    async fn build(
        voters: u64,
        snapshot_every: Option<u64>,
        keyring: Option<Keyring>,
        validator: Option<Arc<dyn EndpointValidator>>,
        token: Option<ClusterToken>,
    ) -> Self {
        let mut cluster = Self {
            raft: raft_config(snapshot_every),
            keyring,
            validator,
            token,
            dirs: BTreeMap::new(),
            addrs: BTreeMap::new(),
            nodes: BTreeMap::new(),
        };
        for id in 1..=voters {
            cluster.add_member(id).await;
        }
        let members = cluster
            .addrs
            .iter()
            .map(|(id, addr)| (*id, addr.to_string()))
            .collect();
        let formation = cluster.node(1).initialize(members).await.unwrap();
        assert_eq!(formation, Formation::Formed);
        cluster
    }

    /// Starts a brand-new member `id` (empty data dir, port 0), not yet in the cluster.
    pub async fn add_member(&mut self, id: u64) -> SocketAddr {
        let dir = tempfile::tempdir().unwrap();
        let node = LedgerNode::start(self.config(id, dir.path(), "127.0.0.1:0".parse().unwrap()))
            .await
            .unwrap();
        let addr = node.addr();
        self.dirs.insert(id, dir);
        self.addrs.insert(id, addr);
        self.nodes.insert(id, node);
        addr
    }

    fn config(&self, id: u64, dir: &std::path::Path, listen: SocketAddr) -> LedgerNodeConfig {
        LedgerNodeConfig {
            id,
            data_dir: dir.to_path_buf(),
            listen,
            raft: self.raft.clone(),
            connect_timeout: Duration::from_millis(500),
            keyring: self.keyring.clone(),
            validator: self.validator.clone(),
            expire_every: EXPIRE_EVERY,
            alerts: None,
            token: self.token.clone(),
        }
    }

    /// Member `id`'s data dir (running or stopped).
    pub fn data_dir(&self, id: u64) -> &Path {
        self.dirs[&id].path()
    }

    /// Member `id`'s gRPC address.
    pub fn addr(&self, id: u64) -> SocketAddr {
        self.addrs[&id]
    }

    /// Shuts member `id` down (its data dir stays).
    pub async fn stop(&mut self, id: u64) {
        let node = self.nodes.remove(&id).expect("member is running");
        node.shutdown().await.unwrap();
    }

    /// Starts member `id` again from its data dir, at its old address.
    pub async fn restart(&mut self, id: u64) {
        let config = self.config(id, self.dirs[&id].path(), self.addrs[&id]);
        let node = LedgerNode::start(config).await.unwrap();
        self.nodes.insert(id, node);
    }

    /// A running member.
    pub fn node(&self, id: u64) -> &LedgerNode {
        self.nodes.get(&id).expect("member is running")
    }

    /// Ids of the running members.
    pub fn running(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// A gRPC client to member `id`'s `LedgerService`.
    pub async fn client(&self, id: u64) -> LedgerServiceClient<Channel> {
        LedgerServiceClient::connect(format!("http://{}", self.addrs[&id]))
            .await
            .unwrap()
    }

    /// Member `id`'s gRPC URL.
    pub fn url(&self, id: u64) -> String {
        format!("http://{}", self.addrs[&id])
    }

    /// A [`LedgerClient`] over `members`, in that order (it starts with the first), with
    /// test timings.
    pub fn ledger_client(&self, members: &[u64]) -> LedgerClient {
        let mut config = ClientConfig::new(members.iter().map(|id| self.url(*id)).collect());
        config.connect_timeout = Duration::from_millis(500);
        config.call_timeout = Duration::from_secs(2);
        config.failover_for = DEADLINE;
        config.token = self.token.clone();
        LedgerClient::new(config).unwrap()
    }

    /// Member `id`'s metrics once `condition` holds (panics after [`DEADLINE`]).
    pub async fn wait_for(
        &self,
        id: u64,
        what: &str,
        condition: impl Fn(&RaftMetrics<u64, openraft::BasicNode>) -> bool + Send,
    ) -> RaftMetrics<u64, openraft::BasicNode> {
        self.node(id)
            .handle()
            .raft()
            .wait(Some(DEADLINE))
            .metrics(condition, format!("member {id}: {what}"))
            .await
            .unwrap_or_else(|error| panic!("member {id}: {what}: {error}"))
    }

    /// Waits until every running member follows one leader among the running members, and
    /// returns it.
    pub async fn wait_leader(&self) -> u64 {
        let running: BTreeSet<u64> = self.nodes.keys().copied().collect();
        let first = *running.first().unwrap();
        let metrics = self
            .wait_for(first, "a running leader", |m| {
                m.current_leader.is_some_and(|l| running.contains(&l))
            })
            .await;
        let leader = metrics.current_leader.unwrap();
        self.wait_for(leader, "leading", |m| m.state == ServerState::Leader)
            .await;
        for id in &running {
            self.wait_for(*id, "following the leader", |m| {
                m.current_leader == Some(leader)
            })
            .await;
        }
        leader
    }

    /// A running member other than `leader`.
    pub fn follower(&self, leader: u64) -> u64 {
        self.running().into_iter().find(|id| *id != leader).unwrap()
    }

    /// Waits until member `id` has applied the entry at `index`.
    pub async fn wait_applied(&self, id: u64, index: u64) {
        self.node(id)
            .handle()
            .raft()
            .wait(Some(DEADLINE))
            .applied_index_at_least(Some(index), format!("member {id} applies {index}"))
            .await
            .unwrap_or_else(|error| panic!("member {id} applying {index}: {error}"));
    }

    /// Proposes `command` through member `id` (in process; forwarded if it is a follower)
    /// and checks the ledger accepted it.
    pub async fn write(&self, id: u64, command: Command) -> Committed {
        let committed = self
            .node(id)
            .handle()
            .propose(command, false)
            .await
            .unwrap();
        assert!(committed.outcome.is_ok(), "{committed:?}");
        committed
    }

    /// Runs `read` on member `id`'s applied state.
    pub fn read<T>(&self, id: u64, read: impl FnOnce(&LedgerState) -> T) -> T {
        self.node(id).handle().reader().read(read).unwrap()
    }

    /// Shuts every running member down.
    pub async fn shutdown(mut self) {
        for id in self.running() {
            self.stop(id).await;
        }
    }
}
