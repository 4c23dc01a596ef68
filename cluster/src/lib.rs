//! Floodgate's ledger (`cluster` crate). Today it holds the ledger's pure logic; the Raft
//! wiring (type config, gRPC transport, ledger server, the edges' client) comes next and
//! will drive this logic from openraft's state machine in the `store` crate.
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
//! This crate touches no disk and no network. A Raft log entry's payload is a
//! [`Proposal`] (a command stamped with the leader's clock); the store's state machine
//! folds entries with [`apply_proposal`] and snapshots the serialized [`LedgerState`].

pub mod ledger;
pub mod secrets;

pub use ledger::{Command, LedgerError, LedgerState, Outcome, Proposal, apply, apply_proposal};
