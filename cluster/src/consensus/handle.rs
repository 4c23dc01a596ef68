//! [`LedgerHandle`]: what a member does for clients, behind both the gRPC `LedgerService`
//! and in-process callers: propose a command (stamped with the leader's clock), change the
//! membership, read the applied state.
//!
//! A member that is not the leader **forwards** writes and membership changes to the leader
//! it knows, over the cached channel, marked `forwarded` so the leader never forwards them
//! again; with no leader known it fails with [`ProposeError::NoLeader`] (retryable). The
//! leader stamps a command with its own clock, so a forwarded command carries the leader's
//! time, never the follower's.

use std::collections::BTreeSet;

use floodgate_proto::v1::AddLearnerRequest;
use floodgate_proto::v1::ChangeMembershipRequest;
use floodgate_proto::v1::ProposeRequest;
use floodgate_proto::v1::ledger_service_client::LedgerServiceClient;
use openraft::BasicNode;
use openraft::error::ClientWriteError;
use openraft::error::ForwardToLeader;
use openraft::error::RaftError;
use openraft::raft::ClientWriteResponse;
use serde::de::DeserializeOwned;

use super::Channels;
use super::LedgerRaft;
use super::LedgerReader;
use super::NodeId;
use super::ProposeError;
use super::TypeConfig;
use super::now_millis;
use crate::{Command, Outcome, Proposal};

/// A command the ledger committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The Raft log index it was applied at.
    pub index: u64,
    /// The leader that committed it.
    pub leader_id: NodeId,
    /// What the ledger answered (accepted, or refused by the ledger's rules).
    pub outcome: Outcome,
}

/// A committed membership change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipChanged {
    /// The Raft log index of the membership entry.
    pub index: u64,
    /// The membership after the change, serde_json-encoded.
    pub membership_json: Vec<u8>,
}

/// A member's client-facing operations. Cheap to clone.
#[derive(Clone)]
pub struct LedgerHandle {
    id: NodeId,
    raft: LedgerRaft,
    reader: LedgerReader,
    channels: Channels,
}

/// Where a write goes when this member is not the leader.
enum Route {
    /// Forward to this leader.
    Forward(NodeId, String),
    /// Give up with this error.
    Fail(ProposeError),
}

impl LedgerHandle {
    /// A handle over a running member's Raft and state.
    pub fn new(id: NodeId, raft: LedgerRaft, reader: LedgerReader, channels: Channels) -> Self {
        Self {
            id,
            raft,
            reader,
            channels,
        }
    }

    /// This member's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The member's openraft handle.
    pub fn raft(&self) -> &LedgerRaft {
        &self.raft
    }

    /// Read access to the member's applied state (possibly behind the leader).
    pub fn reader(&self) -> &LedgerReader {
        &self.reader
    }

    /// Proposes `command`: committed by the leader (forwarded there unless `forwarded`).
    pub async fn propose(
        &self,
        command: Command,
        forwarded: bool,
    ) -> Result<Committed, ProposeError> {
        let proposal = Proposal {
            at: now_millis(),
            command: command.clone(),
        };
        let error = match self.raft.client_write(proposal).await {
            Ok(response) => return committed(self.id, response),
            Err(error) => error,
        };
        let (leader_id, addr) = match route_of(self.id, error, forwarded) {
            Route::Fail(error) => return Err(error),
            Route::Forward(leader_id, addr) => (leader_id, addr),
        };
        let command_json = serde_json::to_vec(&command).map_err(|source| ProposeError::Codec {
            what: "a command",
            source,
        })?;
        let request = ProposeRequest {
            command_json,
            forwarded: true,
        };
        let mut client = self.client(leader_id, &addr)?;
        let reply = client
            .propose(request)
            .await
            .map_err(|status| forward_error(leader_id, &addr, status))?
            .into_inner();
        Ok(Committed {
            index: reply.index,
            leader_id: reply.leader_id,
            outcome: decode("an outcome", &reply.outcome_json)?,
        })
    }

    /// Adds member `id` at `addr` as a learner (on the leader; forwarded unless
    /// `forwarded`). With `blocking`, returns once the learner has caught up.
    pub async fn add_learner(
        &self,
        id: NodeId,
        addr: String,
        blocking: bool,
        forwarded: bool,
    ) -> Result<MembershipChanged, ProposeError> {
        let route = match self.remote_leader(forwarded) {
            Some(route) => route,
            None => {
                let node = BasicNode { addr: addr.clone() };
                match self.raft.add_learner(id, node, blocking).await {
                    Ok(response) => return membership_changed(&response),
                    Err(error) => route_of(self.id, error, forwarded),
                }
            }
        };
        match route {
            Route::Fail(error) => Err(error),
            Route::Forward(leader_id, leader_addr) => {
                let request = AddLearnerRequest {
                    node_id: id,
                    addr,
                    blocking,
                    forwarded: true,
                };
                let mut client = self.client(leader_id, &leader_addr)?;
                let reply = client
                    .add_learner(request)
                    .await
                    .map_err(|status| forward_error(leader_id, &leader_addr, status))?
                    .into_inner();
                Ok(MembershipChanged {
                    index: reply.index,
                    membership_json: reply.membership_json,
                })
            }
        }
    }

    /// Makes `voters` the voter set (on the leader; forwarded unless `forwarded`). With
    /// `retain`, removed voters stay as learners.
    pub async fn change_membership(
        &self,
        voters: BTreeSet<NodeId>,
        retain: bool,
        forwarded: bool,
    ) -> Result<MembershipChanged, ProposeError> {
        let route = match self.remote_leader(forwarded) {
            Some(route) => route,
            None => match self.raft.change_membership(voters.clone(), retain).await {
                Ok(response) => return membership_changed(&response),
                Err(error) => route_of(self.id, error, forwarded),
            },
        };
        match route {
            Route::Fail(error) => Err(error),
            Route::Forward(leader_id, leader_addr) => {
                let request = ChangeMembershipRequest {
                    voters: voters.into_iter().collect(),
                    retain,
                    forwarded: true,
                };
                let mut client = self.client(leader_id, &leader_addr)?;
                let reply = client
                    .change_membership(request)
                    .await
                    .map_err(|status| forward_error(leader_id, &leader_addr, status))?
                    .into_inner();
                Ok(MembershipChanged {
                    index: reply.index,
                    membership_json: reply.membership_json,
                })
            }
        }
    }

    /// Where a membership change goes when another member is known to lead: a follower's
    /// openraft may refuse one with its own (stale) view of a change in progress instead of
    /// pointing at the leader, so followers forward before asking their local Raft.
    fn remote_leader(&self, forwarded: bool) -> Option<Route> {
        let metrics = self.raft.metrics().borrow().clone();
        let leader_id = metrics.current_leader?;
        if leader_id == self.id || forwarded {
            return None;
        }
        let node = metrics
            .membership_config
            .membership()
            .get_node(&leader_id)?;
        Some(Route::Forward(leader_id, node.addr.clone()))
    }

    fn client(
        &self,
        leader_id: NodeId,
        addr: &str,
    ) -> Result<LedgerServiceClient<crate::token::AuthChannel>, ProposeError> {
        let channel =
            self.channels
                .get(leader_id, addr)
                .map_err(|error| ProposeError::Forward {
                    leader_id,
                    addr: addr.to_owned(),
                    status: Box::new(tonic::Status::unavailable(error.to_string())),
                })?;
        Ok(LedgerServiceClient::new(channel))
    }
}

/// Decides where a write refused by the local Raft goes: forward to a known leader (once),
/// or fail.
fn route_of(
    id: NodeId,
    error: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
    forwarded: bool,
) -> Route {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(ForwardToLeader {
            leader_id: Some(leader_id),
            leader_node: Some(node),
        })) if !forwarded && leader_id != id => Route::Forward(leader_id, node.addr),
        RaftError::APIError(ClientWriteError::ForwardToLeader(ForwardToLeader {
            leader_id: None,
            ..
        })) => Route::Fail(ProposeError::NoLeader),
        error => Route::Fail(error.into()),
    }
}

fn committed(
    id: NodeId,
    response: ClientWriteResponse<TypeConfig>,
) -> Result<Committed, ProposeError> {
    let index = response.log_id.index;
    let outcome = response
        .data
        .outcome
        .ok_or(ProposeError::NoOutcome { index })?;
    Ok(Committed {
        index,
        leader_id: id,
        outcome,
    })
}

fn membership_changed(
    response: &ClientWriteResponse<TypeConfig>,
) -> Result<MembershipChanged, ProposeError> {
    let membership_json =
        serde_json::to_vec(&response.membership).map_err(|source| ProposeError::Codec {
            what: "a membership",
            source,
        })?;
    Ok(MembershipChanged {
        index: response.log_id.index,
        membership_json,
    })
}

fn forward_error(leader_id: NodeId, addr: &str, status: tonic::Status) -> ProposeError {
    ProposeError::Forward {
        leader_id,
        addr: addr.to_owned(),
        status: Box::new(status),
    }
}

/// Decodes serde_json `bytes`; `what` names them in the error.
pub(crate) fn decode<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, ProposeError> {
    serde_json::from_slice(bytes).map_err(|source| ProposeError::Codec { what, source })
}
