//! Supervision: a room or user actor that panics is restarted with its
//! members rebuilt from the interest registry (and the rooms gauge stays
//! right); a handler that panics on one socket's event disconnects only that
//! socket, and its actor is restarted in place (same mailbox, fresh handler)
//! and keeps serving every other socket.

mod common;

use std::time::Duration;

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

#[tokio::test]
async fn room_actor_restarts_with_its_members() {
    let (server, _rec) = start();
    let (mut a, _) = WsClient::connect(&server, "/", None).await;
    let (mut b, _) = WsClient::connect(&server, "/", None).await;
    let (mut outsider, _) = WsClient::connect(&server, "/", None).await;
    for (i, c) in [&mut a, &mut b].into_iter().enumerate() {
        c.send(&format!(r#"42{i}["join","r"]"#)).await;
        c.recv_text().await;
    }
    server.assert_metric("riptide_rooms", 2.0).await;

    assert!(server.handle.inject_room_panic("/", "r"));
    assert!(!server.handle.inject_room_panic("/", "no-such-room"));
    server
        .assert_metric("riptide_actor_restarts_total{kind=\"room\"}", 1.0)
        .await;
    // Still one actor per room, counted once.
    assert_eq!(server.handle.room_actor_count(), 2);
    server.assert_metric("riptide_rooms", 2.0).await;

    // Members are still members, and their connections survived.
    server
        .handle
        .of("/")
        .to("r")
        .emit("after", json!(1))
        .unwrap();
    a.expect_text(r#"42["after",1]"#).await;
    b.expect_text(r#"42["after",1]"#).await;
    outsider.expect_silence(Duration::from_millis(150)).await;
    a.send(r#"42["publish","r","from-a"]"#).await;
    a.expect_text(r#"42["msg","from-a"]"#).await;
    b.expect_text(r#"42["msg","from-a"]"#).await;
    a.assert_alive("/", 5).await;

    // Twice more: the restart is repeatable, and the gauge still right.
    assert!(server.handle.inject_room_panic("/", "r"));
    assert!(server.handle.inject_room_panic("/", "r"));
    server
        .assert_metric("riptide_actor_restarts_total{kind=\"room\"}", 3.0)
        .await;
    server.handle.of("/").to("r").emit("again", ()).unwrap();
    a.expect_text(r#"42["again"]"#).await;
    b.expect_text(r#"42["again"]"#).await;
    server.assert_metric("riptide_rooms", 2.0).await;

    // Leaving still retires it.
    drop(a);
    drop(b);
    server
        .wait_for("room r retired", || server.handle.room_actor_count() == 1)
        .await;
    server.assert_metric("riptide_rooms", 1.0).await;
}

#[tokio::test]
async fn handler_panic_disconnects_only_that_socket() {
    let (server, mut rec) = start();
    let (mut victim, victim_sid) = WsClient::connect(&server, "/", None).await;
    victim.sio_connect("/admin", None).await;
    let (mut other, other_sid) = WsClient::connect(&server, "/", None).await;

    victim.send(r#"42["panic"]"#).await;
    victim.expect_text("41").await;
    server
        .assert_metric("riptide_handler_panics_total", 1.0)
        .await;
    let (ns, sid, reason) = rec.next_disconnect().await;
    assert_eq!(
        (ns.as_str(), sid.as_str(), reason.as_str()),
        ("/", victim_sid.as_str(), "handler panic")
    );

    // The handler actor was restarted in place: counted, and the same
    // mailbox (one worker: one actor per namespace) goes on serving the
    // other socket, and the victim's other namespace.
    server
        .assert_metric("riptide_actor_restarts_total{kind=\"handler\"}", 1.0)
        .await;
    other.assert_alive("/", 1).await;
    victim.assert_alive("/admin", 2).await;
    // Events still reach it in order.
    other.send(r#"42["after",1]"#).await;
    other.send(r#"42["after",2]"#).await;
    let mut after = Vec::new();
    while after.len() < 2 {
        if let Seen::Event {
            sid, name, args, ..
        } = rec.next().await
        {
            if name == "after" {
                assert_eq!(sid, other_sid);
                after.push(args[0].clone());
            }
        }
    }
    assert_eq!(after, vec![json!(1), json!(2)]);

    // The victim may reconnect and be served again.
    victim.sio_connect("/", None).await;
    victim.assert_alive("/", 3).await;

    // A panic on another namespace's handler is isolated the same way.
    victim.send(r#"42/admin,["panic"]"#).await;
    victim.expect_text("41/admin,").await;
    server
        .assert_metric("riptide_handler_panics_total", 2.0)
        .await;
    victim.assert_alive("/", 4).await;
    other.assert_alive("/", 5).await;
}

fn start_with_users() -> (TestServer, Recorder) {
    let (tx, rec) = recorder();
    let server = TestServer::start(test_settings(), move |r: Riptide| {
        r.namespace(
            "/",
            TestApp::namespace(&tx).on_connect(|req| {
                if let Some(user) = req.auth.get("user").and_then(serde_json::Value::as_str) {
                    req.set_user(user);
                }
                Ok(())
            }),
        )
    });
    (server, rec)
}

#[tokio::test]
async fn user_actor_restarts_with_every_device() {
    let (server, _rec) = start_with_users();
    let (mut phone, _) = WsClient::connect(&server, "/", Some(json!({ "user": "ann" }))).await;
    let (mut laptop, _) = WsClient::connect(&server, "/", Some(json!({ "user": "ann" }))).await;
    let (mut bob, _) = WsClient::connect(&server, "/", Some(json!({ "user": "bob" }))).await;

    assert!(server.handle.inject_user_panic("ann"));
    assert!(!server.handle.inject_user_panic("nobody"));
    server
        .assert_metric("riptide_actor_restarts_total{kind=\"user\"}", 1.0)
        .await;

    // Rebuilt from the registry: both devices are still ann's.
    server
        .handle
        .to_user("/", "ann")
        .emit("note", json!(1))
        .unwrap();
    phone.expect_text(r#"42["note",1]"#).await;
    laptop.expect_text(r#"42["note",1]"#).await;
    bob.expect_silence(Duration::from_millis(150)).await;

    // A device that leaves after the restart is gone from the user, and
    // revoking the user reaches the one left.
    drop(laptop);
    server
        .wait_engine_sessions(2.0, Duration::from_secs(5))
        .await;
    let affected = server.handle.disconnect_user("ann").await;
    assert_eq!(affected.local, 1);
    phone.expect_text("41").await;
    bob.assert_alive("/", 1).await;
}
