//! Floodgate: a distributed LLM gateway. This crate is the `floodgate` binary's library.
//!
//! Module map:
//!
//! * [`cli`] — the command line (`dev`, `serve`, `ctl`, `config check`, `version`).
//! * [`run`] — a node's roles (edge, ledger) wired together; [`roles`] — the ledger side:
//!   starting a member, the client, applying a config file to the ledger.
//! * [`admin_http`] — the ledger's admin API as JSON/HTTP; [`ctl`] — `floodgate ctl`;
//!   [`ctl_usage`] — `ctl usage` and `ctl traces` against a projector.
//! * [`projector_role`] — `serve --roles projector`: the usage query API over the store.
//! * [`config`] — YAML (native or MLflow 2.x) → validated typed config; hot reload.
//! * [`edge`] — the HTTP API: auth, routing, limits, accounting, streaming, payload
//!   capture; [`edge_id`] — this edge's id, stable across restarts.
//! * [`follow`] — an edge following the ledger: snapshots → configs swapped in.
//! * [`providers`] — the provider trait, the OpenAI-compatible client and the mock.
//! * [`pricing`] — the price table and request cost in integer micro-dollars.
//! * [`usage`] — the per-request usage record and the sink it leaves through.
//! * [`events`] — usage records as protobuf events into the spool, and the pipeline to NATS
//!   JetStream (or the local log of `dev`).
//! * [`server`] — bind, serve, graceful shutdown.
//! * [`kek`] — this node's key-encryption key (`FLOODGATE_KEK`, or dev's local key file).
//! * [`http_client`] — the pooled upstream clients (one per connect timeout) and TLS setup.
//! * [`telemetry`] — logging.
//! * [`secret`] — strings that never print themselves.

pub mod admin_http;
pub mod alerts;
pub mod cli;
pub mod config;
pub mod ctl;
pub mod ctl_usage;
pub mod edge;
pub mod edge_id;
pub mod events;
pub mod follow;
pub mod http_client;
pub mod kek;
pub mod pricing;
pub mod projector_role;
pub mod providers;
pub mod roles;
pub mod run;
pub mod secret;
pub mod server;
pub mod telemetry;
pub mod usage;
