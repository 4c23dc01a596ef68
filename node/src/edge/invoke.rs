//! The unified call: admit the request ([`super::admit`]), then try the endpoint's
//! candidates in the order routing plans — retrying and failing over on retryable errors,
//! within the attempt limit and the retry budget, skipping ejected targets — and answer as
//! JSON or as a stream. The usage record lists every attempt and is closed exactly once on
//! every path.
//!
//! A streamed answer can still fail over until its first event: the first event is read
//! before anything is sent to the client.
//!
//! Budgets ([`super::quota`]): before each attempt, and before its target is claimed, the
//! request's reservation is made to cover its worst case at that target (a fallback to a
//! pricier target grows it); a budget that refuses ends the call with a `429` before that
//! provider is called. The reservation settles when the usage record closes.

use std::time::Instant;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{Map, Value};

use super::Gateway;
use super::accounting::Accounting;
use super::admit::{Admitted, admit, estimate_input_tokens, rate_limit_headers};
use super::context::{RequestContext, UpstreamTime};
use super::error::{ApiError, ErrorCode, ErrorShape};
use super::quota::worst::set_output_limit;
use super::quota::{self, RequestQuota};
use super::routing::health::Availability;
use super::routing::plan::plan;
use super::routing::retry::{Failure, backoff, blames_target, classify, retry_after};
use super::stream::MeteredStream;
use crate::config::Target;
use crate::providers::{
    Completion, EventStream, Operation, ProviderError, ProviderRequest, TimeoutPhase,
};
use crate::usage::RouteKind;

/// Where a route finds the endpoint name.
#[derive(Debug, Clone)]
pub enum EndpointFrom {
    /// The body's `model` field (OpenAI-style routes).
    BodyModel,
    /// A path segment (MLflow invocations routes).
    Path(String),
}

/// How a route decides the operation.
#[derive(Debug, Clone, Copy)]
pub enum OperationFrom {
    /// The route serves one operation.
    Fixed(Operation),
    /// From the body's keys: `messages` → chat, `prompt` → completions, `input`/`text` →
    /// embeddings (MLflow invocations).
    BodyKeys,
}

/// Whether the answer is streamed.
#[derive(Debug, Clone, Copy)]
pub enum StreamFrom {
    /// The body's `stream` field (OpenAI, Anthropic).
    Body,
    /// Fixed by the route (Gemini's `:streamGenerateContent`).
    Fixed(bool),
}

/// What a route asks of [`invoke`].
#[derive(Debug, Clone)]
pub struct CallSpec {
    /// Route family, for accounting.
    pub route: RouteKind,
    /// Endpoint source.
    pub endpoint: EndpointFrom,
    /// Operation source.
    pub operation: OperationFrom,
    /// Streaming source.
    pub stream: StreamFrom,
    /// Error format of the route's clients.
    pub shape: ErrorShape,
}

/// A provider's answer, before it is sent.
enum Answer {
    Complete(Completion),
    Stream(EventStream),
}

/// Serves one unified or passthrough call.
pub async fn invoke(
    gateway: &Gateway,
    context: RequestContext,
    spec: CallSpec,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let runtime = gateway.runtime();
    let mut accounting = Accounting::open(gateway.sink(), &runtime, &context, spec.route);
    let admitted = match admit(&runtime, &spec, &headers, body, &mut accounting).await {
        Ok(admitted) => admitted,
        Err(error) => return accounting.reject(error, spec.shape),
    };
    let Admitted {
        key,
        endpoint,
        op,
        body,
        stream,
        client_wants_usage,
        admission,
        sticky_key,
    } = admitted;
    let Some(state) = runtime.endpoints.get(&endpoint.name) else {
        let error = ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "Endpoint state is missing.",
        );
        return accounting.reject(error, spec.shape);
    };
    let routing = &state.routing;
    let policy = &endpoint.routing.retry;
    let subject = quota::subject(&endpoint.name, key.as_deref());
    let quota = RequestQuota::new(gateway.quotas(), &runtime.config.budgets, &subject);
    // The input recorded if a stream is cut before the provider reports usage; set only
    // when an attempt is sent, so a request refused first (a budget) records no tokens.
    let input_estimate = stream.then(|| estimate_input_tokens(&body));

    routing.budget.deposit();
    let order = plan(&endpoint, routing, sticky_key.as_deref());
    let every_candidate_ejected = order.iter().all(|i| !routing.health[*i].is_healthy());
    let max_attempts = policy.attempts.map_or(order.len(), |a| a as usize);
    let mut body = Some(body);
    let empty = Map::new();
    let mut attempts = 0usize;
    let mut position = 0usize;
    let mut skipped_in_a_row = 0usize;
    let mut last_error: Option<ProviderError> = None;

    while attempts < max_attempts && skipped_in_a_row < order.len() {
        let index = order[position % order.len()];
        let round = position / order.len();
        position += 1;
        let health = &routing.health[index];
        if !every_candidate_ejected && !health.is_available() {
            skipped_in_a_row += 1;
            continue;
        }
        if attempts > 0 {
            if !routing.budget.withdraw() {
                tracing::warn!(endpoint = %endpoint.name, "retry budget spent: not retrying");
                break;
            }
            if round > 0 {
                // Back to a target already tried: wait, as the provider asks if it did.
                let asked = last_error.as_ref().and_then(retry_after);
                match backoff(policy, round as u32, asked) {
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => break,
                }
            }
        }
        let target = endpoint.candidate(index);
        let output_limit = match &quota {
            None => None,
            Some(quota) => {
                let view = body.as_ref().map_or(&empty, |b| b);
                let prices = &runtime.config.prices;
                match quota
                    .prepare(op, target, prices, view, &mut accounting)
                    .await
                {
                    Ok(limit) => limit,
                    // The refusing budget's own headers go with the 429.
                    Err(denied) => return accounting.reject(denied.to_api_error(), spec.shape),
                }
            }
        };
        // Claimed only now that the attempt will really be sent: a probe claimed and then
        // abandoned for the budget or a backoff would keep the target out of rotation.
        let claimed = if every_candidate_ejected {
            Availability::Healthy
        } else {
            health.claim()
        };
        if claimed == Availability::Ejected {
            skipped_in_a_row += 1;
            continue;
        }
        let last_chance = attempts + 1 >= max_attempts;
        let mut request_body = if last_chance {
            body.take().unwrap_or_default()
        } else {
            body.clone().unwrap_or_default()
        };
        request_body.insert("model".into(), Value::String(target.model.clone()));
        if let Some(limit) = output_limit {
            set_output_limit(op, limit, &mut request_body);
        }
        let in_flight = health.begin(claimed == Availability::Probe);
        if let Some(tokens) = input_estimate {
            accounting.estimate_input(tokens);
        }
        accounting.upstream_begins(index, target, stream);
        let started = Instant::now();
        let result = call(
            gateway,
            op,
            target,
            request_body,
            client_wants_usage,
            &headers,
            stream,
        )
        .await;
        let latency = started.elapsed();
        match result {
            Ok(answer) => {
                in_flight.success(latency, &endpoint.routing.ejection);
                accounting.attempt_served();
                let response = respond(answer, accounting, target, &spec);
                return finish_headers(response, target, admission.as_ref(), quota.as_ref());
            }
            Err(error) => {
                let failure = classify(&error, policy);
                if blames_target(&error) {
                    in_flight.failure(latency, &endpoint.routing.ejection);
                } else {
                    in_flight.neutral();
                }
                if failure == Failure::Skip {
                    skipped_in_a_row += 1;
                    last_error = Some(error);
                    continue;
                }
                skipped_in_a_row = 0;
                attempts += 1;
                accounting.attempt_failed(&ApiError::from(error.clone()));
                tracing::debug!(
                    endpoint = %endpoint.name,
                    provider = %target.provider,
                    model = %target.model,
                    attempt = attempts,
                    error = %error,
                    "attempt failed"
                );
                last_error = Some(error);
                if failure == Failure::Fatal {
                    break;
                }
            }
        }
    }
    let error = match last_error {
        Some(error) => ApiError::from(error),
        None => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::UpstreamConnectFailed,
            "No target of this endpoint could take the request.",
        ),
    };
    let mut response = accounting.reject(error, spec.shape);
    if let Some(admission) = &admission {
        rate_limit_headers(response.headers_mut(), admission);
    }
    if let Some(quota) = &quota {
        quota.headers(response.headers_mut());
    }
    response
}

/// One attempt against one target. A stream counts as started only once its first event
/// has arrived, so an upstream that fails before that can still be failed over.
async fn call(
    gateway: &Gateway,
    op: Operation,
    target: &Target,
    body: Map<String, Value>,
    client_wants_usage: bool,
    headers: &HeaderMap,
    stream: bool,
) -> Result<Answer, ProviderError> {
    let request = ProviderRequest {
        op,
        target,
        body,
        client_wants_usage,
        timeouts: target.timeouts,
        client_headers: headers,
    };
    if !stream {
        return gateway
            .providers()
            .complete(request)
            .await
            .map(Answer::Complete);
    }
    let mut events = gateway.providers().stream(request).await?;
    let first = tokio::time::timeout(target.timeouts.first_byte, events.next())
        .await
        .map_err(|_| ProviderError::Timeout {
            phase: TimeoutPhase::FirstByte,
        })?;
    match first {
        None => Err(ProviderError::InvalidResponse {
            detail: "the stream ended before its first event".into(),
        }),
        Some(Err(error)) => Err(error),
        Some(Ok(event)) => Ok(Answer::Stream(Box::pin(
            futures::stream::once(async move { Ok(event) }).chain(events),
        ))),
    }
}

/// Turns a served answer into the client's response and closes (or hands over) the record.
fn respond(
    answer: Answer,
    mut accounting: Accounting,
    target: &Target,
    spec: &CallSpec,
) -> Response {
    match answer {
        Answer::Stream(events) => {
            let upstream = accounting.upstream_elapsed();
            let body = Body::from_stream(MeteredStream::new(events, accounting, 200, spec.shape));
            let mut response = Response::new(body);
            let headers = response.headers_mut();
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            headers.insert(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache"),
            );
            headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
            response.extensions_mut().insert(UpstreamTime(upstream));
            response
        }
        Answer::Complete(completion) => {
            accounting.upstream_ends();
            accounting.usage(completion.usage);
            let upstream = accounting.upstream_elapsed();
            let mut answer = completion.body;
            if spec.route == RouteKind::Unified {
                answer.insert(
                    "provider".into(),
                    Value::String(target.provider.name().into()),
                );
            }
            // Serialized here rather than by `Json` so a captured answer is the bytes sent.
            let body = match serde_json::to_vec(&Value::Object(answer)) {
                Ok(body) => body,
                Err(_) => {
                    let error = ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        ErrorCode::Internal,
                        "The answer could not be serialized.",
                    );
                    return accounting.reject(error, spec.shape);
                }
            };
            accounting.capture_response(&body);
            accounting.finish(200);
            let json = HeaderValue::from_static("application/json");
            let mut response = ([(http::header::CONTENT_TYPE, json)], body).into_response();
            response.extensions_mut().insert(UpstreamTime(upstream));
            response
        }
    }
}

fn finish_headers(
    mut response: Response,
    target: &Target,
    admission: Option<&super::limiter::Admission>,
    quota: Option<&RequestQuota>,
) -> Response {
    if let Ok(value) = HeaderValue::from_str(&format!("{}/{}", target.provider, target.model)) {
        response.headers_mut().insert("x-floodgate-target", value);
    }
    if let Some(admission) = admission {
        rate_limit_headers(response.headers_mut(), admission);
    }
    if let Some(quota) = quota {
        quota.headers(response.headers_mut());
    }
    response
}
