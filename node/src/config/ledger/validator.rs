//! [`EdgeValidator`]: the ledger admin API's endpoint check, done by the edge's own config
//! validation, so an endpoint no edge could serve (an unknown provider, bad options, a
//! routing mistake) is refused by field at write time instead of being accepted and then
//! skipped by every edge.

use floodgate_cluster::LedgerState;
use floodgate_cluster::admin::{EndpointValidator, FieldError};
use floodgate_cluster::ledger::EndpointSpec;
use floodgate_cluster::secrets::Keyring;

use super::super::ConfigError;
use super::super::model::Config;
use super::check_endpoint;

/// Checks endpoints as an edge with this member's keyring and local settings would.
#[derive(Debug)]
pub struct EdgeValidator {
    keyring: Option<Keyring>,
    local: Config,
}

impl EdgeValidator {
    /// A validator opening stored credentials with `keyring` (without one, endpoints using
    /// a stored credential are refused, as an edge without the key would refuse them) and
    /// taking default timeouts from `local`.
    pub fn new(keyring: Option<Keyring>, local: Config) -> Self {
        Self { keyring, local }
    }
}

impl EndpointValidator for EdgeValidator {
    fn check(&self, spec: &EndpointSpec, state: &LedgerState) -> Result<(), Vec<FieldError>> {
        check_endpoint(spec, state, self.keyring.as_ref(), &self.local).map_err(field_errors)
    }
}

/// The config error's problems as admin field errors; the path drops the
/// `endpoints.<name>` prefix for `endpoint`, the admin API's name for the object.
fn field_errors(error: ConfigError) -> Vec<FieldError> {
    match error {
        ConfigError::Many(all) => all.into_iter().flat_map(field_errors).collect(),
        ConfigError::Field { path, message } => {
            let field = match path.split_once('.') {
                Some(("endpoints", rest)) => match rest.split_once(['.', '[']) {
                    Some((_, tail)) if rest.as_bytes()[rest.len() - tail.len() - 1] == b'[' => {
                        format!("endpoint[{tail}")
                    }
                    Some((_, tail)) => format!("endpoint.{tail}"),
                    None => "endpoint".to_owned(),
                },
                _ => path,
            };
            vec![FieldError {
                field,
                reason: message,
            }]
        }
        other => vec![FieldError {
            field: "endpoint".into(),
            reason: other.to_string(),
        }],
    }
}
