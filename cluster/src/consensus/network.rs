//! openraft's network over gRPC: [`GrpcNetworkFactory`] and [`GrpcNetwork`] send
//! AppendEntries, Vote and InstallSnapshot (chunked, openraft's default) to a peer's
//! `RaftService`, with openraft's request types as serde_json bytes (see `floodgate-proto`).
//!
//! Every call uses the peer's cached channel ([`super::Channels`]) and is bounded by
//! openraft's hard TTL for the RPC. Errors map to what openraft expects:
//!
//! * the peer could not be reached (connection refused, channel unavailable) →
//!   `RPCError::Unreachable`, so openraft backs off before retrying;
//! * no answer within the TTL → `RPCError::Timeout`;
//! * the peer's Raft refused → `RPCError::RemoteError` with the peer's `RaftError`;
//! * anything else (bad bytes, other gRPC statuses) → `RPCError::Network`.

use std::error::Error;
use std::time::Duration;

use floodgate_proto::v1::RaftReply;
use floodgate_proto::v1::RaftRequest;
use floodgate_proto::v1::raft_reply;
use floodgate_proto::v1::raft_service_client::RaftServiceClient;
use openraft::BasicNode;
use openraft::RaftNetwork;
use openraft::RaftNetworkFactory;
use openraft::error::InstallSnapshotError;
use openraft::error::NetworkError;
use openraft::error::RPCError;
use openraft::error::RaftError;
use openraft::error::RemoteError;
use openraft::error::Timeout;
use openraft::error::Unreachable;
use openraft::network::RPCOption;
use openraft::network::RPCTypes;
use openraft::raft::AppendEntriesRequest;
use openraft::raft::AppendEntriesResponse;
use openraft::raft::InstallSnapshotRequest;
use openraft::raft::InstallSnapshotResponse;
use openraft::raft::VoteRequest;
use openraft::raft::VoteResponse;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Channels;
use super::NodeId;
use super::TypeConfig;

/// An RPC error as openraft's network returns it.
type RpcError<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

/// Creates a [`GrpcNetwork`] per peer, all sharing one channel cache.
#[derive(Clone)]
pub struct GrpcNetworkFactory {
    id: NodeId,
    channels: Channels,
}

impl GrpcNetworkFactory {
    /// The network of member `id`, over `channels`.
    pub fn new(id: NodeId, channels: Channels) -> Self {
        Self { id, channels }
    }
}

impl RaftNetworkFactory<TypeConfig> for GrpcNetworkFactory {
    type Network = GrpcNetwork;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> GrpcNetwork {
        GrpcNetwork {
            id: self.id,
            target,
            node: node.clone(),
            channels: self.channels.clone(),
        }
    }
}

/// The connection from one member to one peer.
pub struct GrpcNetwork {
    id: NodeId,
    target: NodeId,
    node: BasicNode,
    channels: Channels,
}

impl GrpcNetwork {
    async fn call<Req, Resp, E>(
        &self,
        action: RPCTypes,
        rpc: &Req,
        ttl: Duration,
    ) -> Result<Resp, RpcError<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: Error + DeserializeOwned,
    {
        let json = serde_json::to_vec(rpc).map_err(|error| network(&error))?;
        let channel = self
            .channels
            .get(self.target, &self.node.addr)
            .map_err(|error| RPCError::Unreachable(Unreachable::new(&error)))?;
        let mut client = RaftServiceClient::new(channel);
        let request = RaftRequest { json };
        let call = async move {
            match action {
                RPCTypes::AppendEntries => client.append_entries(request).await,
                RPCTypes::Vote => client.vote(request).await,
                RPCTypes::InstallSnapshot => client.install_snapshot(request).await,
            }
        };
        let reply: RaftReply = match tokio::time::timeout(ttl, call).await {
            Err(_elapsed) => {
                return Err(RPCError::Timeout(Timeout {
                    action,
                    id: self.id,
                    target: self.target,
                    timeout: ttl,
                }));
            }
            Ok(Err(status)) => return Err(status_error(status)),
            Ok(Ok(reply)) => reply.into_inner(),
        };
        match reply.result {
            Some(raft_reply::Result::OkJson(bytes)) => {
                serde_json::from_slice(&bytes).map_err(|error| network(&error))
            }
            Some(raft_reply::Result::ErrJson(bytes)) => {
                let error: RaftError<NodeId, E> =
                    serde_json::from_slice(&bytes).map_err(|error| network(&error))?;
                Err(RPCError::RemoteError(RemoteError::new_with_node(
                    self.target,
                    self.node.clone(),
                    error,
                )))
            }
            None => Err(network(&tonic::Status::internal(
                "the peer's Raft reply holds neither a response nor an error",
            ))),
        }
    }
}

impl RaftNetwork<TypeConfig> for GrpcNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcError> {
        self.call(RPCTypes::AppendEntries, &rpc, option.hard_ttl())
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcError<InstallSnapshotError>> {
        self.call(RPCTypes::InstallSnapshot, &rpc, option.hard_ttl())
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcError> {
        self.call(RPCTypes::Vote, &rpc, option.hard_ttl()).await
    }
}

fn network<E: Error + 'static, F: Error>(error: &E) -> RpcError<F> {
    RPCError::Network(NetworkError::new(error))
}

/// A gRPC status from the transport or the peer: unreachable when the peer could not be
/// reached, a network error otherwise.
fn status_error<E: Error>(status: tonic::Status) -> RpcError<E> {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Cancelled => {
            RPCError::Unreachable(Unreachable::new(&status))
        }
        _ => network(&status),
    }
}
