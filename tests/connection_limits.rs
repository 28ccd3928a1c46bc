//! Admission limits on the handshake: `server.max_connections` (HTTP 503,
//! code 4 "Server at capacity"), `limits.max_connections_per_ip` (429 "Too
//! many connections from this address", released when a session ends) and
//! `limits.connection_rate_per_ip` / `connection_burst_per_ip` (429
//! "Connection rate limit exceeded"). Each refusal is counted in
//! `riptide_bad_input_total{kind}` and leaves the connected clients alone.

mod common;

use std::time::Duration;

use common::*;
use riptide::{Namespace, Riptide, Settings};

fn fixture_server(settings: Settings) -> TestServer {
    TestServer::start(settings, |r: Riptide| {
        r.namespace("/", Namespace::new(|| riptide::fixture::FixtureHandler))
    })
}

/// A polling handshake: (status, body).
async fn polling_handshake(server: &TestServer) -> (u16, String) {
    let (status, _, body) = server
        .request(
            reqwest::Method::GET,
            &server.url("EIO=4&transport=polling"),
            &[],
            None,
        )
        .await;
    (status, body)
}

/// A WebSocket handshake that must be refused: its HTTP status and body.
async fn refused_ws_handshake(server: &TestServer) -> (u16, String) {
    use tokio_tungstenite::tungstenite::Error;
    let attempt = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async(server.ws_url("EIO=4&transport=websocket")),
    )
    .await
    .expect("handshake answered in time");
    match attempt {
        Err(Error::Http(resp)) => {
            let status = resp.status().as_u16();
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            (status, body)
        }
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("expected an HTTP refusal, the handshake succeeded"),
    }
}

#[tokio::test]
async fn max_connections_refuses_with_503_until_a_client_leaves() {
    let mut settings = test_settings();
    settings.server.max_connections = 3;
    let server = fixture_server(settings);
    let (mut a, _) = WsClient::connect(&server, "/", None).await;
    let (b, _) = WsClient::connect(&server, "/", None).await;
    let (mut c, _) = WsClient::connect(&server, "/", None).await;

    let (status, body) = polling_handshake(&server).await;
    assert_engine_error(status, &body, 503, 4, "Server at capacity");
    let (status, body) = refused_ws_handshake(&server).await;
    assert_engine_error(status, &body, 503, 4, "Server at capacity");
    assert_eq!(server.bad_input("server_full").await, 2.0);
    a.assert_alive("/", 1).await;
    c.assert_alive("/", 1).await;

    // One leaves: its place is free again.
    drop(b);
    assert_eq!(server.wait_engine_sessions(2.0, WAIT).await, 2.0);
    let (mut d, _) = WsClient::connect(&server, "/", None).await;
    d.assert_alive("/", 1).await;
    let (status, body) = polling_handshake(&server).await;
    assert_engine_error(status, &body, 503, 4, "Server at capacity");
    assert_eq!(server.bad_input("server_full").await, 3.0);
}

#[tokio::test]
async fn per_ip_concurrency_refuses_with_429_and_is_released_on_close() {
    let mut settings = test_settings();
    settings.limits.max_connections_per_ip = 2;
    let server = fixture_server(settings);
    let (mut a, _) = WsClient::connect(&server, "/", None).await;
    let (b, _) = WsClient::connect(&server, "/", None).await;

    let (status, body) = polling_handshake(&server).await;
    assert_engine_error(
        status,
        &body,
        429,
        4,
        "Too many connections from this address",
    );
    let (status, body) = refused_ws_handshake(&server).await;
    assert_engine_error(
        status,
        &body,
        429,
        4,
        "Too many connections from this address",
    );
    assert_eq!(server.bad_input("ip_concurrency").await, 2.0);
    a.assert_alive("/", 1).await;

    // A session that ends releases its slot.
    drop(b);
    assert_eq!(server.wait_engine_sessions(1.0, WAIT).await, 1.0);
    let (mut c, _) = WsClient::connect(&server, "/", None).await;
    c.assert_alive("/", 1).await;
    a.assert_alive("/", 2).await;
    let (status, _) = polling_handshake(&server).await;
    assert_eq!(status, 429);
    assert_eq!(server.bad_input("ip_concurrency").await, 3.0);
    // Nothing was refused for capacity or rate.
    assert_eq!(server.bad_input("server_full").await, 0.0);
    assert_eq!(server.bad_input("ip_rate").await, 0.0);
}

#[tokio::test]
async fn per_ip_rate_refuses_a_burst_with_429_then_refills() {
    let mut settings = test_settings();
    settings.limits.connection_rate_per_ip = 1.0;
    settings.limits.connection_burst_per_ip = 2;
    let server = fixture_server(settings);
    let (mut a, _) = WsClient::connect(&server, "/", None).await;
    let (mut b, _) = WsClient::connect(&server, "/", None).await;

    let (status, body) = polling_handshake(&server).await;
    assert_engine_error(status, &body, 429, 4, "Connection rate limit exceeded");
    assert_eq!(server.bad_input("ip_rate").await, 1.0);
    a.assert_alive("/", 1).await;
    b.assert_alive("/", 1).await;

    // One token a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (mut c, _) = WsClient::connect(&server, "/", None).await;
    c.assert_alive("/", 1).await;
    let (status, body) = polling_handshake(&server).await;
    assert_engine_error(status, &body, 429, 4, "Connection rate limit exceeded");
    assert_eq!(server.bad_input("ip_rate").await, 2.0);
    assert_eq!(server.bad_input("ip_concurrency").await, 0.0);
    a.assert_alive("/", 2).await;
}

#[tokio::test]
async fn max_connections_holds_under_concurrent_handshakes() {
    let mut settings = test_settings();
    settings.server.workers = 2;
    settings.server.max_connections = 3;
    let server = fixture_server(settings);
    let http = reqwest::Client::new();
    let url = server.url("EIO=4&transport=polling");
    let attempts = (0..40).map(|_| {
        let (http, url) = (http.clone(), url.clone());
        tokio::spawn(async move {
            let resp = http.get(url).send().await.unwrap();
            resp.status().as_u16()
        })
    });
    let mut statuses = Vec::new();
    for a in attempts.collect::<Vec<_>>() {
        statuses.push(tokio::time::timeout(WAIT, a).await.unwrap().unwrap());
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let full = statuses.iter().filter(|s| **s == 503).count();
    assert_eq!((ok, full), (3, 37), "statuses {statuses:?}");
    assert_eq!(server.engine_sessions().await, 3.0);
    assert_eq!(server.bad_input("server_full").await, 37.0);
}

/// A polling handshake carrying `headers`: (status, sid).
async fn handshake_with(server: &TestServer, headers: &[(&str, &str)]) -> (u16, String) {
    let (status, _, body) = server
        .request(
            reqwest::Method::GET,
            &server.url("EIO=4&transport=polling"),
            headers,
            None,
        )
        .await;
    let sid = serde_json::from_str::<serde_json::Value>(body.get(1..).unwrap_or(""))
        .ok()
        .and_then(|h| h["sid"].as_str().map(str::to_string))
        .unwrap_or_default();
    (status, sid)
}

/// Emits `addr` with the handshake's client address on connect.
struct Address;
impl riptide::NamespaceHandler for Address {
    fn on_connect(&mut self, s: &riptide::Socket, _ctx: &mut riptide::HandlerContext<Self>) {
        let ip = s.handshake().client_ip.map(|ip| ip.to_string());
        let _ = s.emit("addr", serde_json::json!([ip]));
    }
}

/// A node admitting one session per client address, trusting the proxies
/// of `cidr`, serving [`Address`] on `/`.
fn one_slot_per_ip_behind(cidr: &str) -> TestServer {
    let mut settings = test_settings();
    settings.limits.max_connections_per_ip = 1;
    settings.server.trusted_proxies = vec![cidr.into()];
    TestServer::start(settings, |r: Riptide| {
        r.namespace("/", Namespace::new(|| Address))
    })
}

/// The address the node attributed to a client whose handshake carried
/// `headers`.
async fn address_seen(server: &TestServer, headers: &[(&str, &str)]) -> String {
    let (status, sid) = handshake_with(server, headers).await;
    assert_eq!(status, 200);
    let url = server.url(&format!("EIO=4&transport=polling&sid={sid}"));
    let (status, _, _) = server
        .request(reqwest::Method::POST, &url, &[], Some(b"40".to_vec()))
        .await;
    assert_eq!(status, 200);
    let mut got = String::new();
    for _ in 0..3 {
        let (_, _, body) = server.request(reqwest::Method::GET, &url, &[], None).await;
        got.push_str(&body);
        if let Some(at) = got.find("42[\"addr\",") {
            let args: serde_json::Value =
                serde_json::from_str(got[at + 2..].split('\u{1e}').next().unwrap()).unwrap();
            return args[1][0].as_str().unwrap_or("none").to_string();
        }
    }
    panic!("no addr event in {got:?}");
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_counted() {
    let server = one_slot_per_ip_behind("127.0.0.0/8");
    // Two clients behind the proxy: one slot each.
    let xff = |ip: &'static str| [("x-forwarded-for", ip)];
    assert_eq!(handshake_with(&server, &xff("203.0.113.1")).await.0, 200);
    assert_eq!(handshake_with(&server, &xff("203.0.113.2")).await.0, 200);
    let (status, _) = handshake_with(&server, &xff("203.0.113.1")).await;
    assert_eq!(status, 429, "the first client's second session");
    // RFC 7239 too, read from the right past the trusted hops.
    let fwd = [("forwarded", "for=203.0.113.3, for=127.0.0.5")];
    assert_eq!(handshake_with(&server, &fwd).await.0, 200);
    assert_eq!(handshake_with(&server, &fwd).await.0, 429);
    // The handler sees the client, not the proxy.
    assert_eq!(
        address_seen(&server, &xff("2001:db8::7")).await,
        "2001:db8::7"
    );
    // A header that names no address: the proxy's own, counted.
    assert_eq!(
        address_seen(&server, &[("x-forwarded-for", "bogus")]).await,
        "127.0.0.1"
    );
    assert_eq!(server.bad_input("forwarded_header").await, 1.0);
}

#[tokio::test]
async fn from_an_untrusted_peer_forwarding_headers_are_ignored() {
    // A proxy elsewhere: this test's client is not it.
    let server = one_slot_per_ip_behind("10.0.0.0/8");
    assert_eq!(
        address_seen(&server, &[("x-forwarded-for", "203.0.113.1")]).await,
        "127.0.0.1"
    );
    let (status, _) = handshake_with(&server, &[("x-forwarded-for", "203.0.113.2")]).await;
    assert_eq!(status, 429, "a spoofed header does not buy a slot");
    assert_eq!(server.bad_input("forwarded_header").await, 0.0);
}
