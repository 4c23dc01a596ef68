//! [`UsageGrpc`]: the tonic `UsageService` (`projector.proto`) over a [`Projection`]. It
//! converts between the proto messages and [`crate::query`]'s types and holds no logic of
//! its own; refusals are [`QueryError::to_status`](crate::query::QueryError::to_status).

use std::pin::Pin;

use floodgate_proto::v1::usage_service_server::UsageService;
use floodgate_proto::v1::{
    GetTraceReply, GetTraceRequest, ListTracesReply, ListTracesRequest,
    Percentiles as PercentilesProto, QueryUsageReply, QueryUsageRequest, TokenCounts,
    TopEntry as TopEntryProto, TopUsageReply, TopUsageRequest, UsageEvent, UsagePoint, UsageSeries,
    WatchUsageRequest,
};
use futures::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::dims::Filter;
use crate::query::{self, Percentiles, Point, TopQuery, TraceQuery, UsageQuery, blocking};
use crate::store::Projection;

/// The `UsageService` of one projector.
#[derive(Debug, Clone)]
pub struct UsageGrpc {
    projection: Projection,
    stop: CancellationToken,
}

impl UsageGrpc {
    /// The service over `projection`; live watches end when `stop` is cancelled.
    pub fn new(projection: Projection, stop: CancellationToken) -> Self {
        Self { projection, stop }
    }
}

fn percentiles(p: Percentiles) -> Option<PercentilesProto> {
    Some(PercentilesProto {
        count: p.count,
        p50: p.p50,
        p90: p.p90,
        p99: p.p99,
    })
}

fn point(p: Point) -> UsagePoint {
    UsagePoint {
        start: p.start,
        requests: p.requests,
        errors: p.errors,
        error_rate: p.error_rate,
        errors_by_type: p.errors_by_type.into_iter().collect(),
        tokens: Some(TokenCounts {
            input: p.tokens.input,
            output: p.tokens.output,
            cached: p.tokens.cached,
            cache_write: p.tokens.cache_write,
        }),
        cost_micros: p.cost_micros,
        unknown_cost: p.unknown_cost,
        latency_us: percentiles(p.latency_us),
        upstream_latency_us: percentiles(p.upstream_latency_us),
        overhead_us: percentiles(p.overhead_us),
        ttft_us: percentiles(p.ttft_us),
    }
}

/// The live stream `WatchUsage` answers.
type EventStream = Pin<Box<dyn Stream<Item = Result<UsageEvent, Status>> + Send>>;

#[tonic::async_trait]
impl UsageService for UsageGrpc {
    async fn query_usage(
        &self,
        request: Request<QueryUsageRequest>,
    ) -> Result<Response<QueryUsageReply>, Status> {
        let r = request.into_inner();
        let filter = Filter::from_proto(r.filter.as_ref());
        let asked = UsageQuery::new(r.from, r.to, &r.granularity, &r.group_by, filter)
            .map_err(|e| e.to_status())?;
        let report = blocking(&self.projection, move |p| query::usage::query(p, &asked))
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(QueryUsageReply {
            series: report
                .series
                .into_iter()
                .map(|s| UsageSeries {
                    group: s.group.into_iter().collect(),
                    points: s.points.into_iter().map(point).collect(),
                    total: Some(point(s.total)),
                })
                .collect(),
        }))
    }

    async fn top_usage(
        &self,
        request: Request<TopUsageRequest>,
    ) -> Result<Response<TopUsageReply>, Status> {
        let r = request.into_inner();
        let filter = Filter::from_proto(r.filter.as_ref());
        let asked = TopQuery::new(r.from, r.to, &r.dimension, &r.by, r.limit.into(), filter)
            .map_err(|e| e.to_status())?;
        let report = blocking(&self.projection, move |p| query::usage::top(p, &asked))
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(TopUsageReply {
            entries: report
                .entries
                .into_iter()
                .map(|e| TopEntryProto {
                    value: e.value,
                    requests: e.requests,
                    errors: e.errors,
                    tokens: e.tokens,
                    cost_micros: e.cost_micros,
                    unknown_cost: e.unknown_cost,
                })
                .collect(),
        }))
    }

    async fn list_traces(
        &self,
        request: Request<ListTracesRequest>,
    ) -> Result<Response<ListTracesReply>, Status> {
        let r = request.into_inner();
        let filter = Filter::from_proto(r.filter.as_ref());
        let asked = TraceQuery::new(r.from, r.to, filter, &r.cursor, r.limit.into())
            .map_err(|e| e.to_status())?;
        let page = blocking(&self.projection, move |p| query::traces::list(p, &asked))
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(ListTracesReply {
            traces: page.traces,
            next_cursor: page.next_cursor.unwrap_or_default(),
        }))
    }

    async fn get_trace(
        &self,
        request: Request<GetTraceRequest>,
    ) -> Result<Response<GetTraceReply>, Status> {
        let id = request.into_inner().id;
        let trace = blocking(&self.projection, move |p| query::traces::get(p, &id))
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(GetTraceReply {
            trace: Some(trace.event),
            sequence: trace.sequence,
        }))
    }

    type WatchUsageStream = EventStream;

    async fn watch_usage(
        &self,
        request: Request<WatchUsageRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let filter = Filter::from_proto(request.into_inner().filter.as_ref());
        let events = crate::watch::events(&self.projection, filter, self.stop.clone());
        Ok(Response::new(Box::pin(futures::StreamExt::map(
            events,
            |event| Ok((*event).clone()),
        ))))
    }
}
