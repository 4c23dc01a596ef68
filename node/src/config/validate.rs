//! Raw config → typed [`Config`]: every check, every default, all problems reported at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use sha2::{Digest, Sha256};

use super::mlflow::{self, MlflowEndpoint};
use super::model::{
    Auth, Config, Endpoint, EndpointKind, GatewayKeys, KeyInfo, Limits, RateLimit, Target, Timeouts,
};
use super::raw::{RawAuthMode, RawConfig, RawEndpoint, RawRateLimit, RawTimeouts};
use super::target::target;
use super::{ConfigError, Mode, from_value};
use crate::pricing::PriceTable;

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_MAX_BODY: usize = 10 * 1024 * 1024;
const DEFAULT_TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(10),
    first_byte: Duration::from_secs(300),
    total: Duration::from_secs(600),
};
const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// Collects problems so one run reports all of them.
#[derive(Default)]
pub(super) struct Problems(Vec<ConfigError>);

impl Problems {
    pub(super) fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError::field(path, message));
    }

    fn push(&mut self, error: ConfigError) {
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

fn decode_sha256(hex: &str) -> Option<[u8; 32]> {
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

fn endpoint(
    entry: serde_json::Value,
    path: &str,
    defaults: Timeouts,
    problems: &mut Problems,
) -> Option<Endpoint> {
    let raw: RawEndpoint = if mlflow::is_mlflow_entry(&entry) {
        let parsed: MlflowEndpoint = from_value(entry, path).map_err(|e| problems.push(e)).ok()?;
        parsed
            .into_native()
            .map_err(|e| problems.add(path, e.to_string()))
            .ok()?
    } else {
        from_value(entry, path).map_err(|e| problems.push(e)).ok()?
    };

    let name_ok = !raw.name.is_empty()
        && raw
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !name_ok {
        problems.add(
            format!("{path}.name"),
            format!("`{}` must match [A-Za-z0-9_-]+", raw.name),
        );
    }
    let kind = match raw.kind.as_str() {
        "chat" => EndpointKind::Chat,
        "completions" => EndpointKind::Completions,
        "embeddings" => EndpointKind::Embeddings,
        other => {
            problems.add(
                format!("{path}.kind"),
                format!("unknown kind `{other}` (expected chat, completions or embeddings)"),
            );
            EndpointKind::Chat
        }
    };
    if raw.targets.is_empty() {
        problems.add(format!("{path}.targets"), "at least one target is required");
    }
    let targets: Vec<Target> = raw
        .targets
        .into_iter()
        .enumerate()
        .filter_map(|(index, target_raw)| {
            target(target_raw, &format!("{path}.targets[{index}]"), problems)
        })
        .collect();
    let total_weight = targets
        .iter()
        .try_fold(0u32, |sum, t| sum.checked_add(t.weight));
    let Some(total_weight) = total_weight else {
        problems.add(format!("{path}.targets"), "the sum of weights overflows");
        return None;
    };
    let rate_limit = raw
        .rate_limit
        .as_ref()
        .and_then(|limit| rate_limit(limit, &format!("{path}.rate_limit"), problems));
    let timeouts = timeouts(
        &raw.timeouts,
        defaults,
        &format!("{path}.timeouts"),
        problems,
    );
    if targets.is_empty() {
        return None;
    }
    Some(Endpoint {
        name: raw.name,
        kind,
        targets,
        total_weight,
        rate_limit,
        timeouts,
    })
}

fn rate_limit(raw: &RawRateLimit, path: &str, problems: &mut Problems) -> Option<RateLimit> {
    let period = match raw.renewal_period.as_str() {
        "second" => Duration::from_secs(1),
        "minute" => Duration::from_secs(60),
        "hour" => Duration::from_secs(3600),
        "day" => Duration::from_secs(86_400),
        other => {
            problems.add(
                format!("{path}.renewal_period"),
                format!("`{other}` must be second, minute, hour or day"),
            );
            return None;
        }
    };
    if raw.calls == 0 {
        problems.add(format!("{path}.calls"), "must be greater than 0");
        return None;
    }
    Some(RateLimit {
        calls: raw.calls,
        period,
    })
}

fn timeouts(
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
    }
}

fn duration(text: &str, path: &str, problems: &mut Problems) -> Duration {
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
