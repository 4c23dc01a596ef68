//! Provider credentials as the ledger stores them: sealed (see [`crate::secrets`]) before
//! they are put in a command, shown only masked, opened only by the edge for the upstream
//! call, and re-wrapped on KEK rotation.
//!
//! Each sealed field is bound to the context `<credential name>/<field>`, so ciphertext
//! copied from one credential into another does not open.

use serde::{Deserialize, Serialize};

use super::config::check_id;
use super::error::{LedgerError, ObjectKind};
use super::{Change, Command, LedgerState};
use crate::secrets::{self, Kek, Keyring, Revealed, SealedSecret, SecretError};

/// A named provider credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderCredential {
    /// Name that targets refer to.
    pub name: String,
    /// The sealed material.
    pub secret: CredentialSecret,
}

/// The sealed material of a credential, by kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialSecret {
    /// An API key sent as a bearer token or provider header.
    ApiKey {
        /// The key.
        key: SealedSecret,
    },
    /// AWS access keys for SigV4 (Bedrock).
    Aws {
        /// `AWS_ACCESS_KEY_ID`: an identifier, not secret.
        access_key_id: String,
        /// `AWS_SECRET_ACCESS_KEY`.
        secret_access_key: SealedSecret,
        /// `AWS_SESSION_TOKEN`, for temporary credentials.
        session_token: Option<SealedSecret>,
    },
    /// A Google service-account key document (Vertex AI).
    ServiceAccount {
        /// The JSON document.
        json: SealedSecret,
    },
}

/// What APIs show of a credential: its name, kind and masked values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskedCredential {
    /// Name.
    pub name: String,
    /// `api_key`, `aws` or `service_account`.
    pub kind: String,
    /// The masked secret (`sk-…abcd`).
    pub masked: String,
    /// The AWS access key id, which is not secret.
    pub access_key_id: Option<String>,
    /// Version of the KEK that wraps it (rotation progress).
    pub kek_version: u32,
}

/// An opened credential, for the upstream call only. Wiped on drop.
#[derive(Debug)]
pub enum RevealedCredential {
    /// An API key.
    ApiKey(Revealed),
    /// AWS access keys.
    Aws {
        /// The access key id.
        access_key_id: String,
        /// The secret access key.
        secret_access_key: Revealed,
        /// The session token.
        session_token: Option<Revealed>,
    },
    /// A service-account key document.
    ServiceAccount(Revealed),
}

fn context(name: &str, field: &str) -> String {
    format!("{name}/{field}")
}

impl ProviderCredential {
    /// Seals an API key under `kek`.
    pub fn api_key(kek: &Kek, name: &str, key: &str) -> Result<Self, SecretError> {
        Ok(Self {
            name: name.to_owned(),
            secret: CredentialSecret::ApiKey {
                key: secrets::seal(kek, &context(name, "api_key"), key)?,
            },
        })
    }

    /// Seals AWS access keys under `kek`.
    pub fn aws(
        kek: &Kek,
        name: &str,
        access_key_id: &str,
        secret_access_key: &str,
        session_token: Option<&str>,
    ) -> Result<Self, SecretError> {
        Ok(Self {
            name: name.to_owned(),
            secret: CredentialSecret::Aws {
                access_key_id: access_key_id.to_owned(),
                secret_access_key: secrets::seal(
                    kek,
                    &context(name, "aws_secret_access_key"),
                    secret_access_key,
                )?,
                session_token: session_token
                    .map(|token| secrets::seal(kek, &context(name, "aws_session_token"), token))
                    .transpose()?,
            },
        })
    }

    /// Seals a Google service-account key document under `kek`.
    pub fn service_account(kek: &Kek, name: &str, json: &str) -> Result<Self, SecretError> {
        Ok(Self {
            name: name.to_owned(),
            secret: CredentialSecret::ServiceAccount {
                json: secrets::seal(kek, &context(name, "service_account"), json)?,
            },
        })
    }

    /// The view APIs return.
    pub fn masked(&self) -> MaskedCredential {
        let (kind, sealed, access_key_id) = match &self.secret {
            CredentialSecret::ApiKey { key } => ("api_key", key, None),
            CredentialSecret::Aws {
                access_key_id,
                secret_access_key,
                ..
            } => ("aws", secret_access_key, Some(access_key_id.clone())),
            CredentialSecret::ServiceAccount { json } => ("service_account", json, None),
        };
        MaskedCredential {
            name: self.name.clone(),
            kind: kind.to_owned(),
            masked: sealed.masked().to_owned(),
            access_key_id,
            kek_version: self.kek_version(),
        }
    }

    /// The oldest KEK version among this credential's sealed fields.
    pub fn kek_version(&self) -> u32 {
        self.sealed()
            .iter()
            .map(|(_, s)| s.kek_version())
            .min()
            .unwrap_or(0)
    }

    /// Opens the credential (edge only, for the upstream call).
    pub fn reveal(&self, keyring: &Keyring) -> Result<RevealedCredential, SecretError> {
        let name = &self.name;
        Ok(match &self.secret {
            CredentialSecret::ApiKey { key } => {
                RevealedCredential::ApiKey(secrets::open(keyring, &context(name, "api_key"), key)?)
            }
            CredentialSecret::Aws {
                access_key_id,
                secret_access_key,
                session_token,
            } => RevealedCredential::Aws {
                access_key_id: access_key_id.clone(),
                secret_access_key: secrets::open(
                    keyring,
                    &context(name, "aws_secret_access_key"),
                    secret_access_key,
                )?,
                session_token: session_token
                    .as_ref()
                    .map(|t| secrets::open(keyring, &context(name, "aws_session_token"), t))
                    .transpose()?,
            },
            CredentialSecret::ServiceAccount { json } => RevealedCredential::ServiceAccount(
                secrets::open(keyring, &context(name, "service_account"), json)?,
            ),
        })
    }

    /// The same credential with every data key re-wrapped under the keyring's current KEK.
    pub fn rewrapped(&self, keyring: &Keyring) -> Result<Self, SecretError> {
        let name = &self.name;
        let secret = match &self.secret {
            CredentialSecret::ApiKey { key } => CredentialSecret::ApiKey {
                key: secrets::rewrap(keyring, &context(name, "api_key"), key)?,
            },
            CredentialSecret::Aws {
                access_key_id,
                secret_access_key,
                session_token,
            } => CredentialSecret::Aws {
                access_key_id: access_key_id.clone(),
                secret_access_key: secrets::rewrap(
                    keyring,
                    &context(name, "aws_secret_access_key"),
                    secret_access_key,
                )?,
                session_token: session_token
                    .as_ref()
                    .map(|t| secrets::rewrap(keyring, &context(name, "aws_session_token"), t))
                    .transpose()?,
            },
            CredentialSecret::ServiceAccount { json } => CredentialSecret::ServiceAccount {
                json: secrets::rewrap(keyring, &context(name, "service_account"), json)?,
            },
        };
        Ok(Self {
            name: name.clone(),
            secret,
        })
    }

    /// Every sealed field with its context.
    fn sealed(&self) -> Vec<(String, &SealedSecret)> {
        let name = &self.name;
        match &self.secret {
            CredentialSecret::ApiKey { key } => vec![(context(name, "api_key"), key)],
            CredentialSecret::Aws {
                secret_access_key,
                session_token,
                ..
            } => {
                let mut all = vec![(context(name, "aws_secret_access_key"), secret_access_key)];
                if let Some(token) = session_token {
                    all.push((context(name, "aws_session_token"), token));
                }
                all
            }
            CredentialSecret::ServiceAccount { json } => {
                vec![(context(name, "service_account"), json)]
            }
        }
    }
}

impl LedgerState {
    /// The commands that re-wrap every credential not yet under the keyring's current KEK
    /// (KEK rotation). Built outside the state machine, which never holds a KEK; propose
    /// them (one [`Command::Batch`] is fine), then retire the old KEK once
    /// [`MaskedCredential::kek_version`] shows every credential at the new version.
    pub fn rotation_commands(&self, keyring: &Keyring) -> Result<Vec<Command>, SecretError> {
        let current = keyring.current().version();
        self.credentials
            .values()
            .filter(|c| c.sealed().iter().any(|(_, s)| s.kek_version() != current))
            .map(|c| c.rewrapped(keyring).map(Command::PutCredential))
            .collect()
    }
}

pub(super) fn put_credential(
    state: &mut LedgerState,
    credential: ProviderCredential,
) -> Result<Change, LedgerError> {
    check_id("credential.name", &credential.name)?;
    for (context, sealed) in credential.sealed() {
        sealed
            .check_shape(&context)
            .map_err(|e| LedgerError::invalid(format!("credentials.{context}"), e.to_string()))?;
    }
    if let CredentialSecret::Aws { access_key_id, .. } = &credential.secret
        && access_key_id.trim().is_empty()
    {
        return Err(LedgerError::invalid(
            format!("credentials.{}/access_key_id", credential.name),
            "must not be empty",
        ));
    }
    if state.credentials.get(&credential.name) == Some(&credential) {
        return Ok(Change::None);
    }
    state
        .credentials
        .insert(credential.name.clone(), credential);
    Ok(Change::Config)
}

pub(super) fn delete_credential(
    state: &mut LedgerState,
    name: &str,
) -> Result<Change, LedgerError> {
    if !state.credentials.contains_key(name) {
        return Err(LedgerError::not_found(ObjectKind::Credential, name));
    }
    let uses = |t: &super::config::TargetSpec| matches!(&t.credential, super::config::TargetCredential::Stored { name: n } if n == name);
    if let Some(endpoint) = state
        .endpoints
        .values()
        .find(|e| e.targets.iter().chain(&e.fallbacks).any(uses))
    {
        return Err(LedgerError::InUse {
            kind: ObjectKind::Credential,
            id: name.to_owned(),
            by_kind: ObjectKind::Endpoint,
            by_id: endpoint.name.clone(),
        });
    }
    state.credentials.remove(name);
    Ok(Change::Config)
}
