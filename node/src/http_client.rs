//! The pooled upstream HTTP clients: rustls with the `ring` provider, HTTP/2 where the
//! provider offers it (ALPN), keep-alive, TCP_NODELAY.
//!
//! reqwest fixes the connect timeout when a client is built, so per-endpoint and per-target
//! connect timeouts need one client per distinct value: [`HttpClients`] keeps them, each with
//! its own connection pool, shared by every target (and every provider) that uses that
//! timeout. This module owns the clients only; which timeout a call uses is the caller's.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

/// Installs `ring` as the process's rustls provider; idempotent. Must run before any client
/// is built (reqwest panics otherwise).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds one pooled client with `connect_timeout`.
pub fn build(connect_timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    install_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .tcp_keepalive(Duration::from_secs(30))
        .user_agent(concat!("floodgate/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// One pooled client per connect timeout. Cheap to clone (clones share the clients).
///
/// The request path only reads: [`get`](Self::get) is an `ArcSwap` load and a map lookup,
/// with no lock. A timeout seen for the first time (a config the clients were not prepared
/// for) builds its client and publishes a copy of the map with it added (copy-on-write);
/// [`prepare`](Self::prepare) does the same for a whole config on load and reload, and
/// drops the clients no longer used. A request holds its own clone of its client, so
/// dropping one from the map never disturbs a call in flight.
#[derive(Debug, Clone, Default)]
pub struct HttpClients {
    clients: Arc<ArcSwap<HashMap<Duration, reqwest::Client>>>,
}

impl HttpClients {
    /// Clients for every timeout in `connect_timeouts`, built now, so a client that cannot
    /// be built fails start-up rather than a request.
    pub fn with_timeouts(
        connect_timeouts: impl IntoIterator<Item = Duration>,
    ) -> Result<Self, reqwest::Error> {
        let clients = Self::default();
        clients.prepare(connect_timeouts)?;
        Ok(clients)
    }

    /// The client whose connect timeout is `connect`, built (once) if there is none yet.
    pub fn get(&self, connect: Duration) -> Result<reqwest::Client, reqwest::Error> {
        if let Some(client) = self.clients.load().get(&connect) {
            return Ok(client.clone());
        }
        let built = build(connect)?;
        // Two first requests may race: both build, the first insert wins, and both use the
        // winner, so one pool serves the timeout.
        self.clients.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.entry(connect).or_insert_with(|| built.clone());
            next
        });
        Ok(self.clients.load().get(&connect).cloned().unwrap_or(built))
    }

    /// Makes the set exactly `connect_timeouts`: clients already built keep their pools,
    /// missing ones are built, the others are dropped. On an error nothing changes.
    pub fn prepare(
        &self,
        connect_timeouts: impl IntoIterator<Item = Duration>,
    ) -> Result<(), reqwest::Error> {
        let wanted: BTreeSet<Duration> = connect_timeouts.into_iter().collect();
        let current = self.clients.load();
        let mut built = HashMap::new();
        for timeout in wanted.iter().filter(|t| !current.contains_key(t)) {
            built.insert(*timeout, build(*timeout)?);
        }
        drop(current);
        self.clients.rcu(|current| {
            wanted
                .iter()
                .filter_map(|timeout| {
                    let client = current.get(timeout).or_else(|| built.get(timeout))?;
                    Some((*timeout, client.clone()))
                })
                .collect::<HashMap<_, _>>()
        });
        Ok(())
    }

    /// The connect timeouts that have a client, shortest first.
    pub fn timeouts(&self) -> Vec<Duration> {
        let mut timeouts: Vec<Duration> = self.clients.load().keys().copied().collect();
        timeouts.sort();
        timeouts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_millis(250);
    const LONG: Duration = Duration::from_secs(10);

    #[test]
    fn one_client_per_distinct_timeout_built_on_first_use() {
        let clients = HttpClients::default();
        assert!(clients.timeouts().is_empty());
        clients.get(LONG).expect("builds");
        clients.get(SHORT).expect("builds");
        clients.get(LONG).expect("cached");
        assert_eq!(clients.timeouts(), vec![SHORT, LONG]);
        // Clones share the clients.
        let shared = clients.clone();
        shared.get(Duration::from_secs(3)).expect("builds");
        assert_eq!(clients.timeouts().len(), 3);
    }

    #[test]
    fn prepare_keeps_exactly_the_wanted_timeouts() {
        let clients = HttpClients::with_timeouts([LONG, SHORT, LONG]).expect("builds");
        assert_eq!(clients.timeouts(), vec![SHORT, LONG]);
        clients
            .prepare([LONG, Duration::from_secs(1)])
            .expect("builds");
        assert_eq!(clients.timeouts(), vec![Duration::from_secs(1), LONG]);
    }
}
