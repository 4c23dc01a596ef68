//! The query side of a projection: validated questions ([`UsageQuery`], [`TopQuery`],
//! [`TraceQuery`]) built from raw input by `new` (which refuses bad input with a
//! [`QueryError`]), answered from the store as plain serde types that the gRPC service
//! ([`crate::grpc`]) and the JSON API ([`crate::http`]) both present.
//!
//! * [`usage`]: `QueryUsage` (series) and `TopUsage` (rankings), range scans over one
//!   granularity of the aggregates.
//! * [`traces`]: `ListTraces` (newest first, by cursor) and `GetTrace`.

mod error;
pub mod traces;
pub mod usage;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use error::QueryError;

use crate::dims::{Dimension, Filter};
use crate::keys::Granularity;
use crate::store::Projection;

/// Runs a store query off the async threads; logs a store failure once, here.
pub(crate) async fn blocking<T: Send + 'static>(
    projection: &Projection,
    query: impl FnOnce(&Projection) -> Result<T, QueryError> + Send + 'static,
) -> Result<T, QueryError> {
    let projection = projection.clone();
    let answer = tokio::task::spawn_blocking(move || query(&projection))
        .await
        .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()));
    if let Err(QueryError::Store(error)) = &answer {
        tracing::error!(%error, "usage query failed in the store");
    }
    answer
}

/// Most buckets one usage query may span.
pub const MAX_BUCKETS: i64 = 50_000;
/// Most entries in one ranking or page.
pub const MAX_LIMIT: u64 = 1_000;

/// A validated time range `[from, to)`, Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// Start (inclusive).
    pub from: i64,
    /// End (exclusive).
    pub to: i64,
}

impl Range {
    /// The range, if `to` is after `from` and `from` is not before 1970.
    pub fn new(from: i64, to: i64) -> Result<Self, QueryError> {
        if from < 0 || to <= from {
            return Err(QueryError::InvalidRange { from, to });
        }
        Ok(Self { from, to })
    }
}

fn limit(asked: u64, default: u64) -> Result<usize, QueryError> {
    let limit = if asked == 0 { default } else { asked };
    if limit > MAX_LIMIT {
        return Err(QueryError::InvalidLimit {
            limit,
            max: MAX_LIMIT,
        });
    }
    Ok(usize::try_from(limit).unwrap_or(usize::MAX))
}

/// A page of parked messages (`GET /usage/v1/parked`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParkedQuery {
    /// Only messages after this sequence.
    pub after: u64,
    /// Most messages.
    pub limit: usize,
}

impl ParkedQuery {
    /// Validates a listing of parked messages (`limit` 0 means 100).
    pub fn new(after: u64, limit_asked: u64) -> Result<Self, QueryError> {
        Ok(Self {
            after,
            limit: limit(limit_asked, 100)?,
        })
    }
}

/// `QueryUsage`: a series per group over a range.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageQuery {
    /// The range.
    pub range: Range,
    /// Bucket width.
    pub granularity: Granularity,
    /// Dimensions to group by, in the order asked.
    pub group_by: Vec<Dimension>,
    /// Filters.
    pub filter: Filter,
}

impl UsageQuery {
    /// Validates a usage question (an empty granularity means `hour`).
    pub fn new(
        from: i64,
        to: i64,
        granularity: &str,
        group_by: &[String],
        filter: Filter,
    ) -> Result<Self, QueryError> {
        let range = Range::new(from, to)?;
        let granularity = match granularity {
            "" => Some(Granularity::Hour),
            name => Granularity::parse(name),
        }
        .ok_or_else(|| QueryError::UnknownGranularity(granularity.to_owned()))?;
        let width = granularity.seconds();
        let buckets = to.saturating_add(width - 1) / width - from / width;
        if buckets > MAX_BUCKETS {
            return Err(QueryError::RangeTooLarge {
                buckets,
                granularity: granularity.name(),
                max: MAX_BUCKETS,
            });
        }
        let mut dims = Vec::new();
        for name in group_by.iter().filter(|name| !name.is_empty()) {
            let dimension = Dimension::parse(name)
                .ok_or_else(|| QueryError::UnknownGroupBy(name.to_owned()))?;
            if !dims.contains(&dimension) {
                dims.push(dimension);
            }
        }
        Ok(Self {
            range,
            granularity,
            group_by: dims,
            filter,
        })
    }
}

/// What a ranking orders by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Cost in micro-dollars.
    Cost,
    /// Input plus output tokens.
    Tokens,
    /// Requests.
    Requests,
}

/// `TopUsage`: the top values of one dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct TopQuery {
    /// The range.
    pub range: Range,
    /// The dimension ranked.
    pub dimension: Dimension,
    /// The ordering.
    pub by: Metric,
    /// How many.
    pub limit: usize,
    /// Filters.
    pub filter: Filter,
}

impl TopQuery {
    /// Validates a ranking question (`limit` 0 means 10).
    pub fn new(
        from: i64,
        to: i64,
        dimension: &str,
        by: &str,
        limit_asked: u64,
        filter: Filter,
    ) -> Result<Self, QueryError> {
        let range = Range::new(from, to)?;
        let dimension = Dimension::parse(dimension)
            .ok_or_else(|| QueryError::UnknownDimension(dimension.to_owned()))?;
        let by = match by {
            "cost" | "" => Metric::Cost,
            "tokens" => Metric::Tokens,
            "requests" => Metric::Requests,
            other => return Err(QueryError::UnknownMetric(other.to_owned())),
        };
        Ok(Self {
            range,
            dimension,
            by,
            limit: limit(limit_asked, 10)?,
            filter,
        })
    }
}

/// `ListTraces`: a page of traces, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceQuery {
    /// The range.
    pub range: Range,
    /// Filters.
    pub filter: Filter,
    /// Continue after this trace (time µs, event id).
    pub cursor: Option<(u64, String)>,
    /// Page size.
    pub limit: usize,
}

impl TraceQuery {
    /// Validates a trace listing (`limit` 0 means 50; `cursor` empty for the first page).
    pub fn new(
        from: i64,
        to: i64,
        filter: Filter,
        cursor: &str,
        limit_asked: u64,
    ) -> Result<Self, QueryError> {
        let range = Range::new(from, to)?;
        let cursor = if cursor.is_empty() {
            None
        } else {
            let (time, id) = cursor.split_once('.').ok_or(QueryError::InvalidCursor)?;
            let time = time.parse().map_err(|_| QueryError::InvalidCursor)?;
            Some((time, id.to_owned()))
        };
        Ok(Self {
            range,
            filter,
            cursor,
            limit: limit(limit_asked, 50)?,
        })
    }
}

/// The cursor that continues after a trace.
pub fn cursor(time_us: u64, event_id: &str) -> String {
    format!("{time_us}.{event_id}")
}

/// Three percentiles of a histogram, µs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Values in the histogram.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
}

/// Tokens by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    /// Input tokens.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Cached input tokens.
    pub cached: u64,
    /// Cache-write input tokens.
    pub cache_write: u64,
}

/// Usage in one bucket (or a whole range).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Bucket start, Unix seconds.
    pub start: i64,
    /// Requests.
    pub requests: u64,
    /// Requests with a status ≥ 400.
    pub errors: u64,
    /// `errors / requests`.
    pub error_rate: f64,
    /// Errors by type.
    pub errors_by_type: BTreeMap<String, u64>,
    /// Tokens by kind.
    pub tokens: Tokens,
    /// Cost of the priced requests, micro-dollars.
    pub cost_micros: u64,
    /// Requests of unknown cost.
    pub unknown_cost: u64,
    /// Total latency.
    pub latency_us: Percentiles,
    /// Upstream latency.
    pub upstream_latency_us: Percentiles,
    /// Gateway overhead.
    pub overhead_us: Percentiles,
    /// Time to first token.
    pub ttft_us: Percentiles,
}

/// One group's series.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Group-by dimension → value.
    pub group: BTreeMap<String, String>,
    /// Non-empty buckets in time order.
    pub points: Vec<Point>,
    /// The whole range.
    pub total: Point,
}

/// `QueryUsage`'s answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageReport {
    /// One series per group, ordered by group.
    pub series: Vec<Series>,
}

/// One ranked value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopEntry {
    /// The dimension's value.
    pub value: String,
    /// Requests.
    pub requests: u64,
    /// Errors.
    pub errors: u64,
    /// Input plus output tokens.
    pub tokens: u64,
    /// Cost, micro-dollars.
    pub cost_micros: u64,
    /// Requests of unknown cost.
    pub unknown_cost: u64,
}

/// `TopUsage`'s answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopReport {
    /// Best first.
    pub entries: Vec<TopEntry>,
}
