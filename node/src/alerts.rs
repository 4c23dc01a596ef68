//! Budget alert webhooks: the ledger leader's [`AlertSender`], a POST of the alert as JSON
//! to the budget's `webhook` with an `Idempotency-Key` of budget and window (delivery is at
//! least once: see `floodgate_cluster::consensus::alerts`). Neither the URL (which often
//! holds a token) nor the response body ever reaches a log line or an error.

use std::time::Duration;

use floodgate_cluster::consensus::AlertSender;
use floodgate_cluster::ledger::PendingAlert;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::json;

/// How long one webhook call may take.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends alerts with a pooled HTTP client.
#[derive(Debug, Clone)]
pub struct WebhookSender {
    client: reqwest::Client,
}

impl WebhookSender {
    /// A sender with its own client.
    pub fn new() -> Result<Self, reqwest::Error> {
        Ok(Self {
            client: crate::http_client::build(WEBHOOK_TIMEOUT)?,
        })
    }

    async fn post(&self, alert: &PendingAlert) -> Result<(), String> {
        let body = json!({
            "type": "floodgate.budget_alert",
            "alert": alert,
        });
        let response = self
            .client
            .post(&alert.webhook)
            .header(
                "idempotency-key",
                format!("{}:{}", alert.alert.budget, alert.alert.window_start),
            )
            .timeout(WEBHOOK_TIMEOUT)
            .json(&body)
            .send()
            .await
            .map_err(|error| error.without_url().to_string())?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the webhook answered HTTP {}", status.as_u16()))
        }
    }
}

impl AlertSender for WebhookSender {
    fn send<'a>(&'a self, alert: &'a PendingAlert) -> BoxFuture<'a, Result<(), String>> {
        self.post(alert).boxed()
    }
}
