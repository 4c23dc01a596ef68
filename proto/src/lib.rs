//! # floodgate-proto
//!
//! Floodgate's gRPC contracts, generated at build time from `proto/floodgate/v1/*.proto`
//! (protox, so no system `protoc`; tonic-prost-build for the code). This crate holds no
//! logic: servers and clients live with their owners (the `cluster` crate for the ledger).
//!
//! * `RaftService` (`raft.proto`): openraft's AppendEntries, Vote and InstallSnapshot
//!   between ledger members. openraft 0.9's own request and response types travel as
//!   serde_json bytes inside [`v1::RaftRequest`] / [`v1::RaftReply`]: they are generic,
//!   change between openraft releases and are read only by openraft on the other side, so
//!   openraft's serde derives are the simplest correct encoding (both ends must run the
//!   same openraft version).
//! * `LedgerService` (`ledger.proto`): `Propose` (a serde_json ledger command, answered by
//!   the leader; followers forward), `Read` (a state summary), `Watch` (a stream of config
//!   snapshots, one per config revision), and the membership admin RPCs `AddLearner`,
//!   `ChangeMembership` and `Metrics`.
//! * `ConfigService` (`admin.proto`): the config admin API over ledger objects carried as
//!   serde_json (`Put`, `Get`, `List`, `Delete` by kind), `CreateKey` / `RevokeKey` for
//!   gateway keys, and `Status` (revisions, leader, membership, budget usage).
//! * `UsageEvent` (`usage.proto`): one request's accounting as it travels from the edge
//!   through the event log to the projector, wrapped in a versioned `EventEnvelope`.

/// Package `floodgate.v1`.
pub mod v1 {
    #![allow(missing_docs)]
    #![allow(clippy::all)]
    tonic::include_proto!("floodgate.v1");
}
