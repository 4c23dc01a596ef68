//! The config file and the ledger: what a file declares becomes ledger commands
//! ([`declare_file`]), and the ledger's state becomes the config an edge serves
//! ([`edge_config`]). Both go through the same validation as a file, so an object means
//! the same thing whether it was written in YAML or created through the admin API.

mod declare;
mod edge_view;
mod validator;

pub use edge_view::{check_endpoint, edge_config};
pub use validator::EdgeValidator;

use floodgate_cluster::ledger::{Command, LedgerState};
use floodgate_cluster::secrets::Keyring;

use super::{ConfigError, Env, Mode, expand, parse, validate};

/// The ledger commands (one atomic batch) that make the ledger hold what the config text
/// declares, or `None` when it already does. The text is validated in full first;
/// errors never contain environment-supplied values or secrets.
pub fn declare_file(
    text: &str,
    mode: Mode,
    env: &dyn Env,
    state: &LedgerState,
    keyring: Option<&Keyring>,
) -> Result<Option<Command>, ConfigError> {
    let (value, secrets) = expand(text, env)?;
    let declared = parse(value.clone())
        .and_then(|raw| validate::validate(raw, mode))
        .and_then(|_| parse(value))
        .and_then(|raw| declare::declare(raw, state, keyring));
    declared.map_err(|e| e.scrub(&secrets))
}

#[cfg(test)]
mod tests;
