//! Raw-client helpers of the connection state recovery tests
//! (tests/recovery.rs, tests/cluster_recovery.rs).

use serde_json::{json, Value};

use super::{TestServer, WsClient};

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
