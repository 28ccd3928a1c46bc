//! The node's shared state: its namespaces and their sockets, the room and
//! user registries, the cluster handle, and the Socket.IO bounds every
//! connection applies.

use std::collections::HashMap;
use std::sync::{Arc, Once, OnceLock};
use std::time::Duration;

use actix::prelude::*;
use parking_lot::{Mutex, RwLock};
use regex::Regex;
use slog::{debug, o, Logger};

use super::connection::Connection;
use super::delivery::{Encoded, Mode};
use super::dispatch::{local_handler, Dispatch, HandlerRef};
use super::fanout::{BroadcastOperator, UserOperator};
use super::interest::Registry;
use super::metrics::Metrics;
use super::namespace::NamespaceSpec;
use super::observer::Observer;
use super::recovery::cluster::ClusterRecovery;
use super::recovery::{Recovery, RecoveryConfig, Target};
use super::room::{RoomActor, RoomKey};
use super::socket::{ConnAddr, Socket};
use super::user::{UserActor, UserEmit};
use crate::adapter::Cluster;
use crate::engineio::{EngineAppFactory, Handshake, SessionActor, Sid};
use crate::socketio::encode::{encode_event, ReservedEvent};
use crate::socketio::parser::Parser;
use crate::socketio::payload::Payload;

/// What [`ServerShared::encode_emit`] made of an event.
pub(crate) enum Emit {
    /// Deliver these frames now, in this mode.
    Now(Encoded, Mode),
    /// Handed to the cluster's recovery store: every node delivers it from
    /// there, this one included.
    Recorded,
}

/// The Socket.IO layer's bounds (the service resolves them from its settings).
#[derive(Debug, Clone)]
pub struct SioConfig {
    /// The packet format every client of this server speaks.
    pub parser: Parser,
    /// Connection state recovery; `None` when off.
    pub recovery: Option<RecoveryConfig>,
    pub connect_timeout: Duration,
    pub ack_timeout: Duration,
    pub max_namespaces: usize,
    pub max_rooms_per_socket: usize,
    /// How long a room that just flushed holds the next broadcasts
    /// (`socketio.broadcast_window_us`; room.rs).
    pub broadcast_window: Duration,
    pub max_attachments: usize,
    pub event_rate: f64,
    pub event_burst: u32,
    pub event_abuse_close_after: u32,
    /// Socket.IO v2 clients may connect (`engine.allow_eio3`): socket ids
    /// of their shape (see `connection::could_be_v2_socket_id`) exist.
    pub v2_clients: bool,
}

/// A namespace with sockets on this node: every registered namespace, and each
/// dynamic namespace while it has at least one socket.
pub(crate) struct NamespaceRuntime {
    pub name: Arc<str>,
    pub spec: NamespaceSpec,
    /// Created from a `dynamic_namespace` pattern: dropped with its last
    /// socket, so clients cannot grow the node's namespaces without bound.
    pub dynamic: bool,
    /// The `namespace` label of its metrics: the name for a registered
    /// namespace, the pattern for a dynamic one (bounded label cardinality).
    pub metric_label: Arc<str>,
    /// The namespace's local sockets by id.
    pub sockets: RwLock<HashMap<Sid, Socket>>,
}

/// State shared by every connection and handler of the node.
pub(crate) struct ServerShared {
    pub config: SioConfig,
    namespaces: RwLock<HashMap<Arc<str>, Arc<NamespaceRuntime>>>,
    dynamic: Vec<(Regex, NamespaceSpec)>,
    /// Room actors. Creating and retiring one tells the cluster (if any)
    /// that this node gained or lost interest in the room's traffic.
    pub rooms: Registry<RoomKey, RoomActor>,
    pub users: Registry<Arc<str>, UserActor>,
    /// The cluster this node belongs to: set once by the server's
    /// `start_cluster` before the first connection when `adapter.kind` is not `memory`.
    pub cluster: Arc<OnceLock<Cluster>>,
    /// Every handler actor started for this node, so shutdown can wait until
    /// each has run the `on_disconnect`s it was sent.
    pub handlers: Mutex<Vec<Recipient<Dispatch>>>,
    /// Connection state recovery's store in the node's memory, when it is on
    /// and the node has no cluster adapter.
    pub recovery: Option<Recovery>,
    /// Connection state recovery's store in the broker, when it is on and the
    /// node is in a cluster: set by `start_cluster`, and then used instead of
    /// `recovery`.
    pub cluster_recovery: OnceLock<Arc<ClusterRecovery>>,
    /// The mailbox probe ([`super::probe`]) started, by the first connection.
    probe: Once,
    /// Told of every socket's life and events when set (the admin UI,
    /// `admin.enabled`); unset, each hook costs one load.
    pub observer: OnceLock<Arc<dyn Observer>>,
    pub metrics: Metrics,
    pub log: Logger,
}

impl ServerShared {
    /// A node's state with its registered namespaces (`namespaces`) and
    /// dynamic ones (`dynamic`, by pattern). Room actors' creation and
    /// retirement tell the cluster, once there is one.
    pub fn new(
        config: SioConfig,
        namespaces: Vec<(String, NamespaceSpec)>,
        dynamic: Vec<(Regex, NamespaceSpec)>,
        metrics: Metrics,
        log: Logger,
    ) -> Arc<ServerShared> {
        let (room_metrics, room_log) = (metrics.clone(), log.new(o!("actor" => "room")));
        let window = config.broadcast_window;
        let (user_metrics, user_log) = (metrics.clone(), log.new(o!("actor" => "user")));
        let cluster: Arc<OnceLock<Cluster>> = Arc::new(OnceLock::new());
        let interest = cluster.clone();
        let recovery = config
            .recovery
            .clone()
            .map(|c| Recovery::new(c, metrics.clone()));
        Arc::new(ServerShared {
            config,
            recovery,
            namespaces: RwLock::new(
                namespaces
                    .into_iter()
                    .map(|(name, ns)| {
                        let name: Arc<str> = name.into();
                        (
                            name.clone(),
                            Arc::new(NamespaceRuntime::registered(name, ns)),
                        )
                    })
                    .collect(),
            ),
            dynamic,
            rooms: Registry::new(move |key: &RoomKey, roster| {
                let (key, m, l) = (key.clone(), room_metrics.clone(), room_log.clone());
                Supervisor::start(move |_| RoomActor::new(key, roster, window, m, l))
            })
            .with_hook(move |key: &RoomKey, created| {
                let Some(cluster) = interest.get() else {
                    return;
                };
                match (&key.room, created) {
                    (Some(room), true) => cluster.room_joined(&key.ns, room),
                    (Some(room), false) => cluster.room_left(&key.ns, room),
                    (None, true) => cluster.namespace_joined(&key.ns),
                    (None, false) => cluster.namespace_left(&key.ns),
                }
            }),
            users: Registry::new(move |_user: &Arc<str>, roster| {
                let (m, l) = (user_metrics.clone(), user_log.clone());
                Supervisor::start(move |_| UserActor::new(roster, m, l))
            }),
            cluster,
            cluster_recovery: OnceLock::new(),
            probe: Once::new(),
            observer: OnceLock::new(),
            handlers: Mutex::new(Vec::new()),
            metrics,
            log,
        })
    }

    /// Encode an event for `ns`. With recovery on, an event that is not
    /// volatile is stored for `target` and carries its offset as its last
    /// argument: in this node's store, it is delivered at once
    /// ([`Mode::Stored`]); in the cluster's, it is handed to the recorder and
    /// every node delivers it from the stream ([`Emit::Recorded`]: the
    /// caller delivers nothing). A volatile event whose last argument is a
    /// string is marked so the receiving sockets remember it
    /// ([`Mode::VolatileTail`]).
    pub fn encode_emit(
        &self,
        ns: &Arc<str>,
        event: &str,
        mut payload: Payload,
        volatile: bool,
        target: impl FnOnce() -> Target,
    ) -> Result<Emit, ReservedEvent> {
        let cluster = self.cluster_recovery.get();
        if cluster.is_none() && self.recovery.is_none() {
            return Ok(Emit::Now(
                encode_event(self.config.parser, ns, event, &payload, None)?,
                Mode::volatile(volatile),
            ));
        }
        if volatile {
            let frames = encode_event(self.config.parser, ns, event, &payload, None)?;
            let mode = match payload.args.last() {
                Some(serde_json::Value::String(tail)) => Mode::VolatileTail(tail.as_str().into()),
                _ => Mode::Volatile,
            };
            return Ok(Emit::Now(frames, mode));
        }
        if let Some(cluster) = cluster {
            let frames = encode_event(self.config.parser, ns, event, &payload, None)?;
            return Ok(match cluster.record(ns, target(), frames) {
                Ok(()) => Emit::Recorded,
                // Not recorded: delivered at once, without an offset.
                Err(frames) => Emit::Now(frames, Mode::Normal),
            });
        }
        let recovery = self.recovery.as_ref().expect("checked above");
        let (seq, frames, dropped) = recovery.store(ns, target(), |offset| {
            payload
                .args
                .push(serde_json::Value::String(offset.to_owned()));
            encode_event(self.config.parser, ns, event, &payload, None)
        })?;
        self.metrics.recovery_stored(dropped);
        Ok(Emit::Now(frames, Mode::Stored(seq)))
    }

    /// Deliver an event the cluster's recovery store could not take, the
    /// way it would go without recovery.
    pub fn deliver_unrecorded(self: &Arc<Self>, ns: &Arc<str>, target: &Target, frames: Encoded) {
        let result = match target {
            Target::Rooms {
                rooms,
                except_rooms,
                except_sids,
            } => BroadcastOperator {
                server: self.clone(),
                ns: ns.clone(),
                rooms: rooms.clone(),
                except_rooms: except_rooms.clone(),
                except_sids: except_sids.clone(),
                volatile: false,
            }
            .send_encoded(frames, Mode::Normal),
            Target::User(user) => UserOperator {
                server: self.clone(),
                ns: ns.clone(),
                user: user.clone(),
            }
            .send_encoded(frames, Mode::Normal),
        };
        if let Err(e) = result {
            debug!(self.log, "unrecorded event not published to the cluster"; "error" => %e);
        }
    }

    /// The spec serving namespace `name`: registered exactly, or the first
    /// dynamic pattern it matches. Creates nothing: a namespace's runtime
    /// exists once a socket is attached to it (see [`ServerShared::attach`]).
    pub fn spec(&self, name: &str) -> Option<NamespaceSpec> {
        if let Some(ns) = self.namespaces.read().get(name) {
            return Some(ns.spec.clone());
        }
        self.dynamic
            .iter()
            .find(|(re, _)| re.is_match(name))
            .map(|(_, spec)| spec.clone())
    }

    /// Add `socket` to its namespace, creating a dynamic namespace's runtime
    /// on its first socket. `None` if no namespace serves the name.
    pub fn attach(&self, socket: &Socket) -> Option<Arc<NamespaceRuntime>> {
        let name = &socket.inner.ns;
        let sid = socket.inner.id.clone();
        {
            // Inserted under the map's read lock: `detach` cannot drop the
            // runtime between the lookup and the insert.
            let namespaces = self.namespaces.read();
            if let Some(rt) = namespaces.get(name) {
                rt.sockets.write().insert(sid, socket.clone());
                return Some(rt.clone());
            }
        }
        let (re, spec) = self.dynamic.iter().find(|(re, _)| re.is_match(name))?;
        let mut namespaces = self.namespaces.write();
        let rt = namespaces
            .entry(name.clone())
            .or_insert_with(|| {
                Arc::new(NamespaceRuntime {
                    name: name.clone(),
                    spec: spec.clone(),
                    dynamic: true,
                    metric_label: re.as_str().into(),
                    sockets: RwLock::new(HashMap::new()),
                })
            })
            .clone();
        rt.sockets.write().insert(sid, socket.clone());
        Some(rt)
    }

    /// Remove socket `sid` from its namespace; a dynamic namespace left
    /// without sockets is dropped.
    pub fn detach(&self, rt: &Arc<NamespaceRuntime>, sid: &Sid) {
        let now_empty = {
            let mut sockets = rt.sockets.write();
            sockets.remove(sid);
            sockets.is_empty()
        };
        if now_empty && rt.dynamic {
            let mut namespaces = self.namespaces.write();
            let current = namespaces
                .get(&rt.name)
                .is_some_and(|cur| Arc::ptr_eq(cur, rt));
            if current && rt.sockets.read().is_empty() {
                namespaces.remove(&rt.name);
                if let Some(cluster) = self.cluster_recovery.get() {
                    cluster.namespace_dropped(&rt.name);
                }
            }
        }
    }

    /// How many namespaces have a runtime on this node (registered ones
    /// included).
    pub fn namespace_count(&self) -> usize {
        self.namespaces.read().len()
    }

    /// How many sockets are attached on this node, all namespaces together.
    pub fn socket_count(&self) -> usize {
        self.namespaces
            .read()
            .values()
            .map(|n| n.sockets.read().len())
            .sum()
    }

    /// `f` of the connections of up to `n` sockets, from position `from` of
    /// the sockets of every namespace in turn (the mailbox probe's
    /// round-robin): a namespace before the position is skipped by its
    /// length, the one it falls in walked under its read lock.
    pub fn sample_connections<T>(
        &self,
        from: usize,
        n: usize,
        f: impl Fn(&Addr<SessionActor<Connection>>) -> T,
    ) -> Vec<T> {
        let namespaces: Vec<Arc<NamespaceRuntime>> =
            self.namespaces.read().values().cloned().collect();
        let mut skip = from;
        let mut out = Vec::new();
        for rt in namespaces {
            if out.len() == n {
                break;
            }
            let sockets = rt.sockets.read();
            if skip >= sockets.len() {
                skip -= sockets.len();
                continue;
            }
            let want = n - out.len();
            out.extend(
                sockets
                    .values()
                    .skip(skip)
                    .take(want)
                    .map(|s| f(&s.inner.conn)),
            );
            skip = 0;
        }
        out
    }

    /// Start the node's mailbox probe, once ([`super::probe`]).
    fn start_probe(self: &Arc<Self>) {
        self.probe.call_once(|| super::probe::start(self));
    }

    /// The connection of local socket `sid` in `ns`, if `sid` is one.
    pub fn local_socket(&self, ns: &str, sid: &str) -> Option<ConnAddr> {
        // Socket ids have one length: most room names are ruled out for
        // free. A Socket.IO v2 client's has another shape.
        let v2 = || self.config.v2_clients && super::connection::could_be_v2_socket_id(sid);
        if sid.len() != 20 && !v2() {
            return None;
        }
        let namespaces = self.namespaces.read();
        let socket = namespaces.get(ns)?.sockets.read().get(sid)?.clone();
        Some(socket.inner.conn.clone())
    }

    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.get()
    }

    /// Emit to the local sockets of `user` in `ns`.
    pub fn user_emit(&self, ns: &Arc<str>, user: &str, frames: Encoded, mode: Mode) {
        if let Some(actor) = self.users.get(&Arc::from(user)) {
            actor.do_send(UserEmit {
                ns: ns.clone(),
                frames,
                mode,
            });
        }
    }

    /// The local sockets of `ns` a cluster operation selects: in any of
    /// `rooms` (all sockets when empty; a socket's own id counts as a room),
    /// in none of `except_rooms`, and not one of `except_sids`.
    pub fn select_local(
        &self,
        ns: &str,
        rooms: &[impl AsRef<str>],
        except_rooms: &[impl AsRef<str>],
        except_sids: &[Sid],
    ) -> Vec<Socket> {
        self.local_sockets(ns)
            .into_iter()
            .filter(|s| {
                let inner = &s.inner;
                !except_sids.contains(&inner.id)
                    && (rooms.is_empty() || rooms.iter().any(|r| inner.in_room(r.as_ref())))
                    && !except_rooms.iter().any(|r| inner.in_room(r.as_ref()))
            })
            .collect()
    }

    /// The handler actor of namespace `spec` on the current thread, started
    /// (and recorded for shutdown) on first use.
    pub fn handler(&self, spec: &NamespaceSpec) -> HandlerRef {
        let start = || (spec.start_handler)(self.metrics.clone(), self.log.clone());
        local_handler(spec.id, &start, |h| {
            let mut handlers = self.handlers.lock();
            handlers.retain(|h| h.connected());
            handlers.push(h.clone());
        })
    }

    /// Each namespace with a runtime on this node and its local socket count.
    pub fn namespace_sockets(&self) -> Vec<(Arc<str>, usize)> {
        self.namespaces
            .read()
            .values()
            .map(|n| (n.name.clone(), n.sockets.read().len()))
            .collect()
    }

    pub fn local_sockets(&self, ns: &str) -> Vec<Socket> {
        self.namespaces
            .read()
            .get(ns)
            .map(|n| n.sockets.read().values().cloned().collect())
            .unwrap_or_default()
    }
}

impl NamespaceRuntime {
    fn registered(name: Arc<str>, spec: NamespaceSpec) -> NamespaceRuntime {
        NamespaceRuntime {
            metric_label: name.clone(),
            name,
            spec,
            dynamic: false,
            sockets: RwLock::new(HashMap::new()),
        }
    }
}

/// Builds each session's Socket.IO connection.
pub(crate) struct SocketIoFactory {
    shared: Arc<ServerShared>,
}

impl SocketIoFactory {
    pub fn new(shared: Arc<ServerShared>) -> SocketIoFactory {
        SocketIoFactory { shared }
    }
}

impl EngineAppFactory for SocketIoFactory {
    type App = Connection;
    fn create(&self, handshake: &Arc<Handshake>) -> Connection {
        self.shared.start_probe();
        Connection::new(self.shared.clone(), handshake.clone())
    }
}
