//! `QueryUsage` and `TopUsage`: one ordered range scan over one granularity's aggregates
//! (keys start with the bucket, see [`crate::keys`]), filtering each key's dimensions and
//! merging aggregates per group and bucket, histograms included.

use std::collections::BTreeMap;

use super::{Metric, Percentiles, Point, QueryError, Series, TopEntry, TopQuery, TopReport};
use super::{Tokens, UsageQuery, UsageReport};
use crate::aggregate::Aggregate;
use crate::dims::{Dims, Filter};
use crate::histogram::Sparse;
use crate::keys::{self, Granularity};
use crate::store::Projection;

fn percentiles(sparse: &Sparse) -> Percentiles {
    if sparse.is_empty() {
        return Percentiles::default();
    }
    let histogram = sparse.histogram();
    Percentiles {
        count: histogram.len(),
        p50: histogram.value_at_quantile(0.50),
        p90: histogram.value_at_quantile(0.90),
        p99: histogram.value_at_quantile(0.99),
    }
}

/// The point an aggregate makes, starting at `start`.
pub fn point(start: i64, aggregate: &Aggregate) -> Point {
    let errors = aggregate.error_count();
    Point {
        start,
        requests: aggregate.requests,
        errors,
        error_rate: if aggregate.requests == 0 {
            0.0
        } else {
            errors as f64 / aggregate.requests as f64
        },
        errors_by_type: aggregate.errors.clone(),
        tokens: Tokens {
            input: aggregate.input_tokens,
            output: aggregate.output_tokens,
            cached: aggregate.cached_tokens,
            cache_write: aggregate.cache_write_tokens,
        },
        cost_micros: aggregate.cost_micros,
        unknown_cost: aggregate.unknown_cost,
        latency_us: percentiles(&aggregate.latency),
        upstream_latency_us: percentiles(&aggregate.upstream),
        overhead_us: percentiles(&aggregate.overhead),
        ttft_us: percentiles(&aggregate.ttft),
    }
}

/// Calls `visit` with the bucket, dimensions and aggregate of every key of `gran` whose
/// bucket lies in `[from_bucket, to_bucket)` and whose dimensions pass `filter`.
fn scan(
    projection: &Projection,
    gran: Granularity,
    from_bucket: u64,
    to_bucket: u64,
    filter: &Filter,
    mut visit: impl FnMut(u64, Dims, Aggregate),
) -> Result<(), QueryError> {
    let range = keys::aggregate_prefix(gran, from_bucket)..keys::aggregate_prefix(gran, to_bucket);
    for entry in projection.tree().range(range) {
        let (key, value) = entry.map_err(crate::store::StoreError::from)?;
        let Some((bucket, dims)) = keys::parse_aggregate(&key) else {
            continue;
        };
        if filter.matches(&dims) {
            let aggregate = Aggregate::decode(&value).map_err(crate::store::StoreError::from)?;
            visit(bucket, dims, aggregate);
        }
    }
    Ok(())
}

/// The bucket bounds covering `[from, to)` in `gran`, widened to whole buckets.
fn bounds(gran: Granularity, from: i64, to: i64) -> (u64, u64) {
    let width = gran.seconds();
    (gran.bucket(from), gran.bucket(to.saturating_add(width - 1)))
}

/// Answers `QueryUsage`.
pub fn query(projection: &Projection, query: &UsageQuery) -> Result<UsageReport, QueryError> {
    let (from, to) = bounds(query.granularity, query.range.from, query.range.to);
    let mut groups: BTreeMap<Vec<String>, BTreeMap<u64, Aggregate>> = BTreeMap::new();
    scan(
        projection,
        query.granularity,
        from,
        to,
        &query.filter,
        |bucket, dims, aggregate| {
            let group = query
                .group_by
                .iter()
                .map(|d| dims.get(*d).to_owned())
                .collect();
            groups
                .entry(group)
                .or_default()
                .entry(bucket)
                .or_default()
                .merge(&aggregate);
        },
    )?;
    let start = i64::try_from(from).unwrap_or(i64::MAX);
    let series = groups
        .into_iter()
        .map(|(values, buckets)| {
            let mut total = Aggregate::default();
            let points = buckets
                .iter()
                .map(|(bucket, aggregate)| {
                    total.merge(aggregate);
                    point(i64::try_from(*bucket).unwrap_or(i64::MAX), aggregate)
                })
                .collect();
            Series {
                group: query
                    .group_by
                    .iter()
                    .map(|d| d.name().to_owned())
                    .zip(values)
                    .collect(),
                points,
                total: point(start, &total),
            }
        })
        .collect();
    Ok(UsageReport { series })
}

/// The coarsest granularity whose buckets tile `[from, to)` exactly.
fn tiling(from: i64, to: i64) -> Granularity {
    Granularity::ALL
        .into_iter()
        .rev()
        .find(|g| from % g.seconds() == 0 && to % g.seconds() == 0)
        .unwrap_or(Granularity::Minute)
}

/// Answers `TopUsage`, reading the coarsest granularity that tiles the range (minutes,
/// widened to whole minutes, when none does).
pub fn top(projection: &Projection, query: &TopQuery) -> Result<TopReport, QueryError> {
    let gran = tiling(query.range.from, query.range.to);
    let (from, to) = bounds(gran, query.range.from, query.range.to);
    let mut values: BTreeMap<String, TopEntry> = BTreeMap::new();
    scan(projection, gran, from, to, &query.filter, |_, dims, a| {
        let value = dims.get(query.dimension);
        let entry = values.entry(value.to_owned()).or_insert_with(|| TopEntry {
            value: value.to_owned(),
            ..TopEntry::default()
        });
        entry.requests += a.requests;
        entry.errors += a.error_count();
        entry.tokens += a.tokens();
        entry.cost_micros += a.cost_micros;
        entry.unknown_cost += a.unknown_cost;
    })?;
    let mut entries: Vec<TopEntry> = values.into_values().collect();
    let metric = |e: &TopEntry| match query.by {
        Metric::Cost => e.cost_micros,
        Metric::Tokens => e.tokens,
        Metric::Requests => e.requests,
    };
    entries.sort_by(|a, b| {
        metric(b)
            .cmp(&metric(a))
            .then_with(|| a.value.cmp(&b.value))
    });
    entries.truncate(query.limit);
    Ok(TopReport { entries })
}
