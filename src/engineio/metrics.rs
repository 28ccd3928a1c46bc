//! The Engine.IO layer's own figures: sessions (and how long they lived),
//! packets, bytes, rejected input, outbound queues and slow consumers.
//!
//! [`EngineMetrics`] is registered into a Prometheus registry the caller
//! owns, so this layer needs nothing from the node above it. Cloning is one
//! reference-count increment. The per-packet methods touch pre-resolved
//! atomics only: no lock, no hash, no allocation.
//!
//! Every label takes a `&'static str` from the caller's own vocabulary
//! (`CloseReason::as_str()`, a literal kind), so a label value never comes
//! from client input and a client cannot grow the number of time series.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};

use super::packet::Protocol;

/// Upper bounds (seconds) of `riptide_engine_session_duration_seconds`:
/// from a client that left at once to one that stayed a day.
pub const SESSION_DURATION_BUCKETS: [f64; 13] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0,
];

/// Shards of a [`ShardedCounter`]; threads beyond that share them.
const SHARDS: usize = 16;

/// One shard on a cache line of its own (128 bytes: adjacent-line
/// prefetching pairs 64-byte lines on x86).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(AtomicU64);

/// A counter for the per-frame path: each thread adds to its own shard and
/// a scrape sums them. Every worker thread counts every frame it writes;
/// with one shared atomic those threads fought over its cache line on each
/// frame (docs/decisions.md, "per-thread counters").
#[derive(Debug, Clone, Default)]
pub(crate) struct ShardedCounter {
    shards: Arc<[Shard; SHARDS]>,
}

impl ShardedCounter {
    fn shard(&self) -> &AtomicU64 {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
        }
        &self.shards[INDEX.with(|i| *i)].0
    }

    pub(crate) fn inc(&self) {
        self.inc_by(1);
    }

    pub(crate) fn inc_by(&self, v: u64) {
        self.shard().fetch_add(v, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

impl TypedMetric for ShardedCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for ShardedCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabel {
    transport: &'static str,
}

/// A `protocol` label: the Engine.IO revision ("3", "4").
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ProtocolLabel {
    pub protocol: &'static str,
}

/// A `reason` label (close and disconnect reasons, refusals); shared with
/// the node's figures.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabel {
    pub reason: &'static str,
}

/// A `stage` label: before or after compression.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: &'static str,
}

/// A `kind` label (rejected input, actor kinds); shared with the node's
/// figures.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KindLabel {
    pub kind: &'static str,
}

/// The engine's instruments. `bad_input` is shared with the layers above
/// (they count their own rejected input in the same family).
#[derive(Clone, Debug)]
pub struct EngineMetrics {
    inner: Arc<Instruments>,
}

#[derive(Debug)]
struct Instruments {
    polling_sessions: Gauge,
    websocket_sessions: Gauge,
    sessions_closed: Family<ReasonLabel, Counter>,
    sessions_opened: Family<ProtocolLabel, Counter>,
    packets_in: ShardedCounter,
    packets_out: ShardedCounter,
    bytes_in: ShardedCounter,
    bytes_out: ShardedCounter,
    polling_bytes_in: Counter,
    polling_bytes_out: Counter,
    compressed_before: Counter,
    compressed_after: Counter,
    bad_input: Family<KindLabel, Counter>,
    slow_consumers: Counter,
    forwarded: Family<KindLabel, Counter>,
    queue_depth: Histogram,
    polling_duration: Histogram,
    websocket_duration: Histogram,
    /// Sessions opened and closed so far, all transports and reasons (the
    /// admin UI's connection histogram; no series of their own).
    opened: AtomicU64,
    closed: AtomicU64,
}

/// [`EngineMetrics::totals`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct EngineTotals {
    pub polling_sessions: u64,
    pub websocket_sessions: u64,
    pub packets_in: u64,
    pub packets_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub opened: u64,
    pub closed: u64,
}

/// Registers `metric` and hands it back, so construction reads as a list.
pub(crate) fn register<M: prometheus_client::registry::Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register(name, help, metric.clone());
    metric
}

impl EngineMetrics {
    /// Register the engine's series in `r`. Call once per registry (a second
    /// call would register the names twice).
    pub fn register(r: &mut Registry) -> EngineMetrics {
        let sessions: Family<TransportLabel, Gauge> = register(
            r,
            "engine_sessions",
            "Engine.IO sessions currently open, by current transport",
            Family::default(),
        );
        let sessions_closed = register(
            r,
            "engine_sessions_closed",
            "Engine.IO sessions closed, by reason",
            Family::default(),
        );
        let sessions_opened = register(
            r,
            "engine_sessions_opened",
            "Engine.IO sessions opened, by protocol revision (3: Socket.IO v2 clients, engine.allow_eio3)",
            Family::default(),
        );
        let packets: Family<DirectionLabel, ShardedCounter> = register(
            r,
            "packets",
            "Engine.IO packets received (in) and sent (out), all transports",
            Family::default(),
        );
        let bytes: Family<DirectionLabel, ShardedCounter> = register(
            r,
            "bytes",
            "Engine.IO packet bytes received (in) and sent (out), all transports",
            Family::default(),
        );
        let polling_bytes: Family<DirectionLabel, Counter> = register(
            r,
            "polling_body_bytes",
            "HTTP long-polling body bytes received (in) and sent (out), framing included",
            Family::default(),
        );
        let compressed: Family<StageLabel, Counter> = register(
            r,
            "polling_compressed_bytes",
            "Long-polling response bodies compressed (engine.http_compression): bytes before and after",
            Family::default(),
        );
        let bad_input = register(
            r,
            "bad_input",
            "Client input rejected, by kind",
            Family::default(),
        );
        let slow_consumers = register(
            r,
            "slow_consumer_closes",
            "Clients closed because they did not take their messages fast enough",
            Counter::default(),
        );
        let forwarded = register(
            r,
            "forwarded_requests",
            "Requests for a session another node owns, forwarded to it, by kind (get, post, websocket; failed: the owner could not be reached)",
            Family::default(),
        );
        // Powers of four from 1 to 4096 frames: "healthy" (0-4), "busy" (16-64)
        // and "about to be closed" (the default limit, 1024) land apart.
        let queue_depth = register(
            r,
            "outbound_queue_depth",
            "Frames waiting in a client's outbound queue after a write, sampled: one write in 16 on each thread",
            Histogram::new(exponential_buckets(1.0, 4.0, 7)),
        );

        // Observed once per session, when it closes (its actor stops), under
        // the transport it had then: two series, whatever the clients do.
        let durations: Family<TransportLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(SESSION_DURATION_BUCKETS));
        r.register_with_unit(
            "engine_session_duration",
            "How long Engine.IO sessions lived, from the handshake to the close, by the transport they had when they closed",
            Unit::Seconds,
            durations.clone(),
        );

        // Resolved once here so the per-packet path is a bare atomic add, and so
        // these series exist (at 0) from the first scrape: rate() needs a start.
        fn direction<M: Default + Clone>(
            family: &Family<DirectionLabel, M>,
            direction: &'static str,
        ) -> M {
            family.get_or_create_owned(&DirectionLabel { direction })
        }
        let transport = |transport| sessions.get_or_create_owned(&TransportLabel { transport });
        let duration = |transport| durations.get_or_create_owned(&TransportLabel { transport });

        EngineMetrics {
            inner: Arc::new(Instruments {
                polling_sessions: transport("polling"),
                websocket_sessions: transport("websocket"),
                packets_in: direction(&packets, "in"),
                packets_out: direction(&packets, "out"),
                bytes_in: direction(&bytes, "in"),
                bytes_out: direction(&bytes, "out"),
                polling_bytes_in: direction(&polling_bytes, "in"),
                polling_bytes_out: direction(&polling_bytes, "out"),
                compressed_before: compressed.get_or_create_owned(&StageLabel { stage: "before" }),
                compressed_after: compressed.get_or_create_owned(&StageLabel { stage: "after" }),
                sessions_closed,
                sessions_opened: {
                    // Both series from the first scrape, as the others.
                    let family: Family<ProtocolLabel, Counter> = sessions_opened;
                    for protocol in [Protocol::V3, Protocol::V4] {
                        drop(family.get_or_create(&ProtocolLabel {
                            protocol: protocol.as_str(),
                        }));
                    }
                    family
                },
                bad_input,
                slow_consumers,
                forwarded,
                queue_depth,
                polling_duration: duration("polling"),
                websocket_duration: duration("websocket"),
                opened: AtomicU64::new(0),
                closed: AtomicU64::new(0),
            }),
        }
    }

    /// Handles that no registry exposes (an engine used outside a node).
    pub fn unregistered() -> EngineMetrics {
        EngineMetrics::register(&mut Registry::default())
    }

    /// One Engine.IO packet of `bytes` bytes received, on either transport.
    pub fn packet_in(&self, bytes: usize) {
        self.inner.packets_in.inc();
        self.inner.bytes_in.inc_by(bytes as u64);
    }

    /// One Engine.IO packet of `bytes` bytes sent, on either transport.
    pub fn packet_out(&self, bytes: usize) {
        self.inner.packets_out.inc();
        self.inner.bytes_out.inc_by(bytes as u64);
    }

    /// A long-polling POST body of `bytes` bytes received. A separate series
    /// from `packet_in`'s bytes, which already count the packets inside it.
    pub fn bytes_in(&self, bytes: usize) {
        self.inner.polling_bytes_in.inc_by(bytes as u64);
    }

    /// A long-polling GET response body of `bytes` bytes sent. See [`EngineMetrics::bytes_in`].
    pub fn bytes_out(&self, bytes: usize) {
        self.inner.polling_bytes_out.inc_by(bytes as u64);
    }

    /// A polling response body of `before` bytes sent compressed to `after`.
    pub(crate) fn compressed(&self, before: usize, after: usize) {
        self.inner.compressed_before.inc_by(before as u64);
        self.inner.compressed_after.inc_by(after as u64);
    }

    /// A session opened on `transport` (`"polling"` or `"websocket"`). Pair it
    /// with [`EngineMetrics::session_closed`] on the transport it has when it closes.
    pub fn session_opened(&self, transport: &str, protocol: Protocol) {
        self.session_gauge(transport).inc();
        self.inner
            .sessions_opened
            .get_or_create(&ProtocolLabel {
                protocol: protocol.as_str(),
            })
            .inc();
        self.inner.opened.fetch_add(1, Ordering::Relaxed);
    }

    /// A session closed after `lived` (since its handshake). `transport` is
    /// its current one (after any upgrade); `reason` is the Engine.IO close
    /// reason (`"ping timeout"`, ...).
    pub fn session_closed(&self, transport: &str, reason: &'static str, lived: Duration) {
        self.session_gauge(transport).dec();
        self.inner.closed.fetch_add(1, Ordering::Relaxed);
        self.inner
            .sessions_closed
            .get_or_create(&ReasonLabel { reason })
            .inc();
        let duration = if transport == "websocket" {
            &self.inner.websocket_duration
        } else {
            &self.inner.polling_duration
        };
        duration.observe(lived.as_secs_f64());
    }

    /// What the admin UI's `server_stats` reports: sessions open now, and
    /// the packet and byte totals so far (it sends the difference).
    pub(crate) fn totals(&self) -> EngineTotals {
        let i = &self.inner;
        EngineTotals {
            polling_sessions: i.polling_sessions.get().max(0) as u64,
            websocket_sessions: i.websocket_sessions.get().max(0) as u64,
            packets_in: i.packets_in.get(),
            packets_out: i.packets_out.get(),
            bytes_in: i.bytes_in.get(),
            bytes_out: i.bytes_out.get(),
            opened: i.opened.load(Ordering::Relaxed),
            closed: i.closed.load(Ordering::Relaxed),
        }
    }

    /// A session moved from polling to WebSocket.
    pub fn session_upgraded(&self) {
        self.inner.polling_sessions.dec();
        self.inner.websocket_sessions.inc();
    }

    // Only two transports exist; a session still negotiating counts as polling,
    // the transport every Engine.IO session starts on unless it opens a WebSocket.
    fn session_gauge(&self, transport: &str) -> &Gauge {
        if transport == "websocket" {
            &self.inner.websocket_sessions
        } else {
            &self.inner.polling_sessions
        }
    }

    /// Client input rejected; `kind` names what was wrong (`"engine_decode"`,
    /// `"socket_decode"`, `"unknown_namespace"`, `"oversized"`, `"unknown_sid"`,
    /// `"bad_request"`, ...).
    pub fn bad_input(&self, kind: &'static str) {
        self.inner
            .bad_input
            .get_or_create(&KindLabel { kind })
            .inc();
    }

    /// A request forwarded to the node owning its session (`kind`: `get`,
    /// `post`, `websocket`, or `failed`).
    pub fn forwarded(&self, kind: &'static str) {
        self.inner
            .forwarded
            .get_or_create(&KindLabel { kind })
            .inc();
    }

    /// A client closed as a slow consumer.
    pub fn slow_consumer_closed(&self) {
        self.inner.slow_consumers.inc();
    }

    /// A write left `depth` frames in the client's outbound queue. Every
    /// write of a fan-out comes here, and a histogram observation takes the
    /// histogram's lock: one write in 16 per thread is observed, whatever
    /// its depth, so the distribution stays that of all writes. (Observing
    /// every backlogged write put that lock on nearly every write of a
    /// burst, when backlogs are the rule.)
    pub fn queue_depth(&self, depth: usize) {
        thread_local! {
            static WRITES: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
        }
        let sampled = WRITES.with(|n| {
            let v = n.get().wrapping_add(1);
            n.set(v);
            v % 16 == 1
        });
        if sampled {
            self.inner.queue_depth.observe(depth as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sharded_counter_sums_every_thread_and_scrapes_as_a_counter() {
        let mut r = Registry::with_prefix("t");
        let family: Family<DirectionLabel, ShardedCounter> =
            register(&mut r, "frames", "frames", Family::default());
        let c = family.get_or_create_owned(&DirectionLabel { direction: "out" });
        let threads: Vec<_> = (0..(SHARDS + 4))
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.inc();
                    }
                    c.inc_by(5);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(c.get(), (SHARDS as u64 + 4) * 1005);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        assert!(text.contains("# TYPE t_frames counter"), "{text}");
        assert!(
            text.contains(&format!("t_frames_total{{direction=\"out\"}} {}", c.get())),
            "{text}"
        );
    }
}
