//! Validation of one endpoint: name, kind, the split targets and fallbacks, its rate
//! limit, timeouts and routing options (sticky split, balance, retries, ejection).

use std::time::Duration;

use super::from_value;
use super::mlflow::{self, MlflowEndpoint};
use super::model::{
    Balance, EjectionPolicy, Endpoint, EndpointKind, RateLimit, RetryPolicy, Routing, StickyKey,
    Target, Timeouts,
};
use super::payloads::capture_override;
use super::raw::{RawEndpoint, RawRateLimit, RawRouting, RawTarget};
use super::target::target;
use super::validate::{Problems, duration, timeouts};

/// Statuses retried by default: rate limits, server errors and Anthropic's overload.
const DEFAULT_RETRY_STATUSES: &[u16] = &[408, 429, 500, 502, 503, 504, 529];

/// Validates one `endpoints[]` entry (native or MLflow-shaped).
pub(super) fn endpoint(
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
    let endpoint_timeouts = timeouts(
        &raw.timeouts,
        defaults,
        &format!("{path}.timeouts"),
        problems,
    );
    if raw.targets.is_empty() {
        problems.add(format!("{path}.targets"), "at least one target is required");
    }
    let split = targets(
        raw.targets,
        &format!("{path}.targets"),
        endpoint_timeouts,
        problems,
    );
    let fallbacks = targets(
        raw.fallbacks,
        &format!("{path}.fallbacks"),
        endpoint_timeouts,
        problems,
    );
    let total_weight = split
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
    let routing = routing(raw.routing, &format!("{path}.routing"), problems);
    let payload_capture = capture_override(raw.payload_capture, path, problems);
    if split.is_empty() {
        return None;
    }
    Some(Endpoint {
        name: raw.name,
        kind,
        targets: split,
        total_weight,
        fallbacks,
        routing,
        rate_limit,
        timeouts: endpoint_timeouts,
        payload_capture,
    })
}

fn targets(
    raw: Vec<RawTarget>,
    path: &str,
    defaults: Timeouts,
    problems: &mut Problems,
) -> Vec<Target> {
    raw.into_iter()
        .enumerate()
        .filter_map(|(index, raw)| target(raw, &format!("{path}[{index}]"), defaults, problems))
        .collect()
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

fn routing(raw: RawRouting, path: &str, problems: &mut Problems) -> Routing {
    let sticky = raw
        .sticky
        .and_then(|sticky| match (sticky.header, sticky.body_field) {
            (Some(header), None) => match http::HeaderName::from_bytes(header.as_bytes()) {
                Ok(name) => Some(StickyKey::Header(name)),
                Err(_) => {
                    problems.add(
                        format!("{path}.sticky.header"),
                        format!("`{header}` is not a valid header name"),
                    );
                    None
                }
            },
            (None, Some(field)) if !field.is_empty() => Some(StickyKey::BodyField(field)),
            _ => {
                problems.add(
                    format!("{path}.sticky"),
                    "give exactly one of `header` or `body_field`",
                );
                None
            }
        });
    let balance = match raw.balance.as_deref() {
        None | Some("weighted") => Balance::Weighted,
        Some("least_latency") => Balance::LeastLatency,
        Some(other) => {
            problems.add(
                format!("{path}.balance"),
                format!("`{other}` must be weighted or least_latency"),
            );
            Balance::Weighted
        }
    };
    let mut time = |text: Option<String>, field: &str, default: Duration| {
        text.map(|t| duration(&t, &format!("{path}.{field}"), problems))
            .unwrap_or(default)
    };
    let retry = RetryPolicy {
        attempts: raw.retry.attempts,
        backoff: time(
            raw.retry.backoff,
            "retry.backoff",
            Duration::from_millis(100),
        ),
        max_backoff: time(
            raw.retry.max_backoff,
            "retry.max_backoff",
            Duration::from_secs(2),
        ),
        on_status: raw
            .retry
            .on_status
            .unwrap_or_else(|| DEFAULT_RETRY_STATUSES.to_vec()),
        budget_ratio: raw.retry.budget.unwrap_or(0.2),
        budget_min_per_second: raw.retry.budget_min_per_second.unwrap_or(10),
    };
    let ejection = EjectionPolicy {
        consecutive_failures: raw.ejection.consecutive_failures.unwrap_or(5),
        error_rate: raw.ejection.error_rate.unwrap_or(0.0),
        min_requests: raw.ejection.min_requests.unwrap_or(20),
        window: time(
            raw.ejection.window,
            "ejection.window",
            Duration::from_secs(10),
        ),
        cooldown: time(
            raw.ejection.cooldown,
            "ejection.cooldown",
            Duration::from_secs(10),
        ),
        max_cooldown: time(
            raw.ejection.max_cooldown,
            "ejection.max_cooldown",
            Duration::from_secs(300),
        ),
    };
    if retry.attempts == Some(0) {
        problems.add(format!("{path}.retry.attempts"), "must be at least 1");
    }
    if !(0.0..=10.0).contains(&retry.budget_ratio) {
        problems.add(format!("{path}.retry.budget"), "must be between 0 and 10");
    }
    if let Some(bad) = retry.on_status.iter().find(|s| !(100..=599).contains(*s)) {
        problems.add(
            format!("{path}.retry.on_status"),
            format!("{bad} is not an HTTP status"),
        );
    }
    if retry
        .on_status
        .iter()
        .any(|s| (400..500).contains(s) && ![408, 409, 425, 429].contains(s))
    {
        problems.add(
            format!("{path}.retry.on_status"),
            "client errors (4xx other than 408, 409, 425, 429) are never retried: the next target would refuse the same request",
        );
    }
    if !(0.0..=1.0).contains(&ejection.error_rate) {
        problems.add(
            format!("{path}.ejection.error_rate"),
            "must be between 0 and 1",
        );
    }
    if ejection.max_cooldown < ejection.cooldown {
        problems.add(
            format!("{path}.ejection.max_cooldown"),
            "must be at least `cooldown`",
        );
    }
    Routing {
        sticky,
        balance,
        retry,
        ejection,
    }
}
