//! The projector loop: fetch a batch from an [`EventSource`], fold it into the
//! [`Projection`] (one atomic sled batch with the position), flush, then ack, then hand the
//! folded events to live watchers. A crash anywhere in between is harmless: before the
//! commit the batch is redelivered and folded once; after it, the redelivery is at or
//! below the stored position and skipped.
//!
//! `Unavailable` from the source is retried with exponential backoff; `Undecodable` is
//! logged, counted and parked in the store with the position advanced past it
//! ([`Projection::park`]), flushed, then acknowledged: it never stops the loop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use floodgate_events::{EventSource, SourceError};
use floodgate_proto::v1::UsageEvent;
use hdrhistogram::Histogram;
use tokio_util::sync::CancellationToken;

use crate::store::{Projection, StoreError};

/// First pause after the source was unavailable; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// Longest pause between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How the loop fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopSettings {
    /// Most events per batch.
    pub batch: usize,
    /// Longest wait for a batch's first event.
    pub wait: Duration,
    /// After a partial batch (the log was drained), the least time from one fetch to the
    /// next, so that under a steady trickle each fold (and its flush) gathers the events
    /// of this long instead of a few: it bounds the store's flushes per second and adds at
    /// most this much to the lag. Zero folds each partial batch at once.
    pub linger: Duration,
}

impl Default for LoopSettings {
    fn default() -> Self {
        Self {
            batch: 512,
            wait: Duration::from_secs(1),
            linger: Duration::from_millis(10),
        }
    }
}

/// Counters of a running loop, readable from elsewhere.
#[derive(Debug)]
pub struct LoopStats {
    /// Events folded.
    pub folded: AtomicU64,
    /// Events skipped as already folded (by position or by id).
    pub skipped: AtomicU64,
    /// Undecodable events parked and passed over.
    pub undecodable: AtomicU64,
    /// Lag of each folded event, µs: from its answer (arrival plus total latency) to the
    /// flush that made it visible to queries. Written by the loop once per batch.
    lag: Mutex<Option<Histogram<u64>>>,
}

/// The longest lag the histogram tracks exactly (an hour); longer ones count as that.
const MAX_LAG_US: u64 = 3_600_000_000;

impl Default for LoopStats {
    fn default() -> Self {
        Self {
            folded: AtomicU64::default(),
            skipped: AtomicU64::default(),
            undecodable: AtomicU64::default(),
            lag: Mutex::new(Histogram::new_with_max(MAX_LAG_US, 2).ok()),
        }
    }
}

/// Percentiles of the fold lag, µs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LagSummary {
    /// Events measured.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
}

impl LoopStats {
    /// The fold lag so far.
    pub fn lag(&self) -> LagSummary {
        let lag = self
            .lag
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(histogram) = lag.as_ref().filter(|h| !h.is_empty()) else {
            return LagSummary::default();
        };
        LagSummary {
            count: histogram.len(),
            p50: histogram.value_at_quantile(0.5),
            p90: histogram.value_at_quantile(0.9),
            p99: histogram.value_at_quantile(0.99),
            max: histogram.max(),
        }
    }

    fn record_lag(&self, events: &[Arc<UsageEvent>], visible_at: u64) {
        let mut lag = self
            .lag
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(histogram) = lag.as_mut() else {
            return;
        };
        for event in events {
            let answered = u64::try_from(event.time_unix_us)
                .unwrap_or(0)
                .saturating_add(event.total_latency_us);
            histogram.saturating_record(visible_at.saturating_sub(answered).min(MAX_LAG_US));
        }
    }
}

/// Why the loop stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    /// The store failed: the loop cannot continue without losing or doubling events.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Wall-clock now, Unix µs.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// What one step of the loop saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A batch was folded and acknowledged.
    Folded {
        /// Events in the batch.
        fetched: usize,
    },
    /// Nothing arrived in time: the projector has caught up.
    Idle,
    /// An undecodable event was parked and passed over.
    Undecodable,
    /// The source is unavailable; retry after a pause.
    Unavailable,
}

/// Fetches one batch, folds and commits it, then acknowledges it.
pub async fn step<E: EventSource>(
    source: &mut E,
    projection: &Projection,
    settings: LoopSettings,
    stats: &LoopStats,
) -> Result<Step, LoopError> {
    let batch = match source.fetch(settings.batch, settings.wait).await {
        Ok(batch) => batch,
        Err(SourceError::Unavailable(reason)) => {
            tracing::warn!(%reason, "event log unavailable; retrying");
            return Ok(Step::Unavailable);
        }
        Err(SourceError::Undecodable {
            sequence,
            reason,
            payload,
        }) => {
            stats.undecodable.fetch_add(1, Ordering::Relaxed);
            tracing::error!(sequence, %reason, size = payload.len(), "undecodable event parked");
            let parking = projection.clone();
            let parked = tokio::task::spawn_blocking(move || {
                parking.park(sequence, &reason, &payload, now_us())
            })
            .await
            .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()))?;
            if parked {
                projection.flush().await?;
            }
            if let Err(error) = source.ack(sequence).await {
                tracing::warn!(%error, sequence, "ack failed; the next one covers it");
            }
            return Ok(Step::Undecodable);
        }
    };
    if batch.is_empty() {
        return Ok(Step::Idle);
    }
    let fetched = batch.len();
    // The fold is CPU and disk work: keep it off the async workers.
    let folding = projection.clone();
    let folded = tokio::task::spawn_blocking(move || folding.fold(&batch, now_us()))
        .await
        .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()))?;
    projection.flush().await?;
    stats.record_lag(&folded.events, now_us());
    stats
        .folded
        .fetch_add(folded.events.len() as u64, Ordering::Relaxed);
    stats
        .skipped
        .fetch_add((folded.stale + folded.duplicates) as u64, Ordering::Relaxed);
    // The fold is durable: a lost ack only means a redelivery the position skips, and the
    // next ack (cumulative) covers this one.
    if let Err(error) = source.ack(folded.position).await {
        tracing::warn!(%error, position = folded.position, "ack failed; the next one covers it");
    }
    projection.publish(&folded.events);
    Ok(Step::Folded { fetched })
}

/// Runs the projector loop until `stop` is cancelled.
pub async fn run<E: EventSource>(
    mut source: E,
    projection: Projection,
    settings: LoopSettings,
    stats: Arc<LoopStats>,
    stop: CancellationToken,
) -> Result<(), LoopError> {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let started = tokio::time::Instant::now();
        let step = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            step = step(&mut source, &projection, settings, &stats) => step?,
        };
        match step {
            Step::Folded { fetched } if fetched < settings.batch && !settings.linger.is_zero() => {
                backoff = FIRST_BACKOFF;
                tokio::select! {
                    () = stop.cancelled() => return Ok(()),
                    () = tokio::time::sleep_until(started + settings.linger) => {}
                }
            }
            Step::Folded { .. } | Step::Idle | Step::Undecodable => backoff = FIRST_BACKOFF,
            Step::Unavailable => {
                tokio::select! {
                    () = stop.cancelled() => return Ok(()),
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
