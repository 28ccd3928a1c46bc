//! Rooms and broadcasts: join/leave, emits to one room, several rooms,
//! `except` rooms, with and without the sender, the whole namespace, a socket
//! id as a room; leaving every room on disconnect (room actors retired);
//! publish order; the bench fixture's join-then-publish contract; volatile
//! emits over polling.

mod common;

use std::time::Duration;

use common::*;
use riptide::{Namespace, Riptide};
use serde_json::json;

const QUIET: Duration = Duration::from_millis(150);

fn start() -> (TestServer, Recorder) {
    start_with(test_settings())
}

fn start_with(settings: riptide::Settings) -> (TestServer, Recorder) {
    let (tx, rec) = recorder();
    let server = TestServer::start(settings, move |r: Riptide| {
        r.namespace("/", TestApp::namespace(&tx))
            .namespace("/admin", TestApp::namespace(&tx))
    });
    (server, rec)
}

/// Join `rooms` through the handler and check the acked room list.
async fn join(c: &mut WsClient, sid: &str, rooms: &[&str], ack: u64) {
    c.send(&format!("42{ack}{}", json!(["join", rooms]))).await;
    let mut want: Vec<String> = rooms.iter().map(|r| r.to_string()).collect();
    want.push(sid.to_string());
    want.sort();
    want.dedup();
    c.expect_packet(&format!("43{ack}"), json!([want])).await;
}

/// Connect `n` WebSocket clients to `/`.
async fn clients(server: &TestServer, n: usize) -> Vec<(WsClient, String)> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(WsClient::connect(server, "/", None).await);
    }
    out
}

#[tokio::test]
async fn join_and_leave() {
    let (server, _rec) = start();
    let (mut c, sid) = WsClient::connect(&server, "/", None).await;
    join(&mut c, &sid, &["r1"], 1).await;
    join(&mut c, &sid, &["r2", "r1"], 2).await;
    assert_eq!(server.handle.room_actor_count(), 3, "/, r1, r2");

    c.send(r#"423["leave","r1"]"#).await;
    let mut want = vec!["r2".to_string(), sid.clone()];
    want.sort();
    c.expect_packet("433", json!([want])).await;
    // r1 had no other member: its actor is retired.
    assert_eq!(server.handle.room_actor_count(), 2, "/, r2");
    // Leaving a room one is not in, or one's own id room, changes nothing.
    c.send(&format!("424{}", json!(["leave", ["nope", sid.clone()]])))
        .await;
    c.expect_packet("434", json!([want])).await;

    // Only members get the room's emits.
    server.handle.of("/").to("r1").emit("m", json!(1)).unwrap();
    server.handle.of("/").to("r2").emit("m", json!(2)).unwrap();
    c.expect_text(r#"42["m",2]"#).await;
    c.expect_silence(QUIET).await;
}

#[tokio::test]
async fn emit_to_one_room_with_and_without_the_sender() {
    let (server, _rec) = start();
    let mut cs = clients(&server, 3).await;
    for (i, (c, sid)) in cs.iter_mut().take(2).enumerate() {
        join(c, sid, &["r"], i as u64).await;
    }
    // socket.within(room): the sender too.
    cs[0].0.send(r#"42["publish","r","hi",1]"#).await;
    cs[0].0.expect_text(r#"42["msg","hi",1]"#).await;
    cs[1].0.expect_text(r#"42["msg","hi",1]"#).await;
    // socket.to(room): everyone in the room but the sender.
    cs[0].0.send(r#"42["publish-others","r","others"]"#).await;
    cs[1].0.expect_text(r#"42["msg","others"]"#).await;
    cs[0].0.expect_silence(QUIET).await;
    // The non-member heard nothing.
    cs[2].0.expect_silence(QUIET).await;
    // A non-member may publish to a room (`within`): not echoed to itself.
    cs[2].0.send(r#"42["publish","r","from-outside"]"#).await;
    cs[0].0.expect_text(r#"42["msg","from-outside"]"#).await;
    cs[1].0.expect_text(r#"42["msg","from-outside"]"#).await;
    cs[2].0.expect_silence(QUIET).await;
}

#[tokio::test]
async fn emit_to_several_rooms_reaches_each_socket_once() {
    let (server, _rec) = start();
    let mut cs = clients(&server, 4).await;
    let rooms: [&[&str]; 4] = [&["a"], &["b"], &["a", "b"], &["c"]];
    for (i, ((c, sid), rooms)) in cs.iter_mut().zip(rooms).enumerate() {
        join(c, sid, rooms, i as u64).await;
    }
    server
        .handle
        .of("/")
        .to("a")
        .to("b")
        .emit("m", json!("ab"))
        .unwrap();
    for c in cs.iter_mut().take(3) {
        c.0.expect_text(r#"42["m","ab"]"#).await;
    }
    // Once only, for the member of both; nothing for the member of neither.
    for c in cs.iter_mut() {
        c.0.expect_silence(QUIET).await;
    }
}

#[tokio::test]
async fn except_rooms() {
    let (server, _rec) = start();
    let mut cs = clients(&server, 4).await;
    let rooms: [&[&str]; 4] = [&["a"], &["a", "x"], &["b"], &["x"]];
    for (i, ((c, sid), rooms)) in cs.iter_mut().zip(rooms).enumerate() {
        join(c, sid, rooms, i as u64).await;
    }
    // Room a except room x: only client 0.
    server
        .handle
        .of("/")
        .to("a")
        .except("x")
        .emit("m", json!(1))
        .unwrap();
    cs[0].0.expect_text(r#"42["m",1]"#).await;
    // Whole namespace except room x: clients 0 and 2.
    server
        .handle
        .of("/")
        .except("x")
        .emit("m", json!(2))
        .unwrap();
    cs[0].0.expect_text(r#"42["m",2]"#).await;
    cs[2].0.expect_text(r#"42["m",2]"#).await;
    // Rooms a and b, except x and b: only client 0 again.
    server
        .handle
        .of("/")
        .to("a")
        .to("b")
        .except("x")
        .except("b")
        .emit("m", json!(3))
        .unwrap();
    cs[0].0.expect_text(r#"42["m",3]"#).await;
    for c in cs.iter_mut() {
        c.0.expect_silence(QUIET).await;
    }
}

#[tokio::test]
async fn whole_namespace_broadcasts() {
    let (server, _rec) = start();
    let mut cs = clients(&server, 3).await;
    let (mut other_ns, _) = WsClient::connect(&server, "/admin", None).await;

    // socket.broadcast(): everyone in the namespace but the sender.
    cs[0].0.send(r#"42["broadcast","b"]"#).await;
    cs[1].0.expect_text(r#"42["msg","b"]"#).await;
    cs[2].0.expect_text(r#"42["msg","b"]"#).await;
    cs[0].0.expect_silence(QUIET).await;

    // ServerHandle::of(ns): every socket of that namespace only.
    server.handle.of("/").emit("all", json!([1])).unwrap();
    for c in cs.iter_mut() {
        c.0.expect_text(r#"42["all",[1]]"#).await;
    }
    other_ns.expect_silence(QUIET).await;
    server.handle.of("/admin").emit("all", ()).unwrap();
    other_ns.expect_text(r#"42/admin,["all"]"#).await;
    // A namespace nobody is in: nothing happens.
    server.handle.of("/nobody").emit("x", ()).unwrap();
    for c in cs.iter_mut() {
        c.0.expect_silence(QUIET).await;
    }
}

#[tokio::test]
async fn socket_id_is_a_room() {
    let (server, _rec) = start();
    let mut cs = clients(&server, 3).await;
    let target = cs[1].1.clone();
    server
        .handle
        .of("/")
        .to(&target)
        .emit("direct", ())
        .unwrap();
    cs[1].0.expect_text(r#"42["direct"]"#).await;
    // From a socket, to another's id.
    cs[0]
        .0
        .send(&format!("42{}", json!(["publish-others", target, "dm"])))
        .await;
    cs[1].0.expect_text(r#"42["msg","dm"]"#).await;
    // Id room plus a room it is in: once.
    join(&mut cs[1].0, &target, &["r"], 1).await;
    server
        .handle
        .of("/")
        .to("r")
        .to(&target)
        .emit("once", ())
        .unwrap();
    cs[1].0.expect_text(r#"42["once"]"#).await;
    // Except its own id room.
    server
        .handle
        .of("/")
        .except(&target)
        .emit("not-you", ())
        .unwrap();
    cs[0].0.expect_text(r#"42["not-you"]"#).await;
    cs[2].0.expect_text(r#"42["not-you"]"#).await;
    // An id of the wrong namespace is no room there.
    server
        .handle
        .of("/admin")
        .to(&target)
        .emit("x", ())
        .unwrap();
    for c in cs.iter_mut() {
        c.0.expect_silence(QUIET).await;
    }
}

#[tokio::test]
async fn every_room_is_left_on_disconnect_and_actors_retired() {
    let (server, _rec) = start();
    let mut cs = clients(&server, 3).await;
    let (a, b) = cs.split_at_mut(1);
    join(&mut a[0].0, &a[0].1, &["r1", "r2", "r3"], 1).await;
    join(&mut b[0].0, &b[0].1, &["r1"], 1).await;
    assert_eq!(server.handle.room_actor_count(), 4, "/, r1, r2, r3");
    server.assert_metric("riptide_rooms", 4.0).await;

    // a leaves the namespace: r2 and r3 go, r1 stays for b.
    cs[0].0.send("41").await;
    cs[2].0.assert_alive("/", 1).await;
    server
        .wait_for("r2, r3 retired", || server.handle.room_actor_count() == 2)
        .await;
    server.handle.of("/").to("r1").emit("m", ()).unwrap();
    cs[1].0.expect_text(r#"42["m"]"#).await;

    // b's transport closes: r1 goes too, only the namespace actor is left.
    let (b, _) = cs.remove(1);
    drop(b);
    server
        .wait_for("r1 retired", || server.handle.room_actor_count() == 1)
        .await;
    server.assert_metric("riptide_rooms", 1.0).await;

    // The last socket out retires the namespace actor.
    drop(cs);
    server
        .wait_for("all retired", || server.handle.room_actor_count() == 0)
        .await;
    server.assert_metric("riptide_rooms", 0.0).await;
}

#[tokio::test]
async fn a_thousand_publishes_arrive_at_every_member_in_order() {
    let (server, _rec) = start();
    publish_in_order(&server).await;
}

/// The same with the broadcast window on (`socketio.broadcast_window_us`,
/// its longest): held and batched, nothing lost or reordered.
#[tokio::test]
async fn a_thousand_publishes_arrive_in_order_through_the_broadcast_window() {
    let mut settings = test_settings();
    settings.socketio.broadcast_window_us = 100_000;
    let (server, _rec) = start_with(settings);
    publish_in_order(&server).await;
}

async fn publish_in_order(server: &TestServer) {
    let mut cs = clients(server, 3).await;
    for (i, (c, sid)) in cs.iter_mut().enumerate() {
        join(c, sid, &["o"], i as u64).await;
    }
    const N: usize = 1000;
    for i in 0..N {
        cs[0].0.send(&format!(r#"42["publish","o",{i}]"#)).await;
    }
    for (c, _) in cs.iter_mut() {
        for i in 0..N {
            c.expect_text(&format!(r#"42["msg",{i}]"#)).await;
        }
    }
}

#[tokio::test]
async fn fixture_publish_right_after_the_join_ack_reaches_the_joiner() {
    join_then_publish(test_settings()).await;
}

/// The same with the broadcast window on: a join sends what the room holds
/// first, so the joiner gets what follows it and nothing before.
#[tokio::test]
async fn fixture_publish_right_after_the_join_ack_reaches_the_joiner_through_the_window() {
    let mut settings = test_settings();
    settings.socketio.broadcast_window_us = 20_000;
    join_then_publish(settings).await;
}

async fn join_then_publish(settings: riptide::Settings) {
    let server = TestServer::start(settings, |r: Riptide| {
        r.namespace("/", Namespace::new(|| riptide::fixture::FixtureHandler))
    });
    let (mut joiner, _) = WsClient::connect(&server, "/", None).await;
    let (mut other, _) = WsClient::connect(&server, "/", None).await;
    for i in 0..50u64 {
        let room = format!("room-{i}");
        joiner.send(&format!(r#"42{i}["join","{room}"]"#)).await;
        joiner.expect_text(&format!("43{i}[]")).await;
        // Right after the ack: from the joiner itself, and from another
        // client (which may be served by another thread).
        joiner
            .send(&format!(r#"42["publish","{room}","self-{i}"]"#))
            .await;
        other
            .send(&format!(r#"42["publish","{room}","other-{i}"]"#))
            .await;
        let mut got = vec![joiner.recv_text().await, joiner.recv_text().await];
        got.sort();
        assert_eq!(
            got,
            vec![
                format!(r#"42["msg","other-{i}"]"#),
                format!(r#"42["msg","self-{i}"]"#),
            ]
        );
    }
    // echo acks with its payload.
    joiner.send(r#"421000["echo",{"a":1},2]"#).await;
    joiner.expect_text(r#"431000[{"a":1},2]"#).await;
    other.expect_silence(QUIET).await;
}

#[tokio::test]
async fn join_is_in_effect_when_it_returns() {
    // A handler that joins then emits to the room at once, in on_connect.
    struct JoinThenEmit;
    impl riptide::NamespaceHandler for JoinThenEmit {
        fn on_connect(
            &mut self,
            socket: &riptide::Socket,
            _ctx: &mut riptide::HandlerContext<Self>,
        ) {
            let _ = socket.join("lobby");
            let _ = socket.within("lobby").emit("welcome", json!(socket.id()));
        }
        fn on_event(
            &mut self,
            _: &riptide::Socket,
            _: riptide::Event,
            _: &mut riptide::HandlerContext<Self>,
        ) {
        }
    }
    let server = TestServer::start(test_settings(), |r: Riptide| {
        r.namespace("/", Namespace::new(|| JoinThenEmit))
    });
    for _ in 0..20 {
        let (mut c, sid) = WsClient::connect(&server, "/", None).await;
        c.expect_text(&format!(r#"42["welcome","{sid}"]"#)).await;
    }
}

#[tokio::test]
async fn room_limit_counts_the_own_room() {
    let mut settings = test_settings();
    settings.socketio.max_rooms_per_socket = 3;
    let (server, _rec) = start_with(settings);
    let (mut c, sid) = WsClient::connect(&server, "/", None).await;
    // Own room + 2 = 3: the third explicit room is refused.
    c.send(r#"421["join",["a","b","c"]]"#).await;
    let mut want = vec!["a".to_string(), "b".to_string(), sid];
    want.sort();
    c.expect_packet("431", json!([want])).await;
    server
        .assert_metric("riptide_events_refused_total{reason=\"room_limit\"}", 1.0)
        .await;
}

#[tokio::test]
async fn volatile_emit_is_dropped_for_a_polling_client_without_a_pending_get() {
    let (server, _rec) = start();
    let c = PollingClient::open(&server).await;
    let sid = c.sio_connect("/").await;
    // No GET pending now.
    let socket = server
        .handle
        .sockets("/")
        .into_iter()
        .find(|s| s.id() == sid)
        .expect("the socket");
    socket.emit_volatile("v", json!(1)).unwrap();
    server
        .assert_metric("riptide_volatile_dropped_total", 1.0)
        .await;
    server
        .handle
        .of("/")
        .volatile()
        .emit("v", json!(2))
        .unwrap();
    server
        .assert_metric("riptide_volatile_dropped_total", 2.0)
        .await;
    // A normal emit is queued and delivered on the next GET, alone.
    socket.emit("n", json!(3)).unwrap();
    assert_eq!(c.get_n_records(1).await, vec![r#"42["n",3]"#.to_string()]);

    // With a GET pending, a volatile emit is delivered.
    let pending = {
        let http = c.http.clone();
        let url = c.session_url();
        tokio::spawn(async move { http.get(url).send().await.unwrap().text().await.unwrap() })
    };
    // The GET is pending once the session holds it: retry until delivered.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !pending.is_finished() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "volatile never delivered"
        );
        socket.emit_volatile("v", json!(4)).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(pending.await.unwrap(), r#"42["v",4]"#);

    // Over WebSocket, always writable: delivered.
    let (mut ws, _) = WsClient::connect(&server, "/", None).await;
    server
        .handle
        .of("/")
        .volatile()
        .emit("v", json!(5))
        .unwrap();
    ws.expect_text(r#"42["v",5]"#).await;
}
