//! [`Members`]: the ledger members a client talks to, one lazily-connected tonic channel
//! each, and [`Members::call`], which sends one unary RPC with failover: on `UNAVAILABLE`
//! (or, for idempotent calls, another transport failure or a timeout) it tries the member
//! the server named as leader, else the next one, backing off after each full round, until
//! the failover deadline. Remembers the member that last answered, shared by clones.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;

use floodgate_proto::v1::ledger_service_client::LedgerServiceClient;
use tokio::time::Instant;
use tonic::transport::Endpoint;

use super::Backoff;
use super::ClientError;
use super::error::worth_another_member;
use crate::consensus::LEADER_METADATA;
use crate::token::{AuthChannel, Bearer, ClusterToken};

/// How often an HTTP/2 ping checks a connection with open calls (a watch stream on a
/// member that vanished without closing its socket ends after at most interval + timeout).
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a ping may go unanswered.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// One member.
pub(crate) struct Member {
    /// `host:port`, for errors and logs (a URL's user info is never kept).
    pub(crate) name: String,
    /// Its channel (connects on first use, reconnects after failures).
    pub(crate) channel: AuthChannel,
}

/// How a call is retried.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// Bound on one attempt.
    pub(crate) call_timeout: Duration,
    /// Bound on all attempts of one call.
    pub(crate) failover_for: Duration,
    /// Pause after a full round of members failed.
    pub(crate) backoff: Backoff,
}

/// The member list. Cheap to clone; clones share channels and the preferred member.
#[derive(Clone)]
pub(crate) struct Members {
    list: Arc<[Member]>,
    preferred: Arc<AtomicUsize>,
}

impl Members {
    /// Channels to `urls` (`http://host:port`), not connected yet.
    pub(crate) fn new(
        urls: &[String],
        connect_timeout: Duration,
        token: Option<&ClusterToken>,
    ) -> Result<Self, ClientError> {
        let bearer = Bearer::new(token);
        if urls.is_empty() {
            return Err(ClientError::NoMembers);
        }
        let list = urls
            .iter()
            .enumerate()
            .map(|(position, url)| member(position, url, connect_timeout, &bearer))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            list: list.into(),
            preferred: Arc::default(),
        })
    }

    /// How many members there are (at least one).
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    /// Member `index` (taken modulo the count).
    pub(crate) fn get(&self, index: usize) -> &Member {
        &self.list[index % self.list.len()]
    }

    /// The member that answered last (where calls start).
    pub(crate) fn preferred(&self) -> usize {
        self.preferred.load(Ordering::Relaxed) % self.list.len()
    }

    /// Remembers `index` as the member to start with.
    pub(crate) fn prefer(&self, index: usize) {
        self.preferred.store(index, Ordering::Relaxed);
    }

    /// The member a failed call should go to next: the leader `status` names, if it is one
    /// of ours and not `index`, else the one after `index`.
    pub(crate) fn next_after(&self, index: usize, status: Option<&tonic::Status>) -> usize {
        let hinted = status
            .and_then(|status| status.metadata().get(LEADER_METADATA))
            .and_then(|addr| addr.to_str().ok())
            .and_then(|addr| self.list.iter().position(|member| member.name == addr))
            .filter(|hinted| *hinted != index);
        hinted.unwrap_or((index + 1) % self.list.len())
    }

    /// Sends one unary call built by `op` with failover (see the module doc). `idempotent`
    /// calls also fail over on timeouts and non-`UNAVAILABLE` transport failures.
    pub(crate) async fn call<T, F, Fut>(
        &self,
        policy: &Policy,
        call: &'static str,
        idempotent: bool,
        mut op: F,
    ) -> Result<T, ClientError>
    where
        F: FnMut(LedgerServiceClient<AuthChannel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let started = Instant::now();
        let deadline = started + policy.failover_for;
        let mut index = self.preferred();
        let mut attempts: u32 = 0;
        let mut rounds: u32 = 0;
        loop {
            let member = self.get(index);
            attempts += 1;
            let client = LedgerServiceClient::new(member.channel.clone());
            let answer = tokio::time::timeout(policy.call_timeout, op(client)).await;
            let (last, status) = match answer {
                Ok(Ok(response)) => {
                    self.prefer(index);
                    return Ok(response.into_inner());
                }
                Ok(Err(status)) if worth_another_member(&status, idempotent) => (
                    format!("{:?}: {}", status.code(), status.message()),
                    Some(status),
                ),
                Ok(Err(status)) => {
                    return Err(ClientError::Refused {
                        call,
                        member: member.name.clone(),
                        code: status.code(),
                        message: status.message().to_owned(),
                    });
                }
                Err(_elapsed) if idempotent => {
                    (format!("no answer within {:?}", policy.call_timeout), None)
                }
                Err(_elapsed) => {
                    return Err(ClientError::Timeout {
                        call,
                        member: member.name.clone(),
                        after: policy.call_timeout,
                    });
                }
            };
            tracing::debug!(call, member = %member.name, %last, "ledger member could not serve; failing over");
            let now = Instant::now();
            if now >= deadline {
                return Err(ClientError::Unavailable {
                    call,
                    attempts,
                    waited: now - started,
                    last,
                });
            }
            index = self.next_after(index, status.as_ref());
            if usize::try_from(attempts).is_ok_and(|tried| tried.is_multiple_of(self.len())) {
                let pause = policy.backoff.delay(rounds).min(deadline - now);
                rounds = rounds.saturating_add(1);
                tokio::time::sleep(pause).await;
            }
        }
    }
}

fn member(
    position: usize,
    url: &str,
    connect_timeout: Duration,
    bearer: &Bearer,
) -> Result<Member, ClientError> {
    let invalid = |reason: String| ClientError::InvalidMember { position, reason };
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|_| invalid("not a URL".to_owned()))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT);
    let uri = endpoint.uri();
    let host = uri
        .host()
        .ok_or_else(|| invalid("no host".to_owned()))?
        .to_owned();
    let port = match (uri.port_u16(), uri.scheme_str()) {
        (Some(port), _) => port,
        (None, Some("http")) => 80,
        (None, Some("https")) => 443,
        (None, _) => return Err(invalid("no port and no http(s) scheme".to_owned())),
    };
    Ok(Member {
        name: format!("{host}:{port}"),
        channel: bearer.wrap(endpoint.connect_lazy()),
    })
}
