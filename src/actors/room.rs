//! The room actor: owns one room's local members and fans packets out to them.
//!
//! Fan-out never waits on a member: each delivery is a non-blocking send to
//! the member's connection actor, which decides on its own queue. One actor
//! per namespace (key `room: None`) serves namespace-wide emits the same way.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use actix::prelude::*;
use slog::{error, Logger};

use super::delivery::{Deliver, Encoded, Filter};
use super::registry::{AddMember, RemoveMember};
use crate::engineio::Sid;
use crate::metrics::Metrics;

/// A room of a namespace; `room: None` is the namespace itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoomKey {
    pub ns: Arc<str>,
    pub room: Option<Arc<str>>,
}

pub struct RoomActor {
    key: RoomKey,
    members: HashMap<Sid, Recipient<Deliver>>,
    metrics: Metrics,
    log: Logger,
}

impl RoomActor {
    pub fn new(key: RoomKey, metrics: Metrics, log: Logger) -> RoomActor {
        RoomActor {
            key,
            members: HashMap::new(),
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
                volatile: msg.volatile,
            });
        }
    }
}

/// Run one message's work; a panic restarts the actor instead of killing it.
///
/// actix's `Supervisor` restarts an actor that stops, but a panic would
/// unwind through the supervisor itself; catching it here turns it into a
/// stop, so the supervisor restarts the actor with the same mailbox and the
/// addresses held by the registry and in-flight emits stay valid.
pub(crate) fn supervised<A, F>(ctx: &mut Context<A>, log: &Logger, kind: &'static str, f: F)
where
    A: Actor<Context = Context<A>>,
    F: FnOnce(),
{
    if let Err(panic) = catch_unwind(AssertUnwindSafe(f)) {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        error!(log, "actor panicked; restarting it"; "actor" => kind, "panic" => what);
        ctx.stop();
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
        // Membership survives: it is only changed by whole insert/remove
        // operations, so it is consistent whatever panicked. The rooms gauge
        // needs no care: `stopped` ran before this and `started` runs after.
        self.metrics.actor_restart("room");
    }
}

impl Handler<AddMember> for RoomActor {
    type Result = ();
    fn handle(&mut self, m: AddMember, _ctx: &mut Context<Self>) {
        self.members.insert(m.sid, m.conn);
    }
}

impl Handler<RemoveMember> for RoomActor {
    type Result = ();
    fn handle(&mut self, m: RemoveMember, _ctx: &mut Context<Self>) {
        self.members.remove(&m.sid);
    }
}

/// Emit one encoded packet to the room's members.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Broadcast {
    pub frames: Encoded,
    pub filter: Option<Arc<Filter>>,
    pub volatile: bool,
}

impl Handler<Broadcast> for RoomActor {
    type Result = ();
    fn handle(&mut self, msg: Broadcast, ctx: &mut Context<Self>) {
        let log = self.log.clone();
        supervised(ctx, &log, "room", || self.fanout(&msg));
    }
}

/// The ids of the room's local members.
#[derive(Message)]
#[rtype(result = "Vec<Sid>")]
pub struct Members;

impl Handler<Members> for RoomActor {
    type Result = MessageResult<Members>;
    fn handle(&mut self, _: Members, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.members.keys().cloned().collect())
    }
}

/// Fault injection for the supervision tests: panics inside the actor.
#[doc(hidden)]
#[derive(Message)]
#[rtype(result = "()")]
pub struct InjectPanic;

impl Handler<InjectPanic> for RoomActor {
    type Result = ();
    fn handle(&mut self, _: InjectPanic, ctx: &mut Context<Self>) {
        let log = self.log.clone();
        supervised(ctx, &log, "room", || panic!("injected fault"));
    }
}
