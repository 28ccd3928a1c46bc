//! The figures operators asked for, seen at `/metrics` of a running node:
//!
//! - `riptide_actor_mailbox_delay_seconds{kind}`: every actor kind is
//!   probed, and a probe that waits behind a blocked worker is measured as
//!   slow;
//! - `riptide_engine_session_duration_seconds{transport}`: a session's
//!   lifetime, observed when it closes, under its transport;
//! - `riptide_adapter_broker_rtt_seconds{adapter}`: sampled while the
//!   broker is up (NATS and Redis), not while it is away.

mod common;

use std::time::Duration;

use common::brokers::{Broker, NatsServer, RedisServer};
use common::*;
use riptide::{AckSender, HandlerContext, Riptide, Socket};
use serde_json::{json, Value};

const MAILBOX: &str = "riptide_actor_mailbox_delay_seconds";
const LIFETIME: &str = "riptide_engine_session_duration_seconds";
const RTT: &str = "riptide_adapter_broker_rtt_seconds";

/// Poll `/metrics` until `series` is at least `min` (or `wait` runs out);
/// returns the last value.
async fn wait_at_least(server: &TestServer, series: &str, min: f64, wait: Duration) -> f64 {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let v = server.metric(series).await;
        if v >= min || tokio::time::Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Probes of `kind` that took longer than 250 ms.
async fn slow_probes(server: &TestServer, kind: &str) -> f64 {
    let count = server
        .metric(&format!("{MAILBOX}_count{{kind=\"{kind}\"}}"))
        .await;
    let fast = server
        .metric(&format!("{MAILBOX}_bucket{{le=\"0.25\",kind=\"{kind}\"}}"))
        .await;
    count - fast
}

#[tokio::test]
async fn every_actor_kind_is_probed_and_a_blocked_worker_shows() {
    let (tx, _rec) = recorder();
    let server = TestServer::start(test_settings(), move |r: Riptide| {
        let ns = TestApp::namespace(&tx)
            .on_connect(|req| {
                if let Some(user) = req.auth.get("user").and_then(Value::as_str) {
                    req.set_user(user);
                }
                Ok(())
            })
            // Blocks the handler actor, and with it its worker thread (the
            // only one): every actor on it waits.
            .on(
                "block",
                |_: &mut TestApp,
                 _: &Socket,
                 ms: u64,
                 _: Option<AckSender>,
                 _: &mut HandlerContext<TestApp>| {
                    std::thread::sleep(Duration::from_millis(ms))
                },
            );
        r.namespace("/", ns)
    });
    // A connection, its handler actor, a user actor, a room actor.
    let (mut client, _) = WsClient::connect(&server, "/", Some(json!({ "user": "alice" }))).await;
    client.emit("/", json!(["join", "lobby"]), Some(1)).await;
    let joined = client.recv_text().await;
    assert!(joined.starts_with("431"), "join ack, got {joined:?}");

    for kind in ["room", "user", "handler", "connection"] {
        let series = format!("{MAILBOX}_count{{kind=\"{kind}\"}}");
        let n = wait_at_least(&server, &series, 1.0, Duration::from_secs(10)).await;
        assert!(
            n >= 1.0,
            "no mailbox probe of a {kind} actor: {series} = {n}"
        );
    }
    let mut before = Vec::new();
    for kind in ["room", "user", "handler", "connection"] {
        before.push(slow_probes(&server, kind).await);
    }

    // A probe sent while the worker is blocked waits for the block to end:
    // with a tick a second, at least one lands in the block's first second.
    client.emit("/", json!(["block", 1500]), None).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for (kind, before) in ["room", "user", "handler", "connection"]
        .into_iter()
        .zip(before)
    {
        let after = slow_probes(&server, kind).await;
        assert!(
            after > before,
            "no {kind} probe over 250 ms while its worker was blocked for 1.5 s (before {before}, after {after})"
        );
    }
    client.assert_alive("/", 2).await;
}

#[tokio::test]
async fn a_sessions_lifetime_is_observed_when_it_closes_under_its_transport() {
    let server = TestServer::start(test_settings(), |r: Riptide| r);
    assert_eq!(
        server
            .metric(&format!("{LIFETIME}_count{{transport=\"websocket\"}}"))
            .await,
        0.0
    );

    let mut ws = WsClient::open(&server).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ws.ws.close(None).await.expect("close the WebSocket");
    server
        .assert_metric(&format!("{LIFETIME}_count{{transport=\"websocket\"}}"), 1.0)
        .await;
    let bucket = |le: &str, transport: &str| {
        format!("{LIFETIME}_bucket{{le=\"{le}\",transport=\"{transport}\"}}")
    };
    assert_eq!(
        server.metric(&bucket("1.0", "websocket")).await,
        0.0,
        "lived over a second"
    );
    assert_eq!(server.metric(&bucket("5.0", "websocket")).await, 1.0);
    let sum = server
        .metric(&format!("{LIFETIME}_sum{{transport=\"websocket\"}}"))
        .await;
    assert!((1.1..5.0).contains(&sum), "sum {sum}");

    // A polling session the client closes at once.
    let polling = PollingClient::open(&server).await;
    let (status, _) = polling.post("1").await;
    assert_eq!(status, 200);
    server
        .assert_metric(&format!("{LIFETIME}_count{{transport=\"polling\"}}"), 1.0)
        .await;
    assert_eq!(server.metric(&bucket("1.0", "polling")).await, 1.0);
    assert_eq!(
        server
            .metric(&format!("{LIFETIME}_count{{transport=\"websocket\"}}"))
            .await,
        1.0,
        "each under its own transport"
    );
}

fn cluster_node<B: Broker>(broker: &B) -> TestServer {
    let mut s = test_settings();
    s.adapter = broker.adapter_settings("ops");
    TestServer::start(s, |r: Riptide| r)
}

/// The node's broker round trips so far, and their total time.
async fn rtt(server: &TestServer, adapter: &str) -> (f64, f64) {
    let count = server
        .metric(&format!("{RTT}_count{{adapter=\"{adapter}\"}}"))
        .await;
    let sum = server
        .metric(&format!("{RTT}_sum{{adapter=\"{adapter}\"}}"))
        .await;
    (count, sum)
}

async fn broker_rtt_is_sampled<B: Broker>(adapter: &str) -> (B, TestServer) {
    let broker = B::start();
    let node = cluster_node(&broker);
    let series = format!("{RTT}_count{{adapter=\"{adapter}\"}}");
    let n = wait_at_least(&node, &series, 1.0, Duration::from_secs(10)).await;
    assert!(n >= 1.0, "no {adapter} round trip measured: {series} = {n}");
    let (count, sum) = rtt(&node, adapter).await;
    assert!(
        sum > 0.0 && sum / count < 0.5,
        "a broker on this host answers fast: {count} round trips, {sum} s"
    );
    (broker, node)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_round_trips_are_sampled_while_the_broker_is_up_only() {
    let (mut broker, node) = broker_rtt_is_sampled::<NatsServer>("nats").await;

    broker.kill();
    node.assert_metric("riptide_adapter_up", 0.0).await;
    let (away, _) = rtt(&node, "nats").await;
    // Longer than the interval (the adapter's ping interval, 5 s).
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        rtt(&node, "nats").await.0,
        away,
        "no sample while the broker is away"
    );

    broker.restart();
    let series = format!("{RTT}_count{{adapter=\"nats\"}}");
    let n = wait_at_least(&node, &series, away + 1.0, Duration::from_secs(15)).await;
    assert!(n > away, "sampled again once the broker is back: {n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_round_trips_are_sampled() {
    broker_rtt_is_sampled::<RedisServer>("redis").await;
}
