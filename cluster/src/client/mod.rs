//! [`LedgerClient`]: how edges and `floodgate ctl` talk to the ledger over gRPC.
//!
//! Built from the members' URLs (`http://host:port`), it keeps one lazily-connected tonic
//! channel per member and bounds every attempt by a call timeout. Calls fail over
//! (`members`): on `UNAVAILABLE` (member unreachable, or no leader to commit with) they go
//! to the leader the member named, else to the next member, backing off after each full
//! round, until the failover deadline. Writes are never re-sent after a timeout or an
//! ambiguous transport failure (the command may have been committed); reads are.
//! [`LedgerClient::watch`] is an endless, self-healing stream of config snapshots
//! ([`watch`]).
//!
//! Module map: [`backoff`] (capped jittered backoff), [`error`] ([`ClientError`]),
//! `members` (channels and failover), [`watch`] (the resuming watch stream). This module
//! holds no ledger semantics: commands and outcomes are [`crate::ledger`]'s.

pub mod backoff;
pub mod error;
mod members;
pub mod watch;

use std::collections::BTreeSet;
use std::time::Duration;

use floodgate_proto::v1::AddLearnerRequest;
use floodgate_proto::v1::ChangeMembershipRequest;
use floodgate_proto::v1::MetricsRequest;
use floodgate_proto::v1::ProposeRequest;
use floodgate_proto::v1::ReadRequest;
use futures::stream::BoxStream;
use openraft::BasicNode;
use openraft::RaftMetrics;

pub use self::backoff::Backoff;
pub use self::error::ClientError;
use self::members::Members;
use self::members::Policy;
pub use self::watch::ConfigUpdate;
use crate::consensus::Committed;
use crate::consensus::MembershipChanged;
use crate::consensus::NodeId;
use crate::ledger::{Effect, Lease, LeaseRequest, Refusal, SettleResult, Settlement};
use crate::token::ClusterToken;
use crate::{Command, LedgerState, Outcome};

/// What a [`LedgerClient`] needs.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The members' gRPC URLs, `http://host:port`.
    pub members: Vec<String>,
    /// How long connecting to a member may take.
    pub connect_timeout: Duration,
    /// How long one attempt (or opening a watch) may take.
    pub call_timeout: Duration,
    /// How long one call keeps failing over before it gives up.
    pub failover_for: Duration,
    /// The pause after a full round of members failed, and between watch reconnects.
    pub backoff: Backoff,
    /// The cluster token to send (none: send nothing).
    pub token: Option<ClusterToken>,
}

impl ClientConfig {
    /// `members` with a 1 s connect timeout, a 5 s call timeout, 10 s of failover and the
    /// default [`Backoff`].
    pub fn new(members: Vec<String>) -> Self {
        Self {
            members,
            connect_timeout: Duration::from_secs(1),
            call_timeout: Duration::from_secs(5),
            failover_for: Duration::from_secs(10),
            backoff: Backoff::default(),
            token: None,
        }
    }
}

/// A member's state summary, from [`LedgerClient::read`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadSummary {
    /// The ledger revision.
    pub revision: u64,
    /// The config revision.
    pub config_revision: u64,
    /// The last Raft log index the member applied.
    pub applied_index: u64,
    /// The member that answered.
    pub node_id: NodeId,
    /// The leader that member knows of.
    pub leader_id: Option<NodeId>,
    /// The whole state, when asked for.
    pub state: Option<LedgerState>,
}

/// A client of the ledger's `LedgerService`. Cheap to clone; clones share channels.
#[derive(Clone)]
pub struct LedgerClient {
    members: Members,
    policy: Policy,
}

impl LedgerClient {
    /// A client of the members in `config`; connects on first use.
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        Ok(Self {
            members: Members::new(
                &config.members,
                config.connect_timeout,
                config.token.as_ref(),
            )?,
            policy: Policy {
                call_timeout: config.call_timeout,
                failover_for: config.failover_for,
                backoff: config.backoff,
            },
        })
    }

    /// Proposes `command`; answers once committed, with the ledger's outcome (which may be
    /// a refusal by the ledger's rules: see [`Outcome`]).
    pub async fn propose(&self, command: Command) -> Result<Committed, ClientError> {
        let command_json = serde_json::to_vec(&command)
            .map_err(|error| ClientError::codec("a command", &error))?;
        let reply = self
            .members
            .call(&self.policy, "Propose", false, |mut client| {
                let request = ProposeRequest {
                    command_json: command_json.clone(),
                    forwarded: false,
                };
                async move { client.propose(request).await }
            })
            .await?;
        let outcome: Outcome = serde_json::from_slice(&reply.outcome_json)
            .map_err(|error| ClientError::codec("an outcome", &error))?;
        Ok(Committed {
            index: reply.index,
            leader_id: reply.leader_id,
            outcome,
        })
    }

    /// Asks for a lease: the lease, or the ledger's refusal when the budget has too little
    /// left. A request the ledger rejects as invalid is [`ClientError::Ledger`].
    pub async fn grant_lease(
        &self,
        request: LeaseRequest,
    ) -> Result<Result<Lease, Refusal>, ClientError> {
        let command = Command::GrantLease(request);
        let name = command.name();
        match self.propose(command).await?.outcome?.effect {
            Effect::Granted(lease) => Ok(Ok(lease)),
            Effect::Refused(refusal) => Ok(Err(refusal)),
            _ => Err(ClientError::UnexpectedEffect { command: name }),
        }
    }

    /// Settles leases in one command: one result per settlement, in order.
    pub async fn settle(
        &self,
        settlements: Vec<Settlement>,
    ) -> Result<Vec<SettleResult>, ClientError> {
        let command = Command::Settle { settlements };
        let name = command.name();
        match self.propose(command).await?.outcome?.effect {
            Effect::Settled { results, .. } => Ok(results),
            _ => Err(ClientError::UnexpectedEffect { command: name }),
        }
    }

    /// The state summary of a member (its local, possibly slightly stale view); with
    /// `full`, the whole state too.
    pub async fn read(&self, full: bool) -> Result<ReadSummary, ClientError> {
        let reply = self
            .members
            .call(&self.policy, "Read", true, |mut client| async move {
                client.read(ReadRequest { full }).await
            })
            .await?;
        let state = if full {
            let state = serde_json::from_slice(&reply.state_json)
                .map_err(|error| ClientError::codec("the ledger state", &error))?;
            Some(state)
        } else {
            None
        };
        Ok(ReadSummary {
            revision: reply.revision,
            config_revision: reply.config_revision,
            applied_index: reply.applied_index,
            node_id: reply.node_id,
            leader_id: reply.leader_id,
            state,
        })
    }

    /// Adds member `id` at `addr` (`host:port`) as a learner; with `blocking`, answers once
    /// it has caught up.
    pub async fn add_learner(
        &self,
        id: NodeId,
        addr: String,
        blocking: bool,
    ) -> Result<MembershipChanged, ClientError> {
        let reply = self
            .members
            .call(&self.policy, "AddLearner", false, |mut client| {
                let request = AddLearnerRequest {
                    node_id: id,
                    addr: addr.clone(),
                    blocking,
                    forwarded: false,
                };
                async move { client.add_learner(request).await }
            })
            .await?;
        Ok(MembershipChanged {
            index: reply.index,
            membership_json: reply.membership_json,
        })
    }

    /// Makes `voters` the voter set; with `retain`, removed voters stay as learners.
    pub async fn change_membership(
        &self,
        voters: BTreeSet<NodeId>,
        retain: bool,
    ) -> Result<MembershipChanged, ClientError> {
        let voters: Vec<NodeId> = voters.into_iter().collect();
        let reply = self
            .members
            .call(&self.policy, "ChangeMembership", false, |mut client| {
                let request = ChangeMembershipRequest {
                    voters: voters.clone(),
                    retain,
                    forwarded: false,
                };
                async move { client.change_membership(request).await }
            })
            .await?;
        Ok(MembershipChanged {
            index: reply.index,
            membership_json: reply.membership_json,
        })
    }

    /// openraft's metrics of a member.
    pub async fn metrics(&self) -> Result<RaftMetrics<NodeId, BasicNode>, ClientError> {
        let reply = self
            .members
            .call(&self.policy, "Metrics", true, |mut client| async move {
                client.metrics(MetricsRequest {}).await
            })
            .await?;
        serde_json::from_slice(&reply.metrics_json)
            .map_err(|error| ClientError::codec("the Raft metrics", &error))
    }

    /// The config as it changes: the current state once its config revision is newer than
    /// `after_config_revision` (0: at once), then one update per config revision. Never
    /// ends and never fails: it reconnects across members by itself (see [`watch`]).
    pub fn watch(&self, after_config_revision: u64) -> BoxStream<'static, ConfigUpdate> {
        watch::watch(self.clone(), after_config_revision)
    }
}
