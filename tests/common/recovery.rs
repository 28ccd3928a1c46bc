//! Raw-client helpers of the connection state recovery tests
//! (tests/recovery.rs, tests/cluster_recovery.rs).

use serde_json::{json, Value};

use riptide::{Riptide, Settings};

use super::{recorder, Recorder, TestApp, TestServer, WsClient};

/// A node serving the TestApp on `/` with `s`; what its handlers saw.
pub fn start(s: Settings) -> (TestServer, Recorder) {
    let (tx, rec) = recorder();
    let server = TestServer::start(s, move |r: Riptide| {
        r.namespace("/", TestApp::namespace(&tx))
    });
    (server, rec)
}

/// CONNECT to `/` with `auth`; the client, and the reply's body.
pub async fn connect(server: &TestServer, auth: Option<Value>) -> (WsClient, Value) {
    let mut c = WsClient::open(server).await;
    let reply = c.connect_raw("/", auth).await;
    assert!(reply.starts_with("40{"), "CONNECT reply, got {reply:?}");
    (c, serde_json::from_str(&reply[2..]).unwrap())
}

/// Read one event packet (`42[...]`) and return its arguments.
pub async fn event(c: &mut WsClient) -> Vec<Value> {
    let text = c.recv_text().await;
    assert!(text.starts_with("42["), "an event, got {text:?}");
    serde_json::from_str::<Vec<Value>>(&text[2..]).unwrap()
}

/// Join `room` through the handler (acked, so the join is in effect).
pub async fn join(c: &mut WsClient, room: &str, ack: u64) {
    c.send(&format!("42{ack}{}", json!(["join", room]))).await;
    let reply = c.recv_text().await;
    assert!(
        reply.starts_with(&format!("43{ack}")),
        "join ack, got {reply:?}"
    );
}

/// Drop the client's TCP connection (a transport close for the server),
/// and wait until the server has seen it.
pub async fn drop_client(server: &TestServer, c: WsClient) {
    let before = server.handle.socket_count();
    drop(c);
    server
        .wait_for("the dropped socket to leave", || {
            server.handle.socket_count() < before
        })
        .await;
}

/// CONNECT to `/` of `server`, then join `room`: the client and the CONNECT
/// reply's body.
pub async fn member(server: &TestServer, room: &str) -> (WsClient, Value) {
    let (mut c, body) = connect(server, None).await;
    join(&mut c, room, 1).await;
    (c, body)
}
