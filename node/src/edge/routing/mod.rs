//! Routing: which target serves a request, and what happens when it fails.
//!
//! * [`plan`] orders the candidates for one request: the split's choice (weighted, sticky
//!   by a request key, or least-latency), then the other split targets (unless sticky),
//!   then the fallbacks; ejected targets go last, and are still used if nothing else is.
//! * [`health`] ejects failing targets and lets real traffic probe them back.
//! * [`budget`] caps retries as a fraction of requests.
//! * [`retry`] classifies failures and computes backoff (exponential, full jitter,
//!   honouring `Retry-After`).

pub mod budget;
pub mod health;
pub mod plan;
pub mod retry;

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{Endpoint, Target};
use budget::RetryBudget;
use health::TargetHealth;

/// Identity of a target for health state: the same upstream model at the same base URL
/// shares health across endpoints and config reloads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TargetId {
    provider: &'static str,
    model: String,
    api_base: String,
}

impl TargetId {
    /// The id of `target`.
    pub fn of(target: &Target) -> Self {
        Self {
            provider: target.provider.name(),
            model: target.model.clone(),
            api_base: target.api_base.clone(),
        }
    }
}

/// Routing state of one endpoint: the health of each candidate (split targets, then
/// fallbacks, in config order) and the retry budget.
#[derive(Debug)]
pub struct EndpointRouting {
    /// Health per candidate.
    pub health: Vec<Arc<TargetHealth>>,
    /// The endpoint's retry budget.
    pub budget: Arc<RetryBudget>,
}

impl EndpointRouting {
    /// Builds the state for `endpoint`, reusing health from `known` (previous generation)
    /// and registering new entries in it.
    pub fn new(
        endpoint: &Endpoint,
        known: &mut HashMap<TargetId, Arc<TargetHealth>>,
        previous_budget: Option<Arc<RetryBudget>>,
    ) -> Self {
        let health = endpoint
            .candidates()
            .map(|target| known.entry(TargetId::of(target)).or_default().clone())
            .collect();
        let retry = &endpoint.routing.retry;
        let budget = previous_budget.unwrap_or_else(|| {
            Arc::new(RetryBudget::new(
                retry.budget_ratio,
                retry.budget_min_per_second,
            ))
        });
        Self { health, budget }
    }
}
