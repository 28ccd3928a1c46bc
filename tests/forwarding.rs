//! Sticky-free load balancing at the wire (`cluster.forward_polling`): two
//! nodes through a real NATS server; a session made on node A is served
//! through node B with the owner's own rules, and a request B cannot
//! forward is a plain `Session ID unknown`.

mod common;

use std::time::{Duration, Instant};

use common::brokers::{free_port, Broker, NatsServer};
use common::{assert_engine_error, test_settings, PollingClient, TestServer, WsClient};
use riptide::fixture::FixtureHandler;
use riptide::{Namespace, Settings};

fn node(broker: &NatsServer, tweak: impl FnOnce(&mut Settings)) -> TestServer {
    let mut s = test_settings();
    s.adapter = broker.adapter_settings("fwd");
    tweak(&mut s);
    TestServer::start(s, |r| r.namespace("/", Namespace::new(|| FixtureHandler)))
}

/// Until each node has heard the other's heartbeat (and its address).
async fn wait_peers(nodes: &[&TestServer]) {
    for n in nodes {
        assert_eq!(n.wait_metric("riptide_adapter_peers", 1.0).await, 1.0);
    }
    // The address comes with a heartbeat, which may follow the first message.
    tokio::time::sleep(Duration::from_millis(1200)).await;
}

/// Two nodes on `broker`, each knowing the other's address.
async fn two_nodes(broker: &NatsServer) -> (TestServer, TestServer) {
    let a = node(broker, |_| {});
    let b = node(broker, |_| {});
    wait_peers(&[&a, &b]).await;
    (a, b)
}

/// The same session, its requests sent to `other` instead.
fn through(c: &PollingClient, other: &TestServer) -> PollingClient {
    PollingClient {
        http: c.http.clone(),
        base: other.url("EIO=4&transport=polling"),
        sid: c.sid.clone(),
        handshake: c.handshake.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_made_on_a_is_served_through_b() {
    let broker = NatsServer::start();
    let (a, b) = two_nodes(&broker).await;
    let on_a = PollingClient::open(&a).await;
    let via_b = through(&on_a, &b);
    assert_eq!(via_b.post("40").await, (200, "ok".to_string()));
    let reply = via_b.get_until(|r| r.starts_with("40")).await;
    assert!(reply.starts_with("40{\"sid\":"), "{reply}");
    // Echo through B, answered through A: one session, wherever it is asked.
    assert_eq!(via_b.post("421[\"echo\",\"hi\"]").await.0, 200);
    assert_eq!(
        on_a.get_until(|r| r.starts_with("431")).await,
        "431[\"hi\"]"
    );
    assert!(
        b.metric("riptide_forwarded_requests_total{kind=\"post\"}")
            .await
            >= 2.0
    );
    assert!(
        b.metric("riptide_forwarded_requests_total{kind=\"get\"}")
            .await
            >= 1.0
    );
    assert_eq!(
        a.metric("riptide_forwarded_requests_total{kind=\"post\"}")
            .await,
        0.0
    );

    // The owner's rules: a body over its max_payload is its 413, passed
    // back, and it closes the session.
    let big = "4".repeat(2_000_000);
    let (status, _) = via_b.post(big).await;
    assert_eq!(status, 413);
    let (status, body) = on_a.get().await;
    assert_engine_error(status, &body, 400, 1, "Session ID unknown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_owners_and_unreachable_ones_are_session_id_unknown() {
    let broker = NatsServer::start();
    // A announces an address nobody listens on: B's forward fails.
    let dead = free_port();
    let a = node(&broker, |s| {
        s.cluster.advertise_url = format!("http://127.0.0.1:{dead}");
    });
    let b = node(&broker, |_| {});
    wait_peers(&[&a, &b]).await;
    let on_a = PollingClient::open(&a).await;
    let via_b = through(&on_a, &b);
    let started = Instant::now();
    let (status, body) = via_b.post("40").await;
    assert_engine_error(status, &body, 400, 1, "Session ID unknown");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered, not hung"
    );
    assert_eq!(
        b.metric("riptide_forwarded_requests_total{kind=\"failed\"}")
            .await,
        1.0
    );

    // A sid naming a node that is no peer: unknown at once, nothing tried.
    let forged = PollingClient {
        sid: format!("zzzzzzzzzzzz{}", &on_a.sid[12..]),
        ..through(&on_a, &b)
    };
    let (status, body) = forged.post("40").await;
    assert_engine_error(status, &body, 400, 1, "Session ID unknown");
    assert_eq!(
        b.metric("riptide_forwarded_requests_total{kind=\"failed\"}")
            .await,
        1.0
    );

    // Forwarding off: B does not forward at all.
    let c = node(&broker, |s| s.cluster.forward_polling = false);
    assert_eq!(c.wait_metric("riptide_adapter_peers", 2.0).await, 2.0);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let d = node(&broker, |_| {});
    assert_eq!(d.wait_metric("riptide_adapter_peers", 3.0).await, 3.0);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let on_c = PollingClient::open(&c).await;
    // C's ids carry no node: D cannot tell its owner.
    let (status, body) = through(&on_c, &d).post("40").await;
    assert_engine_error(status, &body, 400, 1, "Session ID unknown");
}

#[actix_rt::test]
async fn many_forwarded_long_polls_at_once_do_not_queue_behind_each_other() {
    // More concurrent forwarded long-polls than an HTTP client's usual
    // per-host connection cap (awc's is 100): each must still be answered.
    let broker = NatsServer::start();
    let (a, b) = two_nodes(&broker).await;
    let mut sessions = Vec::new();
    for _ in 0..150 {
        let on_a = PollingClient::open(&a).await;
        sessions.push(through(&on_a, &b));
    }
    let waiting: Vec<_> = sessions.iter().map(common::spawn_get).collect();
    // Every GET is parked at A through B; now each gets its CONNECT reply.
    for s in &sessions {
        assert_eq!(s.post("40").await, (200, "ok".to_string()));
    }
    for get in waiting {
        let (status, body) = common::join_get(get).await;
        assert_eq!(status, 200);
        assert!(body.starts_with("40{\"sid\":"), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_poll_carries_everything_the_owner_had_queued() {
    // 3 MB queued for a polling client: more than twice max_payload, the
    // most one POST may carry, but what one GET answer may (up to
    // max_queued_bytes).
    let broker = NatsServer::start();
    let (a, b) = two_nodes(&broker).await;
    let on_a = PollingClient::open(&a).await;
    let via_b = through(&on_a, &b);
    let socket_id = via_b.sio_connect("/").await;
    let chunk = "x".repeat(300_000);
    for i in 0..10 {
        a.handle
            .of("/")
            .to(socket_id.clone())
            .emit("big", serde_json::json!({ "i": i, "pad": chunk }))
            .unwrap();
    }
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while got < 10 && Instant::now() < deadline {
        let (status, body) = via_b.get().await;
        assert_eq!(status, 200, "{}", &body[..body.len().min(200)]);
        got += body
            .split('\x1e')
            .filter(|r| r.starts_with("42[\"big\""))
            .count();
    }
    assert_eq!(got, 10, "every queued event came through node B");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgraded_through_b_carries_frames_larger_than_max_payload() {
    // max_payload bounds what clients send; what the owner sends is bounded
    // by its outbound queue. A 2 MB event reaches a client piped through B.
    let broker = NatsServer::start();
    let (a, b) = two_nodes(&broker).await;
    let on_a = PollingClient::open(&a).await;
    let socket_id = on_a.sio_connect("/").await;
    let mut ws = WsClient::upgrade_at(&b, "/socket.io/", &on_a.sid).await;
    ws.send("2probe").await;
    ws.expect_text("3probe").await;
    ws.send("5").await;
    // The upgrade has happened once the owner answers on the WebSocket.
    ws.send("42[\"echo\",\"up\"]").await;
    let pad = "y".repeat(2_000_000);
    a.handle
        .of("/")
        .to(socket_id)
        .emit("big", serde_json::json!({ "pad": pad }))
        .unwrap();
    loop {
        let text = ws.recv_text().await;
        if text.starts_with("42[\"big\"") {
            assert!(text.len() > 2_000_000);
            break;
        }
    }
    assert_eq!(
        b.metric("riptide_forwarded_requests_total{kind=\"websocket\"}")
            .await,
        1.0
    );
}
