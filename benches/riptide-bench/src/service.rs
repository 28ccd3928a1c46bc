//! `service-publish`: Riptide's service mode (`../shared/SERVICE.md`) as a
//! backend uses it. `--clients` sockets connect, each with its own HS256 JWT
//! (`sub` = `u<i>`) in the CONNECT auth payload `{"token": …}`, so the server
//! puts client i in room `user:u<i>`. The generator then publishes through the
//! server API, `POST /api/publish` with `Authorization: Bearer <--api-key>`:
//! one request names `--rooms-per-request` consecutive user rooms (a batch;
//! 10,000 clients at 100 rooms per request make 100 batches, one sweep), with
//! event `notification:new` and data `{"t": <CLOCK_MONOTONIC µs when the
//! request was built>, "n": <request number>}`.
//!
//! Request n targets batch `n mod batches`; for the clients of that batch it
//! is their round `n / batches`, which each client tracks like the fan-out
//! receivers track `seq` (loss, duplicates, order, exact). Every batch belongs
//! to one of `--api-concurrency` HTTP/1.1 keep-alive connections, which sends
//! a batch's next round only once the previous one was answered: a client's
//! notifications are published one after another, so reordering is the
//! server's. `--rate` paces request n at `n / rate` s after the start (`0`: as
//! fast as the connections' answers come back).
//!
//! Expected deliveries: for every request answered `200 {"ok":true}`, the
//! connected clients of its batch (one per user room). A request that failed
//! is not expected; what it delivered anyway is counted apart
//! (`received_from_failed_requests`) and not against loss.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_tungstenite::tungstenite::Message;

use crate::cli::Opts;
use crate::client::{self, ConnectOpts, ConnectPhase, Packet, Ready, Target};
use crate::fanout::SeqTracker;
use crate::stats::{self, now_ns, CpuMark, Latency, ServerSampler};
use crate::{common_params, progress, Report};

/// The event every publish emits.
pub const EVENT: &str = "notification:new";

// ---------------------------------------------------------------------------
// HS256 JWTs (RFC 7519 / RFC 2104), minted here so the generator needs no JWT
// library: base64url(header).base64url(claims).base64url(HMAC-SHA256).

pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .into()
}

/// A compact HS256 JWT over `claims` (a JSON object's text).
pub fn jwt_hs256(secret: &[u8], claims: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let signing = format!(
        "{}.{}",
        b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64.encode(claims)
    );
    let sig = b64.encode(hmac_sha256(secret, signing.as_bytes()));
    format!("{signing}.{sig}")
}

/// The CONNECT auth payload of client `idx`: `{"token": …}` for user
/// `u<idx>`, valid for an hour.
pub fn auth_payload(secret: &[u8], idx: usize) -> String {
    let now = unix_now();
    let claims = json!({"sub": format!("u{idx}"), "iat": now, "exp": now + 3600}).to_string();
    json!({"token": jwt_hs256(secret, &claims)}).to_string()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// A minimal HTTP/1.1 client: one keep-alive connection, one request at a time.

/// One parsed response: status, body, and whether the server closes.
#[derive(Debug, PartialEq, Eq)]
struct Response {
    status: u16,
    body: String,
    close: bool,
}

/// Parse one response from the start of `buf`: `None` while incomplete,
/// `Some(Err)` when it is not HTTP/1.x, else the response and the bytes it took.
fn parse_response(buf: &[u8], eof: bool) -> Option<Result<(Response, usize), String>> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let status = match (
        version.starts_with("HTTP/1."),
        parts.next().map(str::parse::<u16>),
    ) {
        (true, Some(Ok(s))) => s,
        _ => {
            return Some(Err(format!(
                "not an HTTP/1.x status line: {status_line:.80}"
            )))
        }
    };
    let (mut length, mut chunked, mut close) = (None, false, version == "HTTP/1.0");
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
        match k.as_str() {
            "content-length" => match v.parse::<usize>() {
                Ok(n) => length = Some(n),
                Err(_) => return Some(Err(format!("bad content-length {v:?}"))),
            },
            "transfer-encoding" => chunked = v.split(',').any(|t| t.trim() == "chunked"),
            "connection" => {
                if v.split(',').any(|t| t.trim() == "close") {
                    close = true
                } else if v.split(',').any(|t| t.trim() == "keep-alive") {
                    close = false
                }
            }
            _ => {}
        }
    }
    let start = head_end + 4;
    let no_body = status == 204 || status == 304 || (100..200).contains(&status);
    let (body, end) = if no_body {
        (Vec::new(), start)
    } else if chunked {
        let mut body = Vec::new();
        let mut pos = start;
        loop {
            let line_end = pos + buf[pos..].windows(2).position(|w| w == b"\r\n")?;
            let size_text = String::from_utf8_lossy(&buf[pos..line_end]);
            let size_hex = size_text.split(';').next().unwrap_or("").trim();
            let size = match usize::from_str_radix(size_hex, 16) {
                Ok(n) => n,
                Err(_) => return Some(Err(format!("bad chunk size {size_hex:?}"))),
            };
            pos = line_end + 2;
            if size == 0 {
                // Trailers, if any, up to an empty line.
                loop {
                    let e = pos + buf[pos..].windows(2).position(|w| w == b"\r\n")?;
                    let empty = e == pos;
                    pos = e + 2;
                    if empty {
                        break;
                    }
                }
                break (body, pos);
            }
            if buf.len() < pos + size + 2 {
                return None;
            }
            body.extend_from_slice(&buf[pos..pos + size]);
            pos += size + 2;
        }
    } else if let Some(n) = length {
        if buf.len() < start + n {
            return None;
        }
        (buf[start..start + n].to_vec(), start + n)
    } else {
        // No length: the body runs to the end of the connection.
        if !eof {
            return None;
        }
        close = true;
        (buf[start..].to_vec(), buf.len())
    };
    Some(Ok((
        Response {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
            close,
        },
        end,
    )))
}

struct HttpError {
    kind: &'static str,
    detail: String,
    /// The request may have reached the server (do not retry it).
    maybe_sent: bool,
}

fn io_kind(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "refused",
        ConnectionReset | BrokenPipe => "reset",
        ConnectionAborted => "aborted",
        TimedOut => "timeout",
        AddrNotAvailable | AddrInUse => "no_local_port",
        _ => "io",
    }
}

struct Http {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    /// Connections opened after the first.
    reconnects: u64,
    opened: u64,
}

impl Http {
    fn new(addr: SocketAddr) -> Http {
        Http {
            addr,
            stream: None,
            buf: Vec::with_capacity(4096),
            reconnects: 0,
            opened: 0,
        }
    }

    /// Send `request` (a whole HTTP/1.1 request) and read the answer. A
    /// reused connection the server closed while idle (write fails, or EOF
    /// before any byte of the answer) is reopened once and the request sent
    /// again: it cannot have reached the server.
    async fn round_trip(&mut self, request: &[u8]) -> Result<Response, HttpError> {
        let reused = self.stream.is_some();
        match self.try_once(request).await {
            Err(e) if reused && !e.maybe_sent => {
                self.stream = None;
                self.try_once(request).await
            }
            r => r,
        }
    }

    async fn try_once(&mut self, request: &[u8]) -> Result<Response, HttpError> {
        let reused = self.stream.is_some();
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr).await.map_err(|e| HttpError {
                kind: io_kind(&e),
                detail: format!("connect: {e}"),
                maybe_sent: false,
            })?;
            let _ = s.set_nodelay(true);
            if self.opened > 0 {
                self.reconnects += 1;
            }
            self.opened += 1;
            self.stream = Some(s);
            self.buf.clear();
        }
        let stream = self.stream.as_mut().expect("connected above");
        if let Err(e) = stream.write_all(request).await {
            self.stream = None;
            return Err(HttpError {
                kind: io_kind(&e),
                detail: format!("write: {e}"),
                // A write error on a fresh connection: nothing to retry on.
                maybe_sent: !reused,
            });
        }
        let mut got_any = false;
        loop {
            if !self.buf.is_empty() {
                match parse_response(&self.buf, false) {
                    Some(Ok((resp, used))) => {
                        self.buf.drain(..used);
                        if resp.close {
                            self.stream = None;
                        }
                        return Ok(resp);
                    }
                    Some(Err(detail)) => {
                        self.stream = None;
                        return Err(HttpError {
                            kind: "bad_response",
                            detail,
                            maybe_sent: true,
                        });
                    }
                    None => {}
                }
            }
            let stream = self.stream.as_mut().expect("still connected");
            match stream.read_buf(&mut self.buf).await {
                Ok(0) => {
                    self.stream = None;
                    // A body that runs to the end of the connection.
                    if let Some(Ok((resp, _))) = parse_response(&self.buf, true) {
                        return Ok(resp);
                    }
                    return Err(HttpError {
                        kind: "closed",
                        detail: "connection closed before a complete answer".into(),
                        maybe_sent: got_any || !reused,
                    });
                }
                Ok(_) => got_any = true,
                Err(e) => {
                    self.stream = None;
                    return Err(HttpError {
                        kind: io_kind(&e),
                        detail: format!("read: {e}"),
                        maybe_sent: got_any
                            || !reused
                            || e.kind() != std::io::ErrorKind::ConnectionReset,
                    });
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Clients

#[derive(serde::Deserialize)]
struct Note {
    t: u64,
    n: u64,
}

/// `["notification:new", {"t":…,"n":…}]` → the data (any key order, other
/// keys and a trailing argument ignored).
fn note(body: &str) -> Option<Note> {
    #[derive(serde::Deserialize)]
    #[allow(dead_code)] // the third element is only skipped over
    struct Msg<'a>(
        #[serde(borrow)] &'a str,
        Note,
        #[serde(default)] Option<serde::de::IgnoredAny>,
    );
    let Msg(name, n, _) = serde_json::from_str(body).ok()?;
    (name == EVENT).then_some(n)
}

#[derive(Default)]
struct ClientStats {
    connected: bool,
    /// Rounds of this client's batch received (request n = round × batches + batch).
    seq: SeqTracker,
    /// Notifications for a request whose rooms did not include this client's.
    wrong_room: u64,
    /// Events other than `notification:new`.
    other_events: u64,
    last_rx_ns: u64,
    closed: Option<&'static str>,
}

struct Shared {
    delivered: AtomicU64,
    /// Deliveries the answered requests call for so far (for the drain).
    expected: AtomicU64,
    latency: Latency,
    connect_error: Mutex<Option<String>>,
    /// Per client: connected.
    connected: Vec<AtomicBool>,
}

struct ClientCtx {
    target: Arc<Target>,
    copts: ConnectOpts,
    sem: Arc<Semaphore>,
    shared: Arc<Shared>,
    secret: Vec<u8>,
    rooms_per_request: u64,
    batches: u64,
}

async fn client_task(
    idx: usize,
    c: Arc<ClientCtx>,
    ready: mpsc::UnboundedSender<Ready>,
    mut stop: watch::Receiver<bool>,
) -> ClientStats {
    let mut st = ClientStats::default();
    let auth = auth_payload(&c.secret, idx);
    let permit = c.sem.clone().acquire_owned().await;
    let t = Instant::now();
    let mut conn = match client::connect_with(&c.target, &c.copts, Some(&auth)).await {
        Ok((conn, _)) => conn,
        Err(e) => {
            if e.kind == "connect_error" {
                c.shared
                    .connect_error
                    .lock()
                    .get_or_insert(e.detail.clone());
            }
            let _ = ready.send(Err(e.kind));
            return st;
        }
    };
    drop(permit);
    st.connected = true;
    c.shared.connected[idx].store(true, Ordering::Relaxed);
    let _ = ready.send(Ok(t.elapsed()));
    drop(ready);
    let batch = idx as u64 / c.rooms_per_request;
    let ws = &mut conn.ws;
    loop {
        tokio::select! {
            biased;
            r = stop.changed() => if r.is_err() || *stop.borrow() { break },
            m = ws.next() => {
                let rx_ns = now_ns();
                match &m {
                    Some(Ok(Message::Text(text))) => match client::parse(text) {
                        Packet::Event { body, .. } => match note(body) {
                            Some(n) if n.n % c.batches == batch => {
                                st.last_rx_ns = rx_ns;
                                if st.seq.accept(n.n / c.batches) {
                                    c.shared
                                        .latency
                                        .record(idx, rx_ns.saturating_sub(n.t.saturating_mul(1000)));
                                    c.shared.delivered.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            Some(_) => st.wrong_room += 1,
                            None => st.other_events += 1,
                        },
                        Packet::Ping => match ws.send(Message::text("3")).await {
                            Ok(()) => {}
                            Err(_) => {
                                st.closed = Some("write_failed");
                                break;
                            }
                        },
                        Packet::Close => { st.closed = Some("eio_close"); break }
                        Packet::Disconnect => { st.closed = Some("sio_disconnect"); break }
                        _ => {}
                    },
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                        st.closed = Some(client::end_kind(&m));
                        break;
                    }
                    Some(Ok(_)) => {}
                }
            }
        }
    }
    st
}

// ---------------------------------------------------------------------------
// The publisher: --api-concurrency connections, each owning some batches.

struct ApiCtx {
    addr: SocketAddr,
    /// `Host` and `Authorization` header lines, ready to send.
    headers: String,
    /// Per batch: the `rooms` array's JSON text.
    rooms_json: Vec<String>,
    /// Per batch: clients connected (deliveries one request calls for).
    connected: Vec<u64>,
    batches: u64,
    workers: u64,
    rate: f64,
    max_requests: Option<u64>,
    timeout: Duration,
    shared: Arc<Shared>,
    first_error: Mutex<Option<String>>,
}

struct WorkerStats {
    sent: u64,
    acked: u64,
    /// Per batch it owns: requests answered ok.
    acked_per_batch: Vec<(u64, u64)>,
    /// Requests that failed: (batch, round).
    failed: Vec<(u64, u64)>,
    failures: stats::Failures,
    answer: Histogram<u64>,
    max_lag: Duration,
    reconnects: u64,
    last_answer: Option<Instant>,
}

fn answered_ok(r: &Response) -> bool {
    r.status == 200
        && serde_json::from_str::<Value>(&r.body)
            .map(|v| v["ok"] == json!(true))
            .unwrap_or(false)
}

async fn api_worker(w: u64, a: Arc<ApiCtx>, start: Instant, deadline: Instant) -> WorkerStats {
    let mine: Vec<u64> = (w..a.batches).step_by(a.workers as usize).collect();
    let mut st = WorkerStats {
        sent: 0,
        acked: 0,
        acked_per_batch: mine.iter().map(|&b| (b, 0)).collect(),
        failed: Vec::new(),
        failures: Default::default(),
        answer: stats::histogram(),
        max_lag: Duration::ZERO,
        reconnects: 0,
        last_answer: None,
    };
    let mut http = Http::new(a.addr);
    let mut round = 0u64;
    'rounds: loop {
        for (slot, &b) in mine.iter().enumerate() {
            let n = round * a.batches + b;
            if let Some(m) = a.max_requests {
                if n >= m {
                    break 'rounds;
                }
            }
            if a.rate > 0.0 {
                let due = start + Duration::from_secs_f64(n as f64 / a.rate);
                if a.max_requests.is_none() && due >= deadline {
                    break 'rounds;
                }
                let now = Instant::now();
                if due > now {
                    tokio::time::sleep_until(due.into()).await;
                } else {
                    st.max_lag = st.max_lag.max(now - due);
                }
            } else if a.max_requests.is_none() && Instant::now() >= deadline {
                break 'rounds;
            }
            let body = format!(
                "{{\"rooms\":{},\"event\":\"{EVENT}\",\"data\":{{\"t\":{},\"n\":{n}}}}}",
                a.rooms_json[b as usize],
                now_ns() / 1000
            );
            let request = format!(
                "POST /api/publish HTTP/1.1\r\n{}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                a.headers,
                body.len()
            );
            let sent = Instant::now();
            st.sent += 1;
            let outcome =
                tokio::time::timeout(a.timeout, http.round_trip(request.as_bytes())).await;
            let failure = match outcome {
                Ok(Ok(resp)) if answered_ok(&resp) => {
                    st.answer
                        .saturating_record(sent.elapsed().as_nanos() as u64);
                    st.acked += 1;
                    st.acked_per_batch[slot].1 += 1;
                    a.shared
                        .expected
                        .fetch_add(a.connected[b as usize], Ordering::Relaxed);
                    None
                }
                Ok(Ok(resp)) => Some((
                    if resp.status == 200 {
                        "not_ok".to_string()
                    } else {
                        format!("http_{}", resp.status)
                    },
                    format!("HTTP {}: {:.200}", resp.status, resp.body),
                )),
                Ok(Err(e)) => Some((e.kind.to_string(), e.detail)),
                Err(_) => {
                    // The answer may still come: this connection is done.
                    http.stream = None;
                    Some((
                        "timeout".to_string(),
                        format!("no answer within {:?}", a.timeout),
                    ))
                }
            };
            st.last_answer = Some(Instant::now());
            if let Some((kind, detail)) = failure {
                st.failures.add(&kind);
                st.failed.push((b, round));
                a.first_error
                    .lock()
                    .get_or_insert_with(|| format!("request {n}: {detail}"));
            }
        }
        if mine.is_empty() {
            break;
        }
        round += 1;
    }
    st.reconnects = http.reconnects;
    st
}

// ---------------------------------------------------------------------------

pub async fn run(o: &Opts) -> Result<Report, String> {
    let api_target = Target::resolve(&o.url, &o.path).await?;
    let client_target = Arc::new(match &o.url_b {
        Some(b) => Target::resolve(b, &o.path).await?,
        None => api_target.clone(),
    });
    let secret = o.jwt_secret.clone().unwrap_or_default().into_bytes();
    let api_key = o.api_key.clone().unwrap_or_default();
    let n_clients = o.clients;
    let per = o.rooms_per_request as u64;
    let batches = (n_clients as u64).div_ceil(per);
    let workers = (o.api_concurrency as u64).min(batches).max(1);
    let shared = Arc::new(Shared {
        delivered: AtomicU64::new(0),
        expected: AtomicU64::new(0),
        latency: Latency::new(),
        connect_error: Mutex::new(None),
        connected: (0..n_clients).map(|_| AtomicBool::new(false)).collect(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let sampler = ServerSampler::start(o.server_pids.clone(), o.sample);

    progress!(
        "service-publish: connecting {n_clients} clients with JWTs to {}",
        client_target.ws_url
    );
    let ctx = Arc::new(ClientCtx {
        target: client_target.clone(),
        copts: ConnectOpts {
            timeout: o.connect_timeout,
            deflate: o.deflate,
            rcvbuf: None,
        },
        sem: Arc::new(Semaphore::new(o.concurrency)),
        shared: shared.clone(),
        secret,
        rooms_per_request: per,
        batches,
    });
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<Ready>();
    let started = Instant::now();
    let clients: Vec<_> = (0..n_clients)
        .map(|i| {
            tokio::spawn(client_task(
                i,
                ctx.clone(),
                ready_tx.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();
    drop(ready_tx);
    let connect = ConnectPhase::collect(&mut ready_rx, n_clients, "clients", started).await;
    let connect_error = shared.connect_error.lock().clone();
    progress!(
        "clients: {} connected, {} failed in {:.2} s{}",
        connect.ok,
        connect.failures.total(),
        connect.elapsed.as_secs_f64(),
        connect_error
            .as_ref()
            .map(|e| format!(" (first CONNECT_ERROR: {e:.200})"))
            .unwrap_or_default()
    );
    if connect.ok == 0 {
        let _ = stop_tx.send(true);
        return Err(match connect_error {
            Some(e) => format!("no client could connect: {e:.300}"),
            None => format!("no client could connect ({:?})", connect.failures.0),
        });
    }

    // Per batch, the clients that connected (each set its flag before it
    // reported ready, and every one has reported): the deliveries one
    // request to that batch calls for.
    let mut connected = vec![0u64; batches as usize];
    for (i, f) in shared.connected.iter().enumerate() {
        if f.load(Ordering::Relaxed) {
            connected[i / per as usize] += 1;
        }
    }

    let rooms_json: Vec<String> = (0..batches)
        .map(|b| {
            let lo = b * per;
            let hi = ((b + 1) * per).min(n_clients as u64);
            let rooms: Vec<String> = (lo..hi).map(|i| format!("user:u{i}")).collect();
            serde_json::to_string(&rooms).unwrap_or_default()
        })
        .collect();
    let api = Arc::new(ApiCtx {
        addr: api_target.addr,
        headers: format!(
            "Host: {}\r\nAuthorization: Bearer {api_key}\r\n",
            api_target.addr
        ),
        rooms_json,
        connected: connected.clone(),
        batches,
        workers,
        rate: o.rate,
        max_requests: o.messages,
        timeout: o.api_timeout,
        shared: shared.clone(),
        first_error: Mutex::new(None),
    });
    progress!(
        "publishing to {batches} batches of {per} user rooms over {workers} connection(s) at {} for {}",
        if o.rate > 0.0 {
            format!("{} requests/s", o.rate)
        } else {
            "full speed".into()
        },
        match o.messages {
            Some(m) => format!("{m} requests"),
            None => format!("{:?}", o.duration),
        }
    );
    let phase0 = CpuMark::now();
    let pub_start = Instant::now();
    let pub_start_ns = now_ns();
    let deadline = pub_start + o.duration;
    let tasks: Vec<_> = (0..workers)
        .map(|w| tokio::spawn(api_worker(w, api.clone(), pub_start, deadline)))
        .collect();
    let mut ws = Vec::new();
    for t in tasks {
        ws.push(t.await.map_err(|e| e.to_string())?);
    }
    let pub_end = ws
        .iter()
        .filter_map(|w| w.last_answer)
        .max()
        .unwrap_or_else(Instant::now);
    let pub_elapsed = pub_end.saturating_duration_since(pub_start);
    let (mut sent, mut acked, mut reconnects) = (0u64, 0u64, 0u64);
    let mut max_lag = Duration::ZERO;
    let mut failures = stats::Failures::default();
    let mut answer = stats::histogram();
    let mut acked_per_batch = vec![0u64; batches as usize];
    let mut failed_by_batch: HashMap<u64, Vec<u64>> = HashMap::new();
    for w in &ws {
        sent += w.sent;
        acked += w.acked;
        reconnects += w.reconnects;
        max_lag = max_lag.max(w.max_lag);
        for (k, v) in &w.failures.0 {
            *failures.0.entry(k.clone()).or_default() += v;
        }
        answer.add(&w.answer).map_err(|e| e.to_string())?;
        for &(b, n) in &w.acked_per_batch {
            acked_per_batch[b as usize] += n;
        }
        for &(b, r) in &w.failed {
            failed_by_batch.entry(b).or_default().push(r);
        }
    }
    let api_error = api.first_error.lock().clone();
    if let Some(e) = &api_error {
        progress!(
            "API: {} of {sent} requests failed; first: {e:.300}",
            failures.total()
        );
    }
    progress!(
        "sent {sent} requests in {:.2} s ({acked} answered ok); waiting up to {:?} for {} deliveries",
        pub_elapsed.as_secs_f64(),
        o.drain,
        shared.expected.load(Ordering::Relaxed)
    );
    let drain_deadline = Instant::now() + o.drain;
    while shared.delivered.load(Ordering::Relaxed) < shared.expected.load(Ordering::Relaxed)
        && Instant::now() < drain_deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let phase1 = CpuMark::now();
    let _ = stop_tx.send(true);

    let (mut received, mut duplicates, mut out_of_order, mut wrong_room) = (0u64, 0u64, 0u64, 0u64);
    let (mut expected, mut loss, mut loss_max, mut from_failed, mut other_events) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut receivers, mut last_rx_ns) = (0usize, pub_start_ns);
    let mut closed = stats::Failures::default();
    for (i, h) in clients.into_iter().enumerate() {
        let st = h.await.map_err(|e| e.to_string())?;
        if !st.connected {
            continue;
        }
        receivers += 1;
        let b = i as u64 / per;
        let extra = failed_by_batch
            .get(&b)
            .map(|rounds| rounds.iter().filter(|&&r| st.seq.contains(r)).count() as u64)
            .unwrap_or(0);
        let want = acked_per_batch[b as usize];
        let lost = want.saturating_sub(st.seq.received - extra);
        expected += want;
        loss += lost;
        loss_max = loss_max.max(lost);
        from_failed += extra;
        received += st.seq.received;
        duplicates += st.seq.duplicates;
        out_of_order += st.seq.out_of_order;
        wrong_room += st.wrong_room;
        other_events += st.other_events;
        last_rx_ns = last_rx_ns.max(st.last_rx_ns);
        if let Some(k) = st.closed {
            closed.add(k);
        }
    }
    let window = Duration::from_nanos(last_rx_ns.saturating_sub(pub_start_ns));
    let server = sampler.finish(false);
    let latency = shared.latency.merged();

    let mut params = common_params(o);
    params.insert("clients".into(), json!(n_clients));
    params.insert("rooms_per_request".into(), json!(per));
    params.insert("batches".into(), json!(batches));
    params.insert("api_concurrency".into(), json!(o.api_concurrency));
    params.insert("api_connections".into(), json!(workers));
    params.insert(
        "api_timeout_ms".into(),
        json!(o.api_timeout.as_millis() as u64),
    );
    params.insert("rate".into(), json!(o.rate));
    params.insert("duration_s".into(), json!(o.duration.as_secs_f64()));
    params.insert("messages".into(), json!(o.messages));
    params.insert("drain_ms".into(), json!(o.drain.as_millis() as u64));
    params.insert("event".into(), json!(EVENT));
    params.insert(
        "jwt_secret_bytes".into(),
        json!(o.jwt_secret.as_ref().map(|s| s.len())),
    );
    let psecs = pub_elapsed.as_secs_f64().max(1e-9);
    let wsecs = window.as_secs_f64().max(1e-9);
    let mut connect_json = connect.json();
    connect_json["first_connect_error"] = json!(connect_error);
    let mut body = Map::new();
    body.insert("params".into(), Value::Object(params));
    body.insert("connect".into(), connect_json);
    body.insert(
        "api".into(),
        json!({
            "requests": sent,
            "acked": acked,
            "failed": failures.total(),
            "failures": failures.json(),
            "first_error": api_error,
            "elapsed_s": stats::round3(psecs),
            "requests_per_s": stats::round1(acked as f64 / psecs),
            "rate_achieved": stats::round1(sent as f64 / psecs),
            "max_lag_ms": stats::round1(max_lag.as_secs_f64() * 1e3),
            "connections": workers,
            "reconnects": reconnects,
            "answer_us": stats::latency_json(&answer),
        }),
    );
    body.insert(
        "delivery".into(),
        json!({
            "receivers": receivers,
            "expected": expected,
            "received": received,
            "received_from_failed_requests": from_failed,
            "loss": loss,
            "loss_max_per_receiver": loss_max,
            "duplicates": duplicates,
            "out_of_order": out_of_order,
            "wrong_room": wrong_room,
            "other_events": other_events,
            "window_s": stats::round3(wsecs),
            "deliveries_per_s": stats::round1(received as f64 / wsecs),
            "receivers_closed": closed.total(),
            "receivers_closed_kinds": closed.json(),
        }),
    );
    body.insert("latency_us".into(), stats::latency_json(&latency));
    body.insert("server".into(), server);
    Ok(Report {
        body,
        phase: (phase0, phase1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_and_jwt_match_known_vectors() {
        // The hmac crate's README example.
        let mac = hmac_sha256(b"my secret and secure key", b"input message");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "97d2a569059bbcd8ead4444ff99071f4c01d005bcefe0d3567e1be628e5fdcd9"
        );
        // jwt.io's HS256 example.
        let t = jwt_hs256(
            b"your-256-bit-secret",
            r#"{"sub":"1234567890","name":"John Doe","iat":1516239022}"#,
        );
        assert_eq!(
            t,
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
             eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.\
             SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
        );
        // A key longer than the block is hashed first (RFC 4231 case 6).
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn parses_responses() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\ncontent-type: application/json\r\n\r\n{\"ok\":true}HTTP/1.1";
        let (resp, used) = parse_response(r, false).unwrap().unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, "{\"ok\":true}");
        assert!(!resp.close);
        assert_eq!(&r[used..], b"HTTP/1.1");
        assert!(answered_ok(&resp));
        // Incomplete body.
        assert!(parse_response(&r[..70], false).is_none());
        // Chunked, with connection: close.
        let c = b"HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\n{\"err\r\n4;x=y\r\nor\":\r\n4\r\n\"x\"}\r\n0\r\n\r\n";
        let (resp, used) = parse_response(c, false).unwrap().unwrap();
        assert_eq!(
            (resp.status, resp.body.as_str(), resp.close),
            (401, "{\"error\":\"x\"}", true)
        );
        assert_eq!(used, c.len());
        assert!(parse_response(&c[..c.len() - 2], false).is_none());
        // No length: to EOF.
        let e = b"HTTP/1.0 200 OK\r\n\r\n{\"ok\":true}";
        assert!(parse_response(e, false).is_none());
        let (resp, _) = parse_response(e, true).unwrap().unwrap();
        assert!(answered_ok(&resp) && resp.close);
        assert!(parse_response(b"SSH-2.0\r\n\r\n", false).unwrap().is_err());
        // 200 without ok: true is not an ack.
        assert!(!answered_ok(&Response {
            status: 200,
            body: "{\"ok\":false}".into(),
            close: false
        }));
    }

    #[test]
    fn reads_notifications() {
        let n = note(r#"["notification:new",{"n":7,"t":5}]"#).unwrap();
        assert_eq!((n.t, n.n), (5, 7));
        assert!(note(r#"["auth:expiring",{"exp":1}]"#).is_none());
        assert!(note(r#"["notification:new",{"t":5,"n":7},"off-1"]"#).is_some());
    }
}
