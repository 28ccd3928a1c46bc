//! Pins what malformed Engine.IO input gets: a malformed packet (empty
//! record, unknown type, invalid base64) or invalid UTF-8, over polling or
//! WebSocket, ends the session with the protocol's error (polling: 400) or a
//! WebSocket close with a code and a reason; a foreign sid or a bogus query
//! gets its protocol error. Each is counted once in
//! `riptide_bad_input_total{kind=...}`, and a healthy client on the same
//! node keeps working throughout.

mod common;

use common::*;
use futures_util::SinkExt;
use reqwest::Method;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// A polling and a WebSocket client that must stay unaffected.
struct Healthy {
    polling: PollingClient,
    ws: WsClient,
    n: usize,
}

impl Healthy {
    async fn new(server: &TestServer) -> Healthy {
        Healthy {
            polling: PollingClient::open_at(server, ECHO).await,
            ws: WsClient::open_at(server, ECHO).await,
            n: 0,
        }
    }

    async fn check(&mut self) {
        self.n += 1;
        let msg = format!("4healthy-{}", self.n);
        assert_eq!(
            self.polling.post(msg.clone()).await,
            (200, "ok".to_string())
        );
        assert_eq!(self.polling.get().await, (200, msg.clone()));
        self.ws.send(&msg).await;
        assert_eq!(self.ws.recv().await, Frame::Text(msg));
    }
}

/// POST `body` to a fresh polling session while a GET waits: 400 "Bad
/// request", the waiting GET gets a close packet, the session is gone.
async fn polling_refuses(server: &TestServer, body: Vec<u8>) {
    let c = PollingClient::open_at(server, ECHO).await;
    let req = c.http.get(c.session_url());
    let waiting = actix_rt::spawn(async move {
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let (status, body) = c.post(body).await;
    assert_engine_error(status, &body, 400, 3, "Bad request");
    let released = tokio::time::timeout(WAIT, waiting).await.unwrap().unwrap();
    assert_eq!(released, (200, "1".to_string()));
    let (status, body) = c.get().await;
    assert_engine_error(status, &body, 400, 1, "Session ID unknown");
}

/// Send `bad` on a fresh WebSocket session: it is closed with `code` and
/// `reason`, and the session is gone.
async fn websocket_refuses(server: &TestServer, bad: WsMessage, code: u16, reason: &str) {
    let mut c = WsClient::open_at(server, ECHO).await;
    c.ws.send(bad).await.unwrap();
    assert_eq!(
        c.expect_closed(WAIT).await,
        Frame::Closed(Some(code), reason.to_string())
    );
    let (status, _, body) = server
        .request(
            Method::GET,
            &server.url_at(ECHO, &format!("EIO=4&transport=polling&sid={}", c.sid)),
            &[],
            None,
        )
        .await;
    assert_engine_error(status, &body, 400, 1, "Session ID unknown");
}

fn raw_text(bytes: &[u8]) -> WsMessage {
    WsMessage::Frame(WsFrame::message(
        bytes.to_vec(),
        OpCode::Data(Data::Text),
        true,
    ))
}

#[actix_rt::test]
async fn malformed_packets_over_polling() {
    let server = TestServer::start_echo(test_settings());
    let mut healthy = Healthy::new(&server).await;
    let bodies: [&[u8]; 6] = [
        b"",             // an empty body: one empty record
        b"4a\x1e\x1e4b", // an empty record between two good ones
        b"9",            // unknown type
        b"4ok\x1e9",     // unknown type after a good packet
        b"b!!!",         // invalid base64
        b"x4hello",      // not a packet at all
    ];
    for (i, body) in bodies.into_iter().enumerate() {
        polling_refuses(&server, body.to_vec()).await;
        assert_eq!(server.bad_input("engine_decode").await, (i + 1) as f64);
        healthy.check().await;
    }
    assert_eq!(server.bad_input("bad_request").await, 0.0);
    assert_eq!(
        server
            .metric("riptide_engine_sessions_closed_total{reason=\"parse error\"}")
            .await,
        6.0
    );
}

#[actix_rt::test]
async fn invalid_utf8_over_polling() {
    let server = TestServer::start_echo(test_settings());
    let mut healthy = Healthy::new(&server).await;
    polling_refuses(&server, b"4caf\xe9".to_vec()).await;
    polling_refuses(&server, b"4ok\x1e4\xff\xfe".to_vec()).await;
    assert_eq!(server.bad_input("invalid_utf8").await, 2.0);
    assert_eq!(server.bad_input("engine_decode").await, 0.0);
    healthy.check().await;
}

#[actix_rt::test]
async fn malformed_packets_over_websocket() {
    let server = TestServer::start_echo(test_settings());
    let mut healthy = Healthy::new(&server).await;
    for (i, text) in ["", "9", "b!!!", "x4hello", "é"].into_iter().enumerate() {
        websocket_refuses(&server, WsMessage::Text(text.into()), 1007, "engine_decode").await;
        assert_eq!(server.bad_input("engine_decode").await, (i + 1) as f64);
        healthy.check().await;
    }
    assert_eq!(
        server
            .metric("riptide_engine_sessions_closed_total{reason=\"parse error\"}")
            .await,
        5.0
    );
}

#[actix_rt::test]
async fn invalid_utf8_over_websocket() {
    let server = TestServer::start_echo(test_settings());
    let mut healthy = Healthy::new(&server).await;
    websocket_refuses(&server, raw_text(b"4caf\xe9"), 1007, "invalid_utf8").await;
    assert_eq!(server.bad_input("invalid_utf8").await, 1.0);
    healthy.check().await;
    // A truncated multi-byte character.
    websocket_refuses(&server, raw_text(b"4\xe2\x82"), 1007, "invalid_utf8").await;
    assert_eq!(server.bad_input("invalid_utf8").await, 2.0);
    healthy.check().await;
    // Invalid UTF-8 split over fragments.
    let mut c = WsClient::open_at(&server, ECHO).await;
    c.ws.send(WsMessage::Frame(WsFrame::message(
        b"4ok".to_vec(),
        OpCode::Data(Data::Text),
        false,
    )))
    .await
    .unwrap();
    c.ws.send(WsMessage::Frame(WsFrame::message(
        b"\xff".to_vec(),
        OpCode::Data(Data::Continue),
        true,
    )))
    .await
    .unwrap();
    assert_eq!(
        c.expect_closed(WAIT).await,
        Frame::Closed(Some(1007), "invalid_utf8".into())
    );
    assert_eq!(server.bad_input("invalid_utf8").await, 3.0);
    healthy.check().await;
    assert_eq!(server.wait_engine_sessions(2.0, WAIT).await, 2.0);
}

#[actix_rt::test]
async fn a_bad_frame_sequence_over_websocket() {
    let server = TestServer::start_echo(test_settings());
    let mut healthy = Healthy::new(&server).await;
    // A continuation with no message started.
    websocket_refuses(
        &server,
        WsMessage::Frame(WsFrame::message(
            b"4x".to_vec(),
            OpCode::Data(Data::Continue),
            true,
        )),
        1002,
        "bad_frame",
    )
    .await;
    assert_eq!(server.bad_input("bad_frame").await, 1.0);
    healthy.check().await;
}

#[actix_rt::test]
async fn a_foreign_sid_is_unknown() {
    let server = TestServer::start_echo(test_settings());
    let mut healthy = Healthy::new(&server).await;
    // A live session of the other endpoint on this node.
    let sio = PollingClient::open_at(&server, SIO).await;
    let echo = PollingClient::open_at(&server, ECHO).await;
    for (path, sid) in [
        (ECHO, sio.sid.as_str()),
        (SIO, echo.sid.as_str()),
        (ECHO, "AAAAAAAAAAAAAAAAAAAA"),
        (ECHO, "../../etc/passwd"),
    ] {
        for method in [Method::GET, Method::POST] {
            let (status, _, body) = server
                .request(
                    method.clone(),
                    &server.url_at(path, &format!("EIO=4&transport=polling&sid={sid}")),
                    &[],
                    Some(b"4x".to_vec()),
                )
                .await;
            assert_engine_error(status, &body, 400, 1, "Session ID unknown");
        }
    }
    assert_eq!(server.bad_input("unknown_sid").await, 8.0);
    // Nobody was hurt, and nothing reached the real sessions.
    healthy.check().await;
    assert_eq!(echo.post("4mine").await, (200, "ok".to_string()));
    assert_eq!(
        echo.get().await,
        (200, "4mine".to_string()),
        "only its own message"
    );
}

#[actix_rt::test]
async fn bogus_query_strings() {
    let server = TestServer::start_echo(test_settings());
    let mut healthy = Healthy::new(&server).await;
    let good = &healthy.polling.sid.clone();
    let cases: Vec<(String, u8, &str)> = vec![
        ("transport=%ZZ&EIO=4".into(), 0, "Transport unknown"),
        ("EIO=4&transport=polling%00".into(), 0, "Transport unknown"),
        ("EIO=4&transport=%FF%FE".into(), 0, "Transport unknown"),
        // Repeated parameters are not guessed at (the reference server's
        // query parser makes them arrays, which match nothing).
        (
            "EIO=4&transport=polling&transport=websocket".into(),
            0,
            "Transport unknown",
        ),
        (
            "EIO=3&EIO=4&transport=polling".into(),
            5,
            "Unsupported protocol version",
        ),
        (
            format!("EIO=4&transport=polling&sid={good}&sid={good}"),
            1,
            "Session ID unknown",
        ),
        (
            "EIO=4&transport=polling&sid=".into(),
            1,
            "Session ID unknown",
        ),
        (
            "EIO=4&transport=polling&sid=%ZZ".into(),
            1,
            "Session ID unknown",
        ),
        (
            format!("EIO=4&transport=polling&sid={}", "A".repeat(2000)),
            1,
            "Session ID unknown",
        ),
        (
            "EIO=04&transport=polling".into(),
            5,
            "Unsupported protocol version",
        ),
        (
            "EIO=4.0&transport=polling".into(),
            5,
            "Unsupported protocol version",
        ),
        (
            "EIO=%34&transport=polling&sid=nope".into(),
            1,
            "Session ID unknown",
        ),
    ];
    for (q, code, message) in cases {
        let (status, _, body) = server
            .request(Method::GET, &server.url_at(ECHO, &q), &[], None)
            .await;
        assert_eq!(status, 400, "{q}: {body}");
        assert_engine_error(status, &body, 400, code, message);
        healthy.check().await;
    }
    assert_eq!(server.bad_input("unknown_transport").await, 4.0);
    assert_eq!(server.bad_input("unsupported_protocol_version").await, 3.0);
    assert_eq!(server.bad_input("unknown_sid").await, 5.0);
    // Unknown extra parameters are ignored, as by the reference server.
    let (status, _, body) = server
        .request(
            Method::GET,
            &server.url_at(ECHO, "EIO=4&transport=polling&t=NkQ1x&b64=1&&=&x"),
            &[],
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert!(body.starts_with("0{"), "{body}");
    healthy.check().await;
}
