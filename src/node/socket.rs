//! One socket (one client in one namespace): its identity, its handshake,
//! its per-socket state, and the operations a handler may ask of the
//! connection actor that owns it.

use std::any::{Any, TypeId};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use parking_lot::Mutex;
use serde_json::Value;
use slog::warn;
use tokio::sync::oneshot;

use super::connection::{Command, Connection};
use super::interest::AddMember;
use super::recovery::{Resume, Target};
use super::room::RoomKey;
use super::shared::{Emit, ServerShared};
use super::vec_map::VecMap;
use crate::adapter::PublishError;
use crate::engineio::{Handshake, SessionActor, Sid};
use crate::socketio::encode::{check_event_name, ReservedEvent};
use crate::socketio::payload::{ArgsError, IntoArgs, Payload};

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

    /// The arguments as a `T` (see [`Payload::decode`]).
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, ArgsError> {
        self.payload.decode()
    }

    /// The `i`-th argument as a string, if it is one.
    pub fn str_arg(&self, i: usize) -> Option<&str> {
        self.arg(i).and_then(Value::as_str)
    }
}

/// A connection's address: made once when its session opens and shared by
/// its sockets, their acks and its memberships (an address clone
/// allocates; an `Arc` clone does not).
pub(crate) type ConnAddr = Arc<Addr<SessionActor<Connection>>>;

/// Answers one client acknowledgement; consumed by `send`, so an ack can only
/// be answered once.
#[derive(Debug)]
pub struct AckSender {
    pub(crate) conn: ConnAddr,
    pub(crate) ns: Arc<str>,
    pub(crate) sid: Sid,
    pub(crate) id: u64,
}

impl AckSender {
    /// Answer with `args`: a `Serialize` value (one argument), `()` (none)
    /// or a [`Payload`]. A value that cannot be serialized is answered as
    /// `[{"error": ...}]` so the client is not left waiting.
    pub fn send(self, args: impl IntoArgs) {
        let payload = args.into_args().unwrap_or_else(|e| {
            Payload::new(vec![
                serde_json::json!({ "error": { "message": e.to_string() } }),
            ])
        });
        self.conn.do_send(Command::Ack {
            ns: self.ns,
            sid: self.sid,
            id: self.id,
            payload,
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
    /// Whether the client may come back and recover the socket (connection
    /// state recovery): it did not choose to leave, nor was it told to. As
    /// the reference server's `RECOVERABLE_DISCONNECT_REASONS`, with a slow
    /// consumer too (its backlog is bounded by the recovery log).
    pub fn is_recoverable(self) -> bool {
        matches!(
            self,
            DisconnectReason::TransportClose
                | DisconnectReason::TransportError
                | DisconnectReason::PingTimeout
                | DisconnectReason::ForcedClose
                | DisconnectReason::ServerShuttingDown
                | DisconnectReason::SlowConsumer
        )
    }

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
    /// The arguments could not be serialized.
    #[error("arguments not serializable: {0}")]
    Serialize(String),
    /// Local sockets got the packet, but the cluster refused it: too large
    /// for the broker, or the outbound buffer is full (broker away or slow).
    /// The other nodes did not get it.
    #[error("local sockets served, other nodes not reached: {0}")]
    Cluster(#[from] PublishError),
}

impl From<ReservedEvent> for EmitError {
    fn from(e: ReservedEvent) -> EmitError {
        EmitError::ReservedEvent(e.0)
    }
}

impl From<serde_json::Error> for EmitError {
    fn from(e: serde_json::Error) -> EmitError {
        EmitError::Serialize(e.to_string())
    }
}

/// Why a join was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// The socket is at `socketio.max_rooms_per_socket` (its own room counts).
    #[error("the socket is already in {max} rooms (socketio.max_rooms_per_socket)")]
    RoomLimit { max: usize },
    /// The socket has left its namespace.
    #[error("the socket is disconnected")]
    Disconnected,
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
    pub conn: ConnAddr,
    /// Its connection is on WebSocket now (set by the connection at the
    /// upgrade; what the admin UI and `fetchSockets` report).
    pub websocket: std::sync::atomic::AtomicBool,
    pub server: Arc<ServerShared>,
    pub handshake: Arc<Handshake>,
    pub auth: AuthPayload,
    pub user: Option<Arc<str>>,
    /// The rooms joined explicitly (the own id room is implicit). Shared by
    /// the handles and the connection, so a join is in effect as soon as
    /// `join` returns; `closed` once the socket has left, so a late join
    /// cannot leave a membership behind.
    pub rooms: Mutex<RoomSet>,
    /// Typed per-socket state ([`Socket::extensions`]); dropped with the
    /// socket (or parked with it for a recovery).
    pub extensions: Extensions,
    /// It was recovered: same id, rooms and data as before its disconnect.
    pub recovered: bool,
    /// Its connection state recovery, when that is on: one box, so a socket
    /// without recovery keeps one pointer for it (and the whole took
    /// jemalloc's 224-byte class, not its 256-byte one).
    pub recovery: Option<Box<SocketRecovery>>,
}

/// A socket's CONNECT auth payload ([`Socket::auth`]), kept compact: `{}`
/// (what a client without auth sends) costs nothing, anything else is kept
/// as its JSON text and parsed again the first time something reads it.
/// Parsed, a one-key object such as `{"token": …}` is a 632-byte `BTreeMap`
/// leaf beside the token's text, which every socket kept for its life
/// though only the connect middleware had read it (docs/decisions.md, "Idle
/// memory", ninth session).
pub(crate) enum AuthPayload {
    Empty,
    Kept(Box<KeptAuth>),
}

pub(crate) struct KeptAuth {
    text: Box<str>,
    parsed: std::sync::OnceLock<Value>,
}

impl AuthPayload {
    pub fn new(auth: Value) -> AuthPayload {
        match &auth {
            Value::Object(m) if m.is_empty() => AuthPayload::Empty,
            _ => AuthPayload::Kept(Box::new(KeptAuth {
                text: auth.to_string().into(),
                parsed: std::sync::OnceLock::new(),
            })),
        }
    }

    pub fn get(&self) -> &Value {
        static EMPTY: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
        match self {
            AuthPayload::Empty => EMPTY.get_or_init(|| Value::Object(Default::default())),
            // The text is serde_json's own rendering of a value it parsed
            // (within its depth limit), so it parses back to that value.
            AuthPayload::Kept(k) => k
                .parsed
                .get_or_init(|| serde_json::from_str(&k.text).unwrap_or(Value::Null)),
        }
    }
}

/// A socket's connection state recovery ([`SocketInner::recovery`]).
pub(crate) struct SocketRecovery {
    /// Its private session id.
    pub pid: Arc<str>,
    /// Where its client stands in the namespace's recovery log (updated by
    /// its connection as stored events are written).
    pub resume: Mutex<Resume>,
}

impl SocketInner {
    /// Its private session id, when connection state recovery is on.
    pub fn pid(&self) -> Option<&Arc<str>> {
        self.recovery.as_ref().map(|r| &r.pid)
    }
    /// Its place in the recovery log, when connection state recovery is on.
    pub fn resume(&self) -> Option<&Mutex<Resume>> {
        self.recovery.as_ref().map(|r| &r.resume)
    }
}

#[derive(Debug, Default)]
pub(crate) struct RoomSet {
    pub rooms: HashSet<Arc<str>, foldhash::fast::RandomState>,
    pub closed: bool,
}

/// A socket's rooms as handlers and other nodes see them: its joined rooms
/// and its own id room, sorted.
pub(crate) fn room_list<'a>(
    rooms: impl IntoIterator<Item = &'a Arc<str>>,
    own: &Sid,
) -> Vec<String> {
    let mut list: Vec<String> = rooms
        .into_iter()
        .map(|r| r.to_string())
        .chain(std::iter::once(own.to_string()))
        .collect();
    list.sort();
    list
}

impl SocketInner {
    /// The connection's current transport: `"polling"` or `"websocket"`.
    pub fn transport(&self) -> &'static str {
        if self.websocket.load(std::sync::atomic::Ordering::Relaxed) {
            "websocket"
        } else {
            "polling"
        }
    }

    /// Whether the socket is in `room` (its own id included).
    pub fn in_room(&self, room: &str) -> bool {
        room == self.id.as_str() || self.rooms.lock().rooms.contains(room)
    }
}

/// A socket that is not kept alive by this reference: what a schedule keeps
/// for a socket it may outlive ([`Socket::downgrade`]). Once the node has
/// dropped the socket (it left, and is not parked for recovery),
/// [`upgrade`](WeakSocket::upgrade) gives `None`.
#[derive(Clone, Default)]
pub struct WeakSocket(std::sync::Weak<SocketInner>);

impl WeakSocket {
    /// The socket, if the node still has it.
    pub fn upgrade(&self) -> Option<Socket> {
        self.0.upgrade().map(|inner| Socket { inner })
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
    /// A reference that does not keep the socket alive ([`WeakSocket`]).
    pub fn downgrade(&self) -> WeakSocket {
        WeakSocket(Arc::downgrade(&self.inner))
    }

    /// The socket id (also the name of the room only this socket is in).
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
    /// the reference server). A Socket.IO v2 client (Engine.IO v3,
    /// `engine.allow_eio3`) sends no auth: as Node's `socket.handshake.auth`
    /// for it, this is the query string of its namespace's CONNECT
    /// (`/chat?token=x` gives `{"token": "x"}`, each value a string), `{}` on
    /// `/`, which the server connects at the handshake. Its handshake query
    /// ([`Handshake::query_param`]) carries the client's `query` option too.
    pub fn auth(&self) -> &Value {
        self.inner.auth.get()
    }

    /// The user id the connect middleware authenticated, if any.
    pub fn user(&self) -> Option<&str> {
        self.inner.user.as_deref()
    }

    /// Whether this socket was recovered after a temporary disconnection
    /// (connection state recovery, `recovery.enabled`): it has the id, rooms
    /// and [`Socket::extensions`] it had, and the events it missed were
    /// written to it before the CONNECT reply. As `socket.recovered` in the
    /// reference server.
    pub fn recovered(&self) -> bool {
        self.inner.recovered
    }

    /// Emit `event` to this socket with `args`: a `Serialize` value (one
    /// argument), `()` (none) or a [`Payload`] (several, or binary).
    pub fn emit(&self, event: &str, args: impl IntoArgs) -> Result<(), EmitError> {
        self.send_event(event, args, false)
    }

    /// Emit an event that is dropped rather than queued if the client cannot
    /// take it right now.
    pub fn emit_volatile(&self, event: &str, args: impl IntoArgs) -> Result<(), EmitError> {
        self.send_event(event, args, true)
    }

    fn send_event(
        &self,
        event: &str,
        args: impl IntoArgs,
        volatile: bool,
    ) -> Result<(), EmitError> {
        let inner = &self.inner;
        let emit =
            inner
                .server
                .encode_emit(&inner.ns, event, args.into_args()?, volatile, || {
                    Target::Rooms {
                        rooms: vec![inner.id.as_str().into()],
                        except_rooms: Vec::new(),
                        except_sids: Vec::new(),
                    }
                })?;
        let Emit::Now(frames, mode) = emit else {
            return Ok(());
        };
        inner.conn.do_send(Command::Send {
            ns: inner.ns.clone(),
            sid: inner.id.clone(),
            frames,
            mode,
        });
        Ok(())
    }

    /// Emit an event and wait for the client's acknowledgement, at most
    /// `timeout` (`None`: the configured `socketio.ack_timeout_ms`). A
    /// reserved event name or arguments that do not serialize are refused
    /// at once, before anything is sent; the future then resolves to the
    /// client's answer (read it with [`Payload::decode`]).
    pub fn emit_with_ack(
        &self,
        event: &str,
        args: impl IntoArgs,
        timeout: Option<Duration>,
    ) -> Result<impl std::future::Future<Output = Result<Payload, AckError>> + 'static, EmitError>
    {
        check_event_name(event)?;
        let payload = args.into_args()?;
        let (tx, rx) = oneshot::channel();
        self.inner.conn.do_send(Command::EmitWithAck {
            ns: self.inner.ns.clone(),
            sid: self.inner.id.clone(),
            event: event.to_string(),
            payload,
            timeout: timeout.unwrap_or(self.inner.server.config.ack_timeout),
            reply: tx,
        });
        Ok(async move {
            match rx.await {
                Ok(r) => r,
                Err(_) => Err(AckError::Disconnected),
            }
        })
    }

    /// Join a room. The join is in effect for every emit made after this call
    /// returns, on any thread. Refused (and counted in
    /// `riptide_events_refused_total{reason="room_limit"}`) past
    /// `socketio.max_rooms_per_socket`, which counts the socket's own room.
    /// Joining a room the socket is already in (its own included) is `Ok`.
    pub fn join(&self, room: impl Into<String>) -> Result<(), JoinError> {
        let room: Arc<str> = room.into().into();
        let inner = &self.inner;
        let mut set = inner.rooms.lock();
        if set.closed {
            return Err(JoinError::Disconnected);
        }
        if room.as_ref() == inner.id.as_str() || set.rooms.contains(&room) {
            return Ok(());
        }
        let max = inner.server.config.max_rooms_per_socket;
        if set.rooms.len() + 1 >= max {
            inner.server.metrics.event_refused("room_limit");
            warn!(inner.server.log, "join refused: socket at max_rooms_per_socket";
                "ns" => &*inner.ns, "room" => &*room, "max" => max);
            return Err(JoinError::RoomLimit { max });
        }
        set.rooms.insert(room.clone());
        self.rooms_changed();
        // Registered while the room set is locked: a concurrent disconnect
        // either sees this room and leaves it, or refuses the join.
        inner.server.rooms.join(
            &RoomKey {
                ns: inner.ns.clone(),
                room: Some(room.clone()),
            },
            AddMember {
                sid: inner.id.clone(),
                ns: inner.ns.clone(),
                conn: inner.conn.clone(),
            },
        );
        drop(set);
        if let Some(observer) = inner.server.observer.get() {
            observer.room_joined(self, &room);
        }
        Ok(())
    }

    /// Leave a room; emits made after this call returns do not reach it.
    pub fn leave(&self, room: impl Into<String>) {
        let room: Arc<str> = room.into().into();
        let inner = &self.inner;
        let mut set = inner.rooms.lock();
        if set.rooms.remove(&room) {
            self.rooms_changed();
            inner.server.rooms.leave(
                &RoomKey {
                    ns: inner.ns.clone(),
                    room: Some(room.clone()),
                },
                inner.id.clone(),
            );
            drop(set);
            if let Some(observer) = inner.server.observer.get() {
                observer.room_left(self, &room);
            }
        }
    }

    /// Tell the cluster's recovery store that this socket's rooms changed.
    fn rooms_changed(&self) {
        let inner = &self.inner;
        if let (Some(cluster), Some(pid)) = (inner.server.cluster_recovery.get(), inner.pid()) {
            cluster.touch(&inner.ns, pid);
        }
    }

    /// The rooms this socket is in (its own id room included), sorted; empty
    /// once the socket has disconnected.
    pub async fn rooms(&self) -> Vec<String> {
        let set = self.inner.rooms.lock();
        if set.closed {
            return Vec::new();
        }
        room_list(&set.rooms, &self.inner.id)
    }

    /// Typed state of this socket, set and read by handlers: it lives as
    /// long as the socket and is dropped with it.
    pub fn extensions(&self) -> &Extensions {
        &self.inner.extensions
    }

    /// The value of type `T` in [`Socket::extensions`], cloned.
    pub fn data<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.inner.extensions.get::<T>()
    }

    /// The socket's JSON data: what the reference server's `socket.data`
    /// is, the part of its state that is seen outside the handler (by
    /// `fetch_sockets` on every node, [`RemoteSocket::data`], and by the
    /// admin UI). Until it is set ([`Socket::set_json_data`], or
    /// [`ConnectRequest::set_json_data`](super::namespace::ConnectRequest::set_json_data)
    /// in the connect middleware), `{}`, or `{"user": id}` for a socket its
    /// connect middleware authenticated. Kept with [`Socket::extensions`]:
    /// a recovered socket has it again when it comes back to the same node.
    ///
    /// [`RemoteSocket::data`]: crate::adapter::RemoteSocket::data
    pub fn json_data(&self) -> Value {
        match self.inner.extensions.get::<JsonData>() {
            Some(JsonData(data)) => data,
            None => default_json_data(self.user()),
        }
    }

    /// Replace the socket's JSON data ([`Socket::json_data`]) with `data`
    /// serialized; the admin UI is told (`socket_updated`). Refused only if
    /// `data` does not serialize.
    pub fn set_json_data(&self, data: impl serde::Serialize) -> Result<(), serde_json::Error> {
        let data = serde_json::to_value(data)?;
        self.inner.extensions.insert(JsonData(data));
        if let Some(observer) = self.inner.server.observer.get() {
            observer.socket_data_set(self);
        }
        Ok(())
    }

    pub(crate) fn server_shared(&self) -> &Arc<ServerShared> {
        &self.inner.server
    }

    pub(crate) fn sid(&self) -> &Sid {
        &self.inner.id
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

/// A socket's JSON data ([`Socket::json_data`]), kept in its extensions so
/// it is parked and recovered with them; private, so only
/// [`Socket::set_json_data`] (which tells the observer) sets it on a live
/// socket.
#[derive(Clone)]
pub(crate) struct JsonData(pub Value);

/// [`Socket::json_data`] before anything set it.
pub(crate) fn default_json_data(user: Option<&str>) -> Value {
    match user {
        Some(user) => serde_json::json!({ "user": user }),
        None => Value::Object(serde_json::Map::new()),
    }
}

/// A socket's typed state: at most one value per type. A [`VecMap`]: a
/// socket keeps none or a few (a hash table's 48 bytes were in every socket,
/// docs/decisions.md "Idle memory").
#[derive(Default)]
pub struct Extensions {
    map: Mutex<VecMap<TypeId, Box<dyn Any + Send + Sync>>>,
}

impl Extensions {
    /// Store `value`, returning the one of the same type it replaces.
    pub fn insert<T: Send + Sync + 'static>(&self, value: T) -> Option<T> {
        self.map
            .lock()
            .insert(TypeId::of::<T>(), Box::new(value))
            .and_then(|old| old.downcast().ok().map(|b: Box<T>| *b))
    }

    /// A clone of the stored `T`.
    pub fn get<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.map
            .lock()
            .get(&TypeId::of::<T>())
            .and_then(|v| v.downcast_ref::<T>())
            .cloned()
    }

    /// Run `f` on the stored `T` (inserting `T::default()` first if absent)
    /// and return what it returns: read-modify-write under one lock.
    pub fn with<T: Default + Send + Sync + 'static, R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let mut map = self.map.lock();
        let slot = map.get_or_insert_with(TypeId::of::<T>(), || Box::new(T::default()));
        f(slot.downcast_mut::<T>().expect("keyed by its own TypeId"))
    }

    /// Run `f` on the stored `T`, if there is one, and return what it
    /// returns (`None` without a `T`): read or modify in place, under one
    /// lock, without cloning it.
    pub fn update<T: Send + Sync + 'static, R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        let mut map = self.map.lock();
        let slot = map.get_mut(&TypeId::of::<T>())?;
        Some(f(slot
            .downcast_mut::<T>()
            .expect("keyed by its own TypeId")))
    }

    /// Move every value out, into a new set (a socket parked for recovery,
    /// or taken over by its recovered self).
    pub(crate) fn take(&self) -> Extensions {
        Extensions {
            map: Mutex::new(std::mem::take(&mut *self.map.lock())),
        }
    }

    /// Take the stored `T` out.
    pub fn remove<T: Send + Sync + 'static>(&self) -> Option<T> {
        self.map
            .lock()
            .remove(&TypeId::of::<T>())
            .and_then(|old| old.downcast().ok().map(|b: Box<T>| *b))
    }
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extensions")
            .field("len", &self.map.lock().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::AuthPayload;
    use serde_json::json;

    #[test]
    fn an_auth_payload_reads_back_as_it_came_and_costs_nothing_when_empty() {
        assert!(matches!(AuthPayload::new(json!({})), AuthPayload::Empty));
        assert_eq!(AuthPayload::new(json!({})).get(), &json!({}));
        for v in [
            json!({"token": "eyJ.x.y", "n": 1.5e300, "big": u64::MAX, "neg": i64::MIN,
                   "nested": [{"a": [null, true, "é\u{1F600}\"\\"]}], "": {}}),
            json!({"pid": "abc", "offset": "1-0"}),
            json!(null),
            json!("a string"),
        ] {
            let kept = AuthPayload::new(v.clone());
            assert!(matches!(kept, AuthPayload::Kept(_)));
            assert_eq!(kept.get(), &v);
            assert!(std::ptr::eq(kept.get(), kept.get()), "parsed once");
        }
    }
}
