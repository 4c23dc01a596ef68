//! How the Raft store turns values into sled keys and values, and back.
//!
//! Log keys are the entry's index as 8 big-endian bytes, so sled's byte order is log order.
//! Values are JSON (serde_json): self-describing, so every serde attribute openraft and the
//! application use round-trips, and readable with any sled dump when debugging. Owns no
//! state and touches no disk.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::StoreError;

/// The sled key of the log entry at `index`.
pub(crate) fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// The log index a log key names; anything but 8 bytes is corruption.
pub(crate) fn key_index(key: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| StoreError::Corrupt {
        what: "log key",
        detail: format!("expected 8 bytes, found {}", key.len()),
    })?;
    Ok(u64::from_be_bytes(bytes))
}

/// Serializes `value`; `what` names it in the error.
pub(crate) fn encode<T: Serialize + ?Sized>(
    what: impl FnOnce() -> String,
    value: &T,
) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|source| StoreError::Encode {
        what: what(),
        source,
    })
}

/// Deserializes `bytes`; `what` names the record in the error.
pub(crate) fn decode<T: DeserializeOwned>(
    what: impl FnOnce() -> String,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Decode {
        what: what(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_keys_sort_in_log_order_and_round_trip() {
        let indexes = [0u64, 1, 255, 256, 65_535, 1 << 40, u64::MAX];
        for pair in indexes.windows(2) {
            assert!(index_key(pair[0]) < index_key(pair[1]));
        }
        for index in indexes {
            assert_eq!(key_index(&index_key(index)).unwrap(), index);
        }
        assert!(matches!(key_index(b""), Err(StoreError::Corrupt { .. })));
    }
}
