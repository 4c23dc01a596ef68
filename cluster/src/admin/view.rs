//! What reads show of each kind, straight from a [`LedgerState`]: credentials only as
//! [`MaskedCredential`](crate::ledger::MaskedCredential)s, gateway keys as [`KeyView`]s (no hash, only the visible prefix),
//! everything else as the ledger's own serde types. Pure; no I/O.

use serde::Serialize;
use serde_json::Value;

use super::{AdminError, Kind};
use crate::LedgerState;
use crate::ledger::{GatewayKey, ObjectKind, UnixMillis};

/// A gateway key as the admin API shows it: everything but its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyView {
    /// Stable id.
    pub id: String,
    /// Label.
    pub name: String,
    /// The visible prefix (`fg-AbCdEfGh`); empty for keys imported by hash.
    pub prefix: String,
    /// Owning team.
    pub team: Option<String>,
    /// Owning user.
    pub user: Option<String>,
    /// Endpoints the key may call; empty means all.
    pub endpoints: Vec<String>,
    /// Creation time (Unix ms).
    pub created_at: UnixMillis,
    /// Expiry, if any.
    pub expires_at: Option<UnixMillis>,
    /// Revocation time, if revoked.
    pub revoked_at: Option<UnixMillis>,
}

impl From<&GatewayKey> for KeyView {
    fn from(key: &GatewayKey) -> Self {
        Self {
            id: key.id.clone(),
            name: key.name.clone(),
            prefix: key.prefix.clone(),
            team: key.team.clone(),
            user: key.user.clone(),
            endpoints: key.endpoints.clone(),
            created_at: key.created_at,
            expires_at: key.expires_at,
            revoked_at: key.revoked_at,
        }
    }
}

/// A price id, `provider/model` (`*` for any provider), split at the first `/` (provider
/// names never hold one; model names may).
pub(super) fn price_id(id: &str) -> Result<(Option<String>, String), AdminError> {
    match id.split_once('/') {
        Some((provider, model)) if !model.is_empty() => {
            let provider = (provider != "*").then(|| provider.to_owned());
            Ok((provider, model.to_owned()))
        }
        _ => Err(AdminError::field(
            "id",
            format!("`{id}` is not a price id `provider/model` (`*/model` for any provider)"),
        )),
    }
}

fn json<T: Serialize>(value: &T) -> Result<Value, AdminError> {
    serde_json::to_value(value).map_err(AdminError::internal)
}

fn missing(kind: ObjectKind, id: &str) -> AdminError {
    AdminError::NotFound {
        kind: kind.to_string(),
        id: id.to_owned(),
    }
}

/// The object of `kind` with `id`, as reads show it.
pub(super) fn object(state: &LedgerState, kind: Kind, id: &str) -> Result<Value, AdminError> {
    match kind {
        Kind::Endpoint => state
            .endpoints()
            .get(id)
            .map(json)
            .unwrap_or_else(|| Err(missing(ObjectKind::Endpoint, id))),
        Kind::Price => {
            let (provider, model) = price_id(id)?;
            let key = format!("{}/{model}", provider.as_deref().unwrap_or("*"));
            state
                .prices()
                .get(&key)
                .map(json)
                .unwrap_or_else(|| Err(missing(ObjectKind::Price, id)))
        }
        Kind::Credential => state
            .credentials()
            .get(id)
            .map(|credential| json(&credential.masked()))
            .unwrap_or_else(|| Err(missing(ObjectKind::Credential, id))),
        Kind::Key => state
            .keys()
            .get(id)
            .map(|key| json(&KeyView::from(key)))
            .unwrap_or_else(|| Err(missing(ObjectKind::Key, id))),
        Kind::Team => state
            .teams()
            .get(id)
            .map(json)
            .unwrap_or_else(|| Err(missing(ObjectKind::Team, id))),
        Kind::User => state
            .users()
            .get(id)
            .map(json)
            .unwrap_or_else(|| Err(missing(ObjectKind::User, id))),
        Kind::Budget => state
            .budgets()
            .get(id)
            .map(json)
            .unwrap_or_else(|| Err(missing(ObjectKind::Budget, id))),
        Kind::LeasePolicy => json(state.lease_policy()),
    }
}

/// Every object of `kind`, in id order, as reads show them.
pub(super) fn objects(state: &LedgerState, kind: Kind) -> Result<Vec<Value>, AdminError> {
    match kind {
        Kind::Endpoint => state.endpoints().values().map(json).collect(),
        Kind::Price => state.prices().values().map(json).collect(),
        Kind::Credential => state
            .credentials()
            .values()
            .map(|credential| json(&credential.masked()))
            .collect(),
        Kind::Key => state
            .keys()
            .values()
            .map(|key| json(&KeyView::from(key)))
            .collect(),
        Kind::Team => state.teams().values().map(json).collect(),
        Kind::User => state.users().values().map(json).collect(),
        Kind::Budget => state.budgets().values().map(json).collect(),
        Kind::LeasePolicy => Ok(vec![json(state.lease_policy())?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn price_ids() {
        assert_eq!(
            price_id("openai/gpt-4o").unwrap(),
            (Some("openai".into()), "gpt-4o".into())
        );
        assert_eq!(
            price_id("*/meta/llama-3").unwrap(),
            (None, "meta/llama-3".into())
        );
        assert!(price_id("gpt-4o").is_err());
        assert!(price_id("openai/").is_err());
    }
}
