//! Binary packets: BINARY_EVENT from the client with one and several
//! attachments, BINARY_ACK in both directions, and server-emitted binary
//! events, over WebSocket (binary frames) and long-polling (`b<base64>`).

mod common;

use common::*;
use riptide::Riptide;
use serde_json::json;

fn start() -> (TestServer, Recorder) {
    let (tx, rec) = recorder();
    let server = TestServer::start(test_settings(), move |r: Riptide| {
        r.namespace("/", TestApp::namespace(&tx))
            .namespace("/admin", TestApp::namespace(&tx))
    });
    (server, rec)
}

fn ph(n: usize) -> serde_json::Value {
    json!({"_placeholder": true, "num": n})
}

async fn next_event(rec: &mut Recorder) -> (String, Vec<serde_json::Value>, Vec<Vec<u8>>) {
    match rec.next_non_connect().await {
        Seen::Event {
            name, args, binary, ..
        } => (name, args, binary),
        other => panic!("expected an event, got {other:?}"),
    }
}

#[tokio::test]
async fn websocket_binary_event_with_one_attachment() {
    let (server, mut rec) = start();
    let (mut c, _) = WsClient::connect(&server, "/", None).await;
    c.send(r#"451-["up",{"_placeholder":true,"num":0}]"#).await;
    c.send_binary(vec![1, 2, 3]).await;
    let (name, args, binary) = next_event(&mut rec).await;
    assert_eq!(name, "up");
    assert_eq!(args, vec![ph(0)]);
    assert_eq!(binary, vec![vec![1, 2, 3]]);
}

#[tokio::test]
async fn websocket_binary_event_with_several_attachments() {
    let (server, mut rec) = start();
    let (mut c, _) = WsClient::connect(&server, "/", None).await;
    c.sio_connect("/admin", None).await;
    c.send(
        r#"453-/admin,["up","text",{"_placeholder":true,"num":0},{"nested":[{"_placeholder":true,"num":2}]},{"_placeholder":true,"num":1}]"#,
    )
    .await;
    c.send_binary(vec![0]).await;
    c.send_binary(vec![]).await;
    c.send_binary(vec![9; 1000]).await;
    match rec.next_non_connect().await {
        Seen::Event {
            ns,
            name,
            args,
            binary,
            ..
        } => {
            assert_eq!((ns.as_str(), name.as_str()), ("/admin", "up"));
            assert_eq!(
                args,
                vec![json!("text"), ph(0), json!({"nested": [ph(2)]}), ph(1)]
            );
            assert_eq!(binary, vec![vec![0], vec![], vec![9; 1000]]);
        }
        other => panic!("expected an event, got {other:?}"),
    }
    c.assert_alive("/admin", 1).await;
}

#[tokio::test]
async fn websocket_binary_ack_back_to_the_client() {
    let (server, mut rec) = start();
    let (mut c, _) = WsClient::connect(&server, "/", None).await;
    c.send(r#"452-7["echo",{"_placeholder":true,"num":0},"mid",{"_placeholder":true,"num":1}]"#)
        .await;
    c.send_binary(vec![10, 11]).await;
    c.send_binary(vec![12]).await;
    // The ack carries the same placeholders and attachments, in order.
    c.expect_packet("462-7", json!([ph(0), "mid", ph(1)])).await;
    assert_eq!(c.recv_binary().await, vec![10, 11]);
    assert_eq!(c.recv_binary().await, vec![12]);
    let (_, _, binary) = next_event(&mut rec).await;
    assert_eq!(binary, vec![vec![10, 11], vec![12]]);
}

#[tokio::test]
async fn websocket_server_emitted_binary_event() {
    let (server, _rec) = start();
    let (mut c, _) = WsClient::connect(&server, "/", None).await;
    c.send(r#"42["binary",1]"#).await;
    c.expect_text(r#"451-["bin",{"_placeholder":true,"num":0}]"#)
        .await;
    assert_eq!(c.recv_binary().await, vec![0, 1]);

    c.send(r#"42["binary",3]"#).await;
    c.expect_packet("453-", json!(["bin", ph(0), ph(1), ph(2)]))
        .await;
    assert_eq!(c.recv_binary().await, vec![0, 1]);
    assert_eq!(c.recv_binary().await, vec![1, 2]);
    assert_eq!(c.recv_binary().await, vec![2, 3]);

    // Emitted from outside a handler, to the whole namespace.
    let mut p = riptide::Payload::default();
    let placeholder = p.attach(vec![7u8, 7]);
    p.args = vec![json!({"file": placeholder})];
    server.handle.of("/").emit("file", p).unwrap();
    c.expect_packet("451-", json!(["file", {"file": ph(0)}]))
        .await;
    assert_eq!(c.recv_binary().await, vec![7, 7]);
}

#[tokio::test]
async fn websocket_binary_ack_from_the_client() {
    let (server, mut rec) = start();
    let (mut c, _) = WsClient::connect(&server, "/", None).await;
    c.send(r#"42["ask",2000]"#).await;
    c.expect_text(r#"421["question"]"#).await;
    c.send(r#"461-1[{"_placeholder":true,"num":0}]"#).await;
    c.send_binary(vec![5, 6, 7]).await;
    c.expect_packet("42", json!(["answer", {"ok": [ph(0)], "binary": 1}]))
        .await;
    loop {
        if let Seen::Answer { result, .. } = rec.next().await {
            assert_eq!(result, json!({"ok": [ph(0)], "binary": 1}));
            break;
        }
    }
}

#[tokio::test]
async fn polling_binary_event_ack_and_server_emit() {
    let (server, mut rec) = start();
    let c = PollingClient::open(&server).await;
    c.sio_connect("/").await;

    // Client -> server: the attachment is a `b<base64>` record of the POST.
    // [1, 2, 3] is "AQID".
    let (status, _) = c
        .post("451-[\"up\",{\"_placeholder\":true,\"num\":0}]\x1ebAQID")
        .await;
    assert_eq!(status, 200);
    let (name, args, binary) = next_event(&mut rec).await;
    assert_eq!((name.as_str(), args), ("up", vec![ph(0)]));
    assert_eq!(binary, vec![vec![1, 2, 3]]);

    // Binary ack back: text record then one `b` record per attachment.
    let (status, _) = c
        .post("452-3[\"echo\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]\x1ebAAE=\x1eb/w==")
        .await;
    assert_eq!(status, 200);
    let records = c.get_n_records(3).await;
    assert_packet(&records[0], "462-3", json!([ph(0), ph(1)]));
    assert_eq!(&records[1..], ["bAAE=", "b/w=="]);

    // Server-emitted binary event.
    c.post("42[\"binary\",2]").await;
    let records = c.get_n_records(3).await;
    assert_packet(&records[0], "452-", json!(["bin", ph(0), ph(1)]));
    // [0, 1] and [1, 2].
    assert_eq!(&records[1..], ["bAAE=", "bAQI="]);
}

#[tokio::test]
async fn polling_binary_ack_from_the_client() {
    let (server, _rec) = start();
    let c = PollingClient::open(&server).await;
    c.sio_connect("/").await;
    c.post("42[\"ask\",2000,\"q\"]").await;
    let records = c.get_n_records(1).await;
    assert_eq!(records, vec!["421[\"question\",\"q\"]".to_string()]);
    c.post("461-1[{\"_placeholder\":true,\"num\":0}]\x1ebAQID")
        .await;
    let records = c.get_n_records(1).await;
    assert_packet(
        &records[0],
        "42",
        json!(["answer", {"ok": [ph(0)], "binary": 1}]),
    );
}
