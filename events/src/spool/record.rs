//! One spooled event on disk.
//!
//! A record is `[body length: u32][key: u64][crc32: u32][body]` (little-endian); the CRC
//! covers the key and the body, so a torn or damaged record is told apart from a whole
//! one, and a reader that meets damage can find the next whole record again
//! ([`resync`]). The body is `[appended at, unix ms: u64][id length: u16][id][payload]`
//! (big-endian: the format the sled spool stored, so its entries migrate unchanged).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use floodgate_proto::v1::UsageEvent;
use prost::Message;

use super::Spooled;
use crate::envelope;

/// Bytes before the body.
pub(super) const HEADER: usize = 16;
/// The largest body a record may declare; a larger length is damage.
pub(super) const MAX_BODY: usize = 64 << 20;

/// What starts at the front of a buffer.
#[derive(Debug, PartialEq)]
pub(super) enum Parsed<'a> {
    /// A whole, undamaged record of `len` bytes.
    Record {
        /// Its key.
        key: u64,
        /// Its body.
        body: &'a [u8],
        /// Its length on disk, header included.
        len: usize,
    },
    /// The buffer ends inside a record that needs `len` bytes in all.
    Incomplete {
        /// The bytes the record needs, counted from the front.
        len: usize,
    },
    /// Not a record: damaged, or not written by the spool.
    Corrupt,
}

/// The body of a record for `event`, appended now.
pub(super) fn body(event: &UsageEvent) -> Bytes {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let id = &event.event_id.as_bytes()[..event.event_id.len().min(u16::MAX as usize)];
    let mut out = Vec::with_capacity(10 + id.len() + event.encoded_len() + 16);
    out.extend_from_slice(&now.to_be_bytes());
    out.extend_from_slice(&(id.len() as u16).to_be_bytes());
    out.extend_from_slice(id);
    envelope::encode_to(event, &mut out);
    Bytes::from(out)
}

/// Appends the record of `body` under `key` to `out`.
pub(super) fn encode(key: u64, body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&key.to_le_bytes());
    out.extend_from_slice(&checksum(key, body).to_le_bytes());
    out.extend_from_slice(body);
}

/// Reads the record at the front of `buf`.
pub(super) fn parse(buf: &[u8]) -> Parsed<'_> {
    let Some(header) = buf.get(..HEADER) else {
        return Parsed::Incomplete { len: HEADER };
    };
    let field = |at: usize, width: usize| -> u64 {
        let mut bytes = [0u8; 8];
        bytes[..width].copy_from_slice(&header[at..at + width]);
        u64::from_le_bytes(bytes)
    };
    let body_len = field(0, 4) as usize;
    if body_len > MAX_BODY {
        return Parsed::Corrupt;
    }
    let key = field(4, 8);
    let crc = field(12, 4) as u32;
    let len = HEADER + body_len;
    let Some(body) = buf.get(HEADER..len) else {
        return Parsed::Incomplete { len };
    };
    if checksum(key, body) != crc {
        return Parsed::Corrupt;
    }
    Parsed::Record { key, body, len }
}

/// The offset and key of the first whole record in `buf` after its first byte whose key
/// is above `after`: where reading resumes past damage. `None` if there is none.
pub(super) fn resync(buf: &[u8], after: u64) -> Option<(usize, u64)> {
    (1..buf.len().saturating_sub(HEADER - 1)).find_map(|at| match parse(&buf[at..]) {
        Parsed::Record { key, .. } if key > after => Some((at, key)),
        _ => None,
    })
}

/// The event a record body holds, or `None` if the body is not in the spool's format.
pub(super) fn spooled(key: u64, body: &[u8]) -> Option<Spooled> {
    let len = u16::from_be_bytes(body.get(8..10)?.try_into().ok()?) as usize;
    let id = body.get(10..10 + len)?;
    Some(Spooled {
        key,
        event_id: String::from_utf8(id.to_vec()).ok()?,
        payload: Bytes::copy_from_slice(body.get(10 + len..)?),
    })
}

/// When the event in a record body was appended.
pub(super) fn appended_at(body: &[u8]) -> Option<SystemTime> {
    let millis = u64::from_be_bytes(body.get(..8)?.try_into().ok()?);
    Some(UNIX_EPOCH + Duration::from_millis(millis))
}

fn checksum(key: u64, body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&key.to_le_bytes());
    hasher.update(body);
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, request_id: &str) -> UsageEvent {
        UsageEvent {
            event_id: id.to_owned(),
            request_id: request_id.to_owned(),
            ..UsageEvent::default()
        }
    }

    fn record(key: u64, id: &str, request_id: &str) -> Vec<u8> {
        let mut out = Vec::new();
        encode(key, &body(&event(id, request_id)), &mut out);
        out
    }

    #[test]
    fn a_record_reads_back_with_its_key_id_payload_and_time() {
        let bytes = record(7, "event-7", "req-7");
        let Parsed::Record { key, body, len } = parse(&bytes) else {
            panic!("not a record: {:?}", parse(&bytes));
        };
        assert_eq!((key, len), (7, bytes.len()));
        let spooled = spooled(key, body).unwrap();
        assert_eq!(spooled.event_id, "event-7");
        assert_eq!(
            envelope::decode(&spooled.payload).unwrap(),
            event("event-7", "req-7")
        );
        let age = SystemTime::now().duration_since(appended_at(body).unwrap());
        assert!(age.unwrap() < Duration::from_secs(60));
    }

    #[test]
    fn a_cut_record_is_incomplete_and_a_flipped_bit_is_corrupt() {
        let bytes = record(1, "id", "some request");
        assert_eq!(
            parse(&bytes[..HEADER - 1]),
            Parsed::Incomplete { len: HEADER }
        );
        assert_eq!(
            parse(&bytes[..bytes.len() - 1]),
            Parsed::Incomplete { len: bytes.len() }
        );
        for at in 4..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x10;
            assert_eq!(parse(&damaged), Parsed::Corrupt, "bit flipped at {at}");
        }
        let mut huge = bytes.clone();
        huge[..4].copy_from_slice(&(MAX_BODY as u32 + 1).to_le_bytes());
        assert_eq!(parse(&huge), Parsed::Corrupt);
    }

    #[test]
    fn resync_finds_the_next_whole_record_after_damage() {
        let first = record(1, "one", "first");
        let second = record(2, "two", "second");
        let mut bytes = first.clone();
        bytes.extend_from_slice(&second);
        bytes[HEADER + 3] ^= 0xff;
        assert_eq!(parse(&bytes), Parsed::Corrupt);
        assert_eq!(resync(&bytes, 1), Some((first.len(), 2)));
        // Only keys above the last one read count: an old record is not a way back in.
        assert_eq!(resync(&bytes, 2), None);
        assert_eq!(resync(&bytes[..bytes.len() - 1], 1), None);
    }
}
