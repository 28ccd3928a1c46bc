//! Pins `max_payload` on HTTP long-polling: a POST body over it is answered
//! 413 and ends the session (declared by Content-Length or streamed
//! chunked); one exactly at it is accepted; other clients are unaffected.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MAX: usize = 2048;

fn settings() -> riptide::Settings {
    let mut s = test_settings();
    s.engine.max_payload = MAX;
    s
}

#[actix_rt::test]
async fn a_body_exactly_at_the_limit_is_accepted() {
    let server = TestServer::start_echo(settings());
    let c = PollingClient::open_at(&server, ECHO).await;
    let body = format!("4{}", "x".repeat(MAX - 1));
    assert_eq!(c.post(body.clone()).await, (200, "ok".to_string()));
    assert_eq!(c.get().await, (200, body));
    // Several records adding up to the limit, separators included.
    let half = format!("4{}", "y".repeat(MAX / 2 - 2));
    let body = format!("{half}\x1e{half}");
    assert_eq!(body.len(), MAX - 1);
    assert_eq!(c.post(body.clone()).await, (200, "ok".to_string()));
    assert_eq!(c.get().await, (200, body));
}

#[actix_rt::test]
async fn a_body_over_the_limit_is_413_and_ends_the_session() {
    let server = TestServer::start_echo(settings());
    let other = PollingClient::open_at(&server, ECHO).await;
    let c = PollingClient::open_at(&server, ECHO).await;
    let (status, body) = c.post(format!("4{}", "x".repeat(MAX))).await;
    assert_engine_error(status, &body, 413, 3, "Payload too large");
    let (status, body) = c.get().await;
    assert_engine_error(status, &body, 400, 1, "Session ID unknown");
    assert_eq!(server.wait_engine_sessions(1.0, WAIT).await, 1.0);
    assert_eq!(server.bad_input("oversized").await, 1.0);
    other.post("4fine").await;
    assert_eq!(other.get().await, (200, "4fine".to_string()));
}

#[actix_rt::test]
async fn an_oversized_post_releases_the_waiting_get_with_a_close() {
    let server = TestServer::start_echo(settings());
    let c = PollingClient::open_at(&server, ECHO).await;
    let req = c.http.get(c.session_url());
    let get = actix_rt::spawn(async move {
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, _) = c.post(vec![b'4'; MAX + 1]).await;
    assert_eq!(status, 413);
    let got = tokio::time::timeout(WAIT, get).await.unwrap().unwrap();
    assert_eq!(got, (200, "1".to_string()));
}

/// A raw HTTP/1.1 POST with a chunked body; returns the status code.
async fn chunked_post(server: &TestServer, sid: &str, chunks: &[Vec<u8>]) -> u16 {
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let head = format!(
        "POST {ECHO}?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: text/plain;charset=UTF-8\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    for c in chunks {
        // The server may answer (and stop reading) before the last chunk.
        if tcp
            .write_all(format!("{:x}\r\n", c.len()).as_bytes())
            .await
            .is_err()
            || tcp.write_all(c).await.is_err()
            || tcp.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let _ = tcp.write_all(b"0\r\n\r\n").await;
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
        .await
        .expect("answer in time")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    text.split(' ').nth(1).unwrap().parse().unwrap()
}

#[actix_rt::test]
async fn a_chunked_body_is_bounded_too() {
    let server = TestServer::start_echo(settings());
    let c = PollingClient::open_at(&server, ECHO).await;
    let mut first = b"4".to_vec();
    first.extend(vec![b'a'; 999]);
    // At the limit, in chunks: accepted.
    let at = vec![first.clone(), vec![b'b'; 1000], vec![b'c'; 48]];
    assert_eq!(chunked_post(&server, &c.sid, &at).await, 200);
    let (_, body) = c.get().await;
    assert_eq!(body.len(), MAX);
    // Over it: 413, session gone.
    let over = vec![first, vec![b'b'; 1000], vec![b'c'; 49]];
    assert_eq!(chunked_post(&server, &c.sid, &over).await, 413);
    let (status, body) = c.get().await;
    assert_engine_error(status, &body, 400, 1, "Session ID unknown");
    assert_eq!(server.bad_input("oversized").await, 1.0);
}

#[actix_rt::test]
async fn the_socketio_endpoint_has_the_same_limit() {
    let server = TestServer::start_echo(settings());
    let c = PollingClient::open_at(&server, SIO).await;
    c.post("40").await;
    let connect = c.get_until(|r| r.starts_with("40")).await;
    assert!(connect.starts_with("40{"));
    let (status, _) = c
        .post(format!("42[\"echo\",\"{}\"]", "x".repeat(MAX)))
        .await;
    assert_eq!(status, 413);
    assert_eq!(
        server
            .wait_metric("riptide_sockets_connected{namespace=\"/\"}", 0.0)
            .await,
        0.0
    );
    assert_eq!(server.wait_engine_sessions(0.0, WAIT).await, 0.0);
}
