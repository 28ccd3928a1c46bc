//! The WebSocket transport.
//!
//! Every WebSocket detail lives in this module. The session writes through a
//! [`WsSink`] (a queue bounded in frames and bytes) and receives [`WsEvent`]s
//! from a reader task; the layers above never see WebSocket frames.
//!
//! Why not an actix-web-actors `WebsocketContext` (nor `actix-ws`): both
//! queue outbound messages without a bound and can only end the response body
//! gracefully, so actix-web keeps trying to flush to a peer that stopped
//! reading and the connection, its memory and its file descriptor stay until
//! the kernel gives up (docs/decisions.md has the evidence). Here the response
//! body is our own stream over a bounded queue, and a killed sink makes the
//! body fail, which makes actix-web drop the connection at once. The handshake
//! is still actix-web-actors' and the framing is actix-http's codec.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use actix_http::ws::CloseCode;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use parking_lot::Mutex;

use super::packet::{Packet, Protocol};
use super::session::{Frame, SessionHandle, WsEvent};

mod conn;
pub(crate) mod deflate;
mod reader;
#[cfg(any(test, feature = "internals"))]
pub use conn::Writer;
pub(crate) use conn::{Takeover, TakeoverOffer};

static NEXT_WS_ID: AtomicU64 = AtomicU64::new(1);

/// How long a closing WebSocket may take to write what is queued and its
/// close frame before the connection is dropped (see [`WsSink::close`]).
pub const CLOSE_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Bounds of one WebSocket's outbound queue.
#[derive(Debug, Clone, Copy)]
pub struct WsLimits {
    /// Largest inbound frame (and reassembled message).
    pub max_payload: usize,
    /// Frames queued before the client counts as full.
    pub max_frames: usize,
    /// Bytes queued past which the client is closed at once.
    pub max_bytes: usize,
    /// permessage-deflate, when on: payloads of at least this many bytes
    /// go compressed to a client that negotiated it.
    pub deflate_threshold: Option<usize>,
}

/// What happened to a frame handed to [`WsSink::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    /// Queued; `depth` frames are now waiting.
    Queued { depth: usize },
    /// Queued, but the queue now holds more than `max_frames`.
    QueuedFull { depth: usize },
    /// Volatile and the queue was full: not queued.
    DroppedVolatile,
    /// Queued bytes exceed `max_bytes`: the sink is dead, close the session.
    OverBytes,
    /// The sink is closed or killed: nothing is written any more.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// A close frame is queued; the body ends after it.
    Closing,
    /// The body fails on its next poll, which drops the TCP connection.
    Killed,
}

struct Outbound {
    /// The connection's socket, while the response body (and so the
    /// connection) is alive: a kill shuts it down, see [`WsSink::kill`].
    fd: Option<ConnFd>,
    chunks: VecDeque<Bytes>,
    bytes: usize,
    frames: usize,
    /// Chunks that end a frame, so frames can be counted as they leave.
    frame_ends: VecDeque<usize>,
    sent_chunks: usize,
    /// Chunks taken off `chunks` by the connection's writer and not yet
    /// written ([`conn`]; always 0 for the response body).
    in_flight: usize,
    /// The response body was dropped: nothing more is written.
    body_gone: bool,
    /// `sent_chunks` when the body last answered `Pending`. actix-http's h1
    /// dispatcher writes its buffer to the socket right after the body
    /// answers `Pending`, in the same poll, so by the body's next poll every
    /// chunk below this mark has been handed to the kernel (see
    /// [`WsSink::flushed`]).
    settled_chunks: usize,
    /// [`WsSink::flushed`] waiters: the chunk count each one waits for.
    flush_waiters: FlushWaiters,
    state: State,
    waker: Option<Waker>,
}

/// [`WsSink::flushed`] waiters: the chunk count each one waits for. Boxed
/// when there are any (an upgrade's probe, a close): inline, an empty
/// vector was 16 bytes more in every WebSocket's shared state, which then
/// took a larger allocation class (docs/decisions.md, "Idle memory").
#[derive(Default)]
// Boxed on purpose: the vector inline is 24 bytes, the box 8.
#[allow(clippy::box_collection)]
struct FlushWaiters(Option<Box<Vec<FlushWaiter>>>);

/// A waiter: the chunk count it waits for, and how it is told.
type FlushWaiter = (usize, tokio::sync::oneshot::Sender<()>);

impl FlushWaiters {
    fn push(&mut self, w: FlushWaiter) {
        self.0.get_or_insert_with(Default::default).push(w);
    }
    fn clear(&mut self) {
        self.0 = None;
    }
    /// Tell the waiters whose target is within `settled` chunks; the box
    /// goes once none is left.
    fn release(&mut self, settled: usize) {
        let Some(waiters) = &mut self.0 else { return };
        for (_, tx) in waiters.extract_if(.., |(target, _)| *target <= settled) {
            let _ = tx.send(());
        }
        if waiters.is_empty() {
            self.0 = None;
        }
    }
    fn iter(&self) -> impl Iterator<Item = &FlushWaiter> {
        self.0.iter().flat_map(|v| v.iter())
    }
    fn iter_mut(&mut self) -> impl Iterator<Item = &mut FlushWaiter> {
        self.0.iter_mut().flat_map(|v| v.iter_mut())
    }
}

/// The writing half of a WebSocket, held by its session. Cheap to clone.
#[derive(Clone)]
pub struct WsSink {
    id: u64,
    /// One allocation with the queue: the session and the connection's task
    /// each keep a sink, so what is inline here is kept twice.
    shared: Arc<Shared>,
}

/// What a WebSocket's holders share.
struct Shared {
    /// `WsLimits::max_frames` and `max_bytes` (the rest serves the
    /// handshake and the reader; kept out, the whole is a smaller block).
    max_frames: usize,
    max_bytes: usize,
    /// Payloads of at least this many bytes are sent compressed
    /// (permessage-deflate negotiated); `usize::MAX` when it is not.
    deflate_at: usize,
    out: Mutex<Outbound>,
}

impl std::fmt::Debug for WsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsSink").field("id", &self.id).finish()
    }
}

/// The longest WebSocket header of a server frame (no mask).
pub(crate) const MAX_HEADER: usize = 10;
pub(crate) const OP_TEXT: u8 = 0x1;
pub(crate) const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PONG: u8 = 0xA;

/// RFC 6455 header of an unmasked, final server frame of `len` payload
/// bytes. [`Frame`]s are built with theirs in front (session/frame.rs).
pub(crate) fn put_header(buf: &mut BytesMut, opcode: u8, len: usize) {
    put_first_and_length(buf, 0x80 | opcode, len);
}

/// The same with RSV1 set: a compressed message (RFC 7692 §6).
fn put_header_rsv1(buf: &mut BytesMut, opcode: u8, len: usize) {
    put_first_and_length(buf, 0xC0 | opcode, len);
}

fn put_first_and_length(buf: &mut BytesMut, first: u8, len: usize) {
    buf.put_u8(first);
    if len < 126 {
        buf.put_u8(len as u8);
    } else if len <= u16::MAX as usize {
        buf.put_u8(126);
        buf.put_u16(len as u16);
    } else {
        buf.put_u8(127);
        buf.put_u64(len as u64);
    }
}

/// A control frame (close, pong): header and payload in one buffer.
fn control(opcode: u8, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(payload.len() + 4);
    put_header(&mut b, opcode, payload.len());
    b.put_slice(payload);
    b.freeze()
}

impl WsSink {
    /// `deflate_at`: see [`Shared::deflate_at`].
    fn new(limits: WsLimits, deflate_at: usize) -> WsSink {
        WsSink {
            id: NEXT_WS_ID.fetch_add(1, Ordering::Relaxed),
            shared: Arc::new(Shared {
                max_frames: limits.max_frames,
                max_bytes: limits.max_bytes,
                deflate_at,
                out: Mutex::new(Outbound {
                    fd: None,
                    chunks: VecDeque::new(),
                    bytes: 0,
                    frames: 0,
                    frame_ends: VecDeque::new(),
                    sent_chunks: 0,
                    in_flight: 0,
                    body_gone: false,
                    settled_chunks: 0,
                    flush_waiters: FlushWaiters::default(),
                    state: State::Open,
                    waker: None,
                }),
            }),
        }
    }

    /// Frames queued and not yet handed to actix-web.
    #[cfg(any(test, feature = "internals"))]
    pub fn queued_frames(&self) -> usize {
        self.shared.out.lock().frames
    }

    #[cfg(any(test, feature = "internals"))]
    pub fn queued_bytes(&self) -> usize {
        self.shared.out.lock().bytes
    }

    /// permessage-deflate was negotiated: the client's messages may come
    /// compressed.
    pub(crate) fn deflates(&self) -> bool {
        self.shared.deflate_at != usize::MAX
    }

    pub fn is_full(&self) -> bool {
        self.shared.out.lock().frames >= self.shared.max_frames
    }

    /// Queue one Engine.IO frame. Nothing is copied: the frame already holds
    /// its WebSocket header, and a broadcast's frame bytes are queued by
    /// reference for every receiver.
    pub fn send(&self, frame: &Frame, volatile: bool) -> SendOutcome {
        let mut out = self.shared.out.lock();
        if out.state != State::Open {
            return SendOutcome::Closed;
        }
        if volatile && out.frames >= self.shared.max_frames {
            return SendOutcome::DroppedVolatile;
        }
        let wire = if frame.len() >= self.shared.deflate_at {
            frame.deflated_wire().clone()
        } else {
            frame.wire().clone()
        };
        out.bytes += wire.len();
        out.chunks.push_back(wire);
        out.frames += 1;
        let end = out.sent_chunks + out.in_flight + out.chunks.len();
        out.frame_ends.push_back(end);
        if let Some(w) = out.waker.take() {
            w.wake();
        }
        if out.bytes > self.shared.max_bytes {
            out.state = State::Killed;
            SendOutcome::OverBytes
        } else if out.frames > self.shared.max_frames {
            SendOutcome::QueuedFull { depth: out.frames }
        } else {
            SendOutcome::Queued { depth: out.frames }
        }
    }

    /// Put the connection's HTTP response head in front of what is queued,
    /// before its writer has written anything: it leaves in the same write
    /// as the first frames. Not a frame: it counts in the queue's bytes,
    /// not its frames.
    pub(crate) fn queue_head(&self, head: Bytes) {
        if head.is_empty() {
            return;
        }
        let mut out = self.shared.out.lock();
        debug_assert!(out.sent_chunks == 0 && out.in_flight == 0);
        out.bytes += head.len();
        out.chunks.push_front(head);
        // Every chunk queued so far moved one place back.
        for end in out.frame_ends.iter_mut() {
            *end += 1;
        }
        for (target, _) in out.flush_waiters.iter_mut() {
            *target += 1;
        }
    }

    /// Resolves once everything queued so far has been written to the
    /// connection's socket (handed to the kernel), or once nothing more will
    /// be: the sink was killed or its connection is gone (the receiver then
    /// resolves with an error, which means the same to a caller: there is
    /// nothing left to wait for).
    ///
    /// For answers that travel on other connections and must not overtake
    /// what this one carries: the session sends the 400 of a polling GET, or
    /// closes a second upgrade WebSocket, only after the `3probe` written
    /// here has left (docs/decisions.md, "Ordering across a session's
    /// requests").
    ///
    /// How: the waiter is released on the body's first poll after the body
    /// answered `Pending` with its chunks handed over, i.e. after the
    /// dispatcher's flush of that poll. If the socket's send buffer was full
    /// at that flush (a client not reading), the frames are still ahead of
    /// everything later on this connection, but may sit in actix-web's write
    /// buffer when the waiter is released.
    pub fn flushed(&self) -> tokio::sync::oneshot::Receiver<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut out = self.shared.out.lock();
        if out.state == State::Killed || out.body_gone {
            return rx;
        }
        let target = out.sent_chunks + out.in_flight + out.chunks.len();
        out.flush_waiters.push((target, tx));
        // Even with nothing queued, the last chunks may have been handed over
        // in a dispatcher poll whose flush is still to come: the waiter is
        // released on the body's next poll, not here.
        if let Some(w) = out.waker.take() {
            w.wake();
        }
        rx
    }

    /// Queue a close frame; the connection ends once it is written, or is
    /// dropped if that has not happened within [`CLOSE_FLUSH_TIMEOUT`].
    ///
    /// Without that bound a peer that stopped reading (and still ACKs, so
    /// the kernel never gives up) would keep the connection, its file
    /// descriptor and its queued frames forever after its session ended for
    /// any reason other than the slow-consumer check (a ping timeout, say):
    /// nobody would be left to notice. Two things bound it:
    /// - while the close frame is still in this queue, a timer kills the
    ///   sink (as for a slow consumer);
    /// - once the body has ended, what is left sits in actix-web's write
    ///   buffer and the kernel's, where only the kernel can see it: the
    ///   socket gets a `TCP_USER_TIMEOUT`, so the kernel aborts the
    ///   connection when the peer acknowledges nothing (a zero window
    ///   included) for that long, and actix-web then drops it.
    pub fn close(&self, code: CloseCode, reason: &str) {
        {
            let mut out = self.shared.out.lock();
            if out.state != State::Open {
                return;
            }
            let mut payload = Vec::with_capacity(2 + reason.len());
            payload.extend_from_slice(&u16::from(code).to_be_bytes());
            payload.extend_from_slice(reason.as_bytes());
            out.chunks.push_back(control(OP_CLOSE, &payload));
            out.state = State::Closing;
            if let Some(fd) = out.fd {
                fd.bound_unacked(CLOSE_FLUSH_TIMEOUT);
            }
            if let Some(w) = out.waker.take() {
                w.wake();
            }
        }
        // Every caller runs on an actix arbiter; outside one (a unit test)
        // there is no connection to bound either.
        if let Some(arbiter) = actix_rt::Arbiter::try_current() {
            let sink = self.clone();
            arbiter.spawn(async move {
                actix_rt::time::sleep(CLOSE_FLUSH_TIMEOUT).await;
                sink.kill_if_stuck();
            });
        }
    }

    /// Drop a connection still flushing its close: the body is alive (its
    /// descriptor recorded) and has not ended.
    fn kill_if_stuck(&self) {
        let stuck = {
            let out = self.shared.out.lock();
            out.state == State::Closing && out.fd.is_some()
        };
        if stuck {
            self.kill();
        }
    }

    /// Drop the connection now, without flushing: for a peer that stopped
    /// reading, whose queued frames would never leave.
    ///
    /// Failing the response body is not enough on its own: actix-web polls
    /// the body only when its write buffer has room, which it never has again
    /// for a peer that stopped reading. So the socket itself is shut down
    /// (with a zero linger, so the unsent bytes are discarded and the peer gets
    /// a reset): actix-web's next I/O fails and it drops the connection and
    /// its file descriptor. The descriptor is only touched while the body
    /// lives, under the same lock the body's drop takes, and actix-web drops a
    /// connection's response before its socket, so it is never a reused
    /// number.
    pub fn kill(&self) {
        let mut out = self.shared.out.lock();
        if let Some(fd) = out.fd.take() {
            fd.shutdown_now();
        }
        out.state = State::Killed;
        out.chunks.clear();
        out.flush_waiters.clear();
        out.bytes = 0;
        out.frames = 0;
        if let Some(w) = out.waker.take() {
            w.wake();
        }
    }

    fn pong(&self, data: Bytes) {
        let mut out = self.shared.out.lock();
        if out.state == State::Open {
            out.chunks.push_back(control(OP_PONG, &data));
            if let Some(w) = out.waker.take() {
                w.wake();
            }
        }
    }
}

/// A sink with no connection behind it, and what drains it as the response
/// body does: the production write path without a socket, for benches.
#[cfg(any(test, feature = "internals"))]
pub fn detached(limits: WsLimits) -> (WsSink, Drain) {
    let sink = WsSink::new(limits, usize::MAX);
    let body = Body {
        shared: sink.shared.clone(),
    };
    (sink, Drain(body))
}

/// A sink and the raw connection's writer draining it into a socket that
/// takes everything: the production write path without a socket, for
/// benches.
#[cfg(any(test, feature = "internals"))]
pub fn detached_conn(limits: WsLimits) -> (WsSink, conn::Writer) {
    let sink = WsSink::new(limits, usize::MAX);
    let writer = conn::Writer::new(sink.clone());
    (sink, writer)
}

/// The response body of a [`detached`] sink.
#[cfg(any(test, feature = "internals"))]
pub struct Drain(Body);

#[cfg(any(test, feature = "internals"))]
impl Drain {
    /// The next chunk the body would hand actix-web, if one is queued.
    pub fn next_chunk(&mut self) -> Option<Bytes> {
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        match Pin::new(&mut self.0).poll_next(&mut cx) {
            Poll::Ready(Some(Ok(chunk))) => Some(chunk),
            _ => None,
        }
    }
}

/// The response body: drains the sink's queue into actix-web.
struct Body {
    shared: Arc<Shared>,
}

impl Drop for Body {
    fn drop(&mut self) {
        self.shared.out.lock().detach();
    }
}

impl Outbound {
    /// The connection is gone (its socket may be closed and its number
    /// reused) and nothing queued will ever be written: free the frames now
    /// (a close timer may still hold the sink for a while).
    fn detach(&mut self) {
        self.fd = None;
        self.body_gone = true;
        self.flush_waiters.clear();
        self.chunks.clear();
        self.frame_ends.clear();
        self.in_flight = 0;
        self.bytes = 0;
        self.frames = 0;
    }

    /// Release the [`WsSink::flushed`] waiters whose frames are within the
    /// first `settled` chunks (those known to be handed to the kernel).
    fn release_flushed(&mut self, settled: usize) {
        self.flush_waiters.release(settled);
    }

    /// `chunks` more chunks, `bytes` bytes in all, have left the queue: count
    /// them, and the frames they end, as sent.
    fn sent(&mut self, chunks: usize, bytes: usize) {
        self.bytes = self.bytes.saturating_sub(bytes);
        self.sent_chunks += chunks;
        let sent = self.sent_chunks;
        while self.frame_ends.front().is_some_and(|&e| e <= sent) {
            self.frame_ends.pop_front();
            self.frames = self.frames.saturating_sub(1);
        }
    }
}

/// The raw socket of an accepted connection, recorded by [`on_connect`].
#[derive(Debug, Clone, Copy)]
pub struct ConnFd(std::os::fd::RawFd);

impl ConnFd {
    /// Have the kernel abort the connection if data stays unacknowledged
    /// (or the peer's window stays shut) for `timeout`.
    fn bound_unacked(self, timeout: std::time::Duration) {
        use std::os::fd::BorrowedFd;
        // SAFETY: as for `shutdown_now`: called under the sink's lock while
        // the connection's writer (response body or connection task) is
        // alive.
        let fd = unsafe { BorrowedFd::borrow_raw(self.0) };
        let _ = socket2::SockRef::from(&fd).set_tcp_user_timeout(Some(timeout));
    }

    fn shutdown_now(self) {
        use std::os::fd::BorrowedFd;
        // SAFETY: the caller holds the sink's lock and the connection's writer
        // (response body or connection task) is alive, so the descriptor is
        // not closed: both forget it under this lock before the socket closes
        // (`Outbound::detach`; see `kill`).
        let fd = unsafe { BorrowedFd::borrow_raw(self.0) };
        let sock = socket2::SockRef::from(&fd);
        let _ = sock.set_linger(Some(std::time::Duration::ZERO));
        let _ = sock.shutdown(std::net::Shutdown::Both);
    }
}

/// actix-web `on_connect` hook: remember each connection's socket so a slow
/// consumer can be cut off (see [`WsSink::kill`]), and turn off Nagle's
/// algorithm: a real-time server writes small frames that must leave now.
pub fn on_connect(conn: &dyn std::any::Any, ext: &mut actix_web::dev::Extensions) {
    use std::os::fd::AsRawFd;
    type TlsStream = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;
    let tcp = match conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
        Some(tcp) => tcp,
        // server.tls: the TCP stream under the TLS session.
        None => match conn.downcast_ref::<TlsStream>() {
            Some(tls) => tls.get_ref().0,
            None => return,
        },
    };
    let _ = tcp.set_nodelay(true);
    ext.insert(ConnFd(tcp.as_raw_fd()));
}

impl Stream for Body {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut out = self.shared.out.lock();
        // The chunks handed over before the last `Pending` went through the
        // dispatcher's flush that followed it.
        let settled = out.settled_chunks;
        out.release_flushed(settled);
        if out.state == State::Killed {
            return Poll::Ready(Some(Err(std::io::Error::other(
                "websocket closed by the server",
            ))));
        }
        if let Some(chunk) = out.chunks.pop_front() {
            out.sent(1, chunk.len());
            return Poll::Ready(Some(Ok(chunk)));
        }
        if out.state == State::Closing {
            return Poll::Ready(None);
        }
        out.settled_chunks = out.sent_chunks;
        if out.flush_waiters.iter().any(|(t, _)| *t <= out.sent_chunks) {
            // Polled again after this poll's flush, to release them.
            cx.waker().wake_by_ref();
        }
        out.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// What a WebSocket is opened as.
#[derive(Debug, Clone, Copy)]
pub struct Opening {
    /// Opened with the sid of a polling session: the probe phase begins.
    pub upgrade: bool,
    /// The session's Engine.IO revision: how binary frames decode.
    pub protocol: Protocol,
    /// Engine.IO v3 `b64=1`: binary messages as base64 text frames.
    pub base64: bool,
}

/// Accept a WebSocket request for a session: the response to return, and the
/// sink the session writes to. Inbound frames go to `session` as
/// [`WsEvent`]s from a task on the current worker.
pub fn accept(
    req: &HttpRequest,
    payload: web::Payload,
    session: SessionHandle,
    opening: Opening,
    limits: WsLimits,
) -> Result<(HttpResponse, WsSink), actix_web_actors::ws::HandshakeError> {
    let Opening {
        upgrade,
        protocol,
        base64,
    } = opening;
    let mut builder = actix_web_actors::ws::handshake(req)?;
    let offers = req
        .headers()
        .get_all(actix_web::http::header::SEC_WEBSOCKET_EXTENSIONS)
        .map(|v| v.as_bytes());
    let mut deflate_at = usize::MAX;
    if let Some(at) = limits.deflate_threshold {
        if deflate::accepts_offer(offers) {
            builder.insert_header((
                actix_web::http::header::SEC_WEBSOCKET_EXTENSIONS,
                deflate::ACCEPTED,
            ));
            deflate_at = at.max(deflate::MIN_DEFLATE);
        }
    }
    let sink = WsSink::new(limits, deflate_at);
    sink.shared.out.lock().fd = req.conn_data::<ConnFd>().copied();
    if req.extensions().contains::<TakeoverOffer>() {
        // Riptide's upgrade service runs the WebSocket on the raw
        // connection, which writes this response's head with the first
        // frames (conn.rs).
        session.ws_event(WsEvent::Attach {
            id: sink.id,
            ws: sink.clone(),
            upgrade,
            base64,
        });
        let mut resp = builder.finish();
        resp.extensions_mut().insert(Takeover::Session {
            sink: sink.clone(),
            session,
            max_payload: limits.max_payload,
            protocol,
        });
        return Ok((resp, sink));
    }
    let body = Body {
        shared: sink.shared.clone(),
    };
    session.ws_event(WsEvent::Attach {
        id: sink.id,
        ws: sink.clone(),
        upgrade,
        base64,
    });
    actix_rt::spawn(read_loop(
        payload,
        session,
        sink.clone(),
        limits.max_payload,
        protocol,
    ));
    Ok((builder.streaming(body), sink))
}

/// A bad frame: the packets decoded before it still reach the session
/// first, then the session hears why and the WebSocket is closed.
fn fail(
    session: &SessionHandle,
    sink: &WsSink,
    kind: &'static str,
    code: CloseCode,
    packets: &mut Vec<Packet>,
) {
    send_packets(session, sink.id, packets);
    session.ws_event(WsEvent::Invalid { id: sink.id, kind });
    sink.close(code, kind);
}

/// Send `packets` to the session in order, leaving the vector empty.
fn send_packets(session: &SessionHandle, id: u64, packets: &mut Vec<Packet>) {
    // Taken, not drained: the vector's capacity is not kept between reads
    // (160 bytes in every idle connection after its first read).
    for packet in std::mem::take(packets) {
        session.ws_event(WsEvent::Packet { id, packet });
    }
}

/// Send a read's worth of `packets` to the session, with a
/// [`WsEvent::Reached`] behind them: its receiver answers once the session
/// has taken the last one (inbound backpressure), and errs if the session
/// is gone. `None` when there were no packets.
fn queue_read(
    session: &SessionHandle,
    id: u64,
    packets: &mut Vec<Packet>,
) -> Option<tokio::sync::oneshot::Receiver<()>> {
    if packets.is_empty() {
        return None;
    }
    send_packets(session, id, packets);
    Some(WsEvent::reached(session))
}

/// Hand `packets` to the session in order, waiting until it has taken the
/// last one: inbound backpressure is one read's worth of packets. `false`
/// when the session is gone.
async fn hand_over(session: &SessionHandle, id: u64, packets: &mut Vec<Packet>) -> bool {
    match queue_read(session, id, packets) {
        Some(taken) => taken.await.is_ok(),
        None => true,
    }
}

/// Decode inbound frames and hand them to the session, a read's worth at a
/// time: the socket is read only as fast as the session takes its packets,
/// and a burst (many small frames in one read) travels through the session,
/// the handler and the rooms as a batch, so each receiver's connection
/// writes it in a few large writes rather than one per frame.
///
/// This is the WebSocket run as actix-web's response body, for an engine
/// mounted on a server without Riptide's upgrade service; [`conn`] runs it
/// on the raw connection.
async fn read_loop(
    mut payload: web::Payload,
    session: SessionHandle,
    sink: WsSink,
    max: usize,
    protocol: Protocol,
) {
    let id = sink.id;
    // Queued behind `Attach`: if it cannot be delivered the session is gone,
    // and the WebSocket must not stay open with nobody behind it.
    if WsEvent::reached(&session).await.is_err() {
        sink.close(CloseCode::Away, "session closed");
        return;
    }
    let mut reader = reader::FrameReader::new(max, protocol, sink.deflates());
    let mut buf = BytesMut::new();
    let mut packets: Vec<Packet> = Vec::new();
    loop {
        match reader.decode(&mut buf, &mut packets, &sink) {
            reader::Step::More => {}
            reader::Step::Close(code) => {
                let _ = hand_over(&session, id, &mut packets).await;
                sink.close(code, "");
                break;
            }
            reader::Step::Fail(kind, code) => {
                fail(&session, &sink, kind, code, &mut packets);
                break;
            }
        }
        if !hand_over(&session, id, &mut packets).await {
            break;
        }
        match payload.next().await {
            Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
            Some(Err(_)) | None => break,
        }
    }
    // Whatever ended the read side (the peer closed, a bad frame, the
    // session went away) ends the write side too.
    sink.close(CloseCode::Normal, "");
    session.ws_event(WsEvent::Closed { id });
}
