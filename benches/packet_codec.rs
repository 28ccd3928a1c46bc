//! Codec hot paths: every message a client sends or receives goes through one
//! Engine.IO and one Socket.IO encode or decode.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use riptide::engineio::packet as eio;
use riptide::socketio::packet as sio;
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
    let mut buf = String::with_capacity(4096);

    g.bench_function("encode_text_message", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&msg).encode_text(&mut buf);
            black_box(buf.len())
        })
    });
    g.bench_function("encode_text_binary_1k_base64", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&bin).encode_text(&mut buf);
            black_box(buf.len())
        })
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

    for n in [4usize, 32] {
        let packets: Vec<_> = (0..n)
            .map(|i| {
                if i % 4 == 3 {
                    eio::Packet::Binary(Bytes::from(vec![1u8; 64]))
                } else {
                    eio::Packet::Message(format!(r#"2["chat","message number {i}"]"#))
                }
            })
            .collect();
        let body = eio::encode_payload(&packets);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::new("encode_payload", n), &packets, |b, p| {
            b.iter(|| {
                buf.clear();
                eio::encode_payload_into(black_box(p), &mut buf);
                black_box(buf.len())
            })
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
    let mut buf = String::with_capacity(4096);
    for (name, packet) in &cases {
        let (text, atts) = packet.encode();
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_with_input(BenchmarkId::new("encode", name), packet, |b, p| {
            b.iter(|| black_box(p).encode())
        });
        g.bench_with_input(BenchmarkId::new("encode_into", name), packet, |b, p| {
            b.iter(|| {
                buf.clear();
                black_box(p).encode_into(&mut buf);
                black_box(buf.len())
            })
        });
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
    g.finish();
}

criterion_group!(benches, engineio, socketio);
criterion_main!(benches);
