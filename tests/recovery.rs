//! Connection state recovery (`recovery.enabled`), at the wire: the CONNECT
//! reply's `pid`, the offset stored events carry, the replay before the
//! CONNECT reply, and every refusal (unknown pid, expired, unknown offset,
//! truncated log, a reason that is not recoverable). The reference's known
//! failures are pinned: no offset yet (#4888), a volatile trailing string
//! (#5539), a half-open old connection (#4880).

mod common;

use std::time::Duration;

use common::recovery::{connect, drop_client, event, join, start};
use common::*;
use riptide::Settings;
use serde_json::{json, Value};

const QUIET: Duration = Duration::from_millis(200);

fn settings() -> Settings {
    let mut s = test_settings();
    s.recovery.enabled = true;
    s
}

/// `publisher` publishes `n` messages to `room` (the TestApp's `publish`).
async fn publish(publisher: &mut WsClient, room: &str, from: u64, n: u64) {
    for i in from..from + n {
        publisher.emit("/", json!(["publish", room, i]), None).await;
    }
}

#[tokio::test]
async fn connect_reply_has_a_pid_and_stored_events_an_offset() {
    let (server, _rec) = start(settings());
    let (mut c, body) = connect(&server, None).await;
    assert!(body["sid"].is_string());
    assert!(body["pid"].is_string(), "pid in {body}");
    assert_ne!(body["sid"], body["pid"]);
    // `echo` without an ack is `socket.emit("echo", ...)`: stored.
    c.emit("/", json!(["echo", "a", 1]), None).await;
    let args = event(&mut c).await;
    assert_eq!(&args[..3], &[json!("echo"), json!("a"), json!(1)]);
    assert!(args[3].is_string(), "an offset last: {args:?}");
    // Acks are not stored: no offset.
    c.emit("/", json!(["echo", "b"]), Some(7)).await;
    c.expect_text(r#"437["b"]"#).await;
    // Volatile events are not stored either.
    c.emit("/", json!(["volatile", "c"]), None).await;
    assert_eq!(event(&mut c).await, vec![json!("v"), json!("c")]);
}

#[tokio::test]
async fn off_by_default_no_pid_no_offset() {
    let (server, _rec) = start(test_settings());
    let (mut c, body) = connect(&server, None).await;
    assert!(body.get("pid").is_none(), "no pid in {body}");
    c.emit("/", json!(["echo", "a"]), None).await;
    assert_eq!(event(&mut c).await, vec![json!("echo"), json!("a")]);
    // A pid the client made up changes nothing.
    let (_c, body2) = connect(&server, Some(json!({"pid": "x", "offset": "y"}))).await;
    assert!(body2.get("pid").is_none());
}

#[tokio::test]
async fn recovered_with_what_it_missed_in_order_before_the_reply() {
    let (server, _rec) = start(settings());
    let (mut a, body) = connect(&server, None).await;
    let (sid, pid) = (body["sid"].clone(), body["pid"].clone());
    join(&mut a, "r", 1).await;
    let (mut b, _) = connect(&server, None).await;
    publish(&mut b, "r", 0, 1).await;
    let seen = event(&mut a).await;
    assert_eq!(&seen[..2], &[json!("msg"), json!(0)]);
    let offset = seen[2].clone();
    drop_client(&server, a).await;

    publish(&mut b, "r", 1, 3).await;
    // The publishes are in the log once the publisher's events ran.
    b.assert_alive("/", 90).await;

    let (mut a2, _) = (WsClient::open(&server).await, ());
    a2.send(&format!("40{}", json!({"pid": pid, "offset": offset})))
        .await;
    for i in 1..4 {
        let args = event(&mut a2).await;
        assert_eq!(&args[..2], &[json!("msg"), json!(i)], "missed {i} in order");
    }
    let reply = a2.recv_text().await;
    let body2: Value = serde_json::from_str(&reply[2..]).unwrap();
    assert_eq!(body2["sid"], sid, "same id");
    assert_eq!(body2["pid"], pid, "same pid");
    server
        .assert_metric("riptide_recoveries_total{reason=\"recovered\"}", 1.0)
        .await;
    // Still in its room.
    publish(&mut b, "r", 4, 1).await;
    assert_eq!(&event(&mut a2).await[..2], &[json!("msg"), json!(4)]);
    a2.expect_silence(QUIET).await;
}

#[tokio::test]
async fn recovered_without_an_offset_when_it_had_received_nothing() {
    // socket.io #4888 / #5538: the reference refuses this client.
    let (server, _rec) = start(settings());
    let (mut a, body) = connect(&server, None).await;
    let pid = body["pid"].clone();
    join(&mut a, "r", 1).await;
    drop_client(&server, a).await;
    let (mut b, _) = connect(&server, None).await;
    publish(&mut b, "r", 0, 2).await;
    b.assert_alive("/", 90).await;

    let mut a2 = WsClient::open(&server).await;
    a2.send(&format!("40{}", json!({ "pid": pid }))).await;
    assert_eq!(&event(&mut a2).await[..2], &[json!("msg"), json!(0)]);
    assert_eq!(&event(&mut a2).await[..2], &[json!("msg"), json!(1)]);
    let reply = a2.recv_text().await;
    assert!(reply.contains(&body["sid"].as_str().unwrap().to_string()));
}

#[tokio::test]
async fn a_volatile_trailing_string_resumes_from_where_it_was_sent() {
    // socket.io #5539: the client takes a volatile event's trailing string
    // as its offset.
    let (server, _rec) = start(settings());
    let (mut a, body) = connect(&server, None).await;
    let pid = body["pid"].clone();
    join(&mut a, "r", 1).await;
    let (mut b, _) = connect(&server, None).await;
    publish(&mut b, "r", 0, 1).await;
    assert_eq!(&event(&mut a).await[..2], &[json!("msg"), json!(0)]);
    a.emit("/", json!(["volatile", "hello"]), None).await;
    assert_eq!(event(&mut a).await, vec![json!("v"), json!("hello")]);
    drop_client(&server, a).await;
    publish(&mut b, "r", 1, 1).await;
    b.assert_alive("/", 90).await;

    let mut a2 = WsClient::open(&server).await;
    a2.send(&format!("40{}", json!({"pid": pid, "offset": "hello"})))
        .await;
    assert_eq!(&event(&mut a2).await[..2], &[json!("msg"), json!(1)]);
    let reply = a2.recv_text().await;
    assert!(reply.starts_with("40{"), "then the reply, got {reply:?}");
    assert!(reply.contains(body["sid"].as_str().unwrap()));
}

#[tokio::test]
async fn a_half_open_old_connection_is_taken_over_and_its_end_touches_nothing() {
    // socket.io #4880.
    let (server, mut rec) = start(settings());
    let (mut a, body) = connect(&server, None).await;
    let (sid, pid) = (body["sid"].clone(), body["pid"].clone());
    join(&mut a, "r", 1).await;
    // The old connection stays open (the server thinks it is alive).
    let mut a2 = WsClient::open(&server).await;
    a2.send(&format!("40{}", json!({ "pid": pid }))).await;
    let reply = a2.recv_text().await;
    let body2: Value = serde_json::from_str(&reply[2..]).unwrap();
    assert_eq!(body2["sid"], sid, "taken over");
    // The old connection finally ends: nothing of the socket goes with it.
    drop(a);
    server
        .wait_engine_sessions(1.0, Duration::from_secs(5))
        .await;
    let (mut b, _) = connect(&server, None).await;
    publish(&mut b, "r", 0, 1).await;
    assert_eq!(&event(&mut a2).await[..2], &[json!("msg"), json!(0)]);
    assert_eq!(server.handle.socket_count(), 2);
    // The handler never saw the recovered socket disconnect.
    for seen in rec.drain() {
        assert!(
            !matches!(seen, Seen::Disconnect { .. }),
            "no disconnect: {seen:?}"
        );
    }
    server
        .assert_metric("riptide_disconnects_total{reason=\"superseded\"}", 1.0)
        .await;
}

#[tokio::test]
async fn refusals_give_a_new_socket_and_are_counted() {
    let mut s = settings();
    s.recovery.stream_max_len = 2;
    s.recovery.max_disconnection_ms = 300;
    let (server, _rec) = start(s);
    let (mut b, _) = connect(&server, None).await;

    // Unknown pid.
    let (_c, body) = connect(&server, Some(json!({"pid": "nope"}))).await;
    assert_ne!(body["pid"], json!("nope"));
    server
        .assert_metric("riptide_recoveries_total{reason=\"unknown_session\"}", 1.0)
        .await;

    // An offset this server never issued.
    let (a, body) = connect(&server, None).await;
    drop_client(&server, a).await;
    let (_c, body2) = connect(&server, Some(json!({"pid": body["pid"], "offset": "zz"}))).await;
    assert_ne!(body2["sid"], body["sid"]);
    server
        .assert_metric("riptide_recoveries_total{reason=\"unknown_offset\"}", 1.0)
        .await;

    // The log dropped what it would have needed (max 2 kept).
    let (mut a, body) = connect(&server, None).await;
    join(&mut a, "r", 1).await;
    drop_client(&server, a).await;
    publish(&mut b, "r", 0, 5).await;
    b.assert_alive("/", 90).await;
    let (_c, body2) = connect(&server, Some(json!({"pid": body["pid"]}))).await;
    assert_ne!(body2["sid"], body["sid"], "never a partial replay");
    server
        .assert_metric("riptide_recoveries_total{reason=\"truncated\"}", 1.0)
        .await;

    // Away longer than max_disconnection_ms.
    let (a, body) = connect(&server, None).await;
    drop_client(&server, a).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_c, body2) = connect(&server, Some(json!({"pid": body["pid"]}))).await;
    assert_ne!(body2["sid"], body["sid"]);
    server
        .assert_metric("riptide_recoveries_total{reason=\"expired\"}", 1.0)
        .await;
}

#[tokio::test]
async fn leaving_on_purpose_is_not_recoverable() {
    let (server, _rec) = start(settings());
    let (mut a, body) = connect(&server, None).await;
    // Client namespace disconnect.
    a.send("41").await;
    server
        .wait_for("the socket to leave", || server.handle.socket_count() == 0)
        .await;
    let (_c, body2) = connect(&server, Some(json!({"pid": body["pid"]}))).await;
    assert_ne!(body2["sid"], body["sid"]);
    // Server namespace disconnect.
    let (mut a, body) = connect(&server, None).await;
    a.emit("/", json!(["disconnect-me"]), None).await;
    a.expect_text("41").await;
    let (_c, body2) = connect(&server, Some(json!({"pid": body["pid"]}))).await;
    assert_ne!(body2["sid"], body["sid"]);
}

#[tokio::test]
async fn a_refused_takeover_leaves_the_live_socket_as_it_was() {
    let (server, _rec) = start(settings());
    let (mut a, body) = connect(&server, None).await;
    join(&mut a, "r", 1).await;
    // Its pid comes back with an offset this server never issued: refused,
    // and the socket still connected is not touched.
    let (_c, other) = connect(&server, Some(json!({"pid": body["pid"], "offset": "zz"}))).await;
    assert_ne!(other["sid"], body["sid"]);
    let (mut b, _) = connect(&server, None).await;
    publish(&mut b, "r", 0, 1).await;
    assert_eq!(&event(&mut a).await[..2], &[json!("msg"), json!(0)]);
    // When it goes, it leaves its room: nothing is left behind.
    assert_eq!(server.handle.room_actor_count(), 2, "/ and r");
    drop_client(&server, a).await;
    server
        .wait_for("r's actor to retire", || {
            server.handle.room_actor_count() == 1
        })
        .await;
}

#[tokio::test]
async fn parked_sockets_are_counted_and_dropped_once_expired() {
    let mut s = settings();
    s.recovery.max_disconnection_ms = 300;
    let (server, _rec) = start(s);
    const PARKED: &str = "riptide_recovery_parked";
    let (a, body) = connect(&server, None).await;
    let (b, _) = connect(&server, None).await;
    drop_client(&server, a).await;
    drop_client(&server, b).await;
    server.assert_metric(PARKED, 2.0).await;
    // One comes back: no longer parked.
    let (_a2, back) = connect(&server, Some(json!({"pid": body["pid"]}))).await;
    assert_eq!(back["sid"], body["sid"]);
    server.assert_metric(PARKED, 1.0).await;
    // The other expires; it is dropped at the next connect, not kept for ever.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_c, _) = connect(&server, None).await;
    server.assert_metric(PARKED, 0.0).await;
}
