//! The server side of `LedgerService.Watch`: a stream of [`ConfigSnapshot`]s of one member's
//! applied state, one per config revision.
//!
//! The stream sends the current state at once when its config revision is newer than the
//! watcher's (or, for a watcher that has nothing, as soon as the member has applied
//! anything), then a snapshot each time the applied `config_revision` goes up. Lease grants
//! and settlements bump only `revision` and send nothing. It wakes on openraft's metrics
//! channel when `last_applied` moves (entries applied or a snapshot installed), never on a
//! timer, and ends when the member's Raft stops (the metrics channel reports `Shutdown` or
//! closes). A client that goes away drops the stream. Owns no state of its own and never
//! writes.

use std::pin::Pin;

use floodgate_proto::v1::ConfigSnapshot;
use futures::Stream;
use openraft::BasicNode;
use openraft::LogId;
use openraft::RaftMetrics;
use openraft::ServerState;
use tokio::sync::watch;
use tonic::Status;

use super::LedgerHandle;
use super::LedgerReader;
use super::NodeId;

/// The stream the `Watch` RPC answers with.
pub type SnapshotStream = Pin<Box<dyn Stream<Item = Result<ConfigSnapshot, Status>> + Send>>;

/// The snapshots of `handle`'s member for a watcher that has config revision `after`
/// (0: none).
pub fn config_snapshots(handle: &LedgerHandle, after: u64) -> SnapshotStream {
    let watcher = Watcher {
        id: handle.id(),
        reader: handle.reader().clone(),
        metrics: handle.raft().metrics(),
        after,
        sent: None,
        seen_applied: None,
        done: false,
    };
    Box::pin(futures::stream::unfold(watcher, |mut watcher| async move {
        let item = watcher.next().await?;
        Some((item, watcher))
    }))
}

/// One open watch.
struct Watcher {
    id: NodeId,
    reader: LedgerReader,
    metrics: watch::Receiver<RaftMetrics<NodeId, BasicNode>>,
    /// The watcher's config revision when it asked.
    after: u64,
    /// The config revision last sent on this stream.
    sent: Option<u64>,
    /// `last_applied` as of the last look at the state.
    seen_applied: Option<LogId<NodeId>>,
    /// Set after an error was sent: the stream ends.
    done: bool,
}

impl Watcher {
    /// The next snapshot, or `None` when the member stops.
    async fn next(&mut self) -> Option<Result<ConfigSnapshot, Status>> {
        loop {
            if self.done {
                return None;
            }
            {
                let metrics = self.metrics.borrow_and_update();
                if metrics.state == ServerState::Shutdown {
                    return None;
                }
                // Noted before reading the state: anything applied after this read shows up
                // as a later metrics change.
                self.seen_applied = metrics.last_applied;
            }
            match self.snapshot_if_newer() {
                Ok(Some(snapshot)) => {
                    self.sent = Some(snapshot.config_revision);
                    return Some(Ok(snapshot));
                }
                Ok(None) => {}
                Err(status) => {
                    self.done = true;
                    return Some(Err(status));
                }
            }
            let seen = self.seen_applied;
            let woke = self
                .metrics
                .wait_for(|m| m.last_applied != seen || m.state == ServerState::Shutdown)
                .await
                .is_ok();
            if !woke {
                // The Raft core is gone: the member stopped.
                return None;
            }
        }
    }

    /// The member's state as a snapshot if the watcher should get it now.
    fn snapshot_if_newer(&self) -> Result<Option<ConfigSnapshot>, Status> {
        let internal = |error: floodgate_store::StoreError| Status::internal(error.to_string());
        let applied_anything = self.reader.last_applied().map_err(internal)?.is_some();
        let (sent, after) = (self.sent, self.after);
        self.reader
            .read(|state| {
                let config_revision = state.config_revision();
                let due = match sent {
                    Some(sent) => config_revision > sent,
                    None => config_revision > after || (after == 0 && applied_anything),
                };
                if !due {
                    return Ok(None);
                }
                let state_json = serde_json::to_vec(state).map_err(|error| {
                    Status::internal(format!("encoding the ledger state: {error}"))
                })?;
                Ok(Some(ConfigSnapshot {
                    config_revision,
                    revision: state.revision(),
                    node_id: self.id,
                    state_json,
                }))
            })
            .map_err(internal)?
    }
}
