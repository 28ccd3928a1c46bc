//! The user actor: sockets authenticated as one user (connect middleware
//! `set_user`) are reached together by `ServerHandle::to_user` and
//! disconnected together by `ServerHandle::disconnect_user`.

mod common;

use std::time::Duration;

use common::*;
use riptide::Riptide;
use serde_json::{json, Value};

const QUIET: Duration = Duration::from_millis(150);

fn start() -> (TestServer, Recorder) {
    let (tx, rec) = recorder();
    let server = TestServer::start(test_settings(), move |r: Riptide| {
        let authed = |tx: &SeenTx| {
            TestApp::namespace(tx).on_connect(|req| {
                if let Some(user) = req.auth.get("user").and_then(Value::as_str) {
                    req.set_user(user);
                }
                Ok(())
            })
        };
        r.namespace("/", authed(&tx))
            .namespace("/admin", authed(&tx))
    });
    (server, rec)
}

async fn as_user(server: &TestServer, ns: &str, user: &str) -> (WsClient, String) {
    WsClient::connect(server, ns, Some(json!({ "user": user }))).await
}

#[tokio::test]
async fn to_user_reaches_every_socket_of_the_user_only() {
    let (server, _rec) = start();
    let (mut phone, _) = as_user(&server, "/", "alice").await;
    let (mut laptop, _) = as_user(&server, "/", "alice").await;
    let (mut bob, _) = as_user(&server, "/", "bob").await;
    let (mut anonymous, _) = WsClient::connect(&server, "/", None).await;
    // alice on another namespace: a user emit names its namespace.
    let (mut elsewhere, _) = as_user(&server, "/admin", "alice").await;

    server
        .handle
        .to_user("/", "alice")
        .emit("note", json!("hi alice"))
        .unwrap();
    phone.expect_text(r#"42["note","hi alice"]"#).await;
    laptop.expect_text(r#"42["note","hi alice"]"#).await;
    bob.expect_silence(QUIET).await;
    anonymous.expect_silence(QUIET).await;
    elsewhere.expect_silence(QUIET).await;

    server
        .handle
        .to_user("/admin", "alice")
        .emit("note", ())
        .unwrap();
    elsewhere.expect_text(r#"42/admin,["note"]"#).await;
    phone.expect_silence(QUIET).await;

    // Unknown user: nothing, no error.
    server.handle.to_user("/", "carol").emit("x", ()).unwrap();
    bob.expect_silence(QUIET).await;
}

#[tokio::test]
async fn disconnect_user_disconnects_every_socket_of_the_user() {
    let (server, mut rec) = start();
    let (mut phone, phone_sid) = as_user(&server, "/", "alice").await;
    let (mut laptop, laptop_sid) = as_user(&server, "/", "alice").await;
    let (mut bob, _) = as_user(&server, "/", "bob").await;

    assert_eq!(server.handle.disconnect_user("alice").await.local, 2);
    phone.expect_text("41").await;
    laptop.expect_text("41").await;
    let mut got = vec![rec.next_disconnect().await, rec.next_disconnect().await];
    got.sort();
    let mut want = vec![
        (
            "/".to_string(),
            phone_sid,
            "server namespace disconnect".to_string(),
        ),
        (
            "/".to_string(),
            laptop_sid,
            "server namespace disconnect".to_string(),
        ),
    ];
    want.sort();
    assert_eq!(got, want);

    // Bob is untouched; alice's connections stay open and may reconnect.
    bob.assert_alive("/", 1).await;
    phone
        .sio_connect("/", Some(json!({ "user": "alice" })))
        .await;
    phone.assert_alive("/", 2).await;
    assert_eq!(server.handle.disconnect_user("alice").await.local, 1);
    phone.expect_text("41").await;
    rec.next_disconnect().await;
    // With no socket left, alice's actor is retired: nothing to disconnect.
    assert_eq!(server.handle.disconnect_user("alice").await.local, 0);
    laptop.sio_connect("/", None).await;
    laptop.assert_alive("/", 3).await;
}
