//! What a request reads: the current config plus per-endpoint state (rate limiter, target
//! health, retry budget), swapped atomically on reload. Readers take an `Arc` snapshot and
//! never lock; a request keeps the snapshot it started with, so a reload never changes a
//! request in flight. State carries over reloads: a limit that did not change keeps its
//! window, a target keeps its health, an endpoint keeps its retry budget. The payload
//! capturer (patterns compiled, credentials gathered) is rebuilt with each generation.

use std::collections::HashMap;
use std::sync::Arc;

use super::capture::Capturer;
use super::limiter::WindowLimiter;
use super::routing::health::TargetHealth;
use super::routing::{EndpointRouting, TargetId};
use crate::config::Config;

/// Per-endpoint state shared by the requests to it.
#[derive(Debug)]
pub struct EndpointState {
    /// The endpoint's rate limiter, if it has a `rate_limit`.
    pub limiter: Option<Arc<WindowLimiter>>,
    /// Target health and retry budget.
    pub routing: EndpointRouting,
}

/// One config generation.
#[derive(Debug)]
pub struct Runtime {
    /// The validated config.
    pub config: Arc<Config>,
    /// State by endpoint name.
    pub endpoints: HashMap<String, EndpointState>,
    /// Health by target, shared by every endpoint that uses the target.
    health: HashMap<TargetId, Arc<TargetHealth>>,
    /// Bumped on every applied reload, starting at 1.
    pub generation: u64,
    /// Payload capture, when some endpoint captures (`None`: requests copy nothing).
    pub capture: Option<Arc<Capturer>>,
}

impl Runtime {
    /// Builds the next generation from `config`, carrying state over from `previous`.
    pub fn next(config: Config, previous: Option<&Runtime>) -> Self {
        let mut health: HashMap<TargetId, Arc<TargetHealth>> = HashMap::new();
        let endpoints = config
            .endpoints
            .values()
            .map(|endpoint| {
                let before = previous.and_then(|p| p.endpoints.get(&endpoint.name));
                let limiter = endpoint.rate_limit.map(|limit| {
                    before
                        .and_then(|b| b.limiter.clone())
                        .filter(|l| l.limit() == limit)
                        .unwrap_or_else(|| Arc::new(WindowLimiter::new(limit)))
                });
                let mut known: HashMap<TargetId, Arc<TargetHealth>> = endpoint
                    .candidates()
                    .filter_map(|target| {
                        let id = TargetId::of(target);
                        let found = health
                            .get(&id)
                            .or_else(|| previous.and_then(|p| p.health.get(&id)))?;
                        Some((id, found.clone()))
                    })
                    .collect();
                let same_retry_policy = previous
                    .and_then(|p| p.config.endpoints.get(&endpoint.name))
                    .is_some_and(|old| old.routing.retry == endpoint.routing.retry);
                let budget = before
                    .filter(|_| same_retry_policy)
                    .map(|b| b.routing.budget.clone());
                let routing = EndpointRouting::new(endpoint, &mut known, budget);
                health.extend(known);
                (endpoint.name.clone(), EndpointState { limiter, routing })
            })
            .collect();
        Self {
            capture: Capturer::for_config(&config),
            config: Arc::new(config),
            endpoints,
            health,
            generation: previous.map_or(1, |p| p.generation + 1),
        }
    }
}
