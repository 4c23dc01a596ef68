//! Raw config → typed [`Config`]: every check, every default, all problems reported at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use sha2::{Digest, Sha256};

use super::budgets::{budgets, check_people};
use super::endpoint::endpoint;
use super::events::events;
use super::model::{Auth, Config, Endpoint, GatewayKeys, KeyInfo, Limits, Timeouts};
use super::payloads::payload_capture;
use super::raw::{RawAuthMode, RawConfig, RawTimeouts};
use super::{ConfigError, Mode};
use crate::pricing::PriceTable;

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_MAX_BODY: usize = 10 * 1024 * 1024;
const DEFAULT_TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(10),
    first_byte: Duration::from_secs(300),
    total: Duration::from_secs(600),
    idle: Duration::from_secs(120),
};
const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// Collects problems so one run reports all of them.
#[derive(Default)]
pub(super) struct Problems(Vec<ConfigError>);

impl Problems {
    pub(super) fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError::field(path, message));
    }

    /// `Ok` when nothing was found, else the one problem or all of them.
    pub(super) fn into_result(mut self) -> Result<(), ConfigError> {
        match self.0.len() {
            0 => Ok(()),
            1 => Err(self.0.remove(0)),
            _ => Err(ConfigError::Many(self.0)),
        }
    }

    /// How many problems so far.
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn push(&mut self, error: ConfigError) {
        match error {
            ConfigError::Many(all) => self.0.extend(all),
            other => self.0.push(other),
        }
    }
}

/// Validates a raw config into a typed one.
pub fn validate(raw: RawConfig, mode: Mode) -> Result<Config, ConfigError> {
    let mut problems = Problems::default();

    let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = listen_text.parse::<SocketAddr>().unwrap_or_else(|_| {
        problems.add(
            "listen",
            format!("`{listen_text}` is not an ip:port address"),
        );
        SocketAddr::from(([127, 0, 0, 1], 8080))
    });

    let max_body_bytes = raw.limits.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY);
    if max_body_bytes == 0 {
        problems.add("limits.max_body_bytes", "must be greater than 0");
    }
    let timeouts = timeouts(&raw.timeouts, DEFAULT_TIMEOUTS, "timeouts", &mut problems);
    let shutdown_grace = raw
        .shutdown_grace
        .as_deref()
        .map(|text| duration(text, "shutdown_grace", &mut problems))
        .unwrap_or(DEFAULT_GRACE);

    let mut prices = PriceTable::shipped();
    for (index, price) in raw.prices.iter().enumerate() {
        if let Err(e) = prices.set(price) {
            problems.add(format!("prices[{index}]"), e.to_string());
        }
    }
    if !raw.prices.is_empty() {
        prices.mark_overridden();
    }

    let mut endpoints = IndexMap::new();
    for (index, entry) in raw.endpoints.into_iter().enumerate() {
        let path = format!("endpoints[{index}]");
        let Some(endpoint) = endpoint(entry, &path, timeouts, &mut problems) else {
            continue;
        };
        if endpoints.contains_key(&endpoint.name) {
            problems.add(
                format!("{path}.name"),
                format!("duplicate endpoint name `{}`", endpoint.name),
            );
            continue;
        }
        endpoints.insert(endpoint.name.clone(), Arc::new(endpoint));
    }

    let auth = auth(raw.auth, raw.keys, mode, &endpoints, &mut problems);
    check_people(&raw.teams, &raw.users, &mut problems);
    let budgets = budgets(&raw.budgets, &mut problems);
    let events = raw.events.and_then(|raw| events(raw, &mut problems));
    let payload_capture = payload_capture(raw.payload_capture, &mut problems);

    if !problems.0.is_empty() {
        return Err(if problems.0.len() == 1 {
            problems.0.remove(0)
        } else {
            ConfigError::Many(problems.0)
        });
    }
    Ok(Config {
        listen,
        auth,
        limits: Limits { max_body_bytes },
        timeouts,
        shutdown_grace,
        endpoints,
        prices: Arc::new(prices),
        budgets: Arc::from(budgets),
        events,
        payload_capture,
    })
}

fn auth(
    mode_written: Option<RawAuthMode>,
    raw_keys: Vec<super::raw::RawKey>,
    mode: Mode,
    endpoints: &IndexMap<String, Arc<Endpoint>>,
    problems: &mut Problems,
) -> Auth {
    let mut keys = GatewayKeys::default();
    for (index, raw) in raw_keys.into_iter().enumerate() {
        let path = format!("keys[{index}]");
        if raw.id.trim().is_empty() {
            problems.add(format!("{path}.id"), "must not be empty");
        }
        for name in &raw.endpoints {
            if !endpoints.contains_key(name) {
                problems.add(
                    format!("{path}.endpoints"),
                    format!("unknown endpoint `{name}`"),
                );
            }
        }
        let hash = match (&raw.key, &raw.key_sha256) {
            (Some(key), None) if key.len() >= 8 => Sha256::digest(key.as_bytes()).into(),
            (Some(_), None) => {
                problems.add(format!("{path}.key"), "must be at least 8 characters");
                continue;
            }
            (None, Some(hex)) => match decode_sha256(hex) {
                Some(hash) => hash,
                None => {
                    problems.add(format!("{path}.key_sha256"), "must be 64 hex characters");
                    continue;
                }
            },
            _ => {
                problems.add(&path, "give exactly one of `key` or `key_sha256`");
                continue;
            }
        };
        let info = KeyInfo {
            id: raw.id,
            endpoints: raw.endpoints,
            team: raw.team,
            user: raw.user,
            expires_at: None,
        };
        if !keys.insert(hash, info) {
            problems.add(format!("{path}.key"), "the same key is listed twice");
        }
    }
    match (mode_written, mode) {
        (Some(RawAuthMode::None), _) => {
            if !keys.is_empty() {
                problems.add(
                    "auth",
                    "`auth: none` with `keys` listed: remove one of them",
                );
            }
            Auth::None
        }
        (None, Mode::Dev) if keys.is_empty() => Auth::None,
        (None, Mode::Ledger) => Auth::Keys(keys),
        _ if keys.is_empty() => {
            problems.add(
                "auth",
                "gateway keys are required in serve mode: list `keys`, or set `auth: none` explicitly",
            );
            Auth::None
        }
        _ => Auth::Keys(keys),
    }
}

pub(super) fn decode_sha256(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(bytes.chunks(2)) {
        let text = std::str::from_utf8(pair).ok()?;
        *slot = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

pub(super) fn timeouts(
    raw: &RawTimeouts,
    defaults: Timeouts,
    path: &str,
    problems: &mut Problems,
) -> Timeouts {
    let mut one = |text: &Option<String>, field: &str, default: Duration| {
        text.as_deref()
            .map(|text| duration(text, &format!("{path}.{field}"), problems))
            .unwrap_or(default)
    };
    Timeouts {
        connect: one(&raw.connect, "connect", defaults.connect),
        first_byte: one(&raw.first_byte, "first_byte", defaults.first_byte),
        total: one(&raw.total, "total", defaults.total),
        idle: one(&raw.idle, "idle", defaults.idle),
    }
}

pub(super) fn duration(text: &str, path: &str, problems: &mut Problems) -> Duration {
    match humantime::parse_duration(text) {
        Ok(value) if !value.is_zero() => value,
        _ => {
            problems.add(
                path,
                format!("`{text}` is not a positive duration like `10s` or `500ms`"),
            );
            Duration::from_secs(1)
        }
    }
}
