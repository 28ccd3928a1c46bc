//! Cluster envelope codec (`riptide::adapter::codec`): every message that
//! crosses nodes is encoded once by its sender and decoded once by every
//! receiving node; a receiver reads the header alone to drop its own and
//! duplicate messages.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use riptide::adapter::codec::{self, Body, Broadcast, ClusterEnvelope, WireFrame, VERSION};
use riptide::adapter::NodeId;

/// A room broadcast like the fixture's `publish`: one text frame carrying
/// `42["msg",{"t":…,"seq":…,"pad":"…"}]` with `pad` of `pad` bytes.
fn broadcast(pad: usize) -> ClusterEnvelope {
    let text = format!(
        r#"42["msg",{{"t":1234567890123,"seq":42,"pad":"{}"}}]"#,
        "x".repeat(pad)
    );
    ClusterEnvelope {
        version: VERSION,
        origin: NodeId::random(),
        seq: 7,
        body: Body::Broadcast(Broadcast {
            ns: "/".into(),
            rooms: vec!["bench".into()],
            frames: vec![WireFrame::Text(text)],
            ..Broadcast::default()
        }),
    }
}

fn envelope(c: &mut Criterion) {
    let mut g = c.benchmark_group("envelope");
    for pad in [64usize, 1024, 16 * 1024] {
        let env = broadcast(pad);
        let bytes = codec::encode(&env);
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_with_input(BenchmarkId::new("encode", pad), &env, |b, env| {
            b.iter(|| codec::encode(black_box(env)))
        });
        g.bench_with_input(BenchmarkId::new("decode", pad), &bytes, |b, bytes| {
            b.iter(|| codec::decode(black_box(bytes)).expect("valid envelope"))
        });
    }
    let bytes = codec::encode(&broadcast(1024));
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode_header", |b| {
        b.iter(|| codec::decode_header(black_box(&bytes)).expect("valid header"))
    });
    g.finish();
}

criterion_group!(benches, envelope);
criterion_main!(benches);
