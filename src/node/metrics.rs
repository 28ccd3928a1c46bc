//! The node's Prometheus registry and the Socket.IO layer's and actors'
//! figures; the engine's own are [`EngineMetrics`], registered here.
//!
//! [`Metrics`] is one `Arc`: clone it into every actor. Methods with a
//! dynamic namespace label allocate the label once per call; an actor that
//! calls them often can keep a [`NamespaceMetrics`] handle instead.
//!
//! Every other label takes a `&'static str` from the caller's own vocabulary
//! (`CloseReason::as_str()`, `DisconnectReason::as_str()`, a literal kind), so
//! a label value never comes from client input and a client cannot grow the
//! number of time series. The namespace label is the exception and must only
//! carry namespaces the server accepted.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::engineio::metrics::{register, EngineMetrics, KindLabel, ReasonLabel};
use crate::engineio::CloseReason;

/// `Content-Type` of [`Metrics::encode`]'s output (OpenMetrics text).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Prefix of every metric name, including those added through
/// [`Metrics::with_registry`].
pub const PREFIX: &str = "riptide";

// `Cow` so a caller holding a `&'static str` namespace could skip the allocation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NamespaceLabel {
    namespace: Cow<'static, str>,
}

/// Upper bounds (seconds) of `riptide_actor_mailbox_delay_seconds`: from an
/// idle actor (the probe's own round trip, tens of microseconds) to one
/// stuck for seconds (a probe not answered within
/// `probe::TIMEOUT` is observed as that timeout, past the last bound).
pub const MAILBOX_DELAY_BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The actors whose mailboxes `node::probe` measures: the `kind` label of
/// `riptide_actor_mailbox_delay_seconds` (the same vocabulary as
/// `riptide_actor_restarts_total`, plus `connection`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActorKind {
    /// Room actors, the per-namespace ones included.
    Room,
    User,
    /// Handler actors: one per namespace and worker thread.
    Handler,
    /// A client's session actor (Engine.IO session and Socket.IO connection).
    Connection,
}

impl ActorKind {
    pub const ALL: [ActorKind; 4] = [
        ActorKind::Room,
        ActorKind::User,
        ActorKind::Handler,
        ActorKind::Connection,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Room => "room",
            ActorKind::User => "user",
            ActorKind::Handler => "handler",
            ActorKind::Connection => "connection",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SessionWriteLabel {
    kind: &'static str,
    result: &'static str,
}

/// Every Riptide metric and the registry that exposes them. Cloning is one
/// reference-count increment.
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<Instruments>,
}

#[derive(Debug)]
struct Instruments {
    // Behind a mutex only so later subsystems can register into it; the
    // instruments below are updated without touching it.
    registry: Mutex<Registry>,
    engine: EngineMetrics,
    sockets_connected: Family<NamespaceLabel, Gauge>,
    connects: Family<NamespaceLabel, Counter>,
    disconnects: Family<ReasonLabel, Counter>,
    connect_errors: Family<ReasonLabel, Counter>,
    events_refused: Family<ReasonLabel, Counter>,
    volatile_dropped: Counter,
    handler_panics: Counter,
    actor_restarts: Family<KindLabel, Counter>,
    acks_timed_out: Counter,
    rooms: Gauge,
    recoveries: Family<ReasonLabel, Counter>,
    recovery_replayed: Counter,
    recovery_stored: Counter,
    recovery_evicted: Counter,
    recovery_unrecorded: Counter,
    recovery_parked: Gauge,
    recovery_session_writes: Family<SessionWriteLabel, Counter>,
    /// By `ActorKind as usize`, resolved once.
    mailbox_delay: [Histogram; 4],
    /// Engine.IO sessions closed so far, by close reason in
    /// [`CLOSE_REASONS`] order: the admin UI's `rawDisconnection` subtypes
    /// (no series of their own: `riptide_engine_sessions_closed_total` is
    /// the engine's).
    engine_closes: [AtomicU64; CLOSE_REASONS.len()],
}

/// Every Engine.IO close reason, in the order of
/// [`Metrics::engine_closes`].
pub(crate) const CLOSE_REASONS: [CloseReason; 8] = [
    CloseReason::TransportClose,
    CloseReason::TransportError,
    CloseReason::PingTimeout,
    CloseReason::ParseError,
    CloseReason::ForcedClose,
    CloseReason::ServerShutdown,
    CloseReason::ConnectTimeout,
    CloseReason::SlowConsumer,
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let r = &mut registry;

        let engine = EngineMetrics::register(r);
        let sockets_connected = register(
            r,
            "sockets_connected",
            "Socket.IO sockets currently connected, by namespace",
            Family::default(),
        );
        let connects = register(
            r,
            "connects",
            "Socket.IO namespace connections accepted, by namespace",
            Family::default(),
        );
        let disconnects = register(
            r,
            "disconnects",
            "Socket.IO sockets disconnected, by reason",
            Family::default(),
        );
        let connect_errors = register(
            r,
            "connect_errors",
            "Socket.IO CONNECT requests refused, by reason",
            Family::default(),
        );
        let events_refused = register(
            r,
            "events_refused",
            "Client events or room joins refused, by reason",
            Family::default(),
        );
        let volatile_dropped = register(
            r,
            "volatile_dropped",
            "Volatile emits dropped because the client was not ready",
            Counter::default(),
        );
        let handler_panics = register(
            r,
            "handler_panics",
            "Event handlers that panicked",
            Counter::default(),
        );
        let actor_restarts: Family<KindLabel, Counter> = register(
            r,
            "actor_restarts",
            "Actors restarted by their supervisor, by kind",
            Family::default(),
        );
        // Every kind exists (at 0) from the first scrape: an alert on
        // rate() needs a start, and the dashboard a series.
        for kind in ["room", "user", "handler"] {
            let _ = actor_restarts.get_or_create(&KindLabel { kind });
        }
        let acks_timed_out = register(
            r,
            "acks_timed_out",
            "Server-to-client acks that were not answered in time",
            Counter::default(),
        );
        let rooms = register(
            r,
            "rooms",
            "Room actors alive on this node",
            Gauge::default(),
        );

        let recoveries = register(
            r,
            "recoveries",
            "CONNECTs that asked for connection state recovery, by result (recovered, or why not)",
            Family::default(),
        );
        let recovery_replayed = register(
            r,
            "recovery_replayed",
            "Stored events written to recovered sockets (what they missed)",
            Counter::default(),
        );
        let recovery_stored = register(
            r,
            "recovery_stored",
            "Events stored for connection state recovery",
            Counter::default(),
        );
        let recovery_evicted = register(
            r,
            "recovery_evicted",
            "Stored events dropped at the log's bounds (recovery.stream_max_len, stream_max_bytes, stream_max_age_ms)",
            Counter::default(),
        );
        let recovery_unrecorded = register(
            r,
            "recovery_unrecorded",
            "Events that should have been stored but were delivered without an offset: the cluster's recovery store (the broker) could not take them",
            Counter::default(),
        );

        let recovery_parked = register(
            r,
            "recovery_parked",
            "Disconnected sockets whose state is kept for a recovery (recovery.max_disconnection_ms)",
            Gauge::default(),
        );

        let recovery_session_writes = register(
            r,
            "recovery_session_writes",
            "Session records written to the cluster's recovery store, by kind (park: a socket left; refresh: rooms changed, or the periodic refresh) and result (written, taken_over: another node recovered it, failed: the store did not answer)",
            Family::default(),
        );

        let mailbox_delay: Family<KindLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(MAILBOX_DELAY_BUCKETS));
        r.register_with_unit(
            "actor_mailbox_delay",
            "How long a message sent to an actor now waits before the actor handles it (the actors' event-loop lag), by actor kind: a probe sent every second to a bounded sample of each kind's actors, timed to its answer",
            Unit::Seconds,
            mailbox_delay.clone(),
        );
        // Every kind exists (at 0) from the first scrape.
        let mailbox_delay = ActorKind::ALL
            .map(|k| mailbox_delay.get_or_create_owned(&KindLabel { kind: k.as_str() }));

        Self {
            inner: Arc::new(Instruments {
                registry: Mutex::new(registry),
                engine,
                sockets_connected,
                connects,
                disconnects,
                connect_errors,
                events_refused,
                volatile_dropped,
                handler_panics,
                actor_restarts,
                acks_timed_out,
                rooms,
                recoveries,
                recovery_unrecorded,
                recovery_replayed,
                recovery_stored,
                recovery_evicted,
                recovery_parked,
                recovery_session_writes,
                mailbox_delay,
                engine_closes: Default::default(),
            }),
        }
    }

    /// An Engine.IO session of this node's closed (its Socket.IO
    /// connection saw it go), for [`Metrics::engine_closes`].
    pub(crate) fn engine_session_closed(&self, reason: CloseReason) {
        if let Some(i) = CLOSE_REASONS.iter().position(|r| *r == reason) {
            self.inner.engine_closes[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Engine.IO sessions closed so far, by reason ([`CLOSE_REASONS`] order).
    pub(crate) fn engine_closes(&self) -> [u64; CLOSE_REASONS.len()] {
        std::array::from_fn(|i| self.inner.engine_closes[i].load(Ordering::Relaxed))
    }

    /// The engine layer's figures (registered in this registry).
    pub fn engine(&self) -> &EngineMetrics {
        &self.inner.engine
    }

    /// A socket joined `namespace` (CONNECT accepted).
    pub fn socket_connected(&self, namespace: &str) {
        self.namespace(namespace).socket_connected();
    }

    /// A socket left `namespace`; `reason` is the Socket.IO disconnect reason
    /// (`"transport close"`, `"client namespace disconnect"`, ...). Counted per
    /// socket: a closing connection with three namespaces counts three.
    pub fn socket_disconnected(&self, namespace: &str, reason: &'static str) {
        self.namespace(namespace).socket_disconnected(reason);
    }

    /// Handles for one namespace, resolved once so an actor can count connects
    /// and disconnects without allocating the label each time.
    pub fn namespace(&self, namespace: &str) -> NamespaceMetrics {
        let label = NamespaceLabel {
            namespace: Cow::Owned(namespace.to_owned()),
        };
        NamespaceMetrics {
            connected: self.inner.sockets_connected.get_or_create_owned(&label),
            connects: self.inner.connects.get_or_create_owned(&label),
            disconnects: self.inner.disconnects.clone(),
        }
    }

    /// Client input rejected (the engine's `bad_input` family).
    pub fn bad_input(&self, kind: &'static str) {
        self.inner.engine.bad_input(kind);
    }

    /// A CONNECT refused (`"invalid_namespace"`, `"middleware"`, ...). Not
    /// labelled by namespace: a refused namespace name is client input.
    pub fn connect_error(&self, reason: &'static str) {
        self.inner
            .connect_errors
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// An event or a room join refused (`"middleware"`, `"room_limit"`, ...).
    pub fn event_refused(&self, reason: &'static str) {
        self.inner
            .events_refused
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub fn volatile_dropped(&self) {
        self.inner.volatile_dropped.inc();
    }

    pub fn handler_panic(&self) {
        self.inner.handler_panics.inc();
    }

    /// `kind` is the actor kind: `"room"` or `"user"`.
    pub fn actor_restart(&self, kind: &'static str) {
        self.inner
            .actor_restarts
            .get_or_create(&KindLabel { kind })
            .inc();
    }

    /// A CONNECT with a `pid`: `"recovered"`, or why it was not.
    pub fn recovery(&self, result: &'static str) {
        self.inner
            .recoveries
            .get_or_create(&ReasonLabel { reason: result })
            .inc();
    }

    /// A recovered socket was written the `n` events it missed.
    pub fn recovery_replayed(&self, n: usize) {
        self.inner.recovery_replayed.inc_by(n as u64);
    }

    /// Sockets parked for a recovery now.
    pub fn recovery_parked(&self, n: usize) {
        self.inner.recovery_parked.set(n as i64);
    }

    /// A session record write to the cluster's store came to `result`.
    pub fn recovery_session_write(&self, kind: &'static str, result: &'static str) {
        self.inner
            .recovery_session_writes
            .get_or_create(&SessionWriteLabel { kind, result })
            .inc();
    }

    /// One event stored; `evicted` older ones dropped at the bounds.
    pub fn recovery_stored(&self, evicted: u64) {
        self.inner.recovery_stored.inc();
        if evicted > 0 {
            self.inner.recovery_evicted.inc_by(evicted);
        }
    }

    /// An event to store was delivered unrecorded (see `recovery::cluster`).
    pub fn recovery_unrecorded(&self) {
        self.inner.recovery_unrecorded.inc();
    }

    pub fn ack_timed_out(&self) {
        self.inner.acks_timed_out.inc();
    }

    /// A probe of a `kind` actor's mailbox came back after `delay` (see
    /// `node::probe`).
    pub fn mailbox_delay(&self, kind: ActorKind, delay: Duration) {
        self.inner.mailbox_delay[kind as usize].observe(delay.as_secs_f64());
    }

    pub fn room_started(&self) {
        self.inner.rooms.inc();
    }

    pub fn room_stopped(&self) {
        self.inner.rooms.dec();
    }

    /// Lets a later subsystem (the cluster adapter) register its own metrics.
    /// Names get the `riptide_` prefix, like the built-in ones.
    ///
    /// ```text
    /// metrics.with_registry(|r| r.register("cluster_published", "...", counter.clone()));
    /// ```
    pub fn with_registry<R>(&self, register: impl FnOnce(&mut Registry) -> R) -> R {
        register(&mut self.registry())
    }

    /// The whole registry as OpenMetrics text (serve it as
    /// `application/openmetrics-text; version=1.0.0; charset=utf-8`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String fails only if a registered metric's encoder does.
        // Then the body lacks its `# EOF` line, the scraper rejects it, and the
        // failure shows up as a failed scrape rather than a panicked worker.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry());
        out
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        // A panic inside `with_registry` leaves the registry usable; metrics
        // must not stop being served because of it.
        self.inner
            .registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Per-namespace handles from [`Metrics::namespace`]; cloning is cheap.
#[derive(Clone, Debug)]
pub struct NamespaceMetrics {
    connected: Gauge,
    connects: Counter,
    disconnects: Family<ReasonLabel, Counter>,
}

impl NamespaceMetrics {
    pub fn socket_connected(&self) {
        self.connected.inc();
        self.connects.inc();
    }

    /// See [`Metrics::socket_disconnected`].
    pub fn socket_disconnected(&self, reason: &'static str) {
        self.connected.dec();
        self.disconnects
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_has(text: &str, line: &str) {
        assert!(
            text.lines().any(|l| l == line),
            "missing line {line:?} in:\n{text}"
        );
    }

    #[test]
    fn fresh_metrics_expose_the_per_packet_series_at_zero() {
        let text = Metrics::new().encode();
        assert_has(&text, "riptide_packets_total{direction=\"in\"} 0");
        assert_has(&text, "riptide_bytes_total{direction=\"out\"} 0");
        assert_has(&text, "riptide_engine_sessions{transport=\"polling\"} 0");
        assert_has(&text, "riptide_rooms 0");
        assert_has(&text, "riptide_actor_restarts_total{kind=\"handler\"} 0");
        assert_has(
            &text,
            "riptide_actor_mailbox_delay_seconds_count{kind=\"connection\"} 0",
        );
        assert_has(
            &text,
            "riptide_engine_session_duration_seconds_count{transport=\"websocket\"} 0",
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn calls_show_up_in_the_exposition() {
        let metrics = Metrics::new();
        // A clone shares the instruments, as actors holding one will.
        let engine = metrics.clone().engine().clone();

        engine.session_opened("polling", crate::engineio::Protocol::V4);
        engine.session_opened("polling", crate::engineio::Protocol::V4);
        engine.session_upgraded();
        engine.packet_in(10);
        engine.packet_in(20);
        engine.packet_out(7);
        engine.bytes_in(33);
        engine.bytes_out(9);
        engine.session_opened("websocket", crate::engineio::Protocol::V4);
        engine.session_closed("websocket", "ping timeout", Duration::from_secs(90));
        engine.bad_input("engine_decode");
        engine.bad_input("engine_decode");
        engine.bad_input("unknown_sid");

        metrics.socket_connected("/");
        metrics.socket_connected("/");
        metrics.socket_connected("/admin");
        metrics.socket_disconnected("/", "ping timeout");
        metrics.connect_error("middleware");
        metrics.handler_panic();
        metrics.actor_restart("room");
        metrics.ack_timed_out();
        metrics.event_refused("room_limit");
        metrics.volatile_dropped();
        metrics.room_started();
        metrics.room_started();
        metrics.room_stopped();
        metrics.mailbox_delay(ActorKind::Handler, Duration::from_millis(3));
        metrics.mailbox_delay(ActorKind::Handler, Duration::from_secs(10));

        let text = metrics.encode();
        for line in [
            "# TYPE riptide_packets counter",
            "riptide_packets_total{direction=\"in\"} 2",
            "riptide_packets_total{direction=\"out\"} 1",
            "riptide_bytes_total{direction=\"in\"} 30",
            "riptide_bytes_total{direction=\"out\"} 7",
            "# TYPE riptide_engine_sessions gauge",
            "riptide_engine_sessions{transport=\"polling\"} 1",
            "riptide_engine_sessions{transport=\"websocket\"} 1",
            "riptide_sockets_connected{namespace=\"/\"} 1",
            "riptide_sockets_connected{namespace=\"/admin\"} 1",
            "riptide_connects_total{namespace=\"/\"} 2",
            "riptide_disconnects_total{reason=\"ping timeout\"} 1",
            "riptide_bad_input_total{kind=\"engine_decode\"} 2",
            "riptide_bad_input_total{kind=\"unknown_sid\"} 1",
            "riptide_connect_errors_total{reason=\"middleware\"} 1",
            "riptide_handler_panics_total 1",
            "riptide_actor_restarts_total{kind=\"room\"} 1",
            "riptide_acks_timed_out_total 1",
            "riptide_rooms 1",
            "riptide_engine_sessions_closed_total{reason=\"ping timeout\"} 1",
            "riptide_polling_body_bytes_total{direction=\"in\"} 33",
            "riptide_polling_body_bytes_total{direction=\"out\"} 9",
            "riptide_events_refused_total{reason=\"room_limit\"} 1",
            "riptide_volatile_dropped_total 1",
            "# TYPE riptide_engine_session_duration_seconds histogram",
            "# UNIT riptide_engine_session_duration_seconds seconds",
            "riptide_engine_session_duration_seconds_count{transport=\"websocket\"} 1",
            "riptide_engine_session_duration_seconds_sum{transport=\"websocket\"} 90.0",
            "riptide_engine_session_duration_seconds_bucket{le=\"60.0\",transport=\"websocket\"} 0",
            "riptide_engine_session_duration_seconds_bucket{le=\"300.0\",transport=\"websocket\"} 1",
            "riptide_engine_session_duration_seconds_count{transport=\"polling\"} 0",
            "# TYPE riptide_actor_mailbox_delay_seconds histogram",
            "riptide_actor_mailbox_delay_seconds_count{kind=\"handler\"} 2",
            "riptide_actor_mailbox_delay_seconds_bucket{le=\"0.0025\",kind=\"handler\"} 0",
            "riptide_actor_mailbox_delay_seconds_bucket{le=\"0.005\",kind=\"handler\"} 1",
            // A probe that timed out lands past the last bound.
            "riptide_actor_mailbox_delay_seconds_bucket{le=\"5.0\",kind=\"handler\"} 1",
            "riptide_actor_mailbox_delay_seconds_bucket{le=\"+Inf\",kind=\"handler\"} 2",
            "riptide_actor_mailbox_delay_seconds_count{kind=\"room\"} 0",
            "riptide_actor_mailbox_delay_seconds_count{kind=\"user\"} 0",
            "riptide_actor_mailbox_delay_seconds_count{kind=\"connection\"} 0",
        ] {
            assert_has(&text, line);
        }
    }

    #[test]
    fn actor_kinds_index_their_histograms() {
        for (i, kind) in ActorKind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, i, "{kind:?}");
        }
    }

    #[test]
    fn namespace_handles_share_the_series() {
        let metrics = Metrics::new();
        let chat = metrics.namespace("/chat");
        chat.socket_connected();
        chat.socket_connected();
        chat.socket_disconnected("transport close");
        metrics.socket_connected("/chat");

        let text = metrics.encode();
        assert_has(&text, "riptide_sockets_connected{namespace=\"/chat\"} 2");
        assert_has(&text, "riptide_connects_total{namespace=\"/chat\"} 3");
        assert_has(
            &text,
            "riptide_disconnects_total{reason=\"transport close\"} 1",
        );
    }

    #[test]
    fn namespace_label_values_are_escaped() {
        let metrics = Metrics::new();
        metrics.socket_connected("/a\"b");
        assert_has(
            &metrics.encode(),
            "riptide_sockets_connected{namespace=\"/a\\\"b\"} 1",
        );
    }

    #[test]
    fn later_subsystems_can_register_prefixed_metrics() {
        let metrics = Metrics::new();
        let published = Counter::<u64>::default();
        metrics.with_registry(|registry| {
            registry.register(
                "cluster_published",
                "Envelopes published to the broker",
                published.clone(),
            )
        });
        published.inc_by(5);
        assert_has(&metrics.encode(), "riptide_cluster_published_total 5");
    }
}
