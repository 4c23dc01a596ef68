//! [`ProjectorSettings`]: where a projector keeps its store, where it serves the query API,
//! how long it remembers event ids and keeps traces, and how it fetches.
//! [`ProjectorSettings::validate`] refuses values that would lose or double-count events.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::runner::LoopSettings;

/// A bad setting, named with its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// A duration that must be positive is zero.
    #[error("projector.{field} must be more than zero")]
    Zero {
        /// The setting.
        field: &'static str,
    },
    /// The dedup horizon must outlast any redelivery, so it has a floor.
    #[error("projector.dedup_horizon {given:?} is shorter than the minimum {min:?}")]
    HorizonTooShort {
        /// The value given.
        given: Duration,
        /// The least allowed.
        min: Duration,
    },
}

/// Shortest dedup horizon accepted: longer than any publisher retry or redelivery.
pub const MIN_DEDUP_HORIZON: Duration = Duration::from_secs(3_600);

/// A projector's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectorSettings {
    /// The sled store's directory.
    pub data_dir: PathBuf,
    /// The gRPC `UsageService` address.
    pub grpc_listen: SocketAddr,
    /// The JSON API address.
    pub http_listen: SocketAddr,
    /// How long an event id is remembered to skip a republished event (default 7 days).
    pub dedup_horizon: Duration,
    /// How long traces are kept, by event time (default 7 days).
    pub trace_retention: Duration,
    /// How often old traces and dedup entries are pruned (default 1 minute).
    pub prune_interval: Duration,
    /// Batch size and fetch wait.
    pub fetch: LoopSettings,
}

impl ProjectorSettings {
    /// Defaults for a store in `data_dir`: gRPC on `127.0.0.1:7080`, JSON on
    /// `127.0.0.1:8082`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let week = Duration::from_secs(7 * 86_400);
        Self {
            data_dir: data_dir.into(),
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 7080)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8082)),
            dedup_horizon: week,
            trace_retention: week,
            prune_interval: Duration::from_secs(60),
            fetch: LoopSettings::default(),
        }
    }

    /// The settings, if every value is usable.
    pub fn validate(self) -> Result<Self, SettingsError> {
        for (field, value) in [
            ("trace_retention", self.trace_retention),
            ("prune_interval", self.prune_interval),
            ("fetch_wait", self.fetch.wait),
        ] {
            if value.is_zero() {
                return Err(SettingsError::Zero { field });
            }
        }
        if self.fetch.batch == 0 {
            return Err(SettingsError::Zero { field: "batch" });
        }
        if self.dedup_horizon < MIN_DEDUP_HORIZON {
            return Err(SettingsError::HorizonTooShort {
                given: self.dedup_horizon,
                min: MIN_DEDUP_HORIZON,
            });
        }
        Ok(self)
    }
}
