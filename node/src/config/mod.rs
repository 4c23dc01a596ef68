//! Configuration: YAML file → JSON value → environment references expanded → raw serde types
//! (`deny_unknown_fields`, MLflow 2.x endpoint entries accepted as they are) → `validate()` →
//! the typed [`Config`]. Every error names the field path and the problem, and is scrubbed of
//! any value that came from the environment.

mod budgets;
mod endpoint;
mod env;
pub mod events;
pub mod ledger;
mod mlflow;
mod model;
pub mod payloads;
mod raw;
mod target;
mod validate;
pub mod watch;

use std::path::{Path, PathBuf};

pub use env::{Env, ProcessEnv};
pub use model::{
    Auth, AzureTarget, Balance, Config, Credentials, EjectionPolicy, Endpoint, EndpointKind,
    GatewayKeys, KeyInfo, Limits, RateLimit, RetryPolicy, Routing, StickyKey, Target, Timeouts,
};

use serde_json::Value;

/// The built-in configuration of `floodgate dev`.
pub const DEV_CONFIG: &str = include_str!("dev.yaml");

/// Which command the config is loaded for; `serve` requires authentication unless the file
/// says `auth: none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `floodgate dev`: no auth by default.
    Dev,
    /// `floodgate serve` from a file alone: keys required unless `auth: none`.
    Serve,
    /// `floodgate serve` with a ledger: keys required unless `auth: none`, and the file
    /// need not list any, as the ledger holds them.
    Ledger,
}

/// Why a config could not be loaded. Messages never contain environment-supplied values.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not valid YAML.
    #[error("invalid YAML: {0}")]
    Syntax(String),
    /// A field is wrong.
    #[error("{path}: {message}")]
    Field {
        /// Dotted path to the field (`endpoints[0].targets[1].weight`).
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Several fields are wrong.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Many(Vec<ConfigError>),
}

impl ConfigError {
    pub(crate) fn field(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Field {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Replaces every occurrence of a secret in the message with `***`.
    fn scrub(self, secrets: &[String]) -> Self {
        let clean = |text: String| {
            secrets.iter().fold(text, |text, secret| {
                // serde quotes values with `{:?}`, which escapes `"`, `\` and control
                // characters: scrub that spelling too.
                let quoted = format!("{secret:?}");
                let escaped = &quoted[1..quoted.len() - 1];
                text.replace(secret.as_str(), "***").replace(escaped, "***")
            })
        };
        match self {
            Self::Syntax(message) => Self::Syntax(clean(message)),
            Self::Field { path, message } => Self::Field {
                path,
                message: clean(message),
            },
            Self::Many(all) => Self::Many(all.into_iter().map(|e| e.scrub(secrets)).collect()),
            other => other,
        }
    }
}

/// Reads and validates a config file.
pub fn load_file(path: &Path, mode: Mode, env: &dyn Env) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    load_str(&text, mode, env)
}

/// Parses and validates config text.
pub fn load_str(text: &str, mode: Mode, env: &dyn Env) -> Result<Config, ConfigError> {
    let (value, secrets) = expand(text, env)?;
    let parsed = parse(value).and_then(|raw| validate::validate(raw, mode));
    parsed.map_err(|e| e.scrub(&secrets))
}

/// YAML text → JSON value with environment references expanded, and the values that came
/// from the environment (to scrub from errors).
fn expand(text: &str, env: &dyn Env) -> Result<(Value, Vec<String>), ConfigError> {
    // YAML 1.2 booleans only: `n`, `yes` or `off` stay strings (an endpoint may be named
    // `n`), as no config field is a boolean written any other way.
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    let mut value: Value = serde_saphyr::from_str_with_options(text, options)
        .map_err(|e| ConfigError::Syntax(e.to_string()))?;
    if value.is_null() {
        value = Value::Object(Default::default());
    }
    let secrets = env::interpolate(&mut value, env)?;
    Ok((value, secrets))
}

fn parse(value: Value) -> Result<raw::RawConfig, ConfigError> {
    from_value(value, "")
}

/// Deserializes with the failing field's path in the error.
fn from_value<T: serde::de::DeserializeOwned>(
    value: Value,
    prefix: &str,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let path = match (prefix.is_empty(), inner == ".") {
            (true, _) => inner,
            (false, true) => prefix.to_owned(),
            (false, false) => format!("{prefix}.{inner}"),
        };
        ConfigError::field(path, e.into_inner().to_string())
    })
}
