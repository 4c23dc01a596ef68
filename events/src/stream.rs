//! The JetStream side of the event log: connecting, and creating or updating the stream
//! `FLOODGATE_USAGE` (subjects `floodgate.usage.<shard>`, file storage, replicas, duplicate
//! window, retention by age and size). The edge calls [`ensure_stream`] before it publishes;
//! `floodgate ctl events init` calls it on demand.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

/// The stream's name.
pub const STREAM: &str = "FLOODGATE_USAGE";

/// Subjects are `floodgate.usage.<shard>`.
pub const SUBJECT_PREFIX: &str = "floodgate.usage";

/// The subject events of `shard` are published on.
pub fn subject(shard: &str) -> String {
    format!("{SUBJECT_PREFIX}.{shard}")
}

/// The stream's settings (from the `events:` section of the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSettings {
    /// Copies of each message in the JetStream cluster (3 in production, 1 on one server).
    pub replicas: usize,
    /// Messages with an id seen within this window are dropped as duplicates; must exceed
    /// the longest time a publisher may retry one event.
    pub duplicate_window: Duration,
    /// Messages older than this are removed.
    pub max_age: Duration,
    /// When the stream exceeds this many bytes, the oldest messages are removed.
    pub max_bytes: u64,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            replicas: 1,
            duplicate_window: Duration::from_secs(2 * 60),
            max_age: Duration::from_secs(30 * 24 * 3600),
            max_bytes: 10 * 1024 * 1024 * 1024,
        }
    }
}

/// Why the stream could not be reached or set up.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// No connection to the NATS servers.
    #[error("cannot connect to NATS at {urls}: {reason}")]
    Connect {
        /// The URLs tried.
        urls: String,
        /// The client's error.
        reason: String,
    },
    /// JetStream refused or did not answer the stream create/update.
    #[error("cannot create or update stream {STREAM}: {0}")]
    Setup(String),
}

/// Connects to the NATS servers at `urls`, failing if none answers within `timeout`.
pub async fn connect(
    urls: &[String],
    timeout: Duration,
) -> Result<async_nats::Client, StreamError> {
    let joined = urls.join(",");
    let error = |reason: String| StreamError::Connect {
        urls: joined.clone(),
        reason,
    };
    let options = async_nats::ConnectOptions::new().connection_timeout(timeout);
    tokio::time::timeout(timeout, options.connect(joined.as_str()))
        .await
        .map_err(|_| error(format!("no answer within {timeout:?}")))?
        .map_err(|e| error(e.to_string()))
}

/// Connects to `urls` in the background: returns at once, and the client keeps trying to
/// connect (and reconnect) for the life of the process. What the edge uses, so that it
/// starts and serves while NATS is down.
pub async fn connect_lazily(urls: &[String]) -> Result<async_nats::Client, StreamError> {
    let joined = urls.join(",");
    async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connect(joined.as_str())
        .await
        .map_err(|e| StreamError::Connect {
            urls: joined.clone(),
            reason: e.to_string(),
        })
}

/// Creates the stream, or updates its settings to `settings`; returns its state.
pub async fn ensure_stream(
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> Result<stream::Info, StreamError> {
    let config = stream::Config {
        name: STREAM.to_owned(),
        subjects: vec![format!("{SUBJECT_PREFIX}.*")],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        num_replicas: settings.replicas,
        duplicate_window: settings.duplicate_window,
        max_age: settings.max_age,
        max_bytes: i64::try_from(settings.max_bytes).unwrap_or(i64::MAX),
        ..stream::Config::default()
    };
    js.create_or_update_stream(config)
        .await
        .map_err(|e| StreamError::Setup(e.to_string()))
}
