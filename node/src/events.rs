//! The edge's side of the event pipeline: each [`UsageRecord`] becomes a protobuf
//! [`UsageEvent`] appended to the spool ([`EventSink`]); a writer task group-commits the
//! spool and a publisher drains it to NATS JetStream, or to the local sled log under
//! `floodgate dev` ([`start`]). The crate `floodgate-events` does the storage and the
//! publishing; this module owns the conversion and the wiring.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use floodgate_events::local::{LocalLog, LocalLogError};
use floodgate_events::publish::PublisherStats;
use floodgate_events::spool::{FlushPolicy, Spool, SpoolError};
use floodgate_events::stream::{self, StreamError};
use floodgate_events::{JetStreamLog, Publisher};
use floodgate_proto::v1::{self as proto, UsageEvent};
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::events::{EventsBackend, EventsConfig};
use crate::usage::{Payload, PipelineStats, RouteKind, UsageRecord, UsageSink};

/// How long the start-up stream setup waits for NATS before it logs that events are being
/// spooled (the publisher sets the stream up again before its first publish).
const STREAM_SETUP_WAIT: Duration = Duration::from_secs(5);

/// Why the event pipeline could not start.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// The spool could not be opened.
    #[error("cannot open the usage spool: {0}")]
    Spool(#[from] SpoolError),
    /// The local event log could not be opened.
    #[error(transparent)]
    Local(#[from] LocalLogError),
    /// The NATS client could not be created.
    #[error(transparent)]
    Nats(#[from] StreamError),
}

/// A usage sink that appends each record, as a [`UsageEvent`], to the spool.
#[derive(Debug, Clone)]
pub struct EventSink {
    spool: Spool,
    publisher: Arc<PublisherStats>,
    edge_id: String,
    waits: bool,
    refused: Arc<AtomicU64>,
}

impl EventSink {
    /// A sink appending to `spool` (drained by the publisher counting in `publisher`),
    /// stamping events with `edge_id`.
    pub fn new(
        spool: Spool,
        publisher: Arc<PublisherStats>,
        edge_id: String,
        flush: FlushPolicy,
    ) -> Self {
        Self {
            spool,
            publisher,
            edge_id,
            waits: flush == FlushPolicy::Always,
            refused: Arc::default(),
        }
    }

    /// The spool.
    pub fn spool(&self) -> &Spool {
        &self.spool
    }
}

impl UsageSink for EventSink {
    fn record(&self, record: UsageRecord) {
        self.spool.append(&event(&record, &self.edge_id));
    }

    fn durable(&self) -> Option<BoxFuture<'static, ()>> {
        self.waits
            .then(|| Box::pin(self.spool.durable()) as BoxFuture<'static, ()>)
    }

    fn admit(&self) -> bool {
        if self.spool.is_full() {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn pipeline(&self) -> Option<PipelineStats> {
        let spool = self.spool.stats();
        Some(PipelineStats {
            spool_depth: spool.depth,
            spool_oldest_age: spool.oldest_age,
            spool_cap: spool.cap,
            published: self.publisher.published.load(Ordering::Relaxed),
            publish_failures: self.publisher.failures.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        })
    }
}

/// A running pipeline.
#[derive(Debug)]
pub struct Events {
    /// The sink requests write to.
    pub sink: Arc<EventSink>,
    /// The local event log, with backend `local` (the projector role of the same process
    /// reads it: sled allows one process per log).
    pub local: Option<LocalLog>,
}

/// Opens the spool and starts its writer and publisher on `tracker`; both stop on `stop`
/// (the writer after a last flush). With NATS, the stream is created or updated in the
/// background: an edge starts and serves while NATS is down.
pub async fn start(
    config: &EventsConfig,
    edge_id: String,
    tracker: &TaskTracker,
    stop: &CancellationToken,
) -> Result<Events, EventsError> {
    let spool = Spool::open(&config.spool_dir, config.flush, config.max_events)?;
    let depth = spool.depth();
    if depth > 0 {
        tracing::info!(
            depth,
            "usage spool holds events from before: publishing them"
        );
    }
    tracker.spawn(spool.clone().run_writer(stop.clone()));
    let (publisher, local) = match &config.backend {
        EventsBackend::Nats(nats) => {
            let client = stream::connect_lazily(&nats.urls).await?;
            let js = async_nats::jetstream::new(client.clone());
            let settings = nats.stream.clone();
            let stopped = stop.clone();
            tracker.spawn(async move {
                let setup = tokio::time::timeout(STREAM_SETUP_WAIT, stream::ensure_stream(&js, &settings));
                tokio::select! {
                    result = setup => match result {
                        Ok(Ok(_)) => tracing::info!(stream = stream::STREAM, "usage event stream ready"),
                        Ok(Err(error)) => tracing::warn!(%error, "usage event stream not set up yet; the publisher retries"),
                        Err(_) => tracing::warn!("NATS not reachable yet; usage events are spooled until it is"),
                    },
                    () = stopped.cancelled() => {}
                }
            });
            let log = JetStreamLog::new(client, &nats.shard, nats.stream.clone(), nats.ack_timeout);
            let publisher = Publisher::new(spool.clone(), log);
            let stats = publisher.stats();
            tracker.spawn(publisher.run(stop.clone(), config.drain));
            (stats, None)
        }
        EventsBackend::Local { dir } => {
            let log = LocalLog::open(dir)?;
            let publisher = Publisher::new(spool.clone(), log.clone());
            let stats = publisher.stats();
            tracker.spawn(publisher.run(stop.clone(), config.drain));
            (stats, Some(log))
        }
    };
    Ok(Events {
        sink: Arc::new(EventSink::new(spool, publisher, edge_id, config.flush)),
        local,
    })
}

fn payload(payload: &Payload) -> proto::Payload {
    proto::Payload {
        body: payload.body.clone(),
        truncated: payload.truncated,
    }
}

/// The event of one usage record.
pub fn event(record: &UsageRecord, edge_id: &str) -> UsageEvent {
    let time_unix_us = record
        .started_at
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let route = match record.route {
        RouteKind::Unified => proto::RouteKind::Unified,
        RouteKind::Passthrough => proto::RouteKind::Passthrough,
        RouteKind::Proxy => proto::RouteKind::Proxy,
    };
    UsageEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        time_unix_us,
        edge_id: edge_id.to_owned(),
        request_id: record.request_id.clone(),
        trace_id: record.trace_id.clone(),
        endpoint: record.endpoint.clone().unwrap_or_default(),
        route: route as i32,
        attempts: record
            .attempts
            .iter()
            .map(|a| proto::UsageAttempt {
                target: a.target,
                provider: a.provider.to_owned(),
                model: a.model.clone(),
                status: u32::from(a.status),
                error_type: a.error_type.unwrap_or_default().to_owned(),
                latency_us: a.latency_us,
            })
            .collect(),
        provider: record.provider.unwrap_or_default().to_owned(),
        model: record.model.clone().unwrap_or_default(),
        status: u32::from(record.status),
        error_type: record.error_type.unwrap_or_default().to_owned(),
        key_id: record.key_id.clone().unwrap_or_default(),
        team: record.team.clone().unwrap_or_default(),
        user: record.user.clone().unwrap_or_default(),
        tokens: Some(proto::TokenCounts {
            input: record.usage.input_tokens,
            output: record.usage.output_tokens,
            cached: record.usage.cached_tokens,
            cache_write: record.usage.cache_write_tokens,
        }),
        cost_micros: record.cost_micros,
        total_latency_us: record.total_latency_us,
        upstream_latency_us: record.upstream_latency_us,
        overhead_us: record.overhead_us,
        ttft_us: record.ttft_us,
        streamed: record.streamed,
        client_cancelled: record.client_cancelled,
        request_payload: record.request_payload.as_ref().map(payload),
        response_payload: record.response_payload.as_ref().map(payload),
    }
}
