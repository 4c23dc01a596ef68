//! [`Rows`]: the fold's write-through cache of decoded aggregate rows, so a key folded
//! again (the hour and day rows above all) is neither read from sled nor decoded.
//!
//! Write-through: the fold still writes every touched row, encoded, in its one atomic batch
//! with the position; the cache only holds copies of rows already committed. The fold takes
//! a row out before it merges into it and puts it back only after the batch committed, so a
//! failed batch leaves no uncommitted row behind (the next fold reads sled). It lives in
//! memory only: a restarted or rebuilt projector starts with an empty cache and fills it
//! from sled. Bounded by an estimate of its size; the least recently folded rows go first.

use std::collections::HashMap;

use crate::aggregate::Aggregate;

/// The default bound, bytes (estimated).
pub(crate) const DEFAULT_CAPACITY: usize = 32 << 20;

/// The cache.
#[derive(Debug)]
pub(crate) struct Rows {
    rows: HashMap<Vec<u8>, Row>,
    /// Sum of the rows' weights.
    weight: usize,
    capacity: usize,
    /// Counts [`Rows::put`] calls: when a row was last folded.
    tick: u64,
}

#[derive(Debug)]
struct Row {
    aggregate: Aggregate,
    weight: usize,
    used: u64,
}

impl Rows {
    /// An empty cache holding about `capacity` bytes at most.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            rows: HashMap::new(),
            weight: 0,
            capacity,
            tick: 0,
        }
    }

    /// Takes the row of `key` out, if cached.
    pub(crate) fn take(&mut self, key: &[u8]) -> Option<Aggregate> {
        let row = self.rows.remove(key)?;
        self.weight -= row.weight;
        Some(row.aggregate)
    }

    /// Keeps `rows`, just committed, then evicts the least recently folded rows while the
    /// cache is over capacity (down to three quarters of it).
    pub(crate) fn put(&mut self, rows: impl IntoIterator<Item = (Vec<u8>, Aggregate)>) {
        self.tick += 1;
        for (key, aggregate) in rows {
            let weight = key.len() + aggregate.weight();
            self.weight += weight;
            let row = Row {
                aggregate,
                weight,
                used: self.tick,
            };
            if let Some(old) = self.rows.insert(key, row) {
                self.weight -= old.weight;
            }
        }
        if self.weight > self.capacity {
            self.evict(self.capacity / 4 * 3);
        }
    }

    fn evict(&mut self, target: usize) {
        let mut ages: Vec<(u64, usize)> = self.rows.values().map(|r| (r.used, r.weight)).collect();
        ages.sort_unstable();
        let mut left = self.weight;
        let mut oldest_kept = 0;
        for (used, weight) in ages {
            if left <= target {
                oldest_kept = oldest_kept.max(used);
                break;
            }
            left -= weight;
            oldest_kept = used + 1;
        }
        // Rows folded in the same fold go together, so this may drop a little more.
        self.rows.retain(|_, row| row.used >= oldest_kept);
        self.weight = self.rows.values().map(|r| r.weight).sum();
    }

    /// Rows cached.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.rows.len()
    }
}

#[cfg(test)]
mod tests {
    use floodgate_proto::v1::UsageEvent;

    use super::*;

    fn row(n: u64) -> (Vec<u8>, Aggregate) {
        let mut aggregate = Aggregate::default();
        aggregate.record(&UsageEvent {
            total_latency_us: n,
            ..UsageEvent::default()
        });
        (n.to_be_bytes().to_vec(), aggregate)
    }

    #[test]
    fn a_row_is_taken_out_and_put_back() {
        let mut rows = Rows::new(DEFAULT_CAPACITY);
        assert!(rows.take(b"nothing").is_none());
        rows.put([row(1), row(2)]);
        let (key, want) = row(1);
        assert_eq!(rows.take(&key), Some(want));
        assert!(rows.take(&key).is_none(), "taken out until put back");
        assert_eq!(rows.len(), 1);
    }

    #[test]
    fn the_least_recently_folded_rows_are_evicted_beyond_capacity() {
        let one = {
            let (key, aggregate) = row(0);
            key.len() + aggregate.weight()
        };
        let mut rows = Rows::new(one * 10);
        for n in 0..10 {
            rows.put([row(n)]);
        }
        assert_eq!(rows.len(), 10, "exactly at capacity");
        // Row 0 is folded again: now the most recent.
        let (key, aggregate) = row(0);
        rows.take(&key);
        rows.put([(key, aggregate)]);
        rows.put([row(10)]);
        assert!(rows.len() <= 8, "down to three quarters: {}", rows.len());
        assert!(rows.weight <= one * 10);
        assert!(rows.take(&row(0).0).is_some(), "recently folded rows stay");
        assert!(rows.take(&row(10).0).is_some());
        assert!(rows.take(&row(1).0).is_none(), "the oldest went first");
    }
}
