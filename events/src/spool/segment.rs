//! The spool's segment files: `<first key, 20 digits>.seg` in the spool's directory, each
//! an append-only run of records. One segment at a time is written ([`Active`]); older
//! ones are only read, and deleted whole once every event in them is acknowledged.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The file name ending of a segment.
const SUFFIX: &str = ".seg";

/// The path of the segment whose first key is `first`.
pub(super) fn path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}{SUFFIX}"))
}

/// The first keys of the segments in `dir`.
pub(super) fn list(dir: &Path) -> io::Result<BTreeSet<u64>> {
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let first = name
            .to_str()
            .and_then(|n| n.strip_suffix(SUFFIX))
            .and_then(|n| n.parse().ok());
        if let Some(first) = first {
            out.insert(first);
        }
    }
    Ok(out)
}

/// Deletes a segment; one already gone is not an error.
pub(super) fn remove(dir: &Path, first: u64) -> io::Result<()> {
    match std::fs::remove_file(path(dir, first)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Makes the directory's entries (a segment created, say) durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The segment being written.
#[derive(Debug)]
pub(super) struct Active {
    file: File,
    /// Its first key (its name).
    pub(super) first: u64,
    /// Its length in bytes: where the next record goes.
    pub(super) size: u64,
}

impl Active {
    /// Creates the segment starting at key `first` in `dir` (or continues it, if a file by
    /// that name is left over).
    pub(super) fn create(dir: &Path, first: u64) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path(dir, first))?;
        let size = file.metadata()?.len();
        Ok(Self { file, first, size })
    }

    /// Appends `bytes`. On an error the file is cut back to its previous length, so no
    /// partial record stays in front of the retry.
    pub(super) fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Err(error) = (&self.file).write_all(bytes) {
            let _ = self.file.set_len(self.size);
            return Err(error);
        }
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// Makes everything appended so far durable (fdatasync).
    pub(super) fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}
