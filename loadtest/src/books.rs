//! Gathering the books [`crate::check`] compares, over HTTP: the mock's `GET /__stats`, the
//! projector's `GET /usage/v1/usage` totals and the ledger's `GET /admin/v1/status` budgets.
//! Only reads; the shapes are deserialised here (no dependency on the node or projector
//! crates), keeping only the fields the checks use.

use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::check::{BudgetBook, ProjectorTotals};
use crate::upstream::StatsSnapshot;

/// Why a book could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BooksError {
    /// The request failed or the answer was not the expected JSON.
    #[error("GET {url}: {source}")]
    Http {
        /// The URL asked.
        url: String,
        /// The client's error.
        source: reqwest::Error,
    },
    /// The service answered with an error status.
    #[error("GET {url}: HTTP {status}: {body}")]
    Status {
        /// The URL asked.
        url: String,
        /// The status.
        status: u16,
        /// The answer's body.
        body: String,
    },
}

/// A client for reading books (short timeout: these are local services).
pub fn client() -> Result<reqwest::Client, BooksError> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|source| BooksError::Http {
            url: String::new(),
            source,
        })
}

async fn get<T: DeserializeOwned>(client: &reqwest::Client, url: String) -> Result<T, BooksError> {
    let http = |source| BooksError::Http {
        url: url.clone(),
        source,
    };
    let response = client.get(&url).send().await.map_err(http)?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(BooksError::Status {
            url,
            status: status.as_u16(),
            body,
        });
    }
    response.json().await.map_err(http)
}

/// The mock's counters (`base` is the mock's root URL, e.g. `http://127.0.0.1:18091`).
pub async fn mock_stats(client: &reqwest::Client, base: &str) -> Result<StatsSnapshot, BooksError> {
    get(client, format!("{}/__stats", base.trim_end_matches('/'))).await
}

/// How much each counter grew from `before` to `after`.
pub fn growth(before: &StatsSnapshot, after: &StatsSnapshot) -> StatsSnapshot {
    StatsSnapshot {
        requests: after.requests.saturating_sub(before.requests),
        completed: after.completed.saturating_sub(before.completed),
        streams: after.streams.saturating_sub(before.streams),
        prompt_tokens: after.prompt_tokens.saturating_sub(before.prompt_tokens),
        completion_tokens: after
            .completion_tokens
            .saturating_sub(before.completion_tokens),
        cost_micros: after.cost_micros.saturating_sub(before.cost_micros),
        injected_429: after.injected_429.saturating_sub(before.injected_429),
        injected_500: after.injected_500.saturating_sub(before.injected_500),
        bad_requests: after.bad_requests.saturating_sub(before.bad_requests),
    }
}

#[derive(Deserialize)]
struct UsageAnswer {
    series: Vec<SeriesAnswer>,
}

#[derive(Deserialize)]
struct SeriesAnswer {
    total: PointAnswer,
}

#[derive(Deserialize)]
struct PointAnswer {
    requests: u64,
    errors: u64,
    tokens: TokensAnswer,
    cost_micros: u64,
}

#[derive(Deserialize)]
struct TokensAnswer {
    input: u64,
    output: u64,
}

/// The projector's totals over `[from, to)` (Unix seconds; the projector widens the range
/// to whole minutes), summed over every series.
pub async fn projector_totals(
    client: &reqwest::Client,
    base: &str,
    from: i64,
    to: i64,
) -> Result<ProjectorTotals, BooksError> {
    let url = format!(
        "{}/usage/v1/usage?from={from}&to={to}&granularity=minute",
        base.trim_end_matches('/')
    );
    let answer: UsageAnswer = get(client, url).await?;
    Ok(answer
        .series
        .iter()
        .fold(ProjectorTotals::default(), |sum, s| ProjectorTotals {
            requests: sum.requests + s.total.requests,
            errors: sum.errors + s.total.errors,
            input_tokens: sum.input_tokens + s.total.tokens.input,
            output_tokens: sum.output_tokens + s.total.tokens.output,
            cost_micros: sum.cost_micros + s.total.cost_micros,
        }))
}

/// How much the projector's totals grew from `before` to `after`.
pub fn projector_growth(before: &ProjectorTotals, after: &ProjectorTotals) -> ProjectorTotals {
    ProjectorTotals {
        requests: after.requests.saturating_sub(before.requests),
        errors: after.errors.saturating_sub(before.errors),
        input_tokens: after.input_tokens.saturating_sub(before.input_tokens),
        output_tokens: after.output_tokens.saturating_sub(before.output_tokens),
        cost_micros: after.cost_micros.saturating_sub(before.cost_micros),
    }
}

#[derive(Deserialize)]
struct StatusAnswer {
    budgets: Vec<BudgetAnswer>,
}

#[derive(Deserialize)]
struct BudgetAnswer {
    id: String,
    action: String,
    metric: String,
    limit: u64,
    settled: u64,
    #[serde(default)]
    overrun: u64,
}

/// Every budget's books from the ledger's admin API (`base` e.g. `http://127.0.0.1:8081`).
pub async fn budgets(client: &reqwest::Client, base: &str) -> Result<Vec<BudgetBook>, BooksError> {
    let url = format!("{}/admin/v1/status", base.trim_end_matches('/'));
    let answer: StatusAnswer = get(client, url).await?;
    Ok(answer
        .budgets
        .into_iter()
        .map(|b| BudgetBook {
            enforced: b.action == "reject",
            id: b.id,
            limit: b.limit,
            settled: b.settled,
            metric: b.metric,
            overrun: b.overrun,
        })
        .collect())
}
