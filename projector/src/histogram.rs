//! [`Sparse`]: a latency histogram that keeps only the buckets it has counts in. Its
//! buckets are hdrhistogram's at [`SIGNIFICANT_DIGITS`] (values within 1%), so it merges
//! exactly and answers percentiles exactly as a dense hdrhistogram of the same values
//! would ([`Sparse::histogram`] builds that one for queries). The fold touches thousands of
//! aggregates per batch, most holding a handful of values: a dense histogram allocates
//! and serializes its whole counts array (kilobytes) each time, this one a few words.

use std::sync::LazyLock;

use hdrhistogram::Histogram;

/// Significant decimal digits every histogram keeps (values within 1%).
pub const SIGNIFICANT_DIGITS: u8 = 2;

/// A dense histogram with the bucket layout every [`Sparse`] uses (an auto-resizing one
/// starting at 1): the layout does not depend on the range, so this one maps any value.
static LAYOUT: LazyLock<Histogram<u64>> = LazyLock::new(dense);

/// An empty auto-resizing dense histogram at [`SIGNIFICANT_DIGITS`].
pub fn dense() -> Histogram<u64> {
    Histogram::new(SIGNIFICANT_DIGITS).unwrap_or_else(|_| unreachable!("2 digits is valid"))
}

/// Counts by bucket, for the buckets with any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sparse {
    /// `(lowest value of the bucket, count)`, ordered by value; counts are never 0.
    buckets: Vec<(u64, u64)>,
}

/// Why a stored histogram is unreadable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a stored histogram is malformed")]
pub struct Malformed;

impl Sparse {
    /// Counts `value` once.
    pub fn record(&mut self, value: u64) {
        self.add(LAYOUT.lowest_equivalent(value), 1);
    }

    fn add(&mut self, bucket: u64, count: u64) {
        match self.buckets.binary_search_by_key(&bucket, |&(b, _)| b) {
            Ok(at) => self.buckets[at].1 = self.buckets[at].1.saturating_add(count),
            Err(at) => self.buckets.insert(at, (bucket, count)),
        }
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Sparse) {
        if other.buckets.is_empty() {
            return;
        }
        if self.buckets.is_empty() {
            self.buckets.clone_from(&other.buckets);
            return;
        }
        let mut merged = Vec::with_capacity(self.buckets.len() + other.buckets.len());
        let (mut mine, mut theirs) = (self.buckets.iter().peekable(), other.buckets.iter());
        for &(bucket, count) in theirs.by_ref() {
            while let Some(&&(b, c)) = mine.peek() {
                if b >= bucket {
                    break;
                }
                merged.push((b, c));
                mine.next();
            }
            match mine.peek() {
                Some(&&(b, c)) if b == bucket => {
                    merged.push((b, c.saturating_add(count)));
                    mine.next();
                }
                _ => merged.push((bucket, count)),
            }
        }
        merged.extend(mine);
        self.buckets = merged;
    }

    /// Values counted.
    pub fn count(&self) -> u64 {
        self.buckets
            .iter()
            .fold(0, |sum, &(_, count)| sum.saturating_add(count))
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Buckets with counts (a measure of its size).
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    /// The same counts in a dense hdrhistogram, for percentiles.
    pub fn histogram(&self) -> Histogram<u64> {
        let mut dense = dense();
        if let Some(&(top, _)) = self.buckets.last() {
            // Sized once for the largest value instead of growing step by step.
            if let Ok(sized) = Histogram::new_with_bounds(1, top.max(2), SIGNIFICANT_DIGITS) {
                dense = sized;
                dense.auto(true);
            }
        }
        for &(bucket, count) in &self.buckets {
            // Auto-resizing: recording cannot run out of range.
            let _ = dense.record_n(bucket, count);
        }
        dense
    }

    /// The counts of a dense hdrhistogram (of any precision at least as fine).
    pub fn from_histogram(histogram: &Histogram<u64>) -> Self {
        let mut sparse = Self::default();
        for value in histogram.iter_recorded() {
            sparse.add(
                LAYOUT.lowest_equivalent(value.value_iterated_to()),
                value.count_at_value(),
            );
        }
        sparse
    }

    /// The stored form: for each bucket, its distance from the previous one (from 0 for the
    /// first) and its count, as a flat list (prost writes it as packed varints).
    pub fn encode(&self) -> Vec<u64> {
        let mut out = Vec::with_capacity(self.buckets.len() * 2);
        let mut previous = 0;
        for &(bucket, count) in &self.buckets {
            out.push(bucket - previous);
            out.push(count);
            previous = bucket;
        }
        out
    }

    /// Reads [`Sparse::encode`]'s form.
    pub fn decode(stored: &[u64]) -> Result<Self, Malformed> {
        if !stored.len().is_multiple_of(2) {
            return Err(Malformed);
        }
        let mut buckets = Vec::with_capacity(stored.len() / 2);
        let mut bucket: u64 = 0;
        for (i, pair) in stored.chunks_exact(2).enumerate() {
            let (step, count) = (pair[0], pair[1]);
            bucket = bucket.checked_add(step).ok_or(Malformed)?;
            let ordered = i == 0 || step > 0;
            if !ordered || count == 0 || LAYOUT.lowest_equivalent(bucket) != bucket {
                return Err(Malformed);
            }
            buckets.push((bucket, count));
        }
        Ok(Self { buckets })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Vec<u64> {
        let mut values = vec![0, 1, 255, 256, 257, 10_000, 10_050, 90_000_000, 1 << 62];
        values.extend((0..2_000u64).map(|i| i.wrapping_mul(0x9E37_79B9) % 5_000_000));
        values
    }

    #[test]
    fn percentiles_match_a_dense_histogram_of_the_same_values() {
        let mut sparse = Sparse::default();
        let mut dense = dense();
        for value in values() {
            sparse.record(value);
            dense.record(value).unwrap();
        }
        let rebuilt = sparse.histogram();
        assert_eq!(sparse.count(), dense.len());
        assert_eq!(rebuilt.len(), dense.len());
        for q in [0.0, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(
                rebuilt.value_at_quantile(q),
                dense.value_at_quantile(q),
                "{q}"
            );
        }
        assert_eq!(rebuilt.max(), dense.max());
        assert_eq!(rebuilt.min(), dense.min());
        assert_eq!(Sparse::from_histogram(&dense), sparse);
    }

    #[test]
    fn merging_equals_recording_everything_in_one() {
        let (mut a, mut b, mut all) = (Sparse::default(), Sparse::default(), Sparse::default());
        for (i, value) in values().into_iter().enumerate() {
            if i % 3 == 0 { &mut a } else { &mut b }.record(value);
            all.record(value);
        }
        let mut merged = a.clone();
        merged.merge(&b);
        assert_eq!(merged, all);
        b.merge(&a);
        assert_eq!(b, all);
        let mut empty = Sparse::default();
        empty.merge(&all);
        assert_eq!(empty, all);
    }

    #[test]
    fn the_stored_form_round_trips_and_rejects_damage() {
        let mut sparse = Sparse::default();
        for value in values() {
            sparse.record(value);
        }
        let stored = sparse.encode();
        assert_eq!(Sparse::decode(&stored).unwrap(), sparse);
        assert_eq!(Sparse::decode(&[]).unwrap(), Sparse::default());
        assert_eq!(Sparse::decode(&stored[1..]), Err(Malformed));
        assert_eq!(Sparse::decode(&[5, 1, 0, 1]), Err(Malformed), "not ordered");
        assert_eq!(Sparse::decode(&[5, 0]), Err(Malformed), "empty bucket");
        assert_eq!(
            Sparse::decode(&[257, 1]),
            Err(Malformed),
            "not a bucket start"
        );
    }
}
