//! Several nodes behave as one server: the same body runs over NATS and over
//! Redis (`parity_tests!` below), each test with its own broker and two or
//! three in-process nodes serving the fixture on `/`, driven by raw WebSocket
//! clients.
//!
//! - a room publish reaches the room's members on every node, and nobody
//!   else; a node with no member in the room does not subscribe to it;
//! - multi-room emits with `except` deliver exactly once across nodes, and a
//!   namespace-wide emit reaches every node once;
//! - 10,000 messages from one publisher arrive on another node complete, once
//!   each and in order;
//! - fetchSockets, socketsJoin/Leave and disconnectSockets from a node's
//!   handle apply to the matching sockets of every node;
//! - serverSideEmit reaches the other nodes' handlers, with acks gathered
//!   (a node that does not ack is `missing` after the timeout); a broadcast
//!   with acks gathers every receiver's ack across nodes; `to_user` and
//!   `disconnect_user` reach a user's sockets on every node; an emit to a
//!   socket id of another node reaches that socket, once;
//! - a node with peers stops paced at `server.drain_rate_per_s`;
//! - a broker restart mid-traffic: nodes report degraded in `/health` and keep
//!   serving local clients, then recover and cross-node traffic flows again;
//!   what a stream published while the broker was away arrives whole
//!   (buffered on the publishing node, released once the other nodes have
//!   subscribed again; only messages in flight when the broker died may be
//!   lost with it), never repeated or reordered.

mod common;

use std::time::{Duration, Instant};

use common::brokers::{Broker, NatsServer, RedisServer};
use common::{test_settings, Frame, TestServer, WsClient};
use riptide::adapter::{subject, PublishError, Topic};
use riptide::fixture::FixtureHandler;
use riptide::{
    EmitError, Event, HandlerContext, Namespace, NamespaceHandler, ServerEvent, Settings, Socket,
};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

const PREFIX: &str = "parity";
const QUIET: Duration = Duration::from_millis(400);
const RECOVERY: Duration = Duration::from_secs(20);

fn node_settings<B: Broker>(broker: &B) -> Settings {
    let mut s = test_settings();
    s.adapter = broker.adapter_settings(PREFIX);
    s
}

fn start_node(settings: Settings) -> TestServer {
    TestServer::start(settings, |r| {
        r.namespace("/", Namespace::new(|| FixtureHandler))
    })
}

fn start_nodes<B: Broker>(broker: &B, n: usize) -> Vec<TestServer> {
    (0..n).map(|_| start_node(node_settings(broker))).collect()
}

fn room_subject(room: &str) -> String {
    subject::subject(PREFIX, &Topic::room("/", room))
}

/// Wait until `n` nodes hold a subscription on `room` at the broker: a join
/// is in effect across nodes once its subscription reached the broker.
async fn wait_subscribers<B: Broker>(broker: &B, room: &str, n: usize) {
    let subject = room_subject(room);
    let deadline = Instant::now() + RECOVERY;
    loop {
        let have = broker.subscriptions_on(&subject);
        if have == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{room}: {have} subscribers at the broker, expected {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client connected to `/` on `node`, member of `rooms` (joined through the
/// fixture, acknowledged).
async fn client(node: &TestServer, rooms: &[&str]) -> WsClient {
    let (mut c, _) = WsClient::connect(node, "/", None).await;
    for (i, room) in rooms.iter().enumerate() {
        let id = i as u64 + 1;
        c.emit("/", json!(["join", room]), Some(id)).await;
        let ack = c.recv_text().await;
        assert_eq!(ack, format!("43{id}[]"), "join ack");
    }
    c
}

/// The arguments of the next event packet.
async fn next_event(c: &mut WsClient) -> Value {
    match c.recv().await {
        Frame::Text(t) => {
            let body = t
                .strip_prefix("42")
                .unwrap_or_else(|| panic!("event, got {t:?}"));
            serde_json::from_str(body).unwrap()
        }
        other => panic!("expected an event, got {other:?}"),
    }
}

async fn expect_event(c: &mut WsClient, expected: Value) {
    assert_eq!(next_event(c).await, expected);
}

async fn health(node: &TestServer) -> Value {
    let (status, body) = node.get("/health").await;
    assert_eq!(status, 200, "/health is 200 even when degraded: {body}");
    serde_json::from_str(&body).unwrap()
}

async fn wait_health(node: &TestServer, status: &str) -> Value {
    let deadline = Instant::now() + RECOVERY;
    loop {
        let h = health(node).await;
        if h["status"] == status {
            return h;
        }
        assert!(Instant::now() < deadline, "health never {status}: {h}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- the bodies ------------------------------------------------------------------

async fn room_publish_reaches_members_on_every_node<B: Broker>() {
    let broker = B::start();
    let nodes = start_nodes(&broker, 3);
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let mut a_member = client(a, &["r"]).await;
    let mut a_other = client(a, &["elsewhere"]).await;
    let mut b_member = client(b, &["r"]).await;
    let mut b_other = client(b, &[]).await;
    let mut c_other = client(c, &["elsewhere"]).await;
    wait_subscribers(&broker, "r", 2).await;
    assert_eq!(health(a).await["status"], "ok");

    // From a member on A: A's and B's members get it, once.
    a_member.emit("/", json!(["publish", "r", 1]), None).await;
    expect_event(&mut a_member, json!(["msg", 1])).await;
    expect_event(&mut b_member, json!(["msg", 1])).await;
    // From a non-member on B: the same.
    b_other.emit("/", json!(["publish", "r", 2]), None).await;
    expect_event(&mut a_member, json!(["msg", 2])).await;
    expect_event(&mut b_member, json!(["msg", 2])).await;
    // The same from the server API, with binary attachments.
    let mut payload = riptide::Payload::default();
    let placeholder = payload.attach(vec![1u8, 2, 3]);
    payload.args.push(placeholder);
    a.handle.of("/").to("r").emit("bin", payload).expect("emit");
    for m in [&mut a_member, &mut b_member] {
        match m.recv().await {
            Frame::Text(t) => assert!(t.starts_with("451-[\"bin\""), "{t}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(m.recv().await, Frame::Binary(vec![1, 2, 3]));
    }

    for c in [
        &mut a_member,
        &mut b_member,
        &mut a_other,
        &mut b_other,
        &mut c_other,
    ] {
        c.expect_silence(QUIET).await;
    }
    // C has no member in `r`: it never subscribed, so the broker never sent
    // it the room's traffic.
    assert_eq!(broker.subscriptions_on(&room_subject("r")), 2);

    // Interest follows membership: the last member leaving unsubscribes.
    drop(b_member);
    wait_subscribers(&broker, "r", 1).await;

    // Too large for the broker: local members served, the emitter told.
    let big = "x".repeat(2 << 20);
    let err = a.handle.of("/").to("nobody").emit("big", json!(big));
    assert!(
        matches!(err, Err(EmitError::Cluster(PublishError::TooLarge { .. }))),
        "{err:?}"
    );
}

async fn except_and_multi_room_exactly_once<B: Broker>() {
    let broker = B::start();
    let nodes = start_nodes(&broker, 3);
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let mut x = client(a, &["r1", "r2"]).await; // gets it once
    let mut y = client(a, &["r1", "ex"]).await; // excluded
    let mut z = client(b, &["r2", "r1"]).await; // gets it once
    let mut w = client(b, &["r2", "ex"]).await; // excluded
    let mut v = client(b, &["r3"]).await; // not targeted
    let mut u = client(c, &["r2"]).await; // gets it once
    wait_subscribers(&broker, "r1", 2).await;
    wait_subscribers(&broker, "r2", 3).await;
    wait_subscribers(&broker, "ex", 2).await;
    wait_subscribers(&broker, "r3", 1).await;

    for (i, node) in nodes.iter().enumerate() {
        node.handle
            .of("/")
            .to("r1")
            .to("r2")
            .except("ex")
            .emit("m", json!(i))
            .expect("emit");
        for s in [&mut x, &mut z, &mut u] {
            expect_event(s, json!(["m", i])).await;
        }
    }
    // Namespace-wide: every socket of every node, once.
    b.handle.of("/").emit("all", json!(true)).expect("emit");
    for s in [&mut x, &mut y, &mut z, &mut w, &mut v, &mut u] {
        expect_event(s, json!(["all", true])).await;
    }
    // Namespace-wide with an exclusion.
    c.handle
        .of("/")
        .except("ex")
        .emit("most", ())
        .expect("emit");
    for s in [&mut x, &mut z, &mut v, &mut u] {
        expect_event(s, json!(["most"])).await;
    }
    for s in [&mut x, &mut y, &mut z, &mut w, &mut v, &mut u] {
        s.expect_silence(QUIET).await;
    }
}

async fn ten_thousand_messages_in_order<B: Broker>() {
    const N: u64 = 10_000;
    let broker = B::start();
    let mut settings = node_settings(&broker);
    // Not what is tested here: the slow-consumer policy of the receivers.
    settings.limits.max_queued_frames = 2 * N as usize;
    let a = start_node(settings.clone());
    let b = start_node(settings);
    let receivers = [client(&b, &["flood"]).await, client(&b, &["flood"]).await];
    wait_subscribers(&broker, "flood", 1).await;

    let readers: Vec<_> = receivers
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let mut next = 0u64;
                while next < N {
                    let ev = next_event(&mut c).await;
                    assert_eq!(ev, json!(["n", next]), "lost, duplicated or reordered");
                    next += 1;
                }
                c.expect_silence(QUIET).await;
            })
        })
        .collect();

    let handle = a.handle.clone();
    let mut full = 0u64;
    for i in 0..N {
        loop {
            match handle.of("/").to("flood").emit("n", json!(i)) {
                Ok(()) => break,
                // Refused, not sent: retrying keeps the order.
                Err(EmitError::Cluster(PublishError::BufferFull)) => {
                    full += 1;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(e) => panic!("emit {i}: {e}"),
            }
        }
        if i % 256 == 255 {
            tokio::task::yield_now().await;
        }
    }
    for r in readers {
        tokio::time::timeout(Duration::from_secs(30), r)
            .await
            .expect("all messages in time")
            .expect("reader");
    }
    assert_eq!(
        b.metric("riptide_adapter_errors_total{kind=\"inbound_overflow\"}")
            .await,
        0.0
    );
    let _ = full;
}

async fn broker_restart_degrades_then_recovers<B: Broker>() {
    let mut broker = B::start();
    let nodes = start_nodes(&broker, 2);
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut a1 = client(a, &["r"]).await;
    let mut a2 = client(a, &["r"]).await;
    let mut b1 = client(b, &["r"]).await;
    wait_subscribers(&broker, "r", 2).await;
    a1.emit("/", json!(["publish", "r", "before"]), None).await;
    for c in [&mut a1, &mut a2, &mut b1] {
        expect_event(c, json!(["msg", "before"])).await;
    }

    // Traffic in flight through the outage: a ticker on A to a member on B.
    let mut ticks = client(b, &["tick"]).await;
    wait_subscribers(&broker, "tick", 1).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent_so_far = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let ticker = {
        let (handle, stop, so_far) = (a.handle.clone(), stop.clone(), sent_so_far.clone());
        tokio::spawn(async move {
            let mut sent = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match handle.of("/").to("tick").emit("t", json!(sent + 1)) {
                    Ok(()) => {
                        sent += 1;
                        so_far.store(sent, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(EmitError::Cluster(PublishError::BufferFull)) => {}
                    Err(e) => panic!("{e}"),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            sent
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;

    broker.kill();
    for node in [a, b] {
        let h = wait_health(node, "degraded").await;
        assert_eq!(h["adapter"]["status"], "degraded", "{h}");
    }
    // Ticks from here on are buffered on A while the broker is away; only
    // the ones in flight when it died (published, not yet forwarded) may be
    // lost with it.
    let buffered_from = sent_so_far.load(std::sync::atomic::Ordering::Relaxed) + 1;
    // Local clients are still served.
    a1.emit("/", json!(["publish", "r", "during"]), None).await;
    expect_event(&mut a1, json!(["msg", "during"])).await;
    expect_event(&mut a2, json!(["msg", "during"])).await;
    let (mut fresh, _) = WsClient::connect(a, "/", None).await;
    fresh.emit("/", json!(["echo", 1]), Some(9)).await;
    assert_eq!(fresh.recv_text().await, "439[1]");

    broker.restart();
    for node in [a, b] {
        wait_health(node, "ok").await;
    }
    wait_subscribers(&broker, "r", 2).await;
    // Cross-node traffic flows again, both ways. What was published during
    // the outage may arrive first (the outbound buffer is flushed on
    // reconnect), never twice.
    let deadline = Instant::now() + RECOVERY;
    let mut round = 0;
    'recovered: loop {
        round += 1;
        a2.emit("/", json!(["publish", "r", round]), None).await;
        expect_event(&mut a1, json!(["msg", round])).await;
        expect_event(&mut a2, json!(["msg", round])).await;
        loop {
            match b1.recv_within(Duration::from_millis(500)).await {
                None => break,
                Some(Frame::Text(t)) => {
                    let ev: Value = serde_json::from_str(t.strip_prefix("42").unwrap()).unwrap();
                    if ev == json!(["msg", round]) {
                        break 'recovered;
                    }
                    assert!(
                        ev == json!(["msg", "during"]) || ev[1].is_number(),
                        "unexpected {ev}"
                    );
                }
                Some(other) => panic!("{other:?}"),
            }
        }
        assert!(
            Instant::now() < deadline,
            "cross-node traffic never resumed"
        );
    }
    b1.emit("/", json!(["publish", "r", "back"]), None).await;
    for c in [&mut a1, &mut a2, &mut b1] {
        expect_event(c, json!(["msg", "back"])).await;
    }

    // The ticks: none twice or out of order, and every one the buffer took
    // while the broker was away arrives (released once the other nodes had
    // subscribed again).
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = ticker.await.expect("ticker");
    let mut last = 0u64;
    let mut missing = Vec::new();
    while last < sent {
        let ev = next_event(&mut ticks).await;
        let n = ev[1].as_u64().unwrap_or_else(|| panic!("{ev}"));
        assert!(n > last, "tick {n} after {last}: duplicated or reordered");
        missing.extend(last + 1..n);
        last = n;
    }
    ticks.expect_silence(QUIET).await;
    assert!(
        missing.iter().all(|&n| n < buffered_from),
        "ticks {missing:?} lost; those from {buffered_from} on were buffered during the outage"
    );
}

async fn wait_peers(nodes: &[TestServer]) {
    let n = (nodes.len() - 1) as f64;
    for node in nodes {
        assert_eq!(node.wait_metric("riptide_adapter_peers", n).await, n);
    }
}

async fn cluster_operations_span_nodes<B: Broker>() {
    let broker = B::start();
    let nodes = start_nodes(&broker, 3);
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let (mut a1, a1_id) = WsClient::connect(a, "/", None).await;
    a1.emit("/", json!(["join", "r"]), Some(1)).await;
    assert_eq!(a1.recv_text().await, "431[]");
    let (mut b1, b1_id) = WsClient::connect(b, "/", None).await;
    b1.emit("/", json!(["join", "r"]), Some(1)).await;
    assert_eq!(b1.recv_text().await, "431[]");
    let mut c1 = client(c, &[]).await;
    wait_peers(&nodes).await;

    // fetchSockets: this node's sockets and the others', nobody missing.
    let found = a.handle.of("/").to("r").fetch_sockets().await;
    let local: Vec<&str> = found.local.iter().map(|s| s.id()).collect();
    assert_eq!(local, [a1_id.as_str()]);
    assert_eq!(found.remote.len(), 1, "{:?}", found.remote);
    assert_eq!(found.remote[0].id, b1_id);
    assert!(found.remote[0].rooms.contains(&"r".to_string()));
    assert!(found.missing.is_empty());

    // socketsJoin from a node with no member: applied on the others.
    let joined = c.handle.of("/").to("r").sockets_join("r2").await;
    assert_eq!((joined.local, joined.remote), (0, 2));
    assert!(joined.missing.is_empty());
    wait_subscribers(&broker, "r2", 2).await;
    c.handle.of("/").to("r2").emit("m", json!(1)).expect("emit");
    expect_event(&mut a1, json!(["m", 1])).await;
    expect_event(&mut b1, json!(["m", 1])).await;

    // socketsLeave.
    let left = b.handle.of("/").to("r2").sockets_leave("r2").await;
    assert_eq!((left.local, left.remote), (1, 1));
    wait_subscribers(&broker, "r2", 0).await;

    // disconnectSockets.
    let gone = a.handle.of("/").to("r").disconnect_sockets(false).await;
    assert_eq!((gone.local, gone.remote), (1, 1));
    assert_eq!(a1.recv_text().await, "41");
    assert_eq!(b1.recv_text().await, "41");
    c1.expect_silence(QUIET).await;
}

/// The fixture, plus: a connect middleware that sets the user from
/// `auth.user`, and server-side events recorded and acked with the node's
/// tag (except `silent`, never acked).
struct ParityHandler {
    tag: &'static str,
    seen: Arc<Mutex<Vec<(String, Value)>>>,
}

impl NamespaceHandler for ParityHandler {
    fn on_event(&mut self, socket: &Socket, event: Event, _ctx: &mut HandlerContext<Self>) {
        riptide::fixture::handle_event(socket, event);
    }

    fn on_server_event(&mut self, event: ServerEvent, _ctx: &mut HandlerContext<Self>) {
        let args = Value::Array(event.payload.args.clone());
        self.seen.lock().unwrap().push((event.name.clone(), args));
        if let (Some(ack), false) = (event.ack, event.name == "silent") {
            ack.send(json!(self.tag));
        }
    }
}

type Seen = Arc<Mutex<Vec<(String, Value)>>>;

fn start_parity_node<B: Broker>(broker: &B, tag: &'static str) -> (TestServer, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let node = TestServer::start(node_settings(broker), move |r| {
        let ns = Namespace::new(move || ParityHandler {
            tag,
            seen: s.clone(),
        })
        .on_connect(|req| {
            if let Some(user) = req.auth.get("user").and_then(Value::as_str) {
                req.set_user(user);
            }
            Ok(())
        });
        r.namespace("/", ns)
    });
    (node, seen)
}

async fn wait_seen(seen: &Seen, n: usize) -> Vec<(String, Value)> {
    let deadline = Instant::now() + RECOVERY;
    loop {
        let got = seen.lock().unwrap().clone();
        if got.len() >= n {
            return got;
        }
        assert!(Instant::now() < deadline, "server events: {got:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The next event, which must ask for an ack: (ack id, arguments).
async fn next_event_with_ack(c: &mut WsClient) -> (u64, Value) {
    let t = c.recv_text().await;
    let body = t
        .strip_prefix("42")
        .unwrap_or_else(|| panic!("event, got {t:?}"));
    let digits = body.find('[').expect("arguments");
    let id = body[..digits].parse().expect("an ack id");
    (id, serde_json::from_str(&body[digits..]).unwrap())
}

/// `emit_with_ack("ask", n)` to room `q` from `node`, in the background.
fn ask_room_q(
    node: &TestServer,
    n: i64,
    timeout: Duration,
) -> tokio::task::JoinHandle<Result<riptide::BroadcastAcks, EmitError>> {
    let handle = node.handle.clone();
    tokio::spawn(async move {
        handle
            .of("/")
            .to("q")
            .emit_with_ack("ask", json!(n), Some(timeout))
            .await
    })
}

async fn acks_users_and_socket_ids_span_nodes<B: Broker>() {
    let broker = B::start();
    let (a, a_seen) = start_parity_node(&broker, "a");
    let (b, b_seen) = start_parity_node(&broker, "b");
    let (c, c_seen) = start_parity_node(&broker, "c");
    let nodes = [a, b, c];
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    wait_peers(&nodes).await;

    // serverSideEmit: the other nodes' handlers, not the emitter's.
    a.handle
        .server_side_emit("/", "hello", json!(1))
        .expect("server-side emit");
    for seen in [&b_seen, &c_seen] {
        assert_eq!(wait_seen(seen, 1).await, [("hello".into(), json!([1]))]);
    }
    let out = a
        .handle
        .server_side_emit_with_ack("/", "ping", json!(2), Some(Duration::from_secs(5)))
        .await
        .expect("server-side emit with ack");
    let mut tags: Vec<Value> = out
        .responses
        .iter()
        .map(|(_, p)| p.args[0].clone())
        .collect();
    tags.sort_by_key(|t| t.to_string());
    assert_eq!(tags, [json!("b"), json!("c")]);
    assert!(out.missing.is_empty());
    assert!(
        a_seen.lock().unwrap().is_empty(),
        "the emitter's own handler ran"
    );
    // Nobody acks `silent`: both are missing once the timeout passed.
    let started = Instant::now();
    let out = b
        .handle
        .server_side_emit_with_ack("/", "silent", (), Some(Duration::from_millis(500)))
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(out.responses.is_empty());
    assert_eq!(out.missing.len(), 2);
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // Reserved names are refused before anything is sent.
    assert!(matches!(
        a.handle.server_side_emit("/", "connect", ()),
        Err(EmitError::ReservedEvent(_))
    ));

    // A broadcast with acks: every receiver's ack, from every node.
    let mut a1 = client(a, &["q"]).await;
    let (mut b1, b1_id) = WsClient::connect(b, "/", None).await;
    b1.emit("/", json!(["join", "q"]), Some(1)).await;
    assert_eq!(b1.recv_text().await, "431[]");
    let mut c1 = client(c, &[]).await;
    wait_subscribers(&broker, "q", 2).await;
    let asking = ask_room_q(a, 1, Duration::from_secs(5));
    for (client, answer) in [(&mut a1, "yes-a"), (&mut b1, "yes-b")] {
        let (id, args) = next_event_with_ack(client).await;
        assert_eq!(args, json!(["ask", 1]));
        client.send(&format!("43{id}[\"{answer}\"]")).await;
    }
    let acks = asking.await.unwrap().expect("emit with ack");
    let mut got: Vec<Value> = acks.acks.iter().map(|p| p.args[0].clone()).collect();
    got.sort_by_key(|v| v.to_string());
    assert_eq!(got, [json!("yes-a"), json!("yes-b")]);
    assert_eq!((acks.unanswered, acks.missing.len()), (0, 0));
    c1.expect_silence(QUIET).await;
    // One receiver (on B) does not answer: counted, after the timeout.
    let asking = ask_room_q(c, 2, Duration::from_millis(600));
    let (id, _) = next_event_with_ack(&mut a1).await;
    a1.send(&format!("43{id}[\"late-b-not\"]")).await;
    let _ = next_event_with_ack(&mut b1).await;
    let acks = asking.await.unwrap().unwrap();
    assert_eq!(acks.acks.len(), 1);
    assert_eq!((acks.unanswered, acks.missing.len()), (1, 0));

    // An emit to a socket id of another node reaches that socket once, also
    // when it is in a target room too.
    a.handle
        .of("/")
        .to(b1_id.clone())
        .emit("direct", json!(1))
        .unwrap();
    expect_event(&mut b1, json!(["direct", 1])).await;
    a.handle
        .of("/")
        .to(b1_id.clone())
        .to("q")
        .emit("both", json!(2))
        .unwrap();
    expect_event(&mut b1, json!(["both", 2])).await;
    expect_event(&mut a1, json!(["both", 2])).await;
    b1.expect_silence(QUIET).await;
    a1.expect_silence(Duration::ZERO).await;
    c1.expect_silence(Duration::ZERO).await;

    // A user's sockets on every node.
    let (mut alice_a, _) = WsClient::connect(a, "/", Some(json!({ "user": "alice" }))).await;
    let (mut alice_b, _) = WsClient::connect(b, "/", Some(json!({ "user": "alice" }))).await;
    let (mut bob_c, _) = WsClient::connect(c, "/", Some(json!({ "user": "bob" }))).await;
    c.handle.to_user("/", "alice").emit("hi", json!(3)).unwrap();
    expect_event(&mut alice_a, json!(["hi", 3])).await;
    expect_event(&mut alice_b, json!(["hi", 3])).await;
    bob_c.expect_silence(QUIET).await;
    // A revoked user is disconnected on every node.
    let gone = c.handle.disconnect_user("alice").await;
    assert_eq!((gone.local, gone.remote), (0, 2));
    assert!(gone.missing.is_empty());
    assert_eq!(alice_a.recv_text().await, "41");
    assert_eq!(alice_b.recv_text().await, "41");
    bob_c.expect_silence(QUIET).await;
}

/// A stopping node with peers closes its sessions at `drain_rate_per_s`, so
/// its clients do not all arrive at the other nodes at once (a node alone
/// closes them at once).
async fn shutdown_with_peers_is_paced<B: Broker>() {
    let broker = B::start();
    let mut s = node_settings(&broker);
    s.server.drain_rate_per_s = 100;
    let nodes = vec![start_node(s), start_node(node_settings(&broker))];
    wait_peers(&nodes).await;
    // 40 sessions at 100/s: about 400 ms from the first close to the last.
    let mut readers = Vec::new();
    for _ in 0..40 {
        let (mut c, _) = WsClient::connect(&nodes[0], "/", None).await;
        readers.push(tokio::spawn(async move {
            loop {
                match c.recv_within(Duration::from_secs(10)).await {
                    Some(Frame::Text(t)) if t == "1" => return Some(Instant::now()),
                    Some(Frame::Closed(..)) | None => return None,
                    Some(_) => {}
                }
            }
        }));
    }
    let mut nodes = nodes;
    let a = nodes.remove(0);
    tokio::task::spawn_blocking(move || drop(a)).await.unwrap();
    let mut closes = Vec::new();
    for r in readers {
        closes.push(r.await.unwrap().expect("every client told before the end"));
    }
    closes.sort();
    let spread = *closes.last().unwrap() - closes[0];
    // A lower bound only: a busy machine spreads them further, never less.
    assert!(
        spread >= Duration::from_millis(250),
        "closes spread over {spread:?}, expected about 400 ms at 100/s"
    );
}

macro_rules! parity_tests {
    ($name:ident, $broker:ty) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn shutdown_with_peers_is_paced() {
                super::shutdown_with_peers_is_paced::<$broker>().await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn room_publish_reaches_members_on_every_node() {
                super::room_publish_reaches_members_on_every_node::<$broker>().await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn except_and_multi_room_exactly_once() {
                super::except_and_multi_room_exactly_once::<$broker>().await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn ten_thousand_messages_in_order() {
                super::ten_thousand_messages_in_order::<$broker>().await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cluster_operations_span_nodes() {
                super::cluster_operations_span_nodes::<$broker>().await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn acks_users_and_socket_ids_span_nodes() {
                super::acks_users_and_socket_ids_span_nodes::<$broker>().await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn broker_restart_degrades_then_recovers() {
                super::broker_restart_degrades_then_recovers::<$broker>().await
            }
        }
    };
}

parity_tests!(nats, NatsServer);
parity_tests!(redis, RedisServer);
