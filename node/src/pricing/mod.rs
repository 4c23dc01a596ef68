//! Prices and cost: a versioned table of per-million-token prices in integer micro-dollars,
//! and the cost of one request computed from its token usage.
//!
//! Money is never a float here: prices are parsed once into micro-dollars per million
//! tokens, and a request's cost is the exact sum rounded up to the next micro-dollar, once,
//! so a recorded cost never understates what the provider bills.

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
    /// Cached input tokens (defaults to the input price).
    pub cached_input: u64,
    /// Output (completion) tokens.
    pub output: u64,
}

impl ModelPrice {
    /// Cost of `usage` in micro-dollars, rounded up once.
    pub fn cost_micros(&self, usage: &Usage) -> u64 {
        let cached = usage.cached_tokens.min(usage.input_tokens);
        let uncached = usage.input_tokens - cached;
        let pico = u128::from(uncached) * u128::from(self.input)
            + u128::from(cached) * u128::from(self.cached_input)
            + u128::from(usage.output_tokens) * u128::from(self.output);
        u64::try_from(pico.div_ceil(1_000_000)).unwrap_or(u64::MAX)
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
    /// USD per million cached input tokens.
    #[serde(default)]
    pub cached_input: Option<f64>,
    /// USD per million output tokens.
    pub output: f64,
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

/// A price from USD per million tokens (cached input defaults to the input price).
pub fn price_from_usd(
    input: f64,
    cached_input: Option<f64>,
    output: f64,
) -> Result<ModelPrice, PriceError> {
    let input = to_micros(input)?;
    Ok(ModelPrice {
        input,
        cached_input: cached_input.map(to_micros).transpose()?.unwrap_or(input),
        output: to_micros(output)?,
    })
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
        let input = to_micros(raw.input)?;
        let price = ModelPrice {
            input,
            cached_input: raw
                .cached_input
                .map(to_micros)
                .transpose()?
                .unwrap_or(input),
            output: to_micros(raw.output)?,
        };
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
    pub fn lookup(&self, provider: ProviderKind, model: &str) -> Option<ModelPrice> {
        for scope in [Some(provider), None] {
            let mut candidate = model;
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
    fn bad_amounts_are_refused() {
        let mut table = PriceTable::default();
        let raw = RawPrice {
            provider: None,
            model: "x".into(),
            input: -1.0,
            cached_input: None,
            output: 1.0,
        };
        assert_eq!(table.set(&raw), Err(PriceError::BadAmount { value: -1.0 }));
    }
}
