//! The user actor: one per authenticated user id, tracking that user's
//! sockets on every device and namespace, so an emit to a user reaches all of
//! them and revoking a user disconnects every one.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use slog::Logger;

use super::delivery::{Deliver, DisconnectSocket, Encoded};
use super::registry::{AddMember, RemoveMember};
use super::room::supervised;
use crate::engineio::Sid;
use crate::metrics::Metrics;

struct Member {
    ns: Arc<str>,
    conn: Recipient<Deliver>,
    control: Recipient<DisconnectSocket>,
}

pub struct UserActor {
    user: Arc<str>,
    sockets: HashMap<Sid, Member>,
    metrics: Metrics,
    log: Logger,
}

impl UserActor {
    pub fn new(user: Arc<str>, metrics: Metrics, log: Logger) -> UserActor {
        UserActor {
            user,
            sockets: HashMap::new(),
            metrics,
            log,
        }
    }

    pub fn user(&self) -> &str {
        &self.user
    }
}

impl Actor for UserActor {
    type Context = Context<Self>;
}

impl Supervised for UserActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.metrics.actor_restart("user");
    }
}

impl Handler<AddMember> for UserActor {
    type Result = ();
    fn handle(&mut self, m: AddMember, _ctx: &mut Context<Self>) {
        self.sockets.insert(
            m.sid,
            Member {
                ns: m.ns,
                conn: m.conn,
                control: m.control,
            },
        );
    }
}

impl Handler<RemoveMember> for UserActor {
    type Result = ();
    fn handle(&mut self, m: RemoveMember, _ctx: &mut Context<Self>) {
        self.sockets.remove(&m.sid);
    }
}

/// Emit to every socket of the user in namespace `ns`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UserEmit {
    pub ns: Arc<str>,
    pub frames: Encoded,
    pub volatile: bool,
}

impl Handler<UserEmit> for UserActor {
    type Result = ();
    fn handle(&mut self, msg: UserEmit, ctx: &mut Context<Self>) {
        let log = self.log.clone();
        supervised(ctx, &log, "user", || {
            for (sid, m) in &self.sockets {
                if m.ns == msg.ns {
                    m.conn.do_send(Deliver {
                        ns: m.ns.clone(),
                        sid: sid.clone(),
                        frames: msg.frames.clone(),
                        via: None,
                        filter: None,
                        volatile: msg.volatile,
                    });
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
    fn handle(&mut self, _: DisconnectUser, _ctx: &mut Context<Self>) -> usize {
        for (sid, m) in &self.sockets {
            m.control.do_send(DisconnectSocket {
                ns: m.ns.clone(),
                sid: sid.clone(),
            });
        }
        self.sockets.len()
    }
}
