//! The config file as written: serde types with `deny_unknown_fields`, no checks beyond
//! shapes. [`validate`](super::validate) turns them into the typed [`Config`](super::Config).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::pricing::RawPrice;

/// The whole file. `endpoints` entries are kept as JSON values because each may be written
/// in Floodgate's form or in MLflow 2.x's form; they are parsed one by one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `host:port` to listen on.
    #[serde(default)]
    pub listen: Option<String>,
    /// `none` or `keys`; absent means keys are required in `serve`.
    #[serde(default)]
    pub auth: Option<RawAuthMode>,
    /// Gateway keys.
    #[serde(default)]
    pub keys: Vec<RawKey>,
    /// Request limits.
    #[serde(default)]
    pub limits: RawLimits,
    /// Default upstream timeouts.
    #[serde(default)]
    pub timeouts: RawTimeouts,
    /// Shutdown grace period (`30s`).
    #[serde(default)]
    pub shutdown_grace: Option<String>,
    /// Price overrides, in USD per million tokens.
    #[serde(default)]
    pub prices: Vec<RawPrice>,
    /// Endpoints, native or MLflow-shaped.
    #[serde(default)]
    pub endpoints: Vec<Value>,
    /// Teams (owners of keys and budgets; held by the ledger).
    #[serde(default)]
    pub teams: Vec<RawTeam>,
    /// Users (held by the ledger).
    #[serde(default)]
    pub users: Vec<RawUser>,
    /// Budgets and rate limits (enforced through the ledger's leases).
    #[serde(default)]
    pub budgets: Vec<RawBudget>,
    /// Where usage events go (edge-local, read at start).
    #[serde(default)]
    pub events: Option<super::events::RawEvents>,
    /// Request and response bodies in usage events (edge-local).
    #[serde(default)]
    pub payload_capture: super::payloads::RawPayloadCapture,
}

/// A team as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTeam {
    /// Stable id.
    pub id: String,
    /// Display name (defaults to the id).
    #[serde(default)]
    pub name: Option<String>,
}

/// A user as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    /// Stable id (may be an e-mail address).
    pub id: String,
    /// Display name (defaults to the id).
    #[serde(default)]
    pub name: Option<String>,
    /// The team the user belongs to.
    #[serde(default)]
    pub team: Option<String>,
}

/// A budget or rate limit as written: exactly one `limit_*`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudget {
    /// Stable id.
    pub id: String,
    /// Limit in USD per window (kept as integer micro-dollars).
    #[serde(default)]
    pub limit_usd: Option<f64>,
    /// Limit in requests per window.
    #[serde(default)]
    pub limit_requests: Option<u64>,
    /// Limit in tokens (input plus output) per window.
    #[serde(default)]
    pub limit_tokens: Option<u64>,
    /// `minute`, `hour`, `day`, `week`, `month` (UTC calendar windows) or `total`.
    pub window: String,
    /// Which requests count; absent fields match everything.
    #[serde(default)]
    pub scope: RawScope,
    /// `reject` (default) or `alert`.
    #[serde(default)]
    pub action: Option<String>,
    /// For `alert`: the URL the ledger POSTs the first crossing of each window to.
    #[serde(default)]
    pub webhook: Option<String>,
}

/// A budget's scope as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScope {
    /// Only this endpoint.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Only keys of this team.
    #[serde(default)]
    pub team: Option<String>,
    /// Only keys of this user.
    #[serde(default)]
    pub user: Option<String>,
    /// Only this key (by id).
    #[serde(default)]
    pub key: Option<String>,
}

/// Authentication mode as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawAuthMode {
    /// No authentication.
    None,
    /// Gateway keys.
    Keys,
}

/// One gateway key: the key itself (usually `${ENV}`) or its SHA-256 in hex.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    /// Stable id recorded in usage.
    pub id: String,
    /// The key.
    #[serde(default)]
    pub key: Option<String>,
    /// Hex SHA-256 of the key, so the file need not hold the key.
    #[serde(default)]
    pub key_sha256: Option<String>,
    /// Endpoints this key may call; empty means all.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// The team owning the key.
    #[serde(default)]
    pub team: Option<String>,
    /// The user owning the key.
    #[serde(default)]
    pub user: Option<String>,
}

/// Request limits as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Largest request body in bytes.
    #[serde(default)]
    pub max_body_bytes: Option<usize>,
}

/// Timeouts as written (`10s`, `500ms`).
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    /// Connect timeout.
    #[serde(default)]
    pub connect: Option<String>,
    /// Time to response headers.
    #[serde(default)]
    pub first_byte: Option<String>,
    /// Whole exchange.
    #[serde(default)]
    pub total: Option<String>,
    /// Longest pause between stream events.
    #[serde(default)]
    pub idle: Option<String>,
}

/// A native endpoint.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawEndpoint {
    /// Endpoint name.
    pub name: String,
    /// `chat`, `completions` or `embeddings`.
    pub kind: String,
    /// Targets (the traffic split).
    pub targets: Vec<RawTarget>,
    /// Ordered fallback targets.
    #[serde(default)]
    pub fallbacks: Vec<RawTarget>,
    /// Routing options.
    #[serde(default)]
    pub routing: RawRouting,
    /// Local fixed-window limit.
    #[serde(default)]
    pub rate_limit: Option<RawRateLimit>,
    /// Timeout overrides.
    #[serde(default)]
    pub timeouts: RawTimeouts,
    /// Payload capture override.
    #[serde(default)]
    pub payload_capture: Option<super::payloads::RawCaptureOverride>,
}

/// A native target.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    /// Provider name.
    pub provider: String,
    /// Provider model.
    pub model: String,
    /// Base URL override.
    #[serde(default)]
    pub api_base: Option<String>,
    /// Upstream credentials (never serialized: the ledger keeps them sealed, apart).
    #[serde(default, skip_serializing)]
    pub credentials: RawCredentials,
    /// Traffic weight (default 1).
    #[serde(default)]
    pub weight: Option<u32>,
    /// Azure OpenAI addressing.
    #[serde(default)]
    pub azure: Option<RawAzure>,
    /// `OpenAI-Organization` header.
    #[serde(default)]
    pub organization: Option<String>,
    /// Cloud region (Bedrock, Vertex).
    #[serde(default)]
    pub region: Option<String>,
    /// Cloud project (Vertex).
    #[serde(default)]
    pub project: Option<String>,
    /// Default and cap for `max_tokens`.
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// Price override, USD per million tokens.
    #[serde(default)]
    pub price: Option<RawTargetPrice>,
    /// Timeout overrides for this target.
    #[serde(default)]
    pub timeouts: Option<RawTimeouts>,
}

/// A per-target price, USD per million tokens.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTargetPrice {
    /// Uncached input tokens.
    pub input: f64,
    /// Cached input tokens (defaults to `input`).
    #[serde(default)]
    pub cached_input: Option<f64>,
    /// Prompt-cache writes, five-minute or only lifetime (defaults to `input`).
    #[serde(default)]
    pub cache_write: Option<f64>,
    /// One-hour prompt-cache writes (defaults to `cache_write`).
    #[serde(default)]
    pub cache_write_1h: Option<f64>,
    /// Output tokens.
    pub output: f64,
}

/// Credentials as written: a key, or the name of a client header to forward.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCredentials {
    /// The provider API key (usually `${ENV}`).
    #[serde(default)]
    pub api_key: Option<String>,
    /// Forward this client header's value as the provider key.
    #[serde(default)]
    pub from_header: Option<String>,
    /// AWS access key id (Bedrock SigV4).
    #[serde(default)]
    pub aws_access_key_id: Option<String>,
    /// AWS secret access key.
    #[serde(default)]
    pub aws_secret_access_key: Option<String>,
    /// AWS session token (temporary credentials).
    #[serde(default)]
    pub aws_session_token: Option<String>,
    /// A Google service-account key as JSON text (Vertex).
    #[serde(default)]
    pub service_account: Option<String>,
    /// Path to a Google service-account key file (Vertex).
    #[serde(default)]
    pub service_account_file: Option<String>,
}

/// Azure OpenAI addressing as written.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAzure {
    /// Deployment name (defaults to the target's model).
    #[serde(default)]
    pub deployment: Option<String>,
    /// `api-version`.
    pub api_version: String,
    /// `api_key` (default) or `bearer` (Entra ID token).
    #[serde(default)]
    pub auth: Option<String>,
}

/// A fixed-window request limit, named as in MLflow's `limit`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    /// Calls per period.
    pub calls: u64,
    /// `second`, `minute`, `hour` or `day`.
    pub renewal_period: String,
}

/// Routing options as written.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    /// Sticky split: `{header: x-user-id}` or `{body_field: user}`.
    #[serde(default)]
    pub sticky: Option<RawSticky>,
    /// `weighted` (default) or `least_latency`.
    #[serde(default)]
    pub balance: Option<String>,
    /// Retries.
    #[serde(default)]
    pub retry: RawRetry,
    /// Outlier ejection.
    #[serde(default)]
    pub ejection: RawEjection,
}

/// Sticky key as written.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSticky {
    /// Header name.
    #[serde(default)]
    pub header: Option<String>,
    /// Top-level body field.
    #[serde(default)]
    pub body_field: Option<String>,
}

/// Retry policy as written.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    /// Most attempts, the first included.
    #[serde(default)]
    pub attempts: Option<u32>,
    /// Backoff base (`100ms`).
    #[serde(default)]
    pub backoff: Option<String>,
    /// Backoff cap (`2s`).
    #[serde(default)]
    pub max_backoff: Option<String>,
    /// Retried statuses.
    #[serde(default)]
    pub on_status: Option<Vec<u16>>,
    /// Retries as a fraction of requests.
    #[serde(default)]
    pub budget: Option<f64>,
    /// Retries always allowed per second.
    #[serde(default)]
    pub budget_min_per_second: Option<u32>,
}

/// Ejection policy as written.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawEjection {
    /// Failures in a row that eject.
    #[serde(default)]
    pub consecutive_failures: Option<u32>,
    /// Failure rate that ejects.
    #[serde(default)]
    pub error_rate: Option<f64>,
    /// Requests needed before the rate counts.
    #[serde(default)]
    pub min_requests: Option<u32>,
    /// Rate window (`10s`).
    #[serde(default)]
    pub window: Option<String>,
    /// First ejection length (`10s`).
    #[serde(default)]
    pub cooldown: Option<String>,
    /// Longest ejection (`5m`).
    #[serde(default)]
    pub max_cooldown: Option<String>,
}
