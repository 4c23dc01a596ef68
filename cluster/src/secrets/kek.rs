//! Key-encryption keys (KEKs): where they come from (32 raw bytes, base64 text such as the
//! `FLOODGATE_KEK` variable, or a passphrase through Argon2id) and the keyring of versions
//! that rotation needs (one current version that wraps, older ones that only unwrap).
//!
//! A KEK never leaves this module in any form: no `Debug` output, no serialization, no error
//! message holds a byte of it. Reading the environment is the caller's job.

use std::collections::BTreeMap;
use std::fmt;

use aes_gcm::{Aes256Gcm, KeyInit};
use base64::Engine as _;
use zeroize::Zeroizing;

use super::SecretError;

/// The environment variable that conventionally holds the KEK, as base64 of 32 bytes.
pub const KEK_ENV_VAR: &str = "FLOODGATE_KEK";

/// Shortest salt accepted for passphrase derivation.
pub const MIN_SALT_LEN: usize = 16;

/// One version of the key-encryption key: an AES-256-GCM key that wraps the per-secret
/// data keys. Its bytes are wiped when it is dropped.
#[derive(Clone)]
pub struct Kek {
    version: u32,
    cipher: Aes256Gcm,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Kek {
    /// A KEK from 32 raw bytes. `version` is recorded in every secret it wraps, so a
    /// rotated cluster can still tell which KEK opens which secret; it must be at least 1.
    pub fn from_bytes(version: u32, bytes: &[u8]) -> Result<Self, SecretError> {
        if version == 0 {
            return Err(SecretError::BadKekVersion { version });
        }
        let cipher = Aes256Gcm::new_from_slice(bytes)
            .map_err(|_| SecretError::BadKekLength { len: bytes.len() })?;
        Ok(Self { version, cipher })
    }

    /// A KEK from base64 (standard or URL-safe alphabet, padded or not) of 32 bytes, the
    /// form `FLOODGATE_KEK` holds. The error never echoes the text.
    pub fn from_base64(version: u32, text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        let decoded = [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .map(Zeroizing::new)
        .ok_or(SecretError::BadKekEncoding)?;
        Self::from_bytes(version, &decoded)
    }

    /// A KEK derived from a passphrase with Argon2id (19 MiB, 2 passes, 1 lane: the
    /// RustCrypto defaults, which follow OWASP's recommendation). Every ledger member must
    /// derive the same KEK, so the salt is fixed per cluster (for example its cluster id),
    /// at least [`MIN_SALT_LEN`] bytes, and stored next to the data, not secret.
    pub fn derive(version: u32, passphrase: &str, salt: &[u8]) -> Result<Self, SecretError> {
        if passphrase.is_empty() {
            return Err(SecretError::EmptyPassphrase);
        }
        if salt.len() < MIN_SALT_LEN {
            return Err(SecretError::SaltTooShort {
                len: salt.len(),
                min: MIN_SALT_LEN,
            });
        }
        let mut key = Zeroizing::new([0u8; 32]);
        argon2::Argon2::default()
            .hash_password_into(passphrase.as_bytes(), salt, key.as_mut())
            .map_err(|e| SecretError::KeyDerivation {
                reason: e.to_string(),
            })?;
        Self::from_bytes(version, key.as_ref())
    }

    /// Generates a fresh random KEK (for `dev`'s local key file, and tests). Returns the
    /// KEK and its base64 text, which the caller stores once and never logs.
    pub fn generate(version: u32) -> Result<(Self, Zeroizing<String>), SecretError> {
        let bytes = Zeroizing::new(super::random_bytes::<32>()?);
        let text = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(bytes.as_ref()));
        Ok((Self::from_bytes(version, bytes.as_ref())?, text))
    }

    /// The version recorded in the secrets this KEK wraps.
    pub fn version(&self) -> u32 {
        self.version
    }

    pub(super) fn cipher(&self) -> &Aes256Gcm {
        &self.cipher
    }
}

/// The KEKs a node knows: the current one, which wraps new and rotated secrets, and older
/// versions kept only to unwrap secrets not yet rotated.
#[derive(Debug, Clone)]
pub struct Keyring {
    current: Kek,
    previous: BTreeMap<u32, Kek>,
}

impl Keyring {
    /// A keyring whose current (and only) KEK is `kek`.
    pub fn new(kek: Kek) -> Self {
        Self {
            current: kek,
            previous: BTreeMap::new(),
        }
    }

    /// Adds an older KEK, used only to unwrap secrets sealed under its version.
    pub fn with_previous(mut self, kek: Kek) -> Result<Self, SecretError> {
        let version = kek.version();
        if self.has(version) {
            return Err(SecretError::DuplicateKekVersion { version });
        }
        self.previous.insert(version, kek);
        Ok(self)
    }

    /// Makes `kek` the current KEK (the one that wraps from now on), keeping the previous
    /// current one for unwrapping. Its version must be new.
    pub fn rotate_to(mut self, kek: Kek) -> Result<Self, SecretError> {
        let version = kek.version();
        if self.has(version) {
            return Err(SecretError::DuplicateKekVersion { version });
        }
        let old = std::mem::replace(&mut self.current, kek);
        self.previous.insert(old.version(), old);
        Ok(self)
    }

    /// The KEK that wraps.
    pub fn current(&self) -> &Kek {
        &self.current
    }

    /// The KEK of `version`, if this keyring has it.
    pub fn get(&self, version: u32) -> Result<&Kek, SecretError> {
        if self.current.version() == version {
            return Ok(&self.current);
        }
        self.previous
            .get(&version)
            .ok_or_else(|| SecretError::UnknownKekVersion {
                version,
                known: self.versions(),
            })
    }

    /// Versions held, in ascending order.
    pub fn versions(&self) -> Vec<u32> {
        let mut versions: Vec<u32> = self.previous.keys().copied().collect();
        versions.push(self.current.version());
        versions.sort_unstable();
        versions
    }

    fn has(&self, version: u32) -> bool {
        self.current.version() == version || self.previous.contains_key(&version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_and_base64_keys() {
        assert!(Kek::from_bytes(1, &[7u8; 32]).is_ok());
        assert_eq!(
            Kek::from_bytes(1, &[7u8; 16]).unwrap_err(),
            SecretError::BadKekLength { len: 16 }
        );
        assert_eq!(
            Kek::from_bytes(0, &[7u8; 32]).unwrap_err(),
            SecretError::BadKekVersion { version: 0 }
        );
        let text = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        assert_eq!(Kek::from_base64(3, &text).unwrap().version(), 3);
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xffu8; 32]);
        assert!(Kek::from_base64(3, &format!("  {url}\n")).is_ok());
        assert_eq!(
            Kek::from_base64(1, "not base64!").unwrap_err(),
            SecretError::BadKekEncoding
        );
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let kek = Kek::from_bytes(2, &[0xab; 32]).unwrap();
        let shown = format!("{kek:?} {:?}", Keyring::new(kek.clone()));
        assert!(shown.contains("version: 2"));
        assert!(!shown.to_lowercase().contains("ab, ab") && !shown.contains("171"));
    }

    #[test]
    fn passphrase_derivation_is_deterministic_and_salted() {
        let salt = b"cluster-0123456789";
        let a = Kek::derive(1, "correct horse battery staple", salt).unwrap();
        let b = Kek::derive(1, "correct horse battery staple", salt).unwrap();
        let sealed = super::super::seal(&a, "ctx", "sk-test-1234567890").unwrap();
        assert!(super::super::open(&Keyring::new(b), "ctx", &sealed).is_ok());
        let other = Kek::derive(1, "correct horse battery staple", b"another-salt-000000").unwrap();
        assert!(super::super::open(&Keyring::new(other), "ctx", &sealed).is_err());
        assert_eq!(
            Kek::derive(1, "pw", b"short").unwrap_err(),
            SecretError::SaltTooShort { len: 5, min: 16 }
        );
        assert_eq!(
            Kek::derive(1, "", salt).unwrap_err(),
            SecretError::EmptyPassphrase
        );
    }

    #[test]
    fn keyring_versions() {
        let v1 = Kek::from_bytes(1, &[1; 32]).unwrap();
        let v2 = Kek::from_bytes(2, &[2; 32]).unwrap();
        let ring = Keyring::new(v1.clone()).rotate_to(v2.clone()).unwrap();
        assert_eq!(ring.current().version(), 2);
        assert_eq!(ring.versions(), vec![1, 2]);
        assert_eq!(
            ring.clone().with_previous(v1).unwrap_err(),
            SecretError::DuplicateKekVersion { version: 1 }
        );
        assert_eq!(
            ring.get(9).unwrap_err(),
            SecretError::UnknownKekVersion {
                version: 9,
                known: vec![1, 2]
            }
        );
        let (generated, text) = Kek::generate(5).unwrap();
        assert_eq!(generated.version(), 5);
        assert!(Kek::from_base64(5, &text).is_ok());
    }
}
