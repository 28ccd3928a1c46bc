//! Socket.IO events and acknowledgements: client events reach the handler
//! with their arguments in order, acks in both directions (timeout included),
//! stray acks, event middleware refusals, and reserved event names.

mod common;

use std::time::Duration;

use common::*;
use riptide::{EventRefused, Riptide};
use serde_json::json;

fn app(r: Riptide, tx: &SeenTx) -> Riptide {
    let guarded = TestApp::namespace(tx).on_event(|_socket, event| {
        if event.name == "forbidden" {
            Err(EventRefused::new("not allowed"))
        } else {
            Ok(())
        }
    });
    r.namespace("/", TestApp::namespace(tx))
        .namespace("/admin", TestApp::namespace(tx))
        .namespace("/guarded", guarded)
}

fn start(settings: riptide::Settings) -> (TestServer, Recorder) {
    let (tx, rec) = recorder();
    let server = TestServer::start(settings, move |r| app(r, &tx));
    (server, rec)
}

#[tokio::test]
async fn client_event_reaches_the_handler_with_its_args_in_order() {
    let (server, mut rec) = start(test_settings());
    let (mut c, sid) = WsClient::connect(&server, "/", None).await;
    c.send(r#"42["foo",1,"two",{"three":3},[4,5],null,true,-1.5]"#)
        .await;
    c.send(r#"42["bar"]"#).await;
    assert!(matches!(rec.next().await, Seen::Connect { .. }));
    assert_eq!(
        rec.next().await,
        Seen::Event {
            ns: "/".into(),
            sid: sid.clone(),
            name: "foo".into(),
            args: vec![
                json!(1),
                json!("two"),
                json!({"three": 3}),
                json!([4, 5]),
                json!(null),
                json!(true),
                json!(-1.5),
            ],
            binary: vec![],
            ack: false,
        }
    );
    assert_eq!(
        rec.next().await,
        Seen::Event {
            ns: "/".into(),
            sid,
            name: "bar".into(),
            args: vec![],
            binary: vec![],
            ack: false,
        }
    );
    // No ack was asked for, so nothing comes back.
    c.expect_silence(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn client_to_server_ack() {
    let (server, mut rec) = start(test_settings());
    let (mut c, _) = WsClient::connect(&server, "/", None).await;
    c.sio_connect("/admin", None).await;

    c.send(r#"421["echo","a",2,{"b":[3]}]"#).await;
    c.expect_text(r#"431["a",2,{"b":[3]}]"#).await;
    c.send(r#"420["echo"]"#).await;
    c.expect_text("430[]").await;
    c.send(r#"42/admin,456["echo","x"]"#).await;
    c.expect_text(r#"43/admin,456["x"]"#).await;
    // The largest ack id the codec accepts round-trips unchanged.
    c.send(&format!(r#"42{}["echo",1]"#, u64::MAX)).await;
    c.expect_text(&format!("43{}[1]", u64::MAX)).await;

    let acked: Vec<bool> = rec
        .drain()
        .into_iter()
        .filter_map(|s| match s {
            Seen::Event { ack, .. } => Some(ack),
            _ => None,
        })
        .collect();
    assert_eq!(acked, vec![true; 4]);
}

#[tokio::test]
async fn server_emit_with_ack_is_resolved_by_the_client_ack() {
    let (server, _rec) = start(test_settings());
    let (mut c, _) = WsClient::connect(&server, "/", None).await;
    c.send(r#"42["ask",2000,"q",1]"#).await;
    // Ids start at 1 (what the official protocol test suite expects).
    c.expect_text(r#"421["question","q",1]"#).await;
    c.send(r#"431["yes",42]"#).await;
    c.expect_packet("42", json!(["answer", {"ok": ["yes", 42], "binary": 0}]))
        .await;

    // Ids go up per socket.
    c.send(r#"42["ask",2000]"#).await;
    c.expect_text(r#"422["question"]"#).await;
    c.send("432[]").await;
    c.expect_packet("42", json!(["answer", {"ok": [], "binary": 0}]))
        .await;

    // In a namespace.
    c.sio_connect("/admin", None).await;
    c.send(r#"42/admin,["ask",2000,"n"]"#).await;
    c.expect_text(r#"42/admin,1["question","n"]"#).await;
    c.send(r#"43/admin,1[true]"#).await;
    c.expect_packet("42/admin,", json!(["answer", {"ok": [true], "binary": 0}]))
        .await;
    assert_eq!(server.metric("riptide_acks_timed_out_total").await, 0.0);
}

#[tokio::test]
async fn server_emit_with_ack_times_out() {
    let (server, _rec) = start(test_settings());
    let (mut c, _) = WsClient::connect(&server, "/", None).await;
    let started = tokio::time::Instant::now();
    c.send(r#"42["ask",150,"q"]"#).await;
    c.expect_text(r#"421["question","q"]"#).await;
    // No answer: the handler learns of the timeout.
    c.expect_packet("42", json!(["answer", {"error": "Timeout"}]))
        .await;
    assert!(started.elapsed() >= Duration::from_millis(140));
    server
        .assert_metric("riptide_acks_timed_out_total", 1.0)
        .await;

    // An answer after the timeout is an unknown ack: counted, harmless.
    c.send(r#"431["late"]"#).await;
    server
        .assert_metric("riptide_bad_input_total{kind=\"unknown_ack\"}", 1.0)
        .await;
    c.assert_alive("/", 9).await;
    assert_eq!(server.metric("riptide_acks_timed_out_total").await, 1.0);
}

#[tokio::test]
async fn emit_with_ack_fails_at_once_when_the_socket_disconnects() {
    let (server, mut rec) = start(test_settings());
    let (mut c, _) = WsClient::connect(&server, "/", None).await;
    c.sio_connect("/admin", None).await;
    c.send(r#"42/admin,["ask",5000]"#).await;
    c.expect_text(r#"42/admin,1["question"]"#).await;
    let started = tokio::time::Instant::now();
    c.send("41/admin,").await;
    loop {
        if let Seen::Answer { ns, result, .. } = rec.next().await {
            assert_eq!(ns, "/admin");
            assert_eq!(result, json!({"error": "Disconnected"}));
            break;
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "not at its timeout"
    );
    // The socket is gone, so the handler's `answer` emit goes nowhere.
    c.expect_silence(Duration::from_millis(100)).await;
    c.assert_alive("/", 1).await;
    assert_eq!(server.metric("riptide_acks_timed_out_total").await, 0.0);
}

#[tokio::test]
async fn ack_with_unknown_id_is_counted_and_harmless() {
    let (server, mut rec) = start(test_settings());
    let (mut c, _) = WsClient::connect(&server, "/", None).await;
    c.send("4399[]").await;
    c.send(r#"437["x"]"#).await;
    server
        .assert_metric("riptide_bad_input_total{kind=\"unknown_ack\"}", 2.0)
        .await;
    c.assert_alive("/", 1).await;
    // The handler never hears of it.
    for s in rec.drain() {
        match s {
            Seen::Connect { .. } => {}
            Seen::Event { name, .. } => assert_eq!(name, "echo"),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn event_middleware_refusal_is_reported_to_the_client() {
    let (server, mut rec) = start(test_settings());
    let (mut c, _) = WsClient::connect(&server, "/guarded", None).await;
    assert!(matches!(rec.next().await, Seen::Connect { .. }));

    // With an ack: the error comes in the ack.
    c.send(r#"42/guarded,5["forbidden",1]"#).await;
    c.expect_packet(
        "43/guarded,5",
        json!([{"error": {"message": "not allowed", "event": "forbidden"}}]),
    )
    .await;
    // Without: as an `error` event.
    c.send(r#"42/guarded,["forbidden"]"#).await;
    c.expect_packet(
        "42/guarded,",
        json!(["error", {"message": "not allowed", "event": "forbidden"}]),
    )
    .await;
    server
        .assert_metric("riptide_events_refused_total{reason=\"middleware\"}", 2.0)
        .await;

    // Other events pass, and the refused ones never reached the handler.
    c.assert_alive("/guarded", 6).await;
    match rec.next().await {
        Seen::Event { name, .. } => assert_eq!(name, "echo"),
        other => panic!("expected only the echo, got {other:?}"),
    }
}

/// socket.io-parser v4 refuses an EVENT named like a reserved event as an
/// invalid payload, and the reference server then closes the connection:
/// so does Riptide, with "parse error", and the handler never sees it.
#[tokio::test]
async fn reserved_event_names_from_the_client_close_the_connection() {
    let (server, mut rec) = start(test_settings());
    let (mut healthy, _) = WsClient::connect(&server, "/", None).await;
    let reserved = [
        "connect",
        "connect_error",
        "disconnect",
        "disconnecting",
        "newListener",
        "removeListener",
    ];
    for (i, name) in reserved.iter().enumerate() {
        let (mut c, sid) = WsClient::connect(&server, "/", None).await;
        c.send(&format!(r#"421["{name}",1]"#)).await;
        let closed = c.expect_closed(WAIT).await;
        assert!(matches!(closed, Frame::Closed(..)), "{name}: {closed:?}");
        server
            .assert_metric(
                "riptide_bad_input_total{kind=\"reserved_event\"}",
                (i + 1) as f64,
            )
            .await;
        // The handler saw the connect and the disconnect, not the event.
        loop {
            match rec.next().await {
                Seen::Connect { .. } => continue,
                Seen::Event {
                    sid: got, name: n, ..
                } if got != sid => assert_eq!(n, "echo"),
                Seen::Disconnect {
                    sid: got, reason, ..
                } => {
                    assert_eq!(got, sid);
                    assert_eq!(reason, "parse error");
                    break;
                }
                other => panic!("{name} reached the handler: {other:?}"),
            }
        }
        healthy.assert_alive("/", i as u64).await;
    }
    // In a namespace too; the other namespaces of that connection go with it.
    let (mut c, _) = WsClient::connect(&server, "/", None).await;
    c.sio_connect("/admin", None).await;
    c.send(r#"42/admin,["disconnect"]"#).await;
    c.expect_closed(WAIT).await;
    let mut reasons = [rec.next_disconnect().await, rec.next_disconnect().await];
    reasons.sort();
    assert_eq!(
        reasons
            .iter()
            .map(|(ns, _, r)| (ns.as_str(), r.as_str()))
            .collect::<Vec<_>>(),
        vec![("/", "parse error"), ("/admin", "parse error")]
    );
    // The server itself may still emit events with other names.
    healthy.assert_alive("/", 99).await;
}
