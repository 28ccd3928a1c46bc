//! Connection state recovery across the cluster: the recovery cases of the
//! adapter parity suite, each body run over NATS (JetStream) and over Redis
//! (Streams) with its own broker process and two in-process nodes, driven
//! by raw WebSocket clients at the wire.
//!
//! - a client that was on node A is recovered by node B: same id, same
//!   rooms, every stored event it missed (emitted on either node) written
//!   before the CONNECT reply, in order, once; live traffic then arrives
//!   once;
//! - the offsets are one order for the namespace whichever node emitted:
//!   a client that saw events from both nodes resumes exactly after the last;
//! - a client that had received nothing yet is recovered without an offset
//!   (socket.io #4888);
//! - when the stream dropped part of what it missed (`stream_max_len`), it is
//!   not recovered, never handed a partial replay;
//! - a half-open connection on node A that finally closes after its client
//!   was recovered on node B does not overwrite B's state (socket.io #4880):
//!   the next recovery gets the rooms joined on B;
//! - a recovery while the namespace's traffic flows gets every message once
//!   and in order (its reads race the appends and the node's own tail);
//! - a pid that is unknown, or not one this server issues, is refused;
//! - with the broker killed, stored emits wait on their node and reach every
//!   node once it is back, once each and in order; a CONNECT meanwhile is
//!   answered (not recovered); killed mid-traffic, nothing is delivered
//!   twice (and through NATS, nothing is lost).
//!
//! A node killed with SIGKILL is in the interop suite
//! (`tests/interop/test/cluster_recovery.test.mjs`), with real processes.

mod common;

use std::time::Duration;

use common::brokers::{Broker, NatsServer, RedisServer};
use common::recovery::{connect, drop_client, event, join, member, start};
use common::*;
use riptide::Settings;
use serde_json::{json, Value};

const QUIET: Duration = Duration::from_millis(300);

fn settings<B: Broker>(broker: &B) -> Settings {
    let mut s = test_settings();
    s.adapter = broker.adapter_settings("rec");
    s.recovery.enabled = true;
    s
}

fn two_nodes<B: Broker>(broker: &B) -> (TestServer, TestServer) {
    (start(settings(broker)).0, start(settings(broker)).0)
}

/// `c` publishes `msg` `from..from+n` to `room` and, being in the room
/// itself, reads them back: once it has, they are in the stream.
async fn publish_and_see(c: &mut WsClient, room: &str, from: u64, n: u64) -> Vec<Value> {
    for i in from..from + n {
        c.emit("/", json!(["publish", room, i]), None).await;
    }
    let mut offsets = Vec::new();
    for i in from..from + n {
        let args = event(c).await;
        assert_eq!(
            &args[..2],
            &[json!("msg"), json!(i)],
            "the publisher's own copy"
        );
        offsets.push(args[2].clone());
    }
    offsets
}

/// Drop `c`'s connection to `node` and wait until the node's write of its
/// session record came to `result` (`written`, or `taken_over` when another
/// node recovered it first). A client that reconnects elsewhere before
/// that write lands is recovered from the record as it last stood (rooms
/// joined within `FLUSH` of the drop missing), as after a node crash.
async fn park(node: &TestServer, c: WsClient, result: &str) {
    let series =
        format!("riptide_recovery_session_writes_total{{kind=\"park\",result=\"{result}\"}}");
    let before = node.metric(&series).await;
    drop_client(node, c).await;
    let now = node.wait_metric(&series, before + 1.0).await;
    assert_eq!(now, before + 1.0, "{series}");
}

/// CONNECT with `auth` on a new client of `server`: the events written
/// before the CONNECT reply, and the reply.
async fn reconnect(server: &TestServer, auth: Value) -> (WsClient, Vec<Vec<Value>>, Value) {
    let mut c = WsClient::open(server).await;
    c.send(&format!("40{auth}")).await;
    let mut before = Vec::new();
    loop {
        let text = c.recv_text().await;
        if let Some(body) = text.strip_prefix("40") {
            return (c, before, serde_json::from_str(body).unwrap());
        }
        assert!(
            text.starts_with("42["),
            "an event or the reply, got {text:?}"
        );
        before.push(serde_json::from_str(&text[2..]).unwrap());
    }
}

async fn recovered_by_another_node<B: Broker>() {
    let broker = B::start();
    let (a_node, b_node) = two_nodes(&broker);
    let (mut a, body) = connect(&a_node, None).await;
    let (sid, pid) = (body["sid"].clone(), body["pid"].clone());
    assert!(pid.is_string(), "pid in {body}");
    // A direct emit is stored too, and comes back through the stream.
    a.emit("/", json!(["echo", "hi"]), None).await;
    let echo = event(&mut a).await;
    assert_eq!(&echo[..2], &[json!("echo"), json!("hi")]);
    assert!(echo[2].is_string(), "an offset: {echo:?}");
    join(&mut a, "r", 1).await;
    let (mut b, _) = member(&b_node, "r").await;
    publish_and_see(&mut b, "r", 0, 1).await;
    let seen = event(&mut a).await;
    assert_eq!(&seen[..2], &[json!("msg"), json!(0)]);
    let offset = seen[2].clone();
    park(&a_node, a, "written").await;
    publish_and_see(&mut b, "r", 1, 3).await;

    let (mut a2, missed, body2) = reconnect(&b_node, json!({"pid": pid, "offset": offset})).await;
    let got: Vec<Value> = missed.iter().map(|m| m[1].clone()).collect();
    assert_eq!(
        got,
        vec![json!(1), json!(2), json!(3)],
        "missed, in order, once"
    );
    assert_eq!(body2["sid"], sid, "same id on the other node");
    assert_eq!(body2["pid"], pid);
    b_node
        .assert_metric("riptide_recoveries_total{reason=\"recovered\"}", 1.0)
        .await;
    // Still in its room, on its new node; live traffic once.
    publish_and_see(&mut b, "r", 4, 1).await;
    assert_eq!(&event(&mut a2).await[..2], &[json!("msg"), json!(4)]);
    a2.expect_silence(QUIET).await;
}

async fn offsets_are_one_order_across_emitting_nodes<B: Broker>() {
    let broker = B::start();
    let (a_node, b_node) = two_nodes(&broker);
    let (mut a, body) = member(&a_node, "r").await;
    let pid = body["pid"].clone();
    let (mut pa, _) = member(&a_node, "r").await;
    let (mut pb, _) = member(&b_node, "r").await;
    // Publishers on both nodes, interleaved.
    for i in 0..10u64 {
        let p = if i % 2 == 0 { &mut pa } else { &mut pb };
        p.emit("/", json!(["publish", "r", i]), None).await;
    }
    let mut seen = Vec::new();
    for _ in 0..10 {
        seen.push(event(&mut a).await);
    }
    // The publishers see the same order: the stream's.
    for p in [&mut pa, &mut pb] {
        for s in &seen {
            assert_eq!(&event(p).await[..2], &s[..2], "every node, one order");
        }
    }
    // Resume after the fifth: exactly the last five come back.
    park(&a_node, a, "written").await;
    let (_a2, missed, body2) =
        reconnect(&b_node, json!({"pid": pid, "offset": seen[4][2].clone()})).await;
    assert_eq!(body2["sid"], body["sid"], "recovered");
    let want: Vec<Value> = seen[5..].iter().map(|s| s[1].clone()).collect();
    let got: Vec<Value> = missed.iter().map(|m| m[1].clone()).collect();
    assert_eq!(got, want);
}

async fn recovered_without_an_offset<B: Broker>() {
    let broker = B::start();
    let (a_node, b_node) = two_nodes(&broker);
    let (a, body) = member(&a_node, "r").await;
    let pid = body["pid"].clone();
    park(&a_node, a, "written").await;
    let (mut b, _) = member(&b_node, "r").await;
    publish_and_see(&mut b, "r", 0, 2).await;
    let (_a2, missed, body2) = reconnect(&b_node, json!({ "pid": pid })).await;
    assert_eq!(body2["sid"], body["sid"]);
    let got: Vec<Value> = missed.iter().map(|m| m[1].clone()).collect();
    assert_eq!(got, vec![json!(0), json!(1)]);
}

async fn not_recovered_past_the_stream_bound<B: Broker>() {
    let broker = B::start();
    let mut s = settings(&broker);
    s.recovery.stream_max_len = 3;
    let (a_node, _) = start(s.clone());
    let (b_node, _) = start(s);
    let (mut a, body) = member(&a_node, "r").await;
    let pid = body["pid"].clone();
    let (mut b, _) = member(&b_node, "r").await;
    publish_and_see(&mut b, "r", 0, 1).await;
    let offset = event(&mut a).await[2].clone();
    park(&a_node, a, "written").await;
    // Six missed, three kept: a partial replay would be a lie. (One at a
    // time: a node's tail must keep up within the bound to deliver live.)
    for i in 1..7 {
        publish_and_see(&mut b, "r", i, 1).await;
    }
    let (_a2, missed, body2) = reconnect(&b_node, json!({"pid": pid, "offset": offset})).await;
    assert!(missed.is_empty(), "no partial replay: {missed:?}");
    assert_ne!(body2["sid"], body["sid"], "a new socket");
    b_node
        .assert_metric("riptide_recoveries_total{reason=\"truncated\"}", 1.0)
        .await;
}

async fn a_half_open_connection_elsewhere_overwrites_nothing<B: Broker>() {
    let broker = B::start();
    let (a_node, b_node) = two_nodes(&broker);
    let (a, body) = member(&a_node, "r").await;
    let (sid, pid) = (body["sid"].clone(), body["pid"].clone());
    // `a` stays open: node A thinks it is alive. The client comes back on B
    // (once A wrote its record: within `FLUSH` of a change).
    tokio::time::sleep(QUIET).await;
    let (mut a2, _, body2) = reconnect(&b_node, json!({ "pid": pid })).await;
    assert_eq!(body2["sid"], sid, "recovered on B while A still holds it");
    join(&mut a2, "s", 1).await;
    let (mut b, _) = member(&b_node, "s").await;
    let offset = publish_and_see(&mut b, "s", 0, 1).await.remove(0);
    assert_eq!(&event(&mut a2).await[..2], &[json!("msg"), json!(0)]);
    // Now A's old connection ends, and then B's.
    park(&a_node, a, "taken_over").await;
    park(&b_node, a2, "written").await;
    publish_and_see(&mut b, "s", 1, 1).await;
    // Recovered again, on A: with the room joined on B, from B's record.
    let (_a3, missed, body3) = reconnect(&a_node, json!({"pid": pid, "offset": offset})).await;
    assert_eq!(body3["sid"], sid);
    let got: Vec<Value> = missed.iter().map(|m| m[1].clone()).collect();
    assert_eq!(got, vec![json!(1)], "what was sent to room s meanwhile");
}

async fn recovered_while_traffic_flows<B: Broker>() {
    // The recovery's reads race the stream's appends and the node's own
    // delivery of them: every message once, in order, whatever the timing.
    let broker = B::start();
    let (a_node, b_node) = two_nodes(&broker);
    let (mut a, body) = member(&a_node, "r").await;
    let pid = body["pid"].clone();
    let (mut b, _) = member(&b_node, "r").await;
    publish_and_see(&mut b, "r", 0, 1).await;
    let offset = event(&mut a).await[2].clone();
    park(&a_node, a, "written").await;
    const N: u64 = 400;
    let publishing = tokio::spawn(async move {
        for i in 1..=N {
            b.emit("/", json!(["publish", "r", i]), None).await;
            if i % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        b
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (mut a2, missed, body2) = reconnect(&b_node, json!({"pid": pid, "offset": offset})).await;
    assert_eq!(body2["sid"], body["sid"]);
    let mut got: Vec<u64> = missed.iter().map(|m| m[1].as_u64().unwrap()).collect();
    let _b = publishing.await.unwrap();
    while got.last() != Some(&N) {
        got.push(event(&mut a2).await[1].as_u64().unwrap());
    }
    assert_eq!(got, (1..=N).collect::<Vec<_>>(), "once each, in order");
    a2.expect_silence(QUIET).await;
}

async fn unknown_pids_are_refused<B: Broker>() {
    let broker = B::start();
    let (a_node, _b) = two_nodes(&broker);
    for pid in ["AAAAAAAAAAAAAAAAAAAA", "not one of ours", "a.b*>", ""] {
        let (_c, missed, body) = reconnect(&a_node, json!({ "pid": pid })).await;
        assert!(missed.is_empty());
        assert!(body["pid"].is_string(), "a fresh pid for {pid:?}: {body}");
        assert_ne!(body["pid"], json!(pid));
    }
    a_node
        .assert_metric("riptide_recoveries_total{reason=\"unknown_session\"}", 4.0)
        .await;
}

async fn a_broker_outage_loses_nothing<B: Broker>() {
    let mut broker = B::start();
    let (a_node, b_node) = two_nodes(&broker);
    let (mut a, _) = member(&a_node, "r").await;
    let (mut b, _) = member(&b_node, "r").await;
    publish_and_see(&mut b, "r", 0, 1).await;
    assert_eq!(&event(&mut a).await[..2], &[json!("msg"), json!(0)]);
    broker.kill();
    // Stored emits wait on their node for the broker...
    for i in 1..=5u64 {
        b.emit("/", json!(["publish", "r", i]), None).await;
    }
    // ...and a CONNECT is answered meanwhile, not left hanging: a socket
    // that cannot be recovered.
    let (_c, missed, body) = reconnect(&b_node, json!({ "pid": "AAAAAAAAAAAAAAAAAAAA" })).await;
    assert!(missed.is_empty());
    assert!(body["sid"].is_string(), "{body}");
    broker.restart();
    // ...then reach every node, once, in order, with their offsets.
    for c in [&mut a, &mut b] {
        for i in 1..=5u64 {
            let args = event(c).await;
            assert_eq!(&args[..2], &[json!("msg"), json!(i)], "after the outage");
            assert!(args[2].is_string(), "stored: an offset");
        }
        c.expect_silence(QUIET).await;
    }
    assert_eq!(
        a_node.metric("riptide_recovery_unrecorded_total").await,
        0.0
    );
}

async fn a_broker_killed_mid_traffic_repeats_nothing<B: Broker>() {
    // Appends in flight when the broker dies are retried; a retried record
    // the broker had in fact kept (or, Redis restarted empty, that a tail
    // had already read) is delivered once. Only JetStream keeps what it
    // stored across the crash: through Redis without persistence what no
    // tail had read yet is gone with it, so completeness is NATS's alone.
    let mut broker = B::start();
    let (a_node, b_node) = two_nodes(&broker);
    let (mut a, _) = member(&a_node, "r").await;
    let (mut b, _) = connect(&b_node, None).await;
    const N: u64 = 200;
    let publishing = tokio::spawn(async move {
        for i in 1..=N {
            b.emit("/", json!(["publish", "r", i]), None).await;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        b
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    broker.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    broker.restart();
    let _b = publishing.await.unwrap();
    let mut got = Vec::new();
    // Everything that will come has come once 3 s pass in silence.
    while let Some(Frame::Text(text)) = a.recv_within(Duration::from_secs(3)).await {
        let args: Vec<Value> = serde_json::from_str(&text[2..]).unwrap();
        got.push(args[1].as_u64().unwrap());
    }
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "once each, in order: {got:?}"
    );
    if B::KIND == riptide::settings::AdapterKind::Nats {
        assert_eq!(got, (1..=N).collect::<Vec<_>>(), "JetStream kept every one");
    }
}

macro_rules! recovery_parity {
    ($name:ident, $broker:ty) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn recovered_by_another_node() {
                super::recovered_by_another_node::<$broker>().await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn offsets_are_one_order_across_emitting_nodes() {
                super::offsets_are_one_order_across_emitting_nodes::<$broker>().await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn recovered_without_an_offset() {
                super::recovered_without_an_offset::<$broker>().await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn not_recovered_past_the_stream_bound() {
                super::not_recovered_past_the_stream_bound::<$broker>().await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_half_open_connection_elsewhere_overwrites_nothing() {
                super::a_half_open_connection_elsewhere_overwrites_nothing::<$broker>().await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn recovered_while_traffic_flows() {
                super::recovered_while_traffic_flows::<$broker>().await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn unknown_pids_are_refused() {
                super::unknown_pids_are_refused::<$broker>().await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_broker_killed_mid_traffic_repeats_nothing() {
                super::a_broker_killed_mid_traffic_repeats_nothing::<$broker>().await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_broker_outage_loses_nothing() {
                super::a_broker_outage_loses_nothing::<$broker>().await
            }
        }
    };
}

recovery_parity!(nats, NatsServer);
recovery_parity!(redis, RedisServer);
