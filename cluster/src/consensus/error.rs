//! Errors of a ledger member: [`LedgerNodeError`] (starting, forming and stopping a member)
//! and [`ProposeError`] (writes and membership changes), and how the latter becomes a gRPC
//! status at the service edge.

use std::net::SocketAddr;
use std::path::PathBuf;

use floodgate_store::StoreError;
use openraft::BasicNode;
use openraft::ConfigError;
use openraft::error::ClientWriteError;
use openraft::error::Fatal;
use openraft::error::InitializeError;
use openraft::error::RaftError;

use super::NodeId;

/// The gRPC metadata key under which an `UNAVAILABLE` status names the leader's gRPC
/// `host:port` when the answering member knows it, so clients can go there next.
pub const LEADER_METADATA: &str = "floodgate-leader-addr";

/// Starting, initializing or shutting down a [`super::LedgerNode`] failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerNodeError {
    /// The Raft config is invalid.
    #[error("invalid Raft config: {0}")]
    Config(#[from] ConfigError),
    /// `expire_every` is zero.
    #[error("invalid ledger config: expire_every must be greater than zero")]
    ExpireEvery,
    /// The data dir could not be opened.
    #[error("opening the ledger store in {path}: {source}")]
    Store {
        /// The data dir.
        path: PathBuf,
        /// Why.
        source: StoreError,
    },
    /// The listen address could not be bound.
    #[error("binding the ledger's gRPC address {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// openraft stopped with a fatal error.
    #[error("Raft failed: {0}")]
    Raft(#[from] Fatal<NodeId>),
    /// Forming the cluster failed (e.g. this member is not among the voters).
    #[error("initializing the cluster: {0}")]
    Initialize(#[from] RaftError<NodeId, InitializeError<NodeId, BasicNode>>),
    /// The Raft core task panicked or was cancelled while stopping.
    #[error("stopping Raft: {0}")]
    Shutdown(String),
    /// The gRPC server failed.
    #[error("ledger gRPC server: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// A proposal or membership change failed.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// A command, outcome or membership could not be encoded or decoded.
    #[error("encoding or decoding {what}: {source}")]
    Codec {
        /// What was being coded.
        what: &'static str,
        /// Why.
        source: serde_json::Error,
    },
    /// No leader is known right now (an election is under way): retry.
    #[error("no ledger leader is known; retry")]
    NoLeader,
    /// The leader refused or the forwarded call failed.
    #[error("forwarding to leader {leader_id} at {addr}: {status}")]
    Forward {
        /// The leader forwarded to.
        leader_id: NodeId,
        /// Its address.
        addr: String,
        /// The gRPC status it (or the transport) returned.
        status: Box<tonic::Status>,
    },
    /// openraft refused (not the leader and no forwarding allowed, a membership change in
    /// progress, or a fatal error).
    #[error(transparent)]
    Raft(Box<RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>>),
    /// The committed entry answered without an outcome (cannot happen for a command).
    #[error("the entry at index {index} answered no outcome")]
    NoOutcome {
        /// The entry.
        index: u64,
    },
}

impl ProposeError {
    /// The gRPC status a client sees: retryable conditions are `UNAVAILABLE` (with the
    /// leader's address when known, in the message and under [`LEADER_METADATA`]), a bad
    /// request `INVALID_ARGUMENT`, a refused membership change `FAILED_PRECONDITION`.
    pub fn to_status(&self) -> tonic::Status {
        let message = self.to_string();
        match self {
            Self::Codec { .. } => tonic::Status::invalid_argument(message),
            Self::NoLeader => tonic::Status::unavailable(message),
            Self::Forward { status, .. } => {
                let mut relayed = tonic::Status::new(status.code(), message);
                if let Some(leader) = status.metadata().get(LEADER_METADATA) {
                    relayed
                        .metadata_mut()
                        .insert(LEADER_METADATA, leader.clone());
                }
                relayed
            }
            Self::Raft(error) => match error.as_ref() {
                RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
                    let Some(node) = forward.leader_node.as_ref() else {
                        return tonic::Status::unavailable(message);
                    };
                    let mut status =
                        tonic::Status::unavailable(format!("{message} (leader at {})", node.addr));
                    if let Ok(addr) = node.addr.parse() {
                        status.metadata_mut().insert(LEADER_METADATA, addr);
                    }
                    status
                }
                RaftError::APIError(ClientWriteError::ChangeMembershipError(_)) => {
                    tonic::Status::failed_precondition(message)
                }
                RaftError::Fatal(_) => tonic::Status::internal(message),
            },
            Self::NoOutcome { .. } => tonic::Status::internal(message),
        }
    }
}

impl From<RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>> for ProposeError {
    fn from(error: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> Self {
        Self::Raft(Box::new(error))
    }
}
