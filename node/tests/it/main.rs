//! The edge's integration tests, one binary: each module starts real edges on loopback
//! ports against mock upstreams that speak a provider's wire format (see `common`).
//!
//! One binary rather than one per file keeps the link step (and the disk it needs) to one
//! executable; nextest still runs every test in its own process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod accounting;
mod binary;
mod cluster;
mod config_files;
mod errors;
mod events;
mod keys;
mod projector_cli;
mod provider_anthropic;
mod provider_bedrock;
mod provider_cohere;
mod provider_gemini;
mod provider_vertex;
mod quota;
mod reload;
mod routes;
mod routing;
mod shutdown;
mod streaming;
mod traces;
mod usage_processes;
