//! The `events:` section: where usage events go (NATS JetStream, or the local sled log of
//! `floodgate dev`) and the edge's spool policy. Read once at start, like `listen`.
//!
//! ```yaml
//! events:
//!   backend: nats                 # or `local`
//!   nats:
//!     urls: [nats://127.0.0.1:4222]
//!     shard: "0"                  # subject floodgate.usage.<shard>
//!     replicas: 3
//!     duplicate_window: 10m
//!     max_age: 30d
//!     max_bytes: 107374182400
//!     ack_timeout: 5s
//!   local:
//!     dir: floodgate-data/events
//!   spool:
//!     dir: floodgate-data/spool
//!     flush: 5ms                  # or `always`
//!     max_events: 1000000
//!     drain: 10s                  # publishing what is left at shutdown, at most
//! ```

use std::path::PathBuf;
use std::time::Duration;

use floodgate_events::FlushPolicy;
use floodgate_events::stream::StreamSettings;
use serde::Deserialize;

use super::validate::{Problems, duration};

/// Default spool flush interval.
const DEFAULT_FLUSH: Duration = Duration::from_millis(5);
/// Default spool cap (events), about 1 GiB of typical events.
const DEFAULT_MAX_EVENTS: u64 = 1_000_000;
/// Default longest time a stopping edge keeps publishing what its spool holds.
const DEFAULT_DRAIN: Duration = Duration::from_secs(10);
/// Default time to wait for a JetStream publish ack before retrying.
const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// The `events:` section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvents {
    /// `nats` or `local`.
    pub backend: String,
    /// JetStream settings (backend `nats`).
    #[serde(default)]
    pub nats: Option<RawNats>,
    /// Local log settings (backend `local`).
    #[serde(default)]
    pub local: Option<RawLocal>,
    /// The edge's spool.
    #[serde(default)]
    pub spool: RawSpool,
}

/// `events.nats` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNats {
    /// Server URLs.
    pub urls: Vec<String>,
    /// This edge's shard (a subject token).
    #[serde(default)]
    pub shard: Option<String>,
    /// Stream replicas.
    #[serde(default)]
    pub replicas: Option<usize>,
    /// Deduplication window (`10m`).
    #[serde(default)]
    pub duplicate_window: Option<String>,
    /// Retention by age (`30d`).
    #[serde(default)]
    pub max_age: Option<String>,
    /// Retention by size, in bytes.
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// Publish ack timeout (`5s`).
    #[serde(default)]
    pub ack_timeout: Option<String>,
}

/// `events.local` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLocal {
    /// The log's directory.
    pub dir: PathBuf,
}

/// `events.spool` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpool {
    /// The spool's directory.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// `always`, or a flush interval (`5ms`).
    #[serde(default)]
    pub flush: Option<String>,
    /// Depth at which new requests are refused (503 `usage_spool_full`).
    #[serde(default)]
    pub max_events: Option<u64>,
    /// How long a stopping edge keeps publishing what the spool holds (`10s`; `0s`: not).
    #[serde(default)]
    pub drain: Option<String>,
}

/// Where usage events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventsBackend {
    /// NATS JetStream.
    Nats(NatsEvents),
    /// The local sled event log in `dir`.
    Local {
        /// Its directory.
        dir: PathBuf,
    },
}

/// JetStream settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsEvents {
    /// Server URLs.
    pub urls: Vec<String>,
    /// This edge's shard.
    pub shard: String,
    /// The stream's settings.
    pub stream: StreamSettings,
    /// How long a publish ack is awaited before the event is retried.
    pub ack_timeout: Duration,
}

/// The validated `events:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsConfig {
    /// Where events go.
    pub backend: EventsBackend,
    /// The spool's directory.
    pub spool_dir: PathBuf,
    /// When spooled events are flushed.
    pub flush: FlushPolicy,
    /// The spool cap.
    pub max_events: u64,
    /// How long a stopping edge keeps publishing what the spool holds.
    pub drain: Duration,
}

impl EventsConfig {
    /// What `floodgate dev` uses: the local log in `<data_dir>/events`, the spool in
    /// `<data_dir>/spool`, default flush and cap.
    pub fn local(data_dir: &std::path::Path) -> Self {
        Self {
            backend: EventsBackend::Local {
                dir: data_dir.join("events"),
            },
            spool_dir: data_dir.join("spool"),
            flush: FlushPolicy::Every(DEFAULT_FLUSH),
            max_events: DEFAULT_MAX_EVENTS,
            drain: DEFAULT_DRAIN,
        }
    }
}

/// Validates `events:`; the spool dir is required except for the local backend, where it
/// defaults to `<local dir>/../spool`.
pub(super) fn events(raw: RawEvents, problems: &mut Problems) -> Option<EventsConfig> {
    let before = problems.len();
    let backend = match raw.backend.as_str() {
        "nats" => match raw.nats {
            Some(nats) => Some(EventsBackend::Nats(nats_events(nats, problems))),
            None => {
                problems.add("events.nats", "backend `nats` needs `events.nats.urls`");
                None
            }
        },
        "local" => match raw.local {
            Some(local) => Some(EventsBackend::Local { dir: local.dir }),
            None => {
                problems.add("events.local", "backend `local` needs `events.local.dir`");
                None
            }
        },
        other => {
            problems.add(
                "events.backend",
                format!("`{other}` is not `nats` or `local`"),
            );
            None
        }
    };
    let flush = match raw.spool.flush.as_deref() {
        None => FlushPolicy::Every(DEFAULT_FLUSH),
        Some("always") => FlushPolicy::Always,
        Some(text) => FlushPolicy::Every(duration(text, "events.spool.flush", problems)),
    };
    let max_events = raw.spool.max_events.unwrap_or(DEFAULT_MAX_EVENTS);
    if max_events == 0 {
        problems.add("events.spool.max_events", "must be greater than 0");
    }
    let drain = match raw.spool.drain.as_deref() {
        None => DEFAULT_DRAIN,
        // `0s` turns draining off; anything else is a positive duration.
        Some(text) => match humantime::parse_duration(text) {
            Ok(zero) if zero.is_zero() => Duration::ZERO,
            _ => duration(text, "events.spool.drain", problems),
        },
    };
    let spool_dir = match (raw.spool.dir, &backend) {
        (Some(dir), _) => Some(dir),
        (None, Some(EventsBackend::Local { dir })) => Some(dir.join("spool")),
        (None, _) => {
            problems.add("events.spool.dir", "required with backend `nats`");
            None
        }
    };
    if problems.len() > before {
        return None;
    }
    Some(EventsConfig {
        backend: backend?,
        spool_dir: spool_dir?,
        flush,
        max_events,
        drain,
    })
}

fn nats_events(raw: RawNats, problems: &mut Problems) -> NatsEvents {
    if raw.urls.is_empty() {
        problems.add("events.nats.urls", "list at least one server");
    }
    let shard = raw.shard.unwrap_or_else(|| "0".to_owned());
    let token_ok = !shard.is_empty()
        && shard
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !token_ok {
        problems.add(
            "events.nats.shard",
            format!("`{shard}` is not a subject token (letters, digits, `-`, `_`)"),
        );
    }
    let defaults = StreamSettings::default();
    let mut one = |text: Option<String>, field: &str, default: Duration| {
        text.map(|t| duration(&t, &format!("events.nats.{field}"), problems))
            .unwrap_or(default)
    };
    let stream = StreamSettings {
        replicas: raw.replicas.unwrap_or(defaults.replicas),
        duplicate_window: one(
            raw.duplicate_window,
            "duplicate_window",
            defaults.duplicate_window,
        ),
        max_age: one(raw.max_age, "max_age", defaults.max_age),
        max_bytes: raw.max_bytes.unwrap_or(defaults.max_bytes),
    };
    let ack_timeout = one(raw.ack_timeout, "ack_timeout", DEFAULT_ACK_TIMEOUT);
    if !(1..=5).contains(&stream.replicas) {
        problems.add("events.nats.replicas", "must be between 1 and 5");
    }
    NatsEvents {
        urls: raw.urls,
        shard,
        stream,
        ack_timeout,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::HashMap;

    use super::*;
    use crate::config::{Mode, load_str};

    fn load(events: &str) -> Result<Option<EventsConfig>, String> {
        let text = format!("auth: none\nevents:\n{events}");
        load_str(&text, Mode::Serve, &HashMap::<String, String>::new())
            .map(|c| c.events)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn nats_with_every_setting() {
        let events = load(
            "  backend: nats\n  nats:\n    urls: [nats://a:4222, nats://b:4222]\n    shard: eu-1\n    replicas: 3\n    duplicate_window: 10m\n    max_age: 7d\n    max_bytes: 1000\n    ack_timeout: 2s\n  spool:\n    dir: /var/spool\n    flush: always\n    max_events: 50\n    drain: 2s\n",
        )
        .unwrap()
        .unwrap();
        let EventsBackend::Nats(nats) = &events.backend else {
            panic!("{events:?}")
        };
        assert_eq!(nats.urls.len(), 2);
        assert_eq!(nats.shard, "eu-1");
        assert_eq!(nats.stream.replicas, 3);
        assert_eq!(nats.stream.duplicate_window, Duration::from_secs(600));
        assert_eq!(nats.stream.max_age, Duration::from_secs(7 * 86400));
        assert_eq!(nats.stream.max_bytes, 1000);
        assert_eq!(nats.ack_timeout, Duration::from_secs(2));
        assert_eq!(events.flush, FlushPolicy::Always);
        assert_eq!(events.max_events, 50);
        assert_eq!(events.drain, Duration::from_secs(2));
        assert_eq!(events.spool_dir, PathBuf::from("/var/spool"));
    }

    #[test]
    fn local_defaults_its_spool_next_to_the_log() {
        let events = load("  backend: local\n  local:\n    dir: data/events\n")
            .unwrap()
            .unwrap();
        assert_eq!(events.spool_dir, PathBuf::from("data/events/spool"));
        assert_eq!(events.flush, FlushPolicy::Every(DEFAULT_FLUSH));
        assert_eq!(events.max_events, DEFAULT_MAX_EVENTS);
        assert_eq!(events.drain, DEFAULT_DRAIN);
    }

    #[test]
    fn problems_name_their_field() {
        let error = load("  backend: kafka\n").unwrap_err();
        assert!(error.contains("events.backend"), "{error}");
        let error = load("  backend: nats\n  nats:\n    urls: []\n    shard: a.b\n  spool:\n    flush: soon\n    max_events: 0\n    drain: later\n").unwrap_err();
        for field in [
            "events.nats.urls",
            "events.nats.shard",
            "events.spool.flush",
            "events.spool.max_events",
            "events.spool.drain",
            "events.spool.dir",
        ] {
            assert!(error.contains(field), "{field} in {error}");
        }
        let error =
            load("  backend: nats\n  nats:\n    urls: [x]\n  spool:\n    dir: d\n    bogus: 1\n")
                .unwrap_err();
        assert!(error.contains("bogus"), "{error}");
    }
}
