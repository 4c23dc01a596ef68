//! `floodgate projector rebuild`: replays an event source into a fresh store. Projections
//! are disposable: the rebuilt store holds the same totals as any projector that folded the
//! same stream.

use std::path::Path;

use floodgate_events::EventSource;

use crate::runner::{self, LoopError, LoopSettings, LoopStats, Step};
use crate::store::{Projection, StoreError};

/// Why a rebuild failed.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// The target store already holds data.
    #[error("{0} already holds a projection: rebuild into an empty directory")]
    NotEmpty(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The source stayed unavailable.
    #[error("the event log stayed unavailable")]
    Unavailable,
}

/// What a rebuild did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rebuilt {
    /// Events folded.
    pub folded: u64,
    /// Events skipped as duplicates.
    pub skipped: u64,
    /// Undecodable events parked and passed over.
    pub undecodable: u64,
    /// The last sequence folded.
    pub position: u64,
}

/// Most consecutive unavailable answers a rebuild tolerates.
const MAX_UNAVAILABLE: usize = 20;

/// Replays `source` from its start into a new store at `dir` until a fetch comes back
/// empty (caught up), and returns the counts.
pub async fn rebuild<E: EventSource>(
    mut source: E,
    dir: &Path,
    settings: LoopSettings,
) -> Result<Rebuilt, RebuildError> {
    let projection = Projection::open(dir)?;
    if !projection.is_empty() {
        return Err(RebuildError::NotEmpty(dir.display().to_string()));
    }
    let stats = LoopStats::default();
    let mut unavailable = 0;
    loop {
        match runner::step(&mut source, &projection, settings, &stats).await {
            Ok(Step::Idle) => break,
            Ok(Step::Folded { .. } | Step::Undecodable) => unavailable = 0,
            Ok(Step::Unavailable) => {
                unavailable += 1;
                if unavailable >= MAX_UNAVAILABLE {
                    return Err(RebuildError::Unavailable);
                }
                tokio::time::sleep(settings.wait).await;
            }
            Err(LoopError::Store(error)) => return Err(error.into()),
        }
    }
    let load = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
    Ok(Rebuilt {
        folded: load(&stats.folded),
        skipped: load(&stats.skipped),
        undecodable: load(&stats.undecodable),
        position: projection.position()?,
    })
}
