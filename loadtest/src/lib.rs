//! The Floodgate load harness (issue 6), as a library so its tests drive it in process.
//!
//! Module map:
//! * [`upstream`]: the mock OpenAI-compatible upstream (`floodgate-loadtest upstream`):
//!   prebuilt bodies, configurable latency, error injection, a one-off stall, and the
//!   ground-truth counters served at `GET /__stats`.
//! * [`load`]: the load generator (`floodgate-loadtest run`): open loop at a constant
//!   arrival rate, latency measured from each request's *intended* send time
//!   (coordinated-omission correct), or closed loop at a fixed concurrency.
//! * [`ledger`]: the Raft ledger's benchmark (`floodgate-loadtest ledger`): writes per
//!   second and lease grant and settle latency against real in-process members.
//! * [`report`]: the histograms' summary, the human table and the JSON report.
//! * [`spec`]: parsing of the small command-line value languages (latency distributions,
//!   stalls).
//! * [`cli`]: the command line; `main.rs` only parses it and calls [`cli::Cli::run`].

pub mod cli;
pub mod ledger;
pub mod load;
pub mod report;
pub mod spec;
pub mod upstream;

/// Installs the process-wide rustls crypto provider (ring), which reqwest's
/// `rustls-no-provider` build needs before any client is built, even for plain `http://`.
/// Idempotent, so tests call it freely.
pub fn install_crypto_provider() {
    // An error only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
