//! # floodgate-store
//!
//! Every byte Floodgate keeps on disk. The crate does no networking and knows nothing of
//! gateways, budgets or providers: callers hand it typed values and it makes them durable.
//!
//! Module map:
//!
//! * [`raft`]: openraft's storage for the ledger: the log, the vote, the committed index and
//!   the state machine with its snapshots, on sled. The `cluster` crate supplies the Raft
//!   type config and the ledger itself through the [`raft::Application`] trait.
//! * [`error`]: [`StoreError`], the one error type at the crate boundary.
//!
//! The rest of the architecture's storage (the edge's usage spool, the local event log and
//! the projector's aggregates) lands here as modules beside `raft` when it is built.
//!
//! ## Durability rule
//!
//! sled writes go to its page cache and reach the disk on its own only every 500 ms. Nothing
//! here tells a caller that data is durable until an explicit `flush` has returned.

pub mod error;
pub mod raft;

pub use error::StoreError;
