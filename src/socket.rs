//! What an application handler sees of one socket: its identity, its
//! handshake, and the operations it may ask of the connection actor.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::Value;
use slog::warn;
use tokio::sync::oneshot;

use crate::actors::connection::{Command, Connection};
use crate::actors::registry::AddMember;
use crate::actors::room::RoomKey;
use crate::broadcast::BroadcastOperator;
use crate::engineio::{Handshake, SessionActor, Sid};
use crate::server::ServerShared;

/// The arguments of an event or ack: JSON values, with binary attachments
/// referenced from them by `{"_placeholder": true, "num": i}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Payload {
    pub args: Vec<Value>,
    pub binary: Vec<Bytes>,
}

impl Payload {
    pub fn new(args: Vec<Value>) -> Payload {
        Payload {
            args,
            binary: Vec::new(),
        }
    }

    /// Adds a binary attachment and returns the placeholder to put where the
    /// bytes belong (as an argument, or nested in one).
    pub fn attach(&mut self, bytes: impl Into<Bytes>) -> Value {
        let num = self.binary.len();
        self.binary.push(bytes.into());
        serde_json::json!({"_placeholder": true, "num": num})
    }
}

impl From<Vec<Value>> for Payload {
    fn from(args: Vec<Value>) -> Payload {
        Payload::new(args)
    }
}

impl From<Value> for Payload {
    /// One argument.
    fn from(v: Value) -> Payload {
        Payload::new(vec![v])
    }
}

impl From<()> for Payload {
    fn from(_: ()) -> Payload {
        Payload::default()
    }
}

/// An event from a client.
#[derive(Debug)]
pub struct Event {
    pub name: String,
    pub payload: Payload,
    /// Present when the client asked for an acknowledgement.
    pub ack: Option<AckSender>,
}

impl Event {
    /// The `i`-th argument, if any.
    pub fn arg(&self, i: usize) -> Option<&Value> {
        self.payload.args.get(i)
    }

    /// The `i`-th argument as a string, if it is one.
    pub fn str_arg(&self, i: usize) -> Option<&str> {
        self.arg(i).and_then(Value::as_str)
    }
}

/// Answers one client acknowledgement; consumed by `send`, so an ack can only
/// be answered once.
#[derive(Debug)]
pub struct AckSender {
    pub(crate) conn: Addr<SessionActor<Connection>>,
    pub(crate) ns: Arc<str>,
    pub(crate) sid: Sid,
    pub(crate) id: u64,
}

impl AckSender {
    pub fn send(self, payload: impl Into<Payload>) {
        self.conn.do_send(Command::Ack {
            ns: self.ns,
            sid: self.sid,
            id: self.id,
            payload: payload.into(),
        });
    }
}

/// Why a socket left its namespace; the strings are Socket.IO's reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    ClientNamespaceDisconnect,
    ServerNamespaceDisconnect,
    TransportClose,
    TransportError,
    PingTimeout,
    ParseError,
    ForcedClose,
    ServerShuttingDown,
    /// The application's handler panicked on one of this socket's events.
    HandlerPanic,
    /// The client did not take its messages fast enough and was closed.
    SlowConsumer,
}

impl DisconnectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::ClientNamespaceDisconnect => "client namespace disconnect",
            DisconnectReason::ServerNamespaceDisconnect => "server namespace disconnect",
            DisconnectReason::TransportClose => "transport close",
            DisconnectReason::TransportError => "transport error",
            DisconnectReason::PingTimeout => "ping timeout",
            DisconnectReason::ParseError => "parse error",
            DisconnectReason::ForcedClose => "forced close",
            DisconnectReason::ServerShuttingDown => "server shutting down",
            DisconnectReason::HandlerPanic => "handler panic",
            DisconnectReason::SlowConsumer => "slow consumer",
        }
    }
}

/// Why an emit was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    #[error("`{0}` is a reserved event name")]
    ReservedEvent(String),
    /// Local sockets got the packet, but the cluster refused it: too large
    /// for the broker, or the outbound buffer is full (broker away or slow).
    /// The other nodes did not get it.
    #[error("local sockets served, other nodes not reached: {0}")]
    Cluster(#[from] crate::adapter::PublishError),
}

/// Why an acknowledgement did not come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("the client did not acknowledge in time")]
    Timeout,
    #[error("the socket disconnected before acknowledging")]
    Disconnected,
}

/// A handle to one socket (one client in one namespace). Cheap to clone; all
/// operations are messages to the socket's connection actor, so they never
/// block and are applied in the order they were made.
#[derive(Clone)]
pub struct Socket {
    pub(crate) inner: Arc<SocketInner>,
}

pub(crate) struct SocketInner {
    pub id: Sid,
    pub ns: Arc<str>,
    pub conn: Addr<SessionActor<Connection>>,
    pub server: Arc<ServerShared>,
    pub handshake: Arc<Handshake>,
    pub auth: Value,
    pub user: Option<Arc<str>>,
    /// The rooms joined explicitly (the own id room is implicit). Shared by
    /// the handles and the connection, so a join is in effect as soon as
    /// `join` returns; `closed` once the socket has left, so a late join
    /// cannot leave a membership behind.
    pub rooms: Mutex<RoomSet>,
}

#[derive(Debug, Default)]
pub(crate) struct RoomSet {
    pub rooms: HashSet<Arc<str>, foldhash::fast::RandomState>,
    pub closed: bool,
}

impl SocketInner {
    /// Whether the socket is in `room` (its own id included).
    pub fn in_room(&self, room: &str) -> bool {
        room == self.id.as_str() || self.rooms.lock().rooms.contains(room)
    }
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.inner.id)
            .field("ns", &self.inner.ns)
            .finish()
    }
}

impl Socket {
    /// The socket id (also the name of the room only this socket is in).
    /// The node's handle: other namespaces, users, `server_side_emit`.
    pub fn server(&self) -> crate::ServerHandle {
        crate::ServerHandle {
            shared: self.inner.server.clone(),
        }
    }

    pub fn id(&self) -> &str {
        self.inner.id.as_str()
    }

    pub fn namespace(&self) -> &str {
        &self.inner.ns
    }

    /// The Engine.IO session id, shared by the connection's sockets.
    pub fn session_id(&self) -> &str {
        self.inner.handshake.sid.as_str()
    }

    pub fn handshake(&self) -> &Handshake {
        &self.inner.handshake
    }

    /// The CONNECT packet's auth payload (`{}` when none was sent, as in
    /// the reference server).
    pub fn auth(&self) -> &Value {
        &self.inner.auth
    }

    /// The user id the connect middleware authenticated, if any.
    pub fn user(&self) -> Option<&str> {
        self.inner.user.as_deref()
    }

    /// Emit an event to this socket.
    pub fn emit(&self, event: &str, payload: impl Into<Payload>) -> Result<(), EmitError> {
        let frames = crate::broadcast::encode_event(&self.inner.ns, event, &payload.into(), None)?;
        self.inner.conn.do_send(Command::Send {
            ns: self.inner.ns.clone(),
            sid: self.inner.id.clone(),
            frames,
            volatile: false,
        });
        Ok(())
    }

    /// Emit an event that is dropped rather than queued if the client cannot
    /// take it right now.
    pub fn emit_volatile(&self, event: &str, payload: impl Into<Payload>) -> Result<(), EmitError> {
        let frames = crate::broadcast::encode_event(&self.inner.ns, event, &payload.into(), None)?;
        self.inner.conn.do_send(Command::Send {
            ns: self.inner.ns.clone(),
            sid: self.inner.id.clone(),
            frames,
            volatile: true,
        });
        Ok(())
    }

    /// Emit an event and wait for the client's acknowledgement, at most
    /// `timeout` (`None`: the configured `socketio.ack_timeout_ms`).
    pub fn emit_with_ack(
        &self,
        event: &str,
        payload: impl Into<Payload>,
        timeout: Option<Duration>,
    ) -> impl std::future::Future<Output = Result<Payload, AckError>> + 'static {
        let (tx, rx) = oneshot::channel();
        let checked = crate::broadcast::check_event_name(event);
        if checked.is_ok() {
            self.inner.conn.do_send(Command::EmitWithAck {
                ns: self.inner.ns.clone(),
                sid: self.inner.id.clone(),
                event: event.to_string(),
                payload: payload.into(),
                timeout: timeout.unwrap_or(self.inner.server.config.ack_timeout),
                reply: tx,
            });
        }
        async move {
            match rx.await {
                Ok(r) => r,
                Err(_) => Err(AckError::Disconnected),
            }
        }
    }

    /// Join a room. The join is in effect for every emit made after this call
    /// returns, on any thread. Refused (and counted in
    /// `riptide_events_refused_total{reason="room_limit"}`) past
    /// `socketio.max_rooms_per_socket`, which counts the socket's own room.
    pub fn join(&self, room: impl Into<String>) {
        let room: Arc<str> = room.into().into();
        let inner = &self.inner;
        let mut set = inner.rooms.lock();
        if set.closed || room.as_ref() == inner.id.as_str() || set.rooms.contains(&room) {
            return;
        }
        let max = inner.server.config.max_rooms_per_socket;
        if set.rooms.len() + 1 >= max {
            inner.server.metrics.event_refused("room_limit");
            warn!(inner.server.log, "join refused: socket at max_rooms_per_socket";
                "ns" => &*inner.ns, "room" => &*room, "max" => max);
            return;
        }
        set.rooms.insert(room.clone());
        // Registered while the room set is locked: a concurrent disconnect
        // either sees this room and leaves it, or refuses the join.
        inner.server.rooms.join(
            &RoomKey {
                ns: inner.ns.clone(),
                room: Some(room),
            },
            AddMember {
                sid: inner.id.clone(),
                ns: inner.ns.clone(),
                conn: inner.conn.clone().recipient(),
                control: inner.conn.clone().recipient(),
            },
        );
    }

    /// Leave a room; emits made after this call returns do not reach it.
    pub fn leave(&self, room: impl Into<String>) {
        let room: Arc<str> = room.into().into();
        let inner = &self.inner;
        let mut set = inner.rooms.lock();
        if set.rooms.remove(&room) {
            inner.server.rooms.leave(
                &RoomKey {
                    ns: inner.ns.clone(),
                    room: Some(room),
                },
                inner.id.clone(),
            );
        }
    }

    /// The rooms this socket is in (its own id room included), sorted; empty
    /// once the socket has disconnected.
    pub async fn rooms(&self) -> Vec<String> {
        let set = self.inner.rooms.lock();
        if set.closed {
            return Vec::new();
        }
        let mut rooms: Vec<String> = set
            .rooms
            .iter()
            .map(|r| r.to_string())
            .chain(std::iter::once(self.inner.id.to_string()))
            .collect();
        rooms.sort();
        rooms
    }

    /// Emit to `room`'s members except this socket.
    pub fn to(&self, room: impl Into<String>) -> BroadcastOperator {
        BroadcastOperator::new(self.inner.server.clone(), self.inner.ns.clone())
            .to(room)
            .except_socket(self.inner.id.clone())
    }

    /// Emit to `room`'s members, this socket included if it is a member.
    pub fn within(&self, room: impl Into<String>) -> BroadcastOperator {
        BroadcastOperator::new(self.inner.server.clone(), self.inner.ns.clone()).to(room)
    }

    /// Emit to every socket of the namespace except this one.
    pub fn broadcast(&self) -> BroadcastOperator {
        BroadcastOperator::new(self.inner.server.clone(), self.inner.ns.clone())
            .except_socket(self.inner.id.clone())
    }

    /// Disconnect this socket from its namespace (the client is told).
    pub fn disconnect(&self) {
        self.inner.conn.do_send(Command::Disconnect {
            ns: self.inner.ns.clone(),
            sid: self.inner.id.clone(),
            reason: DisconnectReason::ServerNamespaceDisconnect,
        });
    }

    /// Close the whole underlying connection: like the reference server's
    /// `disconnect(true)`, every namespace of the connection is told (`41`)
    /// and disconnected with "server namespace disconnect", then the
    /// Engine.IO session is closed. Does nothing if this socket has already
    /// left.
    pub fn close_connection(&self) {
        self.inner.conn.do_send(Command::CloseConnection {
            ns: self.inner.ns.clone(),
            sid: self.inner.id.clone(),
        });
    }
}
