//! Admin input: JSON bytes → typed objects, with every problem reported by field path.
//!
//! Ledger types are decoded with [`decode_strict`]: serde_path_to_error names the field a
//! type error is in, and fields the type does not know are refused (the ledger's serde
//! types accept unknown fields so the Raft log stays forward-compatible; an operator's typo
//! must not vanish silently). Credentials arrive in plaintext and are read by
//! [`CredentialInput::parse`] by hand, so no error can echo a secret value; the plaintext is
//! held in [`Zeroizing`] strings until it is sealed. Reads nothing from the ledger.

use std::fmt;

use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::{AdminError, FieldError, Kind};
use crate::ledger::{KeyHash, NewKey, ProviderCredential, UnixMillis};
use crate::secrets::{Kek, SecretError};

/// Path of a field inside an object of `kind`: `kind` itself for the root.
fn path_in(kind: Kind, path: &str) -> String {
    if path.is_empty() || path == "." {
        kind.name().to_owned()
    } else if path.starts_with('[') {
        format!("{kind}{path}")
    } else {
        format!("{kind}.{path}")
    }
}

/// Parses JSON text; a syntax error is reported against the whole object.
fn parse_value(kind: Kind, bytes: &[u8]) -> Result<Value, AdminError> {
    serde_json::from_slice(bytes)
        .map_err(|error| AdminError::field(kind.name(), format!("malformed JSON: {error}")))
}

/// Decodes `T` from an already parsed value, naming the failing field.
fn from_value<T: DeserializeOwned>(kind: Kind, value: Value) -> Result<T, AdminError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        AdminError::field(
            path_in(kind, &error.path().to_string()),
            error.inner().to_string(),
        )
    })
}

/// Decodes an admin-owned input type (which denies unknown fields itself).
pub(super) fn decode<T: DeserializeOwned>(kind: Kind, bytes: &[u8]) -> Result<T, AdminError> {
    from_value(kind, parse_value(kind, bytes)?)
}

/// Decodes a ledger type and refuses any field it does not know (at any depth).
pub(super) fn decode_strict<T: DeserializeOwned + Serialize>(
    kind: Kind,
    bytes: &[u8],
) -> Result<T, AdminError> {
    let input = parse_value(kind, bytes)?;
    let typed: T = from_value(kind, input.clone())?;
    let known = serde_json::to_value(&typed).map_err(AdminError::internal)?;
    let mut errors = Vec::new();
    unknown_fields(&input, &known, kind.name(), &mut errors);
    if errors.is_empty() {
        Ok(typed)
    } else {
        Err(AdminError::InvalidArgument { errors })
    }
}

/// Reports every key of `input` that the decoded value, serialized again (`known`), does
/// not have. The ledger types serialize every field, so a missing key was never read.
fn unknown_fields(input: &Value, known: &Value, path: &str, errors: &mut Vec<FieldError>) {
    match (input, known) {
        (Value::Object(input), Value::Object(known)) => {
            for (key, value) in input {
                let field = format!("{path}.{key}");
                match known.get(key) {
                    Some(known_value) => unknown_fields(value, known_value, &field, errors),
                    None => {
                        let expected: Vec<&str> = known.keys().map(String::as_str).collect();
                        errors.push(FieldError::new(
                            field,
                            format!("unknown field; expected one of {}", expected.join(", ")),
                        ));
                    }
                }
            }
        }
        (Value::Array(input), Value::Array(known)) => {
            for (index, (value, known_value)) in input.iter().zip(known).enumerate() {
                unknown_fields(value, known_value, &format!("{path}[{index}]"), errors);
            }
        }
        _ => {}
    }
}

/// `CreateKey`'s input: who owns the new key and what it may call. Everything is optional;
/// a missing id is generated.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyRequest {
    /// Stable id (generated when absent).
    #[serde(default)]
    pub id: Option<String>,
    /// Label for people.
    #[serde(default)]
    pub name: String,
    /// Owning team.
    #[serde(default)]
    pub team: Option<String>,
    /// Owning user.
    #[serde(default)]
    pub user: Option<String>,
    /// Endpoints the key may call; empty for all.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// When the key stops working (Unix ms).
    #[serde(default)]
    pub expires_at: Option<UnixMillis>,
}

/// `Put` of kind `key`: a key imported by its SHA-256 hash (a key made elsewhere; the
/// plaintext never reaches the ledger). Keys are create-only: an existing id conflicts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyImport {
    id: String,
    #[serde(default)]
    name: String,
    hash: KeyHash,
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    team: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    endpoints: Vec<String>,
    #[serde(default)]
    expires_at: Option<UnixMillis>,
}

impl From<KeyImport> for NewKey {
    fn from(import: KeyImport) -> Self {
        Self {
            id: import.id,
            name: import.name,
            prefix: import.prefix,
            hash: import.hash,
            team: import.team,
            user: import.user,
            endpoints: import.endpoints,
            expires_at: import.expires_at,
        }
    }
}

/// A provider credential as the admin API receives it, plaintext included. `Debug` shows
/// only its name and kind; the plaintext is wiped on drop.
pub(super) struct CredentialInput {
    name: String,
    secret: SecretInput,
}

enum SecretInput {
    ApiKey(Zeroizing<String>),
    Aws {
        access_key_id: String,
        secret_access_key: Zeroizing<String>,
        session_token: Option<Zeroizing<String>>,
    },
    ServiceAccount(Zeroizing<String>),
}

impl SecretInput {
    fn kind(&self) -> &'static str {
        match self {
            Self::ApiKey(_) => "api_key",
            Self::Aws { .. } => "aws",
            Self::ServiceAccount(_) => "service_account",
        }
    }
}

impl fmt::Debug for CredentialInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialInput")
            .field("name", &self.name)
            .field("kind", &self.secret.kind())
            .finish_non_exhaustive()
    }
}

/// The fields each credential kind takes, besides `name` and `kind`.
const API_KEY_FIELDS: &[&str] = &["api_key"];
const AWS_FIELDS: &[&str] = &["access_key_id", "secret_access_key", "session_token"];
const SERVICE_ACCOUNT_FIELDS: &[&str] = &["service_account"];

/// Reads an object's fields one by one, collecting every problem; never quotes a value.
struct Fields {
    object: Map<String, Value>,
    errors: Vec<FieldError>,
}

impl Fields {
    fn field(name: &str) -> String {
        format!("credential.{name}")
    }

    /// A required non-empty string.
    fn text(&mut self, name: &str) -> Option<Zeroizing<String>> {
        match self.object.remove(name) {
            None | Some(Value::Null) => {
                self.errors
                    .push(FieldError::new(Self::field(name), "is required"));
                None
            }
            Some(value) => self.present_text(name, value),
        }
    }

    /// An optional non-empty string.
    fn optional_text(&mut self, name: &str) -> Option<Zeroizing<String>> {
        match self.object.remove(name) {
            None | Some(Value::Null) => None,
            Some(value) => self.present_text(name, value),
        }
    }

    fn present_text(&mut self, name: &str, value: Value) -> Option<Zeroizing<String>> {
        match value {
            Value::String(text) if !text.trim().is_empty() => Some(Zeroizing::new(text)),
            Value::String(_) => {
                self.errors
                    .push(FieldError::new(Self::field(name), "must not be empty"));
                None
            }
            other => {
                self.errors.push(FieldError::new(
                    Self::field(name),
                    format!("must be a string, not {}", type_name(&other)),
                ));
                None
            }
        }
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl CredentialInput {
    /// Reads `{"name", "kind": "api_key", "api_key"}`,
    /// `{"name", "kind": "aws", "access_key_id", "secret_access_key", "session_token"?}` or
    /// `{"name", "kind": "service_account", "service_account"}` (the key document as JSON
    /// text or as an object), reporting every problem by field, never a value.
    pub(super) fn parse(bytes: &[u8]) -> Result<Self, AdminError> {
        let object = match parse_value(Kind::Credential, bytes)? {
            Value::Object(object) => object,
            other => {
                return Err(AdminError::field(
                    "credential",
                    format!("must be a JSON object, not {}", type_name(&other)),
                ));
            }
        };
        let mut fields = Fields {
            object,
            errors: Vec::new(),
        };
        let name = fields.text("name");
        let kind = fields.text("kind");
        let (secret, allowed) = match kind.as_deref().map(String::as_str) {
            Some("api_key") => (
                fields.text("api_key").map(SecretInput::ApiKey),
                API_KEY_FIELDS,
            ),
            Some("aws") => {
                let access_key_id = fields.text("access_key_id");
                let secret_access_key = fields.text("secret_access_key");
                let session_token = fields.optional_text("session_token");
                let secret = match (access_key_id, secret_access_key) {
                    (Some(access_key_id), Some(secret_access_key)) => Some(SecretInput::Aws {
                        access_key_id: access_key_id.to_string(),
                        secret_access_key,
                        session_token,
                    }),
                    _ => None,
                };
                (secret, AWS_FIELDS)
            }
            Some("service_account") => {
                let document = match fields.object.remove("service_account") {
                    Some(Value::Object(document)) => {
                        Some(Zeroizing::new(Value::Object(document).to_string()))
                    }
                    Some(other) => fields.present_text("service_account", other),
                    None => fields.text("service_account"),
                };
                (
                    document.map(SecretInput::ServiceAccount),
                    SERVICE_ACCOUNT_FIELDS,
                )
            }
            Some(_) => {
                fields.errors.push(FieldError::new(
                    "credential.kind",
                    "must be `api_key`, `aws` or `service_account`",
                ));
                (None, &[][..])
            }
            None => (None, &[][..]),
        };
        if kind.is_some() {
            let leftover: Vec<String> = fields.object.keys().cloned().collect();
            for key in leftover {
                let expected = ["name", "kind"]
                    .iter()
                    .chain(allowed)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ");
                fields.errors.push(FieldError::new(
                    Fields::field(&key),
                    format!("unknown field; expected one of {expected}"),
                ));
            }
        }
        match (name, secret) {
            (Some(name), Some(secret)) if fields.errors.is_empty() => Ok(Self {
                name: name.to_string(),
                secret,
            }),
            _ => Err(AdminError::InvalidArgument {
                errors: fields.errors,
            }),
        }
    }

    /// The credential's name.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// Seals the plaintext under `kek` (the only form that may enter a command).
    pub(super) fn seal(&self, kek: &Kek) -> Result<ProviderCredential, SecretError> {
        match &self.secret {
            SecretInput::ApiKey(key) => ProviderCredential::api_key(kek, &self.name, key),
            SecretInput::Aws {
                access_key_id,
                secret_access_key,
                session_token,
            } => ProviderCredential::aws(
                kek,
                &self.name,
                access_key_id,
                secret_access_key,
                session_token.as_deref().map(String::as_str),
            ),
            SecretInput::ServiceAccount(document) => {
                ProviderCredential::service_account(kek, &self.name, document)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{EndpointSpec, Team};

    const SECRET: &str = "sk-test-SuperSecretValue0123456789";

    fn fields(error: AdminError) -> Vec<FieldError> {
        match error {
            AdminError::InvalidArgument { errors } => errors,
            other => panic!("not a field error: {other:?}"),
        }
    }

    #[test]
    fn type_errors_and_unknown_fields_name_their_path() {
        let json = br#"{"name":"chat","kind":"chat","targets":[{"provider":"mock","model":"m",
            "api_base":null,"credential":"none","weight":"heavy","max_tokens":null,"price":null}]}"#;
        let errors = fields(decode_strict::<EndpointSpec>(Kind::Endpoint, json).unwrap_err());
        assert_eq!(errors[0].field, "endpoint.targets[0].weight");

        let json = br#"{"name":"chat","kind":"chat","targets":[{"provider":"mock","model":"m",
            "credential":"none","weight":1,"max_token":5}],"fallback":[]}"#;
        let errors = fields(decode_strict::<EndpointSpec>(Kind::Endpoint, json).unwrap_err());
        let paths: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            paths,
            ["endpoint.fallback", "endpoint.targets[0].max_token"],
            "{errors:?}"
        );

        let errors = fields(decode_strict::<Team>(Kind::Team, b"{\"id\": ").unwrap_err());
        assert_eq!(errors[0].field, "team");
        assert!(errors[0].reason.starts_with("malformed JSON"));
        let team: Team = decode_strict(Kind::Team, br#"{"id":"t","name":"T"}"#).unwrap();
        assert_eq!(team.id, "t");
    }

    #[test]
    fn credential_input_errors_never_quote_values() {
        let json = format!(
            r#"{{"name":"openai","kind":"api_key","api_key":"{SECRET}","secret":"{SECRET}"}}"#
        );
        let error = CredentialInput::parse(json.as_bytes()).unwrap_err();
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains("SuperSecret"), "{shown}");
        assert_eq!(fields(error)[0].field, "credential.secret");

        let json = format!(r#"{{"name":"aws","kind":"aws","access_key_id":7,"x":"{SECRET}"}}"#);
        let errors = fields(CredentialInput::parse(json.as_bytes()).unwrap_err());
        let paths: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            paths,
            [
                "credential.access_key_id",
                "credential.secret_access_key",
                "credential.x"
            ]
        );

        let json = format!(r#"{{"name":"k","kind":"api_key","api_key":"{SECRET}"}}"#);
        let input = CredentialInput::parse(json.as_bytes()).unwrap();
        assert!(!format!("{input:?}").contains("SuperSecret"));
        let kek = Kek::from_bytes(1, &[3; 32]).unwrap();
        let sealed = input.seal(&kek).unwrap();
        assert_eq!(sealed.masked().masked, "sk-test-…6789");

        let document = br#"{"name":"v","kind":"service_account","service_account":{"type":"service_account"}}"#;
        assert!(CredentialInput::parse(document).is_ok());
    }
}
