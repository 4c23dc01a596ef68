//! The Floodgate load harness (issue 6), as a library so its tests drive it in process.
//!
//! Module map:
//! * [`upstream`]: the mock upstream (`floodgate-loadtest upstream`): OpenAI chat,
//!   completions and embeddings and Anthropic Messages, tokens that follow the request
//!   (prompt size, `max_tokens`), configurable latency, error injection, a concurrency
//!   limit, a one-off stall, and the ground-truth counters (requests, tokens, cost) served
//!   at `GET /__stats`.
//! * [`scenario`]: scenario files, the mix of requests a run offers.
//! * [`load`]: the load generator (`floodgate-loadtest run`): open loop at a constant
//!   arrival rate, latency measured from each request's *intended* send time
//!   (coordinated-omission correct), or closed loop at a fixed concurrency.
//! * [`compare`]: direct vs through the gateway, interleaved: the added latency.
//! * [`frontier`]: the highest open-loop rate that holds a p99 bound.
//! * [`check`]: the invariant checker, a pure function over the books (exactly-once
//!   accounting, refusals never upstream, no overspend against the mock's ground truth);
//!   [`books`] reads them (the mock's `/__stats`, the projector's totals, the ledger's
//!   budgets).
//! * [`resources`]: RSS and CPU sampling of a process from `/proc`.
//! * [`ledger`]: the Raft ledger's benchmark (`floodgate-loadtest ledger`): writes per
//!   second and lease grant and settle latency against real in-process members.
//! * [`report`]: the histograms' summary, the human table and the JSON report.
//! * [`spec`]: parsing of the small command-line value languages (latency distributions,
//!   stalls).
//! * [`cli`]: the command line; `main.rs` only parses it and calls [`cli::Cli::run`].

pub mod books;
pub mod check;
pub mod cli;
pub mod compare;
pub mod frontier;
pub mod ledger;
pub mod load;
pub mod report;
pub mod resources;
pub mod scenario;
pub mod spec;
pub mod upstream;

/// Installs the process-wide rustls crypto provider (ring), which reqwest's
/// `rustls-no-provider` build needs before any client is built, even for plain `http://`.
/// Idempotent, so tests call it freely.
pub fn install_crypto_provider() {
    // An error only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
