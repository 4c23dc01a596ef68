//! `ListTraces` and `GetTrace`: a reverse range scan (newest first) over the most selective
//! trace index the filters allow (endpoint, key, status class, else time), the remaining
//! filters checked on each trace.

use floodgate_proto::v1::UsageEvent;

use super::{QueryError, TraceQuery, cursor};
use crate::dims::{Dimension, Dims};
use crate::keys::{self, TraceIndex};
use crate::store::{Projection, StoreError};
use crate::trace::{self, Trace};

/// A page of traces.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TracePage {
    /// Newest first, without payloads.
    pub traces: Vec<UsageEvent>,
    /// The cursor of the next page, when there may be one.
    pub next_cursor: Option<String>,
}

/// Answers `ListTraces`.
pub fn list(projection: &Projection, query: &TraceQuery) -> Result<TracePage, QueryError> {
    let index = [Dimension::Endpoint, Dimension::Key, Dimension::Status]
        .into_iter()
        .find_map(|d| TraceIndex::for_filter(d, query.filter.value(d)?))
        .unwrap_or(TraceIndex::Time);
    let micros = |s: i64| u64::try_from(s).unwrap_or(0).saturating_mul(1_000_000);
    let start = index.key(micros(query.range.from), "");
    let to = index.key(micros(query.range.to), "");
    let end = match &query.cursor {
        Some((time, id)) => index.key(*time, id).min(to),
        None => to,
    };
    let prefix = index.prefix().len();
    let mut page = TracePage::default();
    if start >= end {
        return Ok(page);
    }
    for entry in projection.tree().range(start..end).rev() {
        let (key, _) = entry.map_err(StoreError::from)?;
        let Some((_, id)) = keys::parse_trace_index(&key, prefix) else {
            continue;
        };
        let Some(trace) = projection.trace(id)? else {
            continue;
        };
        if !query.filter.matches(&Dims::of(&trace.event)) {
            continue;
        }
        if page.traces.len() == query.limit {
            let last = page
                .traces
                .last()
                .map_or((0, ""), |e| (trace::time_us(e), e.event_id.as_str()));
            page.next_cursor = Some(cursor(last.0, last.1));
            break;
        }
        page.traces.push(trace::without_payloads(&trace.event));
    }
    Ok(page)
}

/// Answers `GetTrace`: the trace of an event id, else of a request id.
pub fn get(projection: &Projection, id: &str) -> Result<Trace, QueryError> {
    if let Some(trace) = projection.trace(id)? {
        return Ok(trace);
    }
    match projection.event_id_of_request(id)? {
        Some(event_id) => projection.trace(&event_id)?,
        None => None,
    }
    .ok_or_else(|| QueryError::TraceNotFound(id.to_owned()))
}
