//! A minimal Engine.IO v4 / Socket.IO v5 client over WebSocket, main
//! namespace only: what the fixture scenarios need and nothing else.
//!
//! The wire format (text frames only):
//! - Engine.IO: `0{open json}`, `1` close, `2` ping (answered `3`), `4…` message;
//! - Socket.IO inside a message: `0` CONNECT (`40` → `40{"sid":…}`), `1`
//!   DISCONNECT, `2` EVENT `42[name,…]` or `42<id>[…]` with an ack id, `3` ACK
//!   `43<id>[…]`, `4` CONNECT_ERROR.

use std::fmt;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use crate::inflate::{InflateStream, OFFER};

pub type Ws = WebSocketStream<InflateStream>;

/// Where to connect: one resolved address and the WebSocket URL to request.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub ws_url: String,
}

impl Target {
    /// `http://host:port`, `ws://host:port` or a bare `host:port`; any path in
    /// the URL is ignored in favour of `path` (default `/socket.io/`).
    pub async fn resolve(url: &str, path: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("ws://"))
            .unwrap_or(url);
        if url.starts_with("https://") || url.starts_with("wss://") {
            return Err(format!("{url}: TLS is not supported by the generator"));
        }
        let authority = rest.split('/').next().unwrap_or(rest);
        let hostport = if authority.contains(':') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let addr = tokio::net::lookup_host(&hostport)
            .await
            .map_err(|e| format!("{url}: cannot resolve {hostport}: {e}"))?
            .next()
            .ok_or_else(|| format!("{url}: {hostport} resolves to nothing"))?;
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        let path = if path.ends_with('/') {
            path
        } else {
            format!("{path}/")
        };
        Ok(Target {
            addr,
            ws_url: format!("ws://{authority}{path}?EIO=4&transport=websocket"),
        })
    }
}

/// Why a connection attempt failed, as a short kind for the failure counts.
#[derive(Debug)]
pub struct ConnectError {
    pub kind: &'static str,
    pub detail: String,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

fn err(kind: &'static str, detail: impl ToString) -> ConnectError {
    ConnectError {
        kind,
        detail: detail.to_string(),
    }
}

fn io_kind(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "refused",
        ConnectionReset => "reset",
        ConnectionAborted => "aborted",
        TimedOut => "timeout",
        AddrNotAvailable | AddrInUse => "no_local_port",
        _ if e.raw_os_error() == Some(libc::EMFILE) || e.raw_os_error() == Some(libc::ENFILE) => {
            "too_many_open_files"
        }
        _ => "io",
    }
}

fn ws_kind(e: &tungstenite::Error) -> &'static str {
    match e {
        tungstenite::Error::Io(io) => io_kind(io),
        tungstenite::Error::Http(_) => "http_status",
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => "closed",
        // TCP EOF without a WebSocket close frame.
        tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        ) => "eof_without_close_frame",
        _ => "ws_protocol",
    }
}

pub struct ConnectOpts {
    pub timeout: Duration,
    /// SO_RCVBUF before connect (so the window scale is negotiated small).
    pub rcvbuf: Option<u32>,
    /// Offer permessage-deflate and inflate what comes compressed.
    pub deflate: bool,
}

/// A connected Socket.IO socket on `/`.
pub struct Conn {
    pub ws: Ws,
    pub fd: RawFd,
    /// Our end of the TCP connection (to find it in /proc/net/tcp).
    pub local: Option<SocketAddr>,
    pub ping_interval_ms: u64,
    pub ping_timeout_ms: u64,
}

fn ws_config() -> WebSocketConfig {
    // tungstenite allocates its read buffer eagerly (128 KiB by default): at
    // 10,000 connections that is the generator's memory, not the server's.
    // It also zeroes the buffer's free part (up to this size) before every
    // read, and a paced stream's reads find a frame or two: 4 KiB, not 8,
    // halved that memset in the fan-out receivers (docs/decisions.md).
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(8 * 1024)
}

/// TCP connect, WebSocket handshake, Engine.IO open, Socket.IO CONNECT.
pub async fn connect(target: &Target, opts: &ConnectOpts) -> Result<Conn, ConnectError> {
    Ok(connect_with(target, opts, None).await?.0)
}

/// What a CONNECT with auth brought: the reply's JSON body (`{"sid", "pid"}`)
/// and the events written before it (a recovered socket's missed events).
pub struct Connected {
    pub reply: String,
    pub before: Vec<String>,
}

/// [`connect`] with CONNECT auth (`auth`: a JSON object's text).
pub async fn connect_with(
    target: &Target,
    opts: &ConnectOpts,
    auth: Option<&str>,
) -> Result<(Conn, Connected), ConnectError> {
    match tokio::time::timeout(opts.timeout, connect_inner(target, opts, auth)).await {
        Ok(r) => r,
        Err(_) => Err(err("timeout", "connect timed out")),
    }
}

async fn connect_inner(
    target: &Target,
    opts: &ConnectOpts,
    auth: Option<&str>,
) -> Result<(Conn, Connected), ConnectError> {
    let sock = if target.addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| err(io_kind(&e), e))?;
    if let Some(size) = opts.rcvbuf {
        sock.set_recv_buffer_size(size)
            .map_err(|e| err("io", format!("SO_RCVBUF: {e}")))?;
    }
    let stream = sock
        .connect(target.addr)
        .await
        .map_err(|e| err(io_kind(&e), e))?;
    let _ = stream.set_nodelay(true);
    let fd = stream.as_raw_fd();
    let local = stream.local_addr().ok();
    let mut req = target
        .ws_url
        .as_str()
        .into_client_request()
        .map_err(|e| err("bad_url", e))?;
    if opts.deflate {
        req.headers_mut().insert(
            "Sec-WebSocket-Extensions",
            tungstenite::http::HeaderValue::from_static(OFFER),
        );
    }
    let stream = InflateStream::new(stream, opts.deflate);
    let (mut ws, _resp) =
        tokio_tungstenite::client_async_with_config(req, stream, Some(ws_config()))
            .await
            .map_err(|e| err(ws_kind(&e), e))?;

    // Engine.IO open packet.
    let open = next_text(&mut ws).await?;
    let Some(json) = open.strip_prefix('0') else {
        return Err(err(
            "eio_open",
            format!("expected an open packet, got {open:.60}"),
        ));
    };
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| err("eio_open", e))?;
    let ping_interval_ms = v["pingInterval"].as_u64().unwrap_or(0);
    let ping_timeout_ms = v["pingTimeout"].as_u64().unwrap_or(0);

    ws.send(Message::text(format!("40{}", auth.unwrap_or(""))))
        .await
        .map_err(|e| err(ws_kind(&e), e))?;
    let mut before = Vec::new();
    let reply = loop {
        let text = next_text(&mut ws).await?;
        match parse(&text) {
            Packet::Ping => ws
                .send(Message::text("3"))
                .await
                .map_err(|e| err(ws_kind(&e), e))?,
            Packet::Connect => break text[2..].to_owned(),
            Packet::ConnectError => return Err(err("connect_error", text)),
            Packet::Close | Packet::Disconnect => return Err(err("closed", text)),
            Packet::Event { .. } => before.push(text),
            _ => {}
        }
    };
    Ok((
        Conn {
            ws,
            fd,
            local,
            ping_interval_ms,
            ping_timeout_ms,
        },
        Connected { reply, before },
    ))
}

async fn next_text(ws: &mut Ws) -> Result<String, ConnectError> {
    loop {
        match ws.next().await {
            None => return Err(err("closed", "connection closed during handshake")),
            Some(Err(e)) => return Err(err(ws_kind(&e), e)),
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Close(_))) => {
                return Err(err("closed", "close frame during handshake"))
            }
            Some(Ok(_)) => {}
        }
    }
}

/// One incoming text frame, classified. `body` is the JSON array text.
#[derive(Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    Ping,
    /// Engine.IO close (`1`): the server is going away.
    Close,
    Connect,
    ConnectError,
    /// Socket.IO DISCONNECT (`41`).
    Disconnect,
    Event {
        ack: Option<u64>,
        body: &'a str,
    },
    Ack {
        id: u64,
        body: &'a str,
    },
    Other,
}

/// Classify a text frame (main namespace; a `/nsp,` prefix is skipped).
pub fn parse(text: &str) -> Packet<'_> {
    let b = text.as_bytes();
    match b.first() {
        Some(b'2') => return Packet::Ping,
        Some(b'1') => return Packet::Close,
        Some(b'4') => {}
        _ => return Packet::Other,
    }
    let Some(&kind) = b.get(1) else {
        return Packet::Other;
    };
    let mut rest = &text[2..];
    if rest.starts_with('/') {
        rest = match rest.find(',') {
            Some(i) => &rest[i + 1..],
            None => "",
        };
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id = rest[..digits].parse::<u64>().ok();
    let body = &rest[digits..];
    match kind {
        b'0' => Packet::Connect,
        b'1' => Packet::Disconnect,
        b'2' => Packet::Event { ack: id, body },
        b'3' => match id {
            Some(id) => Packet::Ack { id, body },
            None => Packet::Other,
        },
        b'4' => Packet::ConnectError,
        _ => Packet::Other,
    }
}

/// `42[...]` or `42<id>[...]`: `args_json` is the arguments after the name,
/// already JSON, comma-separated.
pub fn event(name: &str, ack: Option<u64>, args_json: &str) -> String {
    let mut s = String::with_capacity(args_json.len() + name.len() + 16);
    s.push_str("42");
    if let Some(id) = ack {
        s.push_str(&id.to_string());
    }
    s.push_str("[\"");
    s.push_str(name);
    s.push('"');
    if !args_json.is_empty() {
        s.push(',');
        s.push_str(args_json);
    }
    s.push(']');
    s
}

/// The fixture payload `{"t":…,"seq":…,"pad":"…"}`.
/// The payload's `pad` filler: `len` bytes of lowercase words (JSON-safe),
/// the same for every run. Text, not one repeated byte, so that a
/// compressing transport (`--deflate`) sees what applications send: deflate
/// shrinks it to about half, not to almost nothing.
pub fn pad(len: usize) -> String {
    const WORDS: [&str; 16] = [
        "room", "user", "status", "online", "message", "riptide", "event", "payload", "socket",
        "value", "delta", "notify", "order", "update", "price", "time",
    ];
    let mut x: u32 = 0x9e37_79b9;
    let mut out = String::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.push_str(WORDS[(x % 16) as usize]);
        // A number now and then, as real messages carry.
        if x.is_multiple_of(5) {
            out.push_str(&(x % 1000).to_string());
        }
        out.push(' ');
    }
    out.truncate(len);
    out
}

pub fn stamp(t: u64, seq: u64, pad: &str) -> String {
    format!("{{\"t\":{t},\"seq\":{seq},\"pad\":\"{pad}\"}}")
}

/// The two fields of a fixture payload the generator reads back (any key
/// order: servers may re-serialise objects sorted).
#[derive(serde::Deserialize, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub t: u64,
    pub seq: u64,
}

/// `["msg", {stamp}]` → the stamp; a trailing argument (the offset a server
/// with connection state recovery appends) is ignored.
///
/// Every delivery of a fan-out goes through here, on the generator's one
/// thread: the payloads every server sends (compact JSON, flat objects) are
/// scanned in place (`scan_stamp`), and anything else is left to serde, so
/// the answer is serde's either way.
pub fn msg_stamp(body: &str) -> Option<Stamp> {
    let b = body.as_bytes();
    let fast = b.strip_prefix(b"[\"msg\",").and_then(scan_stamp);
    match fast {
        Some((s, tail)) if tail == b"]" || (tail.first() == Some(&b',') && b.ends_with(b"]")) => {
            Some(s)
        }
        _ => msg_stamp_serde(body),
    }
}

fn msg_stamp_serde(body: &str) -> Option<Stamp> {
    #[derive(serde::Deserialize)]
    #[allow(dead_code)] // the third element is only skipped over
    struct Msg<'a>(
        #[serde(borrow)] &'a str,
        Stamp,
        #[serde(default)] Option<serde::de::IgnoredAny>,
    );
    let Msg(name, s, _) = serde_json::from_str(body).ok()?;
    (name == "msg").then_some(s)
}

/// An ack body `[{stamp}]` → the stamp.
pub fn ack_stamp(body: &str) -> Option<Stamp> {
    match body.as_bytes().strip_prefix(b"[").and_then(scan_stamp) {
        Some((s, b"]")) => Some(s),
        _ => {
            let (s,): (Stamp,) = serde_json::from_str(body).ok()?;
            Some(s)
        }
    }
}

/// Read `t` and `seq` from a flat JSON object at the start of `b`, in any key
/// order, skipping the other keys' string values; returns the stamp and what
/// follows the closing brace. Anything else (whitespace, escapes in a key,
/// another kind of value, a missing or repeated field, a number that is not
/// a plain `u64`) gives `None`, for serde to decide.
fn scan_stamp(b: &[u8]) -> Option<(Stamp, &[u8])> {
    if b.first() != Some(&b'{') {
        return None;
    }
    let mut i = 1;
    let (mut t, mut seq) = (None, None);
    loop {
        // A key: `"…":`, without escapes.
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let len = b[i + 1..].iter().position(|&c| c == b'"' || c == b'\\')?;
        let key = &b[i + 1..i + 1 + len];
        i += len + 1;
        if b[i] != b'"' || b.get(i + 1) != Some(&b':') {
            return None;
        }
        i += 2;
        let field = match key {
            b"t" => Some(&mut t),
            b"seq" => Some(&mut seq),
            _ => None,
        };
        match (field, b.get(i)) {
            (Some(slot), Some(c)) if c.is_ascii_digit() => {
                let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
                let n = b[i..i + digits].iter().try_fold(0u64, |n, &d| {
                    n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
                })?;
                if slot.replace(n).is_some() || (digits > 1 && b[i] == b'0') {
                    return None;
                }
                i += digits;
            }
            (None, Some(b'"')) => {
                // A string: to its closing quote, stepping over escapes.
                i += 1;
                loop {
                    i += memchr::memchr2(b'"', b'\\', b.get(i..)?)?;
                    if b[i] == b'"' {
                        break;
                    }
                    i += 2;
                }
                i += 1;
            }
            _ => return None,
        }
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => return Some((Stamp { t: t?, seq: seq? }, &b[i + 1..])),
            _ => return None,
        }
    }
}

/// Join `room` and wait for the ack (answering pings meanwhile).
pub async fn join(ws: &mut Ws, room: &str, ack_id: u64) -> Result<(), ConnectError> {
    let room_json = serde_json::to_string(room).unwrap_or_default();
    ws.send(Message::text(event("join", Some(ack_id), &room_json)))
        .await
        .map_err(|e| err(ws_kind(&e), e))?;
    loop {
        let text = next_text(ws).await.map_err(|e| ConnectError {
            kind: "join",
            detail: e.to_string(),
        })?;
        match parse(&text) {
            Packet::Ping => ws
                .send(Message::text("3"))
                .await
                .map_err(|e| err(ws_kind(&e), e))?,
            Packet::Ack { id, .. } if id == ack_id => return Ok(()),
            Packet::Close | Packet::Disconnect => return Err(err("join", "closed before ack")),
            _ => {}
        }
    }
}

/// How an established connection ended, as seen by its reader.
pub fn end_kind(m: &Option<Result<Message, tungstenite::Error>>) -> &'static str {
    match m {
        None => "eof",
        Some(Err(e)) => ws_kind(e),
        Some(Ok(Message::Close(_))) => "ws_close",
        Some(Ok(_)) => "other",
    }
}

/// What one connection reports once it is ready (or failed): the time its
/// handshake took (and join, where there is one), or the failure kind.
pub type Ready = Result<Duration, &'static str>;

/// The outcome of a connection phase.
pub struct ConnectPhase {
    pub attempted: usize,
    pub ok: usize,
    pub failures: crate::stats::Failures,
    pub elapsed: Duration,
    pub handshake: hdrhistogram::Histogram<u64>,
}

impl ConnectPhase {
    /// Wait for `n` reports, printing progress every 2 s.
    pub async fn collect(
        rx: &mut tokio::sync::mpsc::UnboundedReceiver<Ready>,
        n: usize,
        what: &str,
        started: std::time::Instant,
    ) -> ConnectPhase {
        let mut p = ConnectPhase {
            attempted: n,
            ok: 0,
            failures: Default::default(),
            elapsed: Duration::ZERO,
            handshake: crate::stats::histogram(),
        };
        let mut last = std::time::Instant::now();
        for _ in 0..n {
            let Some(r) = rx.recv().await else { break };
            match r {
                Ok(d) => {
                    p.ok += 1;
                    p.handshake.saturating_record(d.as_nanos() as u64);
                }
                Err(kind) => p.failures.add(kind),
            }
            if last.elapsed() >= Duration::from_secs(2) {
                last = std::time::Instant::now();
                crate::progress!("{what}: {} ok, {} failed of {n}", p.ok, p.failures.total());
            }
        }
        p.elapsed = started.elapsed();
        p
    }

    pub fn json(&self) -> serde_json::Value {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        serde_json::json!({
            "attempted": self.attempted,
            "ok": self.ok,
            "failed": self.failures.total(),
            "failures": self.failures.json(),
            "elapsed_s": crate::stats::round3(secs),
            "conn_per_s": crate::stats::round1(self.ok as f64 / secs),
            "handshake_us": crate::stats::latency_json(&self.handshake),
        })
    }
}

/// Reconnect waits, like socket.io-client's but shorter: after a lost
/// connection or the n-th failed attempt (n = 0, 1, …), min(cap, base × 2^n)
/// with base uniform in [min, max], drawn for every wait.
#[derive(Clone, Copy)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
    pub cap: Duration,
}

impl Backoff {
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = if self.max > self.min {
            rand::rng().random_range(self.min..=self.max)
        } else {
            self.min
        };
        base.saturating_mul(1u32 << attempt.min(16)).min(self.cap)
    }
}

/// Keep a connection alive (answering pings) until `stop` turns true or the
/// server ends it; returns how it ended, `None` when stopped.
pub async fn hold(
    ws: &mut Ws,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<&'static str> {
    hold_with(ws, stop, |_| {}).await
}

/// [`hold`], handing every event frame to `on_event`.
pub async fn hold_with(
    ws: &mut Ws,
    stop: &mut tokio::sync::watch::Receiver<bool>,
    mut on_event: impl FnMut(&str),
) -> Option<&'static str> {
    loop {
        if *stop.borrow_and_update() {
            return None;
        }
        tokio::select! {
            biased;
            r = stop.changed() => if r.is_err() { return None },
            m = ws.next() => match &m {
                Some(Ok(Message::Text(t))) => match parse(t) {
                    Packet::Ping => match ws.send(Message::text("3")).await {
                        Ok(()) => {}
                        Err(_) => return Some("write_failed"),
                    },
                    Packet::Close => return Some("eio_close"),
                    Packet::Disconnect => return Some("sio_disconnect"),
                    Packet::Event { .. } => on_event(t),
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Some(end_kind(&m)),
                Some(Ok(_)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msg_stamps_with_or_without_an_offset() {
        let plain = r#"["msg",{"t":5,"seq":7,"pad":"x"}]"#;
        let with_offset = r#"["msg",{"t":5,"seq":7,"pad":"x"},"abc-1"]"#;
        for body in [plain, with_offset] {
            let s = msg_stamp(body).unwrap();
            assert_eq!((s.t, s.seq), (5, 7), "{body}");
        }
        assert!(msg_stamp(r#"["other",{"t":5,"seq":7}]"#).is_none());
    }

    #[test]
    fn the_stamp_scanner_answers_as_serde_does() {
        // Bodies on and off the fast path: every one must read as serde
        // reads it (the scanner may only decline, never disagree).
        let fixed = [
            r#"["msg",{"t":5,"seq":7,"pad":"x"}]"#,
            r#"["msg",{"pad":"a\"b\\","seq":7,"t":5},"abc-1"]"#,
            r#"["msg",{"t":5,"seq":7,"n":-1.5e3,"ok":true,"z":null}]"#,
            r#"["msg",{"t":5,"seq":7,"o":{"t":1}}]"#,
            r#"["msg",{"t":5,"pad":"x"}]"#,
            r#"["msg",{}]"#,
            r#"["msg",{"t":5,"seq":7,"t":6}]"#,
            r#"["msg",{"t":05,"seq":7}]"#,
            r#"["msg",{"t":5.5,"seq":7}]"#,
            r#"["msg",{"t":-5,"seq":7}]"#,
            r#"["msg",{"t":18446744073709551616,"seq":7}]"#,
            r#"["msg",{"t":5,"seq":7}"#,
            r#"["msg",{"t":5,"seq":7}x"#,
            r#"["msg", {"t":5,"seq":7}]"#,
            r#"["msg",{"t" :5,"seq":7}]"#,
            r#"["msg",{"t":5,"seq":7,"w":tru}]"#,
            r#"["msg",{"t":5,"seq":7,"w":"open]"#,
            r#"["msg",{"t\u0000":5,"seq":7}]"#,
            r#"["other",{"t":5,"seq":7}]"#,
        ];
        for body in fixed {
            assert_eq!(msg_stamp(body), msg_stamp_serde(body), "{body}");
        }
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let values = [
            "1",
            "0",
            "\"x\"",
            "\"a\\\"b\"",
            "-2",
            "1e9",
            "true",
            "null",
            "[1]",
            "{}",
            "01",
            "\"\\\\\"",
        ];
        for _ in 0..5_000 {
            let mut fields: Vec<String> = Vec::new();
            for key in ["t", "seq", "pad", "x"] {
                if rng.random_bool(0.8) {
                    let v = if key != "pad" && key != "x" && rng.random_bool(0.8) {
                        rng.random::<u32>().to_string()
                    } else {
                        values[rng.random_range(0..values.len())].to_string()
                    };
                    fields.push(format!("\"{key}\":{v}"));
                }
            }
            let n = fields.len();
            for i in 0..n {
                fields.swap(i, rng.random_range(0..n));
            }
            let tail = ["]", ",\"o-1\"]", ",1]", "", "]]"][rng.random_range(0..5)];
            let body = format!("[\"msg\",{{{}}}{tail}", fields.join(","));
            assert_eq!(msg_stamp(&body), msg_stamp_serde(&body), "{body}");
            let ack = format!("[{{{}}}]", fields.join(","));
            let serde_ack = serde_json::from_str::<(Stamp,)>(&ack).ok().map(|(s,)| s);
            assert_eq!(ack_stamp(&ack), serde_ack, "{ack}");
        }
    }

    #[test]
    fn parses_packets() {
        assert_eq!(parse("2"), Packet::Ping);
        assert_eq!(parse("1"), Packet::Close);
        assert_eq!(parse("40{\"sid\":\"x\"}"), Packet::Connect);
        assert_eq!(parse("431[]"), Packet::Ack { id: 1, body: "[]" });
        assert_eq!(
            parse("42[\"msg\",1]"),
            Packet::Event {
                ack: None,
                body: "[\"msg\",1]"
            }
        );
        assert_eq!(
            parse("42/,7[\"a\"]"),
            Packet::Event {
                ack: Some(7),
                body: "[\"a\"]"
            }
        );
        assert_eq!(parse("41"), Packet::Disconnect);
    }

    #[test]
    fn encodes_events_and_reads_stamps() {
        let p = stamp(5, 9, "xx");
        assert_eq!(
            event("publish", None, &format!("\"r\",{p}")),
            "42[\"publish\",\"r\",{\"t\":5,\"seq\":9,\"pad\":\"xx\"}]"
        );
        let s = msg_stamp("[\"msg\",{\"pad\":\"xx\",\"seq\":9,\"t\":5}]").unwrap();
        assert_eq!((s.t, s.seq), (5, 9));
        let s = ack_stamp(&format!("[{p}]")).unwrap();
        assert_eq!(s.seq, 9);
        assert_eq!(event("echo", Some(3), "1"), "423[\"echo\",1]");
    }
}
