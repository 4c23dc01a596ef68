//! Prices and cost: a versioned table of per-million-token prices in integer micro-dollars,
//! and the cost of one request computed from its token usage.
//!
//! Money is never a float here: prices are parsed once into micro-dollars per million
//! tokens, and a request's cost is the exact sum rounded up to the next micro-dollar, once,
//! so a recorded cost never understates what the provider bills. Input tokens are split four
//! ways, each at its own price: uncached, read from the prompt cache, written to the prompt
//! cache (five-minute, or the only lifetime a provider has), and written to the one-hour
//! cache.

use std::collections::HashMap;

use serde::Deserialize;

use crate::providers::ProviderKind;
use crate::usage::Usage;

/// The tables shipped with the binary, one file per provider family, each with its own
/// source and date.
const SHIPPED_TABLES: &[&str] = &[
    include_str!("tables/openai.yaml"),
    include_str!("tables/anthropic.yaml"),
    include_str!("tables/gemini.yaml"),
    include_str!("tables/cohere.yaml"),
    include_str!("tables/bedrock.yaml"),
];

/// Prices of one model, in micro-dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelPrice {
    /// Uncached input (prompt) tokens.
    pub input: u64,
    /// Input tokens read from the prompt cache (defaults to the input price).
    pub cached_input: u64,
    /// Input tokens written to the prompt cache: the five-minute cache, or the only cache a
    /// provider has (defaults to the input price).
    pub cache_write: u64,
    /// Input tokens written to the one-hour cache (defaults to `cache_write`).
    pub cache_write_1h: u64,
    /// Output (completion) tokens.
    pub output: u64,
}

impl ModelPrice {
    /// Cost of `usage` in micro-dollars: every class of token at its price, summed exactly,
    /// then rounded up once. Counts that do not fit inside the input (a provider reporting
    /// more cached or written tokens than it billed as input) are clamped to it.
    pub fn cost_micros(&self, usage: &Usage) -> u64 {
        let cached = usage.cached_tokens.min(usage.input_tokens);
        let written = usage.cache_write_tokens.min(usage.input_tokens - cached);
        let written_1h = usage.cache_write_1h_tokens.min(written);
        let uncached = usage.input_tokens - cached - written;
        let pico = u128::from(uncached) * u128::from(self.input)
            + u128::from(cached) * u128::from(self.cached_input)
            + u128::from(written - written_1h) * u128::from(self.cache_write)
            + u128::from(written_1h) * u128::from(self.cache_write_1h)
            + u128::from(usage.output_tokens) * u128::from(self.output);
        u64::try_from(pico.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }
}

/// One model's prices as written: USD per million tokens. The optional prices default as
/// [`ModelPrice`] says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UsdPrice {
    /// Uncached input tokens.
    pub input: f64,
    /// Prompt-cache reads.
    pub cached_input: Option<f64>,
    /// Prompt-cache writes (five-minute or only lifetime).
    pub cache_write: Option<f64>,
    /// One-hour prompt-cache writes.
    pub cache_write_1h: Option<f64>,
    /// Output tokens.
    pub output: f64,
}

impl UsdPrice {
    /// Converts to micro-dollars per million tokens, filling in the defaults.
    pub fn to_model_price(self) -> Result<ModelPrice, PriceError> {
        let optional = |value: Option<f64>| value.map(to_micros).transpose();
        let input = to_micros(self.input)?;
        let cache_write = optional(self.cache_write)?.unwrap_or(input);
        Ok(ModelPrice {
            input,
            cached_input: optional(self.cached_input)?.unwrap_or(input),
            cache_write,
            cache_write_1h: optional(self.cache_write_1h)?.unwrap_or(cache_write),
            output: to_micros(self.output)?,
        })
    }
}

/// A price entry as written in YAML: dollars per million tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    /// Provider this entry is limited to, if any.
    #[serde(default)]
    pub provider: Option<String>,
    /// Model name, prefix, or `*`.
    pub model: String,
    /// USD per million uncached input tokens.
    pub input: f64,
    /// USD per million input tokens read from the prompt cache (default: `input`).
    #[serde(default)]
    pub cached_input: Option<f64>,
    /// USD per million input tokens written to the prompt cache, five-minute or only
    /// lifetime (default: `input`).
    #[serde(default)]
    pub cache_write: Option<f64>,
    /// USD per million input tokens written to the one-hour cache (default: `cache_write`).
    #[serde(default)]
    pub cache_write_1h: Option<f64>,
    /// USD per million output tokens.
    pub output: f64,
}

impl RawPrice {
    /// The entry's prices.
    pub fn usd(&self) -> UsdPrice {
        UsdPrice {
            input: self.input,
            cached_input: self.cached_input,
            cache_write: self.cache_write,
            cache_write_1h: self.cache_write_1h,
            output: self.output,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    version: String,
    prices: Vec<RawPrice>,
}

/// Why a price entry was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PriceError {
    /// Negative, NaN, or absurdly large.
    #[error("price {value} is not a valid USD amount per million tokens")]
    BadAmount {
        /// The value given.
        value: f64,
    },
    /// Unknown provider name.
    #[error("unknown provider `{0}`")]
    UnknownProvider(String),
}

/// Converts dollars per million tokens to integer micro-dollars per million tokens.
fn to_micros(value: f64) -> Result<u64, PriceError> {
    if !value.is_finite() || !(0.0..=1_000_000.0).contains(&value) {
        return Err(PriceError::BadAmount { value });
    }
    // Six decimals is the table's precision; rounding removes binary float noise.
    Ok((value * 1_000_000.0).round() as u64)
}

/// Prices by (provider, model); looked up by exact name, then longest `-` prefix, then `*`.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    version: String,
    entries: HashMap<(Option<ProviderKind>, String), ModelPrice>,
}

impl PriceTable {
    /// The tables shipped with the binary, merged; the version is the newest file's date.
    pub fn shipped() -> Self {
        let mut table = Self::default();
        for text in SHIPPED_TABLES {
            // Every shipped file is checked by a unit test; a bad one is skipped, not fatal.
            let Ok(raw) = serde_saphyr::from_str::<RawTable>(text) else {
                continue;
            };
            if raw.version > table.version {
                table.version = raw.version;
            }
            for price in &raw.prices {
                let _ = table.set(price);
            }
        }
        table
    }

    /// Table version (the shipped table's date, plus `+config` when overridden).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Adds or replaces an entry.
    pub fn set(&mut self, raw: &RawPrice) -> Result<(), PriceError> {
        let provider = match &raw.provider {
            None => None,
            Some(name) => Some(
                ProviderKind::from_name(name)
                    .ok_or_else(|| PriceError::UnknownProvider(name.clone()))?,
            ),
        };
        let price = raw.usd().to_model_price()?;
        self.entries.insert((provider, raw.model.clone()), price);
        Ok(())
    }

    /// Marks the table as overridden by config.
    pub fn mark_overridden(&mut self) {
        if !self.version.ends_with("+config") {
            self.version.push_str("+config");
        }
    }

    /// The price of `model` at `provider`, or `None` when the table does not know it.
    ///
    /// Vertex AI bills its publishers' models at the publishers' list prices, so a Vertex
    /// model without a `provider: vertex` entry is priced as Anthropic's (`claude*`) or
    /// Gemini's. A version suffix after `@` (Vertex's `claude-sonnet-4-5@20250929`) names
    /// the same model.
    pub fn lookup(&self, provider: ProviderKind, model: &str) -> Option<ModelPrice> {
        let publisher = match provider {
            ProviderKind::Vertex if model.starts_with("claude") => Some(ProviderKind::Anthropic),
            ProviderKind::Vertex => Some(ProviderKind::Gemini),
            _ => None,
        };
        let scopes = std::iter::once(Some(provider))
            .chain(publisher.map(Some))
            .chain(std::iter::once(None));
        let base = model.split('@').next().unwrap_or(model);
        for scope in scopes {
            if let Some(price) = self.entries.get(&(scope, model.to_owned())) {
                return Some(*price);
            }
            let mut candidate = base;
            loop {
                if let Some(price) = self.entries.get(&(scope, candidate.to_owned())) {
                    return Some(*price);
                }
                match candidate.rfind('-') {
                    Some(cut) => candidate = &candidate[..cut],
                    None => break,
                }
            }
            if let Some(price) = self.entries.get(&(scope, "*".to_owned())) {
                return Some(*price);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, cached: u64, output: u64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            cached_tokens: cached,
            ..Usage::default()
        }
    }

    fn raw(input: f64, cache_write: Option<f64>, cache_write_1h: Option<f64>) -> RawPrice {
        RawPrice {
            provider: None,
            model: "x".into(),
            input,
            cached_input: None,
            cache_write,
            cache_write_1h,
            output: 1.0,
        }
    }

    #[test]
    fn shipped_tables_parse_every_entry() {
        let mut count = 0;
        for text in SHIPPED_TABLES {
            let raw: RawTable = serde_saphyr::from_str(text).expect("table parses");
            let mut table = PriceTable::default();
            for price in &raw.prices {
                table.set(price).expect("entry valid");
            }
            count += raw.prices.len();
        }
        assert_eq!(PriceTable::shipped().entries.len(), count);
    }

    #[test]
    fn vertex_models_use_their_publishers_prices() {
        let table = PriceTable::shipped();
        let claude = table.lookup(ProviderKind::Anthropic, "claude-sonnet-4-5");
        assert!(claude.is_some());
        assert_eq!(
            table.lookup(ProviderKind::Vertex, "claude-sonnet-4-5@20250929"),
            claude
        );
        let gemini = table.lookup(ProviderKind::Gemini, "gemini-2.5-flash");
        assert!(gemini.is_some());
        assert_eq!(
            table.lookup(ProviderKind::Vertex, "gemini-2.5-flash"),
            gemini
        );
        assert_eq!(table.lookup(ProviderKind::Vertex, "unknown-model@1"), None);
    }

    #[test]
    fn longest_prefix_wins_and_dated_models_match() {
        let table = PriceTable::shipped();
        let mini = table.lookup(ProviderKind::OpenAi, "gpt-4o-mini-2024-07-18");
        assert_eq!(mini.map(|p| p.input), Some(150_000));
        let full = table.lookup(ProviderKind::OpenAi, "gpt-4o-2024-08-06");
        assert_eq!(full.map(|p| p.input), Some(2_500_000));
        assert_eq!(table.lookup(ProviderKind::OpenAi, "no-such-model"), None);
        assert!(table.lookup(ProviderKind::Mock, "echo").is_some());
    }

    #[test]
    fn cost_is_exact_then_rounded_up_once() {
        // gpt-4o-mini: 0.15 $/M input, 0.075 cached, 0.60 output.
        let price = PriceTable::shipped()
            .lookup(ProviderKind::OpenAi, "gpt-4o-mini")
            .expect("priced");
        // 1000 uncached * 0.15 + 0 + 500 * 0.6 = 150 + 300 = 450 micro-dollars.
        assert_eq!(price.cost_micros(&usage(1000, 0, 500)), 450);
        // 10 input tokens = 1.5 micro-dollars -> 2.
        assert_eq!(price.cost_micros(&usage(10, 0, 0)), 2);
        // Cached tokens are part of input tokens: 1000 of which 400 cached.
        // 600 * 0.15 + 400 * 0.075 = 90 + 30 = 120.
        assert_eq!(price.cost_micros(&usage(1000, 400, 0)), 120);
    }

    #[test]
    fn cache_writes_are_priced_by_lifetime() {
        // claude-sonnet-4-5: $3/M input, $0.30 cache read, $3.75 five-minute write, $6
        // one-hour write, $15 output.
        let price = PriceTable::shipped()
            .lookup(ProviderKind::Anthropic, "claude-sonnet-4-5-20250929")
            .expect("priced");
        assert_eq!(
            (price.cache_write, price.cache_write_1h),
            (3_750_000, 6_000_000)
        );
        // 10,000 input: 2,000 read, 3,000 written (1,000 of them for an hour), 5,000 plain.
        let usage = Usage {
            input_tokens: 10_000,
            output_tokens: 500,
            cached_tokens: 2_000,
            cache_write_tokens: 3_000,
            cache_write_1h_tokens: 1_000,
        };
        // 5000 × 3 + 2000 × 0.3 + 2000 × 3.75 + 1000 × 6 + 500 × 15
        // = 15000 + 600 + 7500 + 6000 + 7500 = 36600 micro-dollars.
        assert_eq!(price.cost_micros(&usage), 36_600);
        // Writes costed at the input price, as before they were counted, understate it:
        // 8000 × 3 + 2000 × 0.3 + 500 × 15 = 24000 + 600 + 7500 = 32100.
        let flat = ModelPrice {
            cache_write: price.input,
            cache_write_1h: price.input,
            ..price
        };
        assert_eq!(flat.cost_micros(&usage), 32_100);
        // One written token is 3.75 micro-dollars: summed exactly, rounded up once.
        let one = Usage {
            input_tokens: 1,
            cache_write_tokens: 1,
            ..Usage::default()
        };
        assert_eq!(price.cost_micros(&one), 4);
        // Counts beyond the input are clamped to it, never billed twice.
        let over = Usage {
            input_tokens: 100,
            cached_tokens: 60,
            cache_write_tokens: 80,
            cache_write_1h_tokens: 90,
            ..Usage::default()
        };
        // 60 × 0.3 + 40 × 6 = 18 + 240 = 258.
        assert_eq!(price.cost_micros(&over), 258);
    }

    #[test]
    fn write_prices_default_to_input_then_to_the_short_write() {
        let mut table = PriceTable::default();
        table.set(&raw(2.0, None, None)).expect("valid");
        let price = table.lookup(ProviderKind::OpenAi, "x").expect("set");
        assert_eq!(
            (price.cache_write, price.cache_write_1h),
            (2_000_000, 2_000_000)
        );
        table.set(&raw(2.0, Some(2.5), None)).expect("valid");
        let price = table.lookup(ProviderKind::OpenAi, "x").expect("set");
        assert_eq!(
            (price.cache_write, price.cache_write_1h),
            (2_500_000, 2_500_000)
        );
        table.set(&raw(2.0, Some(2.5), Some(4.0))).expect("valid");
        let price = table.lookup(ProviderKind::OpenAi, "x").expect("set");
        assert_eq!(
            (price.cache_write, price.cache_write_1h),
            (2_500_000, 4_000_000)
        );
    }

    #[test]
    fn shipped_claude_rows_price_writes_at_anthropics_multipliers() {
        // Anthropic bills five-minute writes at 1.25x and one-hour writes at 2x the input
        // price, directly and on Bedrock; every Claude row that has a cache says so.
        let mut checked = 0;
        for text in [SHIPPED_TABLES[1], SHIPPED_TABLES[4]] {
            let raw: RawTable = serde_saphyr::from_str(text).expect("table parses");
            for entry in raw.prices.iter().filter(|p| p.model.contains("claude")) {
                let price = entry.usd().to_model_price().expect("valid");
                if entry.cached_input.is_none() {
                    // No prompt cache (Claude 3 Haiku on Bedrock): nothing is written.
                    continue;
                }
                assert!(
                    entry.cache_write.is_some(),
                    "{} has no write price",
                    entry.model
                );
                if entry.model == "claude-3-haiku" {
                    // Listed at $0.30 / $0.50, not exactly 1.25x / 2x its $0.25.
                    assert_eq!(
                        (price.cache_write, price.cache_write_1h),
                        (300_000, 500_000)
                    );
                    continue;
                }
                assert_eq!(price.cache_write * 4, price.input * 5, "{}", entry.model);
                assert_eq!(price.cache_write_1h, price.input * 2, "{}", entry.model);
                checked += 1;
            }
        }
        assert!(checked > 40, "only {checked} Claude rows checked");
    }

    #[test]
    fn bad_amounts_are_refused() {
        let mut table = PriceTable::default();
        assert_eq!(
            table.set(&raw(-1.0, None, None)),
            Err(PriceError::BadAmount { value: -1.0 })
        );
        assert!(table.set(&raw(1.0, Some(f64::NAN), None)).is_err());
        assert_eq!(
            table.set(&raw(1.0, None, Some(-2.0))),
            Err(PriceError::BadAmount { value: -2.0 })
        );
    }
}
