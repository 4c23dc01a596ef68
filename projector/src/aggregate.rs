//! [`Aggregate`]: the usage of one key in one bucket: counters, errors by type, tokens by
//! kind, cost, and four latency histograms (hdrhistogram, 2 significant digits, values in
//! microseconds) that merge exactly across keys and buckets. Stored in sled as a prost
//! message whose histograms are hdrhistogram V2 bytes.

use std::collections::BTreeMap;

use floodgate_proto::v1::UsageEvent;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};

use crate::dims::status_class;

/// Significant decimal digits every histogram keeps (values within 1%).
pub const SIGNIFICANT_DIGITS: u8 = 2;

/// Why a stored aggregate could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The prost envelope is unreadable.
    #[error("unreadable aggregate: {0}")]
    Decode(#[from] prost::DecodeError),
    /// A histogram inside is unreadable.
    #[error("unreadable histogram: {0}")]
    Histogram(String),
}

/// Usage summed over a set of events.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    /// Requests.
    pub requests: u64,
    /// Requests answered with status ≥ 400, by error type.
    pub errors: BTreeMap<String, u64>,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cached input tokens.
    pub cached_tokens: u64,
    /// Cache-write input tokens.
    pub cache_write_tokens: u64,
    /// Cost of the priced requests, micro-dollars.
    pub cost_micros: u64,
    /// Requests whose cost was unknown.
    pub unknown_cost: u64,
    /// Total latency, µs.
    pub latency: Histogram<u64>,
    /// Upstream latency, µs.
    pub upstream: Histogram<u64>,
    /// Gateway overhead, µs.
    pub overhead: Histogram<u64>,
    /// Time to first token, µs (streamed requests only).
    pub ttft: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    // Auto-resizing: the range grows with the largest value recorded.
    Histogram::new(SIGNIFICANT_DIGITS).unwrap_or_else(|_| unreachable!("2 digits is valid"))
}

impl Default for Aggregate {
    fn default() -> Self {
        Self {
            requests: 0,
            errors: BTreeMap::new(),
            input_tokens: 0,
            output_tokens: 0,
            cached_tokens: 0,
            cache_write_tokens: 0,
            cost_micros: 0,
            unknown_cost: 0,
            latency: histogram(),
            upstream: histogram(),
            overhead: histogram(),
            ttft: histogram(),
        }
    }
}

/// Records `value`, growing the histogram as needed (clamping only past `u64` range).
fn record(histogram: &mut Histogram<u64>, value: u64) {
    if histogram.record(value).is_err() {
        histogram.saturating_record(value);
    }
}

/// Whether an event counts as an error, and under which type.
pub fn error_type(event: &UsageEvent) -> Option<String> {
    if event.status < 400 && event.error_type.is_empty() {
        return None;
    }
    Some(if event.error_type.is_empty() {
        status_class(event.status)
    } else {
        event.error_type.clone()
    })
}

impl Aggregate {
    /// Adds one event.
    pub fn record(&mut self, event: &UsageEvent) {
        self.requests += 1;
        if let Some(kind) = error_type(event) {
            *self.errors.entry(kind).or_default() += 1;
        }
        if let Some(tokens) = &event.tokens {
            self.input_tokens += tokens.input;
            self.output_tokens += tokens.output;
            self.cached_tokens += tokens.cached;
            self.cache_write_tokens += tokens.cache_write;
        }
        match event.cost_micros {
            Some(cost) => self.cost_micros += cost,
            None => self.unknown_cost += 1,
        }
        record(&mut self.latency, event.total_latency_us);
        record(&mut self.upstream, event.upstream_latency_us);
        record(&mut self.overhead, event.overhead_us);
        if let Some(ttft) = event.ttft_us {
            record(&mut self.ttft, ttft);
        }
    }

    /// Adds everything in `other`.
    pub fn merge(&mut self, other: &Aggregate) {
        self.requests += other.requests;
        for (kind, n) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += n;
        }
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cached_tokens += other.cached_tokens;
        self.cache_write_tokens += other.cache_write_tokens;
        self.cost_micros += other.cost_micros;
        self.unknown_cost += other.unknown_cost;
        for (mine, theirs) in [
            (&mut self.latency, &other.latency),
            (&mut self.upstream, &other.upstream),
            (&mut self.overhead, &other.overhead),
            (&mut self.ttft, &other.ttft),
        ] {
            // Every histogram here auto-resizes, so adding cannot run out of range.
            let _ = mine.add(theirs);
        }
    }

    /// Errors of every type.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Input plus output tokens.
    pub fn tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }

    /// The stored form.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let stored = Stored {
            requests: self.requests,
            errors: self.errors.clone(),
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cached_tokens: self.cached_tokens,
            cache_write_tokens: self.cache_write_tokens,
            cost_micros: self.cost_micros,
            unknown_cost: self.unknown_cost,
            latency: encode_histogram(&self.latency)?,
            upstream: encode_histogram(&self.upstream)?,
            overhead: encode_histogram(&self.overhead)?,
            ttft: encode_histogram(&self.ttft)?,
        };
        Ok(prost::Message::encode_to_vec(&stored))
    }

    /// Reads the stored form.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let stored: Stored = prost::Message::decode(bytes)?;
        Ok(Self {
            requests: stored.requests,
            errors: stored.errors,
            input_tokens: stored.input_tokens,
            output_tokens: stored.output_tokens,
            cached_tokens: stored.cached_tokens,
            cache_write_tokens: stored.cache_write_tokens,
            cost_micros: stored.cost_micros,
            unknown_cost: stored.unknown_cost,
            latency: decode_histogram(&stored.latency)?,
            upstream: decode_histogram(&stored.upstream)?,
            overhead: decode_histogram(&stored.overhead)?,
            ttft: decode_histogram(&stored.ttft)?,
        })
    }
}

fn encode_histogram(histogram: &Histogram<u64>) -> Result<Vec<u8>, CodecError> {
    let mut bytes = Vec::new();
    if histogram.is_empty() {
        return Ok(bytes);
    }
    V2Serializer::new()
        .serialize(histogram, &mut bytes)
        .map_err(|e| CodecError::Histogram(format!("{e:?}")))?;
    Ok(bytes)
}

fn decode_histogram(bytes: &[u8]) -> Result<Histogram<u64>, CodecError> {
    if bytes.is_empty() {
        return Ok(histogram());
    }
    let mut read: Histogram<u64> = Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|e| CodecError::Histogram(format!("{e:?}")))?;
    read.auto(true);
    Ok(read)
}

/// The stored form of an [`Aggregate`].
#[derive(Clone, PartialEq, prost::Message)]
struct Stored {
    #[prost(uint64, tag = "1")]
    requests: u64,
    #[prost(btree_map = "string, uint64", tag = "2")]
    errors: BTreeMap<String, u64>,
    #[prost(uint64, tag = "3")]
    input_tokens: u64,
    #[prost(uint64, tag = "4")]
    output_tokens: u64,
    #[prost(uint64, tag = "5")]
    cached_tokens: u64,
    #[prost(uint64, tag = "6")]
    cache_write_tokens: u64,
    #[prost(uint64, tag = "7")]
    cost_micros: u64,
    #[prost(uint64, tag = "8")]
    unknown_cost: u64,
    #[prost(bytes = "vec", tag = "9")]
    latency: Vec<u8>,
    #[prost(bytes = "vec", tag = "10")]
    upstream: Vec<u8>,
    #[prost(bytes = "vec", tag = "11")]
    overhead: Vec<u8>,
    #[prost(bytes = "vec", tag = "12")]
    ttft: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use floodgate_proto::v1::TokenCounts;

    use super::*;

    fn event(status: u32, latency: u64, cost: Option<u64>) -> UsageEvent {
        UsageEvent {
            status,
            total_latency_us: latency,
            ttft_us: Some(latency / 2),
            cost_micros: cost,
            tokens: Some(TokenCounts {
                input: 10,
                output: 5,
                cached: 2,
                cache_write: 1,
            }),
            ..UsageEvent::default()
        }
    }

    #[test]
    fn encoding_round_trips() {
        let mut aggregate = Aggregate::default();
        aggregate.record(&event(200, 1_500, Some(7)));
        aggregate.record(&event(503, 90_000_000, None));
        let read = Aggregate::decode(&aggregate.encode().unwrap()).unwrap();
        assert_eq!(read.requests, 2);
        assert_eq!(read.errors.get("5xx"), Some(&1));
        assert_eq!(read.cost_micros, 7);
        assert_eq!(read.unknown_cost, 1);
        assert_eq!(read.input_tokens, 20);
        assert_eq!(read.latency.len(), 2);
        assert_eq!(read.latency.max(), aggregate.latency.max());
    }

    #[test]
    fn a_decoded_histogram_still_grows() {
        let mut small = Aggregate::default();
        small.record(&event(200, 10, Some(1)));
        let mut read = Aggregate::decode(&small.encode().unwrap()).unwrap();
        let mut big = Aggregate::default();
        big.record(&event(200, 10_000_000_000, Some(1)));
        read.merge(&big);
        assert_eq!(read.latency.len(), 2);
        assert!(read.latency.max() >= 9_900_000_000);
    }
}
