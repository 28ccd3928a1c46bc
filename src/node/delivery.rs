//! What travels from a room (or user, or a direct emit) to a connection.

use std::sync::Arc;

use actix::prelude::*;

use crate::engineio::Sid;
pub use crate::socketio::encode::Encoded;

/// Who, among a room's members, a broadcast is for. Absent on the hot path
/// (one room, nobody excluded), so the common fan-out carries no filter.
#[derive(Debug, Default)]
pub struct Filter {
    /// The target rooms, in order. A socket in several of them accepts the
    /// delivery only from the first one it belongs to: no double delivery,
    /// decided by the one party that knows its own rooms for sure.
    pub rooms: Vec<Arc<str>>,
    pub except_rooms: Vec<Arc<str>>,
    /// Sockets left out (the emitter's own socket for `socket.broadcast()`).
    pub except_sids: Vec<Sid>,
}

/// One packet as its receivers see it.
#[derive(Clone)]
pub struct Item {
    pub frames: Encoded,
    pub filter: Option<Arc<Filter>>,
    pub mode: Mode,
}

/// Packets for one socket, in order: one, or the broadcasts a room actor
/// found waiting in its mailbox, shared by every member.
#[derive(Clone)]
pub enum Items {
    One(Item),
    Many(Arc<[Item]>),
}

impl Items {
    pub fn as_slice(&self) -> &[Item] {
        match self {
            Items::One(item) => std::slice::from_ref(item),
            Items::Many(items) => items,
        }
    }
}

/// Packets for one socket.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver {
    pub ns: Arc<str>,
    pub sid: Sid,
    /// The room it came through; `None` for namespace-wide and direct emits.
    pub via: Option<Arc<str>>,
    pub items: Items,
}

impl Deliver {
    /// One packet.
    pub fn one(
        ns: Arc<str>,
        sid: Sid,
        via: Option<Arc<str>>,
        frames: Encoded,
        filter: Option<Arc<Filter>>,
        mode: Mode,
    ) -> Deliver {
        Deliver {
            ns,
            sid,
            via,
            items: Items::One(Item {
                frames,
                filter,
                mode,
            }),
        }
    }
}

/// How a delivery is written, and what it tells connection state recovery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Mode {
    #[default]
    Normal,
    /// Dropped rather than queued when the client cannot take it now.
    Volatile,
    /// Stored for recovery under this offset (its last argument).
    Stored(u64),
    /// Volatile, with this string as its last argument: the client will
    /// take it as its offset (see `recovery`).
    VolatileTail(Arc<str>),
}

impl Mode {
    pub fn volatile(volatile: bool) -> Mode {
        if volatile {
            Mode::Volatile
        } else {
            Mode::Normal
        }
    }

    pub fn is_volatile(&self) -> bool {
        matches!(self, Mode::Volatile | Mode::VolatileTail(_))
    }
}

/// Disconnect one socket from its namespace (administrative, user revocation).
#[derive(Message)]
#[rtype(result = "()")]
pub struct DisconnectSocket {
    pub ns: Arc<str>,
    pub sid: Sid,
}

/// How room and user actors reach a member's connection.
pub trait MemberPort: Send + Sync + 'static {
    fn deliver(&self, d: Deliver);
    fn disconnect(&self, d: DisconnectSocket);
}

/// A member's connection: one pointer per connection, shared by every
/// membership (the registry's and the actor's copy of each room and user it
/// is in). Each clone of an actix address or recipient allocates sender
/// state of its own: two recipients per membership, kept twice, were most of
/// what addresses cost an idle connection (docs/decisions.md, "Idle memory").
pub type MemberConn = Arc<dyn MemberPort>;

impl<A> MemberPort for Addr<A>
where
    A: Actor + Handler<Deliver> + Handler<DisconnectSocket>,
    A::Context: actix::dev::ToEnvelope<A, Deliver> + actix::dev::ToEnvelope<A, DisconnectSocket>,
{
    fn deliver(&self, d: Deliver) {
        self.do_send(d);
    }
    fn disconnect(&self, d: DisconnectSocket) {
        self.do_send(d);
    }
}
