//! The client side of `LedgerService.Watch`: one endless stream of decoded config
//! snapshots that survives losing the member it is attached to.
//!
//! The stream attaches to a member (starting with the client's preferred one), asks for
//! snapshots newer than the last config revision it delivered, and decodes each
//! [`LedgerState`]. When the member's stream fails or ends (the member stopped), it moves on
//! to the next member after a capped, jittered exponential backoff ([`super::Backoff`]),
//! reset once a member accepts the watch. It never delivers a revision at or below one it
//! already delivered, even if a lagging member sends one. Dropping the stream closes the
//! call. A member that does not take the watch is logged at warn level with the reason
//! (the first time, then at most every 30 s until one takes it), so a follower that cannot
//! reach its ledger says so. Logs name members by `host:port` and undecodable payloads by
//! position only.

use std::time::Duration;

use floodgate_proto::v1::ConfigSnapshot;
use floodgate_proto::v1::WatchRequest;
use floodgate_proto::v1::ledger_service_client::LedgerServiceClient;
use futures::stream::BoxStream;
use tokio::time::Instant;
use tonic::Streaming;

use super::ClientError;
use super::LedgerClient;
use crate::LedgerState;
use crate::consensus::NodeId;

/// The least time between two warnings that members do not take the watch.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// One config snapshot delivered by [`LedgerClient::watch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigUpdate {
    /// The member that sent it.
    pub node_id: NodeId,
    /// The member's applied state; its `config_revision()` is newer than every earlier
    /// update's on the same stream.
    pub state: LedgerState,
}

/// Builds the stream for [`LedgerClient::watch`].
pub(super) fn watch(
    client: LedgerClient,
    after_config_revision: u64,
) -> BoxStream<'static, ConfigUpdate> {
    let watch = Resuming {
        member: client.members.preferred(),
        client,
        delivered: (after_config_revision > 0).then_some(after_config_revision),
        stream: None,
        failures: 0,
        warned: None,
    };
    Box::pin(futures::stream::unfold(watch, |mut watch| async move {
        let update = watch.next().await;
        Some((update, watch))
    }))
}

/// The state of one resuming watch.
struct Resuming {
    client: LedgerClient,
    /// The member attached to, or tried next.
    member: usize,
    /// The last config revision delivered (or asked to start after).
    delivered: Option<u64>,
    /// The open stream, if attached.
    stream: Option<Streaming<ConfigSnapshot>>,
    /// Failures since a member last accepted the watch (drives the backoff).
    failures: u32,
    /// When a refused watch was last logged at warn level, since a member last took it.
    warned: Option<Instant>,
}

impl Resuming {
    /// The next update; waits (reconnecting as needed) until there is one.
    async fn next(&mut self) -> ConfigUpdate {
        loop {
            let stream = match self.stream.as_mut() {
                Some(stream) => stream,
                None => match self.attach().await {
                    Some(stream) => self.stream.insert(stream),
                    None => {
                        self.move_on().await;
                        continue;
                    }
                },
            };
            let why = match stream.message().await {
                Ok(Some(snapshot)) => match self.accept(snapshot) {
                    Ok(Some(update)) => return update,
                    Ok(None) => continue,
                    Err(error) => error.to_string(),
                },
                Ok(None) => "the member ended the watch".to_owned(),
                Err(status) => format!("{:?}: {}", status.code(), status.message()),
            };
            let member = &self.client.members.get(self.member).name;
            tracing::info!(%member, %why, "ledger watch lost its member; moving on");
            self.stream = None;
            self.move_on().await;
        }
    }

    /// Opens the watch on the current member.
    async fn attach(&mut self) -> Option<Streaming<ConfigSnapshot>> {
        let member = self.client.members.get(self.member);
        let mut client = LedgerServiceClient::new(member.channel.clone());
        let request = WatchRequest {
            after_config_revision: self.delivered.unwrap_or(0),
        };
        let timeout = self.client.policy.call_timeout;
        let why = match tokio::time::timeout(timeout, client.watch(request)).await {
            Ok(Ok(response)) => {
                tracing::debug!(member = %member.name, after = ?self.delivered, "ledger watch attached");
                self.failures = 0;
                self.warned = None;
                self.client.members.prefer(self.member);
                return Some(response.into_inner());
            }
            Ok(Err(status)) => format!("{:?}: {}", status.code(), status.message()),
            Err(_elapsed) => format!("not accepted within {timeout:?}"),
        };
        self.refused(&why);
        None
    }

    /// Logs that the current member did not take the watch, and `why`: at warn level the
    /// first time and then at most every [`WARN_EVERY`], at debug level in between.
    fn refused(&mut self, why: &str) {
        let member = &self.client.members.get(self.member).name;
        let failures = self.failures.saturating_add(1);
        let now = Instant::now();
        if self.warned.is_none_or(|warned| now >= warned + WARN_EVERY) {
            self.warned = Some(now);
            tracing::warn!(%member, %why, failures, "the ledger watch cannot attach to a member; retrying");
        } else {
            tracing::debug!(%member, %why, failures, "the ledger watch cannot attach to a member; retrying");
        }
    }

    /// Decodes `snapshot`; `None` for one not newer than what was delivered.
    fn accept(&mut self, snapshot: ConfigSnapshot) -> Result<Option<ConfigUpdate>, ClientError> {
        if self
            .delivered
            .is_some_and(|delivered| snapshot.config_revision <= delivered)
        {
            return Ok(None);
        }
        let state: LedgerState = serde_json::from_slice(&snapshot.state_json)
            .map_err(|error| ClientError::codec("a config snapshot", &error))?;
        self.delivered = Some(snapshot.config_revision);
        Ok(Some(ConfigUpdate {
            node_id: snapshot.node_id,
            state,
        }))
    }

    /// Waits the backoff and picks the next member.
    async fn move_on(&mut self) {
        let pause = self.client.policy.backoff.delay(self.failures);
        self.failures = self.failures.saturating_add(1);
        self.member = (self.member + 1) % self.client.members.len();
        tokio::time::sleep(pause).await;
    }
}
