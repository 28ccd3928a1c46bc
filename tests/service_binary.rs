//! The `riptide` binary as an operator runs it: configuration from `config/`
//! with `RIPTIDE__…` overrides, validated at start with an error naming the
//! key, `/health` and `/metrics`, JSON logs, graceful stop on SIGTERM.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn riptide(envs: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_riptide"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("RIPTIDE_ENV")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

/// Start the binary on a free port and wait until `/health` answers.
fn start(envs: &[(&str, &str)]) -> (Child, u16) {
    let port = free_port();
    let port_s = port.to_string();
    let mut all = vec![("RIPTIDE__SERVER__PORT", port_s.as_str())];
    all.extend_from_slice(envs);
    let mut child = riptide(&all).spawn().expect("spawn riptide");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(resp) = reqwest::blocking_get(port, "/health") {
            if resp.0 == 200 {
                return (child, port);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("riptide did not answer /health");
}

mod reqwest {
    /// A tiny blocking GET, to keep these tests free of an async runtime.
    pub fn blocking_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        let status = out
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((status, body))
    }
}

fn sigterm(child: &Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
}

fn wait_exit(child: &mut Child, within: Duration) -> Option<i32> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    None
}

#[test]
fn serves_health_and_metrics_and_stops_on_sigterm() {
    let (mut child, port) = start(&[]);
    let (status, body) = reqwest::blocking_get(port, "/health").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("\"status\":\"ok\""), "{body}");
    let (status, metrics) = reqwest::blocking_get(port, "/metrics").unwrap();
    assert_eq!(status, 200);
    for series in [
        "riptide_engine_sessions",
        "riptide_packets_total",
        "riptide_bytes_total",
    ] {
        assert!(
            metrics.contains(series),
            "{series} missing from /metrics:\n{metrics}"
        );
    }
    // The embedded default serves the bench fixture on `/`.
    let (status, open) =
        reqwest::blocking_get(port, "/socket.io/?EIO=4&transport=polling").unwrap();
    assert_eq!(status, 200);
    assert!(open.contains("\"sid\""), "{open}");
    sigterm(&child);
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(10)),
        Some(0),
        "graceful exit"
    );
}

#[test]
fn sigterm_tells_connected_clients_the_server_is_going_away() {
    let (mut child, port) = start(&[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use futures_util::StreamExt;
        let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let _open = ws.next().await;
        sigterm(&child);
        let mut saw_close_packet = false;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, ws.next()).await {
            match msg {
                Ok(tokio_tungstenite::tungstenite::Message::Text(t)) if t.as_str() == "1" => {
                    saw_close_packet = true
                }
                Ok(tokio_tungstenite::tungstenite::Message::Close(_)) | Err(_) => break,
                _ => {}
            }
        }
        assert!(
            saw_close_packet,
            "an Engine.IO close packet before the socket closed"
        );
    });
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), Some(0));
}

#[test]
fn a_bad_value_is_refused_at_start_naming_its_key() {
    let out = riptide(&[("RIPTIDE__SERVER__PORT", "not-a-port")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.port"), "stderr: {err}");
}

#[test]
fn an_unknown_key_is_refused_naming_it() {
    let out = riptide(&[("RIPTIDE__SERVER__PROT", "4000")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("prot"), "stderr: {err}");
}

#[test]
fn an_invalid_combination_is_refused_naming_its_key() {
    let out = riptide(&[("RIPTIDE__ENGINE__PING_TIMEOUT_MS", "0")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("engine.ping_timeout_ms"), "stderr: {err}");
}

#[test]
fn recovery_with_a_cluster_adapter_starts_even_with_the_broker_down() {
    // The store is the broker's (JetStream here): a broker that is away
    // leaves the node serving, degraded, like the bus.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("nats://127.0.0.1:{port}");
    let (mut child, _port) = start(&[
        ("RIPTIDE__RECOVERY__ENABLED", "true"),
        ("RIPTIDE__ADAPTER__KIND", "nats"),
        ("RIPTIDE__ADAPTER__URL", &url),
    ]);
    sigterm(&child);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), Some(0));
}

#[test]
fn json_logs_are_one_object_per_line() {
    let (mut child, _port) = start(&[("RIPTIDE__LOG__FORMAT", "json")]);
    sigterm(&child);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), Some(0));
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let lines: Vec<String> = stderr.lines().map_while(Result::ok).collect();
    assert!(!lines.is_empty(), "some log lines");
    let mut saw_listening = false;
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.get("level").is_some() && v.get("msg").is_some(), "{line}");
        if v["msg"] == "riptide listening" {
            saw_listening = true;
            assert!(v.get("addr").is_some(), "{line}");
        }
    }
    assert!(saw_listening, "a 'riptide listening' record: {lines:?}");
}
