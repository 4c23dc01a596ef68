//! Which failures are tried again, and how long to wait first.

use std::time::{Duration, SystemTime};

use http::HeaderValue;

use crate::config::RetryPolicy;
use crate::providers::ProviderError;

/// What a failed attempt means for the request and for the target's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Try again (another target, or this one after a backoff); the target's health
    /// records a failure.
    Retryable,
    /// The request itself is at fault (a 4xx): no other target would accept it.
    Fatal,
    /// This target cannot serve this kind of request: move on without blaming it.
    Skip,
}

/// Classifies a provider error under `policy`.
pub fn classify(error: &ProviderError, policy: &RetryPolicy) -> Failure {
    match error {
        ProviderError::Connect { .. }
        | ProviderError::Timeout { .. }
        | ProviderError::InvalidResponse { .. }
        | ProviderError::Interrupted { .. } => Failure::Retryable,
        ProviderError::Status(upstream) => {
            if policy.on_status.contains(&upstream.status.as_u16()) {
                Failure::Retryable
            } else {
                Failure::Fatal
            }
        }
        ProviderError::Unsupported(_) => Failure::Skip,
        ProviderError::InvalidRequest(_) => Failure::Fatal,
    }
}

/// Whether a failure should count against the target's health (server-side trouble, not a
/// bad request).
pub fn blames_target(error: &ProviderError) -> bool {
    match error {
        ProviderError::Status(upstream) => {
            let status = upstream.status.as_u16();
            status >= 500 || matches!(status, 408 | 429)
        }
        ProviderError::Unsupported(_) | ProviderError::InvalidRequest(_) => false,
        _ => true,
    }
}

/// The `Retry-After` of an error, if any.
pub fn retry_after(error: &ProviderError) -> Option<Duration> {
    match error {
        ProviderError::Status(upstream) => {
            upstream.retry_after.as_ref().and_then(parse_retry_after)
        }
        _ => None,
    }
}

/// `Retry-After` as seconds (integer or decimal) or an HTTP date.
pub fn parse_retry_after(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let when = httpdate::parse_http_date(text).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The wait before retry number `retry` (1-based) of the same target: full jitter over an
/// exponential backoff, but at least the provider's `Retry-After`. `None` when the
/// provider asks for a longer wait than `max_backoff`: better to fail over or give up.
pub fn backoff(
    policy: &RetryPolicy,
    retry: u32,
    retry_after: Option<Duration>,
) -> Option<Duration> {
    let exponent = retry.saturating_sub(1).min(20);
    let ceiling = policy
        .backoff
        .saturating_mul(1u32 << exponent)
        .min(policy.max_backoff);
    let jitter = ceiling.mul_f64(fastrand::f64());
    match retry_after {
        Some(asked) if asked > policy.max_backoff => None,
        Some(asked) => Some(jitter.max(asked)),
        None => Some(jitter),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            attempts: Some(3),
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            on_status: vec![429, 500, 503],
            budget_ratio: 0.2,
            budget_min_per_second: 10,
        }
    }

    #[test]
    fn backoff_grows_with_jitter_and_honours_retry_after() {
        let policy = policy();
        for retry in 1..=6 {
            let wait = backoff(&policy, retry, None).unwrap();
            let ceiling =
                Duration::from_millis(100 * (1 << (retry - 1))).min(Duration::from_secs(2));
            assert!(wait <= ceiling, "{wait:?} > {ceiling:?}");
        }
        let asked = backoff(&policy, 1, Some(Duration::from_secs(1))).unwrap();
        assert!(asked >= Duration::from_secs(1));
        assert_eq!(backoff(&policy, 1, Some(Duration::from_secs(30))), None);
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        assert_eq!(
            parse_retry_after(&HeaderValue::from_static("7")),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after(&HeaderValue::from_static("0.5")),
            Some(Duration::from_millis(500))
        );
        let past = HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT");
        assert_eq!(parse_retry_after(&past), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(&HeaderValue::from_static("soon")), None);
    }
}
