//! `socketio.parser = "msgpack"`: a server speaking socket.io-msgpack-parser's
//! wire format to raw clients, over WebSocket and long-polling.
//!
//! - connect with auth, events and acks both ways, binary values inline
//!   (no attachment messages), handlers seeing the same payloads as with
//!   the JSON parser;
//! - malformed MessagePack, a packet the format does not have, a text
//!   message (a client left on the default parser): a close with "parse
//!   error", counted in `riptide_bad_input_total`, other clients unharmed;
//! - servers with different parsers in one process;
//! - a cluster (NATS) of msgpack and JSON nodes: each node's clients get a
//!   broadcast in their own node's format.

mod common;

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use common::brokers::{Broker, NatsServer};
use common::*;
use riptide::fixture::FixtureHandler;
use riptide::settings::Parser;
use riptide::socketio::msgpack;
use riptide::socketio::packet::{placeholder, Packet, PacketData};
use riptide::{Namespace, Riptide, Settings};
use serde_json::{json, Value};

fn msgpack_settings() -> Settings {
    let mut s = test_settings();
    s.socketio.parser = Parser::Msgpack;
    s
}

fn start() -> (TestServer, Recorder) {
    let (tx, rec) = recorder();
    let server = TestServer::start(msgpack_settings(), move |r: Riptide| {
        r.namespace("/", TestApp::namespace(&tx))
            .namespace("/admin", TestApp::namespace(&tx))
    });
    (server, rec)
}

/// A raw client speaking the msgpack parser over a [`WsClient`].
struct MpClient {
    ws: WsClient,
}

impl MpClient {
    async fn open(server: &TestServer) -> MpClient {
        MpClient {
            ws: WsClient::open(server).await,
        }
    }

    async fn send(&mut self, p: &Packet) {
        self.ws.send_binary(msgpack::encode(p)).await;
    }

    async fn recv(&mut self) -> Packet {
        match self.ws.recv().await {
            Frame::Binary(b) => {
                msgpack::decode(&b.into(), 16).expect("the server's packet decodes")
            }
            other => panic!("expected one binary message, got {other:?}"),
        }
    }

    /// CONNECT to `ns`; the socket id from the reply.
    async fn connect(&mut self, ns: &str, auth: Option<Value>) -> String {
        self.send(&Packet::connect(ns, auth)).await;
        let reply = self.recv().await;
        assert_eq!(reply.ns, ns);
        match reply.data {
            PacketData::Connect(Some(body)) => body["sid"].as_str().unwrap().to_owned(),
            other => panic!("CONNECT reply, got {other:?}"),
        }
    }

    async fn assert_alive(&mut self, id: u64) {
        self.send(&Packet::event("/", "echo", vec![json!("alive")]).with_ack_id(id))
            .await;
        assert_eq!(
            self.recv().await,
            Packet::ack("/", id, vec![json!("alive")])
        );
    }
}

#[tokio::test]
async fn events_acks_and_binary_both_ways() {
    let (server, mut rec) = start();
    let mut c = MpClient::open(&server).await;
    let sid = c.connect("/", Some(json!({"token": "t"}))).await;
    match rec.next().await {
        Seen::Connect { sid: s, auth, .. } => {
            assert_eq!(s, sid);
            assert_eq!(auth, json!({"token": "t"}));
        }
        other => panic!("{other:?}"),
    }

    // An event with an ack and a binary value: the handler sees a
    // placeholder and the attachment, as with the JSON parser, and the ack
    // comes back with the bytes inline.
    let bytes = Bytes::from_static(&[0, 1, 255]);
    let echo = Packet::binary_event(
        "/",
        "echo",
        vec![json!("x"), json!({"file": placeholder(0)})],
        vec![bytes.clone()],
    )
    .with_ack_id(1);
    c.send(&echo).await;
    match rec.next().await {
        Seen::Event {
            name,
            args,
            binary,
            ack,
            ..
        } => {
            assert_eq!(name, "echo");
            assert_eq!(args, vec![json!("x"), json!({"file": placeholder(0)})]);
            assert_eq!(binary, vec![bytes.to_vec()]);
            assert!(ack);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        c.recv().await,
        Packet::binary_ack(
            "/",
            1,
            vec![json!("x"), json!({"file": placeholder(0)})],
            vec![bytes]
        )
    );

    // The server emits binary: one message, no attachment messages after it.
    c.send(&Packet::event("/", "binary", vec![json!(2)])).await;
    let bin = c.recv().await;
    assert_eq!(
        bin,
        Packet::binary_event(
            "/",
            "bin",
            vec![placeholder(0), placeholder(1)],
            vec![Bytes::from_static(&[0, 1]), Bytes::from_static(&[1, 2])]
        )
    );
    c.ws.expect_silence(Duration::from_millis(200)).await;

    // Server -> client ack, answered with binary.
    c.send(&Packet::event("/", "ask", vec![json!(2000), json!("q?")]))
        .await;
    let question = c.recv().await;
    assert_eq!(question.event_name(), Some("question"));
    let id = question.ack_id().expect("asks for an ack");
    c.send(&Packet::binary_ack(
        "/",
        id,
        vec![json!("a"), placeholder(0)],
        vec![Bytes::from_static(b"z")],
    ))
    .await;
    assert_eq!(
        c.recv().await,
        Packet::event(
            "/",
            "answer",
            vec![json!({"ok": ["a", placeholder(0)], "binary": 1})]
        )
    );

    // Another namespace, and a refused one.
    c.connect("/admin", None).await;
    c.send(&Packet::connect("/nope", None)).await;
    assert_eq!(
        c.recv().await,
        Packet::connect_error("/nope", "Invalid namespace", None)
    );
    // A server-side disconnect is a DISCONNECT packet.
    c.send(&Packet::event("/admin", "disconnect-me", vec![]))
        .await;
    assert_eq!(c.recv().await, Packet::disconnect("/admin"));
    c.assert_alive(9).await;
}

#[tokio::test]
async fn long_polling_carries_the_packets_as_base64_binary() {
    let (server, _rec) = start();
    let p = PollingClient::open(&server).await;
    let b64 = |bytes: &[u8]| {
        format!(
            "b{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    };
    let (status, _) = p
        .post(b64(&msgpack::encode(&Packet::connect("/", None))))
        .await;
    assert_eq!(status, 200);
    let record = p.get_until(|body| body.starts_with('b')).await;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&record[1..])
        .expect("base64");
    match msgpack::decode(&bytes.into(), 16).unwrap().data {
        PacketData::Connect(Some(body)) => assert!(body["sid"].is_string()),
        other => panic!("CONNECT reply, got {other:?}"),
    }
    let echo = Packet::event("/", "echo", vec![json!("hi")]).with_ack_id(3);
    let (status, _) = p.post(b64(&msgpack::encode(&echo))).await;
    assert_eq!(status, 200);
    let record = p.get_until(|body| body.starts_with('b')).await;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&record[1..])
        .unwrap();
    assert_eq!(
        msgpack::decode(&bytes.into(), 16).unwrap(),
        Packet::ack("/", 3, vec![json!("hi")])
    );
}

/// What a bad input is: the messages to send after connecting to `/`, and
/// the `bad_input` kind it is counted as.
enum Send {
    Text(&'static str),
    Binary(Vec<u8>),
}

/// A packet map from raw MessagePack parts.
fn raw_packet(fields: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = vec![0x80 | fields.len() as u8];
    for (k, v) in fields {
        out.push(0xa0 | k.len() as u8);
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(v);
    }
    out
}

fn cases() -> Vec<(&'static str, Vec<Send>, &'static str)> {
    use Send::*;
    let root: &[u8] = b"\xa1/";
    let event_x: &[u8] = b"\x91\xa1x";
    vec![
        (
            "a text message (a client on the JSON parser)",
            vec![Text(r#"42["x"]"#)],
            "socket_decode",
        ),
        ("not MessagePack", vec![Binary(vec![0xc1])], "socket_decode"),
        (
            "not a map",
            vec![Binary(vec![0x92, 0x02, 0xa1, b'/'])],
            "socket_decode",
        ),
        (
            "truncated",
            vec![Binary({
                let mut b = raw_packet(&[("type", b"\x02"), ("nsp", root), ("data", event_x)]);
                b.pop();
                b
            })],
            "socket_decode",
        ),
        (
            "a BINARY_EVENT type, which this format does not have",
            vec![Binary(raw_packet(&[
                ("type", b"\x05"),
                ("nsp", root),
                ("data", event_x),
            ]))],
            "socket_decode",
        ),
        (
            "a namespace without its slash",
            vec![Binary(raw_packet(&[
                ("type", b"\x02"),
                ("nsp", b"\xa5admin"),
                ("data", event_x),
            ]))],
            "socket_decode",
        ),
        (
            "an event name that is not a string",
            vec![Binary(raw_packet(&[
                ("type", b"\x02"),
                ("nsp", root),
                ("data", b"\x91\x01"),
            ]))],
            "socket_decode",
        ),
        (
            "a negative ack id",
            vec![Binary(raw_packet(&[
                ("type", b"\x02"),
                ("nsp", root),
                ("data", event_x),
                ("id", b"\xff"),
            ]))],
            "socket_decode",
        ),
        (
            "CONNECT with an array auth",
            vec![Binary(raw_packet(&[
                ("type", b"\x00"),
                ("nsp", b"\xa6/admin"),
                ("data", b"\x91\x01"),
            ]))],
            "socket_decode",
        ),
        (
            "more binary values than max_attachments",
            vec![Binary({
                let mut data = vec![0x9c, 0x00, 0x0c, 0xa1, b'x'];
                for _ in 0..11 {
                    data.extend_from_slice(&[0xc4, 0x01, 0x07]);
                }
                let data: &'static [u8] = Box::leak(data.into_boxed_slice());
                raw_packet(&[("type", b"\x02"), ("nsp", root), ("data", data)])
            })],
            "socket_decode",
        ),
        (
            "an unknown extension type",
            vec![Binary(raw_packet(&[
                ("type", b"\x02"),
                ("nsp", root),
                ("data", b"\x92\xa1x\xd4\x09\x00"),
            ]))],
            "socket_decode",
        ),
        (
            "nested beyond 128",
            vec![Binary({
                let mut data = vec![0x92, 0xa1, b'x'];
                data.extend(std::iter::repeat_n(0x91, 200));
                data.push(0xc0);
                let data: &'static [u8] = Box::leak(data.into_boxed_slice());
                raw_packet(&[("type", b"\x02"), ("nsp", root), ("data", data)])
            })],
            "socket_decode",
        ),
        (
            "a reserved event name",
            vec![Binary(msgpack::encode(&Packet::event(
                "/",
                "disconnect",
                vec![],
            )))],
            "reserved_event",
        ),
        (
            "an event for a namespace never connected",
            vec![Binary(msgpack::encode(&Packet::event(
                "/admin",
                "x",
                vec![],
            )))],
            "unconnected_namespace",
        ),
        (
            "a duplicate CONNECT",
            vec![Binary(msgpack::encode(&Packet::connect("/", None)))],
            "duplicate_connect",
        ),
    ]
}

#[tokio::test]
async fn each_malformed_packet_closes_the_connection_and_is_counted() {
    let (server, mut rec) = start();
    let mut healthy = MpClient::open(&server).await;
    let healthy_sid = healthy.connect("/", None).await;
    let mut counts: std::collections::HashMap<&str, f64> = Default::default();
    for (i, (what, frames, kind)) in cases().into_iter().enumerate() {
        let mut c = MpClient::open(&server).await;
        let sid = c.connect("/", None).await;
        for f in frames {
            match f {
                Send::Text(t) => c.ws.send(t).await,
                Send::Binary(b) => c.ws.send_binary(b).await,
            }
        }
        // Closed, with no Socket.IO reply: only the Engine.IO close packet.
        match c.ws.recv_within(WAIT).await {
            Some(Frame::Text(t)) if t == "1" => {}
            other => panic!("{what}: expected the close packet, got {other:?}"),
        }
        assert!(
            matches!(c.ws.recv_within(WAIT).await, Some(Frame::Closed(..))),
            "{what}: closed"
        );
        *counts.entry(kind).or_default() += 1.0;
        let series = format!("riptide_bad_input_total{{kind=\"{kind}\"}}");
        assert_eq!(
            server.wait_metric(&series, counts[kind]).await,
            counts[kind],
            "{what}: {series}"
        );
        rec.expect_parse_error_disconnect(&sid, &healthy_sid, what)
            .await;
        healthy.assert_alive(i as u64).await;
    }
    // A JSON client's very first packet is refused the same way.
    let mut json_client = WsClient::open(&server).await;
    json_client.send("40").await;
    assert_eq!(json_client.recv().await, Frame::Text("1".into()));
    server
        .assert_metric(
            "riptide_bad_input_total{kind=\"socket_decode\"}",
            counts["socket_decode"] + 1.0,
        )
        .await;
}

#[tokio::test]
async fn servers_with_different_parsers_share_a_process() {
    let (tx, _rec) = recorder();
    let tx2 = tx.clone();
    let mp = TestServer::start(msgpack_settings(), move |r: Riptide| {
        r.namespace("/", TestApp::namespace(&tx))
    });
    let js = TestServer::start(test_settings(), move |r: Riptide| {
        r.namespace("/", TestApp::namespace(&tx2))
    });
    let mut a = MpClient::open(&mp).await;
    a.connect("/", None).await;
    let (mut b, _) = WsClient::connect(&js, "/", None).await;
    a.assert_alive(1).await;
    b.assert_alive("/", 1).await;
}

// ---- a cluster of msgpack and JSON nodes ------------------------------------

fn cluster_node(broker: &NatsServer, parser: Parser) -> TestServer {
    let mut s = test_settings();
    s.adapter = broker.adapter_settings("mp");
    s.socketio.parser = parser;
    TestServer::start(s, |r| r.namespace("/", Namespace::new(|| FixtureHandler)))
}

async fn wait_subscribers(broker: &NatsServer, room: &str, n: usize) {
    let subject =
        riptide::adapter::subject::subject("mp", &riptide::adapter::Topic::room("/", room));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while broker.subscriptions_on(&subject) != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} subscribers on {room}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_node_of_a_cluster_encodes_with_its_own_parser() {
    let broker = NatsServer::start();
    let a = cluster_node(&broker, Parser::Msgpack);
    let b = cluster_node(&broker, Parser::Msgpack);
    let c = cluster_node(&broker, Parser::Json);

    let mut a_member = MpClient::open(&a).await;
    a_member.connect("/", None).await;
    let mut b_member = MpClient::open(&b).await;
    b_member.connect("/", None).await;
    for m in [&mut a_member, &mut b_member] {
        m.send(&Packet::event("/", "join", vec![json!("r")]).with_ack_id(1))
            .await;
        assert_eq!(m.recv().await, Packet::ack("/", 1, vec![]));
    }
    let (mut c_member, _) = WsClient::connect(&c, "/", None).await;
    c_member.emit("/", json!(["join", "r"]), Some(1)).await;
    c_member.expect_text("431[]").await;
    wait_subscribers(&broker, "r", 3).await;

    // From a msgpack node: its own member and the other msgpack node's get
    // MessagePack, the JSON node's member JSON.
    a_member
        .send(&Packet::event(
            "/",
            "publish",
            vec![json!("r"), json!({"n": 1})],
        ))
        .await;
    let expected = Packet::event("/", "msg", vec![json!({"n": 1})]);
    assert_eq!(a_member.recv().await, expected);
    assert_eq!(b_member.recv().await, expected);
    c_member.expect_text(r#"42["msg",{"n":1}]"#).await;

    // From the JSON node, with binary: the msgpack members get it inline.
    let mut payload = riptide::Payload::default();
    let ph = payload.attach(vec![1u8, 2, 3]);
    payload.args.push(ph);
    c.handle.of("/").to("r").emit("bin", payload).expect("emit");
    let expected = Packet::binary_event(
        "/",
        "bin",
        vec![placeholder(0)],
        vec![Bytes::from_static(&[1, 2, 3])],
    );
    assert_eq!(a_member.recv().await, expected);
    assert_eq!(b_member.recv().await, expected);
    c_member
        .expect_text(r#"451-["bin",{"_placeholder":true,"num":0}]"#)
        .await;
    assert_eq!(c_member.recv().await, Frame::Binary(vec![1, 2, 3]));

    for m in [&mut a_member, &mut b_member] {
        m.ws.expect_silence(Duration::from_millis(300)).await;
    }
    c_member.expect_silence(Duration::from_millis(300)).await;
}
