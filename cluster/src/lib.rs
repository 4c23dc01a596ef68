//! Floodgate's ledger (`cluster` crate): the ledger's pure logic and the Raft group that
//! replicates it over gRPC (openraft, with the `store` crate's sled storage).
//!
//! Module map:
//!
//! * [`ledger`]: the state machine, `apply(state, command, now) -> outcome`, with no I/O,
//!   no clock and no randomness: config objects (endpoints, prices, credentials, gateway
//!   keys, teams, users), budgets and rate limits, and the quota leases that let edges
//!   spend without a consensus round trip per request while a budget still holds across
//!   the cluster (`settled + outstanding ≤ limit`, always).
//! * [`secrets`]: envelope encryption (AES-256-GCM) of provider credentials under a
//!   versioned key-encryption key, done before a credential enters a command; masking.
//!
//! * [`consensus`]: the Raft wiring: type config, `Application` impl, gRPC network and
//!   services (`floodgate-proto`, including the `Watch` stream of config snapshots),
//!   forwarding of writes to the leader, the leader's lease expiry timer, and
//!   [`LedgerNode`], one running member.
//! * [`client`]: [`LedgerClient`], what edges and `floodgate ctl` use: failover across
//!   members, typed lease calls, and a self-healing config watch.
//! * [`token`]: the cluster token every ledger gRPC call carries when one is set.
//! * [`admin`]: the config admin API ([`admin::Admin`], served as the gRPC
//!   `ConfigService`): objects as JSON in, one ledger command out, credentials sealed by
//!   the member before anything is proposed, reads masked.
//!
//! [`ledger`] and [`secrets`] touch no disk and no network; [`consensus`] does both;
//! [`client`] only the network. A Raft
//! log entry's payload is a
//! [`Proposal`] (a command stamped with the leader's clock); the store's state machine
//! folds entries with [`apply_proposal`] and snapshots the serialized [`LedgerState`].

pub mod admin;
pub mod client;
pub mod consensus;
pub mod ledger;
pub mod secrets;
pub mod token;

pub use client::{ClientConfig, ClientError, ConfigUpdate, LedgerClient};
pub use consensus::{LedgerNode, LedgerNodeConfig};
pub use ledger::{Command, LedgerError, LedgerState, Outcome, Proposal, apply, apply_proposal};
