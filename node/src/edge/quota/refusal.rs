//! [`Denied`]: why a request could not reserve its worst case, and how that becomes the
//! client's `429` — `rate_limit_exceeded` for minute-window request and token budgets,
//! `budget_exceeded` for everything else — with `Retry-After` and the `x-ratelimit-*`
//! headers; and [`rate_limit_headers`], the same headers for a budget that let a request
//! through.

use floodgate_cluster::consensus::now_millis;
use floodgate_cluster::ledger::{BudgetSpec, Metric, Refusal, Window};
use http::{HeaderMap, HeaderValue, StatusCode};

use super::ledger::QuotaError;
use crate::edge::error::{ApiError, ErrorCode};

/// Why a reservation failed.
#[derive(Debug)]
pub enum Denial {
    /// The ledger refused a lease: the budget has too little left.
    Refused(Refusal),
    /// The ledger could not be reached, and the local lease had no room.
    Unavailable(QuotaError),
    /// A USD budget applies but no price is known for the target.
    Unpriced {
        /// `provider/model`.
        target: String,
    },
    /// A token or USD budget applies to a route that reads no tokens (the raw proxy).
    Unmetered,
}

/// A reservation refused on one budget.
#[derive(Debug)]
pub struct Denied {
    /// The budget that refused.
    pub spec: BudgetSpec,
    /// Why.
    pub denial: Denial,
}

impl Denied {
    /// The stable error code clients see.
    pub fn code(&self) -> ErrorCode {
        let rate = self.spec.window == Window::Minute
            && matches!(self.spec.metric, Metric::Requests | Metric::Tokens);
        if rate {
            ErrorCode::RateLimitExceeded
        } else {
            ErrorCode::BudgetExceeded
        }
    }

    fn message(&self) -> String {
        let id = &self.spec.id;
        let what = match self.spec.metric {
            Metric::Micros => format!("{} micro-USD", self.spec.limit),
            Metric::Requests => format!("{} requests", self.spec.limit),
            Metric::Tokens => format!("{} tokens", self.spec.limit),
        };
        let per = match self.spec.window {
            Window::Total => "in total".to_owned(),
            window => format!("per {}", window.name()),
        };
        match &self.denial {
            Denial::Refused(_) => {
                format!("Budget `{id}` ({what} {per}) has too little left for this request.")
            }
            Denial::Unavailable(_) => format!(
                "Budget `{id}` cannot be checked right now (the budget ledger is unavailable); retry shortly."
            ),
            Denial::Unpriced { target } => format!(
                "No price is known for `{target}`, so USD budget `{id}` cannot be reserved."
            ),
            Denial::Unmetered => format!(
                "Budget `{id}` counts tokens or cost, which the raw proxy cannot bound; use the unified or passthrough routes."
            ),
        }
    }

    /// The client's error: 429 with the code, `Retry-After` when asking again may help,
    /// and the budget's `x-ratelimit-*` headers.
    pub fn to_api_error(&self) -> ApiError {
        let now = now_millis();
        let (remaining, retry_at) = match &self.denial {
            Denial::Refused(refusal) => (refusal.remaining, refusal.retry_at),
            Denial::Unavailable(_) => (0, Some(now.saturating_add(1_000))),
            Denial::Unpriced { .. } | Denial::Unmetered => (0, None),
        };
        let mut headers = HeaderMap::new();
        rate_limit_headers(&mut headers, &self.spec, remaining, now);
        let error = ApiError::new(StatusCode::TOO_MANY_REQUESTS, self.code(), self.message())
            .headers(headers);
        match retry_at {
            Some(at) => {
                let seconds = at.saturating_sub(now).div_ceil(1_000).max(1);
                error.retry_after(HeaderValue::from(seconds))
            }
            None => error,
        }
    }
}

/// Sets `x-ratelimit-limit`, `x-ratelimit-remaining` and, unless the window is `total`,
/// `x-ratelimit-reset` (seconds until the window ends) for `spec` at `now` (Unix ms).
pub fn rate_limit_headers(headers: &mut HeaderMap, spec: &BudgetSpec, remaining: u64, now: u64) {
    headers.insert("x-ratelimit-limit", HeaderValue::from(spec.limit));
    headers.insert(
        "x-ratelimit-remaining",
        HeaderValue::from(remaining.min(spec.limit)),
    );
    if spec.window == Window::Total {
        headers.remove("x-ratelimit-reset");
    } else {
        let (_, end) = spec.window.bounds(now);
        let seconds = end.saturating_sub(now).div_ceil(1_000);
        headers.insert("x-ratelimit-reset", HeaderValue::from(seconds));
    }
}
