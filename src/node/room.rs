//! The room actor: owns one room's local members and fans packets out to them.
//!
//! Fan-out never waits on a member: each delivery is a non-blocking send to
//! the member's connection actor, which decides on its own queue. One actor
//! per namespace (key `room: None`) serves namespace-wide emits the same way.
//!
//! Broadcasts are batched: a broadcast is held until the actor's mailbox is
//! empty (or [`MAX_BATCH`] are held), then every member gets one [`Deliver`]
//! carrying all of them, in order. A lone broadcast leaves at once (the
//! mailbox is empty behind it); a burst costs one message per member per
//! batch instead of one per broadcast (docs/decisions.md).
//!
//! A stream is batched too (the broadcast window,
//! `socketio.broadcast_window_us`): a broadcast that comes less than the
//! window after the room's last flush waits until the window has passed,
//! with whatever else comes meanwhile. A room sends at most one batch per
//! window, so a member busy with a stream gets one write for several
//! messages; a broadcast to a room quiet for longer than the window leaves
//! at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use slog::Logger;

use super::delivery::{Deliver, Encoded, Filter, Item, Items, MemberConn, Mode};
use super::interest::{AddMember, RemoveMember, Roster};
use super::members::MemberMap;
use super::metrics::Metrics;
use super::probe::Probe;
use super::supervisor::guard;
use crate::engineio::Sid;

/// A room of a namespace; `room: None` is the namespace itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoomKey {
    pub ns: Arc<str>,
    pub room: Option<Arc<str>>,
}

pub struct RoomActor {
    key: RoomKey,
    /// A working copy of the registry's membership, for fan-out without a
    /// lock; rebuilt from `roster` on restart.
    members: MemberMap<MemberConn>,
    roster: Roster<RoomKey, RoomActor>,
    /// Broadcasts not yet sent to the members, in order. A [`Flush`] is
    /// queued (or timed) whenever one is added and none is.
    pending: Vec<Item>,
    /// The broadcast window (module doc); zero: off.
    window: Duration,
    /// When the last batch left (`None`: never, or the window is off).
    flushed_at: Option<Instant>,
    /// A [`Flush`] is queued or timed and has not run yet.
    flush_queued: bool,
    metrics: Metrics,
    log: Logger,
}

/// Most broadcasts carried by one delivery: bounds what one member's
/// connection takes in one message.
pub const MAX_BATCH: usize = 64;

/// Send what is pending: queued with `notify`, which actix runs once the
/// mailbox is empty.
struct Flush;

impl Message for Flush {
    type Result = ();
}

impl RoomActor {
    pub fn new(
        key: RoomKey,
        roster: Roster<RoomKey, RoomActor>,
        window: Duration,
        metrics: Metrics,
        log: Logger,
    ) -> RoomActor {
        RoomActor {
            key,
            members: MemberMap::default(),
            roster,
            pending: Vec::new(),
            window,
            flushed_at: None,
            flush_queued: false,
            metrics,
            log,
        }
    }

    /// Send what is pending now, and start the window.
    fn flush_now(&mut self, ctx: &mut Context<Self>) {
        if self.pending.is_empty() {
            return;
        }
        if !self.window.is_zero() {
            self.flushed_at = Some(Instant::now());
        }
        guard(ctx, &self.log, "room", |_| {
            flush(&self.key, &self.members, &mut self.pending)
        });
    }

    /// A broadcast was added to `pending`: see that a flush will send it.
    fn schedule_flush(&mut self, ctx: &mut Context<Self>) {
        if self.flush_queued {
            return;
        }
        self.flush_queued = true;
        // Inside the window: at its end. Otherwise once the mailbox is
        // drained (a burst already waiting leaves in one batch).
        match window_wait(self.flushed_at, self.window, Instant::now()) {
            Some(wait) => {
                ctx.notify_later(Flush, wait);
            }
            None => ctx.notify(Flush),
        }
    }
}

/// How long a broadcast added at `now` waits for the end of the window
/// opened by the flush at `flushed_at`; `None`: it is not inside one.
fn window_wait(flushed_at: Option<Instant>, window: Duration, now: Instant) -> Option<Duration> {
    flushed_at
        .and_then(|at| (at + window).checked_duration_since(now))
        .filter(|wait| !wait.is_zero())
}

/// Send the `pending` broadcasts to every member, one message each. (A
/// function of the fields it needs, so the handlers' panic guards can
/// borrow the logger beside them.)
fn flush(key: &RoomKey, members: &MemberMap<MemberConn>, pending: &mut Vec<Item>) {
    let items = match pending.len() {
        0 => return,
        1 => Items::One(pending.pop().expect("one pending")),
        _ => Items::Many(std::mem::take(pending).into()),
    };
    for (sid, conn) in members {
        conn.deliver(Deliver {
            ns: key.ns.clone(),
            sid: sid.clone(),
            via: key.room.clone(),
            items: items.clone(),
        });
    }
}

impl Actor for RoomActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.metrics.room_started();
        // After a restart: a flush queued or timed before the panic went
        // with the old context.
        self.flush_queued = false;
        if !self.pending.is_empty() {
            self.flush_queued = true;
            ctx.notify(Flush);
        }
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.metrics.room_stopped();
    }
}

impl Supervised for RoomActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        // The state that panicked is not trusted: membership comes back from
        // the registry. Joins and leaves still queued apply on top (both are
        // idempotent). The rooms gauge needs no care: `stopped` ran before
        // this and `started` runs after.
        self.members = self
            .roster
            .members()
            .into_iter()
            .map(|m| (m.sid, m.conn))
            .collect();
        self.metrics.actor_restart("room");
    }
}

impl Handler<AddMember> for RoomActor {
    type Result = ();
    fn handle(&mut self, m: AddMember, ctx: &mut Context<Self>) {
        // What was broadcast before the join is not for the new member.
        self.flush_now(ctx);
        guard(ctx, &self.log, "room", |_| {
            self.members.insert(m.sid, m.conn);
        });
    }
}

impl Handler<RemoveMember> for RoomActor {
    type Result = ();
    fn handle(&mut self, m: RemoveMember, ctx: &mut Context<Self>) {
        self.flush_now(ctx);
        guard(ctx, &self.log, "room", |_| {
            self.members.remove(&m.sid);
        });
    }
}

/// Emit one encoded packet to the room's members.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Broadcast {
    pub frames: Encoded,
    pub filter: Option<Arc<Filter>>,
    pub mode: Mode,
}

impl Handler<Broadcast> for RoomActor {
    type Result = ();
    fn handle(&mut self, msg: Broadcast, ctx: &mut Context<Self>) {
        self.pending.push(Item {
            frames: msg.frames,
            filter: msg.filter,
            mode: msg.mode,
        });
        if self.pending.len() >= MAX_BATCH {
            // A flush still queued (or timed) finds the next ones instead,
            // or nothing: harmless.
            self.flush_now(ctx);
        } else {
            self.schedule_flush(ctx);
        }
    }
}

impl Handler<Flush> for RoomActor {
    type Result = ();
    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) {
        self.flush_queued = false;
        self.flush_now(ctx);
    }
}

/// The ids of the room's local members.
#[derive(Message)]
#[rtype(result = "Vec<Sid>")]
pub struct Members;

impl Handler<Members> for RoomActor {
    type Result = MessageResult<Members>;
    fn handle(&mut self, _: Members, ctx: &mut Context<Self>) -> Self::Result {
        let members = guard(ctx, &self.log, "room", |_| {
            self.members.keys().cloned().collect()
        });
        MessageResult(members.unwrap_or_default())
    }
}

/// The mailbox probe: answered at once (nothing to guard).
impl Handler<Probe> for RoomActor {
    type Result = ();
    fn handle(&mut self, _: Probe, _ctx: &mut Context<Self>) {}
}

#[cfg(any(test, feature = "internals"))]
impl Handler<super::supervisor::InjectPanic> for RoomActor {
    type Result = ();
    fn handle(&mut self, _: super::supervisor::InjectPanic, ctx: &mut Context<Self>) {
        guard(ctx, &self.log, "room", |_| panic!("injected fault"));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use actix::prelude::*;
    use parking_lot::Mutex;

    use super::*;
    use crate::engineio::Frame;
    use crate::node::delivery::DisconnectSocket;
    use crate::node::interest::Registry;

    /// Records the packets it is delivered (their text) and each delivery's size.
    #[derive(Default)]
    struct Seen {
        packets: Vec<String>,
        batches: Vec<usize>,
    }

    struct Member(Arc<Mutex<Seen>>);

    impl Actor for Member {
        type Context = Context<Self>;
    }

    impl Handler<Deliver> for Member {
        type Result = ();
        fn handle(&mut self, d: Deliver, _: &mut Context<Self>) {
            let mut seen = self.0.lock();
            seen.batches.push(d.items.as_slice().len());
            for item in d.items.as_slice() {
                seen.packets
                    .push(item.frames[0].as_str().unwrap().to_string());
            }
        }
    }

    impl Handler<DisconnectSocket> for Member {
        type Result = ();
        fn handle(&mut self, _: DisconnectSocket, _: &mut Context<Self>) {}
    }

    /// Room `r` of `/` and a registry that starts its actor with `window`.
    fn room_r(window: Duration) -> (RoomKey, Registry<RoomKey, RoomActor>) {
        let key = RoomKey {
            ns: "/".into(),
            room: Some("r".into()),
        };
        let log = slog::Logger::root(slog::Discard, slog::o!());
        let rooms = Registry::new(move |key: &RoomKey, roster| {
            RoomActor::new(key.clone(), roster, window, Metrics::new(), log.clone()).start()
        });
        (key, rooms)
    }

    fn broadcast(n: usize) -> Broadcast {
        Broadcast {
            frames: Arc::from(vec![Frame::message(&n.to_string())]),
            filter: None,
            mode: Mode::Normal,
        }
    }

    /// A burst is batched (at most MAX_BATCH per delivery), in order, with
    /// nothing lost; a member that joins behind queued broadcasts gets none
    /// of them, and one that leaves gets none of what follows.
    #[test]
    fn bursts_are_batched_in_order_and_membership_changes_flush_first() {
        System::new().block_on(async {
            let (key, rooms) = room_r(Duration::ZERO);
            let join = |seen: &Arc<Mutex<Seen>>| {
                let m = Member(seen.clone()).start();
                let sid = Sid::random();
                rooms.join(
                    &key,
                    AddMember {
                        sid: sid.clone(),
                        ns: "/".into(),
                        conn: Arc::new(m),
                    },
                );
                sid
            };
            let [first, late, leaving] = [(); 3].map(|_| Arc::new(Mutex::new(Seen::default())));
            join(&first);
            let gone = join(&leaving);
            let room = rooms.get(&key).expect("room actor");
            // All queued before the actor runs: one mailbox drain.
            for n in 0..150 {
                room.do_send(broadcast(n));
            }
            rooms.leave(&key, gone);
            join(&late);
            for n in 150..160 {
                room.do_send(broadcast(n));
            }
            // Handled after everything above, and flushes what is pending.
            room.send(Members).await.unwrap();
            actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;

            let want =
                |r: std::ops::Range<usize>| -> Vec<String> { r.map(|n| format!("4{n}")).collect() };
            let first: &Seen = &first.lock();
            assert_eq!(first.packets, want(0..160));
            assert!(
                first.batches.iter().all(|&b| b <= MAX_BATCH),
                "{:?}",
                first.batches
            );
            assert!(first.batches.len() < 160, "batched: {:?}", first.batches);
            assert_eq!(leaving.lock().packets, want(0..150));
            assert_eq!(late.lock().packets, want(150..160));
        });
    }

    /// The window: a broadcast to a room that has not flushed yet leaves at
    /// once; the ones that follow inside the window wait for its end and
    /// leave together, in order, although each came alone to an empty
    /// mailbox.
    #[test]
    fn a_stream_inside_the_window_leaves_in_one_batch_at_its_end() {
        System::new().block_on(async {
            // Long enough that nothing below reaches its end by accident.
            let window = Duration::from_secs(1);
            let (key, rooms) = room_r(window);
            let seen = Arc::new(Mutex::new(Seen::default()));
            let m = Member(seen.clone()).start();
            rooms.join(
                &key,
                AddMember {
                    sid: Sid::random(),
                    ns: "/".into(),
                    conn: Arc::new(m),
                },
            );
            let room = rooms.get(&key).expect("room actor");
            let started = Instant::now();
            let arrived = |want: usize| {
                let seen = seen.clone();
                async move {
                    for _ in 0..1000 {
                        if seen.lock().packets.len() >= want {
                            return;
                        }
                        actix_rt::time::sleep(Duration::from_millis(10)).await;
                    }
                    panic!("{want} packets not delivered: {:?}", seen.lock().packets);
                }
            };
            room.do_send(broadcast(0));
            arrived(1).await;
            // Each alone in the mailbox: without the window, three batches.
            for n in 1..4 {
                room.do_send(broadcast(n));
                room.send(Members).await.unwrap();
            }
            assert_eq!(seen.lock().packets.len(), 1, "held for the window");
            arrived(4).await;
            assert!(started.elapsed() >= window, "left at the window's end");
            let seen: &Seen = &seen.lock();
            assert_eq!(seen.packets, ["40", "41", "42", "43"]);
            assert_eq!(seen.batches, [1, 3]);
        });
    }

    #[test]
    fn only_a_broadcast_inside_the_window_waits() {
        let window = Duration::from_millis(2);
        let t = Instant::now();
        // Never flushed, or the window off: at once.
        assert_eq!(window_wait(None, window, t), None);
        assert_eq!(window_wait(Some(t), Duration::ZERO, t), None);
        // Inside: until its end.
        assert_eq!(window_wait(Some(t), window, t), Some(window));
        assert_eq!(
            window_wait(Some(t), window, t + Duration::from_micros(500)),
            Some(Duration::from_micros(1500))
        );
        // At or past its end: at once.
        assert_eq!(window_wait(Some(t), window, t + window), None);
        assert_eq!(window_wait(Some(t), window, t + 2 * window), None);
    }
}
