//! Slow consumers: a client that stops reading its socket is cut off (its
//! outbound queue full past `limits.slow_consumer_grace_ms`, or over
//! `limits.max_queued_bytes` at once), its TCP connection and file
//! descriptor are released, it is counted, and the healthy members of the
//! same room get every message in order. Volatile emits to a full client are
//! dropped and counted instead of queued. The outbound queue depth histogram
//! is exported.
//!
//! The slow client is a raw `TcpStream` with a 4 KiB receive buffer, so the
//! kernel absorbs little of what the server writes once it stops reading.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use riptide::{Namespace, Riptide, Settings};
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

fn fixture_server(settings: Settings) -> TestServer {
    TestServer::start(settings, |r: Riptide| {
        r.namespace("/", Namespace::new(|| riptide::fixture::FixtureHandler))
    })
}

fn settings(frames: usize, bytes: usize, grace_ms: u64) -> Settings {
    let mut s = test_settings();
    s.limits.max_queued_frames = frames;
    s.limits.max_queued_bytes = bytes;
    s.limits.slow_consumer_grace_ms = grace_ms;
    s
}

/// A client that reads its handshake, joins room "r", then stops reading.
struct SlowClient {
    ws: WebSocketStream<TcpStream>,
    /// Its local port: the server side of the connection has it as peer.
    port: u16,
}

impl SlowClient {
    async fn open(server: &TestServer) -> SlowClient {
        let sock = TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        let addr = format!("127.0.0.1:{}", server.port).parse().unwrap();
        let stream = tokio::time::timeout(WAIT, sock.connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        let port = stream.local_addr().unwrap().port();
        let (ws, _) = tokio::time::timeout(
            WAIT,
            tokio_tungstenite::client_async(server.ws_url("EIO=4&transport=websocket"), stream),
        )
        .await
        .expect("websocket handshake in time")
        .expect("websocket handshake");
        let mut c = SlowClient { ws, port };
        let open = c.recv_text().await;
        assert!(open.starts_with('0'), "open packet, got {open:?}");
        c.send("40").await;
        let connect = c.recv_text().await;
        assert!(connect.starts_with("40{"), "CONNECT reply, got {connect:?}");
        c.send(r#"421["join","r"]"#).await;
        assert_eq!(c.recv_text().await, "431[]");
        c
    }

    async fn send(&mut self, text: &str) {
        self.ws.send(WsMessage::Text(text.into())).await.unwrap();
    }

    async fn recv_text(&mut self) -> String {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await {
                Ok(Some(Ok(WsMessage::Text(t)))) if t.as_str() == "2" => self.send("3").await,
                Ok(Some(Ok(WsMessage::Text(t)))) => return t.to_string(),
                Ok(Some(Ok(_))) => {}
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// Read what is left until the connection ends; `Err` if it is still
    /// open after `wait`. Ok(description of how it ended).
    async fn read_to_end(&mut self, wait: Duration) -> Result<String, String> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut frames = 0;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => return Err(format!("still open after {wait:?} ({frames} frames read)")),
                Ok(None) => return Ok(format!("EOF after {frames} frames")),
                Ok(Some(Err(e))) => return Ok(format!("error after {frames} frames: {e}")),
                Ok(Some(Ok(WsMessage::Close(c)))) => {
                    return Ok(format!("close frame {c:?} after {frames} frames"))
                }
                Ok(Some(Ok(_))) => frames += 1,
            }
        }
    }
}

/// Whether the server's side of the connection to local port `client_port`
/// still exists (any state) in the network namespace's TCP table.
fn server_side_exists(server_port: u16, client_port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let port = |addr: &str| {
        addr.rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    table.lines().skip(1).any(|l| {
        let mut f = l.split_whitespace().skip(1);
        let (Some(local), Some(remote)) = (f.next(), f.next()) else {
            return false;
        };
        port(local) == Some(server_port) && port(remote) == Some(client_port)
    })
}

/// Open file descriptors of this process (the server runs in it).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The descriptor count once it has stopped changing (connections the
/// metric requests used are closed asynchronously by the server).
async fn settled_fds() -> usize {
    let mut last = open_fds();
    let mut stable = 0;
    while stable < 5 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = open_fds();
        stable = if now == last { stable + 1 } else { 0 };
        last = now;
    }
    last
}

/// Wait until the server side of the slow client's connection is gone;
/// returns when, or None if it is still there at `deadline`.
async fn wait_server_side_gone(
    server: &TestServer,
    slow: &SlowClient,
    deadline: Instant,
) -> Option<Instant> {
    loop {
        if !server_side_exists(server.port, slow.port) {
            return Some(Instant::now());
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A healthy member of room "r" reading in its own task: it checks every
/// `msg` arrives in order and publishes how many it has seen.
struct Reader {
    seen: Arc<AtomicU64>,
    target: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Result<u64, String>>,
}

impl Reader {
    async fn start(server: &TestServer) -> Reader {
        let (mut c, _) = WsClient::connect(server, "/", None).await;
        c.send(r#"421["join","r"]"#).await;
        c.expect_text("431[]").await;
        let seen = Arc::new(AtomicU64::new(0));
        let target = Arc::new(AtomicU64::new(u64::MAX));
        let (s, t) = (seen.clone(), target.clone());
        let task = tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            let mut next = 0u64;
            while next < t.load(Ordering::SeqCst) {
                if tokio::time::Instant::now() > deadline {
                    return Err(format!("only {next} messages before the deadline"));
                }
                match c.recv_within(Duration::from_millis(100)).await {
                    None => continue,
                    Some(Frame::Text(text)) => {
                        let Some(json) = text.strip_prefix("42") else {
                            return Err(format!("unexpected packet {text:?}"));
                        };
                        let v: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
                        if v[0] == "v" {
                            continue; // volatile: may or may not come
                        }
                        if v[0] != "msg" {
                            return Err(format!("unexpected event {text:.80}"));
                        }
                        let seq = v[1]["seq"].as_u64().ok_or("no seq")?;
                        if seq != next {
                            return Err(format!("expected seq {next}, got {seq}"));
                        }
                        next += 1;
                        s.store(next, Ordering::SeqCst);
                    }
                    Some(other) => return Err(format!("unexpected {other:?} after {next}")),
                }
            }
            Ok(next)
        });
        Reader { seen, target, task }
    }

    fn seen(&self) -> u64 {
        self.seen.load(Ordering::SeqCst)
    }

    async fn finish(self, total: u64) -> u64 {
        self.target.store(total, Ordering::SeqCst);
        self.task
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("healthy reader: {e}"))
    }
}

/// Publish `msg` `{"seq": n, "pad": ...}` to room "r" in batches of `batch`,
/// each only once every reader has the previous ones (so healthy clients
/// never fill up), until `stop` says so or `max` are sent. Returns how many.
async fn publish(
    server: &TestServer,
    readers: &[Reader],
    first: u64,
    pad: &str,
    batch: u64,
    max: u64,
    mut stop: impl FnMut() -> bool,
) -> u64 {
    let mut sent = 0;
    while sent < max && !stop() {
        for _ in 0..batch {
            server
                .handle
                .of("/")
                .to("r")
                .emit("msg", json!({ "seq": first + sent, "pad": pad }))
                .unwrap();
            sent += 1;
        }
        let deadline = Instant::now() + WAIT;
        while readers.iter().any(|r| r.seen() < first + sent) {
            assert!(
                Instant::now() < deadline,
                "healthy readers stalled at {sent}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    sent
}

/// The tests count this process's file descriptors and the node's TCP
/// connections: they run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CONNECTED: &str = "riptide_sockets_connected{namespace=\"/\"}";
const SLOW_CLOSES: &str = "riptide_slow_consumer_closes_total";

#[tokio::test]
async fn slow_consumer_is_closed_after_the_grace_and_releases_its_fd() {
    let _serial = SERIAL.lock().await;
    let grace = Duration::from_millis(500);
    // The byte cap is out of reach: at most 20,000 messages of 3 KiB are
    // published (60 MiB). At 1 MiB it tripped before the grace whenever the
    // machine was idle enough to publish 1 MiB in under 500 ms.
    let server = fixture_server(settings(64, 64 << 20, grace.as_millis() as u64));
    let readers = [Reader::start(&server).await, Reader::start(&server).await];
    server.assert_metric(CONNECTED, 2.0).await;
    let fds_before = settled_fds().await;

    let mut slow = SlowClient::open(&server).await;
    server.assert_metric(CONNECTED, 3.0).await;
    assert!(server_side_exists(server.port, slow.port));

    // 3 KiB messages: 64 frames are ~200 KiB, far under the byte cap, so
    // only the frame cap and the grace can close the slow client.
    let pad = "x".repeat(3 * 1024);
    let started = Instant::now();
    let (port, slow_port) = (server.port, slow.port);
    let sent = publish(&server, &readers, 0, &pad, 16, 20_000, || {
        !server_side_exists(port, slow_port)
    })
    .await;
    let closed_at = wait_server_side_gone(&server, &slow, Instant::now() + WAIT)
        .await
        .unwrap_or_else(|| panic!("slow client still connected after {sent} messages"));
    let close_after = closed_at - started;
    eprintln!(
        "slow consumer (frame cap) closed {close_after:?} after publishing began ({sent} messages)"
    );
    assert!(
        close_after >= grace,
        "closed before the grace: {close_after:?}"
    );
    assert!(
        close_after <= grace + Duration::from_secs(3),
        "closed too late: {close_after:?}"
    );
    // The healthy ones keep getting messages after the close.
    let more = publish(&server, &readers, sent, &pad, 16, 64, || false).await;
    let total = sent + more;

    // (a) the client's connection is dead: reading ends with a reset or EOF.
    let end = slow.read_to_end(Duration::from_secs(3)).await;
    eprintln!("slow client read: {end:?}");
    assert!(end.is_ok(), "slow client's connection: {end:?}");
    drop(slow);

    // (b) every descriptor it used is released (its own client end too, now).
    let deadline = Instant::now() + Duration::from_secs(3);
    while open_fds() > fds_before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(open_fds(), fds_before, "file descriptors after the close");

    // (c) counted once; the socket is gone.
    server.assert_metric(SLOW_CLOSES, 1.0).await;
    server.assert_metric(CONNECTED, 2.0).await;
    server
        .assert_metric(
            "riptide_engine_sessions_closed_total{reason=\"slow consumer\"}",
            1.0,
        )
        .await;

    // (d) the healthy ones got everything, in order.
    for r in readers {
        assert_eq!(r.finish(total).await, total);
    }
}

#[tokio::test]
async fn byte_cap_closes_a_slow_consumer_at_once() {
    let _serial = SERIAL.lock().await;
    // A grace far longer than the test: only the byte cap can close it.
    let server = fixture_server(settings(100_000, 256 * 1024, 600_000));
    let readers = [Reader::start(&server).await];
    let fds_before = settled_fds().await;
    let mut slow = SlowClient::open(&server).await;

    let pad = "y".repeat(32 * 1024);
    let started = Instant::now();
    let (port, slow_port) = (server.port, slow.port);
    let sent = publish(&server, &readers, 0, &pad, 4, 2_000, || {
        !server_side_exists(port, slow_port)
    })
    .await;
    let closed_at = wait_server_side_gone(&server, &slow, Instant::now() + WAIT)
        .await
        .unwrap_or_else(|| panic!("slow client still connected after {sent} messages"));
    eprintln!(
        "slow consumer (byte cap) closed {:?} after publishing began ({sent} messages of 32 KiB)",
        closed_at - started
    );
    assert!(closed_at - started < Duration::from_secs(5));
    let end = slow.read_to_end(Duration::from_secs(3)).await;
    assert!(end.is_ok(), "slow client's connection: {end:?}");
    drop(slow);
    let deadline = Instant::now() + Duration::from_secs(3);
    while open_fds() > fds_before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(open_fds(), fds_before, "file descriptors after the close");
    server.assert_metric(SLOW_CLOSES, 1.0).await;
    server.assert_metric(CONNECTED, 1.0).await;
    for r in readers {
        assert_eq!(r.finish(sent).await, sent);
    }
}

#[tokio::test]
async fn volatile_emits_to_a_full_client_are_dropped_not_queued() {
    let _serial = SERIAL.lock().await;
    // Full after 16 frames; a grace longer than the test; a byte cap that
    // the volatile emits below would blow through if they were queued.
    let server = fixture_server(settings(16, 512 * 1024, 600_000));
    let readers = [Reader::start(&server).await];
    let slow = SlowClient::open(&server).await;

    // Fill it: normal emits until a volatile probe is dropped.
    let pad = "z".repeat(2 * 1024);
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "slow client never filled up");
        sent += publish(&server, &readers, sent, &pad, 8, 8, || false).await;
        let before = server.metric("riptide_volatile_dropped_total").await;
        server
            .handle
            .of("/")
            .to("r")
            .volatile()
            .emit("v", json!({ "probe": sent }))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        if server.metric("riptide_volatile_dropped_total").await > before {
            break;
        }
    }
    eprintln!("slow client full after {sent} messages");
    let dropped_before = server.metric("riptide_volatile_dropped_total").await;
    // 1000 volatile emits of 4 KiB: 4 MB, eight times the byte cap.
    let big = "v".repeat(4 * 1024);
    for i in 0..1000 {
        server
            .handle
            .of("/")
            .to("r")
            .volatile()
            .emit("v", json!({ "i": i, "pad": big }))
            .unwrap();
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let deadline = Instant::now() + WAIT;
    let mut dropped = 0.0;
    while Instant::now() < deadline {
        dropped = server.metric("riptide_volatile_dropped_total").await;
        if dropped >= dropped_before + 1000.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        dropped >= dropped_before + 1000.0,
        "volatile drops counted: {dropped} (before {dropped_before})"
    );
    // Not closed: neither the byte cap (nothing was queued) nor the grace.
    assert!(
        server_side_exists(server.port, slow.port),
        "slow client was closed"
    );
    assert_eq!(server.metric(SLOW_CLOSES).await, 0.0);
    for r in readers {
        if r.task.is_finished() {
            panic!("reader ended: {:?}", r.task.await);
        }
    }
    assert_eq!(server.metric(CONNECTED).await, 2.0);
}

#[tokio::test]
async fn outbound_queue_depth_histogram_is_exported() {
    let _serial = SERIAL.lock().await;
    let server = fixture_server(test_settings());
    let (mut c, _) = WsClient::connect(&server, "/", None).await;
    // Depth-1 writes are sampled one in 16: 40 round trips give 2 at least.
    for i in 1..=40 {
        c.assert_alive("/", i).await;
    }
    let (_, body) = server.get("/metrics").await;
    assert!(
        body.contains("# TYPE riptide_outbound_queue_depth histogram"),
        "histogram type line missing"
    );
    let buckets: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("riptide_outbound_queue_depth_bucket{"))
        .collect();
    // Powers of four from 1 to 4096, plus +Inf.
    assert_eq!(buckets.len(), 8, "buckets: {buckets:?}");
    assert!(buckets.iter().any(|l| l.contains("le=\"+Inf\"")));
    let count = server.metric("riptide_outbound_queue_depth_count").await;
    assert!(count >= 2.0, "observations: {count}");
    let inf = buckets
        .iter()
        .find(|l| l.contains("le=\"+Inf\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap();
    assert_eq!(inf, count, "+Inf bucket equals the count");
    assert!(server.metric("riptide_outbound_queue_depth_sum").await >= count);
}

#[tokio::test]
async fn a_stuck_connection_is_dropped_when_its_session_ends_for_another_reason() {
    let _serial = SERIAL.lock().await;
    // Limits the test never reaches: the session ends at its ping timeout
    // (the slow client answers no ping), with frames still queued that the
    // client will never read. Its connection must not outlive the session.
    let mut s = settings(100_000, 64 << 20, 600_000);
    s.engine.ping_interval_ms = 300;
    s.engine.ping_timeout_ms = 300;
    let server = fixture_server(s);
    let readers = [Reader::start(&server).await];
    let fds_before = settled_fds().await;
    let mut slow = SlowClient::open(&server).await;
    let pad = "w".repeat(3 * 1024);
    let sent = publish(&server, &readers, 0, &pad, 16, 512, || false).await;
    let started = Instant::now();
    server
        .assert_metric(
            "riptide_engine_sessions_closed_total{reason=\"ping timeout\"}",
            1.0,
        )
        .await;
    eprintln!(
        "session ended at its ping timeout after {:?}",
        started.elapsed()
    );
    let gone = wait_server_side_gone(&server, &slow, Instant::now() + Duration::from_secs(8)).await;
    assert!(
        gone.is_some(),
        "the connection of an ended session is still open 8 s later"
    );
    eprintln!(
        "connection dropped {:?} after publishing ended",
        gone.unwrap() - started
    );
    let end = slow.read_to_end(Duration::from_secs(3)).await;
    assert!(end.is_ok(), "slow client's connection: {end:?}");
    drop(slow);
    let deadline = Instant::now() + Duration::from_secs(3);
    while open_fds() > fds_before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(open_fds(), fds_before, "file descriptors after the close");
    drop(readers);
    eprintln!("({sent} messages were published before the ping timeout)");
}
