//! Envelope encryption of provider credentials, done **before** a credential enters a
//! ledger command, so the Raft log, snapshots and sled files only ever hold ciphertext.
//!
//! Each secret gets its own random AES-256-GCM data key; the data key is wrapped (also
//! AES-256-GCM) by a key-encryption key ([`Kek`]) whose version is recorded in the
//! [`SealedSecret`]. Rotation ([`rewrap`]) re-wraps the data key under the current KEK
//! without touching the secret's ciphertext. Both layers bind associated data — the
//! context (e.g. the credential's name and field), the KEK version and the masked form —
//! so a sealed value moved to another credential, or edited in place, no longer opens.
//!
//! The only plaintext view anything outside the edge's upstream call should use is
//! [`mask`] (`sk-…abcd`). This module never logs, and no error here carries secret bytes.

mod kek;

use std::fmt;

use aes_gcm::aead::{Aead, Generate, Payload};
use aes_gcm::{Aes256Gcm, KeyInit};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub use kek::{KEK_ENV_VAR, Kek, Keyring, MIN_SALT_LEN};

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const DATA_KEY_LEN: usize = 32;

/// Why a secret could not be sealed, opened or re-wrapped, or a KEK not built. Values
/// explain the failure; none is ever secret material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// KEK versions start at 1.
    #[error("key-encryption key version {version} is invalid (versions start at 1)")]
    BadKekVersion {
        /// The version given.
        version: u32,
    },
    /// The KEK is not 32 bytes.
    #[error("key-encryption key must be 32 bytes, got {len}")]
    BadKekLength {
        /// Bytes given.
        len: usize,
    },
    /// The KEK text is not base64.
    #[error("key-encryption key is not valid base64 (expected base64 of 32 bytes)")]
    BadKekEncoding,
    /// No passphrase to derive from.
    #[error("passphrase is empty")]
    EmptyPassphrase,
    /// The salt for passphrase derivation is too short.
    #[error("salt is {len} bytes; at least {min} are needed")]
    SaltTooShort {
        /// Bytes given.
        len: usize,
        /// Bytes needed.
        min: usize,
    },
    /// Argon2id refused its input.
    #[error("deriving the key-encryption key failed: {reason}")]
    KeyDerivation {
        /// Argon2's reason.
        reason: String,
    },
    /// Two KEKs of one version in a keyring.
    #[error("key-encryption key version {version} is already in the keyring")]
    DuplicateKekVersion {
        /// The repeated version.
        version: u32,
    },
    /// A secret was sealed under a KEK version this node does not have.
    #[error("no key-encryption key of version {version} (this node has {known:?})")]
    UnknownKekVersion {
        /// Version the secret needs.
        version: u32,
        /// Versions available.
        known: Vec<u32>,
    },
    /// Authentication failed: the wrong KEK, the wrong context, or tampered bytes.
    #[error(
        "secret `{context}` does not open ({part} failed authentication: wrong key-encryption key \
         v{kek_version}, wrong context, or tampered data)"
    )]
    Undecryptable {
        /// What the secret belongs to.
        context: String,
        /// KEK version tried.
        kek_version: u32,
        /// `data key` or `secret`.
        part: &'static str,
    },
    /// A sealed field has the wrong length.
    #[error("secret `{context}`: {field} is {len} bytes, which no sealed secret has")]
    Malformed {
        /// What the secret belongs to.
        context: String,
        /// The malformed field.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// The opened bytes are not UTF-8 text.
    #[error("secret `{context}` is not UTF-8 text")]
    NotUtf8 {
        /// What the secret belongs to.
        context: String,
    },
    /// Nothing to seal.
    #[error("secret `{context}` is empty")]
    Empty {
        /// What the secret belongs to.
        context: String,
    },
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed: {reason}")]
    Rng {
        /// The OS error.
        reason: String,
    },
    /// AES-GCM refused to encrypt (only for inputs beyond its 64 GiB limit).
    #[error("encrypting secret `{context}` failed")]
    Encrypt {
        /// What the secret belongs to.
        context: String,
    },
}

/// A provider secret as the ledger stores it: ciphertext, its wrapped data key, the KEK
/// version that wraps it, and the masked form shown by APIs. Serializes byte fields as
/// base64 text; holds no plaintext.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    kek_version: u32,
    #[serde(with = "b64")]
    wrapped_key: Vec<u8>,
    #[serde(with = "b64")]
    key_nonce: Vec<u8>,
    #[serde(with = "b64")]
    nonce: Vec<u8>,
    #[serde(with = "b64")]
    ciphertext: Vec<u8>,
    masked: String,
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedSecret")
            .field("kek_version", &self.kek_version)
            .field("masked", &self.masked)
            .finish_non_exhaustive()
    }
}

impl SealedSecret {
    /// The KEK version that wraps this secret's data key.
    pub fn kek_version(&self) -> u32 {
        self.kek_version
    }

    /// The masked form (`sk-…abcd`), the only view APIs return.
    pub fn masked(&self) -> &str {
        &self.masked
    }

    /// Checks the shape (field lengths) without any key; the ledger calls this before
    /// accepting a sealed secret into its state.
    pub fn check_shape(&self, context: &str) -> Result<(), SecretError> {
        let malformed = |field, len| SecretError::Malformed {
            context: context.to_owned(),
            field,
            len,
        };
        if self.kek_version == 0 {
            return Err(SecretError::BadKekVersion { version: 0 });
        }
        if self.key_nonce.len() != NONCE_LEN {
            return Err(malformed("key nonce", self.key_nonce.len()));
        }
        if self.nonce.len() != NONCE_LEN {
            return Err(malformed("nonce", self.nonce.len()));
        }
        if self.wrapped_key.len() != DATA_KEY_LEN + TAG_LEN {
            return Err(malformed("wrapped data key", self.wrapped_key.len()));
        }
        if self.ciphertext.len() <= TAG_LEN {
            return Err(malformed("ciphertext", self.ciphertext.len()));
        }
        Ok(())
    }
}

/// A secret's plaintext, opened for the one moment it is needed (the upstream call). Wiped
/// from memory on drop; `Debug` shows only the masked form.
pub struct Revealed(Zeroizing<String>);

impl Revealed {
    /// The plaintext. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Revealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Revealed({})", mask(&self.0))
    }
}

/// Seals `plaintext` under `kek`: a fresh random data key and nonces, the data key wrapped
/// by the KEK. `context` names what the secret belongs to (e.g. `openai-prod/api_key`);
/// the same context must be given to [`open`].
pub fn seal(kek: &Kek, context: &str, plaintext: &str) -> Result<SealedSecret, SecretError> {
    if plaintext.is_empty() {
        return Err(SecretError::Empty {
            context: context.to_owned(),
        });
    }
    let masked = mask(plaintext);
    let data_key = Zeroizing::new(random_bytes::<DATA_KEY_LEN>()?);
    let nonce = random_bytes::<NONCE_LEN>()?;
    let data_cipher = data_cipher(&data_key, context)?;
    let ciphertext = data_cipher
        .encrypt(
            &nonce.into(),
            Payload {
                msg: plaintext.as_bytes(),
                aad: &data_aad(context, &masked),
            },
        )
        .map_err(|_| SecretError::Encrypt {
            context: context.to_owned(),
        })?;
    let (key_nonce, wrapped_key) = wrap(kek, context, &data_key)?;
    Ok(SealedSecret {
        kek_version: kek.version(),
        wrapped_key,
        key_nonce,
        nonce: nonce.to_vec(),
        ciphertext,
        masked,
    })
}

/// Opens a sealed secret with the keyring's KEK of the secret's version. Fails on the
/// wrong KEK, the wrong `context`, or any tampered byte (AES-GCM authentication).
pub fn open(
    keyring: &Keyring,
    context: &str,
    sealed: &SealedSecret,
) -> Result<Revealed, SecretError> {
    let data_key = unwrap_data_key(keyring, context, sealed)?;
    let nonce = nonce_of(&sealed.nonce, context, "nonce")?;
    let plaintext = Zeroizing::new(
        data_cipher(&data_key, context)?
            .decrypt(
                &nonce,
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &data_aad(context, &sealed.masked),
                },
            )
            .map_err(|_| SecretError::Undecryptable {
                context: context.to_owned(),
                kek_version: sealed.kek_version,
                part: "secret",
            })?,
    );
    let text = std::str::from_utf8(&plaintext).map_err(|_| SecretError::NotUtf8 {
        context: context.to_owned(),
    })?;
    Ok(Revealed(Zeroizing::new(text.to_owned())))
}

/// Re-wraps a secret's data key under the keyring's current KEK (rotation). The secret's
/// own ciphertext is unchanged; the old KEK is needed only to unwrap. A secret already at
/// the current version is returned as it is.
pub fn rewrap(
    keyring: &Keyring,
    context: &str,
    sealed: &SealedSecret,
) -> Result<SealedSecret, SecretError> {
    let current = keyring.current();
    if sealed.kek_version == current.version() {
        return Ok(sealed.clone());
    }
    let data_key = unwrap_data_key(keyring, context, sealed)?;
    let (key_nonce, wrapped_key) = wrap(current, context, &data_key)?;
    Ok(SealedSecret {
        kek_version: current.version(),
        wrapped_key,
        key_nonce,
        ..sealed.clone()
    })
}

/// The masked form of a secret, the only form APIs return: a recognisable prefix such as
/// `sk-` or `sk-ant-` (up to 8 characters ending in `-` or `_`) and the last four
/// characters, e.g. `sk-…abcd`. Secrets shorter than 16 characters and non-token text
/// (JSON documents) show only `…`.
pub fn mask(secret: &str) -> String {
    let chars: Vec<char> = secret.trim().chars().collect();
    let token_like = chars
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !token_like {
        return "…".to_owned();
    }
    let prefix_end = chars
        .iter()
        .take(8)
        .rposition(|c| matches!(c, '-' | '_'))
        .map_or(0, |i| i + 1);
    if chars.len() < 16 {
        return "…".to_owned();
    }
    let prefix: String = chars[..prefix_end].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{prefix}…{tail}")
}

/// `N` bytes from the operating system's CSPRNG.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], SecretError> {
    <[u8; N]>::try_generate().map_err(|e| SecretError::Rng {
        reason: e.to_string(),
    })
}

fn data_cipher(data_key: &[u8; DATA_KEY_LEN], context: &str) -> Result<Aes256Gcm, SecretError> {
    Aes256Gcm::new_from_slice(data_key).map_err(|_| SecretError::Malformed {
        context: context.to_owned(),
        field: "data key",
        len: data_key.len(),
    })
}

fn wrap(
    kek: &Kek,
    context: &str,
    data_key: &[u8; DATA_KEY_LEN],
) -> Result<(Vec<u8>, Vec<u8>), SecretError> {
    let key_nonce = random_bytes::<NONCE_LEN>()?;
    let wrapped = kek
        .cipher()
        .encrypt(
            &key_nonce.into(),
            Payload {
                msg: data_key,
                aad: &wrap_aad(kek.version(), context),
            },
        )
        .map_err(|_| SecretError::Encrypt {
            context: context.to_owned(),
        })?;
    Ok((key_nonce.to_vec(), wrapped))
}

fn unwrap_data_key(
    keyring: &Keyring,
    context: &str,
    sealed: &SealedSecret,
) -> Result<Zeroizing<[u8; DATA_KEY_LEN]>, SecretError> {
    sealed.check_shape(context)?;
    let kek = keyring.get(sealed.kek_version)?;
    let key_nonce = nonce_of(&sealed.key_nonce, context, "key nonce")?;
    let opened = Zeroizing::new(
        kek.cipher()
            .decrypt(
                &key_nonce,
                Payload {
                    msg: &sealed.wrapped_key,
                    aad: &wrap_aad(sealed.kek_version, context),
                },
            )
            .map_err(|_| SecretError::Undecryptable {
                context: context.to_owned(),
                kek_version: sealed.kek_version,
                part: "data key",
            })?,
    );
    let mut data_key = Zeroizing::new([0u8; DATA_KEY_LEN]);
    if opened.len() != DATA_KEY_LEN {
        return Err(SecretError::Malformed {
            context: context.to_owned(),
            field: "data key",
            len: opened.len(),
        });
    }
    data_key.copy_from_slice(&opened);
    Ok(data_key)
}

fn nonce_of(
    bytes: &[u8],
    context: &str,
    field: &'static str,
) -> Result<aes_gcm::aead::Nonce<Aes256Gcm>, SecretError> {
    let array: [u8; NONCE_LEN] = bytes.try_into().map_err(|_| SecretError::Malformed {
        context: context.to_owned(),
        field,
        len: bytes.len(),
    })?;
    Ok(array.into())
}

/// Associated data of the data-key wrap: the scheme, the KEK version and the context.
fn wrap_aad(kek_version: u32, context: &str) -> Vec<u8> {
    format!("floodgate/dek/v1\0{kek_version}\0{context}").into_bytes()
}

/// Associated data of the secret itself: the scheme, the context and the masked form.
fn data_aad(context: &str, masked: &str) -> Vec<u8> {
    format!("floodgate/secret/v1\0{context}\0{masked}").into_bytes()
}

/// Serde for byte fields as standard base64 text (compact in JSON, a plain string in any
/// binary format).
mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk-proj-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcd";

    fn ring(version: u32, byte: u8) -> Keyring {
        Keyring::new(Kek::from_bytes(version, &[byte; 32]).unwrap())
    }

    #[test]
    fn round_trip() {
        let keyring = ring(1, 1);
        let sealed = seal(keyring.current(), "openai/api_key", KEY).unwrap();
        assert_eq!(sealed.kek_version(), 1);
        assert_eq!(sealed.masked(), "sk-proj-…abcd");
        assert_eq!(
            open(&keyring, "openai/api_key", &sealed).unwrap().expose(),
            KEY
        );
        // Two seals of one secret share nothing but the masked form.
        let again = seal(keyring.current(), "openai/api_key", KEY).unwrap();
        assert_ne!(sealed.ciphertext, again.ciphertext);
        assert_ne!(sealed.wrapped_key, again.wrapped_key);
    }

    #[test]
    fn every_tampered_field_is_detected() {
        let keyring = ring(1, 1);
        let sealed = seal(keyring.current(), "ctx", KEY).unwrap();
        let mut cases: Vec<(&str, SealedSecret)> = Vec::new();
        for i in [0, 10, sealed.ciphertext.len() - 1] {
            let mut s = sealed.clone();
            s.ciphertext[i] ^= 1;
            cases.push(("ciphertext", s));
        }
        let mut s = sealed.clone();
        s.wrapped_key[3] ^= 0x80;
        cases.push(("wrapped key", s));
        let mut s = sealed.clone();
        s.nonce[0] ^= 1;
        cases.push(("nonce", s));
        let mut s = sealed.clone();
        s.key_nonce[11] ^= 1;
        cases.push(("key nonce", s));
        let mut s = sealed.clone();
        s.masked = "sk-…zzzz".to_owned();
        cases.push(("masked", s));
        for (what, tampered) in cases {
            let err = open(&keyring, "ctx", &tampered).unwrap_err();
            assert!(
                matches!(err, SecretError::Undecryptable { .. }),
                "{what}: {err:?}"
            );
        }
        // A version relabelled to one the keyring has still fails authentication.
        let two = ring(1, 1)
            .rotate_to(Kek::from_bytes(2, &[1; 32]).unwrap())
            .unwrap();
        let mut relabelled = sealed.clone();
        relabelled.kek_version = 2;
        assert!(matches!(
            open(&two, "ctx", &relabelled),
            Err(SecretError::Undecryptable {
                part: "data key",
                ..
            })
        ));
        // Truncation is refused by shape before any decryption.
        let mut short = sealed.clone();
        short.ciphertext.truncate(4);
        assert!(matches!(
            open(&keyring, "ctx", &short),
            Err(SecretError::Malformed {
                field: "ciphertext",
                ..
            })
        ));
    }

    #[test]
    fn wrong_context_or_key_fails() {
        let keyring = ring(1, 1);
        let sealed = seal(keyring.current(), "a/api_key", KEY).unwrap();
        assert!(open(&keyring, "b/api_key", &sealed).is_err());
        assert!(open(&ring(1, 2), "a/api_key", &sealed).is_err());
        assert_eq!(
            open(&ring(2, 1), "a/api_key", &sealed).unwrap_err(),
            SecretError::UnknownKekVersion {
                version: 1,
                known: vec![2]
            }
        );
    }

    #[test]
    fn rotation_rewraps_without_touching_ciphertext() {
        let v1 = Kek::from_bytes(1, &[1; 32]).unwrap();
        let v2 = Kek::from_bytes(2, &[2; 32]).unwrap();
        let sealed = seal(&v1, "ctx", KEY).unwrap();
        let rotated_ring = Keyring::new(v1).rotate_to(v2.clone()).unwrap();
        let rotated = rewrap(&rotated_ring, "ctx", &sealed).unwrap();
        assert_eq!(rotated.kek_version(), 2);
        assert_eq!(rotated.ciphertext, sealed.ciphertext);
        assert_ne!(rotated.wrapped_key, sealed.wrapped_key);
        // Only the new KEK is needed from now on.
        assert_eq!(
            open(&Keyring::new(v2), "ctx", &rotated).unwrap().expose(),
            KEY
        );
        // Re-wrapping a current secret is a no-op.
        assert_eq!(rewrap(&rotated_ring, "ctx", &rotated).unwrap(), rotated);
    }

    #[test]
    fn masks() {
        assert_eq!(mask("sk-abcdefghijklmnopqrstuvwxyz"), "sk-…wxyz");
        assert_eq!(mask("sk-ant-api03-abcdefghijklmnop"), "sk-ant-…mnop");
        assert_eq!(mask("AIzaSyA1234567890abcdefgh"), "…efgh");
        assert_eq!(mask("short-key-12345"), "…");
        assert_eq!(mask("tiny"), "…");
        assert_eq!(mask("{\"type\": \"service_account\"}"), "…");
        assert_eq!(mask(""), "…");
    }

    #[test]
    fn debug_and_serde_never_show_plaintext() {
        let keyring = ring(1, 1);
        let sealed = seal(keyring.current(), "ctx", KEY).unwrap();
        let json = serde_json::to_string(&sealed).unwrap();
        assert!(!json.contains(KEY) && !json.contains("ABCDEFGHIJ"));
        let back: SealedSecret = serde_json::from_str(&json).unwrap();
        assert_eq!(back, sealed);
        let revealed = open(&keyring, "ctx", &sealed).unwrap();
        let shown = format!("{sealed:?} {revealed:?}");
        assert!(!shown.contains("ABCDEFGHIJ"), "{shown}");
    }

    #[test]
    fn empty_secret_is_refused() {
        assert_eq!(
            seal(ring(1, 1).current(), "ctx", "").unwrap_err(),
            SecretError::Empty {
                context: "ctx".to_owned()
            }
        );
    }
}
