//! Malformed or out-of-place Socket.IO packets: each closes the connection
//! with "parse error" (as the reference server closes on a decode error or
//! an "invalid state" packet) or is dropped when harmless, is counted in
//! `riptide_bad_input_total`, and a healthy client keeps being served.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use riptide::Riptide;

fn start() -> (TestServer, Recorder) {
    let (tx, rec) = recorder();
    let server = TestServer::start(test_settings(), move |r: Riptide| {
        r.namespace("/", TestApp::namespace(&tx))
            .namespace("/admin", TestApp::namespace(&tx))
    });
    (server, rec)
}

/// What a bad input is: the frames to send after connecting to `/`, and the
/// `bad_input` kind it is counted as.
enum Send {
    Text(&'static str),
    Binary(Vec<u8>),
}

fn cases() -> Vec<(&'static str, Vec<Send>, &'static str)> {
    use Send::*;
    vec![
        ("unknown packet type", vec![Text("47")], "socket_decode"),
        ("bad JSON", vec![Text(r#"42["x","#)], "socket_decode"),
        (
            "event not an array",
            vec![Text(r#"42{"a":1}"#)],
            "socket_decode",
        ),
        ("event array empty", vec![Text("42[]")], "socket_decode"),
        (
            "non-string event name",
            vec![Text("42[1,2]")],
            "socket_decode",
        ),
        (
            "ack id overflow",
            vec![Text(r#"4299999999999999999999["x"]"#)],
            "socket_decode",
        ),
        (
            "attachments over max_attachments",
            vec![Text(r#"4511-["x",{"_placeholder":true,"num":0}]"#)],
            "socket_decode",
        ),
        (
            "placeholder beyond the attachments",
            vec![Text(r#"451-["x",{"_placeholder":true,"num":1}]"#)],
            "socket_decode",
        ),
        (
            "binary frame with no attachment awaited",
            vec![Binary(vec![1, 2, 3])],
            "socket_decode",
        ),
        (
            "text frame while attachments are awaited",
            vec![
                Text(r#"452-["x",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#),
                Binary(vec![1]),
                Text(r#"42["y"]"#),
            ],
            "socket_decode",
        ),
        (
            "CONNECT with a string auth",
            vec![Text(r#"40/admin,"tok""#)],
            "socket_decode",
        ),
        (
            "CONNECT with an array auth",
            vec![Text("40/admin,[1]")],
            "socket_decode",
        ),
        (
            "DISCONNECT with a payload",
            vec![Text("41[1]")],
            "socket_decode",
        ),
        ("ACK without an id", vec![Text("43[1]")], "socket_decode"),
        (
            "ACK not an array",
            vec![Text(r#"431{"a":1}"#)],
            "socket_decode",
        ),
        (
            "event for a namespace never connected",
            vec![Text(r#"42/nope,["x"]"#)],
            "unconnected_namespace",
        ),
        (
            "ack for a namespace never connected",
            vec![Text("43/admin,1[]")],
            "unconnected_namespace",
        ),
        (
            "disconnect for a namespace never connected",
            vec![Text("41/admin,")],
            "unconnected_namespace",
        ),
        ("duplicate CONNECT", vec![Text("40")], "duplicate_connect"),
        (
            "CONNECT_ERROR from the client",
            vec![Text(r#"44{"message":"x"}"#)],
            "unexpected_packet",
        ),
        (
            "reserved event name",
            vec![Text(r#"42["disconnect"]"#)],
            "reserved_event",
        ),
    ]
}

#[tokio::test]
async fn each_malformed_packet_closes_the_connection_and_is_counted() {
    let (server, mut rec) = start();
    let (mut healthy, healthy_sid) = WsClient::connect(&server, "/", None).await;
    let mut counts: HashMap<&str, f64> = HashMap::new();
    for (i, (what, frames, kind)) in cases().into_iter().enumerate() {
        let (mut c, sid) = WsClient::connect(&server, "/", None).await;
        for f in frames {
            match f {
                Send::Text(t) => c.send(t).await,
                Send::Binary(b) => c.send_binary(b).await,
            }
        }
        // Closed, with no Socket.IO reply: only the Engine.IO close packet.
        match c.recv_within(WAIT).await {
            Some(Frame::Text(t)) if t == "1" => {}
            other => panic!("{what}: expected the close packet, got {other:?}"),
        }
        match c.recv_within(WAIT).await {
            Some(Frame::Closed(..)) => {}
            other => panic!("{what}: expected a close, got {other:?}"),
        }
        *counts.entry(kind).or_default() += 1.0;
        let series = format!("riptide_bad_input_total{{kind=\"{kind}\"}}");
        assert_eq!(
            server.wait_metric(&series, counts[kind]).await,
            counts[kind],
            "{what}: {series}"
        );
        // The handler heard of the disconnect, and of no bad event.
        rec.expect_parse_error_disconnect(&sid, &healthy_sid, what)
            .await;
        healthy.assert_alive("/", i as u64).await;
    }
    server
        .assert_metric(
            "riptide_engine_sessions_closed_total{reason=\"parse error\"}",
            cases().len() as f64,
        )
        .await;
}

#[tokio::test]
async fn packet_in_flight_after_a_server_disconnect_is_dropped() {
    let (server, mut rec) = start();
    let (mut c, _) = WsClient::connect(&server, "/", None).await;
    c.sio_connect("/admin", None).await;
    c.send(r#"42/admin,["disconnect-me"]"#).await;
    c.expect_text("41/admin,").await;
    // The client had not heard yet: its packets for /admin are stale, not a
    // protocol violation.
    c.send(r#"42/admin,["late"]"#).await;
    c.send("43/admin,1[]").await;
    server
        .assert_metric("riptide_bad_input_total{kind=\"stale_namespace\"}", 2.0)
        .await;
    c.assert_alive("/", 1).await;
    for s in rec.drain() {
        if let Seen::Event { name, .. } = s {
            assert_ne!(name, "late");
        }
    }
    // Connecting again is fine.
    c.sio_connect("/admin", None).await;
    c.assert_alive("/admin", 2).await;
}

#[tokio::test]
async fn malformed_packet_over_polling_closes_the_session() {
    let (server, mut rec) = start();
    let (mut healthy, _) = WsClient::connect(&server, "/", None).await;
    let p = PollingClient::open(&server).await;
    let sid = p.sio_connect("/").await;
    let (status, _) = p.post("42[\"x\"\x1e47").await;
    assert_eq!(status, 200, "the Engine.IO payload itself was fine");
    server
        .assert_metric("riptide_bad_input_total{kind=\"socket_decode\"}", 1.0)
        .await;
    assert_eq!(
        rec.next_disconnect().await,
        ("/".to_string(), sid, "parse error".to_string())
    );
    // The session is gone.
    let (status, _) = p.get().await;
    assert_eq!(status, 400);
    healthy.assert_alive("/", 1).await;
}

#[tokio::test]
async fn healthy_client_is_served_while_bad_clients_come_and_go() {
    let (server, _rec) = start();
    let (mut healthy, _) = WsClient::connect(&server, "/", None).await;
    let bad = ["47", "42[", "42[1]", "40/admin,1"];
    let mut handles = Vec::new();
    for (i, b) in bad.iter().cycle().take(20).enumerate() {
        let mut c = WsClient::connect(&server, "/", None).await;
        c.0.send(b).await;
        handles.push(c);
        if i % 5 == 0 {
            healthy.assert_alive("/", i as u64).await;
        }
    }
    for (c, _) in handles.iter_mut() {
        assert!(matches!(
            c.expect_closed(Duration::from_secs(5)).await,
            Frame::Closed(..)
        ));
    }
    healthy.assert_alive("/", 100).await;
    server
        .assert_metric("riptide_bad_input_total{kind=\"socket_decode\"}", 20.0)
        .await;
}
