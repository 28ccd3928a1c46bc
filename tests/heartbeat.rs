//! Pins the Engine.IO v4 heartbeat: the server pings every `ping_interval`;
//! a client that answers stays; one that does not is closed with reason
//! "ping timeout" once `ping_timeout` has passed (not before, not much
//! later) and everything it held is released. A WebSocket or a long-poll
//! whose TCP connection drops is cleaned up at once, not at the ping timeout.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const INTERVAL: Duration = Duration::from_millis(300);
const TIMEOUT: Duration = Duration::from_millis(200);

fn fast_heartbeat() -> riptide::Settings {
    let mut s = test_settings();
    s.engine.ping_interval_ms = INTERVAL.as_millis() as u64;
    s.engine.ping_timeout_ms = TIMEOUT.as_millis() as u64;
    s
}

fn slow_heartbeat() -> riptide::Settings {
    let mut s = test_settings();
    s.engine.ping_interval_ms = 25_000;
    s.engine.ping_timeout_ms = 20_000;
    s
}

async fn assert_released(server: &TestServer) {
    assert_eq!(server.wait_engine_sessions(0.0, WAIT).await, 0.0);
    assert_eq!(
        server
            .wait_metric("riptide_sockets_connected{namespace=\"/\"}", 0.0)
            .await,
        0.0
    );
}

async fn assert_gone(server: &TestServer, sid: &str) {
    for transport in ["polling", "websocket"] {
        let (status, _, body) = server
            .request(
                reqwest::Method::GET,
                &server.url_at(SIO, &format!("EIO=4&transport={transport}&sid={sid}")),
                &[],
                None,
            )
            .await;
        assert_engine_error(status, &body, 400, 1, "Session ID unknown");
    }
}

#[actix_rt::test]
async fn websocket_client_that_answers_pings_stays() {
    let server = TestServer::start_echo(fast_heartbeat());
    let (mut c, _) = WsClient::connect(&server, "/", None).await;
    let until = Instant::now() + Duration::from_millis(1400);
    let mut pings = 0;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(until, c.ws.next()).await {
        match msg {
            WsMessage::Text(t) if t.as_str() == "2" => {
                pings += 1;
                c.send("3").await;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // 300 ms apart, the interval restarting at each pong: 4 in 1.4 s.
    assert!((3..=5).contains(&pings), "{pings} pings");
    c.emit("/", serde_json::json!(["echo", 1]), Some(7)).await;
    assert_eq!(c.recv().await, Frame::Text("437[1]".into()));
    assert_eq!(server.engine_sessions().await, 1.0);
}

#[actix_rt::test]
async fn websocket_client_that_does_not_answer_is_closed_at_the_ping_timeout() {
    let server = TestServer::start_echo(fast_heartbeat());
    let (mut c, _) = WsClient::connect(&server, "/", None).await;
    let sid = c.sid.clone();
    // Read the ping ourselves to time the timeout from it.
    let ping = tokio::time::timeout(WAIT, c.ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(ping, WsMessage::Text("2".into()));
    let pinged = Instant::now();
    c.answer_pings = false;
    let closed = c.expect_closed(WAIT).await;
    let after = pinged.elapsed();
    assert!(
        after >= TIMEOUT - Duration::from_millis(20)
            && after < TIMEOUT + Duration::from_millis(250),
        "closed {after:?} after the ping ({closed:?})"
    );
    assert_released(&server).await;
    assert_gone(&server, &sid).await;
    assert_eq!(
        server
            .metric("riptide_engine_sessions_closed_total{reason=\"ping timeout\"}")
            .await,
        1.0
    );
    assert_eq!(
        server
            .metric("riptide_disconnects_total{reason=\"ping timeout\"}")
            .await,
        1.0
    );
}

#[actix_rt::test]
async fn polling_client_that_answers_pings_stays() {
    let server = TestServer::start_echo(fast_heartbeat());
    let c = PollingClient::open_at(&server, ECHO).await;
    let start = Instant::now();
    for _ in 0..4 {
        assert_eq!(c.get().await, (200, "2".to_string()));
        assert_eq!(c.post("3").await, (200, "ok".to_string()));
    }
    // Four pings, one interval apart.
    assert!(start.elapsed() >= INTERVAL * 4 - Duration::from_millis(50));
    assert_eq!(c.post("4alive").await, (200, "ok".to_string()));
    assert_eq!(c.get().await, (200, "4alive".to_string()));
}

#[actix_rt::test]
async fn polling_client_that_does_not_answer_is_closed_at_the_ping_timeout() {
    let server = TestServer::start_echo(fast_heartbeat());
    let c = PollingClient::open_at(&server, SIO).await;
    assert_eq!(c.post("40").await, (200, "ok".to_string()));
    let (status, body) = c.get().await;
    assert_eq!(status, 200);
    assert!(body.starts_with("40{\"sid\":"), "{body}");
    assert_eq!(
        server
            .wait_metric("riptide_sockets_connected{namespace=\"/\"}", 1.0)
            .await,
        1.0
    );
    // The ping, and no pong: the next GET waits until the session times out.
    assert_eq!(c.get().await, (200, "2".to_string()));
    let pinged = Instant::now();
    let (status, body) = c.get().await;
    let after = pinged.elapsed();
    assert_eq!(
        (status, body.as_str()),
        (200, "1"),
        "released with a close packet"
    );
    assert!(
        after >= TIMEOUT - Duration::from_millis(20)
            && after < TIMEOUT + Duration::from_millis(250),
        "closed {after:?} after the ping"
    );
    assert_released(&server).await;
    assert_gone(&server, &c.sid).await;
    assert_eq!(
        server
            .metric("riptide_disconnects_total{reason=\"ping timeout\"}")
            .await,
        1.0
    );
}

#[actix_rt::test]
async fn polling_client_that_stops_polling_is_refused_after_the_ping_timeout() {
    let server = TestServer::start_echo(fast_heartbeat());
    let c = PollingClient::open_at(&server, ECHO).await;
    tokio::time::sleep(INTERVAL + TIMEOUT + Duration::from_millis(50)).await;
    let (status, body) = c.get().await;
    assert_engine_error(status, &body, 400, 1, "Session ID unknown");
    assert_eq!(server.wait_engine_sessions(0.0, WAIT).await, 0.0);
}

#[actix_rt::test]
async fn a_late_pong_does_not_save_the_session() {
    let server = TestServer::start_echo(fast_heartbeat());
    let c = PollingClient::open_at(&server, ECHO).await;
    assert_eq!(c.get().await, (200, "2".to_string()));
    tokio::time::sleep(TIMEOUT + Duration::from_millis(50)).await;
    let (status, body) = c.post("3").await;
    assert_engine_error(status, &body, 400, 1, "Session ID unknown");
}

#[actix_rt::test]
async fn dropped_websocket_is_cleaned_up_at_once() {
    let server = TestServer::start_echo(slow_heartbeat());
    let (c, _) = WsClient::connect(&server, "/", None).await;
    let (keep, _) = WsClient::connect(&server, "/", None).await;
    assert_eq!(server.engine_sessions().await, 2.0);
    let sid = c.sid.clone();
    let dropped = Instant::now();
    drop(c); // TCP gone, no close frame
    assert_eq!(
        server
            .wait_engine_sessions(1.0, Duration::from_secs(1))
            .await,
        1.0
    );
    assert!(dropped.elapsed() < Duration::from_secs(1));
    assert_eq!(
        server
            .wait_metric("riptide_sockets_connected{namespace=\"/\"}", 1.0)
            .await,
        1.0
    );
    assert_gone(&server, &sid).await;
    drop(keep);
    assert_released(&server).await;
}

#[actix_rt::test]
async fn dropped_long_poll_is_cleaned_up_at_once() {
    let server = TestServer::start_echo(slow_heartbeat());
    let c = PollingClient::open_at(&server, SIO).await;
    c.post("40").await;
    let (_, body) = c.get().await;
    assert!(body.starts_with("40{"), "{body}");
    assert_eq!(
        server
            .wait_metric("riptide_sockets_connected{namespace=\"/\"}", 1.0)
            .await,
        1.0
    );
    // A GET on its own connection, abandoned while it waits.
    let own = reqwest::Client::new();
    let get = own.get(c.session_url()).send();
    assert!(tokio::time::timeout(Duration::from_millis(200), get)
        .await
        .is_err());
    drop(own);
    let dropped = Instant::now();
    assert_eq!(
        server
            .wait_engine_sessions(0.0, Duration::from_secs(1))
            .await,
        0.0
    );
    assert!(dropped.elapsed() < Duration::from_secs(1));
    assert_released(&server).await;
    assert_gone(&server, &c.sid).await;
}
