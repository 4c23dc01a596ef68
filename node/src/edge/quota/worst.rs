//! A request's worst case, per metric, before it goes upstream: 1 request; an upper bound
//! on its input tokens plus its output limit; and those tokens at the target's highest
//! input price and its output price, rounded up to the micro-dollar.
//!
//! The output limit is what the upstream is told ([`output_limit`]): the client's
//! `max_tokens` (or the operation's equivalent), capped by the target's `max_tokens`, or —
//! when the client gives none — the target's cap, else [`DEFAULT_OUTPUT_CAP`]. The edge
//! writes that limit into the body sent upstream ([`set_output_limit`]), so the worst case
//! holds; it is multiplied by the number of answers asked for ([`choices`]).
//!
//! The input bound is the size in bytes of the JSON body: byte-level tokenizers never make
//! more tokens than bytes, and the JSON syntax around each message outweighs the few
//! special tokens a provider adds per message. (A characters/4 estimate is not a bound:
//! non-Latin text often takes a token per character or more.) Large inline media is
//! over-reserved by this bound; the unused part returns when the request settles.

use serde_json::{Map, Value};

use crate::pricing::ModelPrice;
use crate::providers::Operation;
use floodgate_cluster::ledger::Metric;

/// Output limit sent upstream when neither the client nor the target sets one and a token
/// or USD budget applies.
pub const DEFAULT_OUTPUT_CAP: u64 = 4096;

/// A request's worst case at one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorstCase {
    /// Input plus output tokens.
    pub tokens: u64,
    /// Cost in micro-dollars; `None` when the target has no known price.
    pub micros: Option<u64>,
}

impl WorstCase {
    /// The worst case of `input` and `output` tokens at `price`.
    pub fn of(input: u64, output: u64, price: Option<ModelPrice>) -> Self {
        let micros = price.map(|price| {
            let input_price = price
                .input
                .max(price.cached_input)
                .max(price.cache_write)
                .max(price.cache_write_1h);
            let pico = u128::from(input) * u128::from(input_price)
                + u128::from(output) * u128::from(price.output);
            u64::try_from(pico.div_ceil(1_000_000)).unwrap_or(u64::MAX)
        });
        Self {
            tokens: input.saturating_add(output),
            micros,
        }
    }

    /// The amount to reserve on a budget counting `metric`; `None` for a USD budget when
    /// the price is unknown.
    pub fn amount(&self, metric: Metric) -> Option<u64> {
        match metric {
            Metric::Requests => Some(1),
            Metric::Tokens => Some(self.tokens),
            Metric::Micros => self.micros,
        }
    }
}

/// An upper bound on the input tokens of `body`: its size as JSON, in bytes.
pub fn input_bound(body: &Map<String, Value>) -> u64 {
    struct Counter(u64);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing a `Map` of `Value`s into a counter cannot fail.
    let _ = serde_json::to_writer(&mut counter, body);
    counter.0
}

/// Where `op` keeps its output limit: top-level fields (the first is written when none
/// is present), or Gemini's `generationConfig.maxOutputTokens`; `None` for embeddings.
fn limit_fields(op: Operation) -> Option<&'static [&'static str]> {
    match op {
        Operation::Embeddings => None,
        Operation::Chat | Operation::Completions | Operation::AnthropicMessages => {
            Some(&["max_tokens", "max_completion_tokens"])
        }
        Operation::Responses => Some(&["max_output_tokens"]),
        Operation::GeminiGenerateContent => Some(&["maxOutputTokens"]),
    }
}

/// The object holding `op`'s output limit in `body`.
fn limit_holder(op: Operation, body: &Map<String, Value>) -> Option<&Map<String, Value>> {
    match op {
        Operation::GeminiGenerateContent => match body.get("generationConfig") {
            None => Some(body),
            Some(config) => config.as_object(),
        },
        _ => Some(body),
    }
}

/// The output limit to send upstream for `body`: the client's, capped by the target's
/// `cap`; the cap, or [`DEFAULT_OUTPUT_CAP`], when the client gives none; `None` for an
/// operation without output (embeddings).
pub fn output_limit(op: Operation, cap: Option<u64>, body: &Map<String, Value>) -> Option<u64> {
    let fields = limit_fields(op)?;
    let asked = limit_holder(op, body)
        .and_then(|holder| fields.iter().filter_map(|f| holder.get(*f)?.as_u64()).max());
    Some(match (asked, cap) {
        (Some(asked), Some(cap)) => asked.min(cap),
        (Some(asked), None) => asked,
        (None, Some(cap)) => cap,
        (None, None) => DEFAULT_OUTPUT_CAP,
    })
}

/// How many answers `body` asks for (`n`, `best_of`, Gemini's `candidateCount`), at least 1.
pub fn choices(op: Operation, body: &Map<String, Value>) -> u64 {
    let (holder, fields): (Option<&Map<String, Value>>, &[&str]) = match op {
        Operation::GeminiGenerateContent => (limit_holder(op, body), &["candidateCount"]),
        _ => (Some(body), &["n", "best_of"]),
    };
    holder
        .and_then(|holder| fields.iter().filter_map(|f| holder.get(*f)?.as_u64()).max())
        .unwrap_or(1)
        .max(1)
}

/// Writes `limit` as `op`'s output limit into the body sent upstream: into every limit
/// field the client used, or the first one when it used none.
pub fn set_output_limit(op: Operation, limit: u64, body: &mut Map<String, Value>) {
    let Some(fields) = limit_fields(op) else {
        return;
    };
    let holder = match op {
        Operation::GeminiGenerateContent => match body
            .entry("generationConfig")
            .or_insert_with(|| Value::Object(Map::new()))
        {
            Value::Object(config) => config,
            // Not an object: the provider refuses the request, nothing is generated.
            _ => return,
        },
        _ => body,
    };
    let mut written = false;
    for field in fields {
        if holder.contains_key(*field) {
            holder.insert((*field).into(), Value::from(limit));
            written = true;
        }
    }
    if !written {
        holder.insert(fields[0].into(), Value::from(limit));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    /// Runs the edge's capping on `body` and returns the output bound.
    fn capped(op: Operation, cap: Option<u64>, body: &mut Map<String, Value>) -> u64 {
        match output_limit(op, cap, body) {
            Some(limit) => {
                set_output_limit(op, limit, body);
                limit * choices(op, body)
            }
            None => 0,
        }
    }

    #[test]
    fn the_output_limit_is_capped_and_written_upstream() {
        let mut asked_more = object(json!({"max_tokens": 900}));
        assert_eq!(capped(Operation::Chat, Some(500), &mut asked_more), 500);
        assert_eq!(asked_more["max_tokens"], 500);
        let mut asked_nothing = object(json!({}));
        assert_eq!(capped(Operation::Chat, Some(64), &mut asked_nothing), 64);
        assert_eq!(asked_nothing["max_tokens"], 64);
        let mut no_cap = object(json!({"n": 3}));
        assert_eq!(
            capped(Operation::Chat, None, &mut no_cap),
            3 * DEFAULT_OUTPUT_CAP
        );
        let mut newer = object(json!({"max_completion_tokens": 70, "max_tokens": 5}));
        assert_eq!(capped(Operation::Chat, None, &mut newer), 70);
        assert_eq!(newer["max_tokens"], 70);
        let mut gemini = object(json!({"generationConfig": {"maxOutputTokens": 10}}));
        assert_eq!(
            capped(Operation::GeminiGenerateContent, Some(8), &mut gemini),
            8
        );
        assert_eq!(gemini["generationConfig"]["maxOutputTokens"], 8);
        let mut fresh = object(json!({}));
        assert_eq!(
            capped(Operation::GeminiGenerateContent, Some(8), &mut fresh),
            8
        );
        assert_eq!(fresh["generationConfig"]["maxOutputTokens"], 8);
        assert_eq!(
            capped(Operation::Embeddings, None, &mut object(json!({}))),
            0
        );
    }

    #[test]
    fn micros_use_the_highest_input_price_and_round_up() {
        let price = ModelPrice {
            input: 1_000_000,
            cached_input: 500_000,
            cache_write: 1_250_000,
            cache_write_1h: 2_000_000,
            output: 4_000_000,
        };
        let worst = WorstCase::of(3, 1, Some(price));
        assert_eq!(worst.tokens, 4);
        // 3 × $2/M + 1 × $4/M = 10 µ$.
        assert_eq!(worst.micros, Some(10));
        let tiny = ModelPrice {
            input: 1,
            cached_input: 1,
            cache_write: 1,
            cache_write_1h: 1,
            output: 1,
        };
        assert_eq!(WorstCase::of(1, 0, Some(tiny)).micros, Some(1));
        assert_eq!(WorstCase::of(1, 0, None).amount(Metric::Micros), None);
        assert_eq!(WorstCase::of(1, 0, None).amount(Metric::Requests), Some(1));
    }

    #[test]
    fn the_input_bound_is_the_body_size() {
        let body = object(json!({"messages": [{"role": "user", "content": "hi"}]}));
        assert_eq!(
            input_bound(&body),
            serde_json::to_vec(&body).map_or(0, |b| b.len() as u64)
        );
    }
}
