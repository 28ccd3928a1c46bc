//! The mailbox probe: how long a message sent to one of the node's actors
//! now waits before that actor handles it, the actor-world equivalent of
//! Node's event-loop lag: `riptide_actor_mailbox_delay_seconds{kind}`.
//!
//! # How
//!
//! A thread of its own (`riptide-probe`, a current-thread tokio runtime,
//! asleep between ticks) wakes every [`INTERVAL`] and sends one small
//! message to at most [`PER_KIND`] actors of each [`ActorKind`], timing
//! each to its answer:
//!
//! - `room`: room actors, the per-namespace ones included (the rooms
//!   registry), sent a [`Probe`];
//! - `user`: user actors (the users registry), a [`Probe`];
//! - `handler`: handler actors (one per namespace and worker thread), sent
//!   `Dispatch::Barrier`, which they already answer once everything sent
//!   before it has run (what shutdown waits on);
//! - `connection`: the session actors of the node's sockets (each
//!   namespace's socket table), a [`Probe`].
//!
//! The message waits behind everything queued before it, is answered the
//! moment the actor reaches it (answering is all it does), and the answer
//! wakes this thread, which does nothing else: the time measured is the
//! mailbox wait, plus the actor's worker thread getting to the actor, plus
//! one cross-thread wake-up (tens of microseconds, under the first bucket
//! that matters). Timing the round trip here rather than `now - sent` in
//! the actor lets the handler actors be probed with a message they already
//! have, and shows a stuck actor: a probe not answered within [`TIMEOUT`]
//! is observed as `TIMEOUT`, past the histogram's last bound (`+Inf`). An
//! actor that stops before it reaches the probe is not a sample.
//!
//! # What it costs
//!
//! Nothing per delivery: no actor does anything on its hot path for this.
//! Per tick at most `4 × PER_KIND` messages (64 a second), whatever the
//! number of actors: 10,000 rooms do not cost 10,000 messages a second.
//! Each kind is sampled round-robin (a cursor into the registry's
//! iteration order, moved on by what was probed), so every actor is
//! probed in turn, one in `actors / PER_KIND` seconds. Finding the actors
//! at the cursor walks the registry under its read lock once per tick
//! (a few microseconds per thousand entries; the connections' walk skips
//! whole namespaces by their length). At most `4 × PER_KIND × TIMEOUT /
//! INTERVAL` probes are in flight.
//!
//! The node has no start hook of its own (the service starts the HTTP
//! server), so the probe starts with the node's first connection (no
//! connection, no actor to probe) and holds the node only weakly: it ends
//! at the first tick after the node is dropped.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use slog::warn;

use super::dispatch::Dispatch;
use super::metrics::{ActorKind, Metrics};
use super::shared::ServerShared;

/// Time between two ticks.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Most actors of one kind probed in a tick.
pub const PER_KIND: usize = 16;

/// A probe not answered by then is observed as this (an actor stuck at
/// least that long), past the histogram's last bound.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Answered (with nothing) by the actor as soon as it handles it. Room,
/// user and connection actors handle it; handler actors get
/// `Dispatch::Barrier` instead.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Probe;

/// An actor picked for this tick.
pub(crate) enum Probed {
    Actor(Recipient<Probe>),
    Handler(Recipient<Dispatch>),
}

impl Probed {
    /// Send the probe now; the future says whether the actor answered it
    /// (false: it stopped first).
    fn send(self) -> BoxFuture<'static, bool> {
        match self {
            Probed::Actor(r) => r.send(Probe).map(|r| r.is_ok()).boxed(),
            Probed::Handler(r) => r.send(Dispatch::Barrier).map(|r| r.is_ok()).boxed(),
        }
    }
}

/// Up to `n` items from position `*cursor` of a collection, as `take(from,
/// n)` finds them; the cursor moves on by what was taken, and back to the
/// start at the end (or when the collection shrank below it).
pub(crate) fn round_robin<T>(
    cursor: &mut usize,
    n: usize,
    take: impl Fn(usize, usize) -> Vec<T>,
) -> Vec<T> {
    let mut got = take(*cursor, n);
    if got.is_empty() && *cursor > 0 {
        *cursor = 0;
        got = take(0, n);
    }
    *cursor = if got.len() < n { 0 } else { *cursor + n };
    got
}

/// The actors to probe this tick, each kind from its cursor on.
fn pick(shared: &ServerShared, cursors: &mut [usize; 4]) -> Vec<(ActorKind, Probed)> {
    let mut out = Vec::with_capacity(4 * PER_KIND);
    let [rooms, users, handlers, connections] = cursors;
    let actor = |r: Recipient<Probe>| Probed::Actor(r);
    let mut add = |kind, probed: Vec<Probed>| out.extend(probed.into_iter().map(|p| (kind, p)));
    add(
        ActorKind::Room,
        round_robin(rooms, PER_KIND, |from, n| {
            shared
                .rooms
                .sample(from, n, |a| actor(a.clone().recipient()))
        }),
    );
    add(
        ActorKind::User,
        round_robin(users, PER_KIND, |from, n| {
            shared
                .users
                .sample(from, n, |a| actor(a.clone().recipient()))
        }),
    );
    let live: Vec<Recipient<Dispatch>> = shared
        .handlers
        .lock()
        .iter()
        .filter(|h| h.connected())
        .cloned()
        .collect();
    add(
        ActorKind::Handler,
        round_robin(handlers, PER_KIND, |from, n| {
            live.iter()
                .skip(from)
                .take(n)
                .map(|h| Probed::Handler(h.clone()))
                .collect()
        }),
    );
    add(
        ActorKind::Connection,
        round_robin(connections, PER_KIND, |from, n| {
            shared.sample_connections(from, n, |c| actor(c.clone().recipient()))
        }),
    );
    out
}

/// Start probing `shared`'s actors on a thread of its own (see the module
/// doc). Called once per node, by its first connection.
pub(crate) fn start(shared: &Arc<ServerShared>) {
    let node = Arc::downgrade(shared);
    let metrics = shared.metrics.clone();
    let log = shared.log.clone();
    let spawned = std::thread::Builder::new()
        .name("riptide-probe".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
            {
                Ok(rt) => rt.block_on(run(node, metrics)),
                Err(e) => warn!(log, "mailbox probe not started"; "error" => %e),
            }
        });
    if let Err(e) = spawned {
        warn!(shared.log, "mailbox probe not started"; "error" => %e);
    }
}

async fn run(node: Weak<ServerShared>, metrics: Metrics) {
    let mut cursors = [0usize; 4];
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // The node only for the picking: its addresses are not kept.
        let Some(shared) = node.upgrade() else {
            return;
        };
        let picked = pick(&shared, &mut cursors);
        drop(shared);
        for (kind, probed) in picked {
            // Queued in the actor's mailbox by this call.
            let sent = Instant::now();
            let answer = probed.send();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(TIMEOUT, answer).await {
                    Ok(true) => metrics.mailbox_delay(kind, sent.elapsed()),
                    Ok(false) => {}
                    Err(_) => metrics.mailbox_delay(kind, TIMEOUT),
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_visits_everything_in_turn_and_wraps() {
        let items: Vec<u32> = (0..10).collect();
        let take = |from: usize, n: usize| items.iter().copied().skip(from).take(n).collect();
        let mut cursor = 0;
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(round_robin(&mut cursor, 4, take));
        }
        assert_eq!(
            seen,
            vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]],
            "in turn"
        );
        assert_eq!(cursor, 0, "back to the start after the end");
        assert_eq!(round_robin(&mut cursor, 4, take), vec![0, 1, 2, 3]);

        // The collection shrank below the cursor: start again at once.
        let mut cursor = 8;
        let short = |from: usize, n: usize| (0..3u32).skip(from).take(n).collect();
        assert_eq!(round_robin(&mut cursor, 2, short), vec![0, 1]);
        assert_eq!(cursor, 2);

        let mut cursor = 5;
        let empty = |_: usize, _: usize| Vec::<u32>::new();
        assert!(round_robin(&mut cursor, 2, empty).is_empty());
        assert_eq!(cursor, 0);
    }

    /// A probe queued behind a busy actor's work waits for it: the delay
    /// measured is the wait, and a quiet actor's is small.
    #[test]
    fn a_probe_measures_the_wait_behind_queued_work() {
        struct Busy;
        impl Actor for Busy {
            type Context = Context<Self>;
        }
        #[derive(Message)]
        #[rtype(result = "()")]
        struct Work(Duration);
        impl Handler<Work> for Busy {
            type Result = ();
            fn handle(&mut self, Work(d): Work, _: &mut Context<Self>) {
                std::thread::sleep(d);
            }
        }
        impl Handler<Probe> for Busy {
            type Result = ();
            fn handle(&mut self, _: Probe, _: &mut Context<Self>) {}
        }

        // The actor on a system of its own, as a worker's are; the probe
        // from here, as the probe thread's are.
        let (tx, rx) = std::sync::mpsc::channel();
        let actors = std::thread::spawn(move || {
            let system = System::new();
            system.block_on(async move {
                tx.send((Busy.start(), System::current())).unwrap();
            });
            system.run().unwrap();
        });
        let (busy, system) = rx.recv().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let time = |work: Option<Duration>| {
            if let Some(d) = work {
                busy.do_send(Work(d));
            }
            let sent = Instant::now();
            let answer = Probed::Actor(busy.clone().recipient()).send();
            assert!(rt.block_on(answer), "answered");
            sent.elapsed()
        };
        let quiet = time(None);
        let behind = time(Some(Duration::from_millis(300)));
        assert!(
            behind >= Duration::from_millis(250),
            "waited behind the work: {behind:?}"
        );
        assert!(quiet < Duration::from_millis(200), "quiet: {quiet:?}");
        system.stop();
        actors.join().unwrap();
    }
}
