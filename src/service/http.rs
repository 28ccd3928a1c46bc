//! Serving a node over HTTP: the builder ([`Riptide`]), the built node
//! ([`RiptideServer`]) with `/health` and `/metrics` beside the engine's
//! endpoint, joining the cluster, and the orderly shutdown.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use actix_http::{HttpService, KeepAlive};
use actix_service::{map_config, IntoServiceFactory as _, ServiceFactoryExt as _};
use actix_web::dev::AppConfig;
use actix_web::{web, App, HttpResponse};
use regex::Regex;
use slog::{info, o, Logger};

use super::settings::Settings;
use crate::adapter::store::StoreLimits;
use crate::adapter::{
    AdapterKind, AdapterMetrics, AdapterOptions, Cluster, ClusterOptions, NodeId, NODE_ID_LEN,
};
use crate::api::{Namespace, NamespaceHandler, ServerHandle};
use crate::engineio::forward::Forwarder;
use crate::engineio::takeover::UpgradeFactory;
use crate::engineio::{CloseReason, Engine, EngineConfig};
use crate::node::dispatch::Dispatch;
use crate::node::metrics::Metrics;
use crate::node::namespace::NamespaceSpec;
use crate::node::recovery::cluster::ClusterRecovery;
use crate::node::recovery::RecoveryConfig;
use crate::node::remote::cluster_events;
use crate::node::shared::{ServerShared, SioConfig, SocketIoFactory};

/// The Engine.IO layer's bounds resolved from the node's [`Settings`].
pub fn engine_config(s: &Settings) -> EngineConfig {
    let ms = Duration::from_millis;
    EngineConfig {
        ping_interval: ms(s.engine.ping_interval_ms),
        ping_timeout: ms(s.engine.ping_timeout_ms),
        max_payload: s.engine.max_payload,
        upgrade_timeout: ms(s.engine.upgrade_timeout_ms),
        allow_polling: s.engine.transports.iter().any(|t| t == "polling"),
        allow_websocket: s.engine.transports.iter().any(|t| t == "websocket"),
        allow_eio3: s.engine.allow_eio3,
        cors_origins: s.cors.allowed_origins.clone(),
        cors_credentials: s.cors.allow_credentials,
        max_queued_frames: s.limits.max_queued_frames,
        max_queued_bytes: s.limits.max_queued_bytes,
        slow_consumer_grace: ms(s.limits.slow_consumer_grace_ms),
        max_connections_per_ip: s.limits.max_connections_per_ip,
        connection_rate_per_ip: s.limits.connection_rate_per_ip,
        connection_burst_per_ip: s.limits.connection_burst_per_ip,
        deflate_threshold: s.engine.deflate_threshold(),
        http_compression: s.engine.http_compression_threshold(),
        // Validated with the settings.
        trusted_proxies: crate::engineio::proxy::TrustedProxies::parse(&s.server.trusted_proxies)
            .unwrap_or_default(),
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
    namespaces: Vec<(String, NamespaceSpec)>,
    dynamic: Vec<(Regex, NamespaceSpec)>,
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
    pub fn namespace<H: NamespaceHandler>(mut self, name: &str, ns: Namespace<H>) -> Riptide {
        self.namespaces.push((name.to_string(), ns.into_spec()));
        self
    }

    /// Serve every namespace whose name matches `pattern` (anchor it: `^/room-\d+$`).
    pub fn dynamic_namespace<H: NamespaceHandler>(
        mut self,
        pattern: Regex,
        ns: Namespace<H>,
    ) -> Riptide {
        self.dynamic.push((pattern, ns.into_spec()));
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
        let config = SioConfig {
            parser: s.socketio.parser,
            recovery: s.recovery.enabled.then(|| RecoveryConfig {
                max_disconnection: s.recovery.max_disconnection(),
                skip_middlewares: s.recovery.skip_middlewares,
                max_packets: s.recovery.stream_max_len,
                max_age: s.recovery.stream_max_age(),
                max_bytes: s.recovery.stream_max_bytes,
            }),
            connect_timeout: ms(s.socketio.connect_timeout_ms),
            ack_timeout: ms(s.socketio.ack_timeout_ms),
            max_namespaces: s.socketio.max_namespaces_per_connection,
            max_rooms_per_socket: s.socketio.max_rooms_per_socket,
            broadcast_window: s.socketio.broadcast_window(),
            max_attachments: s.engine.max_attachments,
            event_rate: s.limits.event_rate,
            event_burst: s.limits.event_burst,
            event_abuse_close_after: s.limits.event_abuse_close_after,
            v2_clients: s.engine.allow_eio3,
        };
        let shared = ServerShared::new(
            config,
            self.namespaces,
            self.dynamic,
            metrics.clone(),
            log.clone(),
        );
        let engine = Engine::new(
            engine_config,
            SocketIoFactory::new(shared.clone()),
            metrics.engine().clone(),
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
                        .content_type(crate::node::metrics::CONTENT_TYPE)
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
        self.start_cluster_on(None).await
    }

    /// [`RiptideServer::start_cluster`] for a node listening on `local`:
    /// with `cluster.forward_polling`, requests for sessions other nodes own
    /// are forwarded to them, and this node announces where it can be
    /// reached (`cluster.advertise_url`, or `local`).
    async fn start_cluster_on(&self, local: Option<std::net::SocketAddr>) -> io::Result<()> {
        let shared = &self.handle.shared;
        if self.settings.adapter.kind == AdapterKind::Memory || shared.cluster().is_some() {
            return Ok(());
        }
        let invalid = |e: crate::service::settings::ConfigError| {
            io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
        };
        let cluster_settings = &self.settings.cluster;
        let http_url = if cluster_settings.forward_polling {
            cluster_settings.advertise(local).map_err(invalid)?
        } else {
            None
        }
        .unwrap_or_default();
        let (cluster, events) = Cluster::start(
            &self.settings.adapter,
            &AdapterOptions::default(),
            ClusterOptions {
                http_url: http_url.clone(),
                ..ClusterOptions::default()
            },
            self.metrics.with_registry(AdapterMetrics::register),
            &self.log,
        )
        .await
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        info!(self.log, "cluster started"; "node" => cluster.node(),
            "adapter" => &self.settings.adapter.kind, "advertise_url" => &http_url);
        if !http_url.is_empty() {
            self.engine.set_forwarder(Arc::new(ClusterForwarder {
                prefix: cluster.node().as_str().to_owned(),
                cluster: cluster.clone(),
            }));
        }
        let node = cluster.node();
        if shared.cluster.set(cluster).is_err() {
            // Started twice concurrently (a misuse): the first one stays; this
            // one is dropped (its peers forget it after their heartbeat
            // timeout).
            return Ok(());
        }
        if let Some(config) = &shared.config.recovery {
            // Recovery in the broker: any node recovers any client.
            let timeout = Duration::from_secs(2);
            let limits = StoreLimits {
                max_len: config.max_packets as u64,
                max_age: config.max_age,
                max_bytes: config.max_bytes as u64,
                session_ttl: ClusterRecovery::session_ttl(config),
                timeout,
            };
            let store = crate::adapter::store::connect(&self.settings.adapter, limits, &self.log)
                .await
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
            if let Some(store) = store {
                let recovery = ClusterRecovery::start(
                    config.clone(),
                    store,
                    node,
                    &self.settings.adapter.prefix,
                    timeout,
                    shared,
                );
                let _ = shared.cluster_recovery.set(recovery);
                info!(self.log, "connection state recovery kept in the broker";
                    "adapter" => &self.settings.adapter.kind);
            }
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
        let tls = if s.tls.enabled() {
            let config = s
                .tls
                .server_config()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
            Some(config)
        } else {
            None
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let local = listener.local_addr()?;
        self.start_cluster_on(Some(local)).await?;
        let this = Arc::new(self);
        let app_this = this.clone();
        let secure = tls.is_some();
        // A notify the dispatchers of keep-alive connections wait on, so a
        // graceful stop does not wait out their keep-alive (as actix-web's
        // HttpServer does).
        let stopping = Arc::new(tokio::sync::Notify::new());
        let stop_signal = stopping.clone();
        // WebSocket connections run outside actix-server's count once taken
        // over: the stop waits for this one (their close frames written).
        let websockets = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let ws_count = websockets.clone();
        // Each worker builds the application twice: once for its HTTP/1
        // dispatcher, once for the upgrade service that takes WebSocket
        // connections out of it (engineio/takeover.rs).
        let app = move || {
            let this = app_this.clone();
            let extra = extra.clone();
            let app = App::new().configure(move |cfg| {
                this.configure(cfg);
                extra(cfg);
            });
            map_config(app.into_factory(), move |_| {
                AppConfig::__priv_test_new(secure, local.to_string(), local)
            })
        };
        // One chain for both listeners (their I/O types differ).
        macro_rules! http {
            () => {{
                let signal = stop_signal.clone();
                HttpService::build()
                    .keep_alive(KeepAlive::Timeout(Duration::from_secs(5)))
                    .client_request_timeout(Duration::from_secs(5))
                    .client_disconnect_timeout(Duration::from_secs(1))
                    // A client's EOF ends its connection at once, so a
                    // long-poll whose client went away is noticed now, not
                    // at the ping timeout.
                    .h1_allow_half_closed(false)
                    .local_addr(local)
                    .graceful_shutdown_signal(move || {
                        let signal = signal.clone();
                        async move { signal.notified().await }
                    })
                    .on_connect_ext(|io: &_, ext: _| {
                        crate::engineio::websocket::on_connect(io as &dyn std::any::Any, ext)
                    })
                    .upgrade(UpgradeFactory::new(app(), ws_count.clone()))
                    .finish(app().map_err(|e| e.error_response()))
            }};
        }
        let builder = actix_server::Server::build()
            .workers(workers)
            .disable_signals()
            .shutdown_timeout(shutdown_timeout.as_secs().max(1));
        let server = match tls {
            Some(config) => builder.listen("riptide", listener, move || {
                http!().rustls_0_23(config.clone())
            })?,
            None => builder.listen("riptide", listener, move || http!().tcp())?,
        }
        .run();
        info!(this.log, "riptide listening";
            "addr" => local.to_string(),
            "scheme" => scheme,
            "path" => &this.settings.server.path,
            "workers" => workers,
            "adapter" => &this.settings.adapter.kind);
        let handle = server.handle();
        let log = this.log.clone();
        let engine = this.engine.clone();
        let shared = this.handle.shared.clone();
        let drain_rate = this.settings.server.drain_rate_per_s.max(1);
        actix_rt::spawn(async move {
            let signal = shutdown.await;
            info!(log, "stopping: closing sessions"; "signal" => signal,
                "sessions" => engine.session_count());
            // Refuse new sessions first: clients told to go would otherwise
            // reconnect here and keep the node from emptying.
            engine.drain();
            // Paced when other nodes can take the clients, so they do not
            // all arrive there at once: the time it takes at
            // `drain_rate_per_s`, plus 2 s for the close packets to reach the
            // clients, within the shutdown timeout. A node alone closes every
            // session at once: its clients can only come back to it once it
            // has restarted, and pacing would only delay that.
            let peers = shared.cluster().map_or(0, |c| c.peers().len());
            let rate = if peers > 0 { drain_rate } else { u32::MAX };
            let pacing = Duration::from_secs_f64(engine.session_count() as f64 / f64::from(rate));
            let deadline =
                tokio::time::Instant::now() + shutdown_timeout.min(pacing + Duration::from_secs(2));
            engine
                .close_paced(CloseReason::ServerShutdown, rate, deadline)
                .await;
            // Sessions and sockets gone, and each closed WebSocket has
            // written what it had queued and its close frame (then waited,
            // briefly, for its client to close too).
            let websockets = || websockets.load(std::sync::atomic::Ordering::Acquire);
            while (engine.session_count() > 0 || shared.socket_count() > 0 || websockets() > 0)
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
            stopping.notify_waiters();
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

/// Session ownership as the cluster knows it: a session id starts with its
/// node's id, and a live peer's HTTP address comes with its heartbeats.
struct ClusterForwarder {
    prefix: String,
    cluster: Cluster,
}

impl Forwarder for ClusterForwarder {
    fn sid_prefix(&self) -> &str {
        &self.prefix
    }

    fn owner(&self, sid: &str) -> Option<String> {
        let node = NodeId::from_bytes(sid.as_bytes().get(..NODE_ID_LEN)?)?;
        if node == self.cluster.node() {
            return None;
        }
        self.cluster.peer_url(node)
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
