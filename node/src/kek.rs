//! Where this node's key-encryption key comes from: `FLOODGATE_KEK` (base64 of 32 bytes,
//! version from `FLOODGATE_KEK_VERSION`, default 1), or — for `floodgate dev` only — a local
//! key file in the data dir, created on first start with a warning. The key never appears
//! in a log line or an error.

use std::io::Write;
use std::path::{Path, PathBuf};

use floodgate_cluster::secrets::{KEK_ENV_VAR, Kek, Keyring, SecretError};

use crate::config::Env;

/// The variable holding the KEK's version number.
pub const KEK_VERSION_VAR: &str = "FLOODGATE_KEK_VERSION";

/// The dev key file's name inside the data dir.
const DEV_KEY_FILE: &str = "dev-kek";

/// Why no key-encryption key could be had.
#[derive(Debug, thiserror::Error)]
pub enum KekError {
    /// The variable or file does not hold a usable key.
    #[error("{source_name} does not hold a usable key-encryption key: {error}")]
    Invalid {
        /// `FLOODGATE_KEK` or the file's path.
        source_name: String,
        /// Why (never the key).
        error: SecretError,
    },
    /// `FLOODGATE_KEK_VERSION` is not a positive integer.
    #[error("{KEK_VERSION_VAR} must be a positive integer")]
    Version,
    /// The dev key file could not be read or written.
    #[error("cannot use the dev key file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The keyring from `FLOODGATE_KEK`, or `None` when the variable is unset.
pub fn from_env(env: &dyn Env) -> Result<Option<Keyring>, KekError> {
    let Some(text) = env.get(KEK_ENV_VAR) else {
        return Ok(None);
    };
    let version = match env.get(KEK_VERSION_VAR) {
        None => 1,
        Some(v) => v
            .trim()
            .parse()
            .ok()
            .filter(|v| *v > 0)
            .ok_or(KekError::Version)?,
    };
    let kek = Kek::from_base64(version, &text).map_err(|error| KekError::Invalid {
        source_name: KEK_ENV_VAR.to_owned(),
        error,
    })?;
    Ok(Some(Keyring::new(kek)))
}

/// `FLOODGATE_KEK` if set, else the dev key file in `data_dir` (created, mode 0600, with a
/// warning, when missing).
pub fn for_dev(env: &dyn Env, data_dir: &Path) -> Result<Keyring, KekError> {
    if let Some(keyring) = from_env(env)? {
        return Ok(keyring);
    }
    let path = data_dir.join(DEV_KEY_FILE);
    let file_error = |source| KekError::File {
        path: path.clone(),
        source,
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => zeroize::Zeroizing::new(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (_, text) = Kek::generate(1).map_err(|error| KekError::Invalid {
                source_name: "a fresh key".to_owned(),
                error,
            })?;
            std::fs::create_dir_all(data_dir).map_err(file_error)?;
            write_private(&path, text.as_bytes()).map_err(file_error)?;
            tracing::warn!(
                path = %path.display(),
                "no {KEK_ENV_VAR} set: created a local key file to seal provider credentials; \
                 for production set {KEK_ENV_VAR} and keep it out of the data dir"
            );
            text
        }
        Err(e) => return Err(file_error(e)),
    };
    let kek = Kek::from_base64(1, &text).map_err(|error| KekError::Invalid {
        source_name: path.display().to_string(),
        error,
    })?;
    Ok(Keyring::new(kek))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoEnv;
    impl Env for NoEnv {
        fn get(&self, _: &str) -> Option<String> {
            None
        }
    }

    #[test]
    fn dev_creates_a_private_key_file_once_and_reuses_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = for_dev(&NoEnv, dir.path()).unwrap();
        let path = dir.path().join(DEV_KEY_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let sealed = floodgate_cluster::secrets::seal(first.current(), "c", "sk-secret").unwrap();
        let second = for_dev(&NoEnv, dir.path()).unwrap();
        let opened = floodgate_cluster::secrets::open(&second, "c", &sealed).unwrap();
        assert_eq!(opened.expose(), "sk-secret");
    }

    #[test]
    fn a_bad_variable_is_an_error_that_does_not_echo_it() {
        struct Bad;
        impl Env for Bad {
            fn get(&self, name: &str) -> Option<String> {
                (name == KEK_ENV_VAR).then(|| "not-a-key-SECRETTEXT".to_owned())
            }
        }
        let error = from_env(&Bad).unwrap_err().to_string();
        assert!(!error.contains("SECRETTEXT"), "{error}");
    }
}
