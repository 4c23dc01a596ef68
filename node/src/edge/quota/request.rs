//! [`RequestQuota`]: one request's part in the quota book, as the attempt loop
//! ([`crate::edge::invoke`]) uses it: which budgets apply, the reservation before each
//! attempt (grown when a fallback target's worst case is larger), and the `x-ratelimit-*`
//! headers of the tightest budget.

use std::sync::Arc;

use floodgate_cluster::consensus::now_millis;
use floodgate_cluster::ledger::{Action, BudgetSpec, Metric, Subject};
use http::HeaderMap;
use serde_json::{Map, Value};

use super::Quotas;
use super::book::Book;
use super::refusal::{Denial, Denied, rate_limit_headers};
use super::worst::{WorstCase, choices, input_bound, output_limit};
use crate::config::{KeyInfo, Target};
use crate::edge::accounting::Accounting;
use crate::pricing::PriceTable;
use crate::providers::Operation;

/// Who made a request and what it called, as budget scopes see it.
pub fn subject<'a>(endpoint: &'a str, key: Option<&'a KeyInfo>) -> Subject<'a> {
    Subject {
        endpoint,
        team: key.and_then(|k| k.team.as_deref()),
        user: key.and_then(|k| k.user.as_deref()),
        key: key.map(|k| k.id.as_str()),
    }
}

/// Bytes the edge may add to a body by writing an output limit field.
const LIMIT_FIELD_BYTES: u64 = 64;

/// The budgets one request counts against, and how it reserves on them.
#[derive(Debug)]
pub struct RequestQuota {
    quotas: Quotas,
    applying: Vec<(BudgetSpec, Arc<Book>)>,
    /// Whether a token or USD budget applies (then the output limit is set upstream).
    counts_tokens: bool,
}

impl RequestQuota {
    /// The budgets among `budgets` that a request by `subject` counts against; `None`
    /// when there is no quota book or no budget applies.
    pub fn new(
        quotas: Option<&Quotas>,
        budgets: &[BudgetSpec],
        subject: &Subject<'_>,
    ) -> Option<Self> {
        let quotas = quotas?;
        let applying: Vec<(BudgetSpec, Arc<Book>)> = budgets
            .iter()
            .filter(|spec| spec.scope.matches(subject))
            .filter_map(|spec| Some((spec.clone(), quotas.book(&spec.id)?)))
            .collect();
        if applying.is_empty() {
            return None;
        }
        let counts_tokens = applying
            .iter()
            .any(|(spec, _)| spec.metric != Metric::Requests);
        Some(Self {
            quotas: quotas.clone(),
            applying,
            counts_tokens,
        })
    }

    /// Before an attempt on `target` (and before the target is claimed, so a refusal
    /// never strands a health probe): makes sure the request's reservation — held by
    /// `accounting`, so it settles when the record closes — covers the worst case of
    /// `body` at this target. Returns the output limit to write into the body sent
    /// upstream ([`super::worst::set_output_limit`]) when tokens or money are counted.
    pub async fn prepare(
        &self,
        op: Operation,
        target: &Target,
        prices: &PriceTable,
        body: &Map<String, Value>,
        accounting: &mut Accounting,
    ) -> Result<Option<u64>, Denied> {
        let limit = self
            .counts_tokens
            .then(|| output_limit(op, target.max_tokens, body))
            .flatten();
        let worst = if self.counts_tokens {
            let output = limit.unwrap_or(0).saturating_mul(choices(op, body));
            // The body sent upstream also carries the target's model name and the limit.
            let input = input_bound(body)
                .saturating_add(target.model.len() as u64)
                .saturating_add(LIMIT_FIELD_BYTES);
            let price = target
                .price
                .or_else(|| prices.lookup(target.provider, &target.model));
            WorstCase::of(input, output, price)
        } else {
            WorstCase::of(0, 0, None)
        };
        let reservation = accounting.reservation(|| self.quotas.reservation());
        for (index, (spec, book)) in self.applying.iter().enumerate() {
            if reservation.holds() <= index {
                reservation.add_hold(spec.metric);
            }
            let need = match worst.amount(spec.metric) {
                Some(need) => need,
                None if spec.action == Action::Alert => continue,
                None => {
                    return Err(Denied {
                        spec: spec.clone(),
                        denial: Denial::Unpriced {
                            target: format!("{}/{}", target.provider, target.model),
                        },
                    });
                }
            };
            let held = reservation.held(index);
            if need <= held {
                continue;
            }
            match self.quotas.reserve_on(book, spec, need - held).await {
                Ok(lease) => reservation.add_part(index, lease, need - held),
                Err(denied) if spec.action == Action::Alert => {
                    // Alert budgets never refuse; this request goes uncounted there.
                    tracing::warn!(budget = %spec.id, denial = ?denied.denial, "alert budget not reserved");
                }
                Err(denied) => return Err(denied),
            }
        }
        Ok(limit)
    }

    /// For the raw proxy, which reads no tokens: reserves one request on request budgets;
    /// a `reject` budget counting tokens or money cannot be bounded there, so it refuses.
    pub async fn prepare_unmetered(&self, accounting: &mut Accounting) -> Result<(), Denied> {
        let reservation = accounting.reservation(|| self.quotas.reservation());
        for (index, (spec, book)) in self.applying.iter().enumerate() {
            if reservation.holds() <= index {
                reservation.add_hold(spec.metric);
            }
            if spec.action == Action::Alert {
                continue;
            }
            if spec.metric != Metric::Requests {
                return Err(Denied {
                    spec: spec.clone(),
                    denial: Denial::Unmetered,
                });
            }
            let lease = self.quotas.reserve_on(book, spec, 1).await?;
            reservation.add_part(index, lease, 1);
        }
        Ok(())
    }

    /// Sets the `x-ratelimit-*` headers to the tightest `reject` budget (the smallest
    /// share of its limit left in this edge's lease), unless `headers` already carry a
    /// tighter limit (the endpoint's local rate limit).
    pub fn headers(&self, headers: &mut HeaderMap) {
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
        };
        let mut tightest = match (number("x-ratelimit-remaining"), number("x-ratelimit-limit")) {
            (Some(remaining), Some(limit)) => Some((remaining, limit)),
            _ => None,
        };
        let mut chosen = None;
        for (spec, book) in &self.applying {
            if spec.action != Action::Reject {
                continue;
            }
            let remaining = book.room().min(spec.limit);
            let tighter = tightest.is_none_or(|(r, l)| {
                u128::from(remaining) * u128::from(l) < u128::from(r) * u128::from(spec.limit)
            });
            if tighter {
                tightest = Some((remaining, spec.limit));
                chosen = Some((spec, remaining));
            }
        }
        if let Some((spec, remaining)) = chosen {
            rate_limit_headers(headers, spec, remaining, now_millis());
        }
    }
}
