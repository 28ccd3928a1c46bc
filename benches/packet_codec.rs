//! Codec and write hot paths, as production runs them: every message a
//! client sends goes through one Engine.IO and one Socket.IO decode; every
//! emit is encoded once (`socketio::encode::encode_event`, frames that carry
//! their WebSocket header) and then, per receiver, queued on its WebSocket
//! sink and drained by the response body (`websocket`), or joined into a
//! long-polling answer (`encode_poll_body`).

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use riptide::engineio::packet as eio;
use riptide::engineio::session::{encode_poll_body, PollBody, PollFraming};
use riptide::engineio::websocket::{detached, detached_conn, WsLimits};
use riptide::engineio::Frame;
use riptide::socketio::encode::encode_event;
use riptide::socketio::packet as sio;
use riptide::socketio::parser::Parser;
use riptide::socketio::payload::Payload;
use serde_json::json;

fn small_event() -> sio::Packet {
    sio::Packet::event("/", "chat", vec![json!("hello"), json!(1)])
}

/// About 1 KiB of JSON: a typical "state update" message.
fn kib_event() -> sio::Packet {
    let items: Vec<_> = (0..16)
        .map(|i| json!({"id": i, "name": format!("item-{i}"), "price": 12.5, "tags": ["a", "b"]}))
        .collect();
    sio::Packet::event("/game", "update", vec![json!({ "items": items })]).with_ack_id(42)
}

fn binary_event() -> sio::Packet {
    sio::Packet::binary_event(
        "/upload",
        "file",
        vec![json!({"name": "a.bin"}), sio::placeholder(0)],
        vec![Bytes::from(vec![0xAB; 4096])],
    )
}

fn engineio(c: &mut Criterion) {
    let mut g = c.benchmark_group("engineio");
    let msg = eio::Packet::Message(r#"2["chat","hello",1]"#.to_owned());
    let bin = eio::Packet::Binary(Bytes::from(vec![7u8; 1024]));

    // The text frame of an emit: `4` + the packet, behind its WebSocket
    // header, in one buffer shared by every receiver.
    g.bench_function("frame_message", |b| {
        b.iter(|| Frame::message(black_box(r#"2["chat","hello",1]"#)))
    });

    let msg_text = msg.to_text();
    let bin_text = bin.to_text();
    g.bench_function("decode_text_message", |b| {
        b.iter(|| eio::Packet::decode_text(black_box(&msg_text)))
    });
    g.bench_function("decode_text_binary_1k_base64", |b| {
        b.iter(|| eio::Packet::decode_text(black_box(&bin_text)))
    });
    let raw = Bytes::from(vec![7u8; 1024]);
    g.bench_function("decode_ws_binary", |b| {
        b.iter(|| eio::Packet::decode_ws_binary(black_box(raw.clone())))
    });

    // A long-polling GET answer: the frames queued for the session, joined
    // (engineio::session::encode_poll_body, what every GET is answered
    // with), and the POST body a polling client sends, decoded.
    for n in [4usize, 32] {
        let frames: Vec<Frame> = (0..n)
            .map(|i| {
                if i % 4 == 3 {
                    Frame::binary(&[1u8; 64])
                } else {
                    Frame::message(&format!(r#"2["chat","message number {i}"]"#))
                }
            })
            .collect();
        let PollBody::Text(body) = encode_poll_body(&mut frames.clone(), PollFraming::V4) else {
            unreachable!("v4 bodies are text");
        };
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::new("encode_poll_body", n), &frames, |b, f| {
            b.iter_batched(
                || f.clone(),
                |mut f| encode_poll_body(black_box(&mut f), PollFraming::V4),
                BatchSize::SmallInput,
            )
        });
        g.bench_with_input(BenchmarkId::new("decode_payload", n), &body, |b, body| {
            b.iter(|| eio::decode_payload(black_box(body), 64))
        });
    }
    g.finish();
}

fn socketio(c: &mut Criterion) {
    let mut g = c.benchmark_group("socketio");
    let cases = [
        ("small_event", small_event()),
        ("1k_event", kib_event()),
        ("binary_event", binary_event()),
    ];
    for (name, packet) in &cases {
        let (text, atts) = packet.encode();
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_with_input(BenchmarkId::new("decode", name), &text, |b, text| {
            let mut d = sio::Decoder::new(10);
            b.iter(|| {
                let mut out = d.decode_text(black_box(text)).unwrap();
                for a in &atts {
                    out = d.decode_binary(a.clone()).unwrap();
                }
                out
            })
        });
    }
    // What an emit costs once, whatever the number of receivers: the event
    // and its arguments as frames (`BroadcastOperator::emit`, `Socket::emit`).
    let emits = [
        (
            "small_event",
            "/",
            "chat",
            Payload::new(vec![json!("hello"), json!(1)]),
        ),
        ("1k_event", "/game", "update", {
            let items: Vec<_> = (0..16)
                .map(|i| json!({"id": i, "name": format!("item-{i}"), "price": 12.5, "tags": ["a", "b"]}))
                .collect();
            Payload::new(vec![json!({ "items": items })])
        }),
        (
            "binary_event",
            "/upload",
            "file",
            Payload {
                args: vec![json!({"name": "a.bin"})],
                binary: vec![Bytes::from(vec![0xAB; 4096])],
            },
        ),
    ];
    for (name, ns, event, payload) in &emits {
        g.bench_with_input(BenchmarkId::new("encode_event", name), payload, |b, p| {
            b.iter(|| encode_event(Parser::Json, ns, event, black_box(p), None).unwrap())
        });
        // The same emit for a server on the msgpack parser.
        g.bench_with_input(
            BenchmarkId::new("encode_event_msgpack", name),
            payload,
            |b, p| b.iter(|| encode_event(Parser::Msgpack, ns, event, black_box(p), None).unwrap()),
        );
    }
    g.finish();
}

/// Per receiver of a broadcast on WebSocket: the shared frame queued on the
/// receiver's sink (a reference count, no copy), then written by the raw
/// connection's writer (production) or handed over by the response body as
/// actix-web takes it (an engine on a plain actix-web server). One frame,
/// and a burst of 64.
fn websocket(c: &mut Criterion) {
    let mut g = c.benchmark_group("websocket");
    let limits = WsLimits {
        max_payload: 1 << 20,
        max_frames: 1024,
        max_bytes: 1 << 24,
        deflate_threshold: None,
    };
    let frame =
        Frame::message(r#"2["msg",{"t":0,"seq":0,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}]"#);
    for burst in [1usize, 64] {
        // Production's path: the raw connection's writer (its small frames
        // gathered into one write).
        let (sink, mut writer) = detached_conn(limits);
        g.throughput(Throughput::Elements(burst as u64));
        g.bench_function(BenchmarkId::new("send_and_write", burst), |b| {
            b.iter(|| {
                for _ in 0..burst {
                    sink.send(black_box(&frame), false);
                }
                black_box(writer.write_queued());
            })
        });
        // An engine mounted on a plain actix-web server: the response body.
        let (sink, mut body) = detached(limits);
        g.throughput(Throughput::Elements(burst as u64));
        g.bench_function(BenchmarkId::new("send_and_drain", burst), |b| {
            b.iter(|| {
                for _ in 0..burst {
                    sink.send(black_box(&frame), false);
                }
                while let Some(chunk) = body.next_chunk() {
                    black_box(chunk);
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, engineio, socketio, websocket);
criterion_main!(benches);
