//! Reading the event log from JetStream: a durable pull consumer on `FLOODGATE_USAGE` with
//! explicit `AckPolicy::All`, so acknowledging one message acknowledges every earlier one
//! and [`EventSource::ack`] acks the last fetched message at or before the position.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;

use crate::buffer::{Pending, decoded};
use crate::source::{Delivered, EventSource, SourceError};
use crate::stream::{STREAM, SUBJECT_PREFIX};

/// How long the server waits for an ack before it delivers a message again.
const ACK_WAIT: Duration = Duration::from_secs(60);
/// Messages a reader may hold unacknowledged.
const MAX_ACK_PENDING: i64 = 50_000;
/// Shortest pull expiry the server accepts comfortably.
const MIN_WAIT: Duration = Duration::from_millis(10);

/// A durable reader of the stream.
#[derive(Debug)]
pub struct JetStreamSource {
    consumer: consumer::PullConsumer,
    /// Fetched, not yet acknowledged, by stream sequence.
    unacked: BTreeMap<u64, jetstream::Message>,
    last_fetched: u64,
    pending: Pending,
}

impl JetStreamSource {
    /// The durable consumer `durable` over the shards matched by `shard` (`*` for all);
    /// resumes right after its last acknowledged message.
    ///
    /// JetStream would hold back messages a previous reader fetched but never acknowledged
    /// until their ack wait ran out; so an existing consumer is recreated to start at its
    /// ack floor + 1, and a restarted reader gets them at once. One reader per durable name.
    pub async fn open(
        js: &jetstream::Context,
        durable: &str,
        shard: &str,
    ) -> Result<Self, SourceError> {
        let stream = js.get_stream(STREAM).await.map_err(unavailable)?;
        let mut config = config(durable, shard);
        if let Ok(info) = stream.consumer_info(durable).await {
            let start_sequence = info.ack_floor.stream_sequence + 1;
            stream.delete_consumer(durable).await.map_err(unavailable)?;
            config.deliver_policy = consumer::DeliverPolicy::ByStartSequence { start_sequence };
        }
        let consumer = stream.create_consumer(config).await.map_err(unavailable)?;
        Ok(Self::with(consumer))
    }

    /// The durable consumer `durable` recreated from the start of the stream (any existing
    /// consumer of that name is deleted first), for rebuilding a projection.
    pub async fn fresh(
        js: &jetstream::Context,
        durable: &str,
        shard: &str,
    ) -> Result<Self, SourceError> {
        let stream = js.get_stream(STREAM).await.map_err(unavailable)?;
        if stream
            .get_consumer::<consumer::pull::Config>(durable)
            .await
            .is_ok()
        {
            stream.delete_consumer(durable).await.map_err(unavailable)?;
        }
        let consumer = stream
            .create_consumer(config(durable, shard))
            .await
            .map_err(unavailable)?;
        Ok(Self::with(consumer))
    }

    fn with(consumer: consumer::PullConsumer) -> Self {
        Self {
            consumer,
            unacked: BTreeMap::new(),
            last_fetched: 0,
            pending: Pending::default(),
        }
    }
}

fn config(durable: &str, shard: &str) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(durable.to_owned()),
        deliver_policy: consumer::DeliverPolicy::All,
        ack_policy: consumer::AckPolicy::All,
        ack_wait: ACK_WAIT,
        max_ack_pending: MAX_ACK_PENDING,
        filter_subject: format!("{SUBJECT_PREFIX}.{shard}"),
        ..Default::default()
    }
}

impl EventSource for JetStreamSource {
    async fn fetch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivered>, SourceError> {
        if let Some(out) = self.pending.take(max) {
            return out;
        }
        let mut messages = self
            .consumer
            .fetch()
            .max_messages(max.max(1))
            .expires(wait.max(MIN_WAIT))
            .messages()
            .await
            .map_err(unavailable)?;
        while let Some(message) = messages.next().await {
            let message = message.map_err(unavailable)?;
            let sequence = message.info().map_err(unavailable)?.stream_sequence;
            if sequence <= self.last_fetched {
                // Redelivered after the ack wait: already handed out.
                continue;
            }
            self.last_fetched = sequence;
            self.pending.push(decoded(sequence, &message.payload));
            self.unacked.insert(sequence, message);
        }
        self.pending.take(max).unwrap_or(Ok(Vec::new()))
    }

    async fn ack(&mut self, sequence: u64) -> Result<(), SourceError> {
        let Some((&last, _)) = self.unacked.range(..=sequence).next_back() else {
            return Ok(());
        };
        if let Some(message) = self.unacked.get(&last) {
            message.double_ack().await.map_err(unavailable)?;
        }
        self.unacked = self.unacked.split_off(&(last + 1));
        Ok(())
    }
}

fn unavailable(error: impl std::fmt::Display) -> SourceError {
    SourceError::Unavailable(error.to_string())
}
