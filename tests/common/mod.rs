//! Shared test helpers: an in-process node on a free port, and raw Engine.IO
//! / Socket.IO clients over polling and WebSocket that let a test send exactly
//! the bytes it means (including malformed ones).

#![allow(dead_code)]

pub mod brokers;
pub mod recovery;

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
        .unwrap_or(riptide::settings::LogLevel::Critical);
    s
}

/// Panics on the node's own threads (the supervision tests inject them into
/// actors) are reported with their message and place, without a backtrace.
/// Under `RUST_BACKTRACE=1` the default hook resolves one, which in a
/// freshly built debug test binary took seconds (seen in CI): the actor's
/// thread waits for it, and the tests' deadlines ran out before the actor
/// was restarted. A test thread's own panic keeps the default report.
fn quiet_server_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            let Some(name) = thread.name().filter(|n| n.starts_with("actix-")) else {
                return default(info);
            };
            let payload = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let at = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            eprintln!("thread '{name}' panicked at {at}: {payload}");
        }));
    });
}

impl TestServer {
    /// Start a node built by `build` from `settings`.
    pub fn start(
        settings: Settings,
        build: impl FnOnce(Riptide) -> Riptide + Send + 'static,
    ) -> TestServer {
        TestServer::start_mounted(settings, build, |_| {
            |_: &mut actix_web::web::ServiceConfig| {}
        })
    }

    /// Start a node built by `build`, with extra routes from `extra`, which
    /// gets the built server (for its metrics) and returns the mount function.
    pub fn start_mounted<X>(
        settings: Settings,
        build: impl FnOnce(Riptide) -> Riptide + Send + 'static,
        extra: impl FnOnce(&riptide::RiptideServer) -> X + Send + 'static,
    ) -> TestServer
    where
        X: Fn(&mut actix_web::web::ServiceConfig) + Clone + Send + 'static,
    {
        quiet_server_panics();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let port = listener.local_addr().unwrap().port();
        let (handle_tx, handle_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let log = riptide::service::logging::build_logger(&settings.log);
                let server = build(Riptide::new(settings, log)).build();
                let mount = extra(&server);
                handle_tx.send(server.handle()).unwrap();
                server
                    .serve(listener, mount, async move {
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
        let resp = self.post_request(body).send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    /// The request [`PollingClient::post`] sends.
    pub fn post_request(&self, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
        self.http
            .post(self.session_url())
            .header("content-type", "text/plain;charset=UTF-8")
            .body(body)
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

/// Start a polling GET in the background (to hold a long-poll open while the
/// test does something else).
pub fn spawn_get(c: &PollingClient) -> tokio::task::JoinHandle<(u16, String)> {
    let req = c.http.get(c.session_url());
    actix_rt::spawn(async move {
        let resp = tokio::time::timeout(WAIT, req.send())
            .await
            .expect("poll answered in time")
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    })
}

/// A POST of `body` on the session, in the background (a client's POST that
/// travels beside another of its requests); wait for it with [`join_get`].
pub fn spawn_post(
    c: &PollingClient,
    body: impl Into<reqwest::Body>,
) -> tokio::task::JoinHandle<(u16, String)> {
    let req = c.post_request(body);
    actix_rt::spawn(async move {
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    })
}

/// Wait for a request started by [`spawn_get`] or [`spawn_post`].
pub async fn join_get(h: tokio::task::JoinHandle<(u16, String)>) -> (u16, String) {
    tokio::time::timeout(WAIT, h)
        .await
        .expect("request finished in time")
        .expect("GET task")
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
        let prefix = if ns == "/" {
            String::new()
        } else {
            format!("{ns},")
        };
        let auth = auth.map(|a| a.to_string()).unwrap_or_default();
        self.send(&format!("40{prefix}{auth}")).await;
        let reply = self.recv_text().await;
        let expect = format!("40{prefix}");
        assert!(reply.starts_with(&expect), "CONNECT reply, got {reply:?}");
        let v: Value = serde_json::from_str(&reply[expect.len()..]).unwrap();
        v["sid"].as_str().unwrap().to_string()
    }

    pub async fn send(&mut self, text: &str) {
        self.ws
            .send(WsMessage::Text(text.into()))
            .await
            .expect("send");
    }

    pub async fn send_binary(&mut self, bin: Vec<u8>) {
        self.ws
            .send(WsMessage::Binary(bin.into()))
            .await
            .expect("send");
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
                WsMessage::Text(t) if t.as_str() == "2" && self.answer_pings => {
                    self.send("3").await;
                }
                WsMessage::Text(t) if t.as_str() == "2" => {}
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
        let prefix = if ns == "/" {
            String::new()
        } else {
            format!("{ns},")
        };
        let id = ack.map(|i| i.to_string()).unwrap_or_default();
        self.send(&format!("42{prefix}{id}{args}")).await;
    }
}

// ---- Engine.IO-level helpers (added for the engineio_* / transport tests) --------------

/// A plain Engine.IO echo app: every message, text or binary, goes back
/// unchanged on the same session. Mounted at `/engine.io/` by
/// [`TestServer::start_echo`] to test the transport layer on its own.
pub struct Echo;

impl riptide::engineio::EngineApp for Echo {
    fn on_message(
        &mut self,
        msg: riptide::engineio::session::Message,
        core: &mut riptide::engineio::EngineCore,
        _ctx: &mut actix::Context<riptide::engineio::SessionActor<Self>>,
    ) {
        use riptide::engineio::session::Message;
        use riptide::engineio::Frame as EFrame;
        match msg {
            Message::Text(text) => core.send(&EFrame::message(&text)),
            Message::Binary(bin) => core.send(&EFrame::binary(&bin)),
        }
    }
}

pub struct EchoFactory;

impl riptide::engineio::EngineAppFactory for EchoFactory {
    type App = Echo;
    fn create(&self, _handshake: &std::sync::Arc<riptide::engineio::Handshake>) -> Echo {
        Echo
    }
}

/// The Engine.IO settings of `s`, resolved as `Riptide::build` resolves them.
pub fn engine_config(s: &Settings) -> riptide::engineio::EngineConfig {
    riptide::service::http::engine_config(s)
}

/// The Engine.IO echo endpoint's path on a [`TestServer::start_echo`] node.
pub const ECHO: &str = "/engine.io/";
/// The Socket.IO endpoint's path.
pub const SIO: &str = "/socket.io/";

impl TestServer {
    /// A node serving the fixture on `/socket.io/` and an Engine.IO echo on
    /// `/engine.io/` (same settings, same metrics).
    pub fn start_echo(settings: Settings) -> TestServer {
        let config = engine_config(&settings);
        let log = riptide::service::logging::build_logger(&settings.log);
        TestServer::start_mounted(
            settings,
            |r| {
                r.namespace(
                    "/",
                    riptide::Namespace::new(|| riptide::fixture::FixtureHandler),
                )
            },
            move |server| {
                let echo = riptide::engineio::Engine::new(
                    config,
                    EchoFactory,
                    server.metrics().engine().clone(),
                    log,
                    usize::MAX,
                );
                move |cfg: &mut actix_web::web::ServiceConfig| echo.mount(ECHO, cfg)
            },
        )
    }

    /// `http://127.0.0.1:<port><path>?<query>`.
    pub fn url_at(&self, path: &str, query: &str) -> String {
        format!("http://127.0.0.1:{}{}?{}", self.port, path, query)
    }

    /// `ws://127.0.0.1:<port><path>?<query>`.
    pub fn ws_url_at(&self, path: &str, query: &str) -> String {
        format!("ws://127.0.0.1:{}{}?{}", self.port, path, query)
    }

    /// One raw request; returns (status, headers, body). Bounded by [`WAIT`].
    pub async fn request(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let mut req = reqwest::Client::new().request(method, url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = tokio::time::timeout(WAIT, req.send())
            .await
            .expect("answered in time")
            .expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.text().await.unwrap_or_default())
    }

    /// `riptide_engine_sessions` summed over both transports.
    pub async fn engine_sessions(&self) -> f64 {
        self.metric("riptide_engine_sessions{transport=\"polling\"}")
            .await
            + self
                .metric("riptide_engine_sessions{transport=\"websocket\"}")
                .await
    }

    /// Poll until both session gauges sum to `value`; returns the last sum.
    pub async fn wait_engine_sessions(&self, value: f64, wait: Duration) -> f64 {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let v = self.engine_sessions().await;
            if v == value || tokio::time::Instant::now() > deadline {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `riptide_bad_input_total{kind="<kind>"}`.
    pub async fn bad_input(&self, kind: &str) -> f64 {
        self.metric(&format!("riptide_bad_input_total{{kind=\"{kind}\"}}"))
            .await
    }
}

/// Assert an Engine.IO protocol error: status, and the exact JSON body.
pub fn assert_engine_error(status: u16, body: &str, want_status: u16, code: u8, message: &str) {
    assert_eq!(status, want_status, "status of {body:?}");
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("JSON body, got {body:?}"));
    assert_eq!(
        v,
        serde_json::json!({ "code": code, "message": message }),
        "error body"
    );
}

impl PollingClient {
    /// Open a polling session on the endpoint mounted at `path`.
    pub async fn open_at(server: &TestServer, path: &str) -> PollingClient {
        let http = reqwest::Client::new();
        let base = server.url_at(path, "EIO=4&transport=polling");
        let resp = tokio::time::timeout(WAIT, http.get(&base).send())
            .await
            .expect("handshake in time")
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "handshake status");
        let body = resp.text().await.unwrap();
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

    /// One GET with its own deadline; `None` if it is still pending then.
    pub async fn get_within(&self, wait: Duration) -> Option<(u16, String)> {
        let resp = tokio::time::timeout(wait, self.http.get(self.session_url()).send())
            .await
            .ok()?
            .unwrap();
        Some((resp.status().as_u16(), resp.text().await.unwrap()))
    }

    /// One POST, bounded by [`WAIT`]; returns (status, headers, body).
    pub async fn post_full(
        &self,
        body: impl Into<reqwest::Body>,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let resp = tokio::time::timeout(
            WAIT,
            self.http
                .post(self.session_url())
                .header("content-type", "text/plain;charset=UTF-8")
                .body(body)
                .send(),
        )
        .await
        .expect("POST answered in time")
        .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.text().await.unwrap())
    }
}

impl WsClient {
    /// Open a WebSocket-only session on the endpoint mounted at `path`.
    pub async fn open_at(server: &TestServer, path: &str) -> WsClient {
        let (ws, _) = tokio::time::timeout(
            WAIT,
            tokio_tungstenite::connect_async(server.ws_url_at(path, "EIO=4&transport=websocket")),
        )
        .await
        .expect("websocket handshake in time")
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

    /// Open the upgrade WebSocket of polling session `sid` (no open packet
    /// is expected on it).
    pub async fn upgrade_at(server: &TestServer, path: &str, sid: &str) -> WsClient {
        let url = server.ws_url_at(path, &format!("EIO=4&transport=websocket&sid={sid}"));
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("websocket handshake in time")
            .expect("websocket handshake");
        WsClient {
            ws,
            sid: sid.to_string(),
            answer_pings: true,
        }
    }

    /// Send one text frame whose payload is `bytes`, valid UTF-8 or not.
    pub async fn send_raw_text(&mut self, bytes: Vec<u8>) {
        use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
        use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
        self.ws
            .send(WsMessage::Frame(WsFrame::message(
                bytes,
                OpCode::Data(Data::Text),
                true,
            )))
            .await
            .expect("send");
    }
}

// ---- Socket.IO-level helpers (added for the Socket.IO behaviour tests) ---------

/// What a [`TestApp`] handler saw, in the order it saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    Connect {
        ns: String,
        sid: String,
        user: Option<String>,
        auth: Value,
    },
    Event {
        ns: String,
        sid: String,
        name: String,
        args: Vec<Value>,
        binary: Vec<Vec<u8>>,
        ack: bool,
    },
    Disconnect {
        ns: String,
        sid: String,
        reason: String,
    },
    /// How an `ask` ended: `{"ok": args, "binary": n}` or `{"error": ...}`.
    Answer {
        ns: String,
        sid: String,
        result: Value,
    },
}

/// The receiving end of what [`TestApp`] handlers saw.
pub struct Recorder {
    pub rx: tokio::sync::mpsc::UnboundedReceiver<Seen>,
}

pub type SeenTx = tokio::sync::mpsc::UnboundedSender<Seen>;

/// A channel for [`TestApp`]: give the sender to [`TestApp::namespace`].
pub fn recorder() -> (SeenTx, Recorder) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    (tx, Recorder { rx })
}

impl Recorder {
    /// The next record; panics if none comes within [`WAIT`].
    pub async fn next(&mut self) -> Seen {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("a handler record in time")
            .expect("recorder open")
    }

    /// The next record that is not a `Connect`.
    pub async fn next_non_connect(&mut self) -> Seen {
        loop {
            match self.next().await {
                Seen::Connect { .. } => continue,
                other => return other,
            }
        }
    }

    /// The next `Disconnect`, as (ns, sid, reason), skipping other records.
    pub async fn next_disconnect(&mut self) -> (String, String, String) {
        loop {
            if let Seen::Disconnect { ns, sid, reason } = self.next().await {
                return (ns, sid, reason);
            }
        }
    }

    /// Wait for `sid`'s "parse error" disconnect, asserting on the way that
    /// every event the handler heard was `healthy_sid`'s: a bad packet
    /// never reaches the handler (`what` names the case in failures).
    pub async fn expect_parse_error_disconnect(
        &mut self,
        sid: &str,
        healthy_sid: &str,
        what: &str,
    ) {
        loop {
            match self.next().await {
                Seen::Connect { .. } => {}
                Seen::Event { sid: s, name, .. } => {
                    assert_eq!(s, healthy_sid, "{what} reached the handler as {name}");
                }
                Seen::Disconnect { sid: s, reason, .. } => {
                    assert_eq!(s, sid, "{what}");
                    assert_eq!(reason, "parse error", "{what}");
                    return;
                }
                other => panic!("{what}: unexpected {other:?}"),
            }
        }
    }

    /// Assert nothing is recorded for `wait`.
    pub async fn expect_none(&mut self, wait: Duration) {
        if let Ok(Some(s)) = tokio::time::timeout(wait, self.rx.recv()).await {
            panic!("expected no handler record, got {s:?}");
        }
    }

    /// Everything recorded so far, without waiting.
    pub fn drain(&mut self) -> Vec<Seen> {
        let mut out = Vec::new();
        while let Ok(s) = self.rx.try_recv() {
            out.push(s);
        }
        out
    }
}

/// A scripted handler for the Socket.IO tests. It records every call in
/// its [`Recorder`] channel, then acts on the event name:
///
/// | event | args | action |
/// |---|---|---|
/// | `echo` | any | acks with the payload (binary included), or emits `echo` back |
/// | `join` / `leave` | room (or array of rooms) | joins / leaves, then acks with the sorted rooms |
/// | `publish` | room, payload... | `socket.within(room).emit("msg", payload)` |
/// | `publish-others` | room, payload... | `socket.to(room).emit("msg", payload)` |
/// | `broadcast` | payload... | `socket.broadcast().emit("msg", payload)` |
/// | `ask` | timeout ms, payload... | `emit_with_ack("question", payload)`, then records [`Seen::Answer`] and emits `answer` with `{"ok": args, "binary": n}` or `{"error": "Timeout"\|"Disconnected"}` |
/// | `binary` | n | emits `bin` with `n` attachments `[i; i+1]` (placeholders as args) |
/// | `volatile` | payload... | `emit_volatile("v", payload)` |
/// | `panic` | - | panics |
/// | `disconnect-me` | - | `socket.disconnect()` |
/// | `close-connection` | - | `socket.close_connection()` |
pub struct TestApp {
    tx: SeenTx,
}

impl TestApp {
    pub fn namespace(tx: &SeenTx) -> riptide::Namespace<TestApp> {
        let tx = tx.clone();
        riptide::Namespace::new(move || TestApp { tx: tx.clone() })
    }
}

fn rest_payload(mut p: riptide::Payload, n: usize) -> riptide::Payload {
    p.args.drain(..n.min(p.args.len()));
    p
}

impl riptide::NamespaceHandler for TestApp {
    fn on_connect(&mut self, socket: &riptide::Socket, _ctx: &mut riptide::HandlerContext<Self>) {
        let _ = self.tx.send(Seen::Connect {
            ns: socket.namespace().to_string(),
            sid: socket.id().to_string(),
            user: socket.user().map(str::to_string),
            auth: socket.auth().clone(),
        });
    }

    fn on_event(
        &mut self,
        socket: &riptide::Socket,
        event: riptide::Event,
        ctx: &mut riptide::HandlerContext<Self>,
    ) {
        use serde_json::json;
        let _ = self.tx.send(Seen::Event {
            ns: socket.namespace().to_string(),
            sid: socket.id().to_string(),
            name: event.name.clone(),
            args: event.payload.args.clone(),
            binary: event.payload.binary.iter().map(|b| b.to_vec()).collect(),
            ack: event.ack.is_some(),
        });
        let rooms_arg = |v: Option<&Value>| -> Vec<String> {
            match v {
                Some(Value::String(s)) => vec![s.clone()],
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(|r| r.as_str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            }
        };
        match event.name.as_str() {
            "echo" => match event.ack {
                Some(ack) => ack.send(event.payload),
                None => {
                    let _ = socket.emit("echo", event.payload);
                }
            },
            "join" | "leave" => {
                for room in rooms_arg(event.arg(0)) {
                    if event.name == "join" {
                        // Refusals are logged and counted by `join`.
                        let _ = socket.join(room);
                    } else {
                        socket.leave(room);
                    }
                }
                if let Some(ack) = event.ack {
                    let socket = socket.clone();
                    riptide::spawn(ctx, async move {
                        ack.send(json!(socket.rooms().await));
                    });
                }
            }
            "publish" | "publish-others" => {
                let Some(room) = event.str_arg(0).map(str::to_string) else {
                    return;
                };
                let op = if event.name == "publish" {
                    socket.within(room)
                } else {
                    socket.to(room)
                };
                let _ = op.emit("msg", rest_payload(event.payload, 1));
            }
            "broadcast" => {
                let _ = socket.broadcast().emit("msg", event.payload);
            }
            "ask" => {
                let ms = event.arg(0).and_then(Value::as_u64).unwrap_or(1000);
                let answer = socket
                    .emit_with_ack(
                        "question",
                        rest_payload(event.payload, 1),
                        Some(Duration::from_millis(ms)),
                    )
                    .expect("`question` is not a reserved event name");
                let socket = socket.clone();
                let tx = self.tx.clone();
                riptide::spawn(ctx, async move {
                    let reply = match answer.await {
                        Ok(p) => json!({ "ok": p.args, "binary": p.binary.len() }),
                        Err(e) => json!({ "error": format!("{e:?}") }),
                    };
                    let _ = tx.send(Seen::Answer {
                        ns: socket.namespace().to_string(),
                        sid: socket.id().to_string(),
                        result: reply.clone(),
                    });
                    let _ = socket.emit("answer", reply);
                });
            }
            "binary" => {
                let n = event.arg(0).and_then(Value::as_u64).unwrap_or(1) as u8;
                let mut p = riptide::Payload::default();
                let args: Vec<Value> = (0..n).map(|i| p.attach(vec![i, i + 1])).collect();
                p.args = args;
                let _ = socket.emit("bin", p);
            }
            "volatile" => {
                let _ = socket.emit_volatile("v", event.payload);
            }
            "panic" => panic!("test handler told to panic"),
            "disconnect-me" => socket.disconnect(),
            "close-connection" => socket.close_connection(),
            _ => {}
        }
    }

    fn on_disconnect(
        &mut self,
        socket: &riptide::Socket,
        reason: riptide::DisconnectReason,
        _ctx: &mut riptide::HandlerContext<Self>,
    ) {
        let _ = self.tx.send(Seen::Disconnect {
            ns: socket.namespace().to_string(),
            sid: socket.id().to_string(),
            reason: reason.as_str().to_string(),
        });
    }
}

impl TestServer {
    /// Poll `cond` every 10 ms until it holds; panics after [`WAIT`].
    pub async fn wait_for(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !cond() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Poll `/metrics` until `series` equals `value`; asserts it does.
    pub async fn assert_metric(&self, series: &str, value: f64) {
        let got = self.wait_metric(series, value).await;
        assert_eq!(got, value, "metric {series}");
    }
}

impl WsClient {
    /// Read the next text frame (pings answered) and assert it is `want`.
    pub async fn expect_text(&mut self, want: &str) {
        let got = self.recv().await;
        assert_eq!(got, Frame::Text(want.to_string()), "expected {want:?}");
    }

    /// Read the next binary frame.
    pub async fn recv_binary(&mut self) -> Vec<u8> {
        match self.recv().await {
            Frame::Binary(b) => b,
            other => panic!("expected a binary frame, got {other:?}"),
        }
    }

    /// Send a CONNECT for `ns` and return the server's raw reply.
    pub async fn connect_raw(&mut self, ns: &str, auth: Option<Value>) -> String {
        let prefix = if ns == "/" {
            String::new()
        } else {
            format!("{ns},")
        };
        let auth = auth.map(|a| a.to_string()).unwrap_or_default();
        self.send(&format!("40{prefix}{auth}")).await;
        self.recv_text().await
    }

    /// Check the connection still answers: an `echo` with an ack on `ns`.
    pub async fn assert_alive(&mut self, ns: &str, id: u64) {
        let prefix = if ns == "/" {
            String::new()
        } else {
            format!("{ns},")
        };
        self.send(&format!("42{prefix}{id}[\"echo\",\"alive\"]"))
            .await;
        self.expect_text(&format!("43{prefix}{id}[\"alive\"]"))
            .await;
    }
}

impl PollingClient {
    /// CONNECT to `ns` over polling; returns the socket id.
    pub async fn sio_connect(&self, ns: &str) -> String {
        let prefix = if ns == "/" {
            String::new()
        } else {
            format!("{ns},")
        };
        let (status, _) = self.post(format!("40{prefix}")).await;
        assert_eq!(status, 200);
        let expect = format!("40{prefix}");
        let reply = self.get_until(|r| r.starts_with(&expect)).await;
        let v: Value = serde_json::from_str(&reply[expect.len()..]).unwrap();
        v["sid"].as_str().unwrap().to_string()
    }

    /// One GET, split into its records (pings answered).
    pub async fn get_records(&self) -> Vec<String> {
        let (status, body) = self.get().await;
        assert_eq!(status, 200, "poll failed: {body}");
        let mut out = Vec::new();
        for r in body.split('\x1e') {
            if r == "2" {
                self.post("3").await;
            } else {
                out.push(r.to_string());
            }
        }
        out
    }
}

impl WsClient {
    /// Read the next text frame and assert it is `prefix` followed by JSON
    /// equal to `json` (compared as values, so object key order is free).
    pub async fn expect_packet(&mut self, prefix: &str, json: Value) {
        let got = self.recv_text().await;
        assert!(
            got.starts_with(prefix),
            "expected {prefix}{json}, got {got:?}"
        );
        let v: Value = serde_json::from_str(&got[prefix.len()..])
            .unwrap_or_else(|e| panic!("JSON after {prefix:?} in {got:?}: {e}"));
        assert_eq!(v, json, "payload of {got:?}");
    }
}

/// Assert `record` is `prefix` followed by JSON equal to `json`.
pub fn assert_packet(record: &str, prefix: &str, json: Value) {
    assert!(
        record.starts_with(prefix),
        "expected {prefix}{json}, got {record:?}"
    );
    let v: Value = serde_json::from_str(&record[prefix.len()..])
        .unwrap_or_else(|e| panic!("JSON after {prefix:?} in {record:?}: {e}"));
    assert_eq!(v, json, "payload of {record:?}");
}

impl PollingClient {
    /// GET until `n` records (pings answered and left out) have arrived: the
    /// parts of one binary packet may come in separate responses.
    pub async fn get_n_records(&self, n: usize) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut out = Vec::new();
        while out.len() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {out:?} of {n} records in time"
            );
            out.extend(self.get_records().await);
        }
        assert_eq!(out.len(), n, "more records than expected: {out:?}");
        out
    }
}
