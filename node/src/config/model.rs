//! The validated, typed configuration the edge serves from. Built only by
//! [`validate`](super::validate); never deserialized directly, so every value here has
//! already been checked.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;

use floodgate_cluster::ledger::BudgetSpec;

use super::events::EventsConfig;
use super::payloads::{CaptureOverride, PayloadCapture};
use crate::pricing::{ModelPrice, PriceTable};
use crate::providers::ProviderKind;
use crate::secret::Secret;

/// Everything one edge needs to serve requests.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// How clients authenticate to the gateway.
    pub auth: Auth,
    /// Request size limits.
    pub limits: Limits,
    /// Default upstream timeouts (endpoints may override them).
    pub timeouts: Timeouts,
    /// How long shutdown waits for in-flight requests and streams.
    pub shutdown_grace: Duration,
    /// Endpoints by name, in file order.
    pub endpoints: IndexMap<String, Arc<Endpoint>>,
    /// Prices used to compute each request's cost.
    pub prices: Arc<PriceTable>,
    /// Budgets and rate limits held by the ledger (empty without one); requests reserve
    /// from leases on every budget whose scope they match.
    pub budgets: Arc<[BudgetSpec]>,
    /// Where usage events go; `None` logs them instead (edge-local, read at start).
    pub events: Option<EventsConfig>,
    /// Request and response bodies in usage events (edge-local; endpoints may override).
    pub payload_capture: PayloadCapture,
}

impl Config {
    /// Every connect timeout a call may use: the top level's, and each endpoint's and
    /// target's (one pooled HTTP client is kept per distinct value).
    pub fn connect_timeouts(&self) -> BTreeSet<Duration> {
        let mut timeouts = BTreeSet::from([self.timeouts.connect]);
        for endpoint in self.endpoints.values() {
            timeouts.insert(endpoint.timeouts.connect);
            timeouts.extend(endpoint.candidates().map(|target| target.timeouts.connect));
        }
        timeouts
    }
}

/// Client authentication mode.
#[derive(Debug, Clone)]
pub enum Auth {
    /// No authentication (development, or `auth: none` said explicitly).
    None,
    /// Gateway keys, stored as SHA-256 hashes.
    Keys(GatewayKeys),
}

/// Gateway keys by the SHA-256 of the key; the key itself is not kept.
#[derive(Debug, Clone, Default)]
pub struct GatewayKeys {
    by_hash: HashMap<[u8; 32], Arc<KeyInfo>>,
}

impl GatewayKeys {
    /// Adds a key by its hash; returns false when the same key was already listed.
    pub fn insert(&mut self, hash: [u8; 32], info: KeyInfo) -> bool {
        self.by_hash.insert(hash, Arc::new(info)).is_none()
    }

    /// Looks a presented key up by its hash.
    pub fn find(&self, hash: &[u8; 32]) -> Option<&Arc<KeyInfo>> {
        self.by_hash.get(hash)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// True when no key is configured.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

/// What the gateway knows of an accepted key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// Stable id recorded in usage records (never the key).
    pub id: String,
    /// Endpoints this key may call; empty means all.
    pub endpoints: Vec<String>,
    /// The team owning the key (budgets scoped to a team count its requests).
    pub team: Option<String>,
    /// The user owning the key.
    pub user: Option<String>,
    /// From this instant (Unix ms) the key is refused.
    pub expires_at: Option<u64>,
}

/// Request size limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
}

/// Upstream timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP (and TLS) connect; calls are sent with the pooled client built for this value.
    pub connect: Duration,
    /// From sending the request to the response headers.
    pub first_byte: Duration,
    /// The whole upstream exchange, streams included.
    pub total: Duration,
    /// Longest pause between two stream events.
    pub idle: Duration,
}

/// The operation an endpoint serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndpointKind {
    /// Chat completions (`llm/v1/chat`).
    Chat,
    /// Legacy text completions (`llm/v1/completions`).
    Completions,
    /// Embeddings (`llm/v1/embeddings`).
    Embeddings,
}

impl EndpointKind {
    /// The native config name (`chat`, `completions`, `embeddings`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Completions => "completions",
            Self::Embeddings => "embeddings",
        }
    }

    /// The MLflow endpoint type (`llm/v1/chat`, ...).
    pub fn mlflow_type(self) -> &'static str {
        match self {
            Self::Chat => "llm/v1/chat",
            Self::Completions => "llm/v1/completions",
            Self::Embeddings => "llm/v1/embeddings",
        }
    }

    /// The path below the provider's base URL for this operation.
    pub fn upstream_path(self) -> &'static str {
        match self {
            Self::Chat => "/chat/completions",
            Self::Completions => "/completions",
            Self::Embeddings => "/embeddings",
        }
    }
}

/// A named endpoint: what clients call as `model`.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Name, `[A-Za-z0-9_-]+`.
    pub name: String,
    /// Operation served.
    pub kind: EndpointKind,
    /// Targets, at least one; chosen by weight (the traffic split).
    pub targets: Vec<Target>,
    /// Sum of the targets' weights (> 0).
    pub total_weight: u32,
    /// Targets tried in order when the split's choice fails with a retryable error.
    pub fallbacks: Vec<Target>,
    /// How targets are chosen, retried and ejected.
    pub routing: Routing,
    /// Local rate limit, if any.
    pub rate_limit: Option<RateLimit>,
    /// Upstream timeouts for this endpoint.
    pub timeouts: Timeouts,
    /// This endpoint's override of the payload capture settings.
    pub payload_capture: CaptureOverride,
}

impl Endpoint {
    /// The split target a `roll` uniform in `0..total_weight` lands on, by index.
    pub fn split_index(&self, roll: u32) -> usize {
        let mut left = roll;
        for (index, target) in self.targets.iter().enumerate() {
            if left < target.weight {
                return index;
            }
            left -= target.weight;
        }
        // Unreachable for roll < total_weight; the first target is a safe answer anyway.
        0
    }

    /// Every candidate: the split targets, then the fallbacks. Indexes into this sequence
    /// name candidates in routing state.
    pub fn candidates(&self) -> impl Iterator<Item = &Target> {
        self.targets.iter().chain(&self.fallbacks)
    }

    /// The candidate at `index` (split targets first, then fallbacks).
    pub fn candidate(&self, index: usize) -> &Target {
        self.targets
            .get(index)
            .or_else(|| self.fallbacks.get(index - self.targets.len()))
            .unwrap_or(&self.targets[0])
    }

    /// Number of candidates.
    pub fn candidate_count(&self) -> usize {
        self.targets.len() + self.fallbacks.len()
    }
}

/// Routing options of an endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    /// Keep a caller on one split target, keyed by a header or body field.
    pub sticky: Option<StickyKey>,
    /// How the split target is chosen.
    pub balance: Balance,
    /// Retries and fallbacks.
    pub retry: RetryPolicy,
    /// Passive outlier ejection.
    pub ejection: EjectionPolicy,
}

/// Where the sticky key is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StickyKey {
    /// A request header (e.g. `x-user-id`).
    Header(http::HeaderName),
    /// A top-level string field of the body (e.g. `user`).
    BodyField(String),
}

/// Choice among the split targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Random in proportion to weight.
    Weighted,
    /// Power of two choices by peak-EWMA latency × in-flight, among healthy targets of the
    /// same (highest) weight.
    LeastLatency,
}

/// When and how a failed attempt is tried again.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Most attempts per request (first included); `None`: each candidate once.
    pub attempts: Option<u32>,
    /// Base of the exponential backoff before retrying the same target.
    pub backoff: Duration,
    /// Cap of the backoff, and the longest `Retry-After` honoured.
    pub max_backoff: Duration,
    /// Upstream statuses that are retried (connect errors and timeouts always are).
    pub on_status: Vec<u16>,
    /// Retries allowed as a fraction of requests (over a 10 s window).
    pub budget_ratio: f64,
    /// Retries always allowed per second, whatever the ratio.
    pub budget_min_per_second: u32,
}

/// When a failing target is taken out of rotation.
#[derive(Debug, Clone, PartialEq)]
pub struct EjectionPolicy {
    /// Eject after this many failures in a row (0 disables).
    pub consecutive_failures: u32,
    /// Eject when the failure rate over `window` reaches this (0 disables).
    pub error_rate: f64,
    /// Requests needed in the window before the rate counts.
    pub min_requests: u32,
    /// The error-rate window.
    pub window: Duration,
    /// First ejection's length; doubles on each repeat, up to `max_cooldown`.
    pub cooldown: Duration,
    /// Longest ejection.
    pub max_cooldown: Duration,
}

/// One upstream model behind an endpoint.
#[derive(Debug, Clone)]
pub struct Target {
    /// Provider family.
    pub provider: ProviderKind,
    /// Provider-side model name sent upstream.
    pub model: String,
    /// Base URL without a trailing slash (`https://api.openai.com/v1`).
    pub api_base: String,
    /// How the gateway authenticates upstream.
    pub credentials: Credentials,
    /// Relative weight for traffic splitting (> 0).
    pub weight: u32,
    /// Azure OpenAI specifics, for `provider: azure`.
    pub azure: Option<AzureTarget>,
    /// `OpenAI-Organization` header, if set.
    pub organization: Option<String>,
    /// Cloud region (Bedrock: `us-east-1`; Vertex: `us-central1`).
    pub region: Option<String>,
    /// Cloud project (Vertex).
    pub project: Option<String>,
    /// `max_tokens` sent when the client gives none, for providers that require it
    /// (Anthropic); also the cap the gateway enforces for this target, if set.
    pub max_tokens: Option<u64>,
    /// Price override for this target (else the price table).
    pub price: Option<ModelPrice>,
    /// Timeouts for calls to this target (its own, else the endpoint's).
    pub timeouts: Timeouts,
}

/// Upstream credentials for one target.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// Send no credentials (local servers).
    None,
    /// A key held by the gateway.
    ApiKey(Secret),
    /// Forward the value of this client request header as the provider key. Configured
    /// explicitly; the gateway never forwards client credentials otherwise.
    FromClientHeader(http::HeaderName),
    /// AWS access keys, for SigV4 signing (Bedrock).
    Aws {
        /// `AWS_ACCESS_KEY_ID`.
        access_key_id: String,
        /// `AWS_SECRET_ACCESS_KEY`.
        secret_access_key: Secret,
        /// `AWS_SESSION_TOKEN`, for temporary credentials.
        session_token: Option<Secret>,
    },
    /// A Google service-account key (the JSON document), exchanged for OAuth2 access
    /// tokens (Vertex AI).
    ServiceAccount(Secret),
}

/// Azure OpenAI deployment addressing.
#[derive(Debug, Clone)]
pub struct AzureTarget {
    /// Deployment name in the URL path.
    pub deployment: String,
    /// `api-version` query parameter.
    pub api_version: String,
    /// Send the key as `Authorization: Bearer` (Entra ID token) instead of `api-key`.
    pub bearer: bool,
}

/// A fixed-window request limit on one endpoint (MLflow's `limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Calls allowed per window.
    pub calls: u64,
    /// Window length.
    pub period: Duration,
}
