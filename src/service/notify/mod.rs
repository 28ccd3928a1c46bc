//! Service mode (`app.mode = "service"`): the binary as a notification and
//! pub/sub service, with no custom code. The wire contract is
//! `shared/SERVICE.md`; this module implements it over the same public
//! API an application uses, plus the node's internals where the contract
//! asks for more than that API gives.
//!
//! - `auth`: JWT verification ([`Verifier`]) and the refusal reasons;
//! - `channels`: channel names and permission patterns;
//! - `handler`: the `/` namespace's handler actor (client events, token
//!   expiry, the cluster-wide requests other nodes send it);
//! - `expiry`: the token expiries of a handler's sockets, one heap and one
//!   timer per handler actor (per worker thread);
//! - `api`: the server API, over HTTP and on the NATS bus;
//! - `metrics`: its figures.
//!
//! [`Service`] is what they share: the verifier, the revocations this node
//! knows (followed from the broker's store, so a node that was down when a
//! user was revoked knows it before it admits anyone), the store of kept
//! messages, and the node's [`ServerHandle`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::RwLock;
use serde_json::{json, Value};
use slog::{debug, info, warn, Logger};

use crate::adapter::notify::{self, NotifyLimits, NotifyStore, RevocationEvent};
use crate::adapter::NodeId;
use crate::api::{Namespace, ServerHandle};
use crate::node::namespace::{ConnectError, ConnectRequest, Preface};
use crate::node::socket::Socket;
use crate::service::settings::{ConfigError, Settings};
use crate::socketio::payload::Payload;

pub mod api;
pub mod auth;
pub mod channels;
mod expiry;
pub mod handler;
pub mod metrics;

pub use self::auth::{Identity, Refusal, Verifier};
pub use self::metrics::ServiceMetrics;

/// How long a cluster-wide request of the service waits for the other nodes
/// at most, beyond `socketio.ack_timeout_ms` (the nodes' own answers).
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// A socket's authentication, in its extensions.
#[derive(Debug, Clone)]
pub struct AuthState {
    pub identity: Identity,
    /// The number of the token expiry armed for the socket (`expiry`); 0:
    /// none (not yet, or the socket left).
    pub(crate) arming: u64,
}

impl AuthState {
    pub fn new(identity: Identity) -> AuthState {
        AuthState {
            identity,
            arming: 0,
        }
    }
}

/// What every part of service mode shares. See the module doc.
pub struct Service {
    pub(crate) settings: Settings,
    pub(crate) verifier: Verifier,
    /// user -> the revocation's second (the latest one).
    revoked: RwLock<HashMap<String, u64>>,
    /// The revocations were read up to date once: before that, no CONNECT
    /// is admitted (a revoked token could pass).
    loaded: AtomicBool,
    store: OnceLock<Arc<dyn NotifyStore>>,
    handle: OnceLock<ServerHandle>,
    /// This node's id when it has no cluster (`/api/info`).
    alone: NodeId,
    pub(crate) metrics: ServiceMetrics,
    pub(crate) log: Logger,
}

/// The room of a user's sockets.
pub fn user_room(user: &str) -> String {
    format!("user:{user}")
}

/// The room of a role's sockets.
pub fn role_room(role: &str) -> String {
    format!("role:{role}")
}

/// A kept message as stored: its event and data.
fn encode_kept(event: &str, data: &Value) -> Bytes {
    Bytes::from(json!({ "event": event, "data": data }).to_string())
}

fn decode_kept(b: &[u8]) -> Option<(String, Value)> {
    let v: Value = serde_json::from_slice(b).ok()?;
    Some((v.get("event")?.as_str()?.to_owned(), v.get("data")?.clone()))
}

impl Service {
    /// Service mode as `settings` describe it; registers its figures in
    /// `registry`. Fails on keys that cannot be loaded.
    pub fn new(
        settings: &Settings,
        metrics: ServiceMetrics,
        log: &Logger,
    ) -> Result<Arc<Service>, ConfigError> {
        Ok(Arc::new(Service {
            settings: settings.clone(),
            verifier: Verifier::new(&settings.auth)?,
            revoked: RwLock::new(HashMap::new()),
            loaded: AtomicBool::new(false),
            store: OnceLock::new(),
            handle: OnceLock::new(),
            alone: NodeId::random(),
            metrics,
            log: log.new(slog::o!("layer" => "service")),
        }))
    }

    /// The `/` namespace service mode serves.
    pub fn namespace(self: &Arc<Service>) -> Namespace<handler::ServiceHandler> {
        let this = self.clone();
        let factory = self.clone();
        Namespace::new(move || handler::ServiceHandler::new(factory.clone()))
            .on_connect(move |req| this.admit(req))
    }

    /// Connect the store (in the background; a broker that is down is
    /// retried) and follow the revocations, waiting up to `wait` for them to
    /// be read up to date. Call once, inside the actix system, before the
    /// node serves.
    pub async fn start(
        self: &Arc<Service>,
        handle: ServerHandle,
        wait: Duration,
    ) -> std::io::Result<()> {
        let _ = self.handle.set(handle);
        let s = &self.settings;
        let limits = NotifyLimits {
            max_per_user: s.history.max_per_user,
            ttl: s.history.ttl(),
            max_users: s.history.max_users,
            revocation_ttl: s.auth.revocation_ttl(),
            timeout: STORE_TIMEOUT,
        };
        let store = notify::connect(&s.adapter, limits, &self.log)
            .await
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        let _ = self.store.set(store.clone());
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        actix_rt::spawn(follow_revocations(self.clone(), store.clone(), ready_tx));
        if tokio::time::timeout(wait, ready_rx).await.is_err() {
            warn!(self.log, "revocations not read yet (broker unreachable?): connects are refused until they are";
                "waited_ms" => wait.as_millis() as u64);
        }
        if s.api.is_on() {
            if let Some(requests) = store.api_requests() {
                actix_rt::spawn(api::serve_bus(self.clone(), requests));
            }
        }
        info!(self.log, "service mode started"; "adapter" => s.adapter.kind,
            "auth_required" => s.auth.required, "api" => s.api.is_on());
        Ok(())
    }

    pub(crate) fn handle(&self) -> Option<&ServerHandle> {
        self.handle.get()
    }

    pub(crate) fn store(&self) -> Option<&Arc<dyn NotifyStore>> {
        self.store.get()
    }

    /// This node's id (the cluster's, or its own when alone).
    pub fn node_id(&self) -> String {
        self.handle()
            .and_then(|h| h.shared.cluster().map(|c| c.node().to_string()))
            .unwrap_or_else(|| self.alone.to_string())
    }

    /// Record a revocation this node learned (idempotent; the latest wins).
    pub(crate) fn apply_revocation(&self, user: &str, at_s: u64) {
        let mut revoked = self.revoked.write();
        let entry = revoked.entry(user.to_owned()).or_insert(0);
        *entry = (*entry).max(at_s);
    }

    /// Whether `identity`'s token is revoked: issued before the user's
    /// revocation (a token without `iat` counts as issued before).
    pub(crate) fn is_revoked(&self, identity: &Identity) -> bool {
        match self.revoked.read().get(&identity.sub) {
            None => false,
            Some(at) => !matches!(identity.iat, Some(iat) if iat >= *at),
        }
    }

    /// Verify a token as of now, revocation included.
    pub(crate) fn verify(&self, token: Option<&str>) -> Result<Identity, Refusal> {
        let identity = self
            .verifier
            .verify(token.unwrap_or_default(), auth::now_ms())?;
        if self.is_revoked(&identity) {
            return Err(Refusal::Revoked);
        }
        Ok(identity)
    }

    fn refuse(&self, reason: &'static str, label: &'static str) -> ConnectError {
        self.metrics.refused(label);
        ConnectError::new("unauthorized").with_data(json!({ "reason": reason }))
    }

    /// The connect middleware: the token, the user's and roles' rooms, and
    /// the user's kept messages as the socket's preface.
    fn admit(&self, req: &mut ConnectRequest<'_>) -> Result<(), ConnectError> {
        if !self.loaded.load(Ordering::Acquire) {
            self.metrics.refused("unavailable");
            return Err(ConnectError::new("unavailable")
                .with_data(json!({ "reason": "revocations not loaded yet, retry" })));
        }
        let token = auth::token_of(req.auth, &req.handshake.headers);
        if token.is_none() && !self.settings.auth.required {
            // Anonymous: public channels only, no user.
            return Ok(());
        }
        let identity = match self.verify(token) {
            Ok(id) => id,
            Err(r) => {
                debug!(self.log, "connect refused"; "reason" => r.as_str(),
                    "remote" => req.handshake.remote_addr.map(|a| a.to_string()));
                return Err(self.refuse(r.as_str(), r.label()));
            }
        };
        req.set_user(identity.sub.clone());
        req.join(user_room(&identity.sub));
        for role in &identity.roles {
            req.join(role_room(role));
        }
        if let Some(store) = self.store().cloned() {
            let user = identity.sub.clone();
            let metrics = self.metrics.clone();
            let log = self.log.clone();
            req.preface(kept_preface(store, user, metrics, log));
        }
        req.extensions().insert(AuthState::new(identity));
        Ok(())
    }

    /// The rooms' sockets and users on this node.
    pub(crate) fn local_presence(&self, room: &str) -> (usize, Vec<String>) {
        let Some(handle) = self.handle() else {
            return (0, Vec::new());
        };
        let sockets = handle
            .shared
            .select_local("/", &[room], &[] as &[&str], &[]);
        let users = sockets
            .iter()
            .filter_map(Socket::user)
            .map(str::to_owned)
            .collect();
        (sockets.len(), users)
    }

    /// Whether `room` of `/` has a member on this node: its room actor
    /// exists exactly while it has one (no scan of the sockets).
    pub(crate) fn has_local_member(&self, room: &str) -> bool {
        self.handle().is_some_and(|h| {
            h.shared
                .rooms
                .get(&crate::node::room::RoomKey {
                    ns: "/".into(),
                    room: Some(room.into()),
                })
                .is_some()
        })
    }

    /// Disconnect `user`'s sockets on this node; how many.
    pub(crate) fn disconnect_local(&self, user: &str) -> usize {
        let Some(handle) = self.handle() else {
            return 0;
        };
        let sockets = handle
            .shared
            .select_local("/", &[user_room(user)], &[] as &[&str], &[]);
        for s in &sockets {
            s.disconnect();
        }
        sockets.len()
    }

    /// Ask every other node's service `event` with `args`; the answers by
    /// node, and the nodes that did not answer.
    pub(crate) async fn ask_nodes(
        &self,
        event: &str,
        args: Value,
    ) -> (Vec<(NodeId, Value)>, Vec<NodeId>) {
        let Some(handle) = self.handle() else {
            return (Vec::new(), Vec::new());
        };
        if handle.shared.cluster().is_none() {
            return (Vec::new(), Vec::new());
        }
        match handle
            .server_side_emit_with_ack("/", event, args, None)
            .await
        {
            Ok(acks) => (
                acks.responses
                    .into_iter()
                    .map(|(node, p)| (node, p.args.into_iter().next().unwrap_or(Value::Null)))
                    .collect(),
                acks.missing,
            ),
            Err(e) => {
                warn!(self.log, "cluster request not sent"; "event" => event, "error" => %e);
                let peers = handle
                    .shared
                    .cluster()
                    .map(|c| c.peers())
                    .unwrap_or_default();
                (Vec::new(), peers)
            }
        }
    }

    /// Sockets and distinct users in `room` across the cluster.
    pub(crate) async fn presence(&self, room: &str) -> Value {
        let (mut sockets, mut users) = self.local_presence(room);
        let (answers, missing) = self.ask_nodes(PRESENCE, json!({ "room": room })).await;
        for (_, a) in answers {
            sockets += a.get("sockets").and_then(Value::as_u64).unwrap_or(0) as usize;
            if let Some(list) = a.get("users").and_then(Value::as_array) {
                users.extend(list.iter().filter_map(Value::as_str).map(str::to_owned));
            }
        }
        users.sort();
        users.dedup();
        let mut out = json!({ "sockets": sockets, "users": users });
        if !missing.is_empty() {
            out["missing"] = json!(missing.iter().map(NodeId::to_string).collect::<Vec<_>>());
        }
        out
    }

    /// Of `users`, those with a socket in their user room somewhere (a node
    /// that did not answer counts as having none: the message is kept, and
    /// may then reach the user twice, never not at all).
    pub(crate) async fn present(&self, users: &[String]) -> std::collections::HashSet<String> {
        let mut present: std::collections::HashSet<String> = users
            .iter()
            .filter(|u| self.has_local_member(&user_room(u)))
            .cloned()
            .collect();
        let (answers, _missing) = self.ask_nodes(PRESENT, json!({ "users": users })).await;
        for (_, a) in answers {
            if let Some(list) = a.as_array() {
                present.extend(list.iter().filter_map(Value::as_str).map(str::to_owned));
            }
        }
        present
    }

    /// Keep a message for `user` (offline delivery).
    pub(crate) async fn keep(&self, user: &str, event: &str, data: &Value) -> bool {
        let Some(store) = self.store() else {
            return false;
        };
        match store.keep(user, encode_kept(event, data)).await {
            Ok(()) => {
                self.metrics.kept();
                true
            }
            Err(e) => {
                self.metrics.error("keep");
                warn!(self.log, "message for an offline user not kept"; "user" => user, "error" => %e);
                false
            }
        }
    }

    /// Revoke `user` on every node; what was disconnected.
    pub(crate) async fn revoke(&self, user: &str) -> Result<Value, String> {
        let at_s = auth::now_ms() / 1000;
        if let Some(store) = self.store() {
            if let Err(e) = store.revoke(user, at_s).await {
                self.metrics.error("revoke");
                warn!(self.log, "revocation not stored"; "user" => user, "error" => %e);
                return Err(format!("revocation not stored: {e}"));
            }
        }
        self.apply_revocation(user, at_s);
        let local = self.disconnect_local(user);
        let (answers, missing) = self
            .ask_nodes(REVOKE, json!({ "user": user, "at": at_s }))
            .await;
        let remote: u64 = answers.iter().filter_map(|(_, a)| a.as_u64()).sum();
        info!(self.log, "user revoked"; "user" => user, "at" => at_s, "local" => local,
            "remote" => remote, "missing" => missing.len());
        Ok(json!({
            "local": local,
            "remote": remote,
            "missing": missing.iter().map(NodeId::to_string).collect::<Vec<_>>(),
        }))
    }

    /// Every node's socket count.
    pub(crate) async fn info(&self) -> Value {
        let local = self.handle().map_or(0, |h| h.socket_count());
        let mut nodes = vec![json!({ "id": self.node_id(), "sockets": local })];
        let (answers, missing) = self.ask_nodes(INFO, json!({})).await;
        for (node, a) in answers {
            nodes.push(json!({
                "id": node.to_string(),
                "sockets": a.get("sockets").and_then(Value::as_u64).unwrap_or(0),
            }));
        }
        let mut out = json!({ "nodes": nodes });
        if !missing.is_empty() {
            out["missing"] = json!(missing.iter().map(NodeId::to_string).collect::<Vec<_>>());
        }
        out
    }
}

/// The server-side events one node's service sends the others'.
pub(crate) const PRESENCE: &str = "riptide:presence";
pub(crate) const PRESENT: &str = "riptide:present";
pub(crate) const REVOKE: &str = "riptide:revoke";
pub(crate) const INFO: &str = "riptide:info";

/// The user's kept messages, as a socket's preface; forgotten once written.
async fn kept_preface(
    store: Arc<dyn NotifyStore>,
    user: String,
    metrics: ServiceMetrics,
    log: Logger,
) -> Preface {
    let kept = match store.kept(&user).await {
        Ok(k) => k,
        Err(e) => {
            metrics.error("read");
            warn!(log, "kept messages not read: they stay for the next connect";
                "user" => &user, "error" => %e);
            return Preface::default();
        }
    };
    let Some(end) = kept.end else {
        return Preface::default();
    };
    let events: Vec<(String, Payload)> = kept
        .messages
        .iter()
        .filter_map(|m| decode_kept(m))
        .map(|(event, data)| {
            (
                event,
                Payload {
                    args: vec![data],
                    binary: Vec::new(),
                },
            )
        })
        .collect();
    let n = events.len();
    Preface {
        events,
        written: Some(Box::new(move || {
            metrics.delivered(n);
            actix_rt::spawn(async move {
                if let Err(e) = store.forget(&user, &end).await {
                    metrics.error("forget");
                    warn!(log, "delivered kept messages not forgotten (they may come again)";
                        "user" => &user, "error" => %e);
                }
            });
        })),
    }
}

/// Follow the store's revocations for as long as the node runs (again after
/// each broker outage); `ready` fires the first time they are up to date.
async fn follow_revocations(
    service: Arc<Service>,
    store: Arc<dyn NotifyStore>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    let mut attempt = 0u32;
    loop {
        let mut revocations = store.clone().revocations();
        while let Some(event) = revocations.next().await {
            match event {
                Ok(RevocationEvent::Revoked(r)) => service.apply_revocation(&r.user, r.at_s),
                Ok(RevocationEvent::UpToDate) => {
                    attempt = 0;
                    if !service.loaded.swap(true, Ordering::AcqRel) {
                        info!(service.log, "revocations read"; "users" => service.revoked.read().len());
                    }
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(());
                    }
                }
                Err(e) => {
                    debug!(service.log, "revocations' follow ended; starting again"; "error" => %e);
                    break;
                }
            }
        }
        attempt = attempt.saturating_add(1);
        tokio::time::sleep(crate::adapter::backoff(
            attempt,
            Duration::from_millis(100),
            Duration::from_secs(2),
        ))
        .await;
    }
}

/// Serve service mode on the configured address until SIGINT or SIGTERM:
/// the `riptide` binary with `app.mode = "service"`.
pub async fn serve(settings: Settings, log: Logger) -> std::io::Result<()> {
    let invalid =
        |e: ConfigError| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string());
    let node = crate::service::http::Riptide::new(settings.clone(), log.clone());
    let metrics = node.metrics().with_registry(ServiceMetrics::register);
    let service = Service::new(&settings, metrics, &log).map_err(invalid)?;
    let admin = crate::service::admin::AdminUi::from_settings(&settings, &log);
    let mut node = node.namespace("/", service.namespace());
    if let Some(admin) = &admin {
        node = admin.mount(node);
    }
    let server = node.build();
    if let Some(admin) = &admin {
        admin.start(&server);
    }
    // The revocations are read before the node listens: a node that was
    // down when a user was revoked refuses the user's old tokens from its
    // first connection on.
    service.start(server.handle(), REVOCATIONS_WAIT).await?;
    let api = settings.api.is_on().then_some(service);
    server
        .run_with(move |cfg| {
            if let Some(service) = &api {
                api::routes(service.clone(), cfg);
            }
            crate::service::demo::routes(&settings, cfg);
        })
        .await
}

/// How long a starting node waits for the revocations before it listens
/// anyway (refusing connects until it has them).
const REVOCATIONS_WAIT: Duration = Duration::from_secs(10);
