//! [`LedgerNode`]: one running ledger member: its sled store, its openraft `Raft`, and a
//! tonic server with the `RaftService`, `LedgerService` and `ConfigService` on one address.
//!
//! Life of a member: [`LedgerNode::start`] opens the data dir (resuming whatever log,
//! vote and snapshot it holds), binds the listen address (port 0 is fine: read the bound
//! address with [`LedgerNode::addr`]) and starts Raft and the server. A brand-new cluster is
//! formed once with [`LedgerNode::initialize`] (on one member, or on each first member with
//! the same voters: the members that lose the race join the one that won); later members
//! join as learners and are promoted through the admin API. While it leads, a member's
//! [`ExpiryTimer`] proposes `ExpireLeases` when leases or budget windows are due.
//! [`LedgerNode::shutdown`] stops the expiry timer, then Raft (no more log writes; open
//! `Watch` streams end), then the server, and releases the data dir so the member can be
//! started again from it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use floodgate_proto::v1::config_service_server::ConfigServiceServer;
use floodgate_proto::v1::ledger_service_server::LedgerServiceServer;
use floodgate_proto::v1::raft_service_server::RaftServiceServer;
use openraft::BasicNode;
use openraft::Raft;
use openraft::error::InitializeError;
use openraft::error::RaftError;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::InterceptorLayer;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use super::Channels;
use super::LedgerHandle;
use super::LedgerNodeError;
use super::NodeId;
use super::TypeConfig;
use super::alerts::AlertSender;
use super::expiry::ExpiryTimer;
use super::network::GrpcNetworkFactory;
use super::server::LedgerGrpc;
use super::server::RaftGrpc;
use crate::LedgerState;
use crate::admin::{Admin, ConfigGrpc, EndpointValidator};
use crate::secrets::Keyring;
use crate::token::{self, ClusterToken};

/// How long [`LedgerNode::shutdown`] lets open gRPC calls drain before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How often the leader checks for expired leases and budget windows, unless configured.
pub const DEFAULT_EXPIRE_EVERY: Duration = Duration::from_secs(1);

/// How long connecting to a peer may take, unless configured.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// What a member needs to start.
#[derive(Debug, Clone)]
pub struct LedgerNodeConfig {
    /// The member's id, unique in the cluster and stable across restarts.
    pub id: NodeId,
    /// The sled data dir (created if missing; locked while the member runs).
    pub data_dir: PathBuf,
    /// The gRPC listen address (port 0 picks a free port).
    pub listen: SocketAddr,
    /// openraft's config (election and heartbeat timing, snapshot and purge policy);
    /// validated at start.
    pub raft: openraft::Config,
    /// How long connecting to a peer may take.
    pub connect_timeout: Duration,
    /// The key-encryption keys that seal credentials written through this member's
    /// `ConfigService`; without them credential writes fail with `kek_missing`.
    pub keyring: Option<Keyring>,
    /// Checks endpoints written through the `ConfigService` (the edge's validator).
    pub validator: Option<Arc<dyn EndpointValidator>>,
    /// How often the leader checks whether leases or budget windows are due for
    /// `ExpireLeases` and sends pending budget alerts (non-zero; [`DEFAULT_EXPIRE_EVERY`]
    /// by default).
    pub expire_every: Duration,
    /// The cluster token every gRPC call to and from this member must carry (none: no
    /// check; the port must then be reachable only by trusted hosts).
    pub token: Option<ClusterToken>,
    /// Delivers budget alerts to their webhooks while this member leads (none: alerts stay
    /// pending until a member with a sender leads).
    pub alerts: Option<Arc<dyn AlertSender>>,
}

impl LedgerNodeConfig {
    /// Member `id` with data in `data_dir`, listening on `listen`, with openraft's default
    /// config, [`DEFAULT_CONNECT_TIMEOUT`] and [`DEFAULT_EXPIRE_EVERY`].
    pub fn new(id: NodeId, data_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        Self {
            id,
            data_dir: data_dir.into(),
            listen,
            raft: openraft::Config::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            expire_every: DEFAULT_EXPIRE_EVERY,
            keyring: None,
            validator: None,
            alerts: None,
            token: None,
        }
    }
}

/// What [`LedgerNode::initialize`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Formation {
    /// This member wrote the initial membership: it forms the cluster.
    Formed,
    /// This member already belonged to a cluster, possibly one a peer formed first; the
    /// leader replicates the membership to it.
    Joined,
}

/// A running ledger member.
pub struct LedgerNode {
    handle: LedgerHandle,
    addr: SocketAddr,
    stop_server: Option<oneshot::Sender<()>>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    expiry: ExpiryTimer,
}

impl LedgerNode {
    /// Opens the store, binds the address and starts Raft and the gRPC server.
    pub async fn start(config: LedgerNodeConfig) -> Result<Self, LedgerNodeError> {
        let raft_config = Arc::new(config.raft.validate()?);
        if config.expire_every.is_zero() {
            return Err(LedgerNodeError::ExpireEvery);
        }
        let (log, state_machine) = floodgate_store::raft::open::<TypeConfig, LedgerState>(
            &config.data_dir,
        )
        .map_err(|source| LedgerNodeError::Store {
            path: config.data_dir.clone(),
            source,
        })?;
        let reader = state_machine.reader();
        let bind_error = |source| LedgerNodeError::Bind {
            addr: config.listen,
            source,
        };
        let listener = TcpListener::bind(config.listen).await.map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let channels = Channels::new(config.connect_timeout, config.token.as_ref());
        let network = GrpcNetworkFactory::new(config.id, channels.clone());
        let raft = Raft::new(config.id, raft_config, network, log, state_machine).await?;
        let handle = LedgerHandle::new(config.id, raft.clone(), reader, channels);
        let admin = Admin::new(handle.clone(), config.keyring, config.validator);
        let (stop_server, stopped) = oneshot::channel::<()>();
        let router = Server::builder()
            .layer(InterceptorLayer::new(token::check(config.token.clone())))
            .add_service(RaftServiceServer::new(RaftGrpc::new(raft)))
            .add_service(LedgerServiceServer::new(LedgerGrpc::new(handle.clone())))
            .add_service(ConfigServiceServer::new(ConfigGrpc::new(admin)));
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
            // A dropped sender stops the server too.
            let _ = stopped.await;
        }));
        let expiry = ExpiryTimer::start(handle.clone(), config.expire_every, config.alerts);
        tracing::info!(id = config.id, %addr, "ledger member started");
        Ok(Self {
            handle,
            addr,
            stop_server: Some(stop_server),
            server,
            expiry,
        })
    }

    /// Forms a new cluster with these voters (id → gRPC `host:port`). Safe to call on every
    /// first member with the same voters: a member that already belongs to a cluster (it
    /// has a log, or it has already voted for a peer that formed the cluster — which can
    /// happen as soon as it listens, before this call) is left as it is and answers
    /// [`Formation::Joined`].
    pub async fn initialize(
        &self,
        voters: BTreeMap<NodeId, String>,
    ) -> Result<Formation, LedgerNodeError> {
        let members: BTreeMap<NodeId, BasicNode> = voters
            .into_iter()
            .map(|(id, addr)| (id, BasicNode { addr }))
            .collect();
        match self.handle.raft().initialize(members).await {
            Ok(()) => Ok(Formation::Formed),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(Formation::Joined),
            Err(error) => Err(error.into()),
        }
    }

    /// The member's id.
    pub fn id(&self) -> NodeId {
        self.handle.id()
    }

    /// The bound gRPC address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The member's client operations (propose, membership, reads).
    pub fn handle(&self) -> &LedgerHandle {
        &self.handle
    }

    /// Stops the expiry timer, Raft (which ends open `Watch` streams), then the gRPC server
    /// (open calls get `SHUTDOWN_GRACE` (2 s) to finish), and releases the data dir.
    pub async fn shutdown(mut self) -> Result<(), LedgerNodeError> {
        self.expiry.stop().await;
        let raft_result = self.handle.raft().shutdown().await;
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(());
        }
        let served = match tokio::time::timeout(SHUTDOWN_GRACE, &mut self.server).await {
            Ok(Ok(served)) => served.map_err(LedgerNodeError::Serve),
            Ok(Err(join)) => Err(LedgerNodeError::Shutdown(join.to_string())),
            Err(_elapsed) => {
                self.server.abort();
                // Wait for the aborted task, so the services (and their store handles) are
                // dropped before this returns.
                let _ = (&mut self.server).await;
                Ok(())
            }
        };
        tracing::info!(id = self.handle.id(), "ledger member stopped");
        raft_result.map_err(|join| LedgerNodeError::Shutdown(join.to_string()))?;
        served
    }
}
