//! Alert webhooks: while a member leads, each tick of its [`ExpiryTimer`](super::expiry)
//! sends every pending alert ([`LedgerState::pending_alerts`](crate::LedgerState::pending_alerts):
//! an `alert` budget crossed in its current window, with a webhook, not yet delivered)
//! through the [`AlertSender`], and on success proposes `AlertDelivered`, so no leader
//! sends that window's alert again. A failed send is retried on the next tick until the
//! window ends. Delivery is at least once: a leader that dies between the webhook's answer
//! and the commit leaves the next leader to send it again, so the request carries an
//! `Idempotency-Key` of budget and window for the receiver.
//!
//! The sender is a trait so the `cluster` crate carries no HTTP client: the node implements
//! it with its own (TLS-configured) client.

use std::fmt;

use futures::future::BoxFuture;

use super::LedgerHandle;
use crate::Command;
use crate::ledger::PendingAlert;

/// Delivers one alert to its webhook; `Err` (a reason without the URL, which may hold a
/// token) leaves it pending.
pub trait AlertSender: Send + Sync + fmt::Debug {
    /// POSTs `alert` to `alert.webhook`.
    fn send<'a>(&'a self, alert: &'a PendingAlert) -> BoxFuture<'a, Result<(), String>>;
}

/// One tick's delivery (the caller checked that this member leads).
pub(super) async fn deliver_pending(handle: &LedgerHandle, sender: &dyn AlertSender) {
    let pending = match handle.reader().read(|state| state.pending_alerts()) {
        Ok(pending) => pending,
        Err(error) => {
            tracing::warn!(%error, "reading the ledger state for pending alerts");
            return;
        }
    };
    for alert in pending {
        let budget = alert.alert.budget.clone();
        if let Err(reason) = sender.send(&alert).await {
            tracing::warn!(%budget, %reason, "the budget alert webhook failed; retrying next tick");
            continue;
        }
        let delivered = Command::AlertDelivered {
            budget: budget.clone(),
            window_start: alert.alert.window_start,
        };
        match handle.propose(delivered, true).await {
            Ok(committed) => match committed.outcome {
                Ok(_) => tracing::info!(%budget, "budget alert delivered to its webhook"),
                Err(error) => tracing::warn!(%budget, %error, "the ledger refused AlertDelivered"),
            },
            Err(error) => tracing::warn!(%budget, %error, "proposing AlertDelivered"),
        }
    }
}
