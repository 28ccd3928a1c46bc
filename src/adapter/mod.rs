//! The cluster adapter: everything that crosses nodes goes through here.
//!
//! This is the lowest cluster layer. It knows brokers, subjects, envelopes
//! and peers; it knows nothing of actors, sockets or the HTTP server, and
//! imports nothing else of the crate: it owns its settings ([`settings`])
//! and registers its figures in a registry it is handed. The engine above it turns local
//! events into [`codec::Body`] values and inbound bodies back into local
//! deliveries.
//!
//! # Layers
//!
//! - [`Bus`]: moves opaque bytes between nodes by [`Topic`]. Three
//!   implementations, chosen by `[adapter] kind`: [`memory::MemoryBus`] (a
//!   single node: accepts publishes and delivers nothing; or, through a
//!   [`memory::MemoryHub`], an in-process cluster for tests),
//!   [`nats::NatsBus`] and [`redis::RedisBus`].
//! - [`subject`]: the one place that maps a [`Topic`] to a NATS subject or a
//!   Redis channel.
//! - [`codec`]: the one place that turns a [`codec::ClusterEnvelope`] into
//!   bytes and back (a fixed versioned header, then a bincode body).
//! - [`cluster::Cluster`]: on top of a bus: node identity, heartbeats and the
//!   peer table, per-origin sequence numbers, requests that know how many
//!   replies to wait for, interest (`room_joined` / `room_left`) and health.
//!
//! # Why it is shaped this way
//!
//! - **Interest routing.** A node subscribes to a room's topic only while it
//!   has a local member, so a broadcast reaches only the nodes that can
//!   deliver it. Interest is reference-counted in the bus (first subscribe
//!   subscribes, last unsubscribe unsubscribes) and applied by a reconcile
//!   loop that compares the wanted set with the broker's: bursts of joins and
//!   leaves coalesce, nothing queues up while the broker is away, and after a
//!   reconnect the same loop restores every subscription (Redis) or checks
//!   that the client did (NATS restores its own, see [`nats`]).
//! - **Publishing never blocks the engine.** [`Bus::publish`] is a `try_send`
//!   onto a queue bounded both in messages and in bytes
//!   ([`AdapterOptions::outbound_capacity`], [`AdapterOptions::outbound_max_bytes`]),
//!   drained by the bus's own task. While the broker is away the queue fills
//!   and further publishes fail with [`PublishError::BufferFull`] (counted in
//!   `riptide_adapter_outbound_dropped_total`): memory stays bounded, the
//!   node keeps serving its local clients, and what the queue held goes out
//!   (in order) once the broker is back.
//! - **A payload too large for the broker is refused at publish time**
//!   ([`PublishError::TooLarge`]), synchronously, so the emitter gets a clear
//!   error instead of a broker that closes the connection.
//! - **Inbound messages** go to the engine through one bounded
//!   `tokio::sync::mpsc` channel of [`Inbound`]; when the engine falls behind
//!   the bus drops and counts (`riptide_adapter_errors_total{kind="inbound_overflow"}`)
//!   rather than stall the broker connection that also carries heartbeats.
//! - **Ordering.** One publisher's messages on one topic arrive in the order
//!   sent (one outbound queue, one broker connection, one inbound channel per
//!   subscription). Across topics the order is not promised (async-nats hands
//!   each subscription its own channel); local delivery makes no such promise
//!   either (each room is its own actor).
//! - **A broker down at start does not stop the node**: [`connect`] returns a
//!   bus that reports [`BusStatus::Degraded`] and keeps retrying with capped,
//!   jittered backoff. A malformed URL is a configuration error naming
//!   `adapter.url`.

pub mod cluster;
pub mod codec;
mod core;
pub mod memory;
pub mod metrics;
pub mod nats;
pub mod notify;
pub mod redis;
pub mod settings;
pub mod store;
pub mod subject;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use slog::Logger;
use tokio::sync::mpsc;

#[cfg_attr(not(feature = "internals"), allow(unused_imports))] // for tests and benches
pub use self::settings::{AdapterKind, AdapterSettings, InvalidSetting};

#[cfg_attr(not(feature = "internals"), allow(unused_imports))] // for tests and benches
pub use self::cluster::{
    Cluster, ClusterEvent, ClusterOptions, ClusterStatus, PeerDownReason, RequestOutcome,
};
#[cfg_attr(not(feature = "internals"), allow(unused_imports))] // for tests and benches
#[cfg(any(test, feature = "internals"))]
pub use self::codec::ClusterEnvelope;
#[cfg_attr(not(feature = "internals"), allow(unused_imports))] // for tests and benches
pub use self::codec::{
    Body, Broadcast, CodecError, RemoteSocket, RequestOp, ResponsePayload, WireFrame,
};
pub use self::memory::MemoryBus;
#[cfg(any(test, feature = "internals"))]
pub use self::memory::MemoryHub;
#[cfg_attr(not(feature = "internals"), allow(unused_imports))] // for tests and benches
pub use self::metrics::AdapterMetrics;
#[cfg_attr(not(feature = "internals"), allow(unused_imports))] // for tests and benches
pub use self::nats::NatsBus;
#[cfg_attr(not(feature = "internals"), allow(unused_imports))] // for tests and benches
pub use self::redis::RedisBus;

/// Where a message goes. Each maps to one NATS subject / Redis channel
/// ([`subject::subject`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// Every node with at least one socket in namespace `ns`.
    Namespace { ns: String },
    /// Every node with at least one local member of `room` in `ns`.
    Room { ns: String, room: String },
    /// One node: requests addressed to it and replies to its requests.
    Node(NodeId),
    /// Every node: heartbeats, goodbyes and cluster-wide requests.
    Nodes,
}

impl Topic {
    pub fn namespace(ns: impl Into<String>) -> Topic {
        Topic::Namespace { ns: ns.into() }
    }

    pub fn room(ns: impl Into<String>, room: impl Into<String>) -> Topic {
        Topic::Room {
            ns: ns.into(),
            room: room.into(),
        }
    }
}

/// Length of a [`NodeId`] in characters.
pub const NODE_ID_LEN: usize = 12;

/// A node's identity in the cluster: 12 random characters from `[a-z0-9]`
/// (about 62 bits), new for every process, printable and usable as a NATS
/// subject token and a log value as is. `Copy`, no allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId([u8; NODE_ID_LEN]);

const NODE_ID_ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

impl NodeId {
    /// A fresh random id.
    pub fn random() -> NodeId {
        use rand::Rng;
        let mut rng = rand::rng();
        let mut id = [0u8; NODE_ID_LEN];
        for b in &mut id {
            *b = NODE_ID_ALPHABET[rng.random_range(0..NODE_ID_ALPHABET.len())];
        }
        NodeId(id)
    }

    pub fn as_str(&self) -> &str {
        // Only ever built from ASCII (checked in `from_bytes`).
        std::str::from_utf8(&self.0).unwrap_or("????????????")
    }

    pub fn as_bytes(&self) -> &[u8; NODE_ID_LEN] {
        &self.0
    }

    /// Validates: exactly `NODE_ID_LEN` (12) bytes of `[a-z0-9]`.
    pub fn from_bytes(bytes: &[u8]) -> Option<NodeId> {
        let id: [u8; NODE_ID_LEN] = bytes.try_into().ok()?;
        id.iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            .then_some(NodeId(id))
    }
}

impl FromStr for NodeId {
    type Err = InvalidNodeId;
    fn from_str(s: &str) -> Result<NodeId, InvalidNodeId> {
        NodeId::from_bytes(s.as_bytes()).ok_or(InvalidNodeId)
    }
}

/// A string that is not a [`NodeId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a node id: expected {NODE_ID_LEN} characters of [a-z0-9]")]
pub struct InvalidNodeId;

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.as_str())
    }
}

impl slog::Value for NodeId {
    fn serialize(
        &self,
        _record: &slog::Record<'_>,
        key: slog::Key,
        serializer: &mut dyn slog::Serializer,
    ) -> slog::Result {
        serializer.emit_str(key, self.as_str())
    }
}

/// A message received from another node, as the bus hands it to the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// The topic it arrived on (one of this node's subscriptions).
    pub topic: Topic,
    pub payload: Bytes,
}

/// Whether the bus can currently reach its broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusStatus {
    Up,
    /// The broker is unreachable (or not reached yet) since `since`. Local
    /// clients are still served; publishes are buffered up to the bound.
    Degraded {
        since: SystemTime,
        reason: String,
    },
}

impl BusStatus {
    pub fn is_up(&self) -> bool {
        matches!(self, BusStatus::Up)
    }
}

/// Why [`Bus::publish`] refused a message. Every refusal is counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The encoded message is larger than the broker accepts ([`Bus::max_payload`]).
    #[error("cluster message of {size} bytes is over the broker's maximum of {max} bytes")]
    TooLarge { size: usize, max: usize },
    /// The outbound buffer is full (broker away or too slow); the message was dropped.
    #[error("cluster outbound buffer full: message dropped")]
    BufferFull,
    /// The bus has been shut down.
    #[error("cluster bus closed")]
    Closed,
}

/// Why the adapter could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdapterError {
    /// A setting is malformed; `key` names it (`adapter.url`).
    #[error("{key}: {reason}")]
    InvalidSetting { key: &'static str, reason: String },
}

/// The bus every cross-node message goes through. See the module doc.
pub trait Bus: Send + Sync + 'static {
    /// Non-blocking: queues onto a bounded outbound buffer drained by the
    /// bus's own task. Errors: [`PublishError::TooLarge`] (payload over
    /// [`Bus::max_payload`]), [`PublishError::BufferFull`] (counted in
    /// `riptide_adapter_outbound_dropped_total`), [`PublishError::Closed`].
    fn publish(&self, topic: &Topic, payload: Bytes) -> Result<(), PublishError>;

    /// Reference-counted interest: the broker subscription exists while the
    /// count is above zero (first subscribe subscribes, last unsubscribe
    /// unsubscribes). Returns at once; the broker is told in the background.
    fn subscribe(&self, topic: &Topic);

    /// See [`Bus::subscribe`]. Unsubscribing a topic never subscribed is a no-op.
    fn unsubscribe(&self, topic: &Topic);

    fn status(&self) -> BusStatus;

    /// The largest payload [`Bus::publish`] accepts. NATS: the server's
    /// `max_payload` from its INFO (1 MiB until the first INFO). Redis and
    /// memory: [`AdapterOptions::max_payload`] (Redis itself would take up to
    /// 512 MiB, but a subscriber's output buffer is cut at 32 MiB by default
    /// and large pub/sub messages stall every node: the cap keeps messages
    /// the size NATS allows, so an application behaves the same on both).
    fn max_payload(&self) -> usize;

    /// Wait until every [`Bus::subscribe`] and [`Bus::unsubscribe`] made
    /// before this call is in effect at the broker (a message another node
    /// publishes from then on reaches this one), or `timeout` passes; true
    /// if it was in time. For an operation that promises its membership is
    /// in effect cluster-wide when it answers (service mode's `subscribe`).
    fn synced(&self, timeout: Duration) -> futures_util::future::BoxFuture<'_, bool>;

    /// Wait until everything published so far has been handed to the broker
    /// (or `timeout` passes); true if it was. For a clean stop (a goodbye
    /// must leave before the connection closes) and for tests.
    fn flush(&self, timeout: Duration) -> futures_util::future::BoxFuture<'_, bool>;
}

/// Tuning of the adapter. Not in `[adapter]` (yet): the defaults are meant
/// for production and tests shorten the timers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterOptions {
    /// Messages the outbound buffer holds while the broker is slow or away.
    pub outbound_capacity: usize,
    /// Bytes the outbound buffer holds (payloads); with `outbound_capacity`
    /// this bounds the memory publishes can take while the broker is away.
    pub outbound_max_bytes: usize,
    /// Inbound messages waiting for the engine; beyond that they are dropped
    /// and counted.
    pub inbound_capacity: usize,
    /// Payload cap for Redis and memory (NATS uses the server's). 1 MiB,
    /// NATS's default.
    pub max_payload: usize,
    /// First reconnect delay after the immediate retry; doubles per attempt.
    pub reconnect_min: Duration,
    /// Cap of the reconnect delay (before jitter): every node is back within
    /// about this long after the broker is, so cross-node traffic resumes
    /// within about `reconnect_max + settle_after_reconnect`.
    pub reconnect_max: Duration,
    /// After an outage, what was buffered waits this long once the bus is
    /// up again before it goes: long enough for the other nodes, which retry
    /// at most `reconnect_max` apart, to have subscribed again, so the
    /// buffer is not delivered to a broker that has nobody to hand it to.
    pub settle_after_reconnect: Duration,
    /// One connection attempt's limit.
    pub connect_timeout: Duration,
    /// Redis: how often an idle subscriber connection is pinged, and how
    /// long a ping may take before the connection is declared dead. NATS
    /// pings on its own (async-nats's `ping_interval`, set to this too).
    pub ping_interval: Duration,
}

impl Default for AdapterOptions {
    fn default() -> Self {
        Self {
            // ~ a few seconds of a busy node's cluster traffic.
            outbound_capacity: 8192,
            outbound_max_bytes: 64 << 20,
            inbound_capacity: 8192,
            max_payload: 1 << 20,
            reconnect_min: Duration::from_millis(50),
            // A node retries 7 to 13 times a second while the broker is
            // away (jittered): nothing for a broker, and the node is back
            // within 150 ms of the broker's return, not seconds later.
            reconnect_max: Duration::from_millis(150),
            settle_after_reconnect: Duration::from_millis(200),
            connect_timeout: Duration::from_secs(2),
            ping_interval: Duration::from_secs(5),
        }
    }
}

/// [`connect`] with explicit options and metrics handles. Must run inside a
/// Tokio runtime (the bus spawns its tasks there). Returns at once even if
/// the broker is down: the bus starts degraded and keeps retrying.
pub async fn connect_with(
    settings: &AdapterSettings,
    options: &AdapterOptions,
    node: NodeId,
    metrics: &AdapterMetrics,
    log: &Logger,
) -> Result<(Arc<dyn Bus>, mpsc::Receiver<Inbound>), AdapterError> {
    let (tx, rx) = mpsc::channel(options.inbound_capacity.max(1));
    let log = log.new(slog::o!("adapter" => settings.kind, "node" => node));
    let bus: Arc<dyn Bus> = match settings.kind {
        AdapterKind::Memory => Arc::new(MemoryBus::standalone(options, metrics.clone())),
        AdapterKind::Nats => {
            Arc::new(NatsBus::connect(settings, options, node, tx, metrics, &log).await?)
        }
        AdapterKind::Redis => Arc::new(RedisBus::connect(
            &settings.url,
            settings.ca_file(),
            &settings.prefix,
            options,
            tx,
            metrics,
            &log,
        )?),
    };
    Ok((bus, rx))
}

/// Capped exponential backoff with jitter: `attempt` 0 is immediate, then
/// `min * 2^(attempt-1)` capped at `max`, each scaled by a random factor in
/// [0.5, 1.0] so a cluster that lost its broker does not reconnect in lockstep.
pub(crate) fn backoff(attempt: u32, min: Duration, max: Duration) -> Duration {
    use rand::Rng;
    if attempt == 0 {
        return Duration::ZERO;
    }
    let exp = min.saturating_mul(1u32 << (attempt - 1).min(20));
    let capped = exp.min(max);
    capped.mul_f64(rand::rng().random_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_printable_and_parse_back() {
        for _ in 0..100 {
            let id = NodeId::random();
            assert_eq!(id.as_str().len(), NODE_ID_LEN);
            assert_eq!(id.as_str().parse::<NodeId>(), Ok(id));
            assert!(id.as_str().bytes().all(|b| b.is_ascii_alphanumeric()));
        }
        assert_ne!(NodeId::random(), NodeId::random());
        assert!("short".parse::<NodeId>().is_err());
        assert!("ABCDEFGHIJKL".parse::<NodeId>().is_err());
        assert!("abc.efghijkl".parse::<NodeId>().is_err());
    }

    #[test]
    fn backoff_grows_capped_with_jitter() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(5));
        assert_eq!(backoff(0, min, max), Duration::ZERO);
        let first = backoff(1, min, max);
        assert!(first >= min / 2 && first <= min, "{first:?}");
        for attempt in 10..40 {
            let d = backoff(attempt, min, max);
            assert!(d >= max / 2 && d <= max, "{d:?}");
        }
    }
}
