//! A config file → the ledger commands that make the ledger hold what the file declares.
//!
//! The file is a declarative base: every team, user, endpoint (with its credentials),
//! price, gateway key and budget it lists is put into the ledger; objects the file does
//! not list (created through the admin API) are left alone. Applying the same file twice
//! proposes nothing the second time: objects equal to the ledger's are skipped, and a
//! stored credential is compared by its opened plaintext (sealing is randomized, so the
//! ciphertext differs on every seal).

use floodgate_cluster::ledger::{
    Command, EndpointKind, EndpointSpec, KeyHash, LedgerState, ModelPrice, NewKey, PriceEntry,
    ProviderCredential, RevealedCredential, TargetCredential, TargetSpec, Team, User,
};
use floodgate_cluster::secrets::Keyring;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::super::mlflow::{self, MlflowEndpoint};
use super::super::raw::{RawConfig, RawCredentials, RawEndpoint, RawKey, RawTarget};
use super::super::validate::{Problems, decode_sha256};
use super::super::{ConfigError, from_value};
use crate::pricing::{RawPrice, UsdPrice};

/// The commands that bring `state` up to what `raw` declares, as one atomic batch, or
/// `None` when the ledger already holds all of it. `raw` must have passed `validate`.
pub(in crate::config) fn declare(
    raw: RawConfig,
    state: &LedgerState,
    keyring: Option<&Keyring>,
) -> Result<Option<Command>, ConfigError> {
    let mut problems = Problems::default();
    let mut commands = Vec::new();

    for team in &raw.teams {
        let want = Team {
            id: team.id.clone(),
            name: team.name.clone().unwrap_or_else(|| team.id.clone()),
        };
        if state.teams().get(&want.id) != Some(&want) {
            commands.push(Command::PutTeam(want));
        }
    }
    for user in &raw.users {
        let want = User {
            id: user.id.clone(),
            name: user.name.clone().unwrap_or_else(|| user.id.clone()),
            team: user.team.clone(),
        };
        if state.users().get(&want.id) != Some(&want) {
            commands.push(Command::PutUser(want));
        }
    }
    for (index, price) in raw.prices.iter().enumerate() {
        match price_entry(price) {
            Ok(entry) => {
                if state.prices().get(&entry.key()) != Some(&entry) {
                    commands.push(Command::PutPrice(entry));
                }
            }
            Err(message) => problems.add(format!("prices[{index}]"), message),
        }
    }
    for (index, entry) in raw.endpoints.into_iter().enumerate() {
        let path = format!("endpoints[{index}]");
        let Some(endpoint) = native(entry, &path, &mut problems) else {
            continue;
        };
        let mut sealed = Vec::new();
        let spec = endpoint_spec(endpoint, &path, &mut sealed, &mut problems);
        for (name, raw_credential, field) in sealed {
            match credential(&name, raw_credential, state, keyring) {
                Ok(Some(command)) => commands.push(command),
                Ok(None) => {}
                Err(message) => problems.add(field, message),
            }
        }
        if state.endpoints().get(&spec.name) != Some(&spec) {
            commands.push(Command::PutEndpoint(spec));
        }
    }
    for (index, key) in raw.keys.iter().enumerate() {
        match key_command(key, state) {
            Ok(Some(command)) => commands.push(command),
            Ok(None) => {}
            Err(message) => problems.add(format!("keys[{index}]"), message),
        }
    }
    for spec in super::super::budgets::budgets(&raw.budgets, &mut problems) {
        if state.budgets().get(&spec.id).map(|budget| &budget.spec) != Some(&spec) {
            commands.push(Command::PutBudget(spec));
        }
    }
    problems.into_result()?;
    Ok((!commands.is_empty()).then_some(Command::Batch(commands)))
}

fn native(entry: Value, path: &str, problems: &mut Problems) -> Option<RawEndpoint> {
    if mlflow::is_mlflow_entry(&entry) {
        let parsed: MlflowEndpoint = from_value(entry, path).map_err(|e| problems.push(e)).ok()?;
        parsed
            .into_native()
            .map_err(|e| problems.add(path, e.to_string()))
            .ok()
    } else {
        from_value(entry, path).map_err(|e| problems.push(e)).ok()
    }
}

/// A credential found in the file: its ledger name, what was written, and its field path.
type Found = (String, RawCredentials, String);

fn endpoint_spec(
    raw: RawEndpoint,
    path: &str,
    sealed: &mut Vec<Found>,
    problems: &mut Problems,
) -> EndpointSpec {
    let kind = match raw.kind.as_str() {
        "completions" => EndpointKind::Completions,
        "embeddings" => EndpointKind::Embeddings,
        _ => EndpointKind::Chat,
    };
    let options = json!({
        "routing": raw.routing,
        "rate_limit": raw.rate_limit,
        "timeouts": raw.timeouts,
        "payload_capture": raw.payload_capture,
    });
    let mut targets = |list: Vec<RawTarget>, role: &str, short: char| -> Vec<TargetSpec> {
        list.into_iter()
            .enumerate()
            .map(|(index, target)| {
                let field = format!("{path}.{role}[{index}].credentials");
                let name = format!("{}.{short}{index}", raw.name);
                target_spec(target, name, field, sealed, problems)
            })
            .collect()
    };
    let split = targets(raw.targets, "targets", 't');
    let fallbacks = targets(raw.fallbacks, "fallbacks", 'f');
    EndpointSpec {
        name: raw.name,
        kind,
        targets: split,
        fallbacks,
        options_json: options.to_string(),
    }
}

fn target_spec(
    mut raw: RawTarget,
    credential_name: String,
    field: String,
    sealed: &mut Vec<Found>,
    problems: &mut Problems,
) -> TargetSpec {
    let credentials = std::mem::take(&mut raw.credentials);
    let credential = if let Some(header) = credentials.from_header.clone() {
        TargetCredential::FromClientHeader { header }
    } else if has_secret(&credentials) {
        sealed.push((credential_name.clone(), credentials, field.clone()));
        TargetCredential::Stored {
            name: credential_name,
        }
    } else {
        TargetCredential::None
    };
    let price = raw.price.as_ref().and_then(|price| {
        let usd = UsdPrice {
            input: price.input,
            cached_input: price.cached_input,
            cache_write: price.cache_write,
            cache_write_1h: price.cache_write_1h,
            output: price.output,
        };
        usd.to_model_price()
            .map(ledger_price)
            .map_err(|e| problems.add(field.replace(".credentials", ".price"), e.to_string()))
            .ok()
    });
    let options = json!({
        "azure": raw.azure,
        "organization": raw.organization,
        "region": raw.region,
        "project": raw.project,
        "timeouts": raw.timeouts,
    });
    TargetSpec {
        provider: raw.provider,
        model: raw.model,
        api_base: raw.api_base,
        credential,
        weight: raw.weight.unwrap_or(1),
        max_tokens: raw.max_tokens,
        price,
        options_json: options.to_string(),
    }
}

fn has_secret(raw: &RawCredentials) -> bool {
    raw.api_key.as_deref().is_some_and(|key| !key.is_empty())
        || raw.aws_access_key_id.is_some()
        || raw.service_account.is_some()
        || raw.service_account_file.is_some()
}

/// The `PutCredential` for a file credential, or `None` when the ledger already holds the
/// same plaintext under that name.
fn credential(
    name: &str,
    raw: RawCredentials,
    state: &LedgerState,
    keyring: Option<&Keyring>,
) -> Result<Option<Command>, String> {
    let keyring = keyring.ok_or(
        "provider credentials are sealed before they enter the ledger: set FLOODGATE_KEK (or run `floodgate dev`, which creates a local key file)",
    )?;
    let kek = keyring.current();
    let sealing = |e: floodgate_cluster::secrets::SecretError| e.to_string();
    let (want, sealed) = if let Some(key) = raw.api_key.filter(|k| !k.is_empty()) {
        let sealed = ProviderCredential::api_key(kek, name, &key).map_err(sealing)?;
        (Plain::ApiKey(key), sealed)
    } else if let (Some(id), Some(secret)) = (raw.aws_access_key_id, raw.aws_secret_access_key) {
        let token = raw.aws_session_token.filter(|t| !t.is_empty());
        let sealed =
            ProviderCredential::aws(kek, name, &id, &secret, token.as_deref()).map_err(sealing)?;
        (Plain::Aws(id, secret, token), sealed)
    } else {
        let json = match (raw.service_account, raw.service_account_file) {
            (Some(json), _) => json,
            (None, Some(file)) => std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read service account file `{file}`: {e}"))?,
            (None, None) => return Err("incomplete credentials".to_owned()),
        };
        let sealed = ProviderCredential::service_account(kek, name, &json).map_err(sealing)?;
        (Plain::ServiceAccount(json), sealed)
    };
    let unchanged = state
        .credentials()
        .get(name)
        .and_then(|stored| stored.reveal(keyring).ok())
        .is_some_and(|revealed| want.matches(&revealed));
    Ok((!unchanged).then_some(Command::PutCredential(sealed)))
}

/// A credential's plaintext as written, compared with what the ledger opens.
enum Plain {
    ApiKey(String),
    Aws(String, String, Option<String>),
    ServiceAccount(String),
}

impl Plain {
    fn matches(&self, revealed: &RevealedCredential) -> bool {
        match (self, revealed) {
            (Self::ApiKey(key), RevealedCredential::ApiKey(stored)) => stored.expose() == key,
            (
                Self::Aws(id, secret, token),
                RevealedCredential::Aws {
                    access_key_id,
                    secret_access_key,
                    session_token,
                },
            ) => {
                access_key_id == id
                    && secret_access_key.expose() == secret
                    && session_token.as_ref().map(|t| t.expose()) == token.as_deref()
            }
            (Self::ServiceAccount(json), RevealedCredential::ServiceAccount(stored)) => {
                stored.expose() == json
            }
            _ => false,
        }
    }
}

fn key_command(raw: &RawKey, state: &LedgerState) -> Result<Option<Command>, String> {
    let hash = match (&raw.key, &raw.key_sha256) {
        (Some(key), _) => Sha256::digest(key.as_bytes()).into(),
        (None, Some(hex)) => decode_sha256(hex).ok_or("`key_sha256` must be 64 hex characters")?,
        (None, None) => return Err("give `key` or `key_sha256`".to_owned()),
    };
    let want = NewKey {
        id: raw.id.clone(),
        name: raw.id.clone(),
        prefix: String::new(),
        hash: KeyHash(hash),
        team: raw.team.clone(),
        user: raw.user.clone(),
        endpoints: raw.endpoints.clone(),
        expires_at: None,
    };
    match state.keys().get(&raw.id) {
        None => Ok(Some(Command::CreateKey(want))),
        Some(stored)
            if stored.hash == want.hash
                && stored.team == want.team
                && stored.user == want.user
                && stored.endpoints == want.endpoints =>
        {
            Ok(None)
        }
        Some(_) => Err(format!(
            "key `{}` is already in the ledger with another key or other settings; keys cannot be changed in place: revoke it and create a new one (`floodgate ctl keys`)",
            raw.id
        )),
    }
}

fn price_entry(raw: &RawPrice) -> Result<PriceEntry, String> {
    let price = raw.usd().to_model_price().map_err(|e| e.to_string())?;
    Ok(PriceEntry {
        provider: raw.provider.clone(),
        model: raw.model.clone(),
        price: ledger_price(price),
    })
}

fn ledger_price(price: crate::pricing::ModelPrice) -> ModelPrice {
    ModelPrice {
        input: price.input,
        cached_input: price.cached_input,
        cache_write: price.cache_write,
        cache_write_1h: price.cache_write_1h,
        output: price.output,
    }
}
