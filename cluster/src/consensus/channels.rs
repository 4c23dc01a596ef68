//! [`Channels`]: one cached tonic [`Channel`] per peer, shared by the Raft network and the
//! forwarding of client writes, so a member keeps a single HTTP/2 connection to each peer.
//!
//! Channels are created lazily (`connect_lazy`): the first call connects, within the
//! connect timeout, and a broken connection is re-established by tonic on the next call.
//! A peer whose address changed gets a new channel. Owns no Raft state.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use tonic::transport::Endpoint;

use super::NodeId;
use crate::token::{AuthChannel, Bearer, ClusterToken};

/// The channel cache. Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct Channels {
    cache: Arc<Mutex<HashMap<NodeId, (String, AuthChannel)>>>,
    connect_timeout: Duration,
    bearer: Bearer,
}

impl Channels {
    /// An empty cache whose channels connect within `connect_timeout` and carry `token`.
    pub fn new(connect_timeout: Duration, token: Option<&ClusterToken>) -> Self {
        Self {
            cache: Arc::default(),
            connect_timeout,
            bearer: Bearer::new(token),
        }
    }

    /// The channel to member `id` at `addr` (`host:port`), created on first use.
    pub fn get(&self, id: NodeId, addr: &str) -> Result<AuthChannel, tonic::transport::Error> {
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((cached_addr, channel)) = cache.get(&id)
            && cached_addr == addr
        {
            return Ok(channel.clone());
        }
        let channel = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        let channel = self.bearer.wrap(channel);
        cache.insert(id, (addr.to_owned(), channel.clone()));
        Ok(channel)
    }
}
