//! [`Aggregate`]: the usage of one key in one bucket: counters, errors by type, tokens by
//! kind, cost, and four latency histograms ([`Sparse`]: hdrhistogram buckets, 2 significant
//! digits, values in microseconds) that merge exactly across keys and buckets. Stored in
//! sled as a prost message whose histograms are packed varint lists of their buckets;
//! stores written before that hold hdrhistogram V2 bytes instead, which are still read.

use std::collections::BTreeMap;

use floodgate_proto::v1::UsageEvent;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;

use crate::dims::status_class;
use crate::histogram::{Malformed, Sparse};

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

impl From<Malformed> for CodecError {
    fn from(error: Malformed) -> Self {
        Self::Histogram(error.to_string())
    }
}

/// Usage summed over a set of events.
#[derive(Debug, Clone, Default, PartialEq)]
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
    pub latency: Sparse,
    /// Upstream latency, µs.
    pub upstream: Sparse,
    /// Gateway overhead, µs.
    pub overhead: Sparse,
    /// Time to first token, µs (streamed requests only).
    pub ttft: Sparse,
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
        self.latency.record(event.total_latency_us);
        self.upstream.record(event.upstream_latency_us);
        self.overhead.record(event.overhead_us);
        if let Some(ttft) = event.ttft_us {
            self.ttft.record(ttft);
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
            mine.merge(theirs);
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

    /// A rough measure of its size in memory, bytes.
    pub fn weight(&self) -> usize {
        let buckets = [&self.latency, &self.upstream, &self.overhead, &self.ttft]
            .iter()
            .map(|h| h.buckets())
            .sum::<usize>();
        std::mem::size_of::<Self>() + buckets * 16 + self.errors.len() * 64
    }

    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        let stored = Stored {
            requests: self.requests,
            errors: self.errors.clone(),
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cached_tokens: self.cached_tokens,
            cache_write_tokens: self.cache_write_tokens,
            cost_micros: self.cost_micros,
            unknown_cost: self.unknown_cost,
            latency: self.latency.encode(),
            upstream: self.upstream.encode(),
            overhead: self.overhead.encode(),
            ttft: self.ttft.encode(),
            ..Stored::default()
        };
        prost::Message::encode_to_vec(&stored)
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
            latency: decode_histogram(&stored.latency, &stored.v2_latency)?,
            upstream: decode_histogram(&stored.upstream, &stored.v2_upstream)?,
            overhead: decode_histogram(&stored.overhead, &stored.v2_overhead)?,
            ttft: decode_histogram(&stored.ttft, &stored.v2_ttft)?,
        })
    }
}

/// A histogram from its stored buckets, or from the V2 bytes of an older store.
fn decode_histogram(buckets: &[u64], v2: &[u8]) -> Result<Sparse, CodecError> {
    if v2.is_empty() {
        return Ok(Sparse::decode(buckets)?);
    }
    let read: Histogram<u64> = Deserializer::new()
        .deserialize(&mut &v2[..])
        .map_err(|e| CodecError::Histogram(format!("{e:?}")))?;
    Ok(Sparse::from_histogram(&read))
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
    /// Tags 9 to 12: hdrhistogram V2 bytes, written by earlier versions (read only).
    #[prost(bytes = "vec", tag = "9")]
    v2_latency: Vec<u8>,
    #[prost(bytes = "vec", tag = "10")]
    v2_upstream: Vec<u8>,
    #[prost(bytes = "vec", tag = "11")]
    v2_overhead: Vec<u8>,
    #[prost(bytes = "vec", tag = "12")]
    v2_ttft: Vec<u8>,
    /// Tags 13 to 16: [`Sparse::encode`]'s buckets.
    #[prost(uint64, repeated, tag = "13")]
    latency: Vec<u64>,
    #[prost(uint64, repeated, tag = "14")]
    upstream: Vec<u64>,
    #[prost(uint64, repeated, tag = "15")]
    overhead: Vec<u64>,
    #[prost(uint64, repeated, tag = "16")]
    ttft: Vec<u64>,
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
        let read = Aggregate::decode(&aggregate.encode()).unwrap();
        assert_eq!(read.requests, 2);
        assert_eq!(read.errors.get("5xx"), Some(&1));
        assert_eq!(read.cost_micros, 7);
        assert_eq!(read.unknown_cost, 1);
        assert_eq!(read.input_tokens, 20);
        assert_eq!(read.latency.count(), 2);
        assert_eq!(read, aggregate);
    }

    #[test]
    fn an_aggregate_stored_with_v2_histograms_reads_the_same() {
        use hdrhistogram::serialization::{Serializer, V2Serializer};
        let mut aggregate = Aggregate::default();
        let mut dense = crate::histogram::dense();
        for (i, latency) in [1_500, 90_000_000, 7, 1_510].into_iter().enumerate() {
            aggregate.record(&event(200 + i as u32, latency, Some(1)));
            dense.record(latency).unwrap();
        }
        let mut v2 = Vec::new();
        V2Serializer::new().serialize(&dense, &mut v2).unwrap();
        let old = Stored {
            requests: aggregate.requests,
            errors: aggregate.errors.clone(),
            input_tokens: aggregate.input_tokens,
            output_tokens: aggregate.output_tokens,
            cached_tokens: aggregate.cached_tokens,
            cache_write_tokens: aggregate.cache_write_tokens,
            cost_micros: aggregate.cost_micros,
            unknown_cost: aggregate.unknown_cost,
            v2_latency: v2,
            ..Stored::default()
        };
        let read = Aggregate::decode(&prost::Message::encode_to_vec(&old)).unwrap();
        assert_eq!(read.latency, aggregate.latency);
        assert_eq!(read.latency.histogram().value_at_quantile(0.5), 1_503);
        assert!(read.ttft.is_empty());
    }

    #[test]
    fn a_decoded_histogram_still_grows() {
        let mut small = Aggregate::default();
        small.record(&event(200, 10, Some(1)));
        let mut read = Aggregate::decode(&small.encode()).unwrap();
        let mut big = Aggregate::default();
        big.record(&event(200, 10_000_000_000, Some(1)));
        read.merge(&big);
        assert_eq!(read.latency.count(), 2);
        assert!(read.latency.histogram().max() >= 9_900_000_000);
    }
}
