//! The node: namespaces, the room and user registries, and the HTTP server
//! that serves the engine, `/health` and `/metrics`.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::prelude::*;
use actix_web::{web, App, HttpResponse, HttpServer};
use parking_lot::{Mutex, RwLock};
use regex::Regex;
use slog::{info, o, Logger};

use crate::actors::connection::Connection;
use crate::actors::delivery::{Deliver, Encoded, Filter};
use crate::actors::handler::Dispatch;
use crate::actors::registry::Registry;
use crate::actors::room::{Broadcast as RoomBroadcast, InjectPanic, RoomActor, RoomKey};
use crate::actors::user::UserEmit;
use crate::actors::user::{DisconnectUser, UserActor};
use crate::adapter::{
    AdapterOptions, Broadcast, Cluster, ClusterEvent, ClusterOptions, NodeId, RequestOp,
    ResponsePayload, Topic,
};
use crate::broadcast::{
    affected_across, gather_acks, local_frames, payload_from_json, payload_from_wire,
    payload_to_json, payload_to_wire, Affected, BroadcastOperator, UserOperator,
};
use crate::engineio::{CloseReason, Engine, EngineAppFactory, EngineConfig, Handshake, Sid};
use crate::handler::{Namespace, ServerAck, ServerAcks, ServerEvent};
use crate::metrics::Metrics;
use crate::service::config::{AdapterKind, Settings};
use crate::socket::{EmitError, Payload, Socket};

/// The Socket.IO layer's bounds, resolved from [`Settings`].
#[derive(Debug, Clone)]
pub(crate) struct SioConfig {
    pub connect_timeout: Duration,
    pub ack_timeout: Duration,
    pub max_namespaces: usize,
    pub max_rooms_per_socket: usize,
    pub max_attachments: usize,
    pub event_rate: f64,
    pub event_burst: u32,
    pub event_abuse_close_after: u32,
}

/// A namespace with sockets on this node: every registered namespace, and each
/// dynamic namespace while it has at least one socket.
pub(crate) struct NamespaceRuntime {
    pub name: Arc<str>,
    pub spec: Namespace,
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
    dynamic: Vec<(Regex, Namespace)>,
    /// Room actors. Creating and retiring one tells the cluster (if any)
    /// that this node gained or lost interest in the room's traffic.
    pub rooms: Registry<RoomKey, RoomActor>,
    pub users: Registry<Arc<str>, UserActor>,
    /// The cluster this node belongs to: set once by [`RiptideServer::serve`]
    /// before the first connection when `adapter.kind` is not `memory`.
    pub cluster: Arc<OnceLock<Cluster>>,
    /// Every handler actor started for this node, so shutdown can wait until
    /// each has run the `on_disconnect`s it was sent.
    pub handlers: Mutex<Vec<Recipient<Dispatch>>>,
    pub metrics: Metrics,
    pub log: Logger,
}

impl ServerShared {
    /// The spec serving namespace `name`: registered exactly, or the first
    /// dynamic pattern it matches. Creates nothing: a namespace's runtime
    /// exists once a socket is attached to it (see [`ServerShared::attach`]).
    pub fn spec(&self, name: &str) -> Option<Namespace> {
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

    /// The connection of local socket `sid` in `ns`, if `sid` is one.
    pub fn local_socket(&self, ns: &str, sid: &str) -> Option<Recipient<Deliver>> {
        // Socket ids have one length: most room names are ruled out for free.
        if sid.len() != 20 {
            return None;
        }
        let namespaces = self.namespaces.read();
        let socket = namespaces.get(ns)?.sockets.read().get(sid)?.clone();
        Some(socket.inner.conn.clone().recipient())
    }

    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.get()
    }

    /// Deliver a broadcast from another node to the local sockets: only
    /// through the room (or namespace) actor of the topic it came by, so a
    /// socket in several target rooms takes it once (from the first target
    /// room it is in, as for a local emit).
    fn deliver_remote(&self, via: &Topic, broadcast: Broadcast) {
        let key = match via {
            Topic::Room { ns, room } => RoomKey {
                ns: ns.as_str().into(),
                room: Some(room.as_str().into()),
            },
            Topic::Namespace { ns } => RoomKey {
                ns: ns.as_str().into(),
                room: None,
            },
            // Not a route broadcasts take.
            Topic::Nodes | Topic::Node(_) => return,
        };
        // On the namespace topic with target rooms: targets that may be
        // socket ids of this node (see `BroadcastOperator::publish`).
        let direct = key.room.is_none() && !broadcast.rooms.is_empty();
        let actor = if direct {
            None
        } else {
            match self.rooms.get(&key) {
                Some(actor) => Some(actor),
                None => return,
            }
        };
        let filter = if broadcast.rooms.len() <= 1
            && broadcast.except_rooms.is_empty()
            && broadcast.except_sids.is_empty()
        {
            None
        } else {
            Some(Arc::new(Filter {
                rooms: broadcast.rooms.iter().map(|r| r.as_str().into()).collect(),
                except_rooms: broadcast
                    .except_rooms
                    .iter()
                    .map(|r| r.as_str().into())
                    .collect(),
                except_sids: broadcast
                    .except_sids
                    .iter()
                    .map(|s| Sid::from(s.as_str()))
                    .collect(),
            }))
        };
        let frames = local_frames(broadcast.frames);
        let Some(actor) = actor else {
            for room in &broadcast.rooms {
                if let Some(conn) = self.local_socket(&key.ns, room) {
                    conn.do_send(Deliver {
                        ns: key.ns.clone(),
                        sid: Sid::from(room.as_str()),
                        frames: frames.clone(),
                        via: Some(room.as_str().into()),
                        filter: filter.clone(),
                        volatile: broadcast.volatile,
                    });
                }
            }
            return;
        };
        actor.do_send(RoomBroadcast {
            frames,
            filter,
            volatile: broadcast.volatile,
        });
    }

    /// Emit to the local sockets of `user` in `ns`.
    pub fn user_emit(&self, ns: &Arc<str>, user: &str, frames: Encoded, volatile: bool) {
        if let Some(actor) = self.users.get(&Arc::from(user)) {
            actor.do_send(UserEmit {
                ns: ns.clone(),
                frames,
                volatile,
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

    /// Run a request from another node and answer it through `reply`
    /// (a notification's reply sends nothing). Operations that wait (acks)
    /// answer from a task of their own; `serverSideEmit` is answered by the
    /// application's handler, if it acks.
    fn serve(self: &Arc<Self>, op: RequestOp, reply: Reply) {
        let done = |n: usize| ResponsePayload::Done { affected: n as u32 };
        let payload = match op {
            RequestOp::FetchSockets {
                ns,
                rooms,
                except_rooms,
            } => {
                let node = reply.cluster.node();
                let sockets = self.select_local(&ns, &rooms, &except_rooms, &[]);
                ResponsePayload::Sockets(
                    sockets
                        .iter()
                        .map(|s| crate::broadcast::describe(s, node))
                        .collect(),
                )
            }
            RequestOp::SocketsJoin {
                ns,
                rooms,
                except_rooms,
                sids,
                join,
            } => {
                let sockets = self.select_by(&ns, &rooms, &except_rooms, &sids);
                for s in &sockets {
                    for room in &join {
                        s.join(room.as_str());
                    }
                }
                done(sockets.len())
            }
            RequestOp::SocketsLeave {
                ns,
                rooms,
                except_rooms,
                sids,
                leave,
            } => {
                let sockets = self.select_by(&ns, &rooms, &except_rooms, &sids);
                for s in &sockets {
                    for room in &leave {
                        s.leave(room.as_str());
                    }
                }
                done(sockets.len())
            }
            RequestOp::DisconnectSockets {
                ns,
                rooms,
                except_rooms,
                close,
            } => {
                let sockets = self.select_local(&ns, &rooms, &except_rooms, &[]);
                for s in &sockets {
                    if close {
                        s.close_connection();
                    } else {
                        s.disconnect();
                    }
                }
                done(sockets.len())
            }
            RequestOp::ServerSideEmit {
                ns,
                event,
                args_json,
                binary,
                want_ack,
            } => {
                let event = ServerEvent {
                    name: event,
                    payload: payload_from_wire(&args_json, binary),
                    origin: reply.origin,
                    ack: want_ack.then(|| ServerAck { reply }),
                };
                self.dispatch_server_event(&ns, event);
                return;
            }
            RequestOp::BroadcastWithAck {
                ns,
                rooms,
                except_rooms,
                except_sids,
                event,
                args_json,
                binary,
                timeout_ms,
            } => {
                let except_sids: Vec<Sid> =
                    except_sids.iter().map(|s| Sid::from(s.as_str())).collect();
                let sockets = self.select_local(&ns, &rooms, &except_rooms, &except_sids);
                let payload = payload_from_wire(&args_json, binary);
                let timeout = Duration::from_millis(timeout_ms);
                actix_rt::spawn(async move {
                    let (acks, unanswered) = gather_acks(&sockets, &event, &payload, timeout).await;
                    reply.send(ResponsePayload::Acks {
                        args: acks.iter().map(payload_to_json).collect(),
                        unanswered: unanswered as u32,
                    });
                });
                return;
            }
            RequestOp::UserEmit {
                ns,
                user,
                frames,
                volatile,
            } => {
                self.user_emit(&ns.into(), &user, local_frames(frames), volatile);
                return;
            }
            RequestOp::DisconnectUser { user } => {
                let Some(actor) = self.users.get(&Arc::from(user.as_str())) else {
                    return reply.send(done(0));
                };
                actix_rt::spawn(async move {
                    let n = actor.send(DisconnectUser).await.unwrap_or(0);
                    reply.send(done(n));
                });
                return;
            }
        };
        reply.send(payload);
    }

    /// The handler actor of namespace `spec` on the current thread, started
    /// (and recorded for shutdown) on first use.
    pub fn handler(&self, spec: &Namespace) -> Recipient<Dispatch> {
        crate::actors::handler::local_handler(spec.id, &*spec.start_handler, |h| {
            let mut handlers = self.handlers.lock();
            handlers.retain(|h| h.connected());
            handlers.push(h.clone());
        })
    }

    /// Hand a `serverSideEmit` from another node to a handler of `ns` (the
    /// one of the current thread). A namespace this node does not serve
    /// drops it; an ack then never comes, and the emitter sees this node
    /// `missing`.
    fn dispatch_server_event(&self, ns: &str, event: ServerEvent) {
        let Some(spec) = self.spec(ns) else {
            slog::debug!(self.log, "server-side event for a namespace not served here"; "ns" => ns);
            return;
        };
        self.handler(&spec).do_send(Dispatch::ServerEvent {
            ns: ns.into(),
            event,
            metrics: self.metrics.clone(),
            log: self.log.clone(),
        });
    }

    /// [`ServerShared::select_local`], or exactly the listed `sids` if any.
    fn select_by(
        &self,
        ns: &str,
        rooms: &[String],
        except_rooms: &[String],
        sids: &[String],
    ) -> Vec<Socket> {
        let mut sockets = self.select_local(ns, rooms, except_rooms, &[]);
        if !sids.is_empty() {
            sockets.retain(|s| sids.iter().any(|id| id == s.id()));
        }
        sockets
    }

    fn local_sockets(&self, ns: &str) -> Vec<Socket> {
        self.namespaces
            .read()
            .get(ns)
            .map(|n| n.sockets.read().values().cloned().collect())
            .unwrap_or_default()
    }
}

impl NamespaceRuntime {
    fn registered(name: Arc<str>, spec: Namespace) -> NamespaceRuntime {
        NamespaceRuntime {
            metric_label: name.clone(),
            name,
            spec,
            dynamic: false,
            sockets: RwLock::new(HashMap::new()),
        }
    }
}

/// The Engine.IO layer's settings resolved from the node's [`Settings`].
pub fn engine_config(s: &Settings) -> EngineConfig {
    let ms = Duration::from_millis;
    EngineConfig {
        ping_interval: ms(s.engine.ping_interval_ms),
        ping_timeout: ms(s.engine.ping_timeout_ms),
        max_payload: s.engine.max_payload,
        upgrade_timeout: ms(s.engine.upgrade_timeout_ms),
        allow_polling: s.engine.transports.iter().any(|t| t == "polling"),
        allow_websocket: s.engine.transports.iter().any(|t| t == "websocket"),
        cors_origins: s.cors.allowed_origins.clone(),
        cors_credentials: s.cors.allow_credentials,
        max_queued_frames: s.limits.max_queued_frames,
        max_queued_bytes: s.limits.max_queued_bytes,
        slow_consumer_grace: ms(s.limits.slow_consumer_grace_ms),
        max_connections_per_ip: s.limits.max_connections_per_ip,
        connection_rate_per_ip: s.limits.connection_rate_per_ip,
        connection_burst_per_ip: s.limits.connection_burst_per_ip,
    }
}

/// Builds each session's Socket.IO connection.
pub struct SocketIoFactory {
    shared: Arc<ServerShared>,
}

impl EngineAppFactory for SocketIoFactory {
    type App = Connection;
    fn create(&self, handshake: &Arc<Handshake>) -> Connection {
        Connection::new(self.shared.clone(), handshake.clone())
    }
}

/// Configures a node: settings, logger and namespaces.
///
/// ```no_run
/// use riptide::{Event, HandlerContext, Namespace, NamespaceHandler, Riptide, Settings, Socket};
///
/// struct Echo;
/// impl NamespaceHandler for Echo {
///     fn on_event(&mut self, _s: &Socket, event: Event, _ctx: &mut HandlerContext<Self>) {
///         if let Some(ack) = event.ack {
///             ack.send(event.payload);
///         }
///     }
/// }
///
/// #[actix_web::main]
/// async fn main() -> std::io::Result<()> {
///     let settings = Settings::default();
///     let log = riptide::service::logging::build_logger(&settings.log);
///     Riptide::new(settings, log)
///         .namespace("/", Namespace::new(|| Echo))
///         .build()
///         .run()
///         .await
/// }
/// ```
pub struct Riptide {
    settings: Settings,
    log: Logger,
    metrics: Metrics,
    namespaces: Vec<(String, Namespace)>,
    dynamic: Vec<(Regex, Namespace)>,
}

impl Riptide {
    pub fn new(settings: Settings, log: Logger) -> Riptide {
        Riptide {
            settings,
            log,
            metrics: Metrics::new(),
            namespaces: Vec::new(),
            dynamic: Vec::new(),
        }
    }

    /// Serve namespace `name` (for example `/` or `/chat`).
    pub fn namespace(mut self, name: &str, ns: Namespace) -> Riptide {
        self.namespaces.push((name.to_string(), ns));
        self
    }

    /// Serve every namespace whose name matches `pattern` (anchor it: `^/room-\d+$`).
    pub fn dynamic_namespace(mut self, pattern: Regex, ns: Namespace) -> Riptide {
        self.dynamic.push((pattern, ns));
        self
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn build(self) -> RiptideServer {
        let s = &self.settings;
        let engine_config = engine_config(s);
        let ms = Duration::from_millis;
        let metrics = self.metrics.clone();
        let log = self.log.clone();
        let room_metrics = metrics.clone();
        let room_log = log.new(o!("actor" => "room"));
        let user_metrics = metrics.clone();
        let user_log = log.new(o!("actor" => "user"));
        let cluster: Arc<OnceLock<Cluster>> = Arc::new(OnceLock::new());
        let interest = cluster.clone();
        let shared = Arc::new(ServerShared {
            config: SioConfig {
                connect_timeout: ms(s.socketio.connect_timeout_ms),
                ack_timeout: ms(s.socketio.ack_timeout_ms),
                max_namespaces: s.socketio.max_namespaces_per_connection,
                max_rooms_per_socket: s.socketio.max_rooms_per_socket,
                max_attachments: s.engine.max_attachments,
                event_rate: s.limits.event_rate,
                event_burst: s.limits.event_burst,
                event_abuse_close_after: s.limits.event_abuse_close_after,
            },
            namespaces: RwLock::new(
                self.namespaces
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
            dynamic: self.dynamic,
            rooms: Registry::new(move |key: &RoomKey| {
                let (key, m, l) = (key.clone(), room_metrics.clone(), room_log.clone());
                Supervisor::start(move |_| RoomActor::new(key, m, l))
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
            users: Registry::new(move |user: &Arc<str>| {
                let (user, m, l) = (user.clone(), user_metrics.clone(), user_log.clone());
                Supervisor::start(move |_| UserActor::new(user, m, l))
            }),
            cluster,
            handlers: Mutex::new(Vec::new()),
            metrics: metrics.clone(),
            log: log.clone(),
        });
        let engine = Engine::new(
            engine_config,
            SocketIoFactory {
                shared: shared.clone(),
            },
            metrics.clone(),
            log.new(o!("layer" => "engine.io")),
            s.server.max_connections,
        );
        RiptideServer {
            settings: self.settings,
            engine,
            handle: ServerHandle { shared },
            metrics,
            log,
        }
    }
}

/// A built node, ready to serve.
pub struct RiptideServer {
    settings: Settings,
    engine: Engine<SocketIoFactory>,
    handle: ServerHandle,
    metrics: Metrics,
    log: Logger,
}

impl RiptideServer {
    /// A handle for emitting and managing sockets from outside a handler.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The node's metrics, to register more figures or share with another
    /// engine mounted beside this one.
    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    /// Mount the Socket.IO endpoint, `/health` and `/metrics` on an actix-web
    /// app (to embed Riptide in an existing service).
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        self.engine.mount(&self.settings.server.path, cfg);
        let metrics = self.metrics.clone();
        let engine = self.engine.clone();
        let shared = self.handle.shared.clone();
        let kind = self.settings.adapter.kind;
        cfg.route(
            "/health",
            web::get().to(move || {
                let sessions = engine.session_count();
                let body = match shared.cluster() {
                    None => serde_json::json!({ "status": "ok", "sessions": sessions }),
                    Some(cluster) => {
                        let status = cluster.status();
                        let mut adapter = serde_json::json!({
                            "kind": kind.as_str(),
                            "status": status.as_str(),
                            "node": cluster.node().as_str(),
                            "peers": cluster.peers().len(),
                        });
                        if let crate::adapter::BusStatus::Degraded { reason, .. } =
                            cluster.bus_status()
                        {
                            adapter["reason"] = reason.into();
                        }
                        serde_json::json!({
                            "status": status.as_str(),
                            "sessions": sessions,
                            "adapter": adapter,
                        })
                    }
                };
                // 200 even when degraded: the node still serves its clients.
                async move { HttpResponse::Ok().json(body) }
            }),
        );
        cfg.route(
            "/metrics",
            web::get().to(move || {
                let body = metrics.encode();
                async move {
                    HttpResponse::Ok()
                        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
                        .body(body)
                }
            }),
        );
    }

    /// Join the cluster `[adapter]` names (nothing for `memory`) and start
    /// delivering what other nodes send. [`RiptideServer::serve`] calls it
    /// before accepting connections; an application that mounts the node
    /// with [`RiptideServer::configure`] must call it itself (before the
    /// first connection, inside the actix system) and
    /// [`RiptideServer::stop_cluster`] when it stops. Calling it again does
    /// nothing. A broker that is down does not fail it (the node starts
    /// degraded and keeps retrying); a malformed `adapter.url` does.
    pub async fn start_cluster(&self) -> io::Result<()> {
        let shared = &self.handle.shared;
        if self.settings.adapter.kind == AdapterKind::Memory || shared.cluster().is_some() {
            return Ok(());
        }
        let (cluster, events) = Cluster::start(
            &self.settings.adapter,
            &AdapterOptions::default(),
            ClusterOptions::default(),
            &self.metrics,
            &self.log,
        )
        .await
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        info!(self.log, "cluster started"; "node" => cluster.node(),
            "adapter" => &self.settings.adapter.kind);
        if shared.cluster.set(cluster).is_err() {
            // Started twice concurrently (a misuse): the first one stays; this
            // one is dropped (its peers forget it after their heartbeat
            // timeout).
            return Ok(());
        }
        actix_rt::spawn(cluster_events(shared.clone(), events));
        Ok(())
    }

    /// Leave the cluster cleanly: peers drop this node at once instead of
    /// after their heartbeat timeout. [`RiptideServer::serve`] does it on
    /// shutdown, after closing the sessions.
    pub async fn stop_cluster(&self, timeout: Duration) {
        if let Some(cluster) = self.handle.shared.cluster() {
            cluster.shutdown(timeout).await;
        }
    }

    /// Serve on the configured address until SIGINT or SIGTERM.
    pub async fn run(self) -> io::Result<()> {
        self.run_with(|_| {}).await
    }

    /// Serve, with extra routes mounted by `extra` on every worker's app.
    pub async fn run_with<F>(self, extra: F) -> io::Result<()>
    where
        F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
    {
        let listener = bind_listener(&self.settings.server.host, self.settings.server.port)?;
        self.serve(listener, extra, wait_for_signal()).await
    }

    /// Serve on `listener` until `shutdown` resolves (then close every
    /// session with "server shutting down" and stop). Tests use this with a
    /// listener on port 0.
    pub async fn serve<F, S>(
        self,
        listener: std::net::TcpListener,
        extra: F,
        shutdown: S,
    ) -> io::Result<()>
    where
        F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
        S: std::future::Future<Output = &'static str> + 'static,
    {
        let s = &self.settings.server;
        let workers = if s.workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            s.workers
        };
        let shutdown_timeout = Duration::from_millis(s.shutdown_timeout_ms);
        let local = listener.local_addr()?;
        self.start_cluster().await?;
        let this = Arc::new(self);
        let app_this = this.clone();
        let server = HttpServer::new(move || {
            let this = app_this.clone();
            let extra = extra.clone();
            App::new().configure(move |cfg| {
                this.configure(cfg);
                extra(cfg);
            })
        })
        .workers(workers)
        .disable_signals()
        // A client's EOF ends its connection at once, so a long-poll whose
        // client went away is noticed now, not at the ping timeout.
        .h1_allow_half_closed(false)
        .on_connect(crate::engineio::websocket::on_connect)
        .shutdown_timeout(shutdown_timeout.as_secs().max(1))
        .listen(listener)?
        .run();
        info!(this.log, "riptide listening";
            "addr" => local.to_string(),
            "path" => &this.settings.server.path,
            "workers" => workers,
            "adapter" => &this.settings.adapter.kind);
        let handle = server.handle();
        let log = this.log.clone();
        let engine = this.engine.clone();
        let shared = this.handle.shared.clone();
        actix_rt::spawn(async move {
            let signal = shutdown.await;
            info!(log, "stopping: closing sessions"; "signal" => signal,
                "sessions" => engine.session_count());
            // Refuse new sessions first: clients told to go would otherwise
            // reconnect here and keep the node from emptying.
            engine.drain();
            engine.close_all(CloseReason::ServerShutdown);
            // Let the close packets reach the clients before the sockets go.
            let deadline =
                tokio::time::Instant::now() + shutdown_timeout.min(Duration::from_secs(2));
            while (engine.session_count() > 0 || shared.socket_count() > 0)
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Every socket is detached and its `on_disconnect` sent: let each
            // handler run them before the workers stop.
            let handlers = shared.handlers.lock().clone();
            for h in handlers {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let _ = tokio::time::timeout(left, h.send(Dispatch::Barrier)).await;
            }
            // Say goodbye: peers drop this node at once instead of after
            // their heartbeat timeout.
            if let Some(cluster) = shared.cluster() {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                cluster.shutdown(left.max(Duration::from_millis(200))).await;
            }
            // Graceful stop waits for open connections; a second signal, or
            // the shutdown timeout, stops at once.
            let graceful = handle.stop(true);
            tokio::select! {
                _ = graceful => {}
                _ = tokio::time::sleep(shutdown_timeout + Duration::from_secs(1)) => {
                    slog::warn!(log, "graceful stop timed out; stopping now");
                    handle.stop(false).await;
                }
                _ = wait_for_signal() => {
                    slog::warn!(log, "second signal; stopping now");
                    handle.stop(false).await;
                }
            }
        });
        server.await?;
        info!(this.log, "riptide stopped");
        Ok(())
    }
}

/// The inbound side of the cluster: what other nodes send this node.
async fn cluster_events(
    shared: Arc<ServerShared>,
    mut events: tokio::sync::mpsc::Receiver<ClusterEvent>,
) {
    while let Some(event) = events.recv().await {
        match event {
            ClusterEvent::Broadcast { via, broadcast, .. } => {
                shared.deliver_remote(&via, broadcast)
            }
            ClusterEvent::Request {
                origin,
                request_id,
                reply_to,
                op,
            } => {
                let Some(cluster) = shared.cluster() else {
                    continue;
                };
                let reply = Reply {
                    cluster: cluster.clone(),
                    log: shared.log.clone(),
                    origin,
                    request_id,
                    reply_to,
                };
                shared.serve(op, reply);
            }
            ClusterEvent::PeerUp(node) => info!(shared.log, "cluster peer up"; "peer" => node),
            ClusterEvent::PeerDown { node, reason } => {
                info!(shared.log, "cluster peer down"; "peer" => node, "reason" => ?reason)
            }
        }
    }
}

/// Where the answer to one cluster request goes.
pub(crate) struct Reply {
    cluster: Cluster,
    log: Logger,
    /// The node that asked.
    pub origin: NodeId,
    request_id: u64,
    reply_to: NodeId,
}

impl Reply {
    pub fn log(&self) -> &Logger {
        &self.log
    }

    /// Send the answer (nothing for a notification); a failure is logged:
    /// the requester then counts this node as missing.
    pub fn send(self, payload: ResponsePayload) {
        if let Err(e) = self
            .cluster
            .respond(self.request_id, self.reply_to, payload)
        {
            slog::warn!(self.log, "cluster reply not sent";
                "origin" => self.origin, "error" => %e);
        }
    }
}

/// Bind the listening socket with a backlog sized for reconnect storms: the
/// standard library's 128 overflows when thousands of clients come back at
/// once after a deploy, and each dropped SYN costs a client a 1 s retry.
fn bind_listener(host: &str, port: u16) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))?
        .next()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "server.host resolves to nothing",
            )
        })?;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Pending connections the kernel queues before accept (capped by
/// net.core.somaxconn).
const LISTEN_BACKLOG: i32 = 4096;

async fn wait_for_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "ctrl-c"
    }
}

fn server_side_op(
    ns: &str,
    event: &str,
    payload: Payload,
    want_ack: bool,
) -> Result<RequestOp, EmitError> {
    crate::broadcast::check_event_name(event)?;
    let (args_json, binary) = payload_to_wire(&payload);
    Ok(RequestOp::ServerSideEmit {
        ns: ns.to_owned(),
        event: event.to_owned(),
        args_json,
        binary,
        want_ack,
    })
}

/// Emit to and manage the node's sockets from anywhere (a handler, a timer,
/// an HTTP route).
#[derive(Clone)]
pub struct ServerHandle {
    pub(crate) shared: Arc<ServerShared>,
}

impl ServerHandle {
    /// Broadcast in namespace `ns`: narrow with `.to(room)`, `.except(room)`.
    pub fn of(&self, ns: &str) -> BroadcastOperator {
        BroadcastOperator::new(self.shared.clone(), ns.into())
    }

    /// Emit to every socket of `user` in namespace `ns`, on every device.
    pub fn to_user(&self, ns: &str, user: &str) -> UserOperator {
        UserOperator {
            server: self.shared.clone(),
            ns: ns.into(),
            user: user.into(),
        }
    }

    /// Disconnect every socket of `user` on every node (for example, its
    /// token was revoked). Resolves once every node answered, or after
    /// `socketio.ack_timeout_ms` with the nodes that did not in `missing`
    /// (the revocation may not have reached them: retry, or close their
    /// sockets another way).
    pub async fn disconnect_user(&self, user: &str) -> Affected {
        let local = match self.shared.users.get(&Arc::from(user)) {
            Some(actor) => actor.send(DisconnectUser).await.unwrap_or(0),
            None => 0,
        };
        let op = RequestOp::DisconnectUser { user: user.into() };
        affected_across(&self.shared, local, op).await
    }

    /// Send `event` to the handlers of namespace `ns` on the *other* nodes
    /// (Socket.IO's `serverSideEmit`): each node's
    /// [`crate::NamespaceHandler::on_server_event`] runs once. Without a
    /// cluster there is nobody to tell: `Ok`.
    pub fn server_side_emit(
        &self,
        ns: &str,
        event: &str,
        payload: impl Into<Payload>,
    ) -> Result<(), EmitError> {
        let op = server_side_op(ns, event, payload.into(), false)?;
        match self.shared.cluster() {
            Some(cluster) => cluster.notify(op).map_err(EmitError::Cluster),
            None => Ok(()),
        }
    }

    /// [`ServerHandle::server_side_emit`], and wait for every other node's
    /// acknowledgement ([`ServerAck::send`]), at most `timeout` (`None`:
    /// `socketio.ack_timeout_ms`). Nodes that did not acknowledge in time
    /// (dead, or their handler did not ack) are in `missing`.
    pub async fn server_side_emit_with_ack(
        &self,
        ns: &str,
        event: &str,
        payload: impl Into<Payload>,
        timeout: Option<Duration>,
    ) -> Result<ServerAcks, EmitError> {
        let op = server_side_op(ns, event, payload.into(), true)?;
        let timeout = timeout.unwrap_or(self.shared.config.ack_timeout);
        let Some(cluster) = self.shared.cluster() else {
            return Ok(ServerAcks::default());
        };
        let outcome = cluster.request(op, timeout).await?;
        let responses = outcome
            .responses
            .into_iter()
            .map(|(node, r)| {
                let payload = match r {
                    ResponsePayload::Acks { args, .. } => args
                        .first()
                        .map(|a| payload_from_json(a))
                        .unwrap_or_default(),
                    _ => Payload::default(),
                };
                (node, payload)
            })
            .collect();
        Ok(ServerAcks {
            responses,
            missing: outcome.missing,
        })
    }

    /// The local sockets of namespace `ns`.
    pub fn sockets(&self, ns: &str) -> Vec<Socket> {
        self.shared.local_sockets(ns)
    }

    /// How many namespaces are alive on this node: the registered ones, plus
    /// each dynamic namespace that has sockets.
    pub fn namespace_count(&self) -> usize {
        self.shared.namespace_count()
    }

    /// How many room actors are alive on this node (namespaces included).
    pub fn room_actor_count(&self) -> usize {
        self.shared.rooms.len()
    }

    #[doc(hidden)]
    /// Fault injection for the supervision tests.
    pub fn inject_room_panic(&self, ns: &str, room: &str) -> bool {
        let key = RoomKey {
            ns: ns.into(),
            room: Some(room.into()),
        };
        match self.shared.rooms.get(&key) {
            Some(actor) => {
                actor.do_send(InjectPanic);
                true
            }
            None => false,
        }
    }
}
