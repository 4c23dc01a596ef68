//! The ledger's tonic services: [`RaftGrpc`] feeds openraft's RPCs from peers into the
//! local `Raft`; [`LedgerGrpc`] serves clients and admins (propose, read, watch,
//! membership, metrics) through a [`LedgerHandle`]. Both decode serde_json payloads (see
//! `floodgate-proto`) and map failures to gRPC statuses; neither holds state of its own.

use std::collections::BTreeSet;

use floodgate_proto::v1::AddLearnerRequest;
use floodgate_proto::v1::AdminReply;
use floodgate_proto::v1::ChangeMembershipRequest;
use floodgate_proto::v1::MetricsReply;
use floodgate_proto::v1::MetricsRequest;
use floodgate_proto::v1::ProposeReply;
use floodgate_proto::v1::ProposeRequest;
use floodgate_proto::v1::RaftReply;
use floodgate_proto::v1::RaftRequest;
use floodgate_proto::v1::ReadReply;
use floodgate_proto::v1::ReadRequest;
use floodgate_proto::v1::WatchRequest;
use floodgate_proto::v1::ledger_service_server::LedgerService;
use floodgate_proto::v1::raft_reply;
use floodgate_proto::v1::raft_service_server::RaftService;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::Request;
use tonic::Response;
use tonic::Status;

use super::LedgerHandle;
use super::LedgerRaft;
use super::MembershipChanged;
use super::handle::decode;
use super::watch::SnapshotStream;
use super::watch::config_snapshots;
use crate::Command;

/// The `RaftService`: openraft's peer RPCs into the local Raft.
pub struct RaftGrpc {
    raft: LedgerRaft,
}

impl RaftGrpc {
    /// The service for `raft`.
    pub fn new(raft: LedgerRaft) -> Self {
        Self { raft }
    }
}

#[tonic::async_trait]
impl RaftService for RaftGrpc {
    async fn append_entries(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let rpc = decode_request(&request.into_inner().json)?;
        raft_reply(self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let rpc = decode_request(&request.into_inner().json)?;
        raft_reply(self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let rpc = decode_request(&request.into_inner().json)?;
        raft_reply(self.raft.install_snapshot(rpc).await)
    }
}

fn decode_request<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Status> {
    serde_json::from_slice(bytes)
        .map_err(|error| Status::invalid_argument(format!("undecodable Raft request: {error}")))
}

fn encode<T: Serialize>(what: &str, value: &T) -> Result<Vec<u8>, Status> {
    serde_json::to_vec(value).map_err(|error| Status::internal(format!("encoding {what}: {error}")))
}

/// Carries openraft's answer, success or `RaftError`, back to the calling peer.
fn raft_reply<T: Serialize, E: Serialize>(
    result: Result<T, E>,
) -> Result<Response<RaftReply>, Status> {
    let result = match result {
        Ok(response) => raft_reply::Result::OkJson(encode("a Raft response", &response)?),
        Err(error) => raft_reply::Result::ErrJson(encode("a Raft error", &error)?),
    };
    Ok(Response::new(RaftReply {
        result: Some(result),
    }))
}

/// The `LedgerService`: writes (forwarded to the leader), reads, config watches and
/// membership admin.
pub struct LedgerGrpc {
    handle: LedgerHandle,
}

impl LedgerGrpc {
    /// The service over `handle`.
    pub fn new(handle: LedgerHandle) -> Self {
        Self { handle }
    }
}

#[tonic::async_trait]
impl LedgerService for LedgerGrpc {
    async fn propose(
        &self,
        request: Request<ProposeRequest>,
    ) -> Result<Response<ProposeReply>, Status> {
        let request = request.into_inner();
        let command: Command =
            decode("a command", &request.command_json).map_err(|error| error.to_status())?;
        let committed = self
            .handle
            .propose(command, request.forwarded)
            .await
            .map_err(|error| error.to_status())?;
        Ok(Response::new(ProposeReply {
            index: committed.index,
            outcome_json: encode("an outcome", &committed.outcome)?,
            leader_id: committed.leader_id,
        }))
    }

    async fn read(&self, request: Request<ReadRequest>) -> Result<Response<ReadReply>, Status> {
        let full = request.into_inner().full;
        let reader = self.handle.reader();
        let unavailable = |error: floodgate_store::StoreError| Status::internal(error.to_string());
        let (revision, config_revision, state_json) = reader
            .read(|state| {
                let json = if full {
                    serde_json::to_vec(state).map_err(|error| {
                        Status::internal(format!("encoding the ledger state: {error}"))
                    })
                } else {
                    Ok(Vec::new())
                };
                json.map(|json| (state.revision(), state.config_revision(), json))
            })
            .map_err(unavailable)??;
        let applied_index = reader
            .last_applied()
            .map_err(unavailable)?
            .map_or(0, |log_id| log_id.index);
        Ok(Response::new(ReadReply {
            revision,
            config_revision,
            applied_index,
            node_id: self.handle.id(),
            leader_id: self.handle.raft().current_leader().await,
            state_json,
        }))
    }

    type WatchStream = SnapshotStream;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<SnapshotStream>, Status> {
        let after = request.into_inner().after_config_revision;
        Ok(Response::new(config_snapshots(&self.handle, after)))
    }

    async fn add_learner(
        &self,
        request: Request<AddLearnerRequest>,
    ) -> Result<Response<AdminReply>, Status> {
        let request = request.into_inner();
        let changed = self
            .handle
            .add_learner(
                request.node_id,
                request.addr,
                request.blocking,
                request.forwarded,
            )
            .await
            .map_err(|error| error.to_status())?;
        Ok(admin_reply(changed))
    }

    async fn change_membership(
        &self,
        request: Request<ChangeMembershipRequest>,
    ) -> Result<Response<AdminReply>, Status> {
        let request = request.into_inner();
        let voters: BTreeSet<u64> = request.voters.into_iter().collect();
        let changed = self
            .handle
            .change_membership(voters, request.retain, request.forwarded)
            .await
            .map_err(|error| error.to_status())?;
        Ok(admin_reply(changed))
    }

    async fn metrics(
        &self,
        _request: Request<MetricsRequest>,
    ) -> Result<Response<MetricsReply>, Status> {
        let metrics = self.handle.raft().metrics().borrow().clone();
        Ok(Response::new(MetricsReply {
            metrics_json: encode("the Raft metrics", &metrics)?,
        }))
    }
}

fn admin_reply(changed: MembershipChanged) -> Response<AdminReply> {
    Response::new(AdminReply {
        index: changed.index,
        membership_json: changed.membership_json,
    })
}
