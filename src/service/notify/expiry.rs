//! The token expiries of one handler actor's sockets (one per worker
//! thread), in one heap with one actix timer for its earliest entry.
//!
//! Each authenticated socket used to keep two actix timers in the handler
//! actor's context (`auth:expiring`, then the disconnect) and a map entry to
//! cancel them: about 300 bytes per socket for the socket's life, and actix
//! polls every item of a context each time the actor wakes, so each event
//! the handler took walked every socket's timers. Here a socket has one
//! 32-byte entry, its next step; the handler keeps one timer.
//!
//! Nothing is cancelled: each arming gets a number, kept in the socket's
//! [`AuthState`](super::AuthState), and an entry whose number is no longer
//! its socket's (refreshed, disconnected, recovered elsewhere) or whose
//! socket is gone is skipped when due. Entries of sockets gone stay until
//! due (a token's life); when the heap has doubled since its last pass they
//! are dropped in one pass, so it stays within about twice the live sockets.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::due_heap::DueHeap;
use crate::node::socket::WeakSocket;

/// An arming's number: unique in the process (a socket recovered on another
/// thread is armed there; the old thread's entry must not match), never 0
/// (0 is "not armed").
pub(super) fn next_arming() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// What is due for a socket when its entry comes up. Ordered as declared:
/// at the same instant, a warning comes before an expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Step {
    /// `auth:expiring` (`auth.refresh_ahead_ms` before `exp`); the expiry
    /// follows.
    Warn,
    /// `auth:expired` and the disconnect (`exp` plus `auth.leeway_ms`).
    Expire,
}

pub(super) struct Entry {
    /// Milliseconds since the Unix epoch (the token's clock).
    pub at: u64,
    pub step: Step,
    pub armed: Armed,
}

/// Whom an entry is for: the heap's item, beside its key (`at`, `step`),
/// 16 bytes each, so 32 per entry.
pub(super) struct Armed {
    pub arming: u64,
    pub socket: WeakSocket,
}

/// The heap of a handler's entries ([`DueHeap`], which also compacts it),
/// by time and then step.
#[derive(Default)]
pub(super) struct Schedule {
    heap: DueHeap<(u64, Step), Armed>,
}

impl Schedule {
    /// Add `entry`; `is_live` tells, for the compaction, whether an entry can
    /// still be due (its socket there and still armed with its number).
    pub fn push(&mut self, entry: Entry, is_live: impl Fn(&Armed) -> bool) {
        self.heap.push((entry.at, entry.step), entry.armed, is_live);
    }

    /// When the earliest entry is due.
    pub fn next_at(&self) -> Option<u64> {
        self.heap.next().map(|(at, _)| at)
    }

    /// The earliest entry, if due at `now`.
    pub fn pop_due(&mut self, now: u64) -> Option<Entry> {
        self.heap
            .pop_due((now, Step::Expire))
            .map(|((at, step), armed)| Entry { at, step, armed })
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::due_heap::COMPACT_FLOOR;

    fn entry(at: u64, step: Step) -> Entry {
        Entry {
            at,
            step,
            armed: Armed {
                arming: at,
                socket: WeakSocket::default(),
            },
        }
    }

    #[test]
    fn entries_come_up_in_time_order_and_not_before_their_time() {
        let mut s = Schedule::default();
        for (at, step) in [(30, Step::Expire), (10, Step::Warn), (20, Step::Warn)] {
            s.push(entry(at, step), |_| true);
        }
        assert_eq!(s.next_at(), Some(10));
        assert!(s.pop_due(9).is_none());
        assert_eq!(s.pop_due(25).map(|e| e.at), Some(10));
        assert_eq!(s.pop_due(25).map(|e| e.at), Some(20));
        assert!(s.pop_due(25).is_none());
        assert_eq!(s.pop_due(30).map(|e| e.step), Some(Step::Expire));
        assert_eq!(s.next_at(), None);
    }

    #[test]
    fn a_warning_and_an_expiry_at_the_same_instant_warn_first() {
        let mut s = Schedule::default();
        s.push(entry(5, Step::Expire), |_| true);
        s.push(entry(5, Step::Warn), |_| true);
        assert_eq!(s.pop_due(5).map(|e| e.step), Some(Step::Warn));
        assert_eq!(s.pop_due(5).map(|e| e.step), Some(Step::Expire));
    }

    #[test]
    fn entries_no_longer_live_are_compacted_away_once_the_heap_doubles() {
        let mut s = Schedule::default();
        // 100 live sockets among 10,000 armed.
        let live = |a: &Armed| a.arming.is_multiple_of(100);
        for i in 0..10_000u64 {
            let mut e = entry(1_000 + i, Step::Warn);
            e.armed.arming = i;
            s.push(e, live);
            assert!(s.len() <= 2 * COMPACT_FLOOR.max(100), "{} entries", s.len());
        }
        let mut kept = 0;
        while let Some(e) = s.pop_due(u64::MAX) {
            kept += u64::from(live(&e.armed));
        }
        assert_eq!(kept, 100, "every live entry kept");
    }
}
