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

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use slog::Logger;

use super::delivery::{Deliver, Encoded, Filter, Item, Items, Mode};
use super::interest::{AddMember, RemoveMember, Roster};
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
    members: HashMap<Sid, Recipient<Deliver>>,
    roster: Roster<RoomKey, RoomActor>,
    /// Broadcasts not yet sent to the members, in order. A [`Flush`] is
    /// queued whenever the first one is added.
    pending: Vec<Item>,
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
        metrics: Metrics,
        log: Logger,
    ) -> RoomActor {
        RoomActor {
            key,
            members: HashMap::new(),
            roster,
            pending: Vec::new(),
            metrics,
            log,
        }
    }
}

/// Send the `pending` broadcasts to every member, one message each. (A
/// function of the fields it needs, so the handlers' panic guards can
/// borrow the logger beside them.)
fn flush(key: &RoomKey, members: &HashMap<Sid, Recipient<Deliver>>, pending: &mut Vec<Item>) {
    let items = match pending.len() {
        0 => return,
        1 => Items::One(pending.pop().expect("one pending")),
        _ => Items::Many(std::mem::take(pending).into()),
    };
    for (sid, conn) in members {
        conn.do_send(Deliver {
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
        // After a restart: a flush queued before the panic went with the
        // old context.
        if !self.pending.is_empty() {
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
        guard(ctx, &self.log, "room", |_| {
            // What was broadcast before the join is not for the new member.
            flush(&self.key, &self.members, &mut self.pending);
            self.members.insert(m.sid, m.conn);
        });
    }
}

impl Handler<RemoveMember> for RoomActor {
    type Result = ();
    fn handle(&mut self, m: RemoveMember, ctx: &mut Context<Self>) {
        guard(ctx, &self.log, "room", |_| {
            flush(&self.key, &self.members, &mut self.pending);
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
            guard(ctx, &self.log, "room", |_| {
                flush(&self.key, &self.members, &mut self.pending)
            });
        } else if self.pending.len() == 1 {
            // A flush still queued from an earlier batch (one sent early, at
            // MAX_BATCH or by a join) finds this one instead: harmless.
            ctx.notify(Flush);
        }
    }
}

impl Handler<Flush> for RoomActor {
    type Result = ();
    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) {
        guard(ctx, &self.log, "room", |_| {
            flush(&self.key, &self.members, &mut self.pending)
        });
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
            let key = RoomKey {
                ns: "/".into(),
                room: Some("r".into()),
            };
            let log = slog::Logger::root(slog::Discard, slog::o!());
            let rooms: Registry<RoomKey, RoomActor> =
                Registry::new(move |key: &RoomKey, roster| {
                    RoomActor::new(key.clone(), roster, Metrics::new(), log.clone()).start()
                });
            let join = |seen: &Arc<Mutex<Seen>>| {
                let m = Member(seen.clone()).start();
                let sid = Sid::random();
                rooms.join(
                    &key,
                    AddMember {
                        sid: sid.clone(),
                        ns: "/".into(),
                        conn: m.clone().recipient(),
                        control: m.recipient(),
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
}
