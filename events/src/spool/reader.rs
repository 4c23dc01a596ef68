//! The publisher's side of the spool: reading the oldest unacknowledged events from the
//! segments, moving past what the event log acknowledged, deleting segments once every
//! event in them is, and parking bytes that are not whole records (a torn write, damage)
//! in `parked/` so they never block the events behind them.

use std::collections::{BTreeSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::record::{self, Parsed};
use super::{Mark, Spooled, lock, segment};

/// Bytes read from a segment at a time (more when one record is larger).
const CHUNK: usize = 1 << 20;

/// A place in the segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Pos {
    /// The segment (its first key).
    pub(super) segment: u64,
    /// A byte offset in it.
    pub(super) offset: u64,
}

/// An event the last read handed out.
#[derive(Debug)]
struct Peeked {
    key: u64,
    /// Where its record ends.
    end: Pos,
    appended_at: Option<SystemTime>,
}

/// Bytes of a segment that are not an event.
#[derive(Debug)]
struct Damage {
    from: u64,
    to: u64,
    /// Every key up to this one is behind the damage.
    lost_through: u64,
}

/// The reading state. One per spool, behind a mutex: only the publisher and the stats use it.
#[derive(Debug)]
pub(super) struct Reader {
    dir: PathBuf,
    /// The first byte not yet acknowledged.
    head: Pos,
    /// Every key up to this one is acknowledged, or was lost to damage.
    acked: u64,
    /// Where `acked` is kept (written, not synced: an event that reappears after a crash
    /// is published again and dropped by the log's deduplication).
    acked_file: File,
    /// The events the last read handed out, in order.
    window: VecDeque<Peeked>,
    /// When the event at `head` was appended, if known.
    oldest: Option<SystemTime>,
    /// The segment file read last.
    open: Option<(u64, File)>,
    /// Damage before this place is parked already.
    parked_through: Pos,
}

impl Reader {
    /// A reader starting at `head`, with every key up to `acked` acknowledged.
    pub(super) fn new(dir: &Path, head: Pos, acked: u64, acked_file: File) -> Self {
        Self {
            dir: dir.to_owned(),
            head,
            acked,
            acked_file,
            window: VecDeque::new(),
            oldest: None,
            open: None,
            parked_through: head,
        }
    }

    /// Up to `max` of the oldest unacknowledged events written up to `mark`, in order.
    /// Segments left fully behind are deleted on the way; damage is parked (and, at the
    /// head, skipped, with `depth` lowered by the keys it held).
    pub(super) fn read(
        &mut self,
        max: usize,
        mark: Mark,
        segments: &Mutex<BTreeSet<u64>>,
        depth: &AtomicU64,
    ) -> io::Result<Vec<Spooled>> {
        self.window.clear();
        let mut out = Vec::new();
        let mut pos = self.head;
        let mut last = self.acked;
        let mut need = 0;
        while out.len() < max {
            let sealed = pos.segment < mark.segment;
            let bound = if sealed {
                self.len(pos.segment)?
            } else {
                mark.end
            };
            if pos.offset >= bound {
                if !sealed {
                    break;
                }
                let Some(next) = lock(segments).range(pos.segment + 1..).next().copied() else {
                    break;
                };
                let next = Pos {
                    segment: next,
                    offset: 0,
                };
                if pos == self.head {
                    self.move_head(next, segments)?;
                }
                pos = next;
                continue;
            }
            let want = (bound - pos.offset).min(CHUNK.max(need) as u64) as usize;
            let chunk = self.read_at(pos.segment, pos.offset, want)?;
            need = 0;
            let mut at = 0;
            let mut damage = None;
            while at < chunk.len() && out.len() < max {
                let start = pos.offset + at as u64;
                match record::parse(&chunk[at..]) {
                    Parsed::Record { key, body, len } => {
                        at += len;
                        let end = Pos {
                            segment: pos.segment,
                            offset: start + len as u64,
                        };
                        if key <= self.acked {
                            if self.window.is_empty() {
                                self.move_head(end, segments)?;
                            }
                            continue;
                        }
                        let Some(event) = record::spooled(key, body) else {
                            damage = Some(Damage {
                                from: start,
                                to: end.offset,
                                lost_through: key,
                            });
                            break;
                        };
                        last = key;
                        self.window.push_back(Peeked {
                            key,
                            end,
                            appended_at: record::appended_at(body),
                        });
                        out.push(event);
                    }
                    Parsed::Incomplete { len } if start + len as u64 <= bound => {
                        need = len;
                        break;
                    }
                    // Past the bound: a torn tail, or a damaged length with whole
                    // records after it; the same search tells them apart.
                    Parsed::Incomplete { .. } | Parsed::Corrupt => {
                        let tail = self.keys_through(pos.segment, sealed, mark, segments);
                        damage = Some(self.damage(pos.segment, start, bound, last, tail)?);
                        break;
                    }
                }
            }
            pos.offset += at as u64;
            if let Some(damage) = damage {
                self.skip(pos.segment, &damage, segments, depth)?;
                pos.offset = damage.to;
            }
        }
        self.oldest = self.window.front().and_then(|p| p.appended_at);
        Ok(out)
    }

    /// Moves past the events of the last read up to key `through`, which the event log
    /// acknowledged.
    pub(super) fn ack(
        &mut self,
        through: u64,
        segments: &Mutex<BTreeSet<u64>>,
        depth: &AtomicU64,
    ) -> io::Result<()> {
        let mut released = None;
        while let Some(peeked) = self.window.front() {
            if peeked.key > through {
                break;
            }
            released = Some((peeked.key, peeked.end));
            self.window.pop_front();
        }
        let Some((key, end)) = released else {
            return Ok(());
        };
        self.move_head(end, segments)?;
        self.oldest = self.window.front().and_then(|p| p.appended_at);
        self.set_acked(key, depth)
    }

    /// When the oldest unacknowledged event was appended, if it can be told.
    pub(super) fn oldest(&mut self, mark: Mark) -> Option<SystemTime> {
        if self.oldest.is_none() {
            let bound = if self.head.segment < mark.segment {
                self.len(self.head.segment).ok()?
            } else {
                mark.end
            };
            let want = (record::HEADER as u64 + 8).min(bound.saturating_sub(self.head.offset));
            let front = self
                .read_at(self.head.segment, self.head.offset, want as usize)
                .ok()?;
            self.oldest = record::appended_at(front.get(record::HEADER..)?);
        }
        self.oldest
    }

    /// The damage starting at `from` in `segment`: up to the next whole record with a key
    /// above `after`, or else to `bound` (every key up to `tail` then lost).
    fn damage(
        &mut self,
        segment: u64,
        from: u64,
        bound: u64,
        after: u64,
        tail: u64,
    ) -> io::Result<Damage> {
        let rest = self.read_at(segment, from, (bound - from) as usize)?;
        Ok(match record::resync(&rest, after) {
            Some((skip, key)) => Damage {
                from,
                to: from + skip as u64,
                lost_through: key - 1,
            },
            None => Damage {
                from,
                to: bound,
                lost_through: tail,
            },
        })
    }

    /// The last key behind the end of `segment`: the next segment's first key less one,
    /// or, for the segment being written, the last key written.
    fn keys_through(
        &self,
        segment: u64,
        sealed: bool,
        mark: Mark,
        segments: &Mutex<BTreeSet<u64>>,
    ) -> u64 {
        let next = lock(segments).range(segment + 1..).next().copied();
        match next {
            Some(next) if sealed => next - 1,
            _ => mark.key,
        }
    }

    /// Parks `damage` (once), and skips it if it is at the head.
    fn skip(
        &mut self,
        segment: u64,
        damage: &Damage,
        segments: &Mutex<BTreeSet<u64>>,
        depth: &AtomicU64,
    ) -> io::Result<()> {
        let to = Pos {
            segment,
            offset: damage.to,
        };
        if to > self.parked_through {
            let bytes = self.read_at(segment, damage.from, (damage.to - damage.from) as usize)?;
            park(
                &self.dir,
                &format!("{segment:020}-{:020}", damage.from),
                &bytes,
            )?;
            tracing::error!(
                segment,
                offset = damage.from,
                bytes = bytes.len(),
                "unreadable bytes in the usage spool parked"
            );
            self.parked_through = to;
        }
        if self.window.is_empty() {
            self.move_head(to, segments)?;
            self.set_acked(damage.lost_through, depth)?;
        }
        Ok(())
    }

    fn set_acked(&mut self, key: u64, depth: &AtomicU64) -> io::Result<()> {
        if key <= self.acked {
            return Ok(());
        }
        let released = key - self.acked;
        let _ = depth.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
            Some(d.saturating_sub(released))
        });
        self.acked = key;
        self.acked_file.write_all_at(&key.to_le_bytes(), 0)
    }

    /// Moves the head to `to`, deleting the segments it leaves behind.
    fn move_head(&mut self, to: Pos, segments: &Mutex<BTreeSet<u64>>) -> io::Result<()> {
        if to.segment > self.head.segment {
            let behind: Vec<u64> = lock(segments).range(..to.segment).copied().collect();
            for first in behind {
                if self.open.as_ref().is_some_and(|(s, _)| *s == first) {
                    self.open = None;
                }
                segment::remove(&self.dir, first)?;
                lock(segments).remove(&first);
            }
        }
        self.head = to;
        Ok(())
    }

    /// The length of a segment; 0 if there is no such file.
    fn len(&mut self, segment: u64) -> io::Result<u64> {
        match self.file(segment) {
            Ok(file) => Ok(file.metadata()?.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }

    fn read_at(&mut self, segment: u64, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0; len];
        self.file(segment)?.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    fn file(&mut self, segment: u64) -> io::Result<&File> {
        let entry = match self.open.take() {
            Some(entry) if entry.0 == segment => entry,
            _ => (segment, File::open(segment::path(&self.dir, segment))?),
        };
        Ok(&self.open.insert(entry).1)
    }
}

/// Opens the file of the last acknowledged key, and reads it (0 when new).
pub(super) fn open_acked(dir: &Path) -> io::Result<(File, u64)> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(dir.join("acked"))?;
    let mut acked = [0u8; 8];
    match file.read_exact_at(&mut acked, 0) {
        Ok(()) => Ok((file, u64::from_le_bytes(acked))),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok((file, 0)),
        Err(e) => Err(e),
    }
}

/// The last key on disk, found from the newest segment back. The newest segments may end
/// in a torn write; one with no whole record in it is parked and removed (from `segments`
/// too), so the writer can begin a segment under the next key.
pub(super) fn recover(dir: &Path, segments: &mut BTreeSet<u64>) -> io::Result<Option<u64>> {
    while let Some(&newest) = segments.last() {
        let bytes = std::fs::read(segment::path(dir, newest))?;
        if let Some(key) = last_key(&bytes) {
            return Ok(Some(key));
        }
        if !bytes.is_empty() {
            park(dir, &format!("{newest:020}-0"), &bytes)?;
            tracing::error!(
                segment = newest,
                bytes = bytes.len(),
                "a usage spool segment without a whole record parked"
            );
        }
        segment::remove(dir, newest)?;
        segments.remove(&newest);
    }
    Ok(None)
}

/// The highest key of a whole record in `bytes` (a segment's contents), if any.
fn last_key(bytes: &[u8]) -> Option<u64> {
    let mut at = 0;
    let mut last = None;
    while at < bytes.len() {
        match record::parse(&bytes[at..]) {
            Parsed::Record { key, len, .. } => {
                last = Some(key);
                at += len;
            }
            // Past the end: a torn tail, or a damaged length with whole records after it.
            Parsed::Incomplete { .. } | Parsed::Corrupt => {
                match record::resync(&bytes[at..], last.unwrap_or(0)) {
                    Some((skip, _)) => at += skip,
                    None => break,
                }
            }
        }
    }
    last
}

/// Keeps `bytes` that are not events as `parked/<name>.bin` for inspection.
pub(super) fn park(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let parked = dir.join("parked");
    std::fs::create_dir_all(&parked)?;
    std::fs::write(parked.join(format!("{name}.bin")), bytes)
}
