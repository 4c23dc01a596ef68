//! The spool's writer: one thread of its own that takes the appended events off the
//! channel, appends them to the segment in one write and syncs it (group commit). Disk
//! work never runs on the async runtime, and an append wakes nobody more than once per
//! group: under an interval the writer sleeps through the interval and takes what came
//! (a stop wakes it early), under `always` it takes whatever arrived while it synced the
//! group before.

use std::sync::Weak;
use std::sync::mpsc::{Receiver, RecvError};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::segment::{self, Active};
use super::{FlushPolicy, Inner, Mark, SpoolError, lock, record};

/// How long the writer waits before retrying after a disk error.
const WRITE_RETRY: Duration = Duration::from_millis(200);

/// What travels from [`super::Spool::append`] (and the stop) to the writer.
#[derive(Debug)]
pub(super) enum Message {
    /// An appended event's record body.
    Event(Bytes),
    /// Write what is left, sync, and end (sent with an unpark of the writer's thread).
    Stop,
}

/// The writer's state.
#[derive(Debug)]
pub(super) struct Writer {
    /// The segment being written; begun with the first commit after open.
    active: Option<Active>,
    /// The last key written.
    last: u64,
    /// Written since the last sync.
    unsynced: u64,
    /// Received since open, written and synced.
    durable: u64,
    /// The records of one commit.
    buf: Vec<u8>,
}

impl Writer {
    /// A writer whose first key follows `last`.
    pub(super) fn new(last: u64) -> Self {
        Self {
            active: None,
            last,
            unsynced: 0,
            durable: 0,
            buf: Vec::new(),
        }
    }

    /// Group-commits until told to stop, or until the spool is gone; then writes and syncs
    /// what it received. Blocks: run it on a thread of its own.
    pub(super) fn run(
        mut self,
        spool: Weak<Inner>,
        receiver: Receiver<Message>,
        policy: FlushPolicy,
    ) {
        let mut pending = Vec::new();
        let mut stopping = false;
        loop {
            // A failed write or sync is retried without waiting for more events.
            if pending.is_empty() && self.unsynced == 0 && !stopping {
                match receiver.recv() {
                    Ok(message) => stopping |= take(message, &mut pending),
                    Err(RecvError) => stopping = true,
                }
                if let FlushPolicy::Every(interval) = policy {
                    // Gather for one interval; the stop unparks the thread to end it early.
                    let until = Instant::now() + interval;
                    while !stopping {
                        let Some(left) = until.checked_duration_since(Instant::now()) else {
                            break;
                        };
                        std::thread::park_timeout(left);
                        while let Ok(message) = receiver.try_recv() {
                            stopping |= take(message, &mut pending);
                        }
                    }
                }
            }
            while let Ok(message) = receiver.try_recv() {
                stopping |= take(message, &mut pending);
            }
            let Some(inner) = spool.upgrade() else {
                return;
            };
            if let Err(error) = self.commit(&inner, &mut pending) {
                drop(inner);
                tracing::error!(%error, "cannot write the usage spool; retrying");
                std::thread::sleep(WRITE_RETRY);
                continue;
            }
            if stopping && pending.is_empty() && self.unsynced == 0 {
                return;
            }
        }
    }

    /// Appends `pending` (emptied once written) to the segment, beginning a new segment
    /// when the current one is full, and syncs it; the events then count as durable.
    fn commit(&mut self, inner: &Inner, pending: &mut Vec<Bytes>) -> Result<(), SpoolError> {
        if !pending.is_empty() {
            let full = self
                .active
                .as_ref()
                .is_none_or(|active| active.size >= inner.segment_bytes);
            if full {
                if let Some(sealed) = &self.active {
                    sealed.sync()?;
                }
                let first = self.last + 1;
                let active = Active::create(&inner.dir, first)?;
                segment::sync_dir(&inner.dir)?;
                lock(&inner.segments).insert(first);
                self.active = Some(active);
            }
            if let Some(active) = self.active.as_mut() {
                self.buf.clear();
                let mut key = self.last;
                for body in pending.iter() {
                    key += 1;
                    record::encode(key, body, &mut self.buf);
                }
                // On an error nothing stays written: the same events get the same keys
                // next time.
                active.append(&self.buf)?;
                self.unsynced += pending.len() as u64;
                pending.clear();
                self.last = key;
                inner.written.send_replace(Mark {
                    key,
                    segment: active.first,
                    end: active.size,
                });
            }
        }
        if let (Some(active), true) = (&self.active, self.unsynced > 0) {
            active.sync()?;
            self.durable += self.unsynced;
            self.unsynced = 0;
            inner.durable.send_replace(self.durable);
        }
        Ok(())
    }
}

/// Adds an event to `pending`; true for the stop.
fn take(message: Message, pending: &mut Vec<Bytes>) -> bool {
    match message {
        Message::Event(body) => {
            pending.push(body);
            false
        }
        Message::Stop => true,
    }
}
