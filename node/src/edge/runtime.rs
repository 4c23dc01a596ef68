//! What a request reads: the current config plus per-endpoint limiter state, swapped
//! atomically on reload. Readers take an `Arc` snapshot and never lock; a request keeps the
//! snapshot it started with, so a reload never changes a request in flight.

use std::collections::HashMap;
use std::sync::Arc;

use super::limiter::WindowLimiter;
use crate::config::Config;

/// One config generation.
#[derive(Debug)]
pub struct Runtime {
    /// The validated config.
    pub config: Arc<Config>,
    /// Limiters by endpoint name (only endpoints with a `rate_limit`).
    pub limiters: HashMap<String, Arc<WindowLimiter>>,
    /// Bumped on every applied reload, starting at 1.
    pub generation: u64,
}

impl Runtime {
    /// Builds the next generation, keeping limiter state for endpoints whose limit did not
    /// change so a reload does not reset anyone's window.
    pub fn next(config: Config, previous: Option<&Runtime>) -> Self {
        let limiters = config
            .endpoints
            .values()
            .filter_map(|endpoint| {
                let limit = endpoint.rate_limit?;
                let kept = previous
                    .and_then(|p| p.limiters.get(&endpoint.name))
                    .filter(|l| l.limit() == limit)
                    .cloned();
                Some((
                    endpoint.name.clone(),
                    kept.unwrap_or_else(|| Arc::new(WindowLimiter::new(limit))),
                ))
            })
            .collect();
        Self {
            config: Arc::new(config),
            limiters,
            generation: previous.map_or(1, |p| p.generation + 1),
        }
    }
}
