//! Three cluster nodes over a real broker (NATS and Redis, `cluster_tests!`
//! below): peers discovered; a request to all answered by all, returning as
//! soon as the last answer arrives; a node dropped without a goodbye
//! mid-request: the caller returns after its timeout with the others'
//! answers and the dead node in `missing`, and after `heartbeat_timeout` the
//! dead node is no longer a peer; a clean shutdown drops the node at once;
//! broadcasts follow room interest; the figures appear in `/metrics` text.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::brokers::{free_ports, Broker, NatsServer, RedisServer};
use riptide::adapter::{
    connect_with, AdapterMetrics, AdapterOptions, Broadcast, Cluster, ClusterEvent, ClusterOptions,
    NodeId, PeerDownReason, RemoteSocket, RequestOp, ResponsePayload, Topic, WireFrame,
};
use riptide::settings::AdapterSettings;
use riptide::Metrics;
use slog::Logger;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

fn settings<B: Broker>(broker: &B) -> AdapterSettings {
    broker.adapter_settings("rtc")
}

fn log() -> Logger {
    Logger::root(slog::Discard, slog::o!())
}

fn cluster_options() -> ClusterOptions {
    ClusterOptions {
        heartbeat_interval: Duration::from_millis(200),
        heartbeat_timeout: Duration::from_millis(1500),
        events_capacity: 1024,
        http_url: String::new(),
    }
}

fn adapter_options() -> AdapterOptions {
    AdapterOptions {
        reconnect_min: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(500),
        ..AdapterOptions::default()
    }
}

struct Node {
    cluster: Cluster,
    events: mpsc::Receiver<ClusterEvent>,
    metrics: AdapterMetrics,
}

async fn node<B: Broker>(broker: &B) -> Node {
    node_with(&settings(broker)).await
}

async fn node_with(settings: &AdapterSettings) -> Node {
    node_with_options(settings, &adapter_options()).await
}

async fn node_with_options(settings: &AdapterSettings, options: &AdapterOptions) -> Node {
    let metrics = AdapterMetrics::unregistered();
    let id = NodeId::random();
    let (bus, inbound) = connect_with(settings, options, id, &metrics, &log())
        .await
        .unwrap();
    let (cluster, events) =
        Cluster::new(bus, inbound, id, cluster_options(), metrics.clone(), &log());
    Node {
        cluster,
        events,
        metrics,
    }
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A node's event loop, as an engine would run it.
struct Served {
    cluster: Cluster,
    events: mpsc::UnboundedReceiver<ClusterEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    /// Crash: stop the event loop and drop the last handle, no goodbye.
    fn crash(self) {
        self.task.abort();
    }
}

/// Serve `node`'s events: answer requests after `delay`, forward every event
/// to `Served::events`.
fn serve(node: Node, delay: Duration) -> Served {
    let Node {
        cluster,
        mut events,
        ..
    } = node;
    let (tx, rx) = mpsc::unbounded_channel();
    let c = cluster.clone();
    let task = tokio::spawn(async move {
        // Owned by this task: aborting it aborts the pending answers too.
        let mut answers = tokio::task::JoinSet::new();
        while let Some(ev) = events.recv().await {
            if let ClusterEvent::Request {
                request_id,
                reply_to,
                ..
            } = &ev
            {
                let (c, id, to) = (c.clone(), *request_id, *reply_to);
                answers.spawn(async move {
                    tokio::time::sleep(delay).await;
                    let payload = ResponsePayload::Done { affected: 1 };
                    let _ = c.respond(id, to, payload);
                });
            }
            let _ = tx.send(ev);
            while answers.try_join_next().is_some() {}
        }
    });
    Served {
        cluster,
        events: rx,
        task,
    }
}

fn op() -> RequestOp {
    RequestOp::FetchSockets {
        ns: "/".into(),
        rooms: vec![],
        except_rooms: vec![],
    }
}

async fn three_nodes<B: Broker>() {
    let broker = B::start();
    let a = node(&broker).await;
    let b = node(&broker).await;
    let c = node(&broker).await;
    let (a_metrics, b_metrics) = (a.metrics.clone(), b.metrics.clone());
    let a = serve(a, Duration::ZERO).cluster;
    let Served {
        cluster: b,
        events: mut b_events,
        task: _b_task,
    } = serve(b, Duration::ZERO);
    // c answers requests only after 30 s: it will be dead long before.
    let mut c_served = serve(c, Duration::from_secs(30));
    let c = c_served.cluster.clone();
    let (a_id, b_id, c_id) = (a.node(), b.node(), c.node());

    let started = Instant::now();
    until("peers discovered", || {
        a.peers().len() == 2 && b.peers().len() == 2 && c.peers().len() == 2
    })
    .await;
    eprintln!("{:?}: peers discovered in {:?}", B::KIND, started.elapsed());
    assert_eq!(a_metrics.peer_count(), 2);
    assert_eq!(a.status().as_str(), "ok");

    // Broadcasts follow interest: b joined the room, c did not.
    b.room_joined("/", "lobby");
    tokio::time::sleep(Duration::from_millis(300)).await; // the SUB reaches the broker
    let frames = vec![
        WireFrame::Text("42[\"hi\"]".into()),
        WireFrame::Binary(vec![1, 2]),
    ];
    a.broadcast(Broadcast {
        ns: "/".into(),
        rooms: vec!["lobby".into()],
        frames: frames.clone(),
        ..Broadcast::default()
    })
    .unwrap();
    let got = loop {
        match tokio::time::timeout(WAIT, b_events.recv())
            .await
            .unwrap()
            .unwrap()
        {
            ClusterEvent::Broadcast {
                origin,
                via,
                broadcast,
            } => break (origin, via, broadcast),
            _ => continue,
        }
    };
    assert_eq!(got.0, a_id);
    assert_eq!(got.1, Topic::room("/", "lobby"));
    assert_eq!(got.2.frames, frames);

    // c got no room broadcast: it has no interest in the room.
    tokio::time::sleep(Duration::from_millis(200)).await;
    while let Ok(ev) = c_served.events.try_recv() {
        assert!(
            !matches!(ev, ClusterEvent::Broadcast { .. }),
            "c got a room broadcast it has no interest in"
        );
    }

    // A notification reaches every other node, request id 0, and nobody
    // waits for (or sends) an answer.
    a.notify(op()).unwrap();
    for events in [&mut b_events, &mut c_served.events] {
        let got = loop {
            let ev = tokio::time::timeout(WAIT, events.recv())
                .await
                .unwrap()
                .unwrap();
            if let ClusterEvent::Request { request_id, .. } = ev {
                break request_id;
            }
        };
        assert_eq!(got, 0);
    }

    // A request to all, answered by b; c is slow but alive: missing after the timeout.
    let started = Instant::now();
    let out = a.request(op(), Duration::from_millis(500)).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(450));
    assert_eq!(
        out.responses,
        vec![(b_id, ResponsePayload::Done { affected: 1 })]
    );
    assert_eq!(out.missing, vec![c_id]);

    // A request that all answer returns as soon as they did.
    let started = Instant::now();
    let out = b
        .request_to(a_id, op(), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(out.responses.len(), 1);
    assert!(out.missing.is_empty());

    // c dies (dropped: no goodbye) mid-request.
    let request = {
        let a = a.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let out = a.request(op(), Duration::from_millis(800)).await.unwrap();
            (out, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(c);
    c_served.crash();
    let dropped = Instant::now();
    let (out, took) = request.await.unwrap();
    assert!(
        took >= Duration::from_millis(750) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(
        out.responses,
        vec![(b_id, ResponsePayload::Done { affected: 1 })]
    );
    assert_eq!(out.missing, vec![c_id]);

    // After heartbeat_timeout it is no longer a peer of anyone.
    until("dead node dropped", || {
        a.peers() == vec![b_id] && b.peers() == vec![a_id]
    })
    .await;
    let gone_after = dropped.elapsed();
    eprintln!("{:?}: crashed peer dropped after {gone_after:?}", B::KIND);
    assert!(gone_after >= Duration::from_millis(1000), "{gone_after:?}");
    let mut saw_down = false;
    while let Ok(ev) = b_events.try_recv() {
        if ev
            == (ClusterEvent::PeerDown {
                node: c_id,
                reason: PeerDownReason::Timeout,
            })
        {
            saw_down = true;
        }
    }
    assert!(saw_down, "PeerDown(Timeout) reported");

    // A request to the survivors only waits for them.
    let out = a.request(op(), Duration::from_secs(5)).await.unwrap();
    assert_eq!(out.responses.len(), 1);
    assert!(out.missing.is_empty());

    // A clean stop drops the node at once (well within heartbeat_timeout).
    let started = Instant::now();
    b.shutdown(Duration::from_secs(2)).await;
    until("goodbye", || a.peers().is_empty()).await;
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(a_metrics.peer_count(), 0);

    for kind in [
        "duplicate",
        "gap",
        "unknown_version",
        "decode",
        "event_overflow",
    ] {
        assert_eq!(a_metrics.error_count(kind), 0, "a: {kind}");
        assert_eq!(b_metrics.error_count(kind), 0, "b: {kind}");
    }
}

/// `Cluster::start` registers the adapter's figures in the node's registry.
async fn figures_in_metrics<B: Broker>() {
    let broker = B::start();
    let metrics = Metrics::new();
    let (a, _events) = Cluster::start(
        &settings(&broker),
        &adapter_options(),
        cluster_options(),
        metrics.with_registry(riptide::adapter::AdapterMetrics::register),
        &log(),
    )
    .await
    .unwrap();
    let b = node(&broker).await;
    until("peer", || a.peers() == vec![b.cluster.node()]).await;
    until("up", || a.status().as_str() == "ok").await;
    let text = metrics.encode();
    for line in [
        "riptide_adapter_peers 1",
        "riptide_adapter_up 1",
        "riptide_adapter_subscriptions 2",
        "riptide_adapter_reconnects_total 0",
        "riptide_adapter_outbound_dropped_total 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    for prefix in [
        "riptide_adapter_published_total ",
        "riptide_adapter_received_total ",
        "riptide_adapter_bytes_total{direction=\"in\"} ",
        "riptide_adapter_bytes_total{direction=\"out\"} ",
    ] {
        let value: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("missing {prefix:?} in\n{text}"))
            .parse()
            .unwrap();
        assert!(value > 0.0, "{prefix}{value}");
    }
    for kind in riptide::adapter::metrics::ERROR_KINDS {
        let line = format!("riptide_adapter_errors_total{{kind=\"{kind}\"}} 0");
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

/// A `fetchSockets` answer over the broker's maximum message (64 KiB here)
/// travels in parts and arrives whole, in order.
async fn large_answer_in_parts<B: Broker>() {
    const MAX: usize = 64 << 10;
    let broker = B::start_with_max_payload(MAX);
    let options = AdapterOptions {
        max_payload: MAX,
        ..adapter_options()
    };
    let Node {
        cluster: a,
        events: _a_events,
        metrics: a_metrics,
    } = node_with_options(&settings(&broker), &options).await;
    let Node {
        cluster: b,
        events: mut b_events,
        metrics: b_metrics,
    } = node_with_options(&settings(&broker), &options).await;
    until("max payload known", || b.max_payload() == MAX).await;
    until("peers", || a.peers().len() == 1 && b.peers().len() == 1).await;
    let b_id = b.node();
    let sockets: Vec<RemoteSocket> = (0..300)
        .map(|i| RemoteSocket {
            id: format!("{i:020}"),
            ns: "/".into(),
            rooms: vec![format!("{i:020}"), "r".into()],
            handshake_json: serde_json::json!({ "query": { "pad": "x".repeat(1000) } }).to_string(),
            node: b_id,
        })
        .collect();
    let answer = sockets.clone();
    let published = b_metrics.clone();
    // The last clone of a cluster stops its tasks when dropped: keep one.
    let _b = b.clone();
    let responder = tokio::spawn(async move {
        loop {
            let ev = tokio::time::timeout(WAIT, b_events.recv())
                .await
                .unwrap()
                .unwrap();
            if let ClusterEvent::Request {
                request_id,
                reply_to,
                ..
            } = ev
            {
                let before = b_metrics.published_count();
                b.respond(request_id, reply_to, ResponsePayload::Sockets(answer))
                    .unwrap();
                return before;
            }
        }
    });
    let probe = published.clone();
    let am = a_metrics.clone();
    tokio::spawn(async move {
        for _ in 0..40 {
            eprintln!(
                "b handed {} ({} B), a got {} ({} B)",
                probe.published_count(),
                probe.bytes_out_count(),
                am.received_count(),
                am.bytes_in_count()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let out = a.request(op(), WAIT).await.unwrap();
    let before = responder.await.unwrap();
    // The bus counts a message once the broker took it, which the answer can
    // overtake (it is delivered before the publisher hears back): wait.
    until("the parts counted as published", || {
        published.published_count() - before >= 5
    })
    .await;
    let messages = published.published_count() - before;
    let errors = |m: &AdapterMetrics| {
        [
            "publish",
            "decode",
            "duplicate",
            "gap",
            "inbound_overflow",
            "too_large",
        ]
        .map(|k| (k, m.error_count(k)))
    };
    assert!(
        out.missing.is_empty(),
        "no answer: a errors {:?}, b errors {:?}, a received {} ({} B), b sent {} ({} B)",
        errors(&a_metrics),
        errors(&published),
        a_metrics.received_count(),
        a_metrics.bytes_in_count(),
        messages,
        published.bytes_out_count()
    );
    assert_eq!(out.responses.len(), 1);
    let (from, ResponsePayload::Sockets(got)) = &out.responses[0] else {
        panic!("not a sockets answer: {:?}", out.responses[0].1);
    };
    assert_eq!(*from, b_id);
    assert_eq!(got.len(), sockets.len());
    assert!(*got == sockets, "parts joined out of order");
    assert!(messages >= 5, "{messages} messages for ~330 kB");
}

macro_rules! cluster_tests {
    ($module:ident, $broker:ty) => {
        mod $module {
            use super::*;

            #[tokio::test]
            async fn three_nodes() {
                super::three_nodes::<$broker>().await
            }

            #[tokio::test]
            async fn large_answer_in_parts() {
                super::large_answer_in_parts::<$broker>().await
            }

            #[tokio::test]
            async fn figures_in_metrics() {
                super::figures_in_metrics::<$broker>().await
            }
        }
    };
}

cluster_tests!(nats, NatsServer);
cluster_tests!(redis, RedisServer);

/// The NATS configurations the project ships (`nats/`), ports moved to free
/// ones: `single.conf` states its `max_payload`, which Riptide reads; the
/// three cluster files form a full mesh that carries Riptide's cluster
/// traffic between servers (one node on each).
#[tokio::test]
async fn shipped_nats_configs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("nats");
    let read = |file: &str| std::fs::read_to_string(root.join(file)).unwrap();
    let ports: Vec<(u16, u16)> = [4222, 4223, 4224, 8222, 8223, 8224, 6222, 6223, 6224]
        .into_iter()
        .zip(free_ports(9))
        .collect();
    let port = |p: u16| ports.iter().find(|(from, _)| *from == p).unwrap().1;
    // One pass over whole port numbers (a new port may start with an old one's digits).
    let address = regex::Regex::new(r"127\.0\.0\.1:(\d+)").unwrap();
    // JetStream's storage into a scratch directory.
    let scratch = common::brokers::ScratchDir::new("nats-configs");
    let store_dir = regex::Regex::new(r#"store_dir: "[^"]*/([^"/]+)""#).unwrap();
    let rewrite = |text: String| {
        let text = address
            .replace_all(&text, |c: &regex::Captures| {
                let from: u16 = c[1].parse().unwrap();
                let to = ports.iter().find(|(f, _)| *f == from).map_or(from, |p| p.1);
                format!("127.0.0.1:{to}")
            })
            .into_owned();
        store_dir
            .replace_all(&text, |c: &regex::Captures| {
                format!("store_dir: \"{}\"", scratch.path().join(&c[1]).display())
            })
            .into_owned()
    };

    let single =
        NatsServer::start_with_config(&rewrite(read("single.conf")), port(4222), port(8222));
    assert_eq!(single.monitor("/varz")["max_payload"], 1048576);
    assert!(
        single.monitor("/jsz")["config"]["store_dir"]
            .as_str()
            .is_some_and(|d| d.starts_with(scratch.path().to_str().unwrap())),
        "JetStream on, in the scratch directory: {}",
        single.monitor("/jsz")
    );
    let mut settings = settings(&single);
    let metrics = AdapterMetrics::unregistered();
    let (bus, _rx) = connect_with(
        &settings,
        &adapter_options(),
        NodeId::random(),
        &metrics,
        &log(),
    )
    .await
    .unwrap();
    until("single up", || bus.status().is_up()).await;
    assert_eq!(bus.max_payload(), 1048576);
    drop(bus);
    drop(single);

    let servers: Vec<NatsServer> = (0..3u16)
        .map(|i| {
            let text = rewrite(read(&format!("cluster/n{}.conf", i + 1)));
            NatsServer::start_with_config(&text, port(4222 + i), port(8222 + i))
        })
        .collect();
    until("route mesh", || {
        servers
            .iter()
            .all(|s| s.monitor("/routez")["num_routes"] == 2)
    })
    .await;
    let mut nodes = Vec::new();
    for server in &servers {
        settings.url = server.url();
        nodes.push(node_with(&settings).await);
    }
    let served: Vec<Served> = nodes
        .into_iter()
        .map(|n| serve(n, Duration::ZERO))
        .collect();
    until("peers across servers", || {
        served.iter().all(|s| s.cluster.peers().len() == 2)
    })
    .await;
    let out = served[0]
        .cluster
        .request(op(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(out.responses.len(), 2);
    assert!(out.missing.is_empty());
}
