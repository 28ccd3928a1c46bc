//! The adapter's figures, registered into the node's [`Metrics`] registry
//! (so `/metrics` serves them with everything else).
//!
//! | series | meaning |
//! | --- | --- |
//! | `riptide_adapter_published_total` | messages handed to the broker |
//! | `riptide_adapter_received_total` | messages received from the broker |
//! | `riptide_adapter_bytes_total{direction="in"\|"out"}` | their payload bytes |
//! | `riptide_adapter_errors_total{kind}` | failures, by kind (below) |
//! | `riptide_adapter_reconnects_total` | outages ended (degraded → up) |
//! | `riptide_adapter_subscriptions` | subscriptions held at the broker |
//! | `riptide_adapter_outbound_dropped_total` | publishes refused: buffer full |
//! | `riptide_adapter_peers` | other live nodes |
//! | `riptide_adapter_up` | 1 when the broker is reachable, else 0 |
//! | `riptide_adapter_broker_rtt_seconds{adapter="nats"\|"redis"}` | round trips to the broker, measured every `ping_interval` while it is up (histogram) |
//!
//! Error kinds (a fixed vocabulary, never input): `connection` (a broker
//! connection lost or not made), `publish`, `subscribe`, `too_large`,
//! `unknown_version`, `decode`, `inbound_overflow` (the engine fell behind),
//! `event_overflow` (cluster events dropped, same reason), `duplicate`
//! (a repeated sequence number, dropped), `gap` (one per cluster-wide
//! message known lost), `late_response`, `server` / `slow_consumer` (NATS).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Upper bounds (seconds) of `riptide_adapter_broker_rtt_seconds`: a broker
/// on the same host answers in tens of microseconds, one across a region in
/// tens of milliseconds; past a second it is as good as away.
pub const BROKER_RTT_BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The `kind` values of `riptide_adapter_errors_total` (see the module doc).
pub const ERROR_KINDS: [&str; 13] = [
    "connection",
    "publish",
    "subscribe",
    "too_large",
    "unknown_version",
    "decode",
    "inbound_overflow",
    "event_overflow",
    "duplicate",
    "gap",
    "late_response",
    "server",
    "slow_consumer",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AdapterLabel {
    adapter: &'static str,
}

/// Handles on the adapter's series; cloning is cheap (shared atomics).
#[derive(Clone, Debug)]
pub struct AdapterMetrics {
    published: Counter,
    received: Counter,
    bytes: Family<DirectionLabel, Counter>,
    bytes_in: Counter,
    bytes_out: Counter,
    errors: Family<KindLabel, Counter>,
    reconnects: Counter,
    subscriptions: Gauge,
    outbound_dropped: Counter,
    peers: Gauge,
    up: Gauge,
    broker_rtt: Family<AdapterLabel, Histogram, fn() -> Histogram>,
}

impl AdapterMetrics {
    /// Register the adapter's series in `metrics`. Call once per registry
    /// (a second call would register the names twice).
    pub fn register(r: &mut Registry) -> AdapterMetrics {
        let m = AdapterMetrics::unregistered();
        {
            r.register(
                "adapter_published",
                "Cluster messages handed to the broker",
                m.published.clone(),
            );
            r.register(
                "adapter_received",
                "Cluster messages received from the broker",
                m.received.clone(),
            );
            r.register(
                "adapter_bytes",
                "Cluster message payload bytes received (in) and published (out)",
                m.bytes.clone(),
            );
            r.register(
                "adapter_errors",
                "Cluster adapter failures, by kind",
                m.errors.clone(),
            );
            r.register(
                "adapter_reconnects",
                "Broker outages ended (degraded to up)",
                m.reconnects.clone(),
            );
            r.register(
                "adapter_subscriptions",
                "Subscriptions held at the broker",
                m.subscriptions.clone(),
            );
            r.register(
                "adapter_outbound_dropped",
                "Cluster publishes refused because the outbound buffer was full",
                m.outbound_dropped.clone(),
            );
            r.register("adapter_peers", "Other live nodes", m.peers.clone());
            r.register(
                "adapter_up",
                "1 when the broker is reachable, else 0",
                m.up.clone(),
            );
            r.register_with_unit(
                "adapter_broker_rtt",
                "Round trips to the broker, measured every adapter ping interval while it is up (NATS: a request nobody serves, answered by the server; Redis: the subscriber connection's PING), by adapter",
                Unit::Seconds,
                m.broker_rtt.clone(),
            );
        }
        m
    }

    /// Handles that no registry exposes (for a bus built outside a node).
    pub fn unregistered() -> AdapterMetrics {
        let bytes: Family<DirectionLabel, Counter> = Family::default();
        // Resolved once, so both series exist from the first scrape and the
        // per-message path is a bare atomic add.
        let bytes_in = bytes.get_or_create_owned(&DirectionLabel { direction: "in" });
        let bytes_out = bytes.get_or_create_owned(&DirectionLabel { direction: "out" });
        let errors: Family<KindLabel, Counter> = Family::default();
        // Every kind exists (at 0) from the first scrape: rate() needs a start.
        for kind in ERROR_KINDS {
            let _ = errors.get_or_create(&KindLabel { kind });
        }
        AdapterMetrics {
            published: Counter::default(),
            received: Counter::default(),
            bytes,
            bytes_in,
            bytes_out,
            errors,
            reconnects: Counter::default(),
            subscriptions: Gauge::default(),
            outbound_dropped: Counter::default(),
            peers: Gauge::default(),
            up: Gauge::default(),
            broker_rtt: Family::new_with_constructor(|| Histogram::new(BROKER_RTT_BUCKETS)),
        }
    }

    pub(crate) fn published(&self, bytes: usize) {
        self.published.inc();
        self.bytes_out.inc_by(bytes as u64);
    }

    pub(crate) fn received(&self, bytes: usize) {
        self.received.inc();
        self.bytes_in.inc_by(bytes as u64);
    }

    pub(crate) fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&KindLabel { kind }).inc();
    }

    pub(crate) fn errors_by(&self, kind: &'static str, n: u64) {
        self.errors.get_or_create(&KindLabel { kind }).inc_by(n);
    }

    pub(crate) fn reconnected(&self) {
        self.reconnects.inc();
    }

    pub(crate) fn set_subscriptions(&self, n: usize) {
        self.subscriptions.set(n as i64);
    }

    pub(crate) fn outbound_dropped(&self) {
        self.outbound_dropped.inc();
    }

    pub(crate) fn set_peers(&self, n: usize) {
        self.peers.set(n as i64);
    }

    pub(crate) fn set_up(&self, up: bool) {
        self.up.set(up as i64);
    }

    /// The round-trip histogram of bus `adapter` (`"nats"`, `"redis"`),
    /// resolved once by the bus when it is made: its series exist (at 0)
    /// from then on. Observe seconds.
    pub(crate) fn broker_rtt(&self, adapter: &'static str) -> Histogram {
        self.broker_rtt
            .get_or_create_owned(&AdapterLabel { adapter })
    }

    // Readers, for tests and for a health endpoint.

    #[cfg(any(test, feature = "internals"))]
    pub fn published_count(&self) -> u64 {
        self.published.get()
    }

    #[cfg(any(test, feature = "internals"))]
    pub fn received_count(&self) -> u64 {
        self.received.get()
    }

    #[cfg(any(test, feature = "internals"))]
    pub fn bytes_out_count(&self) -> u64 {
        self.bytes_out.get()
    }

    #[cfg(any(test, feature = "internals"))]
    pub fn bytes_in_count(&self) -> u64 {
        self.bytes_in.get()
    }

    /// `riptide_adapter_errors_total{kind}`.
    #[cfg(any(test, feature = "internals"))]
    pub fn error_count(&self, kind: &'static str) -> u64 {
        self.errors.get_or_create(&KindLabel { kind }).get()
    }

    #[cfg(any(test, feature = "internals"))]
    pub fn reconnect_count(&self) -> u64 {
        self.reconnects.get()
    }

    #[cfg(any(test, feature = "internals"))]
    pub fn subscription_count(&self) -> i64 {
        self.subscriptions.get()
    }

    #[cfg(any(test, feature = "internals"))]
    pub fn outbound_dropped_count(&self) -> u64 {
        self.outbound_dropped.get()
    }

    #[cfg(any(test, feature = "internals"))]
    pub fn peer_count(&self) -> i64 {
        self.peers.get()
    }

    #[cfg(any(test, feature = "internals"))]
    pub fn is_up(&self) -> bool {
        self.up.get() == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_rtt_series_exist_once_resolved_and_count_samples() {
        let mut r = Registry::with_prefix("riptide");
        let m = AdapterMetrics::register(&mut r);
        let encode = |r: &Registry| {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, r).unwrap();
            text
        };
        // An empty family is not exposed at all, not even its TYPE line.
        let text = encode(&r);
        assert!(!text.contains("riptide_adapter_broker_rtt"), "{text}");

        let rtt = m.broker_rtt("nats");
        let text = encode(&r);
        assert!(
            text.contains("riptide_adapter_broker_rtt_seconds_count{adapter=\"nats\"} 0\n"),
            "at 0 once the bus resolved it:\n{text}"
        );
        assert!(
            text.contains("# TYPE riptide_adapter_broker_rtt_seconds histogram"),
            "{text}"
        );
        rtt.observe(0.0004);
        let text = encode(&r);
        for line in [
            "riptide_adapter_broker_rtt_seconds_count{adapter=\"nats\"} 1",
            "riptide_adapter_broker_rtt_seconds_bucket{le=\"0.00025\",adapter=\"nats\"} 0",
            "riptide_adapter_broker_rtt_seconds_bucket{le=\"0.0005\",adapter=\"nats\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
    }
}
