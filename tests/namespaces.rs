//! Socket.IO namespaces: CONNECT to the main and a registered namespace,
//! unknown and dynamic namespaces (and that dynamic ones are dropped with
//! their last socket), connect middleware, multiplexing, the per-connection
//! namespace limit and the connect timeout.

mod common;

use std::time::Duration;

use common::*;
use regex::Regex;
use riptide::{ConnectError, Riptide};
use serde_json::{json, Value};

fn app(r: Riptide, tx: &SeenTx) -> Riptide {
    let private = TestApp::namespace(tx).on_connect(|req| {
        match req.auth.get("token").and_then(Value::as_str) {
            Some("secret") => {
                if let Some(user) = req.auth.get("user").and_then(Value::as_str) {
                    req.set_user(user);
                }
                Ok(())
            }
            _ => Err(ConnectError::new("unauthorized").with_data(json!({ "reason": "bad token" }))),
        }
    });
    r.namespace("/", TestApp::namespace(tx))
        .namespace("/admin", TestApp::namespace(tx))
        .namespace("/private", private)
        .dynamic_namespace(Regex::new(r"^/dyn-\d+$").unwrap(), TestApp::namespace(tx))
}

fn start(settings: riptide::Settings) -> (TestServer, Recorder) {
    let (tx, rec) = recorder();
    let server = TestServer::start(settings, move |r| app(r, &tx));
    (server, rec)
}

/// The sid of a `40...{"sid":...}` reply, checking it is the only field.
fn sid_of(reply: &str, prefix: &str) -> String {
    assert!(reply.starts_with(prefix), "CONNECT reply, got {reply:?}");
    let v: Value = serde_json::from_str(&reply[prefix.len()..]).unwrap();
    let obj = v.as_object().expect("object");
    assert_eq!(obj.len(), 1, "only the sid: {reply:?}");
    let sid = obj["sid"].as_str().expect("sid string").to_string();
    assert_eq!(sid.len(), 20, "20-character sid");
    sid
}

#[tokio::test]
async fn connect_to_main_and_registered_namespace() {
    let (server, mut rec) = start(test_settings());
    let mut c = WsClient::open(&server).await;

    let reply = c.connect_raw("/", None).await;
    let main_sid = sid_of(&reply, "40");
    let reply = c.connect_raw("/admin", None).await;
    let admin_sid = sid_of(&reply, "40/admin,");
    assert_ne!(main_sid, admin_sid, "one socket id per namespace");

    match rec.next().await {
        Seen::Connect {
            ns,
            sid,
            user,
            auth,
        } => {
            assert_eq!((ns.as_str(), sid.as_str()), ("/", main_sid.as_str()));
            assert_eq!(user, None);
            assert_eq!(
                auth,
                json!({}),
                "no auth: an empty object, as in the reference"
            );
        }
        other => panic!("expected the connect of /, got {other:?}"),
    }
    match rec.next().await {
        Seen::Connect { ns, sid, .. } => {
            assert_eq!((ns.as_str(), sid.as_str()), ("/admin", admin_sid.as_str()));
        }
        other => panic!("expected the connect of /admin, got {other:?}"),
    }
    server
        .assert_metric("riptide_connects_total{namespace=\"/admin\"}", 1.0)
        .await;
    server
        .assert_metric("riptide_sockets_connected{namespace=\"/\"}", 1.0)
        .await;
}

#[tokio::test]
async fn connect_auth_payload_reaches_the_handler() {
    let (server, mut rec) = start(test_settings());
    let mut c = WsClient::open(&server).await;
    let reply = c
        .connect_raw("/", Some(json!({ "token": "abc", "n": 1 })))
        .await;
    sid_of(&reply, "40");
    match rec.next().await {
        Seen::Connect { auth, .. } => assert_eq!(auth, json!({ "token": "abc", "n": 1 })),
        other => panic!("expected a connect, got {other:?}"),
    }
}

#[tokio::test]
async fn unknown_namespace_gets_connect_error_and_connection_survives() {
    let (server, mut rec) = start(test_settings());
    let mut c = WsClient::open(&server).await;

    c.send("40/x,").await;
    c.expect_text(r#"44/x,{"message":"Invalid namespace"}"#)
        .await;
    server
        .assert_metric("riptide_bad_input_total{kind=\"unknown_namespace\"}", 1.0)
        .await;
    server
        .assert_metric(
            "riptide_connect_errors_total{reason=\"invalid_namespace\"}",
            1.0,
        )
        .await;
    // A refused namespace creates nothing and the connection goes on.
    assert_eq!(server.handle.namespace_count(), 3);
    c.sio_connect("/", None).await;
    c.assert_alive("/", 1).await;
    assert!(matches!(rec.next().await, Seen::Connect { ns, .. } if ns == "/"));
}

#[tokio::test]
async fn dynamic_namespace_by_regex() {
    let (server, mut rec) = start(test_settings());
    let mut c = WsClient::open(&server).await;

    let reply = c.connect_raw("/dyn-42", None).await;
    let sid = sid_of(&reply, "40/dyn-42,");
    c.send(r#"42/dyn-42,["hello",1]"#).await;
    assert!(matches!(rec.next().await, Seen::Connect { ns, .. } if ns == "/dyn-42"));
    assert_eq!(
        rec.next().await,
        Seen::Event {
            ns: "/dyn-42".into(),
            sid,
            name: "hello".into(),
            args: vec![json!(1)],
            binary: vec![],
            ack: false,
        }
    );
    c.assert_alive("/dyn-42", 3).await;

    // Not matching the pattern: refused like any unknown namespace.
    c.send("40/dyn-x,").await;
    c.expect_text(r#"44/dyn-x,{"message":"Invalid namespace"}"#)
        .await;
}

#[tokio::test]
async fn dynamic_namespaces_are_dropped_with_their_last_socket() {
    let (server, _rec) = start(test_settings());
    let registered = server.handle.namespace_count();
    assert_eq!(registered, 3);

    let mut a = WsClient::open(&server).await;
    let mut b = WsClient::open(&server).await;
    for i in 0..5 {
        a.sio_connect(&format!("/dyn-{i}"), None).await;
    }
    b.sio_connect("/dyn-0", None).await;
    assert_eq!(server.handle.namespace_count(), registered + 5);
    assert_eq!(server.handle.sockets("/dyn-0").len(), 2);

    // A namespace disconnect drops /dyn-1; /dyn-0 still has b.
    a.send("41/dyn-1,").await;
    a.send("41/dyn-0,").await;
    a.assert_alive("/dyn-2", 1).await;
    server
        .wait_for("/dyn-1 dropped", || {
            server.handle.namespace_count() == registered + 4
        })
        .await;
    assert_eq!(server.handle.sockets("/dyn-0").len(), 1);

    // Closing the connection drops the rest of a's; b's goes with b.
    drop(a);
    server
        .wait_for("a's namespaces dropped", || {
            server.handle.namespace_count() == registered + 1
        })
        .await;
    b.send("41/dyn-0,").await;
    server
        .wait_for("every dynamic namespace dropped", || {
            server.handle.namespace_count() == registered
        })
        .await;

    // A new socket recreates one, served as before.
    let mut c = WsClient::open(&server).await;
    c.sio_connect("/dyn-0", None).await;
    c.assert_alive("/dyn-0", 2).await;
    assert_eq!(server.handle.namespace_count(), registered + 1);

    // Metrics are labelled by pattern, not by the client-chosen name.
    let (_, metrics) = server.get("/metrics").await;
    assert!(
        !metrics.contains("namespace=\"/dyn-"),
        "per-name series for dynamic namespaces:\n{metrics}"
    );
    assert!(metrics.contains("riptide_connects_total{namespace=\"^/dyn-"));
}

#[tokio::test]
async fn refused_dynamic_connect_creates_no_namespace() {
    let (tx, _rec) = recorder();
    let server = TestServer::start(test_settings(), move |r| {
        r.dynamic_namespace(
            Regex::new(r"^/guarded-\d+$").unwrap(),
            TestApp::namespace(&tx).on_connect(|_| Err(ConnectError::new("no"))),
        )
    });
    let mut c = WsClient::open(&server).await;
    for i in 0..20 {
        c.send(&format!("40/guarded-{i},")).await;
        c.expect_text(&format!(r#"44/guarded-{i},{{"message":"no"}}"#))
            .await;
    }
    assert_eq!(server.handle.namespace_count(), 0);
}

#[tokio::test]
async fn connect_middleware_accepts_rejects_and_sets_the_user() {
    let (server, mut rec) = start(test_settings());
    let mut c = WsClient::open(&server).await;

    // Rejected: message and data, as the JS client reads them.
    c.send(r#"40/private,{"token":"wrong"}"#).await;
    c.expect_packet(
        "44/private,",
        json!({ "message": "unauthorized", "data": { "reason": "bad token" } }),
    )
    .await;
    c.send("40/private,").await;
    c.expect_packet(
        "44/private,",
        json!({ "message": "unauthorized", "data": { "reason": "bad token" } }),
    )
    .await;
    server
        .assert_metric("riptide_connect_errors_total{reason=\"middleware\"}", 2.0)
        .await;

    // Accepted, with a user.
    let reply = c
        .connect_raw(
            "/private",
            Some(json!({ "token": "secret", "user": "alice" })),
        )
        .await;
    let sid = sid_of(&reply, "40/private,");
    match rec.next().await {
        Seen::Connect {
            ns, sid: got, user, ..
        } => {
            assert_eq!(ns, "/private");
            assert_eq!(got, sid);
            assert_eq!(user.as_deref(), Some("alice"));
        }
        other => panic!("expected a connect, got {other:?}"),
    }
    let sockets = server.handle.sockets("/private");
    assert_eq!(sockets.len(), 1);
    assert_eq!(sockets[0].user(), Some("alice"));
    c.assert_alive("/private", 1).await;
}

#[tokio::test]
async fn several_namespaces_multiplexed_on_one_connection() {
    let (server, mut rec) = start(test_settings());
    let mut c = WsClient::open(&server).await;
    let root = c.sio_connect("/", None).await;
    let admin = c.sio_connect("/admin", None).await;
    let dynamic = c.sio_connect("/dyn-7", None).await;

    c.send(r#"425["echo","root"]"#).await;
    c.send(r#"42/admin,6["echo","admin"]"#).await;
    c.send(r#"42/dyn-7,7["echo","dyn"]"#).await;
    c.expect_text(r#"435["root"]"#).await;
    c.expect_text(r#"43/admin,6["admin"]"#).await;
    c.expect_text(r#"43/dyn-7,7["dyn"]"#).await;

    let mut events = Vec::new();
    for s in rec.drain() {
        if let Seen::Event { ns, sid, .. } = s {
            events.push((ns, sid));
        }
    }
    assert_eq!(
        events,
        vec![
            ("/".to_string(), root),
            ("/admin".to_string(), admin),
            ("/dyn-7".to_string(), dynamic),
        ]
    );

    // Leaving one namespace leaves the others connected.
    c.send("41/admin,").await;
    c.assert_alive("/", 8).await;
    c.assert_alive("/dyn-7", 9).await;
    let (ns, _, reason) = rec.next_disconnect().await;
    assert_eq!(
        (ns.as_str(), reason.as_str()),
        ("/admin", "client namespace disconnect")
    );
}

#[tokio::test]
async fn max_namespaces_per_connection_is_enforced() {
    let mut settings = test_settings();
    settings.socketio.max_namespaces_per_connection = 2;
    let (server, _rec) = start(settings);
    let mut c = WsClient::open(&server).await;
    c.sio_connect("/", None).await;
    c.sio_connect("/admin", None).await;
    c.send("40/dyn-1,").await;
    c.expect_text(r#"44/dyn-1,{"message":"Too many namespaces"}"#)
        .await;
    server
        .assert_metric(
            "riptide_connect_errors_total{reason=\"namespace_limit\"}",
            1.0,
        )
        .await;
    c.assert_alive("/", 1).await;

    // Leaving one makes room for another.
    c.send("41/admin,").await;
    c.sio_connect("/dyn-1", None).await;
    c.assert_alive("/dyn-1", 2).await;
}

#[tokio::test]
async fn connection_without_connect_is_closed_after_connect_timeout() {
    let mut settings = test_settings();
    settings.socketio.connect_timeout_ms = 300;
    let (server, _rec) = start(settings);

    let started = tokio::time::Instant::now();
    let mut idle = WsClient::open(&server).await;
    // A client that connects in time is kept...
    let mut active = WsClient::open(&server).await;
    active.sio_connect("/", None).await;
    // ...and so is one that connected once, even with no namespace left
    // (the reference server clears the timer on the first CONNECT).
    let mut left = WsClient::open(&server).await;
    left.sio_connect("/admin", None).await;
    left.send("41/admin,").await;

    // The idle one is told (Engine.IO close packet), then closed.
    let frame = idle.recv_within(Duration::from_secs(3)).await;
    assert_eq!(frame, Some(Frame::Text("1".into())));
    let closed = idle.expect_closed(Duration::from_secs(2)).await;
    assert!(matches!(closed, Frame::Closed(..)));
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(250),
        "closed too early: {elapsed:?}"
    );
    server
        .assert_metric(
            "riptide_engine_sessions_closed_total{reason=\"connect timeout\"}",
            1.0,
        )
        .await;

    tokio::time::sleep(Duration::from_millis(300)).await;
    active.assert_alive("/", 1).await;
    left.sio_connect("/", None).await;
    left.assert_alive("/", 2).await;
}

/// Emits `auth` with the CONNECT payload from `on_connect`, as the official
/// socket.io-protocol suite's fixture does.
struct Greeter;

impl riptide::NamespaceHandler for Greeter {
    fn on_connect(&mut self, socket: &riptide::Socket, _ctx: &mut riptide::HandlerContext<Self>) {
        let _ = socket.emit("auth", socket.auth().clone());
    }
}

// What the official suite checks after CONNECT: the reply `40{"sid"}`, then,
// as the very next packet, what the handler emitted on connect, on the main
// and a custom namespace, with and without an auth payload.
#[tokio::test]
async fn what_on_connect_emits_is_the_next_packet_after_the_connect_reply() {
    let server = TestServer::start(test_settings(), |r: Riptide| {
        r.namespace("/", riptide::Namespace::new(|| Greeter))
            .namespace("/custom", riptide::Namespace::new(|| Greeter))
    });
    for round in 0..20 {
        let (mut c, _) = WsClient::connect(&server, "/", None).await;
        assert_eq!(c.recv_text().await, r#"42["auth",{}]"#, "round {round}");
        let (mut c, _) = WsClient::connect(&server, "/", Some(json!({"token": "123"}))).await;
        assert_eq!(c.recv_text().await, r#"42["auth",{"token":"123"}]"#);
        c.sio_connect("/custom", Some(json!({"token": "abc"})))
            .await;
        assert_eq!(c.recv_text().await, r#"42/custom,["auth",{"token":"abc"}]"#);
    }
}
