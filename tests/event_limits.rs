//! Per-socket event limits: events over `limits.event_rate` /
//! `limits.event_burst` are refused (in the ack as `[{"error": {...}}]`, or
//! as an `error` event without one) and counted; the budget refills; a
//! socket that keeps exceeding it (`limits.event_abuse_close_after` refusals
//! in a row) is disconnected (`41`). Other sockets are unaffected.

mod common;

use std::time::Duration;

use common::*;
use riptide::{Namespace, Riptide};
use serde_json::json;

fn server(close_after: u32) -> TestServer {
    let mut settings = test_settings();
    settings.limits.event_rate = 5.0;
    settings.limits.event_burst = 5;
    settings.limits.event_abuse_close_after = close_after;
    TestServer::start(settings, |r: Riptide| {
        r.namespace("/", Namespace::new(|| riptide::fixture::FixtureHandler))
    })
}

const RATE_LIMITED: &str = "riptide_events_refused_total{reason=\"rate_limit\"}";
const ABUSE: &str = "riptide_events_refused_total{reason=\"abuse\"}";

#[tokio::test]
async fn events_over_the_rate_are_refused_then_accepted_again() {
    let server = server(100);
    let (mut c, _) = WsClient::connect(&server, "/", None).await;
    let (mut other, _) = WsClient::connect(&server, "/", None).await;

    // Six at once: the burst of five is accepted, the sixth refused in its ack.
    for i in 1..=6 {
        c.emit("/", json!(["echo", i]), Some(i)).await;
    }
    // Accepted acks come through the handler, the refusal straight from the
    // connection: compare as a set.
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(c.recv_text().await);
    }
    got.sort();
    let mut want: Vec<String> = (1..=5).map(|i| format!("43{i}[{i}]")).collect();
    want.push(r#"436[{"error":{"message":"rate limit exceeded","event":"echo"}}]"#.into());
    want.sort();
    let got_json: Vec<serde_json::Value> = got
        .iter()
        .map(|t| serde_json::from_str(&t[3..]).unwrap())
        .collect();
    let want_json: Vec<serde_json::Value> = want
        .iter()
        .map(|t| serde_json::from_str(&t[3..]).unwrap())
        .collect();
    assert_eq!(got_json, want_json, "replies {got:?}");

    // Without an ack: an `error` event.
    c.emit("/", json!(["echo", 7]), None).await;
    c.expect_packet(
        "42",
        json!(["error", {"message": "rate limit exceeded", "event": "echo"}]),
    )
    .await;
    server.assert_metric(RATE_LIMITED, 2.0).await;

    // The other socket has its own budget.
    other.assert_alive("/", 1).await;

    // The budget refills at five a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.emit("/", json!(["echo", 8]), Some(8)).await;
    c.expect_text("438[8]").await;
    assert_eq!(server.metric(RATE_LIMITED).await, 2.0);
    assert_eq!(server.metric(ABUSE).await, 0.0);
}

#[tokio::test]
async fn a_socket_that_keeps_exceeding_the_rate_is_disconnected() {
    let server = server(10);
    let (mut abuser, _) = WsClient::connect(&server, "/", None).await;
    let (mut other, _) = WsClient::connect(&server, "/", None).await;
    server
        .assert_metric("riptide_sockets_connected{namespace=\"/\"}", 2.0)
        .await;

    // 5 accepted (no ack asked, the fixture answers nothing), then 9
    // refusals, and the 10th refusal in a row disconnects the socket.
    for i in 0..15 {
        abuser.emit("/", json!(["echo", i]), None).await;
    }
    for _ in 0..9 {
        abuser
            .expect_packet(
                "42",
                json!(["error", {"message": "rate limit exceeded", "event": "echo"}]),
            )
            .await;
    }
    abuser.expect_text("41").await;
    server.assert_metric(ABUSE, 1.0).await;
    server.assert_metric(RATE_LIMITED, 9.0).await;
    server
        .assert_metric("riptide_sockets_connected{namespace=\"/\"}", 1.0)
        .await;
    server
        .assert_metric(
            "riptide_disconnects_total{reason=\"server namespace disconnect\"}",
            1.0,
        )
        .await;

    // The other socket is unaffected.
    other.assert_alive("/", 1).await;
    // The abuser's connection stays; it may connect again.
    abuser.expect_silence(Duration::from_millis(200)).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    abuser.sio_connect("/", None).await;
    abuser.assert_alive("/", 1).await;
}
