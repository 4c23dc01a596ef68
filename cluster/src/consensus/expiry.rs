//! [`ExpiryTimer`]: the member's background task that, while the member leads, proposes
//! `Command::ExpireLeases` when there is something to expire, then delivers pending budget
//! alerts to their webhooks (see [`super::alerts`]).
//!
//! Every tick it checks the member's own applied state first
//! ([`LedgerState::expiry_due`](crate::LedgerState::expiry_due): a live lease past its
//! expiry, or a budget past its window), so an idle ledger writes no log entries. Followers
//! tick but never propose. The proposal is stamped with the leader's clock like any other,
//! so every member charges the same leases. Stopped by [`ExpiryTimer::stop`] (from
//! `LedgerNode::shutdown`), also in the middle of a proposal. Owns no ledger semantics.

use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::LedgerHandle;
use super::alerts::{AlertSender, deliver_pending};
use super::now_millis;
use crate::Command;
use crate::ledger::Effect;

/// The running timer task.
pub struct ExpiryTimer {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl ExpiryTimer {
    /// Starts the timer for `handle`'s member, checking every `every` (must be non-zero);
    /// alerts go through `alerts` (without one they stay pending).
    pub fn start(
        handle: LedgerHandle,
        every: Duration,
        alerts: Option<Arc<dyn AlertSender>>,
    ) -> Self {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(handle, every, alerts, stopped));
        Self {
            stop: Some(stop),
            task,
        }
    }

    /// Stops the task and waits until it has ended (at once if it already has).
    pub async fn stop(&mut self) {
        let Some(stop) = self.stop.take() else {
            return;
        };
        let _ = stop.send(());
        if let Err(error) = (&mut self.task).await {
            tracing::warn!(%error, "the lease expiry task ended abnormally");
        }
    }
}

async fn run(
    handle: LedgerHandle,
    every: Duration,
    alerts: Option<Arc<dyn AlertSender>>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = ticks.tick() => {}
        }
        tokio::select! {
            _ = &mut stopped => return,
            () = expire_if_due(&handle) => {}
        }
        let (Some(sender), true) = (&alerts, leads(&handle)) else {
            continue;
        };
        tokio::select! {
            _ = &mut stopped => return,
            () = deliver_pending(&handle, sender.as_ref()) => {}
        }
    }
}

fn leads(handle: &LedgerHandle) -> bool {
    handle.raft().metrics().borrow().state == ServerState::Leader
}

/// One tick: propose `ExpireLeases` if this member leads and its state has something due.
async fn expire_if_due(handle: &LedgerHandle) {
    if !leads(handle) {
        return;
    }
    match handle.reader().read(|state| state.expiry_due(now_millis())) {
        Ok(true) => {}
        Ok(false) => return,
        Err(error) => {
            tracing::warn!(%error, "reading the ledger state for lease expiry");
            return;
        }
    }
    // `forwarded`: if leadership moved meanwhile, the new leader's own timer takes over.
    match handle.propose(Command::ExpireLeases, true).await {
        Ok(committed) => match committed.outcome {
            Ok(applied) => {
                if let Effect::Expired { leases, .. } = &applied.effect {
                    tracing::debug!(
                        index = committed.index,
                        expired = leases.len(),
                        "expired leases"
                    );
                }
            }
            Err(error) => tracing::warn!(%error, "the ledger refused ExpireLeases"),
        },
        Err(error) => tracing::warn!(%error, "proposing ExpireLeases"),
    }
}
