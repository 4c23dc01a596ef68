//! The ledger's config admin API, independent of transport: [`Admin`] turns admin requests
//! (an object kind and JSON) into one ledger command each, proposes it through a
//! [`LedgerHandle`] (a follower forwards to the leader), and answers from the member's
//! applied state. The gRPC `ConfigService` ([`grpc`]) and the node crate's JSON/HTTP layer
//! both call the same methods.
//!
//! Kinds and their JSON (reads show exactly what the table says, nothing more):
//!
//! | kind | `Put` takes | reads show | id |
//! | --- | --- | --- | --- |
//! | `endpoint` | [`EndpointSpec`] | the same | `name` |
//! | `price` | [`PriceEntry`] | the same | `provider/model` (`*/model`) |
//! | `credential` | plaintext, see below | [`MaskedCredential`](crate::ledger::MaskedCredential) | `name` |
//! | `key` | an import by hash, see below | [`KeyView`] (no hash) | `id` |
//! | `team` | [`Team`] | the same | `id` |
//! | `user` | [`User`] | the same | `id` |
//! | `budget` | [`BudgetSpec`] | [`Budget`](crate::ledger::Budget) (spec, usage, leases) | `id` |
//! | `lease_policy` | [`LeasePolicy`] | the same | ignored (one object; `Delete` restores the default) |
//!
//! * Credentials: `{"name", "kind": "api_key", "api_key"}`,
//!   `{"name", "kind": "aws", "access_key_id", "secret_access_key", "session_token"?}` or
//!   `{"name", "kind": "service_account", "service_account"}` (the key document, as text or
//!   an object). The member seals the plaintext under its current key-encryption key
//!   before anything is proposed; without a [`Keyring`] the call fails with
//!   [`AdminError::KekMissing`]. No reply, error or log line holds the plaintext or the
//!   ciphertext.
//! * Keys: [`Admin::create_key`] takes `{"id"?, "name"?, "team"?, "user"?, "endpoints"?,
//!   "expires_at"?}`, generates the key, proposes only its hash and returns the key once.
//!   `Put` of kind `key` imports a key made elsewhere by its SHA-256:
//!   `{"id", "hash", "name"?, "prefix"?, "team"?, "user"?, "endpoints"?, "expires_at"?}`.
//!
//! Every problem is an [`AdminError`] with a stable code; bad JSON and ledger refusals name
//! the field. Each call is one command, so nothing is ever half-applied. Writes return
//! once the answering member has applied the change, so a read from the same member sees
//! it.

pub mod error;
pub mod grpc;
mod input;
pub mod kind;
pub mod status;
pub mod view;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use zeroize::Zeroizing;

pub use self::error::{AdminError, ErrorBody, FieldError};
pub use self::grpc::ConfigGrpc;
use self::input::{CredentialInput, KeyImport, KeyRequest};
pub use self::kind::Kind;
pub use self::status::{BudgetStatus, LedgerStatus, MemberStatus};
pub use self::view::KeyView;
use crate::consensus::LedgerHandle;
use crate::ledger::{
    BudgetSpec, EndpointSpec, LeasePolicy, NewKey, PriceEntry, Team, User, generate_key,
};
use crate::secrets::{self, Keyring};
use crate::{Command, LedgerState};

/// How long a write waits for the answering member to apply its own committed change.
const APPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Checks an endpoint beyond the ledger's own rules before it is proposed: the node crate
/// implements it with the edge's config validator (providers, options, routing).
pub trait EndpointValidator: Send + Sync + fmt::Debug {
    /// Every problem with `spec`, by field, read against the member's applied `state`
    /// (for the credentials it names); `Ok` when an edge can serve it.
    fn check(&self, spec: &EndpointSpec, state: &LedgerState) -> Result<(), Vec<FieldError>>;
}

/// The config admin API over one ledger member. Cheap to clone.
#[derive(Clone)]
pub struct Admin {
    handle: LedgerHandle,
    keyring: Option<Arc<Keyring>>,
    validator: Option<Arc<dyn EndpointValidator>>,
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admin")
            .field("member", &self.handle.id())
            .field("keyring", &self.keyring.as_ref().map(|k| k.versions()))
            .field("validator", &self.validator)
            .finish()
    }
}

/// An object after a write or read, and the ledger revision that goes with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// The object as reads show it.
    pub object: Value,
    /// After a write, the revision it produced; after a read, the revision read.
    pub revision: u64,
}

/// Every object of a kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    /// The objects, in id order.
    pub objects: Vec<Value>,
    /// The revision read.
    pub revision: u64,
}

/// A new gateway key: the only time its plaintext exists outside its owner.
pub struct CreatedKey {
    /// The key. Hand it to its owner; never store or log it. Wiped on drop.
    pub key: Zeroizing<String>,
    /// The key's id.
    pub id: String,
    /// Its visible prefix.
    pub prefix: String,
    /// The key as reads show it.
    pub object: Value,
    /// The revision after the change.
    pub revision: u64,
}

impl fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedKey")
            .field("id", &self.id)
            .field("prefix", &self.prefix)
            .field("revision", &self.revision)
            .finish_non_exhaustive()
    }
}

impl Admin {
    /// The admin API over `handle`. `keyring` seals incoming credentials (without one,
    /// credential writes fail with [`AdminError::KekMissing`]); `validator` checks
    /// endpoints before they are proposed.
    pub fn new(
        handle: LedgerHandle,
        keyring: Option<Keyring>,
        validator: Option<Arc<dyn EndpointValidator>>,
    ) -> Self {
        Self {
            handle,
            keyring: keyring.map(Arc::new),
            validator,
        }
    }

    /// Creates or replaces one object of `kind` from its JSON; returns it as reads show
    /// it, with the revision after the change.
    pub async fn put(&self, kind: &str, object_json: &[u8]) -> Result<Object, AdminError> {
        let kind: Kind = kind.parse()?;
        let (command, id) = self.put_command(kind, object_json)?;
        let revision = self.propose(command).await?;
        let object = self.read(|state| view::object(state, kind, &id))??;
        Ok(Object { object, revision })
    }

    /// One object of `kind` by id, from this member's applied state.
    pub fn get(&self, kind: &str, id: &str) -> Result<Object, AdminError> {
        let kind: Kind = kind.parse()?;
        self.read(|state| {
            view::object(state, kind, id).map(|object| Object {
                object,
                revision: state.revision(),
            })
        })?
    }

    /// Every object of `kind`, from this member's applied state.
    pub fn list(&self, kind: &str) -> Result<Listed, AdminError> {
        let kind: Kind = kind.parse()?;
        self.read(|state| {
            view::objects(state, kind).map(|objects| Listed {
                objects,
                revision: state.revision(),
            })
        })?
    }

    /// Deletes one object of `kind` (the lease policy: restores the default); returns the
    /// revision after the change.
    pub async fn delete(&self, kind: &str, id: &str) -> Result<u64, AdminError> {
        let kind: Kind = kind.parse()?;
        let id = id.to_owned();
        let command = match kind {
            Kind::Endpoint => Command::DeleteEndpoint { name: id },
            Kind::Price => {
                let (provider, model) = view::price_id(&id)?;
                Command::DeletePrice { provider, model }
            }
            Kind::Credential => Command::DeleteCredential { name: id },
            Kind::Key => Command::DeleteKey { id },
            Kind::Team => Command::DeleteTeam { id },
            Kind::User => Command::DeleteUser { id },
            Kind::Budget => Command::DeleteBudget { id },
            Kind::LeasePolicy => Command::SetLeasePolicy(LeasePolicy::default()),
        };
        self.propose(command).await
    }

    /// Generates a gateway key from `{"id"?, "name"?, "team"?, "user"?, "endpoints"?,
    /// "expires_at"?}`, proposes only its hash, and returns the key: the only time it is
    /// shown.
    pub async fn create_key(&self, key_json: &[u8]) -> Result<CreatedKey, AdminError> {
        let request: KeyRequest = input::decode(Kind::Key, key_json)?;
        let generated = generate_key().map_err(AdminError::internal)?;
        let id = match request.id {
            Some(id) => id,
            None => generated_id()?,
        };
        let new = NewKey {
            id: id.clone(),
            name: request.name,
            prefix: generated.prefix.clone(),
            hash: generated.hash,
            team: request.team,
            user: request.user,
            endpoints: request.endpoints,
            expires_at: request.expires_at,
        };
        let revision = self.propose(Command::CreateKey(new)).await?;
        let object = self.read(|state| view::object(state, Kind::Key, &id))??;
        Ok(CreatedKey {
            key: generated.secret,
            id,
            prefix: generated.prefix,
            object,
            revision,
        })
    }

    /// Revokes a gateway key from now on (idempotent); returns it with the revision.
    pub async fn revoke_key(&self, id: &str) -> Result<Object, AdminError> {
        let revision = self
            .propose(Command::RevokeKey { id: id.to_owned() })
            .await?;
        let object = self.read(|state| view::object(state, Kind::Key, id))??;
        Ok(Object { object, revision })
    }

    /// Revisions, leader, membership and budget usage, as this member sees them.
    pub async fn status(&self) -> Result<LedgerStatus, AdminError> {
        let (revision, config_revision, budgets) = self.read(status::from_state)?;
        let metrics = self.handle.raft().metrics().borrow().clone();
        Ok(LedgerStatus {
            revision,
            config_revision,
            applied_index: metrics.last_applied.map_or(0, |log_id| log_id.index),
            node_id: self.handle.id(),
            leader_id: self.handle.raft().current_leader().await,
            members: status::members(&metrics),
            budgets,
        })
    }

    /// The command a `Put` of `kind` proposes, and the id to read back.
    fn put_command(&self, kind: Kind, bytes: &[u8]) -> Result<(Command, String), AdminError> {
        Ok(match kind {
            Kind::Endpoint => {
                let spec: EndpointSpec = input::decode_strict(kind, bytes)?;
                if let Some(validator) = &self.validator {
                    self.handle
                        .reader()
                        .read(|state| validator.check(&spec, state))
                        .map_err(AdminError::internal)?
                        .map_err(|errors| AdminError::InvalidArgument { errors })?;
                }
                let id = spec.name.clone();
                (Command::PutEndpoint(spec), id)
            }
            Kind::Price => {
                let entry: PriceEntry = input::decode_strict(kind, bytes)?;
                let id = entry.key();
                (Command::PutPrice(entry), id)
            }
            Kind::Credential => {
                let keyring = self.keyring.as_ref().ok_or(AdminError::KekMissing)?;
                let input = CredentialInput::parse(bytes)?;
                let sealed = input
                    .seal(keyring.current())
                    .map_err(AdminError::internal)?;
                (Command::PutCredential(sealed), input.name().to_owned())
            }
            Kind::Key => {
                let new = NewKey::from(input::decode::<KeyImport>(kind, bytes)?);
                let id = new.id.clone();
                (Command::CreateKey(new), id)
            }
            Kind::Team => {
                let team: Team = input::decode_strict(kind, bytes)?;
                let id = team.id.clone();
                (Command::PutTeam(team), id)
            }
            Kind::User => {
                let user: User = input::decode_strict(kind, bytes)?;
                let id = user.id.clone();
                (Command::PutUser(user), id)
            }
            Kind::Budget => {
                let spec: BudgetSpec = input::decode_strict(kind, bytes)?;
                let id = spec.id.clone();
                (Command::PutBudget(spec), id)
            }
            Kind::LeasePolicy => {
                let policy: LeasePolicy = input::decode_strict(kind, bytes)?;
                (Command::SetLeasePolicy(policy), String::new())
            }
        })
    }

    /// Proposes one command; once the ledger accepted it and this member applied it,
    /// returns the revision it produced.
    async fn propose(&self, command: Command) -> Result<u64, AdminError> {
        let name = command.name();
        let committed = self.handle.propose(command, false).await?;
        let applied = committed.outcome?;
        self.handle
            .raft()
            .wait(Some(APPLY_TIMEOUT))
            .applied_index_at_least(Some(committed.index), name)
            .await
            .map_err(|error| AdminError::Unavailable {
                reason: format!(
                    "`{name}` was committed at log index {} (revision {}) but this member \
                     has not applied it yet: {error}",
                    committed.index, applied.revision
                ),
            })?;
        Ok(applied.revision)
    }

    fn read<T>(&self, read: impl FnOnce(&LedgerState) -> T) -> Result<T, AdminError> {
        self.handle
            .reader()
            .read(read)
            .map_err(AdminError::internal)
    }
}

/// A fresh key id, `key-` and 16 random hex digits.
fn generated_id() -> Result<String, AdminError> {
    let bytes = secrets::random_bytes::<8>().map_err(AdminError::internal)?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("key-{hex}"))
}
