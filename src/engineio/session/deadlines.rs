//! One timer per worker thread for every session's deadlines.
//!
//! A session's heartbeat was two actix timers (`run_later`) in turn, the ping
//! and then the pong's deadline, and Socket.IO's connect timeout a third: each
//! a boxed future holding a tokio `Sleep`, 124 bytes on the heap, and
//! cancelling one grows the actor context's list of cancelled handles onto
//! the heap for good (docs/decisions.md, "Idle memory"). Now each worker
//! thread keeps one heap of `(when, session)` entries and one task with one
//! `Sleep` for its earliest; when an entry is due the session is sent
//! [`DeadlineDue`] and decides, from the deadlines it keeps itself, what is
//! due (a ping to send, a pong overdue, the app's deadline). A session has at
//! most one entry in the heap at a time (see `EngineCore::arm_deadlines`), an
//! entry holds the session weakly, and a session that is gone when its entry
//! comes due is skipped.
//!
//! Everything here is thread-local: a session arms the wheel of the thread
//! its actor runs on, and the due message is sent to it from there.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Weak;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use tokio::time::Sleep;

use crate::due_heap::DueHeap;

/// A session has an entry that came due: the session checks its own
/// deadlines (`EngineCore::on_deadline_due`).
pub struct DeadlineDue;
impl actix::Message for DeadlineDue {
    type Result = ();
}

/// What is told when an entry comes due: a session (every `SessionPort` is
/// one, sending itself [`DeadlineDue`]); a probe in the unit tests.
pub(super) trait Due {
    fn due(&self);
}

/// What the wheel's deadlines count from: fixed at the first use in the
/// process.
fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// `at` as an entry's deadline (an instant before the epoch is due at once).
fn ticks(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch()).as_nanos()).unwrap_or(u64::MAX)
}

fn instant(ticks: u64) -> Instant {
    epoch() + std::time::Duration::from_nanos(ticks)
}

#[derive(Default)]
struct Wheel {
    /// Each session's next deadline, in nanoseconds since [`epoch`] rather
    /// than as an `Instant` (16 bytes): 24-byte entries, one per session
    /// (the heap's capacity up to twice that). Compacted by [`DueHeap`].
    heap: DueHeap<u64, Weak<dyn Due>>,
    /// The driver task is spawned on this thread's runtime.
    running: bool,
    /// The driver's waker, and when its `Sleep` fires (`None`: it is parked
    /// with nothing to wait for). `arm` wakes it for an earlier entry.
    waker: Option<Waker>,
    sleeps_until: Option<u64>,
}

thread_local! {
    static WHEEL: RefCell<Wheel> = RefCell::new(Wheel::default());
}

/// Tell `who` at `when` (or as soon after as this thread gets to it). Must be
/// called on a thread with a running actix (tokio, local set) runtime.
pub(super) fn arm(when: Instant, who: Weak<dyn Due>) {
    let at = ticks(when);
    let spawn = WHEEL.with(|w| {
        let mut w = w.borrow_mut();
        // A session gone leaves its entry until it comes due (up to a ping
        // interval), keeping its session's address allocation: the heap
        // drops those when it compacts.
        w.heap.push(at, who, |who| who.strong_count() > 0);
        if !w.running {
            w.running = true;
            return true;
        }
        if w.sleeps_until.is_none_or(|t| at < t) {
            if let Some(waker) = w.waker.take() {
                waker.wake();
            }
        }
        false
    });
    if spawn {
        actix::spawn(Driver {
            sleep: Box::pin(tokio::time::sleep_until(instant(at).into())),
            set_for: Some(at),
        });
    }
}

/// Entries in this thread's wheel (the sessions that armed it, and entries
/// of sessions gone that have not come due yet).
#[cfg(test)]
pub(super) fn pending() -> usize {
    WHEEL.with(|w| w.borrow().heap.len())
}

/// The task that fires this thread's entries. It never completes; it is
/// dropped with the runtime.
struct Driver {
    sleep: Pin<Box<Sleep>>,
    /// The deadline `sleep` is set for.
    set_for: Option<u64>,
}

impl Future for Driver {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut due = Vec::new();
        loop {
            let now = ticks(Instant::now());
            let next = WHEEL.with(|w| {
                let mut w = w.borrow_mut();
                while let Some((_, who)) = w.heap.pop_due(now) {
                    due.push(who);
                }
                let next = w.heap.next();
                w.sleeps_until = next;
                match &w.waker {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    _ => w.waker = Some(cx.waker().clone()),
                }
                next
            });
            // Outside the borrow: telling a session is a mailbox push, but
            // nothing told may reach back into the wheel while it is held.
            for who in due.drain(..) {
                if let Some(who) = who.upgrade() {
                    who.due();
                }
            }
            let Some(at) = next else {
                // Parked until `arm` wakes it.
                return Poll::Pending;
            };
            if self.set_for != Some(at) {
                self.set_for = Some(at);
                self.sleep.as_mut().reset(instant(at).into());
            }
            match self.sleep.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                // Fired: take what is due now. tokio fires at or after the
                // deadline (rounded up to its millisecond tick), so `at` is
                // due; should the clock disagree, the sleep is set again.
                Poll::Ready(()) => self.set_for = None,
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The runtime is going away (a system stopped; a test's runtime
        // ended): the next one on this thread spawns its own driver. At
        // thread exit the wheel may already be gone.
        let _ = WHEEL.try_with(|w| {
            if let Ok(mut w) = w.try_borrow_mut() {
                w.running = false;
                w.waker = None;
                w.sleeps_until = None;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;
    use crate::due_heap::COMPACT_FLOOR;

    struct Probe {
        name: &'static str,
        log: Arc<Mutex<Vec<(&'static str, Instant)>>>,
    }
    impl Due for Probe {
        fn due(&self) {
            self.log.lock().unwrap().push((self.name, Instant::now()));
        }
    }

    fn probe(name: &'static str, log: &Arc<Mutex<Vec<(&'static str, Instant)>>>) -> Arc<dyn Due> {
        Arc::new(Probe {
            name,
            log: log.clone(),
        })
    }

    #[actix_rt::test]
    async fn entries_fire_in_deadline_order_not_before_their_time() {
        let log = Arc::default();
        let (a, b, c) = (probe("a", &log), probe("b", &log), probe("c", &log));
        let t0 = Instant::now();
        // Armed out of order; `b`, the earliest, arrives after the driver is
        // already sleeping for `c`.
        arm(t0 + Duration::from_millis(60), Arc::downgrade(&c));
        arm(t0 + Duration::from_millis(40), Arc::downgrade(&a));
        tokio::task::yield_now().await;
        arm(t0 + Duration::from_millis(20), Arc::downgrade(&b));
        tokio::time::sleep(Duration::from_millis(150)).await;
        let log = log.lock().unwrap();
        let names: Vec<_> = log.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["b", "a", "c"]);
        for ((_, at), ms) in log.iter().zip([20, 40, 60]) {
            assert!(
                *at >= t0 + Duration::from_millis(ms),
                "fired {:?} after arming, before its {ms} ms",
                at.duration_since(t0)
            );
        }
        assert_eq!(pending(), 0);
    }

    #[actix_rt::test]
    async fn a_gone_session_is_skipped_and_its_entry_released() {
        let log = Arc::default();
        let gone = probe("gone", &log);
        let kept = probe("kept", &log);
        let t0 = Instant::now();
        arm(t0 + Duration::from_millis(10), Arc::downgrade(&gone));
        arm(t0 + Duration::from_millis(20), Arc::downgrade(&kept));
        drop(gone);
        tokio::time::sleep(Duration::from_millis(80)).await;
        let names: Vec<_> = log.lock().unwrap().iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["kept"]);
        assert_eq!(pending(), 0);
    }

    #[actix_rt::test]
    async fn a_parked_driver_wakes_for_a_new_entry() {
        let log = Arc::default();
        let a = probe("a", &log);
        arm(
            Instant::now() + Duration::from_millis(5),
            Arc::downgrade(&a),
        );
        tokio::time::sleep(Duration::from_millis(40)).await;
        // The heap is empty now: the driver is parked with no sleep.
        assert_eq!(pending(), 0);
        arm(
            Instant::now() + Duration::from_millis(5),
            Arc::downgrade(&a),
        );
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(log.lock().unwrap().len(), 2);
    }

    #[actix_rt::test]
    async fn entries_of_sessions_gone_are_compacted_away_under_churn() {
        let log = Arc::default();
        let far = Instant::now() + Duration::from_secs(3600);
        let kept: Vec<_> = (0..10).map(|_| probe("kept", &log)).collect();
        for k in &kept {
            arm(far, Arc::downgrade(k));
        }
        // Many short-lived sessions, each gone before its entry is due.
        for _ in 0..10 * COMPACT_FLOOR {
            let gone = probe("gone", &log);
            arm(far, Arc::downgrade(&gone));
        }
        assert!(
            pending() < 2 * COMPACT_FLOOR,
            "{} entries left for 10 live sessions",
            pending()
        );
        // The live ones are still told.
        assert!(WHEEL.with(|w| w
            .borrow()
            .heap
            .items()
            .filter(|who| who.strong_count() > 0)
            .count()
            == kept.len()));
    }

    #[test]
    fn a_new_runtime_on_the_same_thread_gets_its_own_driver() {
        // The first runtime ends with an entry still waiting: its driver is
        // dropped with it, and the next runtime's `arm` must spawn another.
        let log = Arc::default();
        let a = probe("a", &log);
        actix_rt::System::new().block_on(async {
            arm(
                Instant::now() + Duration::from_secs(3600),
                Arc::downgrade(&a),
            );
            tokio::task::yield_now().await;
        });
        actix_rt::System::new().block_on(async {
            arm(
                Instant::now() + Duration::from_millis(5),
                Arc::downgrade(&a),
            );
            tokio::time::sleep(Duration::from_millis(40)).await;
        });
        assert_eq!(log.lock().unwrap().len(), 1);
    }
}
