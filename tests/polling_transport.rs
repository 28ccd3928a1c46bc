//! Pins HTTP long-polling: the GET waits for data and is released by a
//! message, POST bodies carry several `\x1e`-separated records, binary
//! travels as `b` + base64 both ways, a second concurrent GET is refused and
//! ends the session, a client close ends it, and the content types.

mod common;

use std::time::Duration;

use common::*;

#[actix_rt::test]
async fn get_waits_for_data_and_a_message_releases_it() {
    let server = TestServer::start_echo(test_settings());
    let c = PollingClient::open_at(&server, ECHO).await;
    let get = spawn_get(&c);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !get.is_finished(),
        "the GET must wait while there is nothing to send"
    );
    assert_eq!(c.post("4wake up").await, (200, "ok".to_string()));
    assert_eq!(join_get(get).await, (200, "4wake up".to_string()));
}

#[actix_rt::test]
async fn response_content_types() {
    let server = TestServer::start_echo(test_settings());
    let c = PollingClient::open_at(&server, ECHO).await;
    let (status, headers, body) = c.post_full("4x").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert_eq!(headers["content-type"], "text/html");
    let resp = c.http.get(c.session_url()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=UTF-8");
    assert_eq!(resp.text().await.unwrap(), "4x");
}

#[actix_rt::test]
async fn post_with_several_records_keeps_their_order() {
    let server = TestServer::start_echo(test_settings());
    let c = PollingClient::open_at(&server, ECHO).await;
    assert_eq!(
        c.post("4test1\x1e4test2\x1e4test3").await,
        (200, "ok".to_string())
    );
    assert_eq!(
        c.get().await,
        (200, "4test1\x1e4test2\x1e4test3".to_string())
    );
    // Several POSTs before a GET: one body, in order, once.
    for i in 0..5 {
        assert_eq!(c.post(format!("4m{i}")).await, (200, "ok".to_string()));
    }
    assert_eq!(
        c.get().await,
        (200, "4m0\x1e4m1\x1e4m2\x1e4m3\x1e4m4".to_string())
    );
    let get = spawn_get(&c);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!get.is_finished(), "nothing left to deliver");
    c.post("4last").await;
    assert_eq!(join_get(get).await, (200, "4last".to_string()));
}

#[actix_rt::test]
async fn utf8_text_round_trips() {
    let server = TestServer::start_echo(test_settings());
    let c = PollingClient::open_at(&server, ECHO).await;
    assert_eq!(c.post("4€€€ é\x1e4日本").await, (200, "ok".to_string()));
    assert_eq!(c.get().await, (200, "4€€€ é\x1e4日本".to_string()));
}

#[actix_rt::test]
async fn binary_travels_as_base64_both_ways() {
    let server = TestServer::start_echo(test_settings());
    let c = PollingClient::open_at(&server, ECHO).await;
    assert_eq!(c.post("4hello\x1ebAQIDBA==").await, (200, "ok".to_string()));
    assert_eq!(c.get().await, (200, "4hello\x1ebAQIDBA==".to_string()));
    // Unpadded base64 is accepted; the server writes it padded.
    assert_eq!(c.post("bAQIDBA").await, (200, "ok".to_string()));
    assert_eq!(c.get().await, (200, "bAQIDBA==".to_string()));
    // An empty binary message.
    assert_eq!(c.post("b").await, (200, "ok".to_string()));
    assert_eq!(c.get().await, (200, "b".to_string()));
    // Every byte value.
    let all: Vec<u8> = (0..=255).collect();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&all);
    assert_eq!(c.post(format!("b{b64}")).await, (200, "ok".to_string()));
    assert_eq!(c.get().await, (200, format!("b{b64}")));
}

#[actix_rt::test]
async fn binary_from_a_websocket_peer_reaches_polling_as_base64() {
    // Binary written by the server (here: echoed) to a polling client.
    let server = TestServer::start_echo(test_settings());
    let c = PollingClient::open_at(&server, ECHO).await;
    c.post("b/w==").await;
    assert_eq!(c.get().await, (200, "b/w==".to_string()));
}

#[actix_rt::test]
async fn a_second_concurrent_get_is_refused_and_closes_the_session() {
    let server = TestServer::start_echo(test_settings());
    let other = PollingClient::open_at(&server, ECHO).await;
    let c = PollingClient::open_at(&server, ECHO).await;
    let first = spawn_get(&c);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!first.is_finished());
    let (status, body) = c.get().await;
    assert_engine_error(status, &body, 400, 3, "Bad request");
    // The waiting GET is released with a close packet.
    assert_eq!(join_get(first).await, (200, "1".to_string()));
    // The session is gone.
    let (status, body) = c.get().await;
    assert_engine_error(status, &body, 400, 1, "Session ID unknown");
    assert_eq!(server.wait_engine_sessions(1.0, WAIT).await, 1.0);
    assert_eq!(
        server
            .metric("riptide_engine_sessions_closed_total{reason=\"transport error\"}")
            .await,
        1.0
    );
    // The other client is unaffected.
    other.post("4fine").await;
    assert_eq!(other.get().await, (200, "4fine".to_string()));
}

#[actix_rt::test]
async fn a_close_packet_ends_the_session_and_releases_the_get_with_a_noop() {
    let server = TestServer::start_echo(test_settings());
    let c = PollingClient::open_at(&server, ECHO).await;
    let get = spawn_get(&c);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(c.post("1").await, (200, "ok".to_string()));
    assert_eq!(join_get(get).await, (200, "6".to_string()));
    let (status, body) = c.get().await;
    assert_engine_error(status, &body, 400, 1, "Session ID unknown");
    assert_eq!(server.wait_engine_sessions(0.0, WAIT).await, 0.0);
    assert_eq!(
        server
            .metric("riptide_engine_sessions_closed_total{reason=\"transport close\"}")
            .await,
        1.0
    );
}

#[actix_rt::test]
async fn packets_after_a_close_in_the_same_body_are_ignored() {
    let server = TestServer::start_echo(test_settings());
    let c = PollingClient::open_at(&server, ECHO).await;
    assert_eq!(
        c.post("4before\x1e1\x1e4after").await,
        (200, "ok".to_string())
    );
    let (status, body) = c.get().await;
    assert_engine_error(status, &body, 400, 1, "Session ID unknown");
}

#[actix_rt::test]
async fn a_client_pong_without_a_ping_and_a_noop_are_harmless() {
    let server = TestServer::start_echo(test_settings());
    let c = PollingClient::open_at(&server, ECHO).await;
    assert_eq!(c.post("3\x1e6\x1e4x").await, (200, "ok".to_string()));
    assert_eq!(c.get().await, (200, "4x".to_string()));
}

// The official suite's "forcefully closes the session": a GET and a POST `1`
// sent together, on two connections. The GET was sent first, but the POST
// may be handled first (another worker thread); the GET must still get the
// noop a waiting GET gets at the client's close, never a 400. Here the GET
// is sent only once the session has handled the close.
#[actix_rt::test]
async fn a_get_crossing_the_client_s_close_gets_the_noop() {
    let server = TestServer::start_echo(test_settings());
    let c = PollingClient::open_at(&server, ECHO).await;
    let post = spawn_post(&c, "1");
    assert_eq!(server.wait_engine_sessions(0.0, WAIT).await, 0.0);
    assert_eq!(c.get().await, (200, "6".to_string()));
    assert_eq!(join_get(post).await, (200, "ok".to_string()));
    // That noop was the last answer: the session is gone.
    let (status, body) = c.get().await;
    assert_engine_error(status, &body, 400, 1, "Session ID unknown");
    assert_eq!(
        server
            .metric("riptide_engine_sessions_closed_total{reason=\"transport close\"}")
            .await,
        1.0
    );
}

// What the client's close left queued goes to that GET, as it would have to
// a waiting one.
#[actix_rt::test]
async fn a_get_crossing_the_client_s_close_gets_what_was_queued() {
    let server = TestServer::start_echo(test_settings());
    let c = PollingClient::open_at(&server, ECHO).await;
    let post = spawn_post(&c, "4bye\x1e1");
    assert_eq!(server.wait_engine_sessions(0.0, WAIT).await, 0.0);
    assert_eq!(c.get().await, (200, "4bye".to_string()));
    assert_eq!(join_get(post).await.0, 200);
}
