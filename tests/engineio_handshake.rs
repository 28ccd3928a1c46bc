//! Pins the Engine.IO v4 handshake: the polling open packet, the WebSocket
//! open packet, and the `engine.transports` setting.

mod common;

use common::*;
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::Value;

fn settings() -> riptide::Settings {
    let mut s = test_settings();
    s.engine.ping_interval_ms = 1234;
    s.engine.ping_timeout_ms = 567;
    s.engine.max_payload = 4096;
    s
}

fn assert_open(hs: &Value, upgrades: &[&str]) {
    let obj = hs.as_object().expect("open payload is an object");
    let mut keys: Vec<&str> = obj.keys().map(|k| k.as_str()).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "maxPayload",
            "pingInterval",
            "pingTimeout",
            "sid",
            "upgrades"
        ]
    );
    let sid = hs["sid"].as_str().expect("sid is a string");
    assert_eq!(sid.len(), 20, "sid {sid:?}");
    assert!(sid
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    assert_eq!(hs["upgrades"], serde_json::json!(upgrades));
    assert_eq!(hs["pingInterval"], 1234);
    assert_eq!(hs["pingTimeout"], 567);
    assert_eq!(hs["maxPayload"], 4096);
}

#[actix_rt::test]
async fn polling_handshake_sends_the_open_packet() {
    let server = TestServer::start_echo(settings());
    for path in [ECHO, SIO] {
        let (status, headers, body) = server
            .request(
                Method::GET,
                &server.url_at(path, "EIO=4&transport=polling"),
                &[],
                None,
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], "text/plain; charset=UTF-8");
        assert!(body.starts_with('0'), "open packet, got {body:?}");
        assert!(!body.contains('\x1e'), "one packet only, got {body:?}");
        let hs: Value = serde_json::from_str(&body[1..]).unwrap();
        assert_open(&hs, &["websocket"]);
    }
}

#[actix_rt::test]
async fn polling_handshake_answers_on_the_path_without_trailing_slash() {
    let server = TestServer::start_echo(settings());
    let (status, _, body) = server
        .request(
            Method::GET,
            &server.url_at("/engine.io", "EIO=4&transport=polling"),
            &[],
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert!(body.starts_with("0{"), "{body:?}");
}

#[actix_rt::test]
async fn each_handshake_gets_a_new_sid_and_a_live_session() {
    let server = TestServer::start_echo(settings());
    let a = PollingClient::open_at(&server, ECHO).await;
    let b = PollingClient::open_at(&server, ECHO).await;
    assert_ne!(a.sid, b.sid);
    assert_eq!(server.wait_engine_sessions(2.0, WAIT).await, 2.0);
    // The session answers under its sid.
    assert_eq!(a.post("4x").await, (200, "ok".to_string()));
    assert_eq!(a.get().await, (200, "4x".to_string()));
}

#[actix_rt::test]
async fn websocket_handshake_sends_the_open_packet_without_upgrades() {
    let server = TestServer::start_echo(settings());
    let mut open = Vec::new();
    for path in [ECHO, SIO] {
        let (mut ws, _) =
            tokio_tungstenite::connect_async(server.ws_url_at(path, "EIO=4&transport=websocket"))
                .await
                .expect("websocket handshake");
        let first = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("open packet in time")
            .expect("a frame")
            .expect("a frame");
        let text = first.into_text().expect("text frame").to_string();
        assert!(text.starts_with('0'), "open packet, got {text:?}");
        let hs: Value = serde_json::from_str(&text[1..]).unwrap();
        assert_open(&hs, &[]);
        open.push(ws);
    }
    assert_eq!(
        server
            .wait_metric("riptide_engine_sessions{transport=\"websocket\"}", 2.0)
            .await,
        2.0
    );
}

#[actix_rt::test]
async fn websocket_session_echoes() {
    let server = TestServer::start_echo(settings());
    let mut ws = WsClient::open_at(&server, ECHO).await;
    ws.send("4hello").await;
    assert_eq!(ws.recv().await, Frame::Text("4hello".into()));
    ws.send_binary(vec![1, 2, 3, 4]).await;
    assert_eq!(ws.recv().await, Frame::Binary(vec![1, 2, 3, 4]));
}

#[actix_rt::test]
async fn websocket_only_config_refuses_polling() {
    let mut s = settings();
    s.engine.transports = vec![riptide::settings::Transport::Websocket];
    let server = TestServer::start_echo(s);
    for path in [ECHO, SIO] {
        let (status, _, body) = server
            .request(
                Method::GET,
                &server.url_at(path, "EIO=4&transport=polling"),
                &[],
                None,
            )
            .await;
        assert_engine_error(status, &body, 400, 0, "Transport unknown");
    }
    // WebSocket still opens, and offers no upgrade.
    let mut ws = WsClient::open_at(&server, ECHO).await;
    ws.send("4still here").await;
    assert_eq!(ws.recv().await, Frame::Text("4still here".into()));
    assert_eq!(server.engine_sessions().await, 1.0);
}

#[actix_rt::test]
async fn polling_only_config_refuses_websocket_and_offers_no_upgrade() {
    let mut s = settings();
    s.engine.transports = vec![riptide::settings::Transport::Polling];
    let server = TestServer::start_echo(s);
    let c = PollingClient::open_at(&server, ECHO).await;
    assert_eq!(c.handshake["upgrades"], serde_json::json!([]));
    // A plain GET with transport=websocket: the transport is unknown here.
    let (status, _, body) = server
        .request(
            Method::GET,
            &server.url_at(ECHO, "EIO=4&transport=websocket"),
            &[],
            None,
        )
        .await;
    assert_engine_error(status, &body, 400, 0, "Transport unknown");
    // A real WebSocket handshake is refused too.
    let err = tokio_tungstenite::connect_async(server.ws_url_at(ECHO, "EIO=4&transport=websocket"))
        .await
        .expect_err("websocket refused");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 400),
        other => panic!("expected an HTTP 400, got {other:?}"),
    }
    // And so is the upgrade of the polling session.
    let url = server.ws_url_at(ECHO, &format!("EIO=4&transport=websocket&sid={}", c.sid));
    assert!(tokio_tungstenite::connect_async(url).await.is_err());
    assert_eq!(c.post("4ok").await, (200, "ok".to_string()));
    assert_eq!(c.get().await, (200, "4ok".to_string()));
}
