//! Pins Engine.IO v3 / Socket.IO v2 clients (`engine.allow_eio3`), as the
//! reference server's `allowEIO3` serves them: refused (code 5) when off;
//! when on, their handshake, the length-prefixed polling payloads (text,
//! XHR2 binary and `b64=1`), WebSocket binary frames with their type byte,
//! the client-sent ping and its timeout, the upgrade, and the Socket.IO v2
//! semantics on top (`/` connected at the handshake, a namespace's CONNECT
//! query as its auth, ERROR refusals, v2 socket ids). A v4 client keeps
//! working on the same node.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::*;
use futures_util::StreamExt;
use riptide::{ConnectError, Event, HandlerContext, Namespace, NamespaceHandler, Riptide, Socket};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// The fixture's events, and `whoami`: acks `[id, auth]` of the socket.
#[derive(Default)]
struct V2App;

impl NamespaceHandler for V2App {
    fn on_event(&mut self, socket: &Socket, event: Event, _ctx: &mut HandlerContext<Self>) {
        if event.name == "whoami" {
            if let Some(ack) = event.ack {
                ack.send((socket.id().to_string(), socket.auth().clone()));
            }
            return;
        }
        riptide::fixture::handle_event(socket, event);
    }
}

fn app(r: Riptide) -> Riptide {
    let private = Namespace::new(|| V2App).on_connect(|req| {
        match req.auth.get("token").and_then(Value::as_str) {
            Some("secret") => Ok(()),
            _ => Err(ConnectError::new("unauthorized")),
        }
    });
    r.namespace("/", Namespace::new(|| V2App))
        .namespace("/private", private)
}

fn settings(allow: bool) -> riptide::Settings {
    let mut s = test_settings();
    s.engine.allow_eio3 = allow;
    s
}

fn start(allow: bool) -> TestServer {
    TestServer::start(settings(allow), app)
}

// ---- an independent v3 codec, as engine.io-parser 2.x writes it -----------

/// The records of a v3 text payload (`<len>:<record>`, len in UTF-16 units).
fn text_records(body: &str) -> Vec<String> {
    let units: Vec<u16> = body.encode_utf16().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < units.len() {
        let colon = i + units[i..]
            .iter()
            .position(|&u| u == u16::from(b':'))
            .unwrap();
        let len: usize = String::from_utf16(&units[i..colon])
            .unwrap()
            .parse()
            .unwrap();
        let record = String::from_utf16(&units[colon + 1..colon + 1 + len]).unwrap();
        out.push(record);
        i = colon + 1 + len;
    }
    out
}

fn text_payload(records: &[&str]) -> String {
    records
        .iter()
        .map(|r| format!("{}:{r}", r.encode_utf16().count()))
        .collect()
}

#[derive(Debug, PartialEq)]
enum Record {
    Text(String),
    Binary(Vec<u8>),
}

/// The records of a v3 binary payload; a binary one keeps its type byte.
fn binary_records(body: &[u8]) -> Vec<Record> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let is_string = body[i] == 0;
        i += 1;
        let mut len = 0usize;
        while body[i] != 0xFF {
            len = len * 10 + body[i] as usize;
            i += 1;
        }
        i += 1;
        let data = body[i..i + len].to_vec();
        i += len;
        out.push(if is_string {
            Record::Text(String::from_utf8(data).unwrap())
        } else {
            Record::Binary(data)
        });
    }
    out
}

fn binary_payload(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        let (kind, data) = match r {
            Record::Text(t) => (0u8, t.as_bytes()),
            Record::Binary(b) => (1u8, b.as_slice()),
        };
        out.push(kind);
        out.extend(data.len().to_string().bytes().map(|d| d - b'0'));
        out.push(0xFF);
        out.extend_from_slice(data);
    }
    out
}

// ---- a raw v3 polling client ----------------------------------------------

struct V3Polling {
    http: reqwest::Client,
    base: String,
    sid: String,
    handshake: Value,
    /// Records of the handshake answer after the open packet.
    rest: Vec<String>,
}

impl V3Polling {
    async fn open(server: &TestServer, extra: &str) -> V3Polling {
        let http = reqwest::Client::new();
        let base = server.url(&format!("EIO=3&transport=polling{extra}"));
        let resp = http.get(&base).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert_eq!(ct, "text/plain; charset=UTF-8");
        let body = resp.text().await.unwrap();
        let mut records = text_records(&body);
        let open = records.remove(0);
        assert!(open.starts_with('0'), "open packet, got {body:?}");
        let handshake: Value = serde_json::from_str(&open[1..]).unwrap();
        let sid = handshake["sid"].as_str().unwrap().to_string();
        V3Polling {
            http,
            base,
            sid,
            handshake,
            rest: records,
        }
    }

    fn url(&self) -> String {
        format!("{}&sid={}", self.base, self.sid)
    }

    /// One GET: (status, content type, body).
    async fn get(&self) -> (u16, String, Vec<u8>) {
        let resp = tokio::time::timeout(WAIT, self.http.get(self.url()).send())
            .await
            .expect("poll answered in time")
            .unwrap();
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, ct, resp.bytes().await.unwrap().to_vec())
    }

    async fn get_text(&self) -> Vec<String> {
        let (status, ct, body) = self.get().await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(ct, "text/plain; charset=UTF-8");
        text_records(std::str::from_utf8(&body).unwrap())
    }

    async fn post(&self, body: Vec<u8>, content_type: &str) -> (u16, String) {
        let resp = self
            .http
            .post(self.url())
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    async fn post_text(&self, records: &[&str]) {
        let (status, body) = self
            .post(
                text_payload(records).into_bytes(),
                "text/plain;charset=UTF-8",
            )
            .await;
        assert_eq!((status, body.as_str()), (200, "ok"));
    }
}

async fn v3_ws(server: &TestServer, query: &str) -> WsClient {
    let (ws, _) = tokio_tungstenite::connect_async(server.ws_url(query))
        .await
        .expect("websocket handshake");
    WsClient {
        ws,
        sid: String::new(),
        // A v3 client never answers a ping: it is the one that pings.
        answer_pings: false,
    }
}

const PLACEHOLDER: &str = r#"{"_placeholder":true,"num":0}"#;

// ---- off -------------------------------------------------------------------

#[actix_rt::test]
async fn eio3_is_refused_when_not_allowed() {
    let server = start(false);
    for transport in ["polling", "websocket"] {
        let (status, _, body) = server
            .request(
                reqwest::Method::GET,
                &server.url(&format!("EIO=3&transport={transport}")),
                &[],
                None,
            )
            .await;
        assert_engine_error(status, &body, 400, 5, "Unsupported protocol version");
    }
    assert_eq!(server.bad_input("unsupported_protocol_version").await, 2.0);
    // v4 is untouched.
    let (_c, _) = WsClient::connect(&server, "/", None).await;
}

#[actix_rt::test]
async fn only_the_two_revisions_are_accepted() {
    let server = start(true);
    for query in [
        "transport=polling",
        "EIO=2&transport=polling",
        "EIO=5&transport=polling",
    ] {
        let (status, _, body) = server
            .request(reqwest::Method::GET, &server.url(query), &[], None)
            .await;
        assert_engine_error(status, &body, 400, 5, "Unsupported protocol version");
    }
}

// ---- polling ---------------------------------------------------------------

#[actix_rt::test]
async fn polling_handshake_opens_and_connects_the_main_namespace() {
    let server = start(true);
    let c = V3Polling::open(&server, "").await;
    let hs = &c.handshake;
    assert_eq!(hs["upgrades"], json!(["websocket"]));
    assert_eq!(hs["pingInterval"], json!(25000));
    assert_eq!(hs["pingTimeout"], json!(20000));
    // The server connects `/` itself: its CONNECT ("0", no sid) follows the
    // open packet, in the same answer or the next.
    let connect = if c.rest.is_empty() {
        c.get_text().await
    } else {
        c.rest.clone()
    };
    assert_eq!(connect, ["40"]);
    assert_eq!(
        server
            .metric("riptide_engine_sessions_opened_total{protocol=\"3\"}")
            .await,
        1.0
    );
    assert_eq!(
        server
            .wait_metric("riptide_sockets_connected{namespace=\"/\"}", 1.0)
            .await,
        1.0
    );
    // A v2 socket's id on `/` is the Engine.IO sid, as the client computes.
    c.post_text(&["421[\"whoami\",1]"]).await;
    let ack = c.get_text().await;
    assert_eq!(ack, [format!("431[[\"{}\",{{}}]]", c.sid)]);
}

#[actix_rt::test]
async fn polling_text_payloads_carry_events_acks_and_utf16_lengths() {
    let server = start(true);
    let c = V3Polling::open(&server, "").await;
    if c.rest.is_empty() {
        assert_eq!(c.get_text().await, ["40"]);
    }
    // Two records in one POST; the second holds characters outside the
    // BMP, two UTF-16 units each.
    c.post_text(&["421[\"echo\",\"é\"]", "422[\"echo\",\"😀x\"]"])
        .await;
    let mut got = Vec::new();
    while got.len() < 2 {
        got.extend(c.get_text().await);
    }
    assert_eq!(got, ["431[\"é\"]", "432[\"😀x\"]"]);
    // Rooms: join, then a publish to the room comes back to us.
    c.post_text(&["423[\"join\",\"r\"]"]).await;
    assert_eq!(c.get_text().await, ["433[]"]);
    c.post_text(&["42[\"publish\",\"r\",{\"a\":1}]"]).await;
    assert_eq!(c.get_text().await, ["42[\"msg\",{\"a\":1}]"]);
}

#[actix_rt::test]
async fn polling_binary_payloads_both_ways() {
    let server = start(true);
    let c = V3Polling::open(&server, "").await;
    if c.rest.is_empty() {
        assert_eq!(c.get_text().await, ["40"]);
    }
    let event = format!("451-1[\"echo\",{PLACEHOLDER}]");
    let body = binary_payload(&[Record::Text(event), Record::Binary(vec![4, 1, 2, 255])]);
    let (status, ok) = c.post(body, "application/octet-stream").await;
    assert_eq!((status, ok.as_str()), (200, "ok"));
    let (status, ct, body) = c.get().await;
    assert_eq!(status, 200);
    assert_eq!(ct, "application/octet-stream");
    assert_eq!(
        binary_records(&body),
        [
            Record::Text(format!("461-1[{PLACEHOLDER}]")),
            Record::Binary(vec![4, 1, 2, 255]),
        ]
    );
}

#[actix_rt::test]
async fn b64_clients_get_binary_as_base64_records() {
    let server = start(true);
    let c = V3Polling::open(&server, "&b64=1").await;
    if c.rest.is_empty() {
        assert_eq!(c.get_text().await, ["40"]);
    }
    let event = format!("451-1[\"echo\",{PLACEHOLDER}]");
    let b64 = format!(
        "b4{}",
        base64::engine::general_purpose::STANDARD.encode([9u8, 8, 7])
    );
    c.post_text(&[&event, &b64]).await;
    let mut got = Vec::new();
    while got.len() < 2 {
        got.extend(c.get_text().await);
    }
    assert_eq!(got, [format!("461-1[{PLACEHOLDER}]"), "b4CQgH".to_string()]);
}

#[actix_rt::test]
async fn bad_v3_payloads_are_counted_and_close_only_their_session() {
    let server = start(true);
    let other = V3Polling::open(&server, "").await;
    for (body, content_type) in [
        (b"4hello".to_vec(), "text/plain;charset=UTF-8"),
        (b"9:4hi".to_vec(), "text/plain;charset=UTF-8"),
        (vec![0, 5, 0xFF, b'4'], "application/octet-stream"),
        (vec![1, 2, 0xFF, 2, 1], "application/octet-stream"),
    ] {
        let c = V3Polling::open(&server, "").await;
        let (status, _) = c.post(body, content_type).await;
        assert_eq!(status, 400);
        let (status, _, body) = c.get().await;
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    }
    assert_eq!(server.bad_input("engine_decode").await, 4.0);
    // The other session never noticed.
    other.post_text(&["421[\"echo\",1]"]).await;
    let mut got = other.rest.clone();
    while !got.iter().any(|r| r.starts_with("43")) {
        got.extend(other.get_text().await);
    }
    assert_eq!(got.last().unwrap(), "431[1]");
}

#[actix_rt::test]
async fn jsonp_is_refused_and_sessions_keep_their_revision() {
    let server = start(true);
    let (status, _, body) = server
        .request(
            reqwest::Method::GET,
            &server.url("EIO=3&transport=polling&j=0"),
            &[],
            None,
        )
        .await;
    assert_engine_error(status, &body, 400, 3, "JSONP polling is not supported");
    assert_eq!(server.bad_input("jsonp").await, 1.0);
    // A v3 session is not reachable as v4, nor the reverse.
    let c = V3Polling::open(&server, "").await;
    let (status, _, body) = server
        .request(
            reqwest::Method::GET,
            &server.url(&format!("EIO=4&transport=polling&sid={}", c.sid)),
            &[],
            None,
        )
        .await;
    assert_engine_error(status, &body, 400, 3, "Bad request");
}

// ---- the heartbeat ---------------------------------------------------------

fn fast(allow: bool) -> riptide::Settings {
    let mut s = settings(allow);
    s.engine.ping_interval_ms = 300;
    s.engine.ping_timeout_ms = 200;
    s
}

#[actix_rt::test]
async fn the_client_pings_and_the_server_answers_pong() {
    let server = TestServer::start(fast(true), app);
    let c = V3Polling::open(&server, "").await;
    if c.rest.is_empty() {
        assert_eq!(c.get_text().await, ["40"]);
    }
    // Pinging every 200 ms keeps the session well past interval + timeout
    // (500 ms); every ping gets its pong.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        c.post_text(&["2"]).await;
        assert_eq!(c.get_text().await, ["3"]);
    }
}

#[actix_rt::test]
async fn a_silent_client_is_closed_after_interval_plus_timeout() {
    let server = TestServer::start(fast(true), app);
    let mut ws = v3_ws(&server, "EIO=3&transport=websocket").await;
    let started = tokio::time::Instant::now();
    assert!(ws.recv_text().await.starts_with('0'));
    assert_eq!(ws.recv_text().await, "40");
    // Read raw frames (the helpers skip pings): the server never pings a
    // v3 client, and the close comes at interval + timeout, not at the v4
    // timeout.
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(3), ws.ws.next())
            .await
            .expect("closed in time");
        match msg {
            // The close packet may come before the close frame.
            Some(Ok(WsMessage::Text(t))) if t.as_str() == "1" => {}
            Some(Ok(WsMessage::Text(t))) => panic!("unexpected frame {t:?}"),
            Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => break,
            Some(Ok(_)) => {}
        }
    }
    let after = started.elapsed();
    assert!(
        after >= Duration::from_millis(450),
        "closed after {after:?}"
    );
    assert!(
        server
            .wait_metric(
                "riptide_engine_sessions_closed_total{reason=\"ping timeout\"}",
                1.0
            )
            .await
            == 1.0
    );
}

#[actix_rt::test]
async fn a_pong_from_a_v3_client_is_the_wrong_direction() {
    let server = start(true);
    let c = V3Polling::open(&server, "").await;
    let (status, _) = c
        .post(
            text_payload(&["3"]).into_bytes(),
            "text/plain;charset=UTF-8",
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(server.bad_input("heartbeat_direction").await, 1.0);
    assert_eq!(server.wait_engine_sessions(0.0, WAIT).await, 0.0);
}

// ---- WebSocket and the upgrade --------------------------------------------

#[actix_rt::test]
async fn websocket_binary_frames_carry_the_type_byte() {
    let server = start(true);
    let mut ws = v3_ws(&server, "EIO=3&transport=websocket").await;
    let open = ws.recv_text().await;
    let hs: Value = serde_json::from_str(&open[1..]).unwrap();
    assert_eq!(hs["upgrades"], json!([]));
    assert_eq!(ws.recv_text().await, "40");
    ws.send(&format!("451-1[\"echo\",{PLACEHOLDER}]")).await;
    ws.send_binary(vec![4, 10, 20]).await;
    assert_eq!(ws.recv_text().await, format!("461-1[{PLACEHOLDER}]"));
    assert_eq!(ws.recv().await, Frame::Binary(vec![4, 10, 20]));
    // The client pings over the WebSocket too.
    ws.send("2").await;
    assert_eq!(ws.recv_text().await, "3");
    // A binary frame of another type is bad input: counted, closed.
    ws.send_binary(vec![2, 1]).await;
    assert!(matches!(ws.expect_closed(WAIT).await, Frame::Closed(..)));
    assert_eq!(server.bad_input("engine_decode").await, 1.0);
}

#[actix_rt::test]
async fn b64_websocket_gets_base64_text_frames() {
    let server = start(true);
    let mut ws = v3_ws(&server, "EIO=3&transport=websocket&b64=1").await;
    ws.recv_text().await;
    assert_eq!(ws.recv_text().await, "40");
    ws.send(&format!("451-1[\"echo\",{PLACEHOLDER}]")).await;
    ws.send("b4AQID").await;
    assert_eq!(ws.recv_text().await, format!("461-1[{PLACEHOLDER}]"));
    assert_eq!(ws.recv_text().await, "b4AQID");
}

#[actix_rt::test]
async fn polling_upgrades_to_websocket() {
    let server = start(true);
    let c = V3Polling::open(&server, "").await;
    if c.rest.is_empty() {
        assert_eq!(c.get_text().await, ["40"]);
    }
    let mut ws = v3_ws(&server, &format!("EIO=3&transport=websocket&sid={}", c.sid)).await;
    ws.send("2probe").await;
    assert_eq!(ws.recv_text().await, "3probe");
    ws.send("5").await;
    // Now on the WebSocket: binary with its type byte.
    ws.send(&format!("451-1[\"echo\",{PLACEHOLDER}]")).await;
    ws.send_binary(vec![4, 7]).await;
    assert_eq!(ws.recv_text().await, format!("461-1[{PLACEHOLDER}]"));
    assert_eq!(ws.recv().await, Frame::Binary(vec![4, 7]));
    assert_eq!(
        server
            .wait_metric("riptide_engine_sessions{transport=\"websocket\"}", 1.0)
            .await,
        1.0
    );
}

// ---- Socket.IO v2 namespaces ----------------------------------------------

#[actix_rt::test]
async fn a_namespace_connect_query_is_its_auth() {
    let server = start(true);
    let mut ws = v3_ws(&server, "EIO=3&transport=websocket&token=hs").await;
    let open = ws.recv_text().await;
    let hs: Value = serde_json::from_str(&open[1..]).unwrap();
    let sid = hs["sid"].as_str().unwrap().to_string();
    assert_eq!(ws.recv_text().await, "40");
    // Refused: v2's ERROR packet with the middleware's message.
    ws.send("40/private?token=wrong,").await;
    assert_eq!(ws.recv_text().await, "44/private,\"unauthorized\"");
    // Accepted: the reply carries no sid; the socket's id is `/nsp#sid`
    // and its auth the query.
    ws.send("40/private?token=secret,").await;
    assert_eq!(ws.recv_text().await, "40/private,");
    ws.send("42/private,1[\"whoami\",1]").await;
    assert_eq!(
        ws.recv_text().await,
        format!("43/private,1[[\"/private#{sid}\",{{\"token\":\"secret\"}}]]")
    );
    // Its id is a room on this node too, as any socket's.
    ws.send(&format!(
        "42/private,[\"publish\",\"/private#{sid}\",\"to me\"]"
    ))
    .await;
    assert_eq!(ws.recv_text().await, "42/private,[\"msg\",\"to me\"]");
    // An unknown namespace, as a v2 client sees it.
    ws.send("40/nope,").await;
    assert_eq!(ws.recv_text().await, "44/nope,\"Invalid namespace\"");
}

#[actix_rt::test]
async fn v4_clients_work_beside_v3_ones() {
    let server = start(true);
    let mut v3 = v3_ws(&server, "EIO=3&transport=websocket").await;
    v3.recv_text().await;
    assert_eq!(v3.recv_text().await, "40");
    v3.send("421[\"join\",\"both\"]").await;
    assert_eq!(v3.recv_text().await, "431[]");
    let (mut v4, _) = WsClient::connect(&server, "/", None).await;
    v4.send("42[\"publish\",\"both\",\"hi\"]").await;
    assert_eq!(v3.recv_text().await, "42[\"msg\",\"hi\"]");
    v4.emit("/", json!(["echo", 1]), Some(3)).await;
    assert_eq!(v4.recv_text().await, "433[1]");
    assert_eq!(
        server
            .metric("riptide_engine_sessions_opened_total{protocol=\"4\"}")
            .await,
        1.0
    );
}

// ---- across nodes ----------------------------------------------------------

/// A v2 socket id is no 20-character id: a broadcast to it still reaches
/// the node its socket is on (`/` and `/nsp#sid`, behind the node's sid
/// prefix in a cluster that forwards).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_socket_id_is_reached_from_another_node() {
    use common::brokers::{Broker, NatsServer};
    let broker = NatsServer::start();
    let node = || {
        let mut s = settings(true);
        s.adapter = broker.adapter_settings("eio3");
        TestServer::start(s, app)
    };
    let (a, b) = (node(), node());
    for n in [&a, &b] {
        assert_eq!(n.wait_metric("riptide_adapter_peers", 1.0).await, 1.0);
    }
    let mut on_a = v3_ws(&a, "EIO=3&transport=websocket").await;
    let open = on_a.recv_text().await;
    let sid = serde_json::from_str::<Value>(&open[1..]).unwrap()["sid"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        sid.len() > 20,
        "a cluster's sid has its node's prefix: {sid}"
    );
    assert_eq!(on_a.recv_text().await, "40");
    on_a.send("40/private?token=secret,").await;
    assert_eq!(on_a.recv_text().await, "40/private,");

    let mut on_b = v3_ws(&b, "EIO=3&transport=websocket").await;
    on_b.recv_text().await;
    assert_eq!(on_b.recv_text().await, "40");
    on_b.send("40/private?token=secret,").await;
    assert_eq!(on_b.recv_text().await, "40/private,");
    // Until A's subscriptions (its namespaces' subjects) are at the broker.
    assert!(a.handle.synced(WAIT).await);
    on_b.send(&format!("42[\"publish\",\"{sid}\",\"to /\"]"))
        .await;
    assert_eq!(on_a.recv_text().await, "42[\"msg\",\"to /\"]");
    on_b.send(&format!(
        "42/private,[\"publish\",\"/private#{sid}\",\"to /private\"]"
    ))
    .await;
    assert_eq!(
        on_a.recv_text().await,
        "42/private,[\"msg\",\"to /private\"]"
    );
}
