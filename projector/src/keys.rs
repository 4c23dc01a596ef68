//! The sled key layout: every record of a projection lives in one sled tree, so one
//! `apply_batch` commits a whole fold atomically. Each key starts with a one-byte family:
//!
//! | key | value |
//! | --- | --- |
//! | `P` | the consumer position (last folded sequence, u64 BE) |
//! | `A` gran bucket(u64 BE, Unix s) dims… | an aggregate ([`crate::aggregate`]) |
//! | `E` event_id | when it was folded (Unix µs, u64 BE): the dedup set |
//! | `X` folded_at(u64 BE) event_id | empty: the dedup set's expiry index |
//! | `T` event_id | a trace: sequence (u64 BE) then the prost `UsageEvent` |
//! | `R` request_id | the event id of that request's trace |
//! | `I` index time(u64 BE, Unix µs) event_id | empty: the trace indexes |
//! | `B` sequence(u64 BE) | a message that is not a readable event ([`crate::parked`]) |
//!
//! `gran` is `m`, `h` or `d`; `dims` are the seven dimensions ([`crate::dims::Dimension::ALL`]
//! order), each a u16 BE length and UTF-8 bytes (cut at [`MAX_DIM`] bytes). The trace index
//! is `t` (time), or `e`/`k`/`s` followed by a length-prefixed endpoint, key id or status
//! class. Big-endian times right after the prefix make every time-range question one
//! ordered range scan: aggregates of one granularity between two buckets, traces of one
//! endpoint between two instants.

use crate::dims::{Dimension, Dims};

/// The position key.
pub const POSITION: &[u8] = b"P";
/// Longest dimension value kept in a key, bytes.
pub const MAX_DIM: usize = 512;

/// An aggregation granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Granularity {
    /// One minute.
    Minute,
    /// One hour.
    Hour,
    /// One day (UTC).
    Day,
}

impl Granularity {
    /// Every granularity, finest first.
    pub const ALL: [Granularity; 3] = [Self::Minute, Self::Hour, Self::Day];

    /// Bucket width in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Self::Minute => 60,
            Self::Hour => 3_600,
            Self::Day => 86_400,
        }
    }

    /// The stable name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }

    /// The granularity with this name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.name() == name)
    }

    /// Start of the bucket holding `unix_s` (times before 1970 land in bucket 0).
    pub fn bucket(self, unix_s: i64) -> u64 {
        let s = unix_s.max(0);
        u64::try_from(s - s % self.seconds()).unwrap_or(0)
    }

    fn tag(self) -> u8 {
        match self {
            Self::Minute => b'm',
            Self::Hour => b'h',
            Self::Day => b'd',
        }
    }
}

fn push_str(key: &mut Vec<u8>, value: &str) {
    let mut end = value.len().min(MAX_DIM);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    let len = u16::try_from(end).unwrap_or(u16::MAX);
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(&value.as_bytes()[..end]);
}

fn take_str<'a>(bytes: &mut &'a [u8]) -> Option<&'a str> {
    let (len, rest) = bytes.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_be_bytes(*len));
    let (value, rest) = (rest.get(..len)?, rest.get(len..)?);
    *bytes = rest;
    std::str::from_utf8(value).ok()
}

fn take_u64(bytes: &mut &[u8]) -> Option<u64> {
    let (value, rest) = bytes.split_first_chunk::<8>()?;
    *bytes = rest;
    Some(u64::from_be_bytes(*value))
}

/// The start of the aggregate keys of `gran` at `bucket` (a range-scan bound).
pub fn aggregate_prefix(gran: Granularity, bucket: u64) -> Vec<u8> {
    let mut key = vec![b'A', gran.tag()];
    key.extend_from_slice(&bucket.to_be_bytes());
    key
}

/// The aggregate key of `dims` in `gran`'s bucket starting at `bucket`.
pub fn aggregate(gran: Granularity, bucket: u64, dims: &Dims) -> Vec<u8> {
    let mut key = aggregate_prefix(gran, bucket);
    for value in &dims.0 {
        push_str(&mut key, value);
    }
    key
}

/// The bucket and dimensions of an aggregate key.
pub fn parse_aggregate(key: &[u8]) -> Option<(u64, Dims)> {
    let mut rest = key.get(2..)?;
    let bucket = take_u64(&mut rest)?;
    let mut dims = Dims::default();
    for slot in &mut dims.0 {
        *slot = take_str(&mut rest)?.to_owned();
    }
    Some((bucket, dims))
}

/// The dedup-set key of an event id.
pub fn seen(event_id: &str) -> Vec<u8> {
    [b"E", event_id.as_bytes()].concat()
}

/// The dedup expiry-index key of an event id folded at `folded_at_us`.
pub fn seen_expiry(folded_at_us: u64, event_id: &str) -> Vec<u8> {
    [b"X", &folded_at_us.to_be_bytes()[..], event_id.as_bytes()].concat()
}

/// The first expiry-index key at or after `folded_at_us`.
pub fn seen_expiry_bound(folded_at_us: u64) -> Vec<u8> {
    [b"X", &folded_at_us.to_be_bytes()[..]].concat()
}

/// The event id of an expiry-index key.
pub fn parse_seen_expiry(key: &[u8]) -> Option<&str> {
    std::str::from_utf8(key.get(9..)?).ok()
}

/// The start of the parked messages' keys.
pub const PARKED: &[u8] = b"B";

/// The key of the message parked at `sequence`.
pub fn parked(sequence: u64) -> Vec<u8> {
    [PARKED, &sequence.to_be_bytes()[..]].concat()
}

/// The trace key of an event id.
pub fn trace(event_id: &str) -> Vec<u8> {
    [b"T", event_id.as_bytes()].concat()
}

/// The request-id key of a trace.
pub fn request(request_id: &str) -> Vec<u8> {
    [b"R", request_id.as_bytes()].concat()
}

/// Which trace index a key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceIndex<'a> {
    /// By time only.
    Time,
    /// By endpoint, then time.
    Endpoint(&'a str),
    /// By gateway key id, then time.
    Key(&'a str),
    /// By status class, then time.
    Status(&'a str),
}

impl TraceIndex<'_> {
    /// The index to scan for `dimension` = `value`, when there is one.
    pub fn for_filter(dimension: Dimension, value: &str) -> Option<TraceIndex<'_>> {
        match dimension {
            Dimension::Endpoint => Some(TraceIndex::Endpoint(value)),
            Dimension::Key => Some(TraceIndex::Key(value)),
            Dimension::Status => Some(TraceIndex::Status(value)),
            _ => None,
        }
    }

    /// The key prefix of this index (up to the time).
    pub fn prefix(self) -> Vec<u8> {
        let (tag, value) = match self {
            Self::Time => (b't', None),
            Self::Endpoint(v) => (b'e', Some(v)),
            Self::Key(v) => (b'k', Some(v)),
            Self::Status(v) => (b's', Some(v)),
        };
        let mut key = vec![b'I', tag];
        if let Some(value) = value {
            push_str(&mut key, value);
        }
        key
    }

    /// The index key of a trace at `time_us`; with an empty `event_id`, the range bound at
    /// `time_us`.
    pub fn key(self, time_us: u64, event_id: &str) -> Vec<u8> {
        let mut key = self.prefix();
        key.extend_from_slice(&time_us.to_be_bytes());
        key.extend_from_slice(event_id.as_bytes());
        key
    }
}

/// The time and event id of a trace index key whose prefix is `prefix_len` bytes long.
pub fn parse_trace_index(key: &[u8], prefix_len: usize) -> Option<(u64, &str)> {
    let mut rest = key.get(prefix_len..)?;
    let time = take_u64(&mut rest)?;
    Some((time, std::str::from_utf8(rest).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregate_keys_round_trip_and_sort_by_time_first() {
        let dims = Dims(["chat", "openai", "gpt", "k1", "t", "u", "2xx"].map(String::from));
        let key = aggregate(Granularity::Hour, 7_200, &dims);
        assert_eq!(parse_aggregate(&key), Some((7_200, dims.clone())));
        let later = aggregate(Granularity::Hour, 10_800, &Dims::default());
        assert!(key < later);
        assert!(aggregate_prefix(Granularity::Hour, 7_200) <= key);
    }

    #[test]
    fn long_values_are_cut_on_a_char_boundary() {
        let long = "é".repeat(MAX_DIM);
        let mut dims = Dims::default();
        dims.0[0] = long;
        let (_, parsed) = parse_aggregate(&aggregate(Granularity::Minute, 0, &dims)).unwrap();
        assert!(parsed.0[0].len() <= MAX_DIM);
        assert!(parsed.0[0].chars().all(|c| c == 'é'));
    }

    #[test]
    fn buckets_floor_to_their_width() {
        assert_eq!(Granularity::Minute.bucket(125), 120);
        assert_eq!(Granularity::Day.bucket(86_401), 86_400);
        assert_eq!(Granularity::Hour.bucket(-5), 0);
    }

    #[test]
    fn trace_index_keys_parse() {
        let index = TraceIndex::Endpoint("chat");
        let key = index.key(42, "ev1");
        assert_eq!(
            parse_trace_index(&key, index.prefix().len()),
            Some((42, "ev1"))
        );
    }
}
