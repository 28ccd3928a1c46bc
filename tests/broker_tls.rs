//! TLS to the broker: `adapter.url` as `tls://` (NATS) or `rediss://`
//! (Redis), the broker's certificate checked against `adapter.tls_ca_file`.
//! Each test makes a private CA and a server certificate for 127.0.0.1 with
//! openssl, starts a real nats-server or redis-server that speaks only TLS
//! with it, and two nodes through it: a message published on one node
//! reaches a room member on the other. Without the CA file the broker's
//! certificate is not trusted and the node stays degraded (it retries),
//! never falling back to plain text.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::brokers::{NatsServer, RedisServer, ScratchDir};
use common::recovery::{event, member, start};
use common::*;
use riptide::settings::AdapterKind;
use serde_json::{json, Value};

/// A CA and a server certificate it signed for 127.0.0.1: (ca, cert, key).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let p = |name: &str| dir.join(name);
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (Debian package openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"],
        &ec[..],
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=riptide-test-ca",
        ],
    ]
    .concat());
    run(&[
        &["req"],
        &ec[..],
        &[
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    ]
    .concat());
    std::fs::write(p("ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "ext",
    ]);
    (p("ca.pem"), p("srv.pem"), p("srv.key"))
}

fn node(kind: AdapterKind, url: &str, ca: Option<&Path>) -> TestServer {
    let mut s = test_settings();
    s.adapter.kind = kind;
    s.adapter.url = url.to_owned();
    s.adapter.prefix = "tls".into();
    s.adapter.tls_ca_file = ca.map(|p| p.display().to_string()).unwrap_or_default();
    start(s).0
}

async fn adapter_status(server: &TestServer) -> String {
    let (_, body) = server.get("/health").await;
    let health: Value = serde_json::from_str(&body).unwrap();
    health["adapter"]["status"]
        .as_str()
        .unwrap_or("?")
        .to_owned()
}

async fn crosses_nodes(kind: AdapterKind, url: &str, ca: &Path) {
    let (a_node, b_node) = (node(kind, url, Some(ca)), node(kind, url, Some(ca)));
    for n in [&a_node, &b_node] {
        let deadline = tokio::time::Instant::now() + WAIT;
        while adapter_status(n).await != "ok" && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(adapter_status(n).await, "ok", "connected over TLS");
    }
    let (mut a, _) = member(&a_node, "r").await;
    let (mut b, _) = member(&b_node, "r").await;
    // A join is in effect locally once acked; A's subscription reaches the
    // broker a moment later, and B's publish must not race it.
    assert!(a_node.handle.synced(WAIT).await, "A's room at the broker");
    b.emit("/", json!(["publish", "r", "over tls"]), None).await;
    assert_eq!(
        &event(&mut b).await[..2],
        &[json!("msg"), json!("over tls")]
    );
    assert_eq!(
        &event(&mut a).await[..2],
        &[json!("msg"), json!("over tls")],
        "on the other node"
    );
}

async fn untrusted_stays_degraded(kind: AdapterKind, url: &str) {
    let n = node(kind, url, None);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_ne!(
        adapter_status(&n).await,
        "ok",
        "a certificate nobody vouches for"
    );
    // Still serving its own clients.
    let (mut c, _) = member(&n, "r").await;
    c.emit("/", json!(["publish", "r", 1]), None).await;
    assert_eq!(&event(&mut c).await[..2], &[json!("msg"), json!(1)]);
}

#[tokio::test]
async fn nats_over_tls_with_a_private_ca() {
    let dir = ScratchDir::new("nats-tls");
    let (ca, cert, key) = certificates(dir.path());
    let nats = NatsServer::start_tls(&cert, &key);
    let url = format!("tls://127.0.0.1:{}", nats.port);
    crosses_nodes(AdapterKind::Nats, &url, &ca).await;
    untrusted_stays_degraded(AdapterKind::Nats, &url).await;
}

#[tokio::test]
async fn redis_over_tls_with_a_private_ca() {
    let dir = ScratchDir::new("redis-tls");
    let (ca, cert, key) = certificates(dir.path());
    let redis = RedisServer::start_tls(&cert, &key);
    let url = format!("rediss://127.0.0.1:{}", redis.port);
    crosses_nodes(AdapterKind::Redis, &url, &ca).await;
    untrusted_stays_degraded(AdapterKind::Redis, &url).await;
}
