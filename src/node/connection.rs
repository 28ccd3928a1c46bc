//! The connection actor's Socket.IO state.
//!
//! A [`Connection`] runs inside the Engine.IO session actor of one client
//! (`SessionActor<Connection>`): it decodes Socket.IO packets, owns the
//! client's sockets (one per namespace), their rooms and pending acks, and
//! applies what handlers ask of a socket ([`Command`]). Room membership is
//! decided here first, so a socket filters what rooms deliver to it against
//! its own, authoritative, room set.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::Value;
use slog::{debug, warn};
use tokio::sync::oneshot;

use super::delivery::{Deliver, DisconnectSocket, Encoded, Item, Mode};
use super::dispatch::{Dispatch, HandlerRef};
use super::interest::AddMember;
use super::limits::{EventBudget, EventVerdict};
use super::namespace::{
    ConnectError, ConnectRequest, EventRefused, NamespaceSpec, Preface, PrefaceFuture,
};
use super::recovery::cluster::{ClusterRecovery, Restoring};
use super::recovery::{Recovery, Restored, Resume, Retired};
use super::room::RoomKey;
use super::shared::{NamespaceRuntime, ServerShared};
use super::socket::{
    room_list, AckError, AckSender, AuthPayload, ConnAddr, DisconnectReason, Event, Extensions,
    RoomSet, Socket, SocketInner, SocketRecovery,
};
use super::vec_map::VecMap;
use crate::adapter::store::Token;
use crate::engineio::session::Message as EngineMessage;
use crate::engineio::{
    url_query_pairs, CloseReason, EngineApp, EngineCore, Handshake, Protocol, SessionActor, Sid,
    TransportKind,
};
use crate::socketio::encode::{encode_ack, encode_event, encode_packet};
use crate::socketio::packet::{is_reserved_event, Packet, PacketData};
use crate::socketio::parser::Decoder;
use crate::socketio::payload::Payload;

type Ctx = Context<SessionActor<Connection>>;
type AckReply = oneshot::Sender<Result<Payload, AckError>>;

struct SocketState {
    socket: Socket,
    runtime: Arc<NamespaceRuntime>,
    /// By the ids this server gave them, in sequence: no client chooses a
    /// key, so a fixed seed is enough, and its hasher state is 8 bytes
    /// where `RandomState`'s is 16 (which took the boxed state a larger
    /// allocation class; docs/decisions.md, "Idle memory").
    acks: HashMap<u64, (AckReply, SpawnHandle), foldhash::fast::FixedState>,
    next_ack: u64,
    handler: HandlerRef,
    /// The socket's event rate limit.
    budget: EventBudget,
    /// Being recovered through the cluster, or waiting for its preface
    /// ([`ConnectRequest::preface`]): attached, not announced yet.
    // Boxed: rare, and every socket's state would carry its size.
    restoring: Option<Box<Buffered>>,
}

/// What a socket being recovered through the cluster (or waiting for its
/// preface) will be written before its CONNECT reply.
struct Buffered {
    /// The stored events it missed, as first read.
    missed: Vec<Encoded>,
    /// What its tail (and anyone else) delivered to it since it was attached.
    buffer: Vec<(Encoded, Mode)>,
}

impl SocketState {
    /// What connection state recovery must know of a delivery written now.
    fn written(&self, mode: Mode) {
        let Some(resume) = self.socket.inner.resume() else {
            return;
        };
        match mode {
            Mode::Stored(seq) => resume.lock().stored(seq),
            Mode::VolatileTail(tail) => resume.lock().tail(tail),
            Mode::Normal | Mode::Volatile => {}
        }
    }

    /// Whether a stored event is one this socket was written already. In a
    /// cluster every stored event reaches a socket from its namespace's one
    /// tail, in stream order, or from the reads of its recovery: a tail
    /// delivery still in the mailbox when the recovery's reads (which
    /// covered it) were written comes after them, and is a repeat. (With
    /// the node-memory store, stored events come through several room
    /// actors and may arrive out of sequence order: never dropped there.)
    fn repeats_stored(&self, mode: &Mode, server: &ServerShared) -> bool {
        let (Mode::Stored(seq), Some(resume)) = (mode, self.socket.inner.resume()) else {
            return false;
        };
        server.cluster_recovery.get().is_some()
            && resume.lock().last_stored.is_some_and(|last| *seq <= last)
    }

    /// Whether a delivery that came through a room is for this socket. The
    /// socket's room set is the authority: a delivery through a room it has
    /// left since the fan-out is dropped.
    fn accepts(&self, via: &Option<Arc<str>>, item: &Item) -> bool {
        let inner = &self.socket.inner;
        match (&item.filter, via) {
            (None, None) => true,
            (None, Some(via)) => inner.in_room(via),
            (Some(f), via) => {
                if f.except_sids.contains(&inner.id) {
                    return false;
                }
                let set = inner.rooms.lock();
                let in_room = |room: &str| room == inner.id.as_str() || set.rooms.contains(room);
                if f.except_rooms.iter().any(|r| in_room(r)) {
                    return false;
                }
                match via {
                    None => true,
                    // Deliver only through the first target room the socket
                    // is in: a member of several target rooms gets it once.
                    Some(via) => f.rooms.iter().find(|r| in_room(r)) == Some(via),
                }
            }
        }
    }
}

/// What a socket starts with: a fresh id (and pid, with recovery on), or
/// the state it had before a temporary disconnection.
struct Start {
    sid: Sid,
    pid: Option<Arc<str>>,
    user: Option<Arc<str>>,
    rooms: RoomSet,
    extensions: Extensions,
    /// Stored events it missed, written before the CONNECT reply.
    missed: Vec<Encoded>,
    resume: Option<Resume>,
    /// Its old self, still connected on a half-open connection.
    superseded: Option<Socket>,
    recovered: bool,
    /// The cluster store's ownership token of its session record (a
    /// socket the cluster recovered).
    token: Option<Token>,
    /// Recovered through the cluster: the stream position its missed
    /// events were read up to (it catches up from there once attached).
    restoring: Option<u64>,
    /// A new socket's events to write before its CONNECT reply.
    preface: Option<PrefaceFuture>,
}

/// What the connect middlewares made of a CONNECT they accepted.
#[derive(Default)]
struct Admitted {
    user: Option<Arc<str>>,
    rooms: Vec<String>,
    extensions: Extensions,
    preface: Option<PrefaceFuture>,
}

impl Start {
    fn fresh(recovery: Option<&Recovery>, admitted: Admitted, max_rooms: usize) -> Start {
        let mut rooms = RoomSet::default();
        for room in admitted.rooms {
            // The socket's own room counts, as for `Socket::join`.
            if rooms.rooms.len() + 1 >= max_rooms {
                break;
            }
            rooms.rooms.insert(room.into());
        }
        Start {
            sid: Sid::random(),
            pid: recovery.map(|_| Recovery::new_pid()),
            user: admitted.user,
            rooms,
            extensions: admitted.extensions,
            missed: Vec::new(),
            resume: recovery.map(|rec| Resume {
                from: rec.position(),
                ..Resume::default()
            }),
            superseded: None,
            recovered: false,
            token: None,
            restoring: None,
            preface: admitted.preface,
        }
    }

    /// A fresh socket with the cluster's store: recoverable if the store
    /// answered (`fresh`: its pid and resume point).
    fn fresh_in_cluster(
        fresh: Option<(Arc<str>, Resume)>,
        admitted: Admitted,
        max_rooms: usize,
    ) -> Start {
        let (pid, resume) = fresh.unzip();
        Start {
            pid,
            resume,
            ..Start::fresh(None, admitted, max_rooms)
        }
    }

    fn from_cluster(r: Restoring) -> Start {
        Start {
            token: Some(r.token),
            restoring: Some(r.end),
            ..Start::recovered(r.state)
        }
    }

    fn recovered(r: Restored) -> Start {
        Start {
            sid: r.sid,
            pid: Some(r.pid),
            user: r.user,
            rooms: RoomSet {
                rooms: r.rooms.into_iter().collect(),
                closed: false,
            },
            extensions: r.extensions,
            missed: r.missed,
            resume: Some(r.resume),
            superseded: r.superseded,
            recovered: true,
            token: None,
            restoring: None,
            preface: None,
        }
    }
}

/// A connection's sockets (or namespaces being connected) by namespace: a
/// client has one, or a few (at most `max_namespaces`).
type NsMap<V> = VecMap<Arc<str>, V>;

/// The Socket.IO side of one client connection.
pub struct Connection {
    server: Arc<ServerShared>,
    handshake: Arc<Handshake>,
    decoder: Decoder,
    // Boxed: a socket's state is large, and the map's entries stay small.
    sockets: NsMap<Box<SocketState>>,
    /// Namespaces this connection had a socket on, most recent last, at most
    /// `max_namespaces`: a packet the client sent for one before it learned
    /// that the server disconnected it is dropped, not a protocol violation.
    left: Vec<Arc<str>>,
    /// Namespaces whose CONNECT waits for the cluster's recovery store.
    connecting: NsMap<()>,
    me: Option<ConnAddr>,
}

impl Connection {
    pub(crate) fn new(server: Arc<ServerShared>, handshake: Arc<Handshake>) -> Connection {
        let decoder = server.config.parser.decoder(server.config.max_attachments);
        Connection {
            server,
            handshake,
            decoder,
            sockets: NsMap::default(),
            left: Vec::new(),
            connecting: NsMap::default(),
            me: None,
        }
    }

    fn me(&self) -> ConnAddr {
        self.me.clone().expect("set when the session opens")
    }

    fn send(core: &mut EngineCore, frames: &Encoded) {
        for f in frames.iter() {
            core.send(f);
        }
    }

    /// Whether the client speaks Socket.IO v2 (Engine.IO v3).
    fn is_v2(&self) -> bool {
        self.handshake.protocol == Protocol::V3
    }

    fn connect_error(&self, core: &mut EngineCore, ns: &str, err: ConnectError) {
        let data = if self.is_v2() {
            // v2's ERROR packet carries the error's data, else its message,
            // as the reference server writes it for v2 clients.
            match err.data {
                Some(data) if !data.is_null() => data,
                _ => Value::String(err.message),
            }
        } else {
            let mut body = serde_json::Map::new();
            body.insert("message".into(), Value::String(err.message));
            if let Some(data) = err.data {
                body.insert("data".into(), data);
            }
            Value::Object(body)
        };
        let packet = Packet {
            ns: ns.to_string(),
            data: PacketData::ConnectError(data),
        };
        Self::send(core, &encode_packet(self.server.config.parser, &packet));
    }

    /// A packet that is well formed but makes no sense now: like the
    /// reference server ("invalid state"), close the connection.
    fn invalid(&self, kind: &'static str, ns: &str, core: &mut EngineCore, ctx: &mut Ctx) {
        self.server.metrics.bad_input(kind);
        debug!(core.log(), "closing on a packet invalid in this state"; "kind" => kind, "ns" => ns);
        core.close(CloseReason::ParseError, ctx);
    }

    fn on_packet(&mut self, packet: Packet, core: &mut EngineCore, ctx: &mut Ctx) {
        let ns = packet.ns;
        if let (true, PacketData::Connect(_)) = (self.is_v2(), &packet.data) {
            // A v2 CONNECT has no auth: its namespace may carry a query.
            let (ns, auth) = v2_namespace(&ns);
            if self.sockets.contains_key(ns) || self.connecting.contains_key(ns) {
                return self.invalid("duplicate_connect", ns, core, ctx);
            }
            return self.on_connect(ns.to_string(), Some(auth), core, ctx);
        }
        let connected =
            self.sockets.contains_key(ns.as_str()) || self.connecting.contains_key(ns.as_str());
        match packet.data {
            PacketData::Connect(_) if connected => {
                self.invalid("duplicate_connect", &ns, core, ctx)
            }
            PacketData::Connect(auth) => self.on_connect(ns, auth, core, ctx),
            // Only servers send CONNECT_ERROR.
            PacketData::ConnectError(_) => self.invalid("unexpected_packet", &ns, core, ctx),
            _ if !connected => {
                if self.left.iter().any(|l| **l == *ns) {
                    // In flight when the server disconnected the socket.
                    self.server.metrics.bad_input("stale_namespace");
                } else {
                    self.invalid("unconnected_namespace", &ns, core, ctx);
                }
            }
            PacketData::Event { data, id } => self.on_event(&ns, data, id, Vec::new(), core, ctx),
            PacketData::BinaryEvent {
                data,
                id,
                attachments,
            } => self.on_event(&ns, data, id, attachments, core, ctx),
            PacketData::Ack { data, id } => self.on_ack(&ns, id, data, Vec::new(), ctx),
            PacketData::BinaryAck {
                data,
                id,
                attachments,
            } => self.on_ack(&ns, id, data, attachments, ctx),
            PacketData::Disconnect => self.remove_socket(
                &ns,
                DisconnectReason::ClientNamespaceDisconnect,
                false,
                core,
                ctx,
            ),
        }
    }

    fn on_connect(
        &mut self,
        ns: String,
        auth: Option<Value>,
        core: &mut EngineCore,
        ctx: &mut Ctx,
    ) {
        let server = self.server.clone();
        if self.sockets.len() + self.connecting.len() >= server.config.max_namespaces {
            server.metrics.connect_error("namespace_limit");
            return self.connect_error(core, &ns, ConnectError::new("Too many namespaces"));
        }
        let Some(spec) = server.spec(&ns) else {
            server.metrics.bad_input("unknown_namespace");
            server.metrics.connect_error("invalid_namespace");
            debug!(core.log(), "connect to unknown namespace"; "ns" => &ns);
            return self.connect_error(core, &ns, ConnectError::new("Invalid namespace"));
        };
        // The reference server hands handlers `{}` when the client sent no auth.
        let auth = auth.unwrap_or_else(|| Value::Object(Default::default()));
        let ns_name: Arc<str> = ns.as_str().into();
        // Connection state recovery is a v3+ client's (it sends the pid and
        // offset back): a v2 client's socket is never parked nor recovered.
        let v2 = self.is_v2();
        let cluster = server.cluster_recovery.get().cloned().filter(|_| !v2);
        let recovery = server
            .recovery
            .as_ref()
            .filter(|_| cluster.is_none() && !v2);
        let config = cluster
            .as_ref()
            .map(|c| &c.config)
            .or(recovery.map(|r| &r.config));
        // A client the server gave a pid asks for its state back with it.
        let asks = config.is_some() && auth.get("pid").is_some_and(Value::is_string);
        let skip_middlewares = config.is_some_and(|c| c.skip_middlewares);
        // Middlewares that are not skipped run first: a refused CONNECT
        // leaves the parked state alone.
        let mut admitted = Admitted::default();
        let ran_middlewares = !(asks && skip_middlewares);
        if ran_middlewares {
            match self.run_middlewares(&spec, &ns, &auth, core) {
                Ok(a) => admitted = a,
                Err(e) => return self.connect_error(core, &ns, e),
            }
        }
        if let Some(cluster) = cluster {
            return self.connect_through_cluster(
                cluster,
                spec,
                ns_name,
                auth,
                admitted,
                ran_middlewares,
                ctx,
            );
        }
        let restored = match recovery {
            Some(rec) if asks => Self::restore(rec, &ns_name, &auth, &server, core),
            _ => None,
        };
        if restored.is_none() && !ran_middlewares {
            match self.run_middlewares(&spec, &ns, &auth, core) {
                Ok(a) => admitted = a,
                Err(e) => return self.connect_error(core, &ns, e),
            }
        }
        let max_rooms = server.config.max_rooms_per_socket;
        let mut start = match restored {
            Some(r) => Start::recovered(r),
            None => Start::fresh(recovery, admitted, max_rooms),
        };
        if v2 {
            // The id a v2 client computes for itself, as the reference
            // server gives it: the Engine.IO sid on `/`, `/nsp#sid` elsewhere.
            start.sid = if ns == "/" {
                self.handshake.sid.clone()
            } else {
                Sid::from(format!("{ns}#{}", self.handshake.sid).as_str())
            };
        }
        self.open(ns_name, auth, start, core, ctx);
    }

    /// CONNECT with the cluster's recovery store: asking the broker takes a
    /// round trip, so the socket opens when the answer is in (the
    /// connection goes on serving its other namespaces meanwhile).
    #[allow(clippy::too_many_arguments)]
    fn connect_through_cluster(
        &mut self,
        cluster: Arc<ClusterRecovery>,
        spec: NamespaceSpec,
        ns: Arc<str>,
        auth: Value,
        admitted: Admitted,
        ran_middlewares: bool,
        ctx: &mut Ctx,
    ) {
        self.connecting.insert(ns.clone(), ());
        let pid = auth
            .get("pid")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .filter(|_| cluster.config.skip_middlewares || ran_middlewares);
        let offset = auth
            .get("offset")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let ns2 = ns.clone();
        let asked = async move {
            let restored = match &pid {
                Some(pid) => Some(cluster.restore(&ns2, pid, offset.as_deref()).await),
                None => None,
            };
            let fresh = match &restored {
                Some(Ok(_)) => None,
                _ => cluster.fresh(&ns2).await,
            };
            (restored, fresh)
        };
        ctx.spawn(
            actix::fut::wrap_future::<_, SessionActor<Connection>>(asked).map(
                move |(restored, fresh), act, ctx| {
                    let SessionActor { core, app } = act;
                    app.connecting.remove(&ns);
                    if core.is_closing() {
                        return;
                    }
                    let server = app.server.clone();
                    let mut admitted = admitted;
                    let start = match restored {
                        Some(Ok(r)) => {
                            server.metrics.recovery("recovered");
                            debug!(core.log(), "socket recovered"; "ns" => &*ns,
                                "sid" => r.state.sid.as_str(), "missed" => r.state.missed.len(),
                                "took_over" => r.state.superseded.is_some());
                            Start::from_cluster(r)
                        }
                        other => {
                            if let Some(Err(why)) = other {
                                server.metrics.recovery(why.as_str());
                                debug!(core.log(), "socket not recovered"; "ns" => &*ns,
                                    "why" => why.as_str());
                            }
                            if !ran_middlewares {
                                match app.run_middlewares(&spec, &ns, &auth, core) {
                                    Ok(a) => admitted = a,
                                    Err(e) => return app.connect_error(core, &ns, e),
                                }
                            }
                            let max_rooms = server.config.max_rooms_per_socket;
                            Start::fresh_in_cluster(fresh, admitted, max_rooms)
                        }
                    };
                    app.open(ns, auth, start, core, ctx);
                },
            ),
        );
    }

    /// Open the socket `start` describes: attach it to its namespace, rooms
    /// and user, write what it missed and the CONNECT reply. A socket the
    /// cluster recovered first reads what was appended since its first read
    /// ([`Connection::finish_restore`] writes all of it).
    fn open(
        &mut self,
        ns_name: Arc<str>,
        auth: Value,
        start: Start,
        core: &mut EngineCore,
        ctx: &mut Ctx,
    ) {
        let server = self.server.clone();
        let ns = ns_name.to_string();
        let Start {
            sid,
            pid,
            user,
            rooms,
            extensions,
            missed,
            resume,
            superseded,
            recovered,
            token,
            restoring,
            preface,
        } = start;
        let socket = Socket {
            inner: Arc::new(SocketInner {
                id: sid.clone(),
                ns: ns_name.clone(),
                conn: self.me(),
                websocket: (core.transport_kind() == TransportKind::WebSocket).into(),
                server: server.clone(),
                handshake: self.handshake.clone(),
                auth: AuthPayload::new(auth),
                user: user.clone(),
                rooms: Mutex::new(rooms),
                extensions,
                recovered,
                // `pid` and `resume` come together (`Start`).
                recovery: pid.clone().zip(resume).map(|(pid, resume)| {
                    Box::new(SocketRecovery {
                        pid,
                        resume: Mutex::new(resume),
                    })
                }),
            }),
        };
        let Some(runtime) = server.attach(&socket) else {
            // Unreachable: `spec` found a namespace for this name.
            server.metrics.connect_error("invalid_namespace");
            return self.connect_error(core, &ns, ConnectError::new("Invalid namespace"));
        };
        // The connect timeout is over once a namespace is connected.
        core.set_app_deadline(None);
        let me = self.me();
        let member = || AddMember {
            sid: sid.clone(),
            ns: ns_name.clone(),
            conn: me.clone(),
        };
        server.rooms.join(
            &RoomKey {
                ns: ns_name.clone(),
                room: None,
            },
            member(),
        );
        if let Some(user) = &user {
            server.users.join(user, member());
        }
        // A recovered socket is back in its rooms (the same sid: a
        // superseded connection's memberships are replaced, not doubled).
        for room in socket.inner.rooms.lock().rooms.iter() {
            server.rooms.join(
                &RoomKey {
                    ns: ns_name.clone(),
                    room: Some(room.clone()),
                },
                member(),
            );
        }
        if let Some(old) = superseded {
            old.inner.conn.do_send(Command::Supersede {
                ns: ns_name.clone(),
                sid: sid.clone(),
            });
        }
        if let Some(pid) = &pid {
            match server.cluster_recovery.get() {
                Some(cluster) => cluster.register(pid, &socket, token),
                None => {
                    if let Some(rec) = &server.recovery {
                        rec.register(pid, &socket);
                    }
                }
            }
        }
        let handler = server.handler(&runtime.spec);
        let mut state = SocketState {
            socket: socket.clone(),
            runtime,
            acks: HashMap::default(),
            // Ids start at 1, like the official protocol test suite expects.
            next_ack: 1,
            handler,
            budget: EventBudget::new(
                self.server.config.event_rate,
                self.server.config.event_burst,
                self.server.config.event_abuse_close_after,
                std::time::Instant::now(),
            ),
            restoring: None,
        };
        if let (Some(end), Some(cluster)) = (restoring, server.cluster_recovery.get().cloned()) {
            // Attached: from now on its node's tail delivers to it (into the
            // buffer). What was appended since the first read comes next.
            state.restoring = Some(Box::new(Buffered {
                missed,
                buffer: Vec::new(),
            }));
            self.sockets.insert(ns_name.clone(), Box::new(state));
            let rooms: Vec<Arc<str>> = socket.inner.rooms.lock().rooms.iter().cloned().collect();
            let read = async move {
                let inner = &socket.inner;
                cluster
                    .catch_up(&inner.ns, &inner.id, inner.user.as_deref(), &rooms, end)
                    .await
            };
            ctx.spawn(
                actix::fut::wrap_future::<_, SessionActor<Connection>>(read).map(
                    move |(more, end), act, _ctx| {
                        let SessionActor { core, app } = act;
                        app.finish_restore(&ns_name, &sid, more, end, core);
                    },
                ),
            );
            return;
        }
        if let Some(preface) = preface {
            // Attached and in its rooms: what reaches it now waits in the
            // buffer until the preface's events are written.
            state.restoring = Some(Box::new(Buffered {
                missed,
                buffer: Vec::new(),
            }));
            self.sockets.insert(ns_name.clone(), Box::new(state));
            ctx.spawn(
                actix::fut::wrap_future::<_, SessionActor<Connection>>(preface).map(
                    move |preface, act, _ctx| {
                        let SessionActor { core, app } = act;
                        app.finish_preface(&ns_name, &sid, preface, core);
                    },
                ),
            );
            return;
        }
        self.sockets.insert(ns_name.clone(), Box::new(state));
        self.announce(&ns_name, missed, recovered, core);
    }

    /// The socket `sid` of `ns` if it is still the one waiting (recovered
    /// through the cluster, or for its preface), with what it has waiting.
    fn waiting(&mut self, ns: &Arc<str>, sid: &Sid) -> Option<(&mut SocketState, Buffered)> {
        let state = self
            .sockets
            .get_mut(ns)
            .filter(|s| &s.socket.inner.id == sid)?;
        let buffered = state.restoring.take()?;
        Some((state, *buffered))
    }

    /// A new socket's preface is in: its events, then what was delivered to
    /// it meanwhile, then the CONNECT reply.
    fn finish_preface(
        &mut self,
        ns: &Arc<str>,
        sid: &Sid,
        preface: Preface,
        core: &mut EngineCore,
    ) {
        let parser = self.server.config.parser;
        let Some((state, Buffered { mut missed, buffer })) = self.waiting(ns, sid) else {
            return;
        };
        for (event, payload) in &preface.events {
            match encode_event(parser, ns, event, payload, None) {
                Ok(frames) => missed.push(frames),
                Err(e) => warn!(core.log(), "preface event not sent"; "event" => event.as_str(),
                    "error" => %e),
            }
        }
        for (frames, mode) in buffer {
            state.written(mode);
            missed.push(frames);
        }
        let closing = core.is_closing();
        self.announce(ns, missed, false, core);
        if let (false, Some(written)) = (closing, preface.written) {
            written();
        }
    }

    /// The last step of a recovery through the cluster: what it missed, then
    /// what its tail delivered meanwhile that the reads did not cover (up
    /// to `end`), then the CONNECT reply.
    fn finish_restore(
        &mut self,
        ns: &Arc<str>,
        sid: &Sid,
        more: Vec<(u64, Encoded)>,
        end: u64,
        core: &mut EngineCore,
    ) {
        let Some((state, Buffered { mut missed, buffer })) = self.waiting(ns, sid) else {
            return;
        };
        for (seq, frames) in more {
            state.written(Mode::Stored(seq));
            missed.push(frames);
        }
        for (frames, mode) in buffer {
            if matches!(mode, Mode::Stored(seq) if seq <= end) {
                continue;
            }
            state.written(mode);
            missed.push(frames);
        }
        self.announce(ns, missed, true, core);
    }

    /// Tell the handler the socket connected, then write what it missed
    /// and the CONNECT reply.
    fn announce(
        &self,
        ns: &Arc<str>,
        missed: Vec<Encoded>,
        recovered: bool,
        core: &mut EngineCore,
    ) {
        let Some(state) = self.sockets.get(ns) else {
            return;
        };
        let server = &self.server;
        let socket = &state.socket;
        state.handler.do_send(Dispatch::Connect(socket.clone()));
        server.metrics.socket_connected(&state.runtime.metric_label);
        if let Some(observer) = server.observer.get() {
            observer.socket_connected(socket);
        }
        // What it missed goes first, as in the reference server: the client
        // buffers it until the CONNECT reply, then hands it over in order.
        if recovered {
            server.metrics.recovery_replayed(missed.len());
        }
        for frames in &missed {
            Self::send(core, frames);
        }
        let reply = if self.is_v2() {
            // v2's CONNECT reply carries nothing: the client knows its id.
            Packet {
                ns: ns.to_string(),
                data: PacketData::Connect(None),
            }
        } else {
            let mut body = serde_json::Map::new();
            body.insert(
                "sid".into(),
                Value::String(socket.inner.id.as_str().to_owned()),
            );
            if let Some(pid) = socket.inner.pid() {
                body.insert("pid".into(), Value::String(pid.to_string()));
            }
            Packet {
                ns: ns.to_string(),
                data: PacketData::Connect(Some(Value::Object(body))),
            }
        };
        Self::send(core, &encode_packet(self.server.config.parser, &reply));
    }

    /// Run the namespace's connect middlewares: the user they
    /// authenticated, or the refusal (counted).
    fn run_middlewares(
        &self,
        spec: &NamespaceSpec,
        ns: &str,
        auth: &Value,
        core: &mut EngineCore,
    ) -> Result<Admitted, ConnectError> {
        let server = &self.server;
        let mut req = ConnectRequest::new(ns, auth, &self.handshake);
        for mw in &spec.connect_middleware {
            let verdict = catch_unwind(AssertUnwindSafe(|| mw(&mut req))).unwrap_or_else(|_| {
                server.metrics.handler_panic();
                warn!(core.log(), "connect middleware panicked"; "ns" => ns);
                Err(ConnectError::new("Internal error"))
            });
            if let Err(e) = verdict {
                server.metrics.connect_error("middleware");
                return Err(e);
            }
        }
        Ok(Admitted {
            user: req.user.map(Into::into),
            rooms: req.rooms,
            extensions: req.extensions,
            preface: req.preface,
        })
    }

    /// The state of the socket the CONNECT's `pid` names, if it can be
    /// recovered; counted either way.
    fn restore(
        rec: &Recovery,
        ns: &Arc<str>,
        auth: &Value,
        server: &ServerShared,
        core: &EngineCore,
    ) -> Option<Restored> {
        let pid = auth.get("pid").and_then(Value::as_str)?;
        let offset = auth.get("offset").and_then(Value::as_str);
        match rec.restore(ns, pid, offset) {
            Ok(restored) => {
                server.metrics.recovery("recovered");
                debug!(core.log(), "socket recovered"; "ns" => &**ns,
                    "sid" => restored.sid.as_str(), "missed" => restored.missed.len(),
                    "took_over" => restored.superseded.is_some());
                Some(restored)
            }
            Err(why) => {
                server.metrics.recovery(why.as_str());
                debug!(core.log(), "socket not recovered"; "ns" => &**ns, "why" => why.as_str());
                None
            }
        }
    }

    fn on_event(
        &mut self,
        ns: &str,
        data: Value,
        id: Option<u64>,
        binary: Vec<Bytes>,
        core: &mut EngineCore,
        ctx: &mut Ctx,
    ) {
        if !self.sockets.contains_key(ns) {
            return;
        }
        // The decoder guarantees an array led by a string; keep the
        // invariant local rather than panic on it.
        let mut args = match data {
            Value::Array(args) if matches!(args.first(), Some(Value::String(_))) => args,
            _ => return self.invalid("socket_decode", ns, core, ctx),
        };
        let Value::String(name) = args.remove(0) else {
            return;
        };
        if is_reserved_event(&name) {
            // socket.io-parser v4 rejects these as an invalid payload.
            return self.invalid("reserved_event", ns, core, ctx);
        }
        let verdict = match self.sockets.get_mut(ns) {
            Some(state) => state.budget.check(std::time::Instant::now()),
            None => return,
        };
        match verdict {
            EventVerdict::Accept => {}
            EventVerdict::Refuse => {
                self.server.metrics.event_refused("rate_limit");
                return self.refuse(core, ns, id, &name, "rate limit exceeded");
            }
            EventVerdict::Close => {
                self.server.metrics.event_refused("abuse");
                warn!(core.log(), "disconnecting a socket that keeps exceeding its event rate"; "ns" => ns);
                return self.remove_socket(
                    ns,
                    DisconnectReason::ServerNamespaceDisconnect,
                    true,
                    core,
                    ctx,
                );
            }
        }
        let Some(state) = self.sockets.get(ns) else {
            return;
        };
        let socket = state.socket.clone();
        let event = Event {
            name,
            payload: Payload { args, binary },
            ack: id.map(|id| AckSender {
                conn: socket.inner.conn.clone(),
                ns: socket.inner.ns.clone(),
                sid: socket.inner.id.clone(),
                id,
            }),
        };
        for mw in &state.runtime.spec.event_middleware {
            let verdict =
                catch_unwind(AssertUnwindSafe(|| mw(&socket, &event))).unwrap_or_else(|_| {
                    self.server.metrics.handler_panic();
                    Err(EventRefused::new("Internal error"))
                });
            if let Err(refused) = verdict {
                self.server.metrics.event_refused("middleware");
                let id = event.ack.as_ref().map(|a| a.id);
                return self.refuse(core, ns, id, &event.name, &refused.message);
            }
        }
        if let Some(observer) = self.server.observer.get() {
            observer.event_received(&socket, &event.name, &event.payload);
        }
        state.handler.do_send(Dispatch::Event(socket, event));
    }

    /// Tell the client its event was refused: in its ack if it asked for
    /// one (`[{"error": {...}}]`), otherwise as an `error` event.
    fn refuse(&self, core: &mut EngineCore, ns: &str, id: Option<u64>, event: &str, message: &str) {
        let parser = self.server.config.parser;
        let body = serde_json::json!({ "message": message, "event": event });
        let frames = match id {
            Some(id) => encode_ack(
                parser,
                ns,
                id,
                &Payload::new(vec![serde_json::json!({ "error": body })]),
            ),
            None => match encode_event(parser, ns, "error", &Payload::new(vec![body]), None) {
                Ok(f) => f,
                Err(_) => return,
            },
        };
        Self::send(core, &frames);
    }

    fn on_ack(&mut self, ns: &str, id: u64, data: Value, binary: Vec<Bytes>, ctx: &mut Ctx) {
        let waiter = self.sockets.get_mut(ns).and_then(|s| s.acks.remove(&id));
        let Some((reply, timer)) = waiter else {
            // Late (timed out) or never asked for: harmless.
            self.server.metrics.bad_input("unknown_ack");
            return;
        };
        ctx.cancel_future(timer);
        let args = match data {
            Value::Array(args) => args,
            other => vec![other],
        };
        let _ = reply.send(Ok(Payload { args, binary }));
    }

    fn remove_socket(
        &mut self,
        ns: &str,
        reason: DisconnectReason,
        notify_client: bool,
        core: &mut EngineCore,
        ctx: &mut Ctx,
    ) {
        let Some(mut state) = self.sockets.remove(ns) else {
            return;
        };
        for (_, (reply, timer)) in state.acks.drain() {
            ctx.cancel_future(timer);
            let _ = reply.send(Err(AckError::Disconnected));
        }
        if notify_client {
            let packet = Packet {
                ns: state.socket.inner.ns.to_string(),
                data: PacketData::Disconnect,
            };
            Self::send(core, &encode_packet(self.server.config.parser, &packet));
        }
        let name = state.socket.inner.ns.clone();
        self.left.retain(|l| *l != name);
        self.left.push(name);
        // At most `max_namespaces` (a handful): the oldest goes.
        if self.left.len() > self.server.config.max_namespaces {
            self.left.remove(0);
        }
        self.detach(*state, reason);
    }

    /// Leave every room, the namespace and the user, then tell the handler.
    fn detach(&self, mut state: SocketState, reason: DisconnectReason) {
        let server = &self.server;
        let inner = &state.socket.inner;
        let sid = &inner.id;
        let ns_name = &inner.ns;
        let take_rooms = || {
            let mut set = inner.rooms.lock();
            set.closed = true;
            std::mem::take(&mut set.rooms)
        };
        let park = || {
            reason
                .is_recoverable()
                .then(|| inner.resume().map(|r| r.lock().clone()))
                .flatten()
        };
        let retired = match (server.cluster_recovery.get(), &server.recovery, inner.pid()) {
            (Some(cluster), _, Some(pid)) => cluster.retire(pid, &state.socket, park(), take_rooms),
            (None, Some(rec), Some(pid)) => rec.retire(pid, &state.socket, park(), take_rooms),
            _ => Retired::Leave(take_rooms()),
        };
        let announced = state.restoring.is_none();
        let Retired::Leave(rooms) = retired else {
            // Its recovered self holds its memberships now.
            for (_, (reply, _)) in state.acks.drain() {
                let _ = reply.send(Err(AckError::Disconnected));
            }
            if announced {
                server
                    .metrics
                    .socket_disconnected(&state.runtime.metric_label, "superseded");
            }
            return;
        };
        // Tell the handler which rooms the socket was in: it runs later, on
        // its own actor, after the leaves below took effect, so it gets
        // them as a list (`on_disconnecting`), before `on_disconnect`.
        if announced {
            let list = room_list(&rooms, sid);
            if let Some(observer) = server.observer.get() {
                observer.socket_disconnected(&state.socket, &list, reason);
            }
            state
                .handler
                .do_send(Dispatch::Disconnecting(state.socket.clone(), list, reason));
        }
        for room in rooms {
            server.rooms.leave(
                &RoomKey {
                    ns: ns_name.clone(),
                    room: Some(room),
                },
                sid.clone(),
            );
        }
        server.rooms.leave(
            &RoomKey {
                ns: ns_name.clone(),
                room: None,
            },
            sid.clone(),
        );
        if let Some(user) = &state.socket.inner.user {
            server.users.leave(user, sid.clone());
        }
        // Timers die with a stopping actor; whoever still waits learns now.
        for (_, (reply, _)) in state.acks.drain() {
            let _ = reply.send(Err(AckError::Disconnected));
        }
        // The handler runs on this thread, so it sees the socket gone from
        // its namespace when it runs `on_disconnect`.
        if announced {
            server
                .metrics
                .socket_disconnected(&state.runtime.metric_label, reason.as_str());
            state
                .handler
                .do_send(Dispatch::Disconnect(state.socket.clone(), reason));
        }
        server.detach(&state.runtime, sid);
    }
}

impl EngineApp for Connection {
    fn on_address(&mut self, me: &ConnAddr) {
        self.me = Some(me.clone());
    }

    fn on_open(&mut self, core: &mut EngineCore, ctx: &mut Ctx) {
        // The connect timeout: the engine's deadline for its app, cleared by
        // the first namespace connected (`on_deadline` below).
        core.set_app_deadline(Some(
            std::time::Instant::now() + self.server.config.connect_timeout,
        ));
        if self.is_v2() && self.server.spec("/").is_some() {
            // A v2 client sends no CONNECT for `/`: the server connects it
            // at the handshake (its `0` follows the open packet), as the
            // reference server does for v2 clients. A node without `/`
            // has nothing to connect it to (a v2 client of `/chat` only
            // needs its own CONNECT).
            let auth = Value::Object(Default::default());
            self.on_connect("/".to_string(), Some(auth), core, ctx);
        }
    }

    /// The connect timeout (set in `on_open`): no CONNECT succeeded in time.
    fn on_deadline(&mut self, core: &mut EngineCore, ctx: &mut Ctx) {
        core.close(CloseReason::ConnectTimeout, ctx);
    }

    fn on_message(&mut self, msg: EngineMessage, core: &mut EngineCore, ctx: &mut Ctx) {
        let decoded = match msg {
            EngineMessage::Text(text) => self.decoder.decode_text(&text),
            EngineMessage::Binary(bin) => self.decoder.decode_binary(bin),
        };
        match decoded {
            Ok(Some(packet)) => self.on_packet(packet, core, ctx),
            Ok(None) => {}
            Err(e) => {
                self.server.metrics.bad_input("socket_decode");
                debug!(core.log(), "closing on a packet that does not decode"; "error" => %e);
                core.close(CloseReason::ParseError, ctx);
            }
        }
    }

    fn on_close(&mut self, reason: CloseReason, core: &mut EngineCore) {
        self.server.metrics.engine_session_closed(reason);
        let reason = match reason {
            CloseReason::TransportClose => DisconnectReason::TransportClose,
            CloseReason::TransportError => DisconnectReason::TransportError,
            CloseReason::PingTimeout => DisconnectReason::PingTimeout,
            CloseReason::ParseError => DisconnectReason::ParseError,
            CloseReason::ForcedClose | CloseReason::ConnectTimeout => DisconnectReason::ForcedClose,
            CloseReason::ServerShutdown => DisconnectReason::ServerShuttingDown,
            CloseReason::SlowConsumer => DisconnectReason::SlowConsumer,
        };
        for (_, state) in std::mem::take(&mut self.sockets) {
            self.detach(*state, reason);
        }
        let _ = core;
    }

    fn on_upgrade(&mut self, _core: &mut EngineCore) {
        let observer = self.server.observer.get();
        for state in self.sockets.values() {
            let inner = &state.socket.inner;
            inner
                .websocket
                .store(true, std::sync::atomic::Ordering::Relaxed);
            if let Some(observer) = observer {
                observer.socket_upgraded(&state.socket);
            }
        }
    }
}

/// A Socket.IO v2 CONNECT's namespace and the auth it stands for: the path
/// before any `?`, and the query after it as an object of strings (the last
/// of a repeated key wins, as `Object.fromEntries` of the reference server's
/// `URLSearchParams`).
fn v2_namespace(ns: &str) -> (&str, Value) {
    let (path, query) = ns.split_once('?').unwrap_or((ns, ""));
    let auth = url_query_pairs(query)
        .map(|(k, v)| (k, Value::String(v)))
        .collect::<serde_json::Map<_, _>>();
    (path, Value::Object(auth))
}

/// Whether room name `s` could be a Socket.IO v2 client's socket id (an
/// Engine.IO sid, or `/nsp#` and one): a broadcast to it must reach the
/// other nodes' namespaces too, as one to a v3+ socket id does. A sid is
/// URL-safe base64, 20 characters behind its node's prefix in a cluster
/// that forwards (12), so anything of that alphabet from 20 to 32
/// characters; a false positive only costs a message to the namespace's
/// nodes.
pub(crate) fn could_be_v2_socket_id(s: &str) -> bool {
    let sid = match s.rsplit_once('#') {
        Some((ns, sid)) if ns.starts_with('/') => sid,
        Some(_) => return false,
        None => s,
    };
    (20..=32).contains(&sid.len())
        && sid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

// ---- what handlers ask of a socket -------------------------------------------

/// An operation on one socket of this connection, from a [`Socket`] handle.
/// Each names the socket's id, so a command for a socket that has since left
/// (and perhaps reconnected under a new id) is ignored.
#[derive(Message)]
#[rtype(result = "()")]
pub enum Command {
    Send {
        ns: Arc<str>,
        sid: Sid,
        frames: Encoded,
        mode: Mode,
    },
    Ack {
        ns: Arc<str>,
        sid: Sid,
        id: u64,
        payload: Payload,
    },
    EmitWithAck {
        ns: Arc<str>,
        sid: Sid,
        event: String,
        payload: Payload,
        timeout: Duration,
        reply: AckReply,
    },
    /// Disconnect every namespace of the connection, then close it.
    CloseConnection { ns: Arc<str>, sid: Sid },
    /// The socket was recovered on another connection (this one is
    /// half-open): drop it without a word to anyone.
    Supersede { ns: Arc<str>, sid: Sid },
    Disconnect {
        ns: Arc<str>,
        sid: Sid,
        reason: DisconnectReason,
    },
}

impl Handler<Command> for SessionActor<Connection> {
    type Result = ();

    fn handle(&mut self, cmd: Command, ctx: &mut Ctx) {
        let SessionActor { core, app } = self;
        let live = |ns: &Arc<str>, sid: &Sid| {
            app.sockets
                .get(ns)
                .is_some_and(|s| &s.socket.inner.id == sid)
        };
        match cmd {
            Command::Send {
                ns,
                sid,
                frames,
                mode,
            } => {
                let Some(state) = app.sockets.get(&ns).filter(|s| s.socket.inner.id == sid) else {
                    return;
                };
                if mode.is_volatile() && !core.is_writable() {
                    app.server.metrics.volatile_dropped();
                    return;
                }
                state.written(mode);
                Connection::send(core, &frames);
                if let Some(observer) = app.server.observer.get() {
                    observer.event_sent(&state.socket, &frames);
                }
            }
            Command::Ack {
                ns,
                sid,
                id,
                payload,
            } => {
                if live(&ns, &sid) {
                    Connection::send(
                        core,
                        &encode_ack(app.server.config.parser, &ns, id, &payload),
                    );
                }
            }
            Command::EmitWithAck {
                ns,
                sid,
                event,
                payload,
                timeout,
                reply,
            } => {
                if !live(&ns, &sid) {
                    let _ = reply.send(Err(AckError::Disconnected));
                    return;
                }
                let state = app.sockets.get_mut(&ns).expect("checked live");
                let id = state.next_ack;
                state.next_ack += 1;
                let Ok(frames) =
                    encode_event(app.server.config.parser, &ns, &event, &payload, Some(id))
                else {
                    return;
                };
                let ns2 = ns.clone();
                let timer = ctx.run_later(timeout, move |act, _| {
                    if let Some(state) = act.app.sockets.get_mut(&ns2) {
                        if let Some((reply, _)) = state.acks.remove(&id) {
                            act.app.server.metrics.ack_timed_out();
                            let _ = reply.send(Err(AckError::Timeout));
                        }
                    }
                });
                state.acks.insert(id, (reply, timer));
                Connection::send(core, &frames);
                if let Some(observer) = app.server.observer.get() {
                    observer.event_sent(&state.socket, &frames);
                }
            }
            Command::CloseConnection { ns, sid } => {
                if !live(&ns, &sid) {
                    return;
                }
                let namespaces: Vec<Arc<str>> = app.sockets.keys().cloned().collect();
                for ns in namespaces {
                    app.remove_socket(
                        &ns,
                        DisconnectReason::ServerNamespaceDisconnect,
                        true,
                        core,
                        ctx,
                    );
                }
                core.close(CloseReason::ForcedClose, ctx);
            }
            Command::Disconnect { ns, sid, reason } => {
                if live(&ns, &sid) {
                    app.remove_socket(&ns, reason, true, core, ctx);
                }
            }
            Command::Supersede { ns, sid } => {
                if live(&ns, &sid) {
                    // `detach` finds it superseded and leaves nothing.
                    app.remove_socket(&ns, DisconnectReason::TransportClose, false, core, ctx);
                }
            }
        }
    }
}

impl Handler<Deliver> for SessionActor<Connection> {
    type Result = ();

    fn handle(&mut self, d: Deliver, _ctx: &mut Ctx) {
        let Some(state) = self.app.sockets.get_mut(&d.ns) else {
            return;
        };
        if state.socket.inner.id != d.sid {
            return;
        }
        let observer = self.app.server.observer.get();
        for item in d.items.as_slice() {
            if !state.accepts(&d.via, item) {
                continue;
            }
            if let Some(restoring) = &mut state.restoring {
                restoring
                    .buffer
                    .push((item.frames.clone(), item.mode.clone()));
                continue;
            }
            if state.repeats_stored(&item.mode, &self.app.server) {
                continue;
            }
            if item.mode.is_volatile() && !self.core.is_writable() {
                self.app.server.metrics.volatile_dropped();
                continue;
            }
            state.written(item.mode.clone());
            Connection::send(&mut self.core, &item.frames);
            if let Some(observer) = observer {
                observer.event_sent(&state.socket, &item.frames);
            }
        }
    }
}

/// The mailbox probe (`node::probe`): answered at once.
impl Handler<super::probe::Probe> for SessionActor<Connection> {
    type Result = ();

    fn handle(&mut self, _: super::probe::Probe, _ctx: &mut Ctx) {}
}

impl Handler<DisconnectSocket> for SessionActor<Connection> {
    type Result = ();

    fn handle(&mut self, m: DisconnectSocket, ctx: &mut Ctx) {
        let live = self
            .app
            .sockets
            .get(&m.ns)
            .is_some_and(|s| s.socket.inner.id == m.sid);
        if live {
            let SessionActor { core, app } = self;
            app.remove_socket(
                &m.ns,
                DisconnectReason::ServerNamespaceDisconnect,
                true,
                core,
                ctx,
            );
        }
    }
}

#[cfg(test)]
mod v2_tests {
    use super::v2_namespace;
    use serde_json::json;

    #[test]
    fn a_v2_namespace_query_is_its_auth() {
        assert_eq!(v2_namespace("/"), ("/", json!({})));
        assert_eq!(v2_namespace("/chat"), ("/chat", json!({})));
        assert_eq!(
            v2_namespace("/chat?token=a%20b&x=1&x=2"),
            ("/chat", json!({"token": "a b", "x": "2"}))
        );
        assert_eq!(v2_namespace("/chat?"), ("/chat", json!({})));
    }

    #[test]
    fn v2_socket_ids_are_recognised() {
        use super::could_be_v2_socket_id as v2;
        let sid = "AbCdEfGhIjKlMnOpQr_-";
        assert!(v2(sid));
        assert!(v2(&format!("a1b2c3d4e5f6{sid}")));
        assert!(v2(&format!("/chat#{sid}")));
        assert!(!v2("lobby"));
        assert!(!v2(&format!("chat#{sid}")));
        assert!(!v2(&format!("/chat#{sid}!")));
        assert!(!v2(&"x".repeat(40)));
    }
}
