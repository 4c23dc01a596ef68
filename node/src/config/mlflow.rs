//! MLflow 2.x gateway endpoint entries (`mlflow gateway start --config-path`), read as they
//! are and turned into native [`RawEndpoint`]s.
//!
//! An MLflow entry is recognised by its `endpoint_type` (or the older `route_type`) key.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::raw::{RawAzure, RawCredentials, RawEndpoint, RawRateLimit, RawTarget, RawTimeouts};

/// One MLflow 2.x endpoint (or route, for MLflow ≤ 2.7 files).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlflowEndpoint {
    /// Endpoint name.
    pub name: String,
    /// `llm/v1/chat`, `llm/v1/completions` or `llm/v1/embeddings`.
    #[serde(alias = "route_type")]
    pub endpoint_type: String,
    /// The one model behind the endpoint.
    pub model: MlflowModel,
    /// Optional rate limit.
    #[serde(default)]
    pub limit: Option<RawRateLimit>,
}

/// MLflow's `model` block.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlflowModel {
    /// MLflow provider name.
    pub provider: String,
    /// Provider model name.
    pub name: String,
    /// Provider-specific keys (`openai_api_key`, ...).
    #[serde(default)]
    pub config: Map<String, Value>,
}

/// True when a raw endpoint entry is written in MLflow's form.
pub fn is_mlflow_entry(entry: &Value) -> bool {
    entry.get("endpoint_type").is_some() || entry.get("route_type").is_some()
}

/// Why an MLflow entry cannot be served.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MlflowError {
    /// A provider Floodgate does not speak yet.
    #[error(
        "provider `{0}` is not supported yet (supported in MLflow files: openai, azure, mistral, togetherai)"
    )]
    UnsupportedProvider(String),
    /// An `endpoint_type` outside `llm/v1/*`.
    #[error(
        "unknown endpoint_type `{0}` (expected llm/v1/chat, llm/v1/completions or llm/v1/embeddings)"
    )]
    UnknownType(String),
    /// A config key that is not a string, or unknown for the provider.
    #[error("model.config.{key}: {problem}")]
    ConfigKey {
        /// The key.
        key: String,
        /// What is wrong.
        problem: &'static str,
    },
}

impl MlflowEndpoint {
    /// The equivalent native endpoint.
    pub fn into_native(self) -> Result<RawEndpoint, MlflowError> {
        let kind = match self.endpoint_type.as_str() {
            "llm/v1/chat" => "chat",
            "llm/v1/completions" => "completions",
            "llm/v1/embeddings" => "embeddings",
            other => return Err(MlflowError::UnknownType(other.to_owned())),
        };
        let target = self.model.into_target()?;
        Ok(RawEndpoint {
            name: self.name,
            kind: kind.to_owned(),
            targets: vec![target],
            fallbacks: Vec::new(),
            routing: Default::default(),
            rate_limit: self.limit,
            timeouts: RawTimeouts::default(),
            payload_capture: None,
        })
    }
}

impl MlflowModel {
    fn into_target(self) -> Result<RawTarget, MlflowError> {
        let mut config = ConfigKeys(self.config);
        let target = match self.provider.as_str() {
            "openai" | "azure" => {
                let api_type = config
                    .take("openai_api_type")?
                    .unwrap_or_else(|| self.provider.clone());
                let key = config.take("openai_api_key")?;
                let base = config.take("openai_api_base")?;
                let version = config.take("openai_api_version")?;
                let deployment = config.take("openai_deployment_name")?;
                let organization = config.take("openai_organization")?;
                let azure = match api_type.as_str() {
                    "openai" => None,
                    "azure" | "azuread" => Some(RawAzure {
                        deployment,
                        api_version: version.unwrap_or_default(),
                        auth: Some(
                            if api_type == "azuread" {
                                "bearer"
                            } else {
                                "api_key"
                            }
                            .into(),
                        ),
                    }),
                    _ => {
                        return Err(MlflowError::ConfigKey {
                            key: "openai_api_type".into(),
                            problem: "must be openai, azure or azuread",
                        });
                    }
                };
                RawTarget {
                    provider: if azure.is_some() { "azure" } else { "openai" }.to_owned(),
                    model: self.name,
                    api_base: base,
                    credentials: credentials(key),
                    azure,
                    organization,
                    ..RawTarget::default()
                }
            }
            "mistral" | "togetherai" | "anthropic" | "cohere" | "gemini" => {
                let prefix = self.provider.clone();
                let key = config.take(&format!("{prefix}_api_key"))?;
                RawTarget {
                    provider: self.provider,
                    model: self.name,
                    credentials: credentials(key),
                    ..RawTarget::default()
                }
            }
            "bedrock" | "amazon-bedrock" => {
                let aws = config.take_map("aws_config")?;
                let mut aws = ConfigKeys(aws);
                let region = aws.take("aws_region")?;
                let credentials = RawCredentials {
                    aws_access_key_id: aws.take("aws_access_key_id")?,
                    aws_secret_access_key: aws.take("aws_secret_access_key")?,
                    aws_session_token: aws.take("aws_session_token")?,
                    ..RawCredentials::default()
                };
                aws.finish_in("aws_config")?;
                RawTarget {
                    provider: "bedrock".to_owned(),
                    model: self.name,
                    region,
                    credentials,
                    ..RawTarget::default()
                }
            }
            other => return Err(MlflowError::UnsupportedProvider(other.to_owned())),
        };
        config.finish()?;
        Ok(target)
    }
}

fn credentials(key: Option<String>) -> RawCredentials {
    RawCredentials {
        api_key: key.map(read_key_file),
        ..RawCredentials::default()
    }
}

/// MLflow accepts a key, an env reference (already expanded) or a path to a file holding the
/// key; a value naming an existing file is read.
fn read_key_file(value: String) -> String {
    let path = std::path::Path::new(&value);
    if value.len() < 4096
        && path.is_file()
        && let Ok(contents) = std::fs::read_to_string(path)
    {
        return contents.trim().to_owned();
    }
    value
}

/// The `config` map, consumed key by key so leftovers can be reported.
struct ConfigKeys(Map<String, Value>);

impl ConfigKeys {
    fn take(&mut self, key: &str) -> Result<Option<String>, MlflowError> {
        match self.0.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(MlflowError::ConfigKey {
                key: key.to_owned(),
                problem: "must be a string",
            }),
        }
    }

    fn take_map(&mut self, key: &str) -> Result<Map<String, Value>, MlflowError> {
        match self.0.remove(key) {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(map)) => Ok(map),
            Some(_) => Err(MlflowError::ConfigKey {
                key: key.to_owned(),
                problem: "must be a mapping",
            }),
        }
    }

    fn finish(self) -> Result<(), MlflowError> {
        self.finish_in("")
    }

    fn finish_in(self, parent: &str) -> Result<(), MlflowError> {
        match self.0.keys().next() {
            None => Ok(()),
            Some(key) if parent.is_empty() => Err(MlflowError::ConfigKey {
                key: key.clone(),
                problem: "unknown key for this provider",
            }),
            Some(key) => Err(MlflowError::ConfigKey {
                key: format!("{parent}.{key}"),
                problem: "unknown key for this provider",
            }),
        }
    }
}
