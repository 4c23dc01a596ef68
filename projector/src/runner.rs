//! The projector loop: fetch a batch from an [`EventSource`], fold it into the
//! [`Projection`] (one atomic sled batch with the position), flush, then ack, then hand the
//! folded events to live watchers. A crash anywhere in between is harmless: before the
//! commit the batch is redelivered and folded once; after it, the redelivery is at or
//! below the stored position and skipped.
//!
//! `Unavailable` from the source is retried with exponential backoff; `Undecodable` is
//! logged, counted and passed over (the source parks the message and moves on).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use floodgate_events::{EventSource, SourceError};
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
}

impl Default for LoopSettings {
    fn default() -> Self {
        Self {
            batch: 512,
            wait: Duration::from_secs(1),
        }
    }
}

/// Counters of a running loop, readable from elsewhere.
#[derive(Debug, Default)]
pub struct LoopStats {
    /// Events folded.
    pub folded: AtomicU64,
    /// Events skipped as already folded (by position or by id).
    pub skipped: AtomicU64,
    /// Undecodable events passed over.
    pub undecodable: AtomicU64,
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
    /// The source passed over an undecodable event.
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
        Err(SourceError::Undecodable { sequence, reason }) => {
            stats.undecodable.fetch_add(1, Ordering::Relaxed);
            tracing::error!(sequence, %reason, "undecodable event skipped");
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
        let step = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            step = step(&mut source, &projection, settings, &stats) => step?,
        };
        match step {
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
