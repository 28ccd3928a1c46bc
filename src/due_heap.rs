//! Entries kept until they come due, earliest first: what the engine's
//! deadline wheel (one per worker thread, `engineio/session/deadlines.rs`)
//! and service mode's token expiries (one per handler actor,
//! `service/notify/expiry.rs`) are built on.
//!
//! Neither cancels an entry: one whose owner is gone, or has moved on to
//! another deadline, stays until it comes due and is skipped then. Under
//! churn those would pile up, so the heap compacts itself: when it has
//! doubled since its last pass (and holds at least [`COMPACT_FLOOR`]), the
//! entries no longer live are dropped in one pass, which keeps it within
//! about twice the live ones (amortized O(1) per entry).

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// Below this many entries the heap is never compacted: the pass would cost
/// more than it frees.
pub(crate) const COMPACT_FLOOR: usize = 1024;

/// Items of type `T` due at keys of type `K` (a time, or a time and a
/// tie-break), the smallest key first.
pub(crate) struct DueHeap<K, T> {
    heap: BinaryHeap<Reverse<Slot<K, T>>>,
    /// The heap's length after its last compaction.
    compacted: usize,
}

/// An item and its key, ordered by the key alone.
struct Slot<K, T> {
    key: K,
    item: T,
}

impl<K: Ord, T> PartialEq for Slot<K, T> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl<K: Ord, T> Eq for Slot<K, T> {}

impl<K: Ord, T> PartialOrd for Slot<K, T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<K: Ord, T> Ord for Slot<K, T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.cmp(&other.key)
    }
}

impl<K, T> Default for DueHeap<K, T> {
    fn default() -> Self {
        DueHeap {
            heap: BinaryHeap::new(),
            compacted: 0,
        }
    }
}

impl<K: Ord + Copy, T> DueHeap<K, T> {
    /// Add `item`, due at `key`; `is_live` tells, for the compaction, whether
    /// an item can still be due.
    pub fn push(&mut self, key: K, item: T, mut is_live: impl FnMut(&T) -> bool) {
        self.heap.push(Reverse(Slot { key, item }));
        if self.heap.len() >= (2 * self.compacted).max(COMPACT_FLOOR) {
            self.heap.retain(|Reverse(s)| is_live(&s.item));
            self.compacted = self.heap.len();
        }
    }

    /// The smallest key.
    pub fn next(&self) -> Option<K> {
        self.heap.peek().map(|Reverse(s)| s.key)
    }

    /// The item of the smallest key, if that key is at most `now`.
    pub fn pop_due(&mut self, now: K) -> Option<(K, T)> {
        if self.next()? > now {
            return None;
        }
        self.heap.pop().map(|Reverse(s)| (s.key, s.item))
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// The items, in no particular order.
    #[cfg(test)]
    pub fn items(&self) -> impl Iterator<Item = &T> {
        self.heap.iter().map(|Reverse(s)| &s.item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_come_up_by_key_and_not_before_it() {
        let mut h = DueHeap::default();
        for (k, v) in [(30, "c"), (10, "a"), (20, "b")] {
            h.push(k, v, |_| true);
        }
        assert_eq!(h.next(), Some(10));
        assert!(h.pop_due(9).is_none());
        assert_eq!(h.pop_due(25), Some((10, "a")));
        assert_eq!(h.pop_due(25), Some((20, "b")));
        assert!(h.pop_due(25).is_none());
        assert_eq!(h.pop_due(30), Some((30, "c")));
        assert_eq!(h.next(), None);
    }

    #[test]
    fn items_no_longer_live_are_compacted_away_once_the_heap_doubles() {
        let mut h = DueHeap::default();
        // 100 live items among 10,000.
        let live = |i: &u64| i.is_multiple_of(100);
        for i in 0..10_000u64 {
            h.push(i, i, live);
            assert!(h.len() <= 2 * COMPACT_FLOOR, "{} entries", h.len());
        }
        let mut kept = 0;
        while let Some((_, i)) = h.pop_due(u64::MAX) {
            kept += u64::from(live(&i));
        }
        assert_eq!(kept, 100, "every live item kept");
    }
}
