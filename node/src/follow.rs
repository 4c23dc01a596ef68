//! An edge following the ledger: each snapshot of the ledger's state that arrives (the
//! watch stream sends one per config revision) becomes a new [`Config`] swapped into the
//! gateway atomically; requests in flight keep the one they started with.
//!
//! When the ledger is unreachable the stream simply stops yielding and the edge keeps
//! serving the last config it built (budgets then hold only as long as the edge's leases
//! last: the quota book fails closed). An endpoint that does not validate on this edge is
//! left out and logged; the rest of the snapshot is served.

use floodgate_cluster::ledger::LedgerState;
use floodgate_cluster::secrets::Keyring;
use futures::{Stream, StreamExt};

use crate::config::Config;
use crate::config::ledger::edge_config;
use crate::edge::Gateway;

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
    /// once it has something to serve), or `None` when the stream ended first.
    pub async fn first<S>(&self, states: &mut S) -> Option<Config>
    where
        S: Stream<Item = LedgerState> + Unpin,
    {
        let state = states.next().await?;
        Some(self.config(&state))
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
