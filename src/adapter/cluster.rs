//! The cluster on top of a [`Bus`]: who the other nodes are, envelopes with
//! sequence numbers, requests that know how many replies to wait for, and
//! interest.
//!
//! # Peers
//!
//! Every node publishes a heartbeat on [`Topic::Nodes`] every
//! `heartbeat_interval` (the first at start), and answers a newcomer's first
//! heartbeat with one of its own on the newcomer's [`Topic::Node`], so
//! discovery takes one round trip rather than one interval. Any envelope on
//! `Topic::Nodes` makes its origin a peer; a peer silent for
//! `heartbeat_timeout` is dropped, and a [`Body::Goodbye`] drops it at once.
//! (Only `Topic::Nodes` adds peers: it is ordered per origin, so nothing can
//! follow a goodbye there, while a room message may overtake it.)
//!
//! # Requests
//!
//! [`Cluster::request`] snapshots the live peers, publishes on
//! `Topic::Nodes`, and waits for exactly those: it returns as soon as all of
//! them answered, or were dropped as peers meanwhile, or when the timeout
//! passes, with what arrived and who did not answer
//! ([`RequestOutcome::missing`]). A node that dies mid-request therefore
//! costs the caller at most the timeout, never a hang. Answers from nodes
//! that joined after the send are kept but not waited for.
//!
//! # Sequence numbers
//!
//! Each node numbers everything it publishes with one counter (`seq`,
//! strictly increasing, never reset while the process lives; a restarted
//! node is a new [`NodeId`]). The number is stamped under the same lock that
//! queues the message, so a node's messages enter the bus in `seq` order;
//! the bus keeps per-topic order. A receiver therefore drops any message
//! whose `seq` is not above the last it saw from that origin on that topic,
//! counted as `errors_total{kind="duplicate"}` (Redis re-sends a batch after
//! a failed pipeline; a retried batch can repeat messages). The state is per
//! (origin, topic), pruned when the topic is left or the peer dropped.
//!
//! Gaps cannot be seen from `seq` alone, since a node only receives the
//! topics it subscribes to. The cluster-wide stream is what requests ride
//! on, so there each heartbeat carries `nodes_sent`, the number of envelopes
//! its sender published on `Topic::Nodes`; a receiver compares that with the
//! count it received and counts the difference as `errors_total{kind="gap"}`
//! (broker outages, inbound overflow).
//!
//! # Own messages
//!
//! Envelopes whose origin is this node are ignored: a node delivers its own
//! broadcasts locally and answers its own requests itself.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::Mutex;
use slog::{debug, info, warn, Logger};
use tokio::sync::{mpsc, oneshot};

use super::codec::{self, Body, Broadcast, RemoteSocket, RequestOp, ResponsePayload};
use super::core::Tasks;
use super::settings::AdapterSettings;
use super::{
    connect_with, AdapterError, AdapterMetrics, AdapterOptions, Bus, BusStatus, Inbound, NodeId,
    PublishError, Topic,
};

/// Timers and bounds of a [`Cluster`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterOptions {
    pub heartbeat_interval: Duration,
    /// A peer not heard from for this long is dropped.
    pub heartbeat_timeout: Duration,
    /// [`ClusterEvent`]s waiting for the engine; beyond that they are dropped
    /// and counted (`errors_total{kind="event_overflow"}`).
    pub events_capacity: usize,
    /// This node's HTTP address for the other nodes, sent in heartbeats
    /// ([`Cluster::peer_url`]); empty: it takes no forwarded requests.
    pub http_url: String,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(1),
            heartbeat_timeout: Duration::from_secs(3),
            events_capacity: 8192,
            http_url: String::new(),
        }
    }
}

/// What the engine must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterEvent {
    /// Deliver to the matching local sockets. `via` is the topic it came
    /// through: for `Topic::Room`, deliver through that room only (a socket in
    /// several target rooms takes it from the first listed one it is in, as
    /// locally); for `Topic::Namespace` with target rooms, they are socket
    /// ids (see `BroadcastOperator`).
    Broadcast {
        origin: NodeId,
        via: Topic,
        broadcast: Broadcast,
    },
    /// Run `op` locally and answer with [`Cluster::respond`]`(request_id,
    /// reply_to, ..)`, unless it came from [`Cluster::notify`] (`request_id`
    /// 0: nobody waits for an answer).
    Request {
        origin: NodeId,
        request_id: u64,
        reply_to: NodeId,
        op: RequestOp,
    },
    PeerUp(NodeId),
    PeerDown {
        node: NodeId,
        reason: PeerDownReason,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerDownReason {
    /// No heartbeat for `heartbeat_timeout`.
    Timeout,
    /// It said goodbye (a clean stop).
    Goodbye,
}

/// What a request got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestOutcome {
    /// One answer per node, in arrival order.
    pub responses: Vec<(NodeId, ResponsePayload)>,
    /// Peers known at send time that did not answer (timed out, or dropped
    /// as peers meanwhile), sorted.
    pub missing: Vec<NodeId>,
}

/// For `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterStatus {
    Ok,
    Degraded,
}

impl ClusterStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            ClusterStatus::Ok => "ok",
            ClusterStatus::Degraded => "degraded",
        }
    }
}

struct Peer {
    last_seen: Instant,
    started_at_ms: u64,
    /// Its HTTP address, from its heartbeats (empty until one arrived, or
    /// when it takes no forwarded requests).
    http_url: String,
    /// Envelopes received from it on `Topic::Nodes`.
    nodes_received: u64,
    /// `nodes_sent - nodes_received` at its first heartbeat we saw.
    baseline: Option<u64>,
}

struct Pending {
    expected: HashSet<NodeId>,
    answered: HashSet<NodeId>,
    lost: HashSet<NodeId>,
    responses: Vec<(NodeId, ResponsePayload)>,
    /// `fetchSockets` parts received ahead of a node's last part.
    parts: HashMap<NodeId, Vec<RemoteSocket>>,
    done: Option<oneshot::Sender<()>>,
}

impl Pending {
    fn check_done(&mut self) {
        let all = self
            .expected
            .iter()
            .all(|n| self.answered.contains(n) || self.lost.contains(n));
        if all {
            if let Some(done) = self.done.take() {
                let _ = done.send(());
            }
        }
    }
}

struct Counters {
    seq: u64,
    nodes_sent: u64,
}

struct Shared {
    node: NodeId,
    started_at_ms: u64,
    bus: Arc<dyn Bus>,
    metrics: AdapterMetrics,
    log: Logger,
    options: ClusterOptions,
    counters: Mutex<Counters>,
    peers: Mutex<HashMap<NodeId, Peer>>,
    pending: Mutex<HashMap<u64, Pending>>,
    next_request: AtomicU64,
    last_seq: Mutex<HashMap<(NodeId, Topic), u64>>,
    events: mpsc::Sender<ClusterEvent>,
    unknown_versions: AtomicU64,
    stopped: AtomicBool,
}

/// A node's membership in the cluster. Cheap to clone; when the last clone
/// is dropped its tasks stop *without* a goodbye (peers see a crash and drop
/// it after `heartbeat_timeout`): call [`Cluster::shutdown`] for a clean stop.
#[derive(Clone)]
pub struct Cluster {
    shared: Arc<Shared>,
    tasks: Arc<Mutex<Tasks>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Cluster {
    /// The whole stack from settings: a random node id, the bus (counting in
    /// `metrics`, registered by the caller), the cluster.
    pub async fn start(
        settings: &AdapterSettings,
        adapter: &AdapterOptions,
        options: ClusterOptions,
        metrics: AdapterMetrics,
        log: &Logger,
    ) -> Result<(Cluster, mpsc::Receiver<ClusterEvent>), AdapterError> {
        let node = NodeId::random();
        let (bus, inbound) = connect_with(settings, adapter, node, &metrics, log).await?;
        let log = log.new(slog::o!("node" => node));
        Ok(Cluster::new(bus, inbound, node, options, metrics, &log))
    }

    /// Run a cluster over `bus` (whose inbound channel is `inbound`). Must be
    /// called inside a Tokio runtime: it spawns the inbound and timer tasks.
    pub fn new(
        bus: Arc<dyn Bus>,
        inbound: mpsc::Receiver<Inbound>,
        node: NodeId,
        options: ClusterOptions,
        metrics: AdapterMetrics,
        log: &Logger,
    ) -> (Cluster, mpsc::Receiver<ClusterEvent>) {
        let (events_tx, events_rx) = mpsc::channel(options.events_capacity.max(1));
        bus.subscribe(&Topic::Nodes);
        bus.subscribe(&Topic::Node(node));
        metrics.set_peers(0);
        let shared = Arc::new(Shared {
            node,
            started_at_ms: now_ms(),
            bus,
            metrics,
            log: log.clone(),
            options,
            counters: Mutex::new(Counters {
                seq: 0,
                nodes_sent: 0,
            }),
            peers: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(1),
            last_seq: Mutex::new(HashMap::new()),
            events: events_tx,
            unknown_versions: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
        });
        let mut tasks = Tasks::default();
        tasks.push(tokio::spawn(receive(shared.clone(), inbound)));
        tasks.push(tokio::spawn(timers(shared.clone())));
        info!(shared.log, "cluster node started");
        (
            Cluster {
                shared,
                tasks: Arc::new(Mutex::new(tasks)),
            },
            events_rx,
        )
    }

    /// The HTTP address live peer `node` announced, if any.
    pub fn peer_url(&self, node: NodeId) -> Option<String> {
        let peers = self.shared.peers.lock();
        let url = &peers.get(&node)?.http_url;
        (!url.is_empty()).then(|| url.clone())
    }

    pub fn node(&self) -> NodeId {
        self.shared.node
    }

    /// The live peers (not this node), sorted.
    pub fn peers(&self) -> Vec<NodeId> {
        let mut peers: Vec<NodeId> = self.shared.peers.lock().keys().copied().collect();
        peers.sort();
        peers
    }

    pub fn bus_status(&self) -> BusStatus {
        self.shared.bus.status()
    }

    /// `ok` while the broker is reachable, `degraded` while it is not (local
    /// clients are served either way).
    pub fn status(&self) -> ClusterStatus {
        if self.shared.bus.status().is_up() {
            ClusterStatus::Ok
        } else {
            ClusterStatus::Degraded
        }
    }

    /// The largest envelope the bus accepts.
    #[cfg(any(test, feature = "internals"))]
    pub fn max_payload(&self) -> usize {
        self.shared.bus.max_payload()
    }

    /// Wait until the room and namespace subscriptions asked for so far are
    /// in effect at the broker, at most `timeout` ([`super::Bus::synced`]).
    pub async fn synced(&self, timeout: Duration) -> bool {
        self.shared.bus.synced(timeout).await
    }

    /// The first local member of `room` joined: receive the room's traffic.
    pub fn room_joined(&self, ns: &str, room: &str) {
        self.shared.bus.subscribe(&Topic::room(ns, room));
    }

    /// The last local member of `room` left.
    pub fn room_left(&self, ns: &str, room: &str) {
        self.left(Topic::room(ns, room));
    }

    /// The first local socket connected to `ns`.
    pub fn namespace_joined(&self, ns: &str) {
        self.shared.bus.subscribe(&Topic::namespace(ns));
    }

    /// The last local socket left `ns`.
    pub fn namespace_left(&self, ns: &str) {
        self.left(Topic::namespace(ns));
    }

    fn left(&self, topic: Topic) {
        self.shared.bus.unsubscribe(&topic);
        self.shared.last_seq.lock().retain(|(_, t), _| *t != topic);
    }

    /// Send `broadcast` to the other nodes that can deliver it: one envelope
    /// per target room on that room's topic, or one on the namespace topic
    /// when `rooms` is empty. An error means at least one topic was not
    /// published (the others were).
    #[cfg(any(test, feature = "internals"))]
    pub fn broadcast(&self, broadcast: Broadcast) -> Result<(), PublishError> {
        let topics: Vec<Topic> = if broadcast.rooms.is_empty() {
            vec![Topic::namespace(broadcast.ns.clone())]
        } else {
            let mut seen = HashSet::new();
            broadcast
                .rooms
                .iter()
                .filter(|r| seen.insert(r.as_str()))
                .map(|r| Topic::room(broadcast.ns.clone(), r.clone()))
                .collect()
        };
        self.publish_on(&topics, &Body::Broadcast(broadcast))
    }

    /// Send `broadcast` on exactly `topics` (the caller routed it).
    pub fn broadcast_on(&self, topics: &[Topic], broadcast: Broadcast) -> Result<(), PublishError> {
        self.publish_on(topics, &Body::Broadcast(broadcast))
    }

    fn publish_on(&self, topics: &[Topic], body: &Body) -> Result<(), PublishError> {
        let body = codec::encode_body(body);
        let mut result = Ok(());
        for topic in topics {
            if let Err(e) = self.shared.send(topic, body.clone()) {
                result = result.and(Err(e));
            }
        }
        result
    }

    /// Tell every node to run `op`, answering nothing (request id 0): for
    /// operations whose caller does not wait, such as `serverSideEmit`
    /// without acks.
    pub fn notify(&self, op: RequestOp) -> Result<(), PublishError> {
        let body = Body::Request {
            request_id: 0,
            reply_to: self.shared.node,
            op,
        };
        self.shared.send(&Topic::Nodes, codec::encode_body(&body))
    }

    /// Ask every live peer; see the module doc.
    pub async fn request(
        &self,
        op: RequestOp,
        timeout: Duration,
    ) -> Result<RequestOutcome, PublishError> {
        let request_id = self.shared.next_request.fetch_add(1, Ordering::Relaxed);
        let body = Body::Request {
            request_id,
            reply_to: self.shared.node,
            op,
        };
        let expected = self.peer_set();
        self.shared
            .await_replies(request_id, &Topic::Nodes, body, expected, timeout)
            .await
    }

    /// Ask one node. Not a live peer: it is `missing` at once, nothing sent.
    #[cfg(any(test, feature = "internals"))]
    pub async fn request_to(
        &self,
        node: NodeId,
        op: RequestOp,
        timeout: Duration,
    ) -> Result<RequestOutcome, PublishError> {
        if !self.shared.peers.lock().contains_key(&node) {
            return Ok(RequestOutcome {
                responses: Vec::new(),
                missing: vec![node],
            });
        }
        let request_id = self.shared.next_request.fetch_add(1, Ordering::Relaxed);
        let body = Body::Request {
            request_id,
            reply_to: self.shared.node,
            op,
        };
        let expected = HashSet::from([node]);
        self.shared
            .await_replies(request_id, &Topic::Node(node), body, expected, timeout)
            .await
    }

    /// Answer a request from `reply_to`. A `fetchSockets` answer larger
    /// than the broker's maximum message is sent in parts
    /// ([`ResponsePayload::SocketsPart`]s, then the last as `Sockets`), which
    /// the requester joins; one socket description too large on its own is
    /// left out, logged and counted (`errors_total{kind="too_large"}`).
    pub fn respond(
        &self,
        request_id: u64,
        reply_to: NodeId,
        payload: ResponsePayload,
    ) -> Result<(), PublishError> {
        if request_id == 0 {
            // A notification: nobody waits.
            return Ok(());
        }
        let topic = Topic::Node(reply_to);
        let response = |payload| Body::Response {
            request_id,
            from: self.shared.node,
            payload,
        };
        let max = self.shared.bus.max_payload();
        // Measured, not encoded: the split path never encodes the whole.
        let body = response(payload);
        if codec::HEADER_LEN + codec::encoded_len(&body) <= max {
            return self.shared.send(&topic, codec::encode_body(&body));
        }
        let Body::Response {
            payload: ResponsePayload::Sockets(sockets),
            ..
        } = body
        else {
            // Not splittable: the bus refuses it as too large.
            return self.shared.send(&topic, codec::encode_body(&body));
        };
        let parts = self.split_sockets(sockets, max);
        let last = parts.len().saturating_sub(1);
        let mut result = Ok(());
        for (i, part) in parts.into_iter().enumerate() {
            let payload = if i == last {
                ResponsePayload::Sockets(part)
            } else {
                ResponsePayload::SocketsPart(part)
            };
            if let Err(e) = self
                .shared
                .send(&topic, codec::encode_body(&response(payload)))
            {
                result = result.and(Err(e));
            }
        }
        result
    }

    /// Socket descriptions in parts whose envelopes fit in `max` bytes.
    fn split_sockets(&self, sockets: Vec<RemoteSocket>, max: usize) -> Vec<Vec<RemoteSocket>> {
        // Envelope header, the Response and Vec framing: generously bounded.
        const OVERHEAD: usize = codec::HEADER_LEN + 64;
        let budget = max.saturating_sub(OVERHEAD);
        let mut parts = vec![Vec::new()];
        let mut used = 0;
        for socket in sockets {
            let size = codec::encoded_len(&socket);
            if size > budget {
                self.shared.metrics.error("too_large");
                warn!(self.shared.log, "socket description too large for the broker; left out of fetchSockets";
                    "socket" => &socket.id, "size" => size, "max" => max);
                continue;
            }
            if used + size > budget {
                parts.push(Vec::new());
                used = 0;
            }
            used += size;
            parts.last_mut().expect("one part at least").push(socket);
        }
        parts
    }

    /// Stop cleanly: say goodbye (peers drop this node at once), wait up to
    /// `timeout` for it to reach the broker, stop the tasks. Publishing
    /// afterwards fails with [`PublishError::Closed`].
    pub async fn shutdown(&self, timeout: Duration) {
        if self.shared.stopped.load(Ordering::Acquire) {
            return;
        }
        let _ = self
            .shared
            .send(&Topic::Nodes, codec::encode_body(&Body::Goodbye));
        self.shared.stopped.store(true, Ordering::Release);
        self.shared.bus.flush(timeout).await;
        *self.tasks.lock() = Tasks::default();
        info!(self.shared.log, "cluster node stopped");
    }

    fn peer_set(&self) -> HashSet<NodeId> {
        self.shared.peers.lock().keys().copied().collect()
    }
}

/// Removes a request's entry however its wait ends (including the caller's
/// future being dropped).
struct PendingGuard<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared.pending.lock().remove(&self.id);
    }
}

impl Shared {
    /// Stamp the next `seq` on an encoded body and queue it: under one lock,
    /// so messages enter the bus in `seq` order.
    fn send(&self, topic: &Topic, mut buf: Vec<u8>) -> Result<(), PublishError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(PublishError::Closed);
        }
        let mut counters = self.counters.lock();
        counters.seq += 1;
        codec::stamp(&mut buf, codec::VERSION, self.node, counters.seq);
        let result = self.bus.publish(topic, Bytes::from(buf));
        if result.is_ok() && *topic == Topic::Nodes {
            counters.nodes_sent += 1;
        }
        result
    }

    /// A heartbeat on `topic`; on `Topic::Nodes` it counts itself in `nodes_sent`.
    fn heartbeat(&self, topic: &Topic) {
        if self.stopped.load(Ordering::Acquire) {
            return;
        }
        let mut counters = self.counters.lock();
        let on_nodes = *topic == Topic::Nodes;
        counters.seq += 1;
        let body = Body::Heartbeat {
            started_at_ms: self.started_at_ms,
            nodes_sent: counters.nodes_sent + on_nodes as u64,
            http_url: self.options.http_url.clone(),
        };
        let mut buf = codec::encode_body(&body);
        codec::stamp(&mut buf, codec::VERSION, self.node, counters.seq);
        match self.bus.publish(topic, Bytes::from(buf)) {
            Ok(()) => {
                if on_nodes {
                    counters.nodes_sent += 1;
                }
            }
            Err(e) => debug!(self.log, "heartbeat not sent"; "error" => %e),
        }
    }

    async fn await_replies(
        &self,
        request_id: u64,
        topic: &Topic,
        body: Body,
        expected: HashSet<NodeId>,
        timeout: Duration,
    ) -> Result<RequestOutcome, PublishError> {
        let (done_tx, done_rx) = oneshot::channel();
        let mut pending = Pending {
            expected,
            answered: HashSet::new(),
            lost: HashSet::new(),
            responses: Vec::new(),
            parts: HashMap::new(),
            done: Some(done_tx),
        };
        pending.check_done();
        // Registered before sending, so a fast answer finds it.
        self.pending.lock().insert(request_id, pending);
        let guard = PendingGuard {
            shared: self,
            id: request_id,
        };
        self.send(topic, codec::encode_body(&body))?;
        let _ = tokio::time::timeout(timeout, done_rx).await;
        let Some(pending) = self.pending.lock().remove(&request_id) else {
            return Ok(RequestOutcome::default());
        };
        drop(guard);
        let mut missing: Vec<NodeId> = pending
            .expected
            .iter()
            .filter(|n| !pending.answered.contains(n))
            .copied()
            .collect();
        missing.sort();
        if !missing.is_empty() {
            debug!(self.log, "request: some nodes did not answer";
                "request_id" => request_id, "missing" => missing.len());
        }
        Ok(RequestOutcome {
            responses: pending.responses,
            missing,
        })
    }

    fn emit(&self, event: ClusterEvent) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.events.try_send(event) {
            self.metrics.error("event_overflow");
        }
    }

    fn handle(&self, inbound: Inbound) {
        let Inbound { topic, payload } = inbound;
        let header = match codec::decode_header(&payload) {
            Ok(h) => h,
            Err(e) => return self.bad_envelope(e),
        };
        if header.origin == self.node {
            return;
        }
        {
            let mut last_seq = self.last_seq.lock();
            let last = last_seq.entry((header.origin, topic.clone())).or_insert(0);
            if header.seq <= *last {
                drop(last_seq);
                self.metrics.error("duplicate");
                debug!(self.log, "duplicate envelope dropped";
                    "origin" => header.origin, "seq" => header.seq);
                return;
            }
            *last = header.seq;
        }
        let body = match codec::decode_body(&payload) {
            Ok(b) => b,
            Err(e) => return self.bad_envelope(e),
        };
        let origin = header.origin;
        let on_nodes = topic == Topic::Nodes;
        if on_nodes && matches!(body, Body::Goodbye) {
            self.drop_peer(origin, PeerDownReason::Goodbye);
            return;
        }
        if on_nodes || matches!(body, Body::Heartbeat { .. }) {
            self.seen(origin, &body, on_nodes);
        } else if let Some(peer) = self.peers.lock().get_mut(&origin) {
            peer.last_seen = Instant::now();
        }
        match body {
            Body::Heartbeat { .. } | Body::Goodbye => {}
            Body::Broadcast(broadcast) => {
                let routed = match &topic {
                    Topic::Room { ns, room } => {
                        *ns == broadcast.ns && broadcast.rooms.iter().any(|r| r == room)
                    }
                    Topic::Namespace { ns } => *ns == broadcast.ns,
                    Topic::Nodes | Topic::Node(_) => true,
                };
                if !routed {
                    // Only on a 128-bit subject hash collision.
                    debug!(self.log, "broadcast for another room dropped");
                    return;
                }
                self.emit(ClusterEvent::Broadcast {
                    origin,
                    via: topic,
                    broadcast,
                });
            }
            Body::Request {
                request_id,
                reply_to,
                op,
            } => self.emit(ClusterEvent::Request {
                origin,
                request_id,
                reply_to,
                op,
            }),
            Body::Response {
                request_id,
                payload,
                ..
            } => {
                let mut pending = self.pending.lock();
                match pending.get_mut(&request_id) {
                    Some(p) if !p.answered.contains(&origin) => match payload {
                        ResponsePayload::SocketsPart(part) => {
                            p.parts.entry(origin).or_default().extend(part);
                        }
                        ResponsePayload::Sockets(last) => {
                            let mut all = p.parts.remove(&origin).unwrap_or_default();
                            all.extend(last);
                            p.answered.insert(origin);
                            p.responses.push((origin, ResponsePayload::Sockets(all)));
                            p.check_done();
                        }
                        payload => {
                            p.answered.insert(origin);
                            p.responses.push((origin, payload));
                            p.check_done();
                        }
                    },
                    Some(_) => {}
                    None => {
                        drop(pending);
                        self.metrics.error("late_response");
                    }
                }
            }
        }
    }

    fn bad_envelope(&self, error: codec::CodecError) {
        self.metrics.error(error.kind());
        if let codec::CodecError::UnknownVersion(version) = error {
            // Logged once per 1000: a rolling upgrade would flood the log.
            let n = self.unknown_versions.fetch_add(1, Ordering::Relaxed);
            if n.is_multiple_of(1000) {
                warn!(self.log, "cluster envelope of unknown version ignored";
                    "version" => version, "reads" => codec::VERSION, "seen" => n + 1);
            }
        } else {
            warn!(self.log, "malformed cluster envelope ignored"; "error" => %error);
        }
    }

    /// An envelope from `origin` on `Topic::Nodes`, or a heartbeat on any
    /// topic: it is alive.
    fn seen(&self, origin: NodeId, body: &Body, on_nodes: bool) {
        let mut peers = self.peers.lock();
        let now = Instant::now();
        let started_at_ms = match body {
            Body::Heartbeat { started_at_ms, .. } => *started_at_ms,
            _ => 0,
        };
        let mut new = false;
        let peer = peers.entry(origin).or_insert_with(|| {
            new = true;
            Peer {
                last_seen: now,
                started_at_ms,
                http_url: String::new(),
                nodes_received: 0,
                baseline: None,
            }
        });
        peer.last_seen = now;
        if let Body::Heartbeat {
            started_at_ms,
            http_url,
            ..
        } = body
        {
            peer.started_at_ms = *started_at_ms;
            if peer.http_url != *http_url {
                peer.http_url.clone_from(http_url);
            }
        }
        if on_nodes {
            peer.nodes_received += 1;
        }
        if let (true, Body::Heartbeat { nodes_sent, .. }) = (on_nodes, body) {
            let nodes_sent = *nodes_sent;
            match peer.baseline {
                None => peer.baseline = Some(nodes_sent.saturating_sub(peer.nodes_received)),
                Some(baseline) => {
                    let expected = nodes_sent.saturating_sub(baseline);
                    if expected > peer.nodes_received {
                        let lost = expected - peer.nodes_received;
                        self.metrics.errors_by("gap", lost);
                        warn!(self.log, "cluster messages from a peer were lost";
                            "peer" => origin, "lost" => lost);
                        peer.nodes_received = expected;
                    }
                }
            }
        }
        let started_at_ms = peer.started_at_ms;
        let count = peers.len();
        drop(peers);
        if new {
            self.metrics.set_peers(count);
            info!(self.log, "peer up";
                "peer" => origin, "peers" => count, "started_at_ms" => started_at_ms);
            self.emit(ClusterEvent::PeerUp(origin));
            // Let the newcomer know us now rather than in up to one interval.
            self.heartbeat(&Topic::Node(origin));
        }
    }

    fn drop_peer(&self, node: NodeId, reason: PeerDownReason) {
        let mut peers = self.peers.lock();
        if peers.remove(&node).is_none() {
            return;
        }
        let count = peers.len();
        drop(peers);
        self.metrics.set_peers(count);
        match reason {
            PeerDownReason::Goodbye => {
                info!(self.log, "peer left"; "peer" => node, "peers" => count)
            }
            PeerDownReason::Timeout => {
                warn!(self.log, "peer timed out"; "peer" => node, "peers" => count)
            }
        }
        for pending in self.pending.lock().values_mut() {
            if pending.expected.contains(&node) && !pending.answered.contains(&node) {
                pending.lost.insert(node);
                pending.check_done();
            }
        }
        self.last_seq
            .lock()
            .retain(|(origin, _), _| *origin != node);
        self.emit(ClusterEvent::PeerDown { node, reason });
    }

    /// Forget the sequence state of origins that are not peers (nodes that
    /// sent something but never a heartbeat, or are gone): it stays bounded
    /// by peers x subscribed topics.
    fn prune_strangers(&self) {
        let peers: HashSet<NodeId> = self.peers.lock().keys().copied().collect();
        self.last_seq
            .lock()
            .retain(|(origin, _), _| peers.contains(origin));
    }

    fn sweep(&self) {
        let timeout = self.options.heartbeat_timeout;
        let dead: Vec<NodeId> = self
            .peers
            .lock()
            .iter()
            .filter(|(_, p)| p.last_seen.elapsed() > timeout)
            .map(|(n, _)| *n)
            .collect();
        for node in dead {
            self.drop_peer(node, PeerDownReason::Timeout);
        }
    }
}

async fn receive(shared: Arc<Shared>, mut inbound: mpsc::Receiver<Inbound>) {
    while let Some(msg) = inbound.recv().await {
        shared.handle(msg);
    }
}

async fn timers(shared: Arc<Shared>) {
    let options = &shared.options;
    let mut heartbeat = tokio::time::interval(options.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Sweep often enough that a dead peer goes within ~10% of the timeout.
    let period = (options.heartbeat_timeout / 10).max(Duration::from_millis(10));
    let mut sweep = tokio::time::interval(period);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = heartbeat.tick() => {
                shared.heartbeat(&Topic::Nodes);
                shared.prune_strangers();
            }
            _ = sweep.tick() => shared.sweep(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::codec::WireFrame;
    use crate::adapter::MemoryHub;

    fn quiet() -> Logger {
        Logger::root(slog::Discard, slog::o!())
    }

    fn fast() -> ClusterOptions {
        ClusterOptions {
            heartbeat_interval: Duration::from_millis(50),
            heartbeat_timeout: Duration::from_millis(300),
            events_capacity: 1024,
            http_url: String::new(),
        }
    }

    fn node(hub: &MemoryHub) -> (Cluster, mpsc::Receiver<ClusterEvent>, AdapterMetrics) {
        let metrics = AdapterMetrics::unregistered();
        let (bus, inbound) = hub.bus(&AdapterOptions::default(), &metrics);
        let (c, rx) = Cluster::new(
            bus,
            inbound,
            NodeId::random(),
            fast(),
            metrics.clone(),
            &quiet(),
        );
        (c, rx, metrics)
    }

    async fn until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Answer requests with `Done { affected: n }` until the channel closes.
    fn answer(cluster: &Cluster, mut rx: mpsc::Receiver<ClusterEvent>, n: u32) {
        let cluster = cluster.clone();
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                if let ClusterEvent::Request {
                    request_id,
                    reply_to,
                    ..
                } = ev
                {
                    let _ = cluster.respond(
                        request_id,
                        reply_to,
                        ResponsePayload::Done { affected: n },
                    );
                }
            }
        });
    }

    fn op() -> RequestOp {
        RequestOp::DisconnectSockets {
            ns: "/".into(),
            rooms: vec![],
            except_rooms: vec![],
            close: false,
        }
    }

    #[tokio::test]
    async fn heartbeats_tell_peers_where_a_node_takes_forwarded_requests() {
        let hub = MemoryHub::new();
        let metrics = AdapterMetrics::unregistered();
        let (bus, inbound) = hub.bus(&AdapterOptions::default(), &metrics);
        let options = ClusterOptions {
            http_url: "http://10.0.0.7:3000".into(),
            ..fast()
        };
        let (a, _a_rx) = Cluster::new(bus, inbound, NodeId::random(), options, metrics, &quiet());
        let (b, _b_rx, _) = node(&hub);
        until("a heartbeat with the address", || {
            b.peer_url(a.node()).is_some()
        })
        .await;
        assert_eq!(
            b.peer_url(a.node()).as_deref(),
            Some("http://10.0.0.7:3000")
        );
        // A node that announces none, and one that is no peer, have none.
        until("b known to a", || a.peers().contains(&b.node())).await;
        assert_eq!(a.peer_url(b.node()), None);
        assert_eq!(a.peer_url(NodeId::random()), None);
    }

    #[tokio::test]
    async fn peers_requests_goodbye() {
        let hub = MemoryHub::new();
        let (a, _a_rx, a_metrics) = node(&hub);
        let (b, b_rx, _) = node(&hub);
        let (c, c_rx, _) = node(&hub);
        until("peers", || {
            a.peers().len() == 2 && b.peers().len() == 2 && c.peers().len() == 2
        })
        .await;
        assert_eq!(a_metrics.peer_count(), 2);
        answer(&b, b_rx, 1);
        answer(&c, c_rx, 2);
        let started = Instant::now();
        let out = a.request(op(), Duration::from_secs(5)).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(1), "returned early");
        assert_eq!(out.responses.len(), 2);
        assert!(out.missing.is_empty());

        c.shutdown(Duration::from_secs(1)).await;
        until("goodbye", || a.peers() == vec![b.node()]).await;
        assert_eq!(a_metrics.error_count("gap"), 0);
        assert_eq!(a_metrics.error_count("duplicate"), 0);
    }

    #[tokio::test]
    async fn crashed_peer_is_missing_then_dropped() {
        let hub = MemoryHub::new();
        let (a, _a_rx, _) = node(&hub);
        let (b, b_rx, _) = node(&hub);
        let (c, _c_rx, _) = node(&hub); // never answers
        until("peers", || a.peers().len() == 2).await;
        answer(&b, b_rx, 1);
        let out = a.request(op(), Duration::from_millis(200)).await.unwrap();
        assert_eq!(
            out.responses,
            vec![(b.node(), ResponsePayload::Done { affected: 1 })]
        );
        assert_eq!(out.missing, vec![c.node()]);

        let c_node = c.node();
        drop(c);
        drop(_c_rx);
        // A request in flight when the peer is dropped ends then, not at its timeout.
        let started = Instant::now();
        let out = a.request(op(), Duration::from_secs(10)).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(out.missing, vec![c_node]);
        until("timeout drop", || a.peers() == vec![b.node()]).await;
    }

    #[tokio::test]
    async fn broadcast_routes_by_room_and_drops_duplicates() {
        let hub = MemoryHub::new();
        let (a, _a_rx, _) = node(&hub);
        let (b, mut b_rx, b_metrics) = node(&hub);
        until("peers", || a.peers().len() == 1).await;
        b.room_joined("/", "r2");
        let frames = vec![WireFrame::Text("42[\"x\"]".into())];
        a.broadcast(Broadcast {
            ns: "/".into(),
            rooms: vec!["r1".into(), "r2".into()],
            frames: frames.clone(),
            ..Broadcast::default()
        })
        .unwrap();
        let ev = loop {
            match b_rx.recv().await.unwrap() {
                ClusterEvent::Broadcast { via, broadcast, .. } => break (via, broadcast),
                _ => continue,
            }
        };
        assert_eq!(ev.0, Topic::room("/", "r2"));
        assert_eq!(ev.1.frames, frames);

        // A replayed envelope (same origin, topic, seq) is dropped.
        let env = codec::ClusterEnvelope {
            version: codec::VERSION,
            origin: a.node(),
            seq: 1,
            body: Body::Goodbye,
        };
        let (raw, _raw_rx) = hub.bus(&AdapterOptions::default(), &AdapterMetrics::unregistered());
        raw.publish(&Topic::room("/", "r2"), codec::encode(&env))
            .unwrap();
        until("duplicate", || b_metrics.error_count("duplicate") == 1).await;
        assert_eq!(b.peers(), vec![a.node()]);
    }
}
