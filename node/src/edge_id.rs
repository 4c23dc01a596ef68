//! This edge's id, stamped on its usage events and its quota leases. It stays the same
//! across restarts, so an operator can follow one edge through its traces: given with
//! `--edge-id` (or `FLOODGATE_EDGE_ID`), else read from the file [`FILE`] in the edge's data
//! dir, where the first start writes a new one (`edge-<uuid>`); with no data dir at all, a
//! new id per process.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// The file in the data dir that keeps the id.
pub const FILE: &str = "edge-id";

/// The environment variable that gives the id (like `--edge-id`).
pub const ENV: &str = "FLOODGATE_EDGE_ID";

/// Why the edge id could not be settled.
#[derive(Debug, thiserror::Error)]
pub enum EdgeIdError {
    /// The given id is not usable.
    #[error("edge id `{0}` must be 1 to 128 characters of [A-Za-z0-9_.@+:-]")]
    Invalid(String),
    /// The id file exists but does not hold a usable id.
    #[error("{}: not a valid edge id (fix or delete the file)", .0.display())]
    Corrupt(PathBuf),
    /// The id file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Whether `id` is usable: the ledger's id rule, as leases carry it.
fn valid(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '+' | ':' | '-'))
}

/// A new id (`edge-` and a UUIDv7).
pub fn generate() -> String {
    format!("edge-{}", uuid::Uuid::now_v7().simple())
}

/// The edge's id: `given` if any, else the one kept in `dir` (written there on first use),
/// else a new one.
pub fn resolve(given: Option<&str>, dir: Option<&Path>) -> Result<String, EdgeIdError> {
    match (given, dir) {
        (Some(id), _) if valid(id) => Ok(id.to_owned()),
        (Some(id), _) => Err(EdgeIdError::Invalid(id.to_owned())),
        (None, Some(dir)) => kept(dir),
        (None, None) => Ok(generate()),
    }
}

/// The id in `dir`'s [`FILE`], made and written (atomically, by a rename) if absent.
fn kept(dir: &Path) -> Result<String, EdgeIdError> {
    let path = dir.join(FILE);
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| EdgeIdError::Io { path, source }
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            if valid(id) {
                Ok(id.to_owned())
            } else {
                Err(EdgeIdError::Corrupt(path))
            }
        }
        Err(error) if error.kind() == ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
            let id = generate();
            let partial = dir.join(format!("{FILE}.partial"));
            std::fs::write(&partial, format!("{id}\n")).map_err(io(&partial))?;
            std::fs::rename(&partial, &path).map_err(io(&path))?;
            Ok(id)
        }
        Err(source) => Err(EdgeIdError::Io { path, source }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_given_id_wins_and_must_be_valid() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            resolve(Some("edge-eu-1"), Some(dir.path())).unwrap(),
            "edge-eu-1"
        );
        assert!(!dir.path().join(FILE).exists(), "a given id is not kept");
        let error = resolve(Some("has space"), None).unwrap_err();
        assert!(error.to_string().contains("has space"), "{error}");
        assert!(resolve(Some(""), None).is_err());
        assert!(resolve(Some(&"x".repeat(129)), None).is_err());
    }

    #[test]
    fn the_first_start_writes_an_id_that_later_starts_read() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("data");
        let first = resolve(None, Some(&nested)).unwrap();
        assert!(first.starts_with("edge-") && valid(&first), "{first}");
        assert_eq!(resolve(None, Some(&nested)).unwrap(), first);
        assert!(!nested.join(format!("{FILE}.partial")).exists());
        assert_ne!(resolve(None, None).unwrap(), first);
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), "not valid!\n").unwrap();
        let error = resolve(None, Some(dir.path())).unwrap_err();
        assert!(error.to_string().contains(FILE), "{error}");
    }
}
