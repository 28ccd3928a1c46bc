//! The Socket.IO admin UI (`@socket.io/admin-ui` 0.5.x, `[admin]`): its
//! namespace speaks what the Node package's `instrument()` speaks by
//! default (development mode, not read-only), so the official UI, hosted or
//! built from the npm package, connects to a node, logs in and shows and
//! manages every node's sockets.
//!
//! - this file: [`AdminUi`], the namespace (login, the commands);
//! - `observer`: the node's [`Observer`](crate::node::observer::Observer),
//!   which turns every socket's life and events into the UI's events;
//! - `stats`: `server_stats`, every 2 s;
//! - `wire`: the shapes the UI reads (a socket, dates, an event's arguments).
//!
//! As in the Node package, each node emits to the admin namespace as any
//! broadcast, which the cluster carries to the UI's node, and the commands
//! are the cluster-wide operations (`disconnectSockets`, `socketsJoin`,
//! `socketsLeave`, `emit`). The one admin-specific request between nodes:
//! when a UI logs in, its node asks the others for their namespaces (a
//! server-side emit to the admin namespace), so `all_sockets` covers the
//! dynamic namespaces that exist only elsewhere.

mod observer;
mod stats;
mod wire;

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use parking_lot::Mutex;
use serde_json::{json, Value};
use slog::{debug, warn, Logger};

use crate::api::{spawn, HandlerContext, Namespace, NamespaceHandler, ServerHandle};
use crate::node::delivery::Mode;
use crate::node::metrics::Metrics;
use crate::node::namespace::{ConnectError, ConnectRequest, Preface};
use crate::node::remote::ServerEvent;
use crate::node::socket::{Event, Socket};
use crate::service::http::{Riptide, RiptideServer};
use crate::service::settings::{AdminMode, AdminSettings, Settings};
use crate::socketio::encode::encode_event;
use crate::socketio::payload::Payload;

use self::wire::Endpoint;

/// The one refusal, whatever was wrong (as the reference: nothing tells a
/// wrong name from a wrong password).
const INVALID_CREDENTIALS: &str = "invalid credentials";

/// The server-side event (between the admin namespaces of the nodes, never
/// sent to a client) that asks a node for its namespaces; it acks with
/// their names.
const NAMESPACES_EVENT: &str = "riptide:admin:namespaces";

/// The admin UI of one node: [`AdminUi::mount`] its namespace on the
/// builder, then [`AdminUi::start`] it on the built node (inside the actix
/// system, before it serves).
///
/// ```no_run
/// use riptide::{AdminUi, Riptide, Settings};
///
/// #[actix_web::main]
/// async fn main() -> std::io::Result<()> {
///     let settings = Settings::default(); // with admin.enabled, username, password_hash
///     let log = riptide::logging::build_logger(&settings.log);
///     let admin = AdminUi::from_settings(&settings, &log);
///     let mut node = Riptide::new(settings, log);
///     if let Some(admin) = &admin {
///         node = admin.mount(node);
///     }
///     let server = node.build();
///     if let Some(admin) = &admin {
///         admin.start(&server);
///     }
///     server.run().await
/// }
/// ```
#[derive(Clone)]
pub struct AdminUi {
    state: Arc<AdminState>,
}

pub(crate) struct AdminState {
    settings: AdminSettings,
    ns: Arc<str>,
    endpoint: Endpoint,
    /// Login sessions handed out (the UI's `sessionId`), oldest first.
    sessions: Mutex<VecDeque<String>>,
    /// Password checks in the current second: (its start, how many).
    logins: Mutex<(Instant, u32)>,
    handle: OnceLock<ServerHandle>,
    metrics: OnceLock<Metrics>,
    started: Instant,
    log: Logger,
}

impl AdminUi {
    /// The admin UI `settings.admin` describes; `None` when it is off.
    pub fn from_settings(settings: &Settings, log: &Logger) -> Option<AdminUi> {
        let admin = &settings.admin;
        if !admin.enabled {
            return None;
        }
        Some(AdminUi {
            state: Arc::new(AdminState {
                settings: admin.clone(),
                ns: admin.namespace.as_str().into(),
                endpoint: Endpoint {
                    path: settings.server.path.trim_end_matches('/').to_owned(),
                    secure: settings.server.tls.enabled(),
                },
                sessions: Mutex::new(VecDeque::new()),
                logins: Mutex::new((Instant::now(), 0)),
                handle: OnceLock::new(),
                metrics: OnceLock::new(),
                started: Instant::now(),
                log: log.new(slog::o!("admin" => admin.namespace.clone())),
            }),
        })
    }

    /// Serve the admin namespace on `node`.
    pub fn mount(&self, node: Riptide) -> Riptide {
        let _ = self.state.metrics.set(node.metrics().clone());
        let (factory, admit) = (self.state.clone(), self.state.clone());
        let ns = Namespace::new(move || AdminHandler {
            state: factory.clone(),
        })
        .on_connect(move |req| admit.admit(req));
        node.namespace(&self.state.settings.namespace, ns)
    }

    /// Watch `server`'s sockets and send `server_stats` every 2 s. Call it
    /// once, inside the actix system (it spawns the stats task).
    pub fn start(&self, server: &RiptideServer) {
        let handle = server.handle();
        let _ = self.state.metrics.set(server.metrics());
        if self.state.handle.set(handle.clone()).is_err() {
            return;
        }
        if self.state.development() {
            let observer = Arc::new(observer::AdminObserver::new(self.state.clone()));
            if handle.shared.observer.set(observer).is_err() {
                warn!(
                    self.state.log,
                    "the node already has an observer: admin events are off"
                );
            }
        }
        actix_rt::spawn(stats::run(self.state.clone()));
    }
}

impl AdminState {
    fn handle(&self) -> Option<&ServerHandle> {
        self.handle.get()
    }

    fn development(&self) -> bool {
        self.settings.mode == AdminMode::Development
    }

    fn bad_input(&self, kind: &'static str) {
        if let Some(m) = self.metrics.get() {
            m.bad_input(kind);
        }
    }

    /// The connect middleware: a session id handed out earlier, or the
    /// username and password. A password that checks out gets a new session
    /// id, sent (`session`) before the CONNECT reply, as the reference does.
    fn admit(&self, req: &mut ConnectRequest<'_>) -> Result<(), ConnectError> {
        let refused = || ConnectError::new(INVALID_CREDENTIALS);
        let Value::Object(auth) = req.auth else {
            self.bad_input("admin_auth");
            return Err(refused());
        };
        match auth.get("sessionId") {
            Some(Value::String(id))
                if self
                    .sessions
                    .lock()
                    .iter()
                    .any(|s| same_bytes(s.as_bytes(), id.as_bytes())) =>
            {
                return Ok(());
            }
            None | Some(Value::Null | Value::String(_)) => {}
            Some(_) => self.bad_input("admin_auth"),
        }
        let user = match auth.get("username") {
            Some(Value::String(u)) => u,
            None | Some(Value::Null) => return Err(refused()),
            Some(_) => {
                self.bad_input("admin_auth");
                return Err(refused());
            }
        };
        if !same_bytes(user.as_bytes(), self.settings.username.as_bytes()) {
            return Err(refused());
        }
        let Some(Value::String(password)) = auth.get("password") else {
            // The reference's check throws here and never answers; a refusal
            // is what it means.
            self.bad_input("admin_auth");
            return Err(refused());
        };
        if !self.login_allowed() {
            warn!(self.log, "admin login refused: over admin.max_logins_per_s");
            return Err(refused());
        }
        match bcrypt::verify(password, &self.settings.password_hash) {
            Ok(true) => {}
            Ok(false) => {
                debug!(self.log, "admin login refused: wrong password");
                return Err(refused());
            }
            Err(e) => {
                warn!(self.log, "admin password check failed"; "error" => %e);
                return Err(refused());
            }
        }
        let session = new_session_id();
        {
            let mut sessions = self.sessions.lock();
            sessions.push_back(session.clone());
            while sessions.len() > self.settings.max_sessions {
                sessions.pop_front();
            }
        }
        req.preface(async move {
            Preface {
                events: vec![("session".into(), Payload::new(vec![Value::String(session)]))],
                written: None,
            }
        });
        Ok(())
    }

    /// One more password check this second, if under the bound.
    fn login_allowed(&self) -> bool {
        let mut logins = self.logins.lock();
        let now = Instant::now();
        if now.duration_since(logins.0).as_secs() >= 1 {
            *logins = (now, 0);
        }
        if logins.1 >= self.settings.max_logins_per_s {
            return false;
        }
        logins.1 += 1;
        true
    }

    /// What the UI may ask for, as the reference lists it (`MJOIN`,
    /// `MLEAVE`, `MDISCONNECT`: the cluster-wide operations).
    fn features(&self) -> Vec<&'static str> {
        let mut features = Vec::new();
        if !self.settings.readonly {
            features.extend([
                "EMIT",
                "JOIN",
                "LEAVE",
                "DISCONNECT",
                "MJOIN",
                "MLEAVE",
                "MDISCONNECT",
            ]);
        }
        features.push("AGGREGATED_EVENTS");
        if self.development() {
            features.push("ALL_EVENTS");
        }
        features
    }

    /// This node's namespaces: the registered ones and each dynamic one
    /// while it has sockets.
    fn local_namespaces(&self) -> Vec<String> {
        let Some(handle) = self.handle() else {
            return Vec::new();
        };
        handle
            .shared
            .namespace_sockets()
            .into_iter()
            .map(|(name, _)| name.to_string())
            .collect()
    }

    /// Every namespace of every node: this node's, and those the other
    /// nodes' admin namespaces answer with ([`NAMESPACES_EVENT`]), so a
    /// dynamic namespace that exists only on another node is listed too
    /// (the reference lists its own server's only). A node that does not
    /// answer within the ack timeout (admin off there, or gone) adds none:
    /// its sockets still show as their node reports them.
    async fn cluster_namespaces(&self) -> Vec<String> {
        let mut names = self.local_namespaces();
        let Some(handle) = self.handle() else {
            return names;
        };
        if handle.shared.cluster().is_none() {
            return names;
        }
        match handle
            .server_side_emit_with_ack(&self.ns, NAMESPACES_EVENT, (), None)
            .await
        {
            Ok(acks) => {
                for (_, payload) in acks.responses {
                    let theirs = payload.args.into_iter().next();
                    let Some(Value::Array(theirs)) = theirs else {
                        continue;
                    };
                    for name in theirs {
                        if let Value::String(name) = name {
                            if name.starts_with('/') && !names.contains(&name) {
                                names.push(name);
                            }
                        }
                    }
                }
            }
            Err(e) => debug!(self.log, "namespaces of the other nodes not asked"; "error" => %e),
        }
        names
    }

    /// Every socket of every namespace of every node.
    async fn all_sockets(&self) -> Vec<Value> {
        let Some(handle) = self.handle() else {
            return Vec::new();
        };
        let names = self.cluster_namespaces().await;
        let fetches = names.iter().map(|ns| handle.of(ns).fetch_sockets());
        let mut out = Vec::new();
        for found in futures_util::future::join_all(fetches).await {
            out.extend(
                found
                    .local
                    .iter()
                    .map(|s| wire::local_socket(s, &self.endpoint)),
            );
            out.extend(
                found
                    .remote
                    .iter()
                    .map(|s| wire::remote_socket(s, &self.endpoint)),
            );
        }
        out
    }

    /// Emit `event` to every admin UI, on every node. Never stored for
    /// connection state recovery (the UI does not recover; with recovery
    /// on, the admin feed would fill the store): encoded here and sent as
    /// is.
    fn broadcast(&self, event: &str, args: Vec<Value>) {
        self.broadcast_payload(event, Payload::new(args))
    }

    /// [`AdminState::broadcast`] with binary attachments.
    fn broadcast_payload(&self, event: &str, payload: Payload) {
        let Some(handle) = self.handle() else {
            return;
        };
        let to = handle.of(&self.ns);
        let frames = match encode_event(to.server.config.parser, &self.ns, event, &payload, None) {
            Ok(frames) => frames,
            Err(e) => return debug!(self.log, "admin event not encoded"; "error" => %e),
        };
        if let Err(e) = to.send_encoded(frames, Mode::Normal) {
            debug!(self.log, "admin event not sent to every node"; "event" => event, "error" => %e);
        }
    }
}

/// Equal bytes, in time that does not depend on where they differ.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 16 lowercase hex characters (8 random bytes), as the reference's.
fn new_session_id() -> String {
    let bytes: [u8; 8] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The admin namespace's handler: `config` and `all_sockets` to a UI that
/// connects, and its commands.
struct AdminHandler {
    state: Arc<AdminState>,
}

impl NamespaceHandler for AdminHandler {
    fn on_connect(&mut self, socket: &Socket, ctx: &mut HandlerContext<Self>) {
        let config = json!({ "supportedFeatures": self.state.features() });
        let _ = socket.emit("config", config);
        if !self.state.development() {
            return;
        }
        let (state, socket) = (self.state.clone(), socket.clone());
        spawn(ctx, async move {
            let sockets = state.all_sockets().await;
            let _ = socket.emit("all_sockets", Payload::new(vec![Value::Array(sockets)]));
        });
    }

    fn on_server_event(&mut self, event: ServerEvent, _ctx: &mut HandlerContext<Self>) {
        match (event.name.as_str(), event.ack) {
            (NAMESPACES_EVENT, Some(ack)) => ack.send(self.state.local_namespaces()),
            (name, _) => {
                debug!(self.state.log, "server-side event ignored"; "event" => name,
                    "origin" => event.origin)
            }
        }
    }

    fn on_event(&mut self, socket: &Socket, event: Event, ctx: &mut HandlerContext<Self>) {
        let state = &self.state;
        let known = matches!(
            event.name.as_str(),
            "emit" | "join" | "leave" | "_disconnect"
        );
        if !known || state.settings.readonly {
            state.bad_input("admin_command");
            debug!(state.log, "admin command ignored"; "event" => &event.name,
                "readonly" => state.settings.readonly, "sid" => socket.id());
            return;
        }
        let Some(command) = Command::parse(&event.name, event.payload.args) else {
            state.bad_input("admin_command");
            debug!(state.log, "admin command with bad arguments"; "event" => &event.name,
                "sid" => socket.id());
            return;
        };
        let Some(handle) = state.handle().cloned() else {
            return;
        };
        debug!(state.log, "admin command"; "command" => ?command, "sid" => socket.id());
        let target = |ns: &str, filter: &Option<String>| {
            let op = handle.of(ns);
            match filter {
                Some(f) => op.to(f.as_str()),
                None => op,
            }
        };
        match command {
            Command::Emit {
                ns,
                filter,
                event,
                args,
            } => {
                if let Err(e) = target(&ns, &filter).emit(&event, Payload::new(args)) {
                    state.bad_input("admin_command");
                    debug!(state.log, "admin emit refused"; "error" => %e);
                }
            }
            Command::Join { ns, room, filter } => {
                let op = target(&ns, &filter);
                spawn(ctx, async move {
                    op.sockets_join(room).await;
                });
            }
            Command::Leave { ns, room, filter } => {
                let op = target(&ns, &filter);
                spawn(ctx, async move {
                    op.sockets_leave(room).await;
                });
            }
            Command::Disconnect { ns, close, filter } => {
                let op = target(&ns, &filter);
                spawn(ctx, async move {
                    op.disconnect_sockets(close).await;
                });
            }
        }
    }
}

/// A command from the UI (no acks: the effect shows as the events it
/// causes). `filter` is a room, a socket's id for one socket; none: every
/// socket of the namespace.
#[derive(Debug)]
enum Command {
    Emit {
        ns: String,
        filter: Option<String>,
        event: String,
        args: Vec<Value>,
    },
    Join {
        ns: String,
        room: String,
        filter: Option<String>,
    },
    Leave {
        ns: String,
        room: String,
        filter: Option<String>,
    },
    Disconnect {
        ns: String,
        close: bool,
        filter: Option<String>,
    },
}

impl Command {
    /// `None` when an argument has the wrong type.
    fn parse(name: &str, args: Vec<Value>) -> Option<Command> {
        let mut args = args.into_iter();
        let ns = match args.next()? {
            Value::String(ns) if ns.starts_with('/') => ns,
            _ => return None,
        };
        // A missing or null filter is none; an empty one too (no room is "").
        let filter = |v: Option<Value>| match v {
            None | Some(Value::Null) => Some(None),
            Some(Value::String(s)) if s.is_empty() => Some(None),
            Some(Value::String(s)) => Some(Some(s)),
            Some(_) => None,
        };
        let string = |v: Option<Value>| match v {
            Some(Value::String(s)) if !s.is_empty() => Some(s),
            _ => None,
        };
        Some(match name {
            "emit" => {
                let filter = filter(args.next())?;
                let event = string(args.next())?;
                Command::Emit {
                    ns,
                    filter,
                    event,
                    args: args.collect(),
                }
            }
            "join" | "leave" => {
                let room = string(args.next())?;
                let filter = filter(args.next())?;
                if name == "join" {
                    Command::Join { ns, room, filter }
                } else {
                    Command::Leave { ns, room, filter }
                }
            }
            "_disconnect" => {
                let close = match args.next() {
                    Some(Value::Bool(b)) => b,
                    None | Some(Value::Null) => false,
                    Some(_) => return None,
                };
                let filter = filter(args.next())?;
                Command::Disconnect { ns, close, filter }
            }
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_as_the_ui_sends_them_and_refuse_wrong_types() {
        let parse = |name: &str, v: Value| {
            let Value::Array(args) = v else { panic!() };
            Command::parse(name, args)
        };
        assert!(matches!(
            parse("_disconnect", json!(["/", false, "abc"])),
            Some(Command::Disconnect {
                close: false,
                filter: Some(_),
                ..
            })
        ));
        assert!(matches!(
            parse("leave", json!(["/", "lobby"])),
            Some(Command::Leave { filter: None, .. })
        ));
        assert!(matches!(
            parse("emit", json!(["/", null, "hello", 1, 2])),
            Some(Command::Emit { filter: None, ref args, .. }) if args.len() == 2
        ));
        assert!(parse("_disconnect", json!(["/", "yes", "abc"])).is_none());
        assert!(parse("join", json!(["/", 42, "abc"])).is_none());
        assert!(parse("join", json!([{}, "r"])).is_none());
        assert!(parse("join", json!(["/", "r", ["x"]])).is_none());
        assert!(parse("emit", json!([])).is_none());
        assert!(parse("emit", json!(["nope", null, "x"])).is_none());
    }
}
