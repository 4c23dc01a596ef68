//! The cluster token: a shared secret every ledger gRPC call carries
//! (`authorization: Bearer <token>`), so only members, edges and operators holding it can
//! replicate Raft entries, propose writes, watch the config or use the admin service.
//!
//! Members check it on every service with one tonic interceptor layer ([`check`]),
//! comparing in constant time; callers add it with the [`Bearer`] interceptor on their
//! channels ([`AuthChannel`]). Without a token (`None`), nothing is checked and nothing is
//! sent: the ledger port must then be reachable only by trusted hosts. The token never
//! appears in a log line, an error or a `Debug` output.

use std::fmt;
use std::sync::Arc;

use subtle::ConstantTimeEq;
use tonic::Request;
use tonic::Status;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// The environment variable operators set the token in.
pub const CLUSTER_TOKEN_VAR: &str = "FLOODGATE_CLUSTER_TOKEN";

/// A channel whose calls carry the cluster token (when there is one).
pub type AuthChannel = InterceptedService<Channel, Bearer>;

/// The shared secret. Cheap to clone.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterToken(Arc<str>);

impl ClusterToken {
    /// A token from its text; `None` when empty.
    pub fn new(text: &str) -> Option<Self> {
        let text = text.trim();
        (!text.is_empty()).then(|| Self(Arc::from(text)))
    }

    /// The token in [`CLUSTER_TOKEN_VAR`], if set and not empty.
    pub fn from_env() -> Option<Self> {
        std::env::var(CLUSTER_TOKEN_VAR)
            .ok()
            .and_then(|text| Self::new(&text))
    }
}

impl fmt::Debug for ClusterToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterToken(***)")
    }
}

/// Adds `authorization: Bearer <token>` to every call (nothing without a token).
#[derive(Clone, Debug)]
pub struct Bearer {
    header: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl Bearer {
    /// The interceptor for `token`.
    pub fn new(token: Option<&ClusterToken>) -> Self {
        let header = token.and_then(|token| {
            let mut value: MetadataValue<_> = format!("Bearer {}", token.0).parse().ok()?;
            value.set_sensitive(true);
            Some(value)
        });
        Self { header }
    }

    /// `channel` with this interceptor.
    pub fn wrap(&self, channel: Channel) -> AuthChannel {
        InterceptedService::new(channel, self.clone())
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(header) = &self.header {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
        }
        Ok(request)
    }
}

/// The member's check: `Ok` when there is no token or the call carries it.
pub fn check(
    token: Option<ClusterToken>,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |request: Request<()>| {
        let Some(token) = &token else {
            return Ok(request);
        };
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or_default();
        if bool::from(presented.as_bytes().ct_eq(token.0.as_bytes())) {
            Ok(request)
        } else {
            Err(Status::unauthenticated(
                "this ledger requires the cluster token (FLOODGATE_CLUSTER_TOKEN)",
            ))
        }
    }
}
