//! Gateway keys: generated once (the plaintext is shown to its owner at creation and never
//! stored), kept as a SHA-256 hash plus a short visible prefix, owned by a team and/or a
//! user, optionally limited to some endpoints, optionally expiring, revocable.
//!
//! Generation draws randomness, so it happens outside the state machine; the command
//! carries only the hash and prefix. Checking a presented key ([`LedgerState::authenticate`],
//! [`GatewayKey::check`]) is pure and is the same rule every edge applies.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::config::check_id;
use super::error::{LedgerError, ObjectKind};
use super::window::UnixMillis;
use super::{Change, LedgerState};
use crate::secrets::{self, SecretError};

/// Every generated key starts with this.
pub const KEY_PREFIX: &str = "fg-";

/// Characters of a generated key shown as its visible prefix (`fg-` and 8 more).
pub const VISIBLE_PREFIX_LEN: usize = 11;

/// SHA-256 of a gateway key. Serialized as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    /// The hash of a presented key.
    pub fn of(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({})", self.to_hex())
    }
}

impl FromStr for KeyHash {
    type Err = LedgerError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || LedgerError::invalid("key.hash", "must be 64 hex digits (SHA-256)");
        if text.len() != 64 || !text.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Self(out))
    }
}

impl Serialize for KeyHash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for KeyHash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A freshly generated key: the plaintext (shown once, wiped on drop), its visible prefix
/// and its hash.
pub struct GeneratedKey {
    /// The key to hand to its owner. Never store or log it.
    pub secret: Zeroizing<String>,
    /// The visible prefix (`fg-AbCdEfGh`).
    pub prefix: String,
    /// What the ledger stores.
    pub hash: KeyHash,
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("prefix", &self.prefix)
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

/// Generates a gateway key: `fg-` and 43 base64url characters (256 random bits).
pub fn generate_key() -> Result<GeneratedKey, SecretError> {
    let bytes = Zeroizing::new(secrets::random_bytes::<32>()?);
    let secret = Zeroizing::new(format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref())
    ));
    Ok(GeneratedKey {
        prefix: secret[..VISIBLE_PREFIX_LEN].to_owned(),
        hash: KeyHash::of(&secret),
        secret,
    })
}

/// The `CreateKey` command's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewKey {
    /// Stable id, recorded in usage.
    pub id: String,
    /// Label for people.
    pub name: String,
    /// Visible prefix for recognising the key in lists; empty for keys imported by hash.
    pub prefix: String,
    /// SHA-256 of the key.
    pub hash: KeyHash,
    /// Owning team.
    pub team: Option<String>,
    /// Owning user.
    pub user: Option<String>,
    /// Endpoints this key may call; empty means all.
    pub endpoints: Vec<String>,
    /// When the key stops working.
    pub expires_at: Option<UnixMillis>,
}

impl NewKey {
    /// The payload for a generated key.
    pub fn from_generated(
        id: impl Into<String>,
        name: impl Into<String>,
        key: &GeneratedKey,
    ) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            prefix: key.prefix.clone(),
            hash: key.hash,
            team: None,
            user: None,
            endpoints: Vec::new(),
            expires_at: None,
        }
    }
}

/// A gateway key as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayKey {
    /// Stable id.
    pub id: String,
    /// Label.
    pub name: String,
    /// Visible prefix.
    pub prefix: String,
    /// SHA-256 of the key.
    pub hash: KeyHash,
    /// Owning team.
    pub team: Option<String>,
    /// Owning user.
    pub user: Option<String>,
    /// Endpoints this key may call; empty means all.
    pub endpoints: Vec<String>,
    /// Creation time.
    pub created_at: UnixMillis,
    /// Expiry, if any: the key fails from this instant on.
    pub expires_at: Option<UnixMillis>,
    /// Revocation time, if revoked.
    pub revoked_at: Option<UnixMillis>,
}

/// Why a presented key was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRejected {
    /// No key has this hash.
    #[error("unknown gateway key")]
    Unknown,
    /// The key was revoked.
    #[error("gateway key `{id}` was revoked at {at}")]
    Revoked {
        /// The key's id.
        id: String,
        /// When.
        at: UnixMillis,
    },
    /// The key expired.
    #[error("gateway key `{id}` expired at {at}")]
    Expired {
        /// The key's id.
        id: String,
        /// When.
        at: UnixMillis,
    },
}

impl GatewayKey {
    /// Whether the key is usable at `now`.
    pub fn check(&self, now: UnixMillis) -> Result<(), KeyRejected> {
        if let Some(at) = self.revoked_at {
            return Err(KeyRejected::Revoked {
                id: self.id.clone(),
                at,
            });
        }
        if let Some(at) = self.expires_at
            && now >= at
        {
            return Err(KeyRejected::Expired {
                id: self.id.clone(),
                at,
            });
        }
        Ok(())
    }

    /// Whether the key may call `endpoint`.
    pub fn allows_endpoint(&self, endpoint: &str) -> bool {
        self.endpoints.is_empty() || self.endpoints.iter().any(|e| e == endpoint)
    }
}

impl LedgerState {
    /// Finds the key a client presented and checks it is usable at `now`.
    pub fn authenticate(
        &self,
        presented: &str,
        now: UnixMillis,
    ) -> Result<&GatewayKey, KeyRejected> {
        let key = self
            .key_hashes
            .get(&KeyHash::of(presented))
            .and_then(|id| self.keys.get(id))
            .ok_or(KeyRejected::Unknown)?;
        key.check(now)?;
        Ok(key)
    }

    /// Keys whose visible prefix starts with `prefix` (for operators identifying a key).
    pub fn keys_by_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a GatewayKey> {
        self.keys
            .values()
            .filter(move |k| !k.prefix.is_empty() && k.prefix.starts_with(prefix))
    }
}

pub(super) fn create_key(
    state: &mut LedgerState,
    new: NewKey,
    now: UnixMillis,
) -> Result<Change, LedgerError> {
    check_id("key.id", &new.id)?;
    if state.keys.contains_key(&new.id) {
        return Err(LedgerError::AlreadyExists {
            kind: ObjectKind::Key,
            id: new.id,
        });
    }
    if new.prefix.len() > 16
        || !new
            .prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(LedgerError::invalid(
            "key.prefix",
            "must be at most 16 characters of [A-Za-z0-9_-]",
        ));
    }
    if new.name.len() > 256 {
        return Err(LedgerError::invalid("key.name", "is longer than 256 bytes"));
    }
    if state.key_hashes.contains_key(&new.hash) {
        return Err(LedgerError::invalid(
            "key.hash",
            "another key has the same hash (the same key)",
        ));
    }
    if let Some(team) = &new.team
        && !state.teams.contains_key(team)
    {
        return Err(LedgerError::not_found(ObjectKind::Team, team.clone()));
    }
    if let Some(user_id) = &new.user {
        let user = state
            .users
            .get(user_id)
            .ok_or_else(|| LedgerError::not_found(ObjectKind::User, user_id.clone()))?;
        if let (Some(key_team), Some(user_team)) = (&new.team, &user.team)
            && key_team != user_team
        {
            return Err(LedgerError::invalid(
                "key.team",
                format!("user `{user_id}` belongs to team `{user_team}`, not `{key_team}`"),
            ));
        }
    }
    for (index, endpoint) in new.endpoints.iter().enumerate() {
        if !state.endpoints.contains_key(endpoint) {
            return Err(LedgerError::not_found(
                ObjectKind::Endpoint,
                endpoint.clone(),
            ));
        }
        if new.endpoints[..index].contains(endpoint) {
            return Err(LedgerError::invalid(
                format!("key.endpoints[{index}]"),
                format!("`{endpoint}` is listed twice"),
            ));
        }
    }
    if let Some(at) = new.expires_at
        && at <= now
    {
        return Err(LedgerError::invalid(
            "key.expires_at",
            format!("{at} is not after the ledger's time {now}"),
        ));
    }
    state.key_hashes.insert(new.hash, new.id.clone());
    state.keys.insert(
        new.id.clone(),
        GatewayKey {
            id: new.id,
            name: new.name,
            prefix: new.prefix,
            hash: new.hash,
            team: new.team,
            user: new.user,
            endpoints: new.endpoints,
            created_at: now,
            expires_at: new.expires_at,
            revoked_at: None,
        },
    );
    Ok(Change::Config)
}

pub(super) fn revoke_key(
    state: &mut LedgerState,
    id: &str,
    now: UnixMillis,
) -> Result<Change, LedgerError> {
    let key = state
        .keys
        .get_mut(id)
        .ok_or_else(|| LedgerError::not_found(ObjectKind::Key, id))?;
    if key.revoked_at.is_some() {
        return Ok(Change::None);
    }
    key.revoked_at = Some(now);
    Ok(Change::Config)
}

pub(super) fn delete_key(state: &mut LedgerState, id: &str) -> Result<Change, LedgerError> {
    let Some(key) = state.keys.get(id) else {
        return Err(LedgerError::not_found(ObjectKind::Key, id));
    };
    if let Some(budget) = state
        .budgets
        .values()
        .find(|b| b.spec.scope.key.as_deref() == Some(id))
    {
        return Err(LedgerError::InUse {
            kind: ObjectKind::Key,
            id: id.to_owned(),
            by_kind: ObjectKind::Budget,
            by_id: budget.spec.id.clone(),
        });
    }
    let hash = key.hash;
    state.key_hashes.remove(&hash);
    state.keys.remove(id);
    Ok(Change::Config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_hash_and_prefix() {
        let key = generate_key().unwrap();
        assert!(key.secret.starts_with(KEY_PREFIX));
        assert_eq!(key.secret.len(), 3 + 43);
        assert_eq!(key.prefix.len(), VISIBLE_PREFIX_LEN);
        assert!(key.secret.starts_with(&key.prefix));
        assert_eq!(key.hash, KeyHash::of(&key.secret));
        assert_ne!(generate_key().unwrap().hash, key.hash);
        assert!(!format!("{key:?}").contains(key.secret.as_str()));
    }

    #[test]
    fn hash_hex_round_trip() {
        let hash = KeyHash::of("fg-test");
        assert_eq!(hash.to_hex().parse::<KeyHash>().unwrap(), hash);
        // Known SHA-256 of "abc".
        assert_eq!(
            KeyHash::of("abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!("zz".parse::<KeyHash>().is_err());
        assert!("g".repeat(64).parse::<KeyHash>().is_err());
        let json = serde_json::to_string(&hash).unwrap();
        assert_eq!(serde_json::from_str::<KeyHash>(&json).unwrap(), hash);
    }
}
