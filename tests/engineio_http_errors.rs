//! Pins the Engine.IO HTTP error answers: status 400 with the reference
//! server's `{"code":N,"message":"..."}` body, each counted once in
//! `riptide_bad_input_total`, and a node that keeps serving good clients.

mod common;

use common::*;
use reqwest::Method;

/// A healthy polling client on the echo endpoint still round-trips.
async fn assert_healthy(c: &PollingClient, n: usize) {
    let msg = format!("4healthy-{n}");
    assert_eq!(c.post(msg.clone()).await, (200, "ok".to_string()));
    assert_eq!(c.get().await, (200, msg));
}

async fn call(server: &TestServer, method: Method, query: &str) -> (u16, String) {
    let (status, headers, body) = server
        .request(method, &server.url_at(ECHO, query), &[], None)
        .await;
    if status == 400 {
        assert_eq!(headers["content-type"], "application/json", "{body}");
    }
    (status, body)
}

#[actix_rt::test]
async fn unknown_transport_is_code_0() {
    let server = TestServer::start_echo(test_settings());
    let good = PollingClient::open_at(&server, ECHO).await;
    for (i, q) in [
        "EIO=4&transport=foo",
        "EIO=4",
        "EIO=4&transport=",
        "EIO=4&transport=POLLING",
        "EIO=3&transport=flashsocket",
    ]
    .into_iter()
    .enumerate()
    {
        let (status, body) = call(&server, Method::GET, q).await;
        assert_engine_error(status, &body, 400, 0, "Transport unknown");
        assert_healthy(&good, i).await;
    }
    // Also with a sid: the transport is checked first.
    let (status, body) = call(
        &server,
        Method::GET,
        &format!("EIO=4&transport=foo&sid={}", good.sid),
    )
    .await;
    assert_engine_error(status, &body, 400, 0, "Transport unknown");
    assert_eq!(server.bad_input("unknown_transport").await, 6.0);
    assert_healthy(&good, 99).await;
}

#[actix_rt::test]
async fn unknown_sid_is_code_1() {
    let server = TestServer::start_echo(test_settings());
    let good = PollingClient::open_at(&server, ECHO).await;
    for (i, (method, q)) in [
        (Method::GET, "EIO=4&transport=polling&sid=nope"),
        (Method::POST, "EIO=4&transport=polling&sid=nope"),
        (
            Method::GET,
            "EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA",
        ),
        (
            Method::GET,
            "EIO=4&transport=websocket&sid=AAAAAAAAAAAAAAAAAAAA",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let (status, body) = call(&server, method, q).await;
        assert_engine_error(status, &body, 400, 1, "Session ID unknown");
        assert_healthy(&good, i).await;
    }
    assert_eq!(server.bad_input("unknown_sid").await, 4.0);
}

#[actix_rt::test]
async fn handshake_with_another_method_than_get_is_code_2() {
    let server = TestServer::start_echo(test_settings());
    let good = PollingClient::open_at(&server, ECHO).await;
    for (i, method) in [Method::POST, Method::PUT, Method::DELETE]
        .into_iter()
        .enumerate()
    {
        let (status, body) = call(&server, method, "EIO=4&transport=polling").await;
        assert_engine_error(status, &body, 400, 2, "Bad handshake method");
        assert_healthy(&good, i).await;
    }
    assert_eq!(server.bad_input("bad_handshake_method").await, 3.0);
    // No session was created by any of them.
    assert_eq!(server.engine_sessions().await, 1.0);
}

#[actix_rt::test]
async fn bad_requests_are_code_3() {
    let server = TestServer::start_echo(test_settings());
    let good = PollingClient::open_at(&server, ECHO).await;
    let victim = PollingClient::open_at(&server, ECHO).await;

    // A WebSocket handshake without the upgrade headers.
    let (status, body) = call(&server, Method::GET, "EIO=4&transport=websocket").await;
    assert_engine_error(status, &body, 400, 3, "Bad request");
    assert_healthy(&good, 0).await;

    // transport=websocket on a polling session, without the upgrade headers.
    let q = format!("EIO=4&transport=websocket&sid={}", victim.sid);
    let (status, body) = call(&server, Method::GET, &q).await;
    assert_engine_error(status, &body, 400, 3, "Bad request");
    assert_healthy(&good, 1).await;
    // That did not hurt the polling session.
    assert_healthy(&victim, 2).await;

    // A polling GET on a session that upgraded to WebSocket.
    let mut ws = WsClient::upgrade_at(&server, ECHO, &victim.sid).await;
    ws.send("2probe").await;
    assert_eq!(ws.recv().await, Frame::Text("3probe".into()));
    ws.send("5").await;
    // The upgrade is in effect once a message comes back over the WebSocket.
    ws.send("4over ws").await;
    assert_eq!(ws.recv().await, Frame::Text("4over ws".into()));
    let (status, body) = victim.get().await;
    assert_engine_error(status, &body, 400, 3, "Bad request");
    let (status, body) = victim.post("4late").await;
    assert_engine_error(status, &body, 400, 3, "Bad request");
    // The upgraded session survives the stray requests.
    ws.send("4still").await;
    assert_eq!(ws.recv().await, Frame::Text("4still".into()));
    assert_healthy(&good, 3).await;

    assert_eq!(server.bad_input("bad_request").await, 4.0);
}

#[actix_rt::test]
async fn unsupported_protocol_version_is_code_5() {
    let server = TestServer::start_echo(test_settings());
    let good = PollingClient::open_at(&server, ECHO).await;
    for (i, q) in [
        "EIO=3&transport=polling",
        "transport=polling",
        "EIO=abc&transport=polling",
        "EIO=5&transport=polling",
        "EIO=&transport=polling",
        "EIO=3&transport=websocket",
    ]
    .into_iter()
    .enumerate()
    {
        let (status, body) = call(&server, Method::GET, q).await;
        assert_engine_error(status, &body, 400, 5, "Unsupported protocol version");
        assert_healthy(&good, i).await;
    }
    assert_eq!(server.bad_input("unsupported_protocol_version").await, 6.0);
    assert_eq!(server.engine_sessions().await, 1.0);
}

#[actix_rt::test]
async fn websocket_handshake_errors_are_refused_before_the_upgrade() {
    let server = TestServer::start_echo(test_settings());
    let good = PollingClient::open_at(&server, ECHO).await;
    for q in [
        "EIO=3&transport=websocket",
        "transport=websocket",
        "EIO=4",
        "EIO=4&transport=websocket&sid=nope",
    ] {
        match tokio_tungstenite::connect_async(server.ws_url_at(ECHO, q)).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 400, "{q}")
            }
            other => panic!("{q}: expected an HTTP 400, got {other:?}"),
        }
    }
    assert_healthy(&good, 0).await;
    assert_eq!(server.engine_sessions().await, 1.0);
}
