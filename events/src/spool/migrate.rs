//! Opening a spool that an earlier version wrote with sled: its events move, unchanged
//! and under the same keys, into a segment; its parked entries into `parked/`; and sled's
//! files are removed. An upgrade loses no event.

use std::path::Path;

use super::{SpoolError, reader, record, segment};

/// Moves a sled spool in `dir`, if there is one, into a segment file.
pub(super) fn from_sled(dir: &Path) -> Result<(), SpoolError> {
    if !dir.join("conf").is_file() || !dir.join("db").is_file() {
        return Ok(());
    }
    let db = sled::Config::new().path(dir).flush_every_ms(None).open()?;
    let mut bytes = Vec::new();
    let mut first = None;
    let mut moved = 0u64;
    for item in db.open_tree("spool")?.iter() {
        let (key, value) = item?;
        match <[u8; 8]>::try_from(key.as_ref()) {
            Ok(key) => {
                let key = u64::from_be_bytes(key);
                first.get_or_insert(key);
                record::encode(key, &value, &mut bytes);
                moved += 1;
            }
            Err(_) => reader::park(dir, &format!("sled-{}", hex(&key)), &value)?,
        }
    }
    for item in db.open_tree("parked")?.iter() {
        let (key, value) = item?;
        reader::park(dir, &format!("sled-{}", hex(&key)), &value)?;
    }
    drop(db);
    if let Some(first) = first {
        // Written aside and renamed into place, so a crash leaves the whole segment or none
        // (and the sled files, to migrate again).
        let aside = dir.join("migrating");
        std::fs::write(&aside, &bytes)?;
        std::fs::File::open(&aside)?.sync_all()?;
        std::fs::rename(&aside, segment::path(dir, first))?;
        segment::sync_dir(dir)?;
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name == "blobs" {
            std::fs::remove_dir_all(entry.path())?;
        } else if name == "conf" || name == "db" || name.starts_with("snap.") {
            std::fs::remove_file(entry.path())?;
        }
    }
    tracing::info!(
        events = moved,
        "moved the usage spool from sled into segment files"
    );
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
