//! Moving spooled events to the event log: the [`EventLog`] trait (JetStream in production,
//! [`crate::local::LocalLog`] under `floodgate dev`) and the [`Publisher`] task that drains
//! the spool through it in order, deleting each event only after the log acknowledged it,
//! retrying with the same event id (the log drops duplicates) and backing off while the
//! log is unreachable.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage};
use tokio_util::sync::CancellationToken;

use crate::spool::{Spool, Spooled};
use crate::stream::{self, StreamSettings};

/// Events published per round trip.
const BATCH: usize = 256;
/// First pause after a failed publish; doubled per failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between retries while the log is down.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Why the log did not acknowledge an event.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The log is unreachable or did not acknowledge in time; retried with the same id.
    #[error("event log unavailable: {0}")]
    Unavailable(String),
    /// The stream could not be created or updated.
    #[error(transparent)]
    Stream(#[from] stream::StreamError),
    /// The local log's storage failed.
    #[error("local event log storage error: {0}")]
    Storage(String),
}

/// What became of a batch.
#[derive(Debug)]
pub struct Published {
    /// How many events from the front of the batch the log acknowledged.
    pub acked: usize,
    /// Why the rest were not, if any remain.
    pub error: Option<PublishError>,
}

/// Where published events go. An event published twice with the same id (within the log's
/// deduplication window; forever for the local log) is stored once.
pub trait EventLog: Send + Sync + 'static {
    /// Publishes `batch` in order.
    fn publish(&self, batch: &[Spooled]) -> impl Future<Output = Published> + Send;
}

/// JetStream as the event log: publishes on `floodgate.usage.<shard>` with
/// `Nats-Msg-Id` = event id, pipelining a batch and awaiting the acks in order. Creates or
/// updates the stream before its first publish (and again if the stream disappears).
#[derive(Debug, Clone)]
pub struct JetStreamLog {
    js: jetstream::Context,
    subject: String,
    settings: StreamSettings,
    stream_ready: Arc<AtomicBool>,
}

impl JetStreamLog {
    /// Publishes through `client` on shard `shard`; each ack is awaited at most
    /// `ack_timeout` before the event is retried.
    pub fn new(
        client: async_nats::Client,
        shard: &str,
        settings: StreamSettings,
        ack_timeout: Duration,
    ) -> Self {
        let mut js = jetstream::new(client);
        js.set_timeout(ack_timeout);
        Self {
            js,
            subject: stream::subject(shard),
            settings,
            stream_ready: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl EventLog for JetStreamLog {
    async fn publish(&self, batch: &[Spooled]) -> Published {
        if !self.stream_ready.load(Ordering::Relaxed) {
            if let Err(error) = stream::ensure_stream(&self.js, &self.settings).await {
                return Published {
                    acked: 0,
                    error: Some(error.into()),
                };
            }
            self.stream_ready.store(true, Ordering::Relaxed);
        }
        let mut pending = Vec::with_capacity(batch.len());
        let mut error = None;
        for event in batch {
            let message = PublishMessage::build()
                .payload(event.payload.clone())
                .message_id(&event.event_id);
            match self.js.send_publish(self.subject.clone(), message).await {
                Ok(ack) => pending.push(ack),
                Err(e) => {
                    error = Some(PublishError::Unavailable(e.to_string()));
                    break;
                }
            }
        }
        let mut acked = 0;
        for ack in pending {
            match ack.await {
                Ok(_) => acked += 1,
                Err(e) => {
                    if e.kind() == PublishErrorKind::StreamNotFound {
                        self.stream_ready.store(false, Ordering::Relaxed);
                    }
                    error = Some(PublishError::Unavailable(e.to_string()));
                    break;
                }
            }
        }
        Published { acked, error }
    }
}

/// Counters of a publisher, for metrics.
#[derive(Debug, Default)]
pub struct PublisherStats {
    /// Events the log acknowledged.
    pub published: AtomicU64,
    /// Failed publish rounds (each retried after a backoff).
    pub failures: AtomicU64,
}

/// Drains a spool into an event log until stopped.
#[derive(Debug)]
pub struct Publisher<L> {
    spool: Spool,
    log: L,
    stats: Arc<PublisherStats>,
}

impl<L: EventLog> Publisher<L> {
    /// A publisher from `spool` to `log`.
    pub fn new(spool: Spool, log: L) -> Self {
        Self {
            spool,
            log,
            stats: Arc::default(),
        }
    }

    /// Its counters.
    pub fn stats(&self) -> Arc<PublisherStats> {
        self.stats.clone()
    }

    /// Publishes spooled events in order until `stop`; never gives up on an event. Once
    /// stopped, it keeps going until every event appended before the stop is published,
    /// for at most `drain`: what is left then stays in the spool for the next start.
    pub async fn run(self, stop: CancellationToken, drain: Duration) {
        let deadline = async {
            stop.cancelled().await;
            tokio::time::sleep(drain).await;
        };
        tokio::select! {
            () = self.publish(&stop) => {}
            () = deadline => {}
        }
        let depth = self.spool.depth();
        if depth > 0 {
            tracing::warn!(
                depth,
                "stopping with usage events still spooled; they are published after the next start"
            );
        }
    }

    /// Publishes until stopped with nothing left to publish.
    async fn publish(&self, stop: &CancellationToken) {
        let mut backoff = MIN_BACKOFF;
        let mut down = false;
        loop {
            let written = self.spool.written_key();
            let batch = match self.spool.peek(BATCH) {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::error!(%error, "cannot read the usage spool");
                    tokio::time::sleep(MAX_BACKOFF).await;
                    continue;
                }
            };
            if batch.is_empty() {
                if stop.is_cancelled() && self.spool.depth() == 0 {
                    return;
                }
                tokio::select! {
                    () = self.spool.written_after(written) => {}
                    // Stopped meanwhile: look again whether anything is left.
                    () = stop.cancelled(), if !stop.is_cancelled() => {}
                }
                continue;
            }
            let published = self.log.publish(&batch).await;
            if published.acked > 0 {
                let through = batch[published.acked - 1].key;
                if let Err(error) = self.spool.ack(through) {
                    tracing::error!(%error, "cannot remove published events from the usage spool");
                }
                self.stats
                    .published
                    .fetch_add(published.acked as u64, Ordering::Relaxed);
            }
            match published.error {
                None => {
                    if down {
                        tracing::info!("event log reachable again: draining the usage spool");
                        down = false;
                    }
                    backoff = MIN_BACKOFF;
                }
                Some(error) => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    if !down {
                        tracing::warn!(%error, "cannot publish usage events; spooling and retrying");
                        down = true;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}
