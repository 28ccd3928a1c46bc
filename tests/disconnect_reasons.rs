//! Why a socket left, as its handler's `on_disconnect` hears it, and what the
//! client receives: client namespace disconnect, server disconnect,
//! `close_connection`, transport close, ping timeout, node shutdown.

mod common;

use std::time::Duration;

use common::*;
use riptide::Riptide;

fn start(settings: riptide::Settings) -> (TestServer, Recorder) {
    let (tx, rec) = recorder();
    let server = TestServer::start(settings, move |r: Riptide| {
        r.namespace("/", TestApp::namespace(&tx))
            .namespace("/admin", TestApp::namespace(&tx))
    });
    (server, rec)
}

/// The next `n` disconnects, as sorted (ns, sid, reason).
async fn disconnects(rec: &mut Recorder, n: usize) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(rec.next_disconnect().await);
    }
    out.sort();
    out
}

fn owned(v: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    v.iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

#[tokio::test]
async fn client_namespace_disconnect_leaves_the_rooms() {
    let (server, mut rec) = start(test_settings());
    let (mut c, sid) = WsClient::connect(&server, "/", None).await;
    let admin = c.sio_connect("/admin", None).await;
    let (mut other, other_sid) = WsClient::connect(&server, "/", None).await;
    c.send(r#"421["join","r"]"#).await;
    c.recv_text().await;
    other.send(r#"421["join","r"]"#).await;
    other.recv_text().await;

    c.send("41").await;
    assert_eq!(
        disconnects(&mut rec, 1).await,
        owned(&[("/", &sid, "client namespace disconnect")])
    );
    // The client is not told (it asked), and is out of the room.
    other.send(r#"42["publish","r","after"]"#).await;
    other.expect_text(r#"42["msg","after"]"#).await;
    c.expect_silence(Duration::from_millis(150)).await;
    assert!(server.handle.sockets("/").iter().all(|s| s.id() != sid));
    assert_eq!(server.handle.sockets("/")[0].id(), other_sid);
    // Its other namespace is still connected.
    c.assert_alive("/admin", 1).await;
    c.send("41/admin,").await;
    assert_eq!(
        disconnects(&mut rec, 1).await,
        owned(&[("/admin", &admin, "client namespace disconnect")])
    );
    server
        .assert_metric(
            "riptide_disconnects_total{reason=\"client namespace disconnect\"}",
            2.0,
        )
        .await;
}

#[tokio::test]
async fn server_disconnect_tells_the_client() {
    let (server, mut rec) = start(test_settings());
    let (mut c, sid) = WsClient::connect(&server, "/", None).await;
    let admin = c.sio_connect("/admin", None).await;

    c.send(r#"42/admin,["disconnect-me"]"#).await;
    c.expect_text("41/admin,").await;
    assert_eq!(
        disconnects(&mut rec, 1).await,
        owned(&[("/admin", &admin, "server namespace disconnect")])
    );
    c.assert_alive("/", 1).await;

    c.send(r#"42["disconnect-me"]"#).await;
    c.expect_text("41").await;
    assert_eq!(
        disconnects(&mut rec, 1).await,
        owned(&[("/", &sid, "server namespace disconnect")])
    );
    // The connection itself stays open: the client may connect again.
    let again = c.sio_connect("/", None).await;
    assert_ne!(again, sid, "a new socket id");
    c.assert_alive("/", 2).await;
}

#[tokio::test]
async fn close_connection_disconnects_every_namespace() {
    let (server, mut rec) = start(test_settings());
    let (mut c, sid) = WsClient::connect(&server, "/", None).await;
    let admin = c.sio_connect("/admin", None).await;
    let (mut bystander, _) = WsClient::connect(&server, "/", None).await;

    c.send(r#"42["close-connection"]"#).await;
    // Each namespace is told, then the Engine.IO session closes.
    let mut told = vec![c.recv_text().await, c.recv_text().await];
    told.sort();
    assert_eq!(told, vec!["41".to_string(), "41/admin,".to_string()]);
    assert_eq!(c.recv().await, Frame::Text("1".into()));
    assert!(matches!(c.expect_closed(WAIT).await, Frame::Closed(..)));
    assert_eq!(
        disconnects(&mut rec, 2).await,
        owned(&[
            ("/", &sid, "server namespace disconnect"),
            ("/admin", &admin, "server namespace disconnect"),
        ])
    );
    bystander.assert_alive("/", 1).await;
    server
        .assert_metric(
            "riptide_engine_sessions_closed_total{reason=\"forced close\"}",
            1.0,
        )
        .await;
}

#[tokio::test]
async fn transport_close_disconnects_every_namespace() {
    let (server, mut rec) = start(test_settings());
    let (c, sid) = WsClient::connect(&server, "/", None).await;
    let mut c = c;
    let admin = c.sio_connect("/admin", None).await;
    drop(c);
    assert_eq!(
        disconnects(&mut rec, 2).await,
        owned(&[
            ("/", &sid, "transport close"),
            ("/admin", &admin, "transport close"),
        ])
    );

    // Over polling: the client's close packet.
    let p = PollingClient::open(&server).await;
    let psid = p.sio_connect("/").await;
    p.post("1").await;
    assert_eq!(
        disconnects(&mut rec, 1).await,
        owned(&[("/", &psid, "transport close")])
    );
    server
        .assert_metric("riptide_disconnects_total{reason=\"transport close\"}", 3.0)
        .await;
}

#[tokio::test]
async fn ping_timeout() {
    let mut settings = test_settings();
    settings.engine.ping_interval_ms = 100;
    settings.engine.ping_timeout_ms = 100;
    let (server, mut rec) = start(settings);
    let (mut c, sid) = WsClient::connect(&server, "/", None).await;
    c.answer_pings = false;
    assert_eq!(
        disconnects(&mut rec, 1).await,
        owned(&[("/", &sid, "ping timeout")])
    );
}

#[tokio::test]
async fn node_shutdown_disconnects_with_server_shutting_down() {
    let (server, mut rec) = start(test_settings());
    let (mut ws, sid) = WsClient::connect(&server, "/", None).await;
    let admin = ws.sio_connect("/admin", None).await;
    let polling = PollingClient::open(&server).await;
    let psid = polling.sio_connect("/").await;
    ws.assert_alive("/", 1).await;

    // Stopping the node waits for every handler's on_disconnect.
    drop(server);
    let mut seen = rec.drain();
    seen.retain(|s| matches!(s, Seen::Disconnect { .. }));
    let mut got: Vec<(String, String, String)> = seen
        .into_iter()
        .map(|s| match s {
            Seen::Disconnect { ns, sid, reason } => (ns, sid, reason),
            _ => unreachable!(),
        })
        .collect();
    got.sort();
    let mut want = owned(&[
        ("/", &sid, "server shutting down"),
        ("/admin", &admin, "server shutting down"),
        ("/", &psid, "server shutting down"),
    ]);
    want.sort();
    assert_eq!(got, want);
    // The WebSocket client was told (Engine.IO close packet) before the end.
    assert_eq!(ws.recv().await, Frame::Text("1".into()));
}
