//! The room actor: owns one room's local members and fans packets out to them.
//!
//! Fan-out never waits on a member: each delivery is a non-blocking send to
//! the member's connection actor, which decides on its own queue. One actor
//! per namespace (key `room: None`) serves namespace-wide emits the same way.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use slog::Logger;

use super::delivery::{Deliver, Encoded, Filter, Mode};
use super::interest::{AddMember, RemoveMember, Roster};
use super::metrics::Metrics;
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
    metrics: Metrics,
    log: Logger,
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
            metrics,
            log,
        }
    }

    fn fanout(&self, msg: &Broadcast) {
        for (sid, conn) in &self.members {
            conn.do_send(Deliver {
                ns: self.key.ns.clone(),
                sid: sid.clone(),
                frames: msg.frames.clone(),
                via: self.key.room.clone(),
                filter: msg.filter.clone(),
                mode: msg.mode.clone(),
            });
        }
    }
}

impl Actor for RoomActor {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        self.metrics.room_started();
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
            self.members.insert(m.sid, m.conn);
        });
    }
}

impl Handler<RemoveMember> for RoomActor {
    type Result = ();
    fn handle(&mut self, m: RemoveMember, ctx: &mut Context<Self>) {
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
        guard(ctx, &self.log, "room", |_| self.fanout(&msg));
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

#[cfg(any(test, feature = "internals"))]
impl Handler<super::supervisor::InjectPanic> for RoomActor {
    type Result = ();
    fn handle(&mut self, _: super::supervisor::InjectPanic, ctx: &mut Context<Self>) {
        guard(ctx, &self.log, "room", |_| panic!("injected fault"));
    }
}
