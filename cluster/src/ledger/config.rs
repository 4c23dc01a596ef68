//! Routing config held by the ledger: endpoints and their targets, the price table, teams
//! and users, with their put/delete handlers.
//!
//! The endpoint types are a deliberately small serde mirror of the node crate's raw config
//! (`node/src/config/raw.rs`), not a dependency on it: the fields the ledger itself must
//! reason about are typed (names, targets, weights, the credential a target uses, prices in
//! integer micro-dollars, the `max_tokens` cap that reservations need), and the edge-only
//! options (routing, retries, ejection, timeouts, Azure addressing, region, project,
//! organization) travel as `options_json`, JSON text in the node's raw shape that the edge
//! validates and the ledger stores as given. Provider names are not checked against the
//! edge's list here either; the admin API validates with the edge's validator before
//! proposing a command.

use serde::{Deserialize, Serialize};

use super::error::{LedgerError, ObjectKind};
use super::{Change, LedgerState};

/// The operation an endpoint serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointKind {
    /// Chat completions.
    Chat,
    /// Legacy text completions.
    Completions,
    /// Embeddings.
    Embeddings,
}

/// A named endpoint: what clients call as `model`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSpec {
    /// Name, `[A-Za-z0-9_-]+`.
    pub name: String,
    /// Operation served.
    pub kind: EndpointKind,
    /// The traffic split: at least one target.
    pub targets: Vec<TargetSpec>,
    /// Targets tried in order when the split's choice fails (none when absent).
    #[serde(default)]
    pub fallbacks: Vec<TargetSpec>,
    /// Edge-only endpoint options (`routing`, `rate_limit`, `timeouts`) as JSON text in the
    /// node's raw config shape; empty for none. Stored and replicated, not interpreted.
    #[serde(default)]
    pub options_json: String,
}

/// One upstream model behind an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSpec {
    /// Provider family name (`openai`, `anthropic`, ...).
    pub provider: String,
    /// Provider-side model name.
    pub model: String,
    /// Base URL override.
    pub api_base: Option<String>,
    /// How the gateway authenticates upstream.
    pub credential: TargetCredential,
    /// Relative traffic weight (> 0).
    pub weight: u32,
    /// Default and cap for `max_tokens`; reservations price the worst case with it.
    pub max_tokens: Option<u64>,
    /// Price override for this target (else the price table).
    pub price: Option<ModelPrice>,
    /// Edge-only target options (`azure`, `organization`, `region`, `project`,
    /// `timeouts`) as JSON text in the node's raw shape; empty for none.
    #[serde(default)]
    pub options_json: String,
}

/// Which credentials a target sends upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetCredential {
    /// None (local servers, the mock).
    None,
    /// A provider credential stored (encrypted) in the ledger, by name.
    Stored {
        /// The credential's name.
        name: String,
    },
    /// Forward this client request header as the provider key (configured explicitly).
    FromClientHeader {
        /// The header name.
        header: String,
    },
}

/// Prices of one model in integer micro-dollars per million tokens (the node's
/// `pricing::ModelPrice`, with its defaults already filled in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelPrice {
    /// Uncached input tokens.
    pub input: u64,
    /// Input tokens read from the prompt cache.
    pub cached_input: u64,
    /// Input tokens written to the prompt cache (five-minute, or the provider's only cache).
    pub cache_write: u64,
    /// Input tokens written to the one-hour prompt cache.
    pub cache_write_1h: u64,
    /// Output tokens.
    pub output: u64,
}

/// Token counts of one request, for pricing it. `cached` and `cache_write` are parts of
/// `input`; `cache_write_1h` is a part of `cache_write`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCounts {
    /// All input tokens.
    pub input: u64,
    /// Input tokens read from the prompt cache.
    pub cached: u64,
    /// Input tokens written to the prompt cache.
    pub cache_write: u64,
    /// The one-hour part of `cache_write`.
    pub cache_write_1h: u64,
    /// Output tokens.
    pub output: u64,
}

impl ModelPrice {
    /// Cost in micro-dollars, by the edge's rule: every class of token at its price,
    /// summed exactly, rounded up once, saturating at `u64::MAX`; parts that do not fit in
    /// their whole are clamped to it.
    pub fn cost_micros(&self, tokens: &TokenCounts) -> u64 {
        let cached = tokens.cached.min(tokens.input);
        let written = tokens.cache_write.min(tokens.input - cached);
        let written_1h = tokens.cache_write_1h.min(written);
        let uncached = tokens.input - cached - written;
        let pico = u128::from(uncached) * u128::from(self.input)
            + u128::from(cached) * u128::from(self.cached_input)
            + u128::from(written - written_1h) * u128::from(self.cache_write)
            + u128::from(written_1h) * u128::from(self.cache_write_1h)
            + u128::from(tokens.output) * u128::from(self.output);
        u64::try_from(pico.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }
}

/// One entry of the price table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceEntry {
    /// Provider this entry is limited to; `None` for any provider.
    pub provider: Option<String>,
    /// Model name, `-` prefix, or `*` (the edge's lookup rules).
    pub model: String,
    /// The price.
    pub price: ModelPrice,
}

impl PriceEntry {
    /// The table key: `provider/model`, with `*` for any provider.
    pub fn key(&self) -> String {
        price_key(self.provider.as_deref(), &self.model)
    }
}

pub(super) fn price_key(provider: Option<&str>, model: &str) -> String {
    format!("{}/{model}", provider.unwrap_or("*"))
}

/// A team: the owner of keys and budgets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Team {
    /// Stable id.
    pub id: String,
    /// Display name.
    pub name: String,
}

/// A user, optionally a member of one team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Stable id (may be an e-mail address).
    pub id: String,
    /// Display name.
    pub name: String,
    /// The team this user belongs to.
    pub team: Option<String>,
}

/// Checks an object id: 1 to 128 characters of `[A-Za-z0-9_.@+:-]`.
pub(super) fn check_id(field: &str, id: &str) -> Result<(), LedgerError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '+' | ':' | '-'));
    if ok {
        Ok(())
    } else {
        Err(LedgerError::invalid(
            field,
            format!("`{id}` must be 1 to 128 characters of [A-Za-z0-9_.@+:-]"),
        ))
    }
}

/// Checks an endpoint name: 1 to 128 characters of `[A-Za-z0-9_-]` (the edge's rule).
pub(super) fn check_endpoint_name(field: &str, name: &str) -> Result<(), LedgerError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(LedgerError::invalid(
            field,
            format!("`{name}` must be 1 to 128 characters of [A-Za-z0-9_-]"),
        ))
    }
}

fn check_text(field: &str, text: &str, max: usize) -> Result<(), LedgerError> {
    if text.len() > max {
        return Err(LedgerError::invalid(
            field,
            format!("is {} bytes; at most {max} are allowed", text.len()),
        ));
    }
    Ok(())
}

fn check_target(state: &LedgerState, path: &str, target: &TargetSpec) -> Result<(), LedgerError> {
    let provider_ok = !target.provider.is_empty()
        && target
            .provider
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !provider_ok {
        return Err(LedgerError::invalid(
            format!("{path}.provider"),
            format!("`{}` must be a lowercase provider name", target.provider),
        ));
    }
    if target.model.trim().is_empty() {
        return Err(LedgerError::invalid(
            format!("{path}.model"),
            "must not be empty",
        ));
    }
    if target.weight == 0 {
        return Err(LedgerError::invalid(
            format!("{path}.weight"),
            "must be greater than 0",
        ));
    }
    if target.max_tokens == Some(0) {
        return Err(LedgerError::invalid(
            format!("{path}.max_tokens"),
            "must be greater than 0",
        ));
    }
    check_text(
        &format!("{path}.options_json"),
        &target.options_json,
        64 * 1024,
    )?;
    match &target.credential {
        TargetCredential::None => Ok(()),
        TargetCredential::Stored { name } => {
            if state.credentials.contains_key(name) {
                Ok(())
            } else {
                Err(LedgerError::not_found(ObjectKind::Credential, name.clone()))
            }
        }
        TargetCredential::FromClientHeader { header } => {
            let ok = !header.is_empty()
                && header
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if ok {
                Ok(())
            } else {
                Err(LedgerError::invalid(
                    format!("{path}.credential.header"),
                    format!("`{header}` is not a header name"),
                ))
            }
        }
    }
}

pub(super) fn put_endpoint(
    state: &mut LedgerState,
    spec: EndpointSpec,
) -> Result<Change, LedgerError> {
    let base = format!("endpoints.{}", spec.name);
    check_endpoint_name("endpoint.name", &spec.name)?;
    if spec.targets.is_empty() {
        return Err(LedgerError::invalid(
            format!("{base}.targets"),
            "at least one target is required",
        ));
    }
    for (index, target) in spec.targets.iter().enumerate() {
        check_target(state, &format!("{base}.targets[{index}]"), target)?;
    }
    for (index, target) in spec.fallbacks.iter().enumerate() {
        check_target(state, &format!("{base}.fallbacks[{index}]"), target)?;
    }
    check_text(
        &format!("{base}.options_json"),
        &spec.options_json,
        64 * 1024,
    )?;
    if state.endpoints.get(&spec.name) == Some(&spec) {
        return Ok(Change::None);
    }
    state.endpoints.insert(spec.name.clone(), spec);
    Ok(Change::Config)
}

pub(super) fn delete_endpoint(state: &mut LedgerState, name: &str) -> Result<Change, LedgerError> {
    if !state.endpoints.contains_key(name) {
        return Err(LedgerError::not_found(ObjectKind::Endpoint, name));
    }
    let in_use = |by_kind, by_id: &str| LedgerError::InUse {
        kind: ObjectKind::Endpoint,
        id: name.to_owned(),
        by_kind,
        by_id: by_id.to_owned(),
    };
    if let Some(key) = state
        .keys
        .values()
        .find(|k| k.endpoints.iter().any(|e| e == name))
    {
        return Err(in_use(ObjectKind::Key, &key.id));
    }
    if let Some(budget) = state
        .budgets
        .values()
        .find(|b| b.spec.scope.endpoint.as_deref() == Some(name))
    {
        return Err(in_use(ObjectKind::Budget, &budget.spec.id));
    }
    state.endpoints.remove(name);
    Ok(Change::Config)
}

pub(super) fn put_price(state: &mut LedgerState, entry: PriceEntry) -> Result<Change, LedgerError> {
    if let Some(provider) = &entry.provider {
        check_id("price.provider", provider)?;
    }
    if entry.model.trim().is_empty() {
        return Err(LedgerError::invalid("price.model", "must not be empty"));
    }
    check_text("price.model", &entry.model, 256)?;
    let key = entry.key();
    if state.prices.get(&key) == Some(&entry) {
        return Ok(Change::None);
    }
    state.prices.insert(key, entry);
    Ok(Change::Config)
}

pub(super) fn delete_price(
    state: &mut LedgerState,
    provider: Option<&str>,
    model: &str,
) -> Result<Change, LedgerError> {
    let key = price_key(provider, model);
    if state.prices.remove(&key).is_none() {
        return Err(LedgerError::not_found(ObjectKind::Price, key));
    }
    Ok(Change::Config)
}

pub(super) fn put_team(state: &mut LedgerState, team: Team) -> Result<Change, LedgerError> {
    check_id("team.id", &team.id)?;
    check_text("team.name", &team.name, 256)?;
    if state.teams.get(&team.id) == Some(&team) {
        return Ok(Change::None);
    }
    state.teams.insert(team.id.clone(), team);
    Ok(Change::Config)
}

pub(super) fn delete_team(state: &mut LedgerState, id: &str) -> Result<Change, LedgerError> {
    if !state.teams.contains_key(id) {
        return Err(LedgerError::not_found(ObjectKind::Team, id));
    }
    let in_use = |by_kind, by_id: &str| LedgerError::InUse {
        kind: ObjectKind::Team,
        id: id.to_owned(),
        by_kind,
        by_id: by_id.to_owned(),
    };
    if let Some(user) = state.users.values().find(|u| u.team.as_deref() == Some(id)) {
        return Err(in_use(ObjectKind::User, &user.id));
    }
    if let Some(key) = state.keys.values().find(|k| k.team.as_deref() == Some(id)) {
        return Err(in_use(ObjectKind::Key, &key.id));
    }
    if let Some(budget) = state
        .budgets
        .values()
        .find(|b| b.spec.scope.team.as_deref() == Some(id))
    {
        return Err(in_use(ObjectKind::Budget, &budget.spec.id));
    }
    state.teams.remove(id);
    Ok(Change::Config)
}

pub(super) fn put_user(state: &mut LedgerState, user: User) -> Result<Change, LedgerError> {
    check_id("user.id", &user.id)?;
    check_text("user.name", &user.name, 256)?;
    if let Some(team) = &user.team {
        if !state.teams.contains_key(team) {
            return Err(LedgerError::not_found(ObjectKind::Team, team.clone()));
        }
        // Keys already owned by this user and another team would contradict the move.
        if let Some(key) = state.keys.values().find(|k| {
            k.user.as_deref() == Some(user.id.as_str())
                && k.team.as_deref().is_some_and(|t| t != team)
        }) {
            return Err(LedgerError::invalid(
                "user.team",
                format!(
                    "key `{}` of this user belongs to team `{}`",
                    key.id,
                    key.team.as_deref().unwrap_or_default()
                ),
            ));
        }
    }
    if state.users.get(&user.id) == Some(&user) {
        return Ok(Change::None);
    }
    state.users.insert(user.id.clone(), user);
    Ok(Change::Config)
}

pub(super) fn delete_user(state: &mut LedgerState, id: &str) -> Result<Change, LedgerError> {
    if !state.users.contains_key(id) {
        return Err(LedgerError::not_found(ObjectKind::User, id));
    }
    let in_use = |by_kind, by_id: &str| LedgerError::InUse {
        kind: ObjectKind::User,
        id: id.to_owned(),
        by_kind,
        by_id: by_id.to_owned(),
    };
    if let Some(key) = state.keys.values().find(|k| k.user.as_deref() == Some(id)) {
        return Err(in_use(ObjectKind::Key, &key.id));
    }
    if let Some(budget) = state
        .budgets
        .values()
        .find(|b| b.spec.scope.user.as_deref() == Some(id))
    {
        return Err(in_use(ObjectKind::Budget, &budget.spec.id));
    }
    state.users.remove(id);
    Ok(Change::Config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_rounds_up_once() {
        let price = ModelPrice {
            input: 3_000_000,
            cached_input: 300_000,
            cache_write: 3_750_000,
            cache_write_1h: 6_000_000,
            output: 15_000_000,
        };
        // 1000 in = 500 uncached + 200 cached + 300 written (100 of them for an hour),
        // 100 out: 500×3 + 200×0.3 + 200×3.75 + 100×6 + 100×15 = 4410 µ$.
        let tokens = TokenCounts {
            input: 1000,
            cached: 200,
            cache_write: 300,
            cache_write_1h: 100,
            output: 100,
        };
        assert_eq!(price.cost_micros(&tokens), 4_410);
        // One token at $0.15/M is 0.15 µ$, charged as 1.
        let cheap = ModelPrice {
            input: 150_000,
            cached_input: 150_000,
            cache_write: 150_000,
            cache_write_1h: 150_000,
            output: 600_000,
        };
        let one = TokenCounts {
            input: 1,
            ..TokenCounts::default()
        };
        assert_eq!(cheap.cost_micros(&one), 1);
        // Parts larger than their whole are clamped, never underflow.
        let odd = TokenCounts {
            input: 5,
            cached: 9,
            cache_write: 9,
            cache_write_1h: 9,
            output: 0,
        };
        assert_eq!(cheap.cost_micros(&odd), 1);
    }

    #[test]
    fn ids_and_names() {
        assert!(check_id("f", "alice@example.com").is_ok());
        assert!(check_id("f", "").is_err());
        assert!(check_id("f", "has space").is_err());
        assert!(check_endpoint_name("f", "chat-4o_mini").is_ok());
        assert!(check_endpoint_name("f", "chat.4o").is_err());
        assert_eq!(
            price_key(None, "gpt-4o"),
            "*/gpt-4o",
            "any-provider entries use `*`"
        );
    }
}
