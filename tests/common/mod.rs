//! Shared test helpers: an in-process node on a free port, and raw Engine.IO
//! / Socket.IO clients over polling and WebSocket that let a test send exactly
//! the bytes it means (including malformed ones).

#![allow(dead_code)]

use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use riptide::{Riptide, ServerHandle, Settings};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const WAIT: Duration = Duration::from_secs(5);

/// A node running on its own actix system thread, stopped on drop.
pub struct TestServer {
    pub port: u16,
    pub handle: ServerHandle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Settings for tests: quiet logs, one worker, defaults otherwise.
pub fn test_settings() -> Settings {
    let mut s = Settings::default();
    s.server.workers = 1;
    s.log.level = std::env::var("TEST_LOG")
        .ok()
        .and_then(|l| l.parse().ok())
        .unwrap_or(riptide::service::config::LogLevel::Critical);
    s
}

impl TestServer {
    /// Start a node built by `build` from `settings`.
    pub fn start(settings: Settings, build: impl FnOnce(Riptide) -> Riptide + Send + 'static) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let port = listener.local_addr().unwrap().port();
        let (handle_tx, handle_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let log = riptide::service::logging::build_logger(&settings.log);
                let server = build(Riptide::new(settings, log)).build();
                handle_tx.send(server.handle()).unwrap();
                server
                    .serve(listener, |_| {}, async move {
                        let _ = stop_rx.await;
                        "test end"
                    })
                    .await
                    .expect("server runs");
            });
        });
        let handle = handle_rx.recv_timeout(WAIT).expect("server starts");
        TestServer {
            port,
            handle,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn url(&self, query: &str) -> String {
        format!("http://127.0.0.1:{}/socket.io/?{}", self.port, query)
    }

    pub fn ws_url(&self, query: &str) -> String {
        format!("ws://127.0.0.1:{}/socket.io/?{}", self.port, query)
    }

    /// Plain HTTP GET of a path on the node, e.g. `/metrics`.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let resp = reqwest::get(format!("http://127.0.0.1:{}{}", self.port, path))
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    /// The value of one metric line (`name{labels}`) in `/metrics`, 0 if absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, body) = self.get("/metrics").await;
        body.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    /// Poll `/metrics` until `series` equals `value` or the wait runs out.
    pub async fn wait_metric(&self, series: &str, value: f64) -> f64 {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let v = self.metric(series).await;
            if v == value || tokio::time::Instant::now() > deadline {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---- polling ------------------------------------------------------------------

/// A raw long-polling client.
pub struct PollingClient {
    pub http: reqwest::Client,
    pub base: String,
    pub sid: String,
    pub handshake: Value,
}

impl PollingClient {
    pub async fn open(server: &TestServer) -> PollingClient {
        let http = reqwest::Client::new();
        let base = server.url("EIO=4&transport=polling");
        let body = http.get(&base).send().await.unwrap().text().await.unwrap();
        assert!(body.starts_with('0'), "open packet, got {body:?}");
        let handshake: Value = serde_json::from_str(&body[1..]).unwrap();
        let sid = handshake["sid"].as_str().unwrap().to_string();
        PollingClient {
            http,
            base,
            sid,
            handshake,
        }
    }

    pub fn session_url(&self) -> String {
        format!("{}&sid={}", self.base, self.sid)
    }

    /// One GET; returns (status, body).
    pub async fn get(&self) -> (u16, String) {
        let resp = tokio::time::timeout(WAIT, self.http.get(self.session_url()).send())
            .await
            .expect("poll answered in time")
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    /// One POST of a raw body; returns (status, body).
    pub async fn post(&self, body: impl Into<reqwest::Body>) -> (u16, String) {
        let resp = self
            .http
            .post(self.session_url())
            .header("content-type", "text/plain;charset=UTF-8")
            .body(body)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    /// GET until a record satisfying `pred` arrives; returns that record.
    pub async fn get_until(&self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::time::Instant::now() < deadline {
            let (status, body) = self.get().await;
            assert_eq!(status, 200, "poll failed: {body}");
            for record in body.split('\x1e') {
                if record == "2" {
                    self.post("3").await;
                }
                if pred(record) {
                    return record.to_string();
                }
            }
        }
        panic!("no matching record within {WAIT:?}");
    }
}

// ---- websocket -------------------------------------------------------------------

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A raw WebSocket client that answers pings unless told not to.
pub struct WsClient {
    pub ws: Ws,
    pub sid: String,
    pub answer_pings: bool,
}

/// What a WsClient read.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Text(String),
    Binary(Vec<u8>),
    /// The server closed the WebSocket (code, reason).
    Closed(Option<u16>, String),
}

impl WsClient {
    /// Open a WebSocket-only session and read its open packet.
    pub async fn open(server: &TestServer) -> WsClient {
        let (ws, _) = tokio_tungstenite::connect_async(server.ws_url("EIO=4&transport=websocket"))
            .await
            .expect("websocket handshake");
        let mut c = WsClient {
            ws,
            sid: String::new(),
            answer_pings: true,
        };
        let open = c.recv_text().await;
        assert!(open.starts_with('0'), "open packet, got {open:?}");
        let hs: Value = serde_json::from_str(&open[1..]).unwrap();
        c.sid = hs["sid"].as_str().unwrap().to_string();
        c
    }

    /// Open a session and connect to namespace `ns` with `auth`; returns the
    /// client and the socket id.
    pub async fn connect(server: &TestServer, ns: &str, auth: Option<Value>) -> (WsClient, String) {
        let mut c = WsClient::open(server).await;
        let sid = c.sio_connect(ns, auth).await;
        (c, sid)
    }

    pub async fn sio_connect(&mut self, ns: &str, auth: Option<Value>) -> String {
        let prefix = if ns == "/" { String::new() } else { format!("{ns},") };
        let auth = auth.map(|a| a.to_string()).unwrap_or_default();
        self.send(&format!("40{prefix}{auth}")).await;
        let reply = self.recv_text().await;
        let expect = format!("40{prefix}");
        assert!(reply.starts_with(&expect), "CONNECT reply, got {reply:?}");
        let v: Value = serde_json::from_str(&reply[expect.len()..]).unwrap();
        v["sid"].as_str().unwrap().to_string()
    }

    pub async fn send(&mut self, text: &str) {
        self.ws.send(WsMessage::Text(text.into())).await.expect("send");
    }

    pub async fn send_binary(&mut self, bin: Vec<u8>) {
        self.ws.send(WsMessage::Binary(bin.into())).await.expect("send");
    }

    /// Next frame that is not an Engine.IO ping (answered unless disabled).
    pub async fn recv(&mut self) -> Frame {
        self.recv_within(WAIT).await.expect("a frame in time")
    }

    pub async fn recv_within(&mut self, wait: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let msg = match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => return None,
                Ok(None) => return Some(Frame::Closed(None, String::new())),
                Ok(Some(Err(_))) => return Some(Frame::Closed(None, "error".into())),
                Ok(Some(Ok(m))) => m,
            };
            match msg {
                WsMessage::Text(t) if t.as_str() == "2" => {
                    if self.answer_pings {
                        self.send("3").await;
                    }
                }
                WsMessage::Text(t) => return Some(Frame::Text(t.to_string())),
                WsMessage::Binary(b) => return Some(Frame::Binary(b.to_vec())),
                WsMessage::Close(c) => {
                    return Some(Frame::Closed(
                        c.as_ref().map(|c| u16::from(c.code)),
                        c.map(|c| c.reason.to_string()).unwrap_or_default(),
                    ))
                }
                _ => {}
            }
        }
    }

    pub async fn recv_text(&mut self) -> String {
        match self.recv().await {
            Frame::Text(t) => t,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// Read until the server closes; panics if it does not within `wait`.
    pub async fn expect_closed(&mut self, wait: Duration) -> Frame {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv_within(left).await {
                Some(f @ Frame::Closed(..)) => return f,
                Some(_) => continue,
                None => panic!("server did not close within {wait:?}"),
            }
        }
    }

    /// Assert nothing but pings arrives for `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) {
        if let Some(f) = self.recv_within(wait).await {
            panic!("expected silence, got {f:?}");
        }
    }

    /// Emit an event (`42[...]`), optionally with an ack id.
    pub async fn emit(&mut self, ns: &str, args: Value, ack: Option<u64>) {
        let prefix = if ns == "/" { String::new() } else { format!("{ns},") };
        let id = ack.map(|i| i.to_string()).unwrap_or_default();
        self.send(&format!("42{prefix}{id}{args}")).await;
    }
}
