//! The cluster bus against real brokers: one generic body per behaviour, run
//! against NATS and against Redis (`bus_tests!` below). Each test starts its
//! own broker on free loopback ports; every wait is bounded.
//!
//! Pinned: interest routing (a room's traffic reaches a node only while it
//! is subscribed, and the broker itself holds the subscription only then),
//! namespace and node-addressed topics, 10,000 messages from one publisher
//! arriving complete, once each and in order, a payload over the broker's
//! maximum refused at publish time, an unknown envelope version counted and
//! ignored, a broker down at start, and a broker killed mid-traffic:
//! degraded, bounded buffering with counted overflow, back up after a restart
//! on the same port with subscriptions restored.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::brokers::{Broker, NatsServer, RedisServer};
use riptide::adapter::codec::{self, Body, ClusterEnvelope};
use riptide::adapter::{
    connect_with, AdapterError, AdapterMetrics, AdapterOptions, Bus, BusStatus, Cluster,
    ClusterOptions, Inbound, NodeId, PublishError, Topic,
};
use riptide::settings::AdapterKind;
use slog::Logger;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

fn log() -> Logger {
    if std::env::var("TEST_LOG").is_ok() {
        let drain =
            slog_term::FullFormat::new(slog_term::TermDecorator::new().stderr().build()).build();
        let drain = std::sync::Mutex::new(drain);
        Logger::root(slog::Fuse(drain), slog::o!())
    } else {
        Logger::root(slog::Discard, slog::o!())
    }
}

fn fast_options() -> AdapterOptions {
    AdapterOptions {
        reconnect_min: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(500),
        connect_timeout: Duration::from_secs(1),
        ping_interval: Duration::from_secs(1),
        ..AdapterOptions::default()
    }
}

struct Node {
    bus: Arc<dyn Bus>,
    rx: mpsc::Receiver<Inbound>,
    metrics: AdapterMetrics,
}

async fn node<B: Broker>(broker: &B, options: &AdapterOptions) -> Node {
    let metrics = AdapterMetrics::unregistered();
    let (bus, rx) = connect_with(
        &broker.adapter_settings("rt"),
        options,
        NodeId::random(),
        &metrics,
        &log(),
    )
    .await
    .expect("connect");
    let node = Node { bus, rx, metrics };
    wait_up(&node).await;
    node
}

async fn until(what: &str, wait: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + wait;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {wait:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_up(node: &Node) {
    let bus = node.bus.clone();
    until("bus up", WAIT, || bus.status().is_up()).await;
}

/// Subscribe `node` to `topic` and wait until the broker holds it.
async fn subscribe<B: Broker>(broker: &B, node: &Node, topic: &Topic) {
    node.bus.subscribe(topic);
    let subject = riptide::adapter::subject::subject("rt", topic);
    until("broker subscription", WAIT, || {
        broker.subscriptions_on(&subject) == 1
    })
    .await;
}

async fn recv(node: &mut Node) -> Inbound {
    tokio::time::timeout(WAIT, node.rx.recv())
        .await
        .expect("a message in time")
        .expect("bus open")
}

async fn expect_nothing(node: &mut Node, wait: Duration) {
    if let Ok(Some(msg)) = tokio::time::timeout(wait, node.rx.recv()).await {
        panic!("expected nothing, got {msg:?}");
    }
}

fn msg(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

// ---- the generic bodies -----------------------------------------------------------

async fn interest_routing<B: Broker>() {
    let broker = B::start();
    let options = fast_options();
    let a = node(&broker, &options).await;
    let mut b = node(&broker, &options).await;
    let room = Topic::room("/chat", "lobby.*> é");
    let subject = riptide::adapter::subject::subject("rt", &room);

    // Not subscribed: nothing arrives, and the broker holds nothing.
    a.bus.publish(&room, msg("before")).unwrap();
    expect_nothing(&mut b, Duration::from_millis(200)).await;
    assert_eq!(broker.subscriptions_on(&subject), 0);

    // Subscribed (twice: reference-counted): traffic arrives, one broker subscription.
    b.bus.subscribe(&room);
    subscribe(&broker, &b, &room).await;
    a.bus.publish(&room, msg("during")).unwrap();
    let got = recv(&mut b).await;
    assert_eq!((got.topic, got.payload), (room.clone(), msg("during")));

    // First unsubscribe: still interested.
    b.bus.unsubscribe(&room);
    a.bus.publish(&room, msg("still")).unwrap();
    assert_eq!(recv(&mut b).await.payload, msg("still"));
    assert_eq!(broker.subscriptions_on(&subject), 1);

    // Last unsubscribe: the broker drops it, nothing arrives any more.
    b.bus.unsubscribe(&room);
    until("broker unsubscription", WAIT, || {
        broker.subscriptions_on(&subject) == 0
    })
    .await;
    a.bus.publish(&room, msg("after")).unwrap();
    expect_nothing(&mut b, Duration::from_millis(300)).await;
    b.bus.unsubscribe(&room); // below zero: a no-op
    assert_eq!(b.metrics.subscription_count(), 0);

    // A namespace topic is its own subject: room traffic does not leak into it.
    let ns = Topic::namespace("/chat");
    subscribe(&broker, &b, &ns).await;
    a.bus.publish(&room, msg("room")).unwrap();
    a.bus.publish(&ns, msg("ns")).unwrap();
    let got = recv(&mut b).await;
    assert_eq!((got.topic, got.payload), (ns.clone(), msg("ns")));

    // Node-addressed: only that node.
    let b_id = NodeId::random();
    let to_b = Topic::Node(b_id);
    subscribe(&broker, &b, &to_b).await;
    a.bus
        .publish(&Topic::Node(NodeId::random()), msg("other"))
        .unwrap();
    a.bus.publish(&to_b, msg("mine")).unwrap();
    let got = recv(&mut b).await;
    assert_eq!((got.topic, got.payload), (to_b, msg("mine")));

    // Nodes: everyone, the publisher excepted (no echo into its own inbound,
    // or the cluster drops it: either way never delivered twice to b).
    subscribe(&broker, &b, &Topic::Nodes).await;
    a.bus.publish(&Topic::Nodes, msg("all")).unwrap();
    assert_eq!(recv(&mut b).await.payload, msg("all"));
    expect_nothing(&mut b, Duration::from_millis(200)).await;
    assert_eq!(b.metrics.subscription_count(), 3);
    assert!(a.metrics.published_count() >= 8);
    assert!(b.metrics.received_count() >= 5);
}

async fn ten_thousand_in_order<B: Broker>() {
    const N: u32 = 10_000;
    let broker = B::start();
    // Room for the whole burst both ways: this pins the broker path, not
    // the buffer bounds (see `broker_killed_mid_traffic`).
    let options = AdapterOptions {
        outbound_capacity: 2 * N as usize,
        inbound_capacity: 2 * N as usize,
        ..fast_options()
    };
    let a = node(&broker, &options).await;
    let mut b = node(&broker, &options).await;
    let room = Topic::room("/", "firehose");
    subscribe(&broker, &b, &room).await;

    let started = Instant::now();
    for i in 0..N {
        let mut payload = i.to_be_bytes().to_vec();
        payload.resize(100, b'x');
        a.bus.publish(&room, Bytes::from(payload)).unwrap();
    }
    let mut next = 0u32;
    while next < N {
        let got = recv(&mut b).await;
        let i = u32::from_be_bytes(got.payload[..4].try_into().unwrap());
        assert_eq!(
            i, next,
            "message {next} expected (no loss, no duplicate, in order)"
        );
        next += 1;
    }
    let elapsed = started.elapsed();
    expect_nothing(&mut b, Duration::from_millis(200)).await;
    eprintln!("{:?}: {N} messages in {elapsed:?}", B::KIND);
    assert_eq!(a.metrics.published_count(), N as u64);
    assert_eq!(b.metrics.received_count(), N as u64);
    assert_eq!(a.metrics.bytes_out_count(), 100 * N as u64);
    assert_eq!(b.metrics.error_count("inbound_overflow"), 0);
    assert_eq!(a.metrics.outbound_dropped_count(), 0);
}

async fn too_large_refused<B: Broker>() {
    const MAX: usize = 4096;
    let broker = B::start_with_max_payload(MAX);
    let options = AdapterOptions {
        max_payload: MAX,
        ..fast_options()
    };
    let a = node(&broker, &options).await;
    let mut b = node(&broker, &options).await;
    assert_eq!(
        a.bus.max_payload(),
        MAX,
        "the broker's limit, from its INFO for NATS"
    );
    let room = Topic::room("/", "big");
    subscribe(&broker, &b, &room).await;

    let err = a
        .bus
        .publish(&room, Bytes::from(vec![1u8; MAX + 1]))
        .unwrap_err();
    assert_eq!(
        err,
        PublishError::TooLarge {
            size: MAX + 1,
            max: MAX
        }
    );
    assert!(err.to_string().contains("4097 bytes"), "{err}");
    assert_eq!(a.metrics.error_count("too_large"), 1);

    a.bus.publish(&room, Bytes::from(vec![2u8; MAX])).unwrap();
    assert_eq!(recv(&mut b).await.payload.len(), MAX);
    // The connection survived the refusal.
    wait_up(&a).await;
}

async fn unknown_version_counted_and_ignored<B: Broker>() {
    let broker = B::start();
    let options = fast_options();
    let raw = node(&broker, &options).await;

    let metrics = AdapterMetrics::unregistered();
    let (bus, inbound) = connect_with(
        &broker.adapter_settings("rt"),
        &options,
        NodeId::random(),
        &metrics,
        &log(),
    )
    .await
    .unwrap();
    let cluster_options = ClusterOptions {
        heartbeat_interval: Duration::from_secs(60),
        ..ClusterOptions::default()
    };
    let (cluster, _events) = Cluster::new(
        bus,
        inbound,
        NodeId::random(),
        cluster_options,
        metrics.clone(),
        &log(),
    );
    let subject = riptide::adapter::subject::subject("rt", &Topic::Nodes);
    until("cluster subscribed", WAIT, || {
        broker.subscriptions_on(&subject) == 1
    })
    .await;

    let stranger = NodeId::random();
    let future = ClusterEnvelope {
        version: 99,
        origin: stranger,
        seq: 1,
        body: Body::Heartbeat {
            started_at_ms: 0,
            nodes_sent: 1,
            http_url: String::new(),
        },
    };
    raw.bus
        .publish(&Topic::Nodes, codec::encode(&future))
        .unwrap();
    let mut garbage = codec::VERSION.to_be_bytes().to_vec();
    garbage.extend_from_slice(b"garbage");
    raw.bus
        .publish(&Topic::Nodes, Bytes::from(garbage))
        .unwrap();
    until("unknown version counted", WAIT, || {
        metrics.error_count("unknown_version") == 1 && metrics.error_count("decode") == 1
    })
    .await;
    assert!(
        cluster.peers().is_empty(),
        "nothing from an unknown version is believed"
    );

    // Still working: a valid envelope from the same stranger makes it a peer.
    let current = ClusterEnvelope {
        version: codec::VERSION,
        ..future
    };
    raw.bus
        .publish(&Topic::Nodes, codec::encode(&current))
        .unwrap();
    until("peer from a valid envelope", WAIT, || {
        cluster.peers() == vec![stranger]
    })
    .await;
}

async fn broker_down_at_start<B: Broker>() {
    let mut broker = B::start();
    broker.kill();
    let options = fast_options();
    let metrics = AdapterMetrics::unregistered();
    let started = Instant::now();
    let (bus, _rx) = connect_with(
        &broker.adapter_settings("rt"),
        &options,
        NodeId::random(),
        &metrics,
        &log(),
    )
    .await
    .expect("a broker that is down does not stop the node");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(matches!(bus.status(), BusStatus::Degraded { .. }));
    assert!(!metrics.is_up());
    // Publishing while never connected is buffered, not an error.
    bus.publish(&Topic::Nodes, msg("early")).unwrap();

    broker.restart();
    until("up after the broker started", WAIT, || bus.status().is_up()).await;
    assert!(metrics.is_up());
    assert_eq!(
        metrics.reconnect_count(),
        0,
        "a first connection is not a reconnect"
    );

    // A malformed URL is a configuration error that names the key.
    let mut bad = broker.adapter_settings("rt");
    bad.url = match B::KIND {
        AdapterKind::Nats => "nats://127.0.0.1:notaport".into(),
        _ => "127.0.0.1:6379".into(),
    };
    let err = match connect_with(&bad, &options, NodeId::random(), &metrics, &log()).await {
        Err(e) => e,
        Ok(_) => panic!("malformed URL accepted"),
    };
    let AdapterError::InvalidSetting { key, .. } = &err;
    assert_eq!(*key, "adapter.url");
    assert!(err.to_string().starts_with("adapter.url: "), "{err}");
}

async fn broker_killed_mid_traffic<B: Broker>() {
    const CAPACITY: usize = 200;
    let mut broker = B::start();
    let options = AdapterOptions {
        outbound_capacity: CAPACITY,
        outbound_max_bytes: 1 << 20,
        ..fast_options()
    };
    let a = node(&broker, &options).await;
    let mut b = node(&broker, &options).await;
    let room = Topic::room("/", "r");
    subscribe(&broker, &b, &room).await;
    for i in 0..50 {
        a.bus.publish(&room, msg(&format!("m{i}"))).unwrap();
    }
    for i in 0..50 {
        assert_eq!(recv(&mut b).await.payload, msg(&format!("m{i}")));
    }

    // Killed while a publisher is sending.
    let publisher = {
        let bus = a.bus.clone();
        let room = room.clone();
        tokio::spawn(async move {
            for _ in 0..100 {
                let _ = bus.publish(&room, msg("traffic"));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    broker.kill();
    let killed = Instant::now();
    publisher.await.unwrap();
    let (abus, bbus) = (a.bus.clone(), b.bus.clone());
    until("both degraded", WAIT, || {
        !abus.status().is_up() && !bbus.status().is_up()
    })
    .await;
    eprintln!(
        "{:?}: degraded {:?} after the kill",
        B::KIND,
        killed.elapsed()
    );
    let BusStatus::Degraded { reason, .. } = a.bus.status() else {
        unreachable!()
    };
    assert!(!reason.is_empty());
    assert!(!a.metrics.is_up());
    assert!(a.metrics.error_count("connection") >= 1);

    // Publishing into the outage: bounded, the overflow refused and counted.
    let payload = Bytes::from(vec![0u8; 1024]);
    let dropped_before = a.metrics.outbound_dropped_count();
    let (mut accepted, mut refused) = (0usize, 0u64);
    for _ in 0..5_000 {
        match a.bus.publish(&room, payload.clone()) {
            Ok(()) => accepted += 1,
            Err(PublishError::BufferFull) => refused += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    // What the queue holds, plus what the driver held in hand (a Redis batch).
    assert!(
        accepted <= CAPACITY + riptide::adapter::redis::BATCH,
        "accepted {accepted} during the outage: the buffer is not bounded"
    );
    assert!(refused >= 5_000 - (CAPACITY + riptide::adapter::redis::BATCH) as u64);
    assert_eq!(a.metrics.outbound_dropped_count() - dropped_before, refused);

    // Back on the same port: up again, subscriptions restored, traffic flows.
    broker.restart();
    let restarted = Instant::now();
    until("both up", WAIT, || {
        abus.status().is_up() && bbus.status().is_up()
    })
    .await;
    eprintln!(
        "{:?}: up {:?} after the restart",
        B::KIND,
        restarted.elapsed()
    );
    assert!(a.metrics.reconnect_count() >= 1 && b.metrics.reconnect_count() >= 1);
    assert!(a.metrics.is_up() && b.metrics.is_up());
    let subject = riptide::adapter::subject::subject("rt", &room);
    until("subscription restored", WAIT, || {
        broker.subscriptions_on(&subject) == 1
    })
    .await;
    eprintln!(
        "{:?}: subscription restored {:?} after the restart",
        B::KIND,
        restarted.elapsed()
    );
    // What the outage left goes out once the bus has settled after the
    // reconnect (`settle_after_reconnect`): wait for the buffer to be handed
    // to the broker, drain what arrives of it, then fresh traffic arrives.
    assert!(a.bus.flush(WAIT).await, "the outage's buffer released");
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), b.rx.recv()).await {}
    for i in 0..20 {
        a.bus.publish(&room, msg(&format!("back{i}"))).unwrap();
    }
    for i in 0..20 {
        assert_eq!(recv(&mut b).await.payload, msg(&format!("back{i}")));
    }
    assert!(a.bus.flush(WAIT).await);
}

macro_rules! bus_tests {
    ($module:ident, $broker:ty) => {
        mod $module {
            use super::*;

            #[tokio::test]
            async fn interest_routing() {
                super::interest_routing::<$broker>().await
            }

            #[tokio::test]
            async fn ten_thousand_in_order() {
                super::ten_thousand_in_order::<$broker>().await
            }

            #[tokio::test]
            async fn too_large_refused() {
                super::too_large_refused::<$broker>().await
            }

            #[tokio::test]
            async fn unknown_version_counted_and_ignored() {
                super::unknown_version_counted_and_ignored::<$broker>().await
            }

            #[tokio::test]
            async fn broker_down_at_start() {
                super::broker_down_at_start::<$broker>().await
            }

            #[tokio::test]
            async fn broker_killed_mid_traffic() {
                super::broker_killed_mid_traffic::<$broker>().await
            }
        }
    };
}

bus_tests!(nats, NatsServer);
bus_tests!(redis, RedisServer);
