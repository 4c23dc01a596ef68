//! The ledger's state → the [`Config`] an edge serves from.
//!
//! Endpoints come back to the node's raw shape (typed fields, plus the edge-only options the
//! ledger stores as JSON, plus the credentials opened with the edge's keyring) and go
//! through the same validation as a config file, so an endpoint served from the ledger
//! behaves exactly like the same endpoint written in a file. One endpoint that does not
//! validate (say, a provider this edge's version does not know) is left out and reported;
//! the others are served.

use std::sync::Arc;

use floodgate_cluster::ledger::{
    EndpointKind, EndpointSpec, LedgerState, ModelPrice, RevealedCredential, TargetCredential,
    TargetSpec,
};
use floodgate_cluster::secrets::Keyring;
use indexmap::IndexMap;
use serde_json::{Map, Value, json};

use super::super::ConfigError;
use super::super::endpoint::endpoint;
use super::super::model::{Auth, Config, Endpoint, GatewayKeys, KeyInfo};
use super::super::validate::Problems;
use crate::pricing::RawPrice;

/// Builds the edge's config from the ledger's `state`: endpoints, prices, gateway keys and
/// budgets from the ledger; listen address, limits, default timeouts, shutdown grace and
/// the auth mode from `local`. Returns the config and the problems of the endpoints left
/// out. Gateway keys: with `local.auth` off (`floodgate dev`), none are required;
/// otherwise every key the ledger holds that is not revoked.
pub fn edge_config(
    state: &LedgerState,
    keyring: Option<&Keyring>,
    local: &Config,
) -> (Config, Vec<ConfigError>) {
    let mut problems = Vec::new();
    let mut endpoints = IndexMap::new();
    for spec in state.endpoints().values() {
        match served_endpoint(spec, state, keyring, local) {
            Ok(endpoint) => {
                endpoints.insert(endpoint.name.clone(), Arc::new(endpoint));
            }
            Err(error) => problems.push(error),
        }
    }

    let mut prices = (*local.prices).clone();
    for entry in state.prices().values() {
        if let Err(e) = prices.set(&raw_price(
            entry.provider.clone(),
            &entry.model,
            &entry.price,
        )) {
            problems.push(ConfigError::field(
                format!("prices.{}", entry.key()),
                e.to_string(),
            ));
        }
    }
    if !state.prices().is_empty() {
        prices.mark_overridden();
    }

    let auth = match &local.auth {
        Auth::None => Auth::None,
        Auth::Keys(_) => {
            let mut keys = GatewayKeys::default();
            for key in state.keys().values().filter(|key| key.revoked_at.is_none()) {
                keys.insert(
                    key.hash.0,
                    KeyInfo {
                        id: key.id.clone(),
                        endpoints: key.endpoints.clone(),
                        team: key.team.clone(),
                        user: key.user.clone(),
                        expires_at: key.expires_at,
                    },
                );
            }
            Auth::Keys(keys)
        }
    };

    let budgets: Vec<_> = state.budgets().values().map(|b| b.spec.clone()).collect();
    let config = Config {
        listen: local.listen,
        auth,
        limits: local.limits,
        timeouts: local.timeouts,
        shutdown_grace: local.shutdown_grace,
        endpoints,
        prices: Arc::new(prices),
        budgets: Arc::from(budgets),
        events: local.events.clone(),
        payload_capture: local.payload_capture.clone(),
    };
    (config, problems)
}

/// Checks one endpoint the way [`edge_config`] would serve it from `state`: its problems,
/// scrubbed of the credentials opened to check it, or `Ok` when an edge can serve it.
pub fn check_endpoint(
    spec: &EndpointSpec,
    state: &LedgerState,
    keyring: Option<&Keyring>,
    local: &Config,
) -> Result<(), ConfigError> {
    served_endpoint(spec, state, keyring, local).map(drop)
}

/// `spec` as an edge serves it (credentials opened, validated like a file's endpoint), or
/// its problems scrubbed of the opened secrets.
fn served_endpoint(
    spec: &EndpointSpec,
    state: &LedgerState,
    keyring: Option<&Keyring>,
    local: &Config,
) -> Result<Endpoint, ConfigError> {
    let path = format!("endpoints.{}", spec.name);
    let mut secrets = Vec::new();
    let value = raw_endpoint(spec, state, keyring, &mut secrets)
        .map_err(|message| ConfigError::field(path.clone(), message))?;
    let mut found = Problems::default();
    let parsed = endpoint(value, &path, local.timeouts, &mut found);
    match (parsed, found.into_result()) {
        (Some(endpoint), Ok(())) => Ok(endpoint),
        (_, Err(error)) => Err(error.scrub(&secrets)),
        (None, Ok(())) => Err(ConfigError::field(path, "not usable")),
    }
}

/// The endpoint in the node's raw (file) shape, credentials opened; every opened secret is
/// also pushed to `secrets` so errors can be scrubbed of it.
fn raw_endpoint(
    spec: &EndpointSpec,
    state: &LedgerState,
    keyring: Option<&Keyring>,
    secrets: &mut Vec<String>,
) -> Result<Value, String> {
    let kind = match spec.kind {
        EndpointKind::Chat => "chat",
        EndpointKind::Completions => "completions",
        EndpointKind::Embeddings => "embeddings",
    };
    let mut out = options(&spec.options_json, "endpoint options")?;
    out.insert("name".into(), json!(spec.name));
    out.insert("kind".into(), json!(kind));
    let targets = |list: &[TargetSpec], secrets: &mut Vec<String>| {
        list.iter()
            .map(|target| raw_target(target, state, keyring, secrets))
            .collect::<Result<Vec<_>, _>>()
    };
    out.insert(
        "targets".into(),
        Value::Array(targets(&spec.targets, secrets)?),
    );
    out.insert(
        "fallbacks".into(),
        Value::Array(targets(&spec.fallbacks, secrets)?),
    );
    Ok(Value::Object(out))
}

fn raw_target(
    target: &TargetSpec,
    state: &LedgerState,
    keyring: Option<&Keyring>,
    secrets: &mut Vec<String>,
) -> Result<Value, String> {
    let mut out = options(&target.options_json, "target options")?;
    out.insert("provider".into(), json!(target.provider));
    out.insert("model".into(), json!(target.model));
    out.insert("weight".into(), json!(target.weight));
    if let Some(base) = &target.api_base {
        out.insert("api_base".into(), json!(base));
    }
    if let Some(max) = target.max_tokens {
        out.insert("max_tokens".into(), json!(max));
    }
    if let Some(price) = &target.price {
        out.insert("price".into(), usd(price));
    }
    let credentials = match &target.credential {
        TargetCredential::None => Value::Object(Map::new()),
        TargetCredential::FromClientHeader { header } => json!({ "from_header": header }),
        TargetCredential::Stored { name } => {
            let keyring = keyring.ok_or_else(|| {
                format!("credential `{name}` is sealed and this edge has no key-encryption key (FLOODGATE_KEK)")
            })?;
            let stored = state
                .credentials()
                .get(name)
                .ok_or_else(|| format!("credential `{name}` is not in the ledger"))?;
            let revealed = stored
                .reveal(keyring)
                .map_err(|e| format!("credential `{name}` does not open: {e}"))?;
            opened(revealed, secrets)
        }
    };
    out.insert("credentials".into(), credentials);
    Ok(Value::Object(out))
}

fn opened(revealed: RevealedCredential, secrets: &mut Vec<String>) -> Value {
    let mut keep = |text: &str| {
        secrets.push(text.to_owned());
        json!(text)
    };
    match revealed {
        RevealedCredential::ApiKey(key) => json!({ "api_key": keep(key.expose()) }),
        RevealedCredential::Aws {
            access_key_id,
            secret_access_key,
            session_token,
        } => {
            let mut out = json!({
                "aws_access_key_id": access_key_id,
                "aws_secret_access_key": keep(secret_access_key.expose()),
            });
            if let Some(token) = session_token {
                out["aws_session_token"] = keep(token.expose());
            }
            out
        }
        RevealedCredential::ServiceAccount(json) => {
            json!({ "service_account": keep(json.expose()) })
        }
    }
}

/// The stored options object with its null members dropped (absent in the raw shape).
fn options(text: &str, what: &str) -> Result<Map<String, Value>, String> {
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(mut map)) => {
            map.retain(|_, value| !value.is_null());
            Ok(map)
        }
        _ => Err(format!("{what} are not a JSON object")),
    }
}

fn usd(price: &ModelPrice) -> Value {
    json!({
        "input": dollars(price.input),
        "cached_input": dollars(price.cached_input),
        "cache_write": dollars(price.cache_write),
        "cache_write_1h": dollars(price.cache_write_1h),
        "output": dollars(price.output),
    })
}

fn raw_price(provider: Option<String>, model: &str, price: &ModelPrice) -> RawPrice {
    RawPrice {
        provider,
        model: model.to_owned(),
        input: dollars(price.input),
        cached_input: Some(dollars(price.cached_input)),
        cache_write: Some(dollars(price.cache_write)),
        cache_write_1h: Some(dollars(price.cache_write_1h)),
        output: dollars(price.output),
    }
}

/// Micro-dollars per million tokens → dollars per million tokens. Exact on the way back:
/// the table rounds to six decimals, and every price below 2^53 micro-dollars is an exact
/// `f64` quotient's nearest neighbour.
fn dollars(micros: u64) -> f64 {
    micros as f64 / 1_000_000.0
}
