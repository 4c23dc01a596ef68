//! The ledger as a Raft group: openraft 0.9 driving [`LedgerState`] over gRPC.
//!
//! Wiring, in the order a member is built (see [`LedgerNode::start`]):
//!
//! 1. [`TypeConfig`]: the Raft type config. Log entries carry a [`Proposal`] (a command
//!    stamped with the leader's clock) and answer a [`LedgerResponse`]; node ids are `u64`
//!    and a node is openraft's `BasicNode` whose `addr` is the member's gRPC `host:port`.
//! 2. Storage: `floodgate_store::raft::open` on the member's data dir, with
//!    [`LedgerState`] as the store's `Application` (implemented here: it folds entries with
//!    [`apply_proposal`](crate::apply_proposal)).
//! 3. [`network`]: openraft's `RaftNetworkFactory` over tonic, one cached channel per peer
//!    ([`channels`]).
//! 4. [`server`]: the tonic `RaftService` (openraft's RPCs into the local `Raft`) and
//!    `LedgerService` (propose, read, membership admin), backed by [`LedgerHandle`]
//!    ([`handle`]), which also forwards writes from a follower to the leader.
//! 5. [`watch`]: the server side of `LedgerService.Watch`, a member's config snapshots,
//!    woken by openraft's metrics channel.
//! 6. [`expiry`]: the leader's lease expiry timer.
//! 7. [`node`]: [`LedgerNode`], one running member (Raft + gRPC server + expiry timer) with
//!    `initialize` and `shutdown`.
//!
//! This module owns no ledger semantics (that is [`crate::ledger`]) and no bytes on disk
//! (that is the `store` crate).

pub mod alerts;
pub mod channels;
pub mod error;
pub mod expiry;
pub mod handle;
pub mod network;
pub mod node;
pub mod server;
pub mod watch;

use std::io::Cursor;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use floodgate_store::raft::Application;
use openraft::BasicNode;
use serde::Deserialize;
use serde::Serialize;

pub use self::alerts::AlertSender;
pub use self::channels::Channels;
pub use self::error::LEADER_METADATA;
pub use self::error::LedgerNodeError;
pub use self::error::ProposeError;
pub use self::handle::Committed;
pub use self::handle::LedgerHandle;
pub use self::handle::MembershipChanged;
pub use self::node::Formation;
pub use self::node::LedgerNode;
pub use self::node::LedgerNodeConfig;
pub use self::node::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_EXPIRE_EVERY};
use crate::ledger::UnixMillis;
use crate::{LedgerState, Outcome, Proposal, apply_proposal};

/// A ledger member's id.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The ledger's Raft type config: entries carry [`Proposal`]s, answer
    /// [`LedgerResponse`]s, and snapshots are the serialized [`LedgerState`] in memory
    /// (the defaults `Entry<TypeConfig>` and `Cursor<Vec<u8>>` that the store requires).
    pub TypeConfig:
        D = Proposal,
        R = LedgerResponse,
        NodeId = NodeId,
        Node = BasicNode,
);

/// The ledger's openraft handle.
pub type LedgerRaft = openraft::Raft<TypeConfig>;

/// Read access to a member's applied ledger state.
pub type LedgerReader = floodgate_store::raft::StateReader<TypeConfig, LedgerState>;

/// What applying one log entry answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerResponse {
    /// The log index the entry was applied at (0 for blank and membership entries).
    pub index: u64,
    /// The ledger's outcome; `None` for blank and membership entries, which carry no
    /// command.
    pub outcome: Option<Outcome>,
}

impl Application for LedgerState {
    type Command = Proposal;
    type Response = LedgerResponse;

    fn apply(&mut self, index: u64, command: Proposal) -> LedgerResponse {
        LedgerResponse {
            index,
            outcome: Some(apply_proposal(self, command)),
        }
    }
}

/// The local wall clock in Unix milliseconds: the stamp a leader puts on each proposal
/// (the ledger itself never moves backwards in time, see [`crate::ledger`]).
pub fn now_millis() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
