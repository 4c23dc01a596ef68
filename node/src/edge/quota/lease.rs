//! [`LocalLease`]: one lease as the edge spends it — atomic counters only, so requests
//! reserving from it never take a lock.
//!
//! * `room`: what is left to reserve. A reservation is a compare-and-swap that never lets
//!   it go below zero, so concurrent reservations never exceed the grant.
//! * `in_flight`: reservations not yet finished. A lease is closed at the ledger only when
//!   it is retired *and* nothing is in flight, so a request never spends from a lease the
//!   ledger has already released to others. Reserving increments `in_flight` before it
//!   reads `retired`, and retiring sets `retired` before it reads `in_flight` (both
//!   sequentially consistent), so one of the two always sees the other.
//! * `unsent`: actual usage finished locally and not yet settled at the ledger.
//!
//! Lifetimes are measured on the local monotonic clock from the moment the grant was
//! asked, using the ledger's own `expires_at − granted_at`: the edge's wall clock never
//! enters, so clock skew cannot make an edge spend from an expired lease.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use floodgate_cluster::ledger::{Lease, LeaseId};

/// One lease held by this edge.
#[derive(Debug)]
pub struct LocalLease {
    id: LeaseId,
    granted: u64,
    room: AtomicU64,
    in_flight: AtomicU64,
    unsent: AtomicU64,
    retired: AtomicBool,
    asked_at: Instant,
    retire_at: Instant,
    expires_at: Instant,
}

impl LocalLease {
    /// The local view of `lease`, asked for at `asked_at`; it stops taking reservations
    /// `margin` before its expiry (at most a quarter of its life).
    pub fn new(lease: &Lease, asked_at: Instant, margin: Duration) -> Self {
        let life = Duration::from_millis(lease.expires_at.saturating_sub(lease.granted_at));
        let margin = margin.min(life / 4);
        let expires_at = asked_at + life;
        Self {
            id: lease.id,
            granted: lease.granted,
            room: AtomicU64::new(lease.granted),
            in_flight: AtomicU64::new(0),
            unsent: AtomicU64::new(0),
            retired: AtomicBool::new(false),
            asked_at,
            retire_at: expires_at - margin,
            expires_at,
        }
    }

    /// The ledger's id.
    pub fn id(&self) -> LeaseId {
        self.id
    }

    /// Amount granted.
    pub fn granted(&self) -> u64 {
        self.granted
    }

    /// When it was asked for.
    pub fn asked_at(&self) -> Instant {
        self.asked_at
    }

    /// What is left to reserve.
    pub fn room(&self) -> u64 {
        self.room.load(Ordering::Acquire)
    }

    /// Reserves `amount` for a new request; false when retired, due to retire, or short
    /// of room. On success the request counts as in flight until [`LocalLease::finish`].
    pub fn try_reserve(&self, amount: u64, now: Instant) -> bool {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let reserved = !self.retired.load(Ordering::SeqCst)
            && now < self.retire_at
            && self
                .room
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |room| {
                    room.checked_sub(amount)
                })
                .is_ok();
        if !reserved {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
        reserved
    }

    /// Ends a reservation of `reserved` that used `actual`: the unused part returns to the
    /// room (an overrun is taken from it, as far as it goes) and `actual` waits to be
    /// settled.
    pub fn finish(&self, reserved: u64, actual: u64) {
        if actual <= reserved {
            self.room.fetch_add(reserved - actual, Ordering::AcqRel);
        } else {
            let over = actual - reserved;
            // Never fails: the closure always answers a value.
            let _ = self
                .room
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |room| {
                    Some(room.saturating_sub(over))
                });
        }
        self.unsent.fetch_add(actual, Ordering::AcqRel);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    /// Stops new reservations for good.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
        self.room.store(0, Ordering::Release);
    }

    /// Whether it takes no more reservations.
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::SeqCst)
    }

    /// Whether its retirement time has come.
    pub fn is_due(&self, now: Instant) -> bool {
        now >= self.retire_at
    }

    /// Whether the ledger may already have charged it in full.
    pub fn is_expired(&self, now: Instant) -> bool {
        now >= self.expires_at
    }

    /// Reservations not yet finished.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Takes the usage waiting to be settled.
    pub fn take_unsent(&self) -> u64 {
        self.unsent.swap(0, Ordering::AcqRel)
    }

    /// Puts back usage whose settlement failed, to be sent again.
    pub fn restore_unsent(&self, amount: u64) {
        self.unsent.fetch_add(amount, Ordering::AcqRel);
    }
}
