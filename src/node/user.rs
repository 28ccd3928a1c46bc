//! The user actor: one per authenticated user id, tracking that user's
//! sockets on every device and namespace, so an emit to a user reaches all of
//! them and revoking a user disconnects every one.

use std::sync::Arc;

use actix::prelude::*;
use slog::Logger;

use super::delivery::{Deliver, DisconnectSocket, Encoded, Mode};
use super::interest::{AddMember, RemoveMember, Roster};
use super::members::MemberMap;
use super::metrics::Metrics;
use super::probe::Probe;
use super::supervisor::guard;

pub struct UserActor {
    /// A working copy of the registry's record of this user's sockets;
    /// rebuilt from `roster` on restart.
    sockets: MemberMap<AddMember>,
    roster: Roster<Arc<str>, UserActor>,
    metrics: Metrics,
    log: Logger,
}

impl UserActor {
    pub fn new(roster: Roster<Arc<str>, UserActor>, metrics: Metrics, log: Logger) -> UserActor {
        UserActor {
            sockets: MemberMap::default(),
            roster,
            metrics,
            log,
        }
    }
}

impl Actor for UserActor {
    type Context = Context<Self>;
}

impl Supervised for UserActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.sockets = self
            .roster
            .members()
            .into_iter()
            .map(|m| (m.sid.clone(), m))
            .collect();
        self.metrics.actor_restart("user");
    }
}

impl Handler<AddMember> for UserActor {
    type Result = ();
    fn handle(&mut self, m: AddMember, ctx: &mut Context<Self>) {
        guard(ctx, &self.log, "user", |_| {
            self.sockets.insert(m.sid.clone(), m);
        });
    }
}

impl Handler<RemoveMember> for UserActor {
    type Result = ();
    fn handle(&mut self, m: RemoveMember, ctx: &mut Context<Self>) {
        guard(ctx, &self.log, "user", |_| {
            self.sockets.remove(&m.sid);
        });
    }
}

/// Emit to every socket of the user in namespace `ns`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UserEmit {
    pub ns: Arc<str>,
    pub frames: Encoded,
    pub mode: Mode,
}

impl Handler<UserEmit> for UserActor {
    type Result = ();
    fn handle(&mut self, msg: UserEmit, ctx: &mut Context<Self>) {
        guard(ctx, &self.log, "user", |_| {
            for (sid, m) in &self.sockets {
                if m.ns == msg.ns {
                    m.conn.deliver(Deliver::one(
                        m.ns.clone(),
                        sid.clone(),
                        None,
                        msg.frames.clone(),
                        None,
                        msg.mode.clone(),
                    ));
                }
            }
        });
    }
}

/// Disconnect every socket of the user (for example after its token was
/// revoked). Replies with how many sockets were told.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct DisconnectUser;

impl Handler<DisconnectUser> for UserActor {
    type Result = usize;
    fn handle(&mut self, _: DisconnectUser, ctx: &mut Context<Self>) -> usize {
        guard(ctx, &self.log, "user", |_| {
            for (sid, m) in &self.sockets {
                m.conn.disconnect(DisconnectSocket {
                    ns: m.ns.clone(),
                    sid: sid.clone(),
                });
            }
            self.sockets.len()
        })
        .unwrap_or(0)
    }
}

/// The mailbox probe: answered at once (nothing to guard).
impl Handler<Probe> for UserActor {
    type Result = ();
    fn handle(&mut self, _: Probe, _ctx: &mut Context<Self>) {}
}

#[cfg(any(test, feature = "internals"))]
impl Handler<super::supervisor::InjectPanic> for UserActor {
    type Result = ();
    fn handle(&mut self, _: super::supervisor::InjectPanic, ctx: &mut Context<Self>) {
        guard(ctx, &self.log, "user", |_| panic!("injected fault"));
    }
}
