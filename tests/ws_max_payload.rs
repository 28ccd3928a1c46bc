//! Pins `max_payload` on WebSocket: a frame (or a fragmented message) over
//! it closes the WebSocket with 1009 and ends the session; one exactly at
//! it is accepted; other clients are unaffected.

mod common;

use common::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const MAX: usize = 2048;

fn settings() -> riptide::Settings {
    let mut s = test_settings();
    s.engine.max_payload = MAX;
    s
}

async fn assert_session_gone(server: &TestServer, sid: &str) {
    let (status, _, body) = server
        .request(
            reqwest::Method::GET,
            &server.url_at(ECHO, &format!("EIO=4&transport=polling&sid={sid}")),
            &[],
            None,
        )
        .await;
    assert_engine_error(status, &body, 400, 1, "Session ID unknown");
}

#[actix_rt::test]
async fn a_text_frame_exactly_at_the_limit_is_accepted() {
    let server = TestServer::start_echo(settings());
    let mut c = WsClient::open_at(&server, ECHO).await;
    let msg = format!("4{}", "x".repeat(MAX - 1));
    assert_eq!(msg.len(), MAX);
    c.send(&msg).await;
    assert_eq!(c.recv().await, Frame::Text(msg));
}

#[actix_rt::test]
async fn a_binary_frame_exactly_at_the_limit_is_accepted() {
    let server = TestServer::start_echo(settings());
    let mut c = WsClient::open_at(&server, ECHO).await;
    c.send_binary(vec![7; MAX]).await;
    assert_eq!(c.recv().await, Frame::Binary(vec![7; MAX]));
}

#[actix_rt::test]
async fn a_text_frame_over_the_limit_closes_with_1009() {
    let server = TestServer::start_echo(settings());
    let mut other = WsClient::open_at(&server, ECHO).await;
    let mut c = WsClient::open_at(&server, ECHO).await;
    c.send(&format!("4{}", "x".repeat(MAX))).await;
    match c.expect_closed(WAIT).await {
        Frame::Closed(code, _) => assert_eq!(code, Some(1009)),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.wait_engine_sessions(1.0, WAIT).await, 1.0);
    assert_session_gone(&server, &c.sid).await;
    assert_eq!(server.bad_input("oversized").await, 1.0);
    assert_eq!(
        server
            .metric("riptide_engine_sessions_closed_total{reason=\"transport error\"}")
            .await,
        1.0
    );
    other.send("4unaffected").await;
    assert_eq!(other.recv().await, Frame::Text("4unaffected".into()));
}

#[actix_rt::test]
async fn a_binary_frame_over_the_limit_closes_with_1009() {
    let server = TestServer::start_echo(settings());
    let mut c = WsClient::open_at(&server, ECHO).await;
    c.send_binary(vec![0; MAX + 1]).await;
    match c.expect_closed(WAIT).await {
        Frame::Closed(code, _) => assert_eq!(code, Some(1009)),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.wait_engine_sessions(0.0, WAIT).await, 0.0);
    assert_session_gone(&server, &c.sid).await;
}

#[actix_rt::test]
async fn a_fragmented_message_over_the_limit_closes_with_1009() {
    let server = TestServer::start_echo(settings());
    let mut c = WsClient::open_at(&server, ECHO).await;
    // Fragments of 1000 bytes: each under the limit, the message over it.
    let chunk = vec![b'y'; 1000];
    let mut first = b"4".to_vec();
    first.extend_from_slice(&chunk);
    c.ws.send(WsMessage::Frame(WsFrame::message(
        first,
        OpCode::Data(Data::Text),
        false,
    )))
    .await
    .unwrap();
    for _ in 0..3 {
        if c.ws
            .send(WsMessage::Frame(WsFrame::message(
                chunk.clone(),
                OpCode::Data(Data::Continue),
                false,
            )))
            .await
            .is_err()
        {
            break;
        }
    }
    match c.expect_closed(WAIT).await {
        Frame::Closed(code, _) => assert_eq!(code, Some(1009)),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.wait_engine_sessions(0.0, WAIT).await, 0.0);
    assert_eq!(server.bad_input("oversized").await, 1.0);
}

#[actix_rt::test]
async fn a_fragmented_message_within_the_limit_is_reassembled() {
    let server = TestServer::start_echo(settings());
    let mut c = WsClient::open_at(&server, ECHO).await;
    let parts: [&[u8]; 3] = [b"4he", "llo €".as_bytes(), b"!"];
    for (i, p) in parts.iter().enumerate() {
        let op = if i == 0 { Data::Text } else { Data::Continue };
        c.ws.send(WsMessage::Frame(WsFrame::message(
            p.to_vec(),
            OpCode::Data(op),
            i == 2,
        )))
        .await
        .unwrap();
    }
    assert_eq!(c.recv().await, Frame::Text("4hello €!".into()));
}

#[actix_rt::test]
async fn an_upgraded_session_has_the_same_limit() {
    let server = TestServer::start_echo(settings());
    let p = PollingClient::open_at(&server, ECHO).await;
    let mut ws = WsClient::upgrade_at(&server, ECHO, &p.sid).await;
    ws.send("2probe").await;
    assert_eq!(ws.recv().await, Frame::Text("3probe".into()));
    ws.send("5").await;
    ws.send(&format!("4{}", "z".repeat(MAX - 1))).await;
    assert!(matches!(ws.recv().await, Frame::Text(t) if t.len() == MAX));
    ws.send(&format!("4{}", "z".repeat(MAX))).await;
    match ws.expect_closed(WAIT).await {
        Frame::Closed(code, _) => assert_eq!(code, Some(1009)),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.wait_engine_sessions(0.0, WAIT).await, 0.0);
    assert_session_gone(&server, &p.sid).await;
}
