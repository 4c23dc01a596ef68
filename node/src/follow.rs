//! An edge following the ledger: each snapshot of the ledger's state that arrives (the
//! watch stream sends one per config revision) becomes a new [`Config`] swapped into the
//! gateway atomically; requests in flight keep the one they started with.
//!
//! Until the first snapshot arrives the edge does not listen, and says so at warn level
//! every [`FIRST_CONFIG_PATIENCE`] (the watch logs why a member refuses it). When the ledger
//! is unreachable later, the stream simply stops yielding and the edge keeps serving the
//! last config it built (budgets then hold only as long as the edge's leases last: the
//! quota book fails closed). An endpoint that does not validate on this edge is left out
//! and logged; the rest of the snapshot is served.

use std::time::Duration;

use floodgate_cluster::ledger::LedgerState;
use floodgate_cluster::secrets::Keyring;
use futures::{Stream, StreamExt};

use crate::config::Config;
use crate::config::ledger::edge_config;
use crate::edge::Gateway;

/// How long an edge waits for its first config before it warns, and again between warnings.
pub const FIRST_CONFIG_PATIENCE: Duration = Duration::from_secs(5);

/// What an edge needs to turn ledger snapshots into configs.
pub struct Follower {
    /// The edge-local settings (listen address, limits, default timeouts, auth mode).
    pub local: Config,
    /// The key-encryption keys that open provider credentials.
    pub keyring: Option<Keyring>,
}

impl Follower {
    /// The config for one snapshot, with the problems of endpoints left out logged.
    pub fn config(&self, state: &LedgerState) -> Config {
        let (config, problems) = edge_config(state, self.keyring.as_ref(), &self.local);
        for problem in problems {
            tracing::error!(%problem, "ledger object left out of this edge's config");
        }
        config
    }

    /// Waits for the first snapshot and returns its config (the edge binds its port only
    /// once it has something to serve), or `None` when the stream ended first. Warns every
    /// [`FIRST_CONFIG_PATIENCE`] while none has come.
    pub async fn first<S>(&self, states: &mut S) -> Option<Config>
    where
        S: Stream<Item = LedgerState> + Unpin,
    {
        let mut waited = Duration::ZERO;
        loop {
            // Timing out `next` loses nothing: the stream keeps its progress.
            match tokio::time::timeout(FIRST_CONFIG_PATIENCE, states.next()).await {
                Ok(state) => return Some(self.config(&state?)),
                Err(_elapsed) => {
                    waited += FIRST_CONFIG_PATIENCE;
                    tracing::warn!(
                        waited_s = waited.as_secs(),
                        "no config from the ledger yet (is a member up, and does the ledger have a leader?); this edge listens once one arrives"
                    );
                }
            }
        }
    }

    /// Applies every later snapshot to `gateway` until the stream ends.
    pub async fn run<S>(self, mut states: S, gateway: Gateway)
    where
        S: Stream<Item = LedgerState> + Unpin,
    {
        while let Some(state) = states.next().await {
            let config_revision = state.config_revision();
            let config = self.config(&state);
            let endpoints = config.endpoints.len();
            let generation = gateway.apply(config);
            tracing::info!(
                config_revision,
                generation,
                endpoints,
                "applied the ledger's config"
            );
        }
    }
}
