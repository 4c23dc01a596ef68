//! The order in which one request tries an endpoint's candidates.

use crate::config::{Balance, Endpoint};

use super::EndpointRouting;

/// Candidate indexes (split targets, then fallbacks) in the order to try them.
///
/// The first is the split's choice: by a sticky key when one is configured and present
/// (so a caller stays on one arm), else by least latency or by weight, among healthy
/// targets. Then, unless the split is sticky, the other split targets; then the fallbacks
/// in config order. Ejected candidates go last: they are used only when nothing healthy is
/// left.
pub fn plan(endpoint: &Endpoint, state: &EndpointRouting, sticky: Option<&str>) -> Vec<usize> {
    let split = endpoint.targets.len();
    let healthy = |index: usize| state.health.get(index).is_none_or(|h| h.is_healthy());
    let chosen = match sticky {
        Some(key) => {
            let index = endpoint.split_index(stable_hash(key) % endpoint.total_weight);
            if healthy(index) {
                index
            } else {
                weighted(endpoint, &healthy)
            }
        }
        None => match endpoint.routing.balance {
            Balance::LeastLatency => least_latency(endpoint, state, &healthy),
            Balance::Weighted => weighted(endpoint, &healthy),
        },
    };
    let mut order = Vec::with_capacity(endpoint.candidate_count());
    order.push(chosen);
    if sticky.is_none() {
        let mut others: Vec<usize> = (0..split).filter(|i| *i != chosen).collect();
        others.sort_by_key(|i| std::cmp::Reverse(endpoint.targets[*i].weight));
        order.extend(others);
    }
    order.extend(split..endpoint.candidate_count());
    // Healthy first, keeping the order above within each group.
    order.sort_by_key(|i| !healthy(*i));
    order
}

/// A split target by weight among the healthy ones (all, if none is healthy).
fn weighted(endpoint: &Endpoint, healthy: &dyn Fn(usize) -> bool) -> usize {
    let live: Vec<usize> = (0..endpoint.targets.len())
        .filter(|i| healthy(*i))
        .collect();
    let pool = if live.is_empty() {
        (0..endpoint.targets.len()).collect()
    } else {
        live
    };
    let total: u32 = pool.iter().map(|i| endpoint.targets[*i].weight).sum();
    let mut roll = fastrand::u32(0..total.max(1));
    for index in &pool {
        let weight = endpoint.targets[*index].weight;
        if roll < weight {
            return *index;
        }
        roll -= weight;
    }
    pool[0]
}

/// Power of two choices by load cost among the healthy split targets of the highest
/// weight; weighted choice when fewer than two qualify.
fn least_latency(
    endpoint: &Endpoint,
    state: &EndpointRouting,
    healthy: &dyn Fn(usize) -> bool,
) -> usize {
    let top = endpoint.targets.iter().map(|t| t.weight).max().unwrap_or(1);
    let pool: Vec<usize> = (0..endpoint.targets.len())
        .filter(|i| healthy(*i) && endpoint.targets[*i].weight == top)
        .collect();
    if pool.len() < 2 {
        return weighted(endpoint, healthy);
    }
    let first = fastrand::usize(0..pool.len());
    let mut second = fastrand::usize(0..pool.len() - 1);
    if second >= first {
        second += 1;
    }
    let (a, b) = (pool[first], pool[second]);
    let cost = |i: usize| state.health[i].load_cost();
    if cost(b) < cost(a) { b } else { a }
}

/// FNV-1a: stable across processes and versions, so every edge maps a key to one arm.
fn stable_hash(key: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in key.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_hash_is_stable() {
        assert_eq!(stable_hash(""), 0x811c_9dc5);
        assert_eq!(stable_hash("a"), 0xe40c_292c);
    }
}
