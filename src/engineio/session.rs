//! The session actor: one per Engine.IO session, whatever its transport.
//!
//! It owns the session's transport state (a waiting long-poll, or the address
//! of its WebSocket actor), the heartbeat, the upgrade, and the frames not yet
//! written. The protocol above Engine.IO runs inside it as an [`EngineApp`], so
//! a Socket.IO packet costs no extra actor hop between transport and protocol.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use actix::prelude::*;
use actix_web::http::header::HeaderMap;
use bytes::Bytes;
use bytestring::ByteString;
use parking_lot::RwLock;
use slog::{debug, o, Logger};
use tokio::sync::oneshot;

use super::config::EngineConfig;
use super::errors::EngineError;
use super::metrics::EngineMetrics as Metrics;
use super::packet::Packet;
use super::sid::Sid;
use super::websocket::{SendOutcome, WsSink};
use actix_http::ws::CloseCode;

/// One outbound Engine.IO message, already encoded: shared by every receiver of
/// a broadcast, so a fan-out to N sockets encodes once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Text(ByteString),
    Binary(Bytes),
}

impl Frame {
    pub fn len(&self) -> usize {
        match self {
            Frame::Text(s) => s.len(),
            Frame::Binary(b) => b.len(),
        }
    }

    #[cfg(any(test, feature = "internals"))]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A `message` packet carrying `text` (`4` + text).
    pub fn message(text: &str) -> Frame {
        let mut s = String::with_capacity(text.len() + 1);
        s.push('4');
        s.push_str(text);
        Frame::Text(s.into())
    }

    fn control(p: &Packet) -> Frame {
        let mut s = String::with_capacity(8);
        p.encode_text(&mut s);
        Frame::Text(s.into())
    }
}

/// An inbound Engine.IO message for the app.
#[derive(Debug)]
pub enum Message {
    Text(String),
    Binary(Bytes),
}

/// Why a session ended; the strings are the reference server's reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed the transport or sent a close packet.
    TransportClose,
    /// The transport failed (I/O error, oversized frame, bad WebSocket frame).
    TransportError,
    /// The client missed a pong.
    PingTimeout,
    /// The client sent a packet that could not be decoded.
    ParseError,
    /// The server closed it (application or slow consumer).
    ForcedClose,
    /// The node is stopping.
    ServerShutdown,
    /// The client never sent CONNECT within `connect_timeout`.
    ConnectTimeout,
    /// The client did not take its messages fast enough (its outbound queue
    /// stayed full past the grace, or went over the byte cap).
    SlowConsumer,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::TransportClose => "transport close",
            CloseReason::TransportError => "transport error",
            CloseReason::PingTimeout => "ping timeout",
            CloseReason::ParseError => "parse error",
            CloseReason::ForcedClose => "forced close",
            CloseReason::ServerShutdown => "server shutting down",
            CloseReason::ConnectTimeout => "connect timeout",
            CloseReason::SlowConsumer => "slow consumer",
        }
    }

    /// Whether the client should be told with a close packet (it did not
    /// cause the close itself and may still be listening).
    ///
    /// Like the reference server: a close the client or its transport caused
    /// releases a waiting poll with a noop; a close the server decided (ping
    /// timeout, parse error, forced, shutdown) sends the close packet.
    fn notify_client(self) -> bool {
        !matches!(
            self,
            CloseReason::TransportClose | CloseReason::TransportError
        )
    }
}

/// What the transport layer knows about the client at handshake time.
#[derive(Debug, Clone)]
pub struct Handshake {
    pub sid: Sid,
    pub headers: HeaderMap,
    /// The raw query string of the handshake request.
    pub query: String,
    pub remote_addr: Option<SocketAddr>,
    pub issued: SystemTime,
    pub transport: &'static str,
}

impl Handshake {
    /// One query parameter of the handshake request, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        url_query_pairs(&self.query)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

pub(crate) fn url_query_pairs(q: &str) -> impl Iterator<Item = (String, String)> + '_ {
    q.split('&').filter(|s| !s.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k), percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How long a GET that arrives mid-upgrade waits before its noop.
const UPGRADE_NOOP_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

/// How long the answer to a POST whose close packet ended the session, with
/// no GET waiting, is held for the GET the client may have sent before it
/// (see [`ClosedPolls`]).
pub const CLOSED_POLL_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// The answer owed to the poll of a session its client closed over polling
/// while no GET was waiting, by sid.
///
/// The client's GET and its close POST travel on two connections, read by
/// two worker threads: the GET the client sent first may reach the session
/// after the POST. The reference server, on one thread, answers a GET that
/// waits at the close with a noop; here the GET that arrives while the
/// POST's answer is held gets the same answer (a GET that arrives before the
/// client has its POST answer cannot have been sent after it). The POST is
/// answered as soon as that GET took its answer, or after
/// [`CLOSED_POLL_GRACE`]; the sid is then unknown, as for the reference.
pub type ClosedPolls = Arc<parking_lot::Mutex<HashMap<Sid, ClosedPoll>>>;

pub struct ClosedPoll {
    body: String,
    taken: oneshot::Sender<()>,
}

/// The answer owed to a GET of closed session `sid`, if there is one (it is
/// given once).
pub(crate) fn take_closed_poll(polls: &ClosedPolls, sid: &str) -> Option<String> {
    let slot = polls.lock().remove(sid)?;
    let _ = slot.taken.send(());
    Some(slot.body)
}

/// Close refused WebSockets at once.
fn close_now(sinks: impl IntoIterator<Item = WsSink>) {
    for ws in sinks {
        ws.close(CloseCode::Normal, "");
    }
}

/// Close refused WebSockets once what `ws` carries so far (the `3probe`) has
/// left: the client must see it before their close.
fn close_after(ws: &WsSink, sinks: Vec<WsSink>) {
    if !sinks.is_empty() {
        after_flush(ws, move || close_now(sinks));
    }
}

/// Run `then` once what has been queued on `ws` so far has been written to
/// its socket (or can no longer be): an answer on another connection must not
/// overtake it.
fn after_flush(ws: &WsSink, then: impl FnOnce() + 'static) {
    let flushed = ws.flushed();
    actix_rt::spawn(async move {
        let _ = flushed.await;
        then();
    });
}

/// The protocol that runs on top of a session (Socket.IO, or a plain echo).
///
/// Its methods run inside the session actor, with the engine's state and the
/// actor's context, so an app can send, close, and schedule timers itself.
pub trait EngineApp: Sized + Unpin + 'static {
    /// The session is open and its open packet is queued.
    fn on_open(&mut self, _core: &mut EngineCore, _ctx: &mut Context<SessionActor<Self>>) {}
    /// One message from the client, in the order the client sent it.
    fn on_message(
        &mut self,
        msg: Message,
        core: &mut EngineCore,
        ctx: &mut Context<SessionActor<Self>>,
    );
    /// The session has ended; nothing can be sent any more.
    fn on_close(&mut self, _reason: CloseReason, _core: &mut EngineCore) {}
}

/// Builds the app of each new session. Shared by every worker thread.
pub trait EngineAppFactory: Send + Sync + 'static {
    type App: EngineApp;
    fn create(&self, handshake: &Arc<Handshake>) -> Self::App;
}

/// Where a session's frames go right now.
enum Transport {
    /// A WebSocket was opened without a sid and has not reported in yet.
    Pending,
    Polling {
        /// A GET waiting for data: answered as soon as anything is queued.
        waiting: Option<oneshot::Sender<PollReply>>,
    },
    WebSocket {
        id: u64,
        ws: WsSink,
    },
}

pub type PollReply = Result<String, EngineError>;

/// The engine half of a session, lent to the app on every call.
pub struct EngineCore {
    pub sid: Sid,
    pub config: Arc<EngineConfig>,
    pub metrics: Metrics,
    pub log: Logger,
    transport: Transport,
    /// Frames waiting for a poll (polling) or for the WebSocket to attach.
    buffer: Vec<Frame>,
    /// A WebSocket that sent `2probe` and has not yet sent `5`.
    probe: Option<(u64, WsSink)>,
    /// The probe WebSocket's `2probe` has been answered.
    probe_answered: bool,
    /// Second upgrade WebSockets refused while the probe has not answered
    /// `2probe` yet: closed once it has and the `3probe` has left (or the
    /// probe ended), so the client never sees their close before it.
    refused_ws: Vec<WsSink>,
    closed_polls: ClosedPolls,
    ping_timer: Option<SpawnHandle>,
    pong_timer: Option<SpawnHandle>,
    /// When the outstanding ping's pong is due. Requests are checked against
    /// it too, so a timed-out session is refused exactly at the deadline even
    /// if its timer has not fired yet on a busy worker.
    pong_deadline: Option<std::time::Instant>,
    upgrade_timer: Option<SpawnHandle>,
    close_reason: Option<CloseReason>,
    registry: SessionRegistry,
    /// Bytes in `buffer` (polling).
    buffer_bytes: usize,
    /// The waiting GET arrived while an upgrade was in progress.
    waiting_since_probe: bool,
    /// The session's place under the node's and its address's connection
    /// limits, released when the session is dropped.
    ip_slot: Option<super::admission::SessionSlot>,
    /// A slow-consumer check is scheduled.
    grace_armed: bool,
    /// This session's own address, for what must happen outside a call that
    /// has no actor context (closing a slow consumer found while sending).
    me: Option<Recipient<Backpressure>>,
}

impl EngineCore {
    /// Queue or write one frame.
    pub fn send(&mut self, frame: Frame) {
        if self.close_reason.is_some() {
            return;
        }
        self.metrics.packet_out(frame.len());
        if let Transport::WebSocket { ws, .. } = &self.transport {
            match ws.send(&frame, false) {
                SendOutcome::Queued { depth } => self.metrics.queue_depth(depth),
                SendOutcome::QueuedFull { depth } => {
                    self.metrics.queue_depth(depth);
                    self.arm_slow_consumer_grace();
                }
                SendOutcome::OverBytes => {
                    self.slow_consumer("queued bytes over limits.max_queued_bytes")
                }
                SendOutcome::DroppedVolatile | SendOutcome::Closed => {}
            }
            return;
        }
        // Every drain of the buffer empties it, so an empty buffer holds no bytes.
        if self.buffer.is_empty() {
            self.buffer_bytes = 0;
        }
        self.buffer_bytes += frame.len();
        self.buffer.push(frame);
        let (frames, bytes) = (self.buffer.len(), self.buffer_bytes);
        self.flush_poll();
        if !self.buffer.is_empty() {
            self.metrics.queue_depth(frames);
            if bytes > self.config.max_queued_bytes {
                self.slow_consumer("queued bytes over limits.max_queued_bytes");
            } else if frames > self.config.max_queued_frames {
                self.arm_slow_consumer_grace();
            }
        }
    }

    pub(crate) fn hold_ip_slot(&mut self, slot: super::admission::SessionSlot) {
        self.ip_slot = Some(slot);
    }

    /// The client's queue is full: close it if it still is after the grace.
    fn arm_slow_consumer_grace(&mut self) {
        if !self.grace_armed {
            self.grace_armed = true;
            if let Some(me) = &self.me {
                me.do_send(Backpressure::Arm);
            }
        }
    }

    /// Close the client as a slow consumer: its queue is dropped, not flushed.
    fn slow_consumer(&mut self, why: &'static str) {
        if let Transport::WebSocket { ws, .. } = &self.transport {
            ws.kill();
        }
        self.buffer.clear();
        if let Some(me) = &self.me {
            me.do_send(Backpressure::Close(why));
        }
    }

    /// Whether the client's outbound queue is over `max_queued_frames`.
    fn is_full(&self) -> bool {
        match &self.transport {
            Transport::WebSocket { ws, .. } => ws.is_full(),
            _ => self.buffer.len() > self.config.max_queued_frames,
        }
    }

    /// The waiting GET, if its client is still there to be answered. A GET
    /// whose request went away stays in place for [`PollAborted`] to find,
    /// and what would have been written to it stays queued.
    fn take_waiting(&mut self) -> Option<oneshot::Sender<PollReply>> {
        match &mut self.transport {
            Transport::Polling { waiting }
                if waiting.as_ref().is_some_and(|tx| !tx.is_closed()) =>
            {
                self.waiting_since_probe = false;
                waiting.take()
            }
            _ => None,
        }
    }

    /// Answer the waiting GET, if any, with everything queued.
    fn flush_poll(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        if let Some(tx) = self.take_waiting() {
            let _ = tx.send(Ok(encode_poll_body(&mut self.buffer)));
        }
    }

    /// Whether a frame sent now would leave at once rather than wait in a
    /// buffer: `volatile` emits are dropped when this is false.
    pub fn is_writable(&self) -> bool {
        match &self.transport {
            Transport::WebSocket { ws, .. } => !ws.is_full(),
            Transport::Polling { waiting } => waiting.as_ref().is_some_and(|tx| !tx.is_closed()),
            Transport::Pending => false,
        }
    }

    pub fn transport_name(&self) -> &'static str {
        match self.transport {
            Transport::WebSocket { .. } => "websocket",
            _ => "polling",
        }
    }

    pub fn is_closing(&self) -> bool {
        self.close_reason.is_some()
    }

    /// End the session; the app's `on_close` runs when the actor stops.
    pub fn close<A: EngineApp>(&mut self, reason: CloseReason, ctx: &mut Context<SessionActor<A>>) {
        if self.close_reason.is_some() {
            return;
        }
        debug!(self.log, "closing session"; "reason" => reason.as_str());
        if reason.notify_client() {
            let close = Frame::control(&Packet::Close);
            match &self.transport {
                Transport::WebSocket { ws, .. } => {
                    ws.send(&close, false);
                }
                Transport::Polling { .. } => {
                    self.buffer.push(close);
                    self.flush_poll();
                }
                Transport::Pending => {}
            }
        }
        self.close_reason = Some(reason);
        ctx.stop();
    }

    fn schedule_ping<A: EngineApp>(&mut self, ctx: &mut Context<SessionActor<A>>) {
        let interval = self.config.ping_interval;
        self.ping_timer = Some(ctx.run_later(interval, |act, ctx| {
            act.core.ping_timer = None;
            act.core.send(Frame::control(&Packet::Ping(String::new())));
            let timeout = act.core.config.ping_timeout;
            act.core.pong_deadline = Some(std::time::Instant::now() + timeout);
            act.core.pong_timer = Some(ctx.run_later(timeout, |act, ctx| {
                act.core.pong_timer = None;
                act.core.close(CloseReason::PingTimeout, ctx);
            }));
        }));
    }

    fn on_pong<A: EngineApp>(&mut self, ctx: &mut Context<SessionActor<A>>) {
        // A pong with no ping outstanding is harmless: ignore it rather than
        // let a chatty client push the next ping further away.
        if let Some(h) = self.pong_timer.take() {
            ctx.cancel_future(h);
            self.pong_deadline = None;
            self.schedule_ping(ctx);
        }
    }

    /// Abandon the upgrade attempt of WebSocket `id`, if it is the current
    /// one: close it and cancel its timer (so the timer cannot cut a later
    /// attempt short). The session stays on polling.
    fn end_probe<A: EngineApp>(&mut self, id: u64, ctx: &mut Context<SessionActor<A>>) {
        if !matches!(self.probe, Some((p, _)) if p == id) {
            return;
        }
        if let Some((_, ws)) = self.probe.take() {
            ws.close(CloseCode::Normal, "");
        }
        if let Some(h) = self.upgrade_timer.take() {
            ctx.cancel_future(h);
        }
        close_now(self.refused_ws.drain(..));
    }

    /// Close the session if its pong is overdue; true when it was.
    fn pong_overdue<A: EngineApp>(&mut self, ctx: &mut Context<SessionActor<A>>) -> bool {
        if self
            .pong_deadline
            .is_some_and(|d| std::time::Instant::now() >= d)
        {
            self.close(CloseReason::PingTimeout, ctx);
            return true;
        }
        false
    }
}

/// Body of a polling GET response: records joined by the record separator,
/// binary as `b` + base64.
fn encode_poll_body(buffer: &mut Vec<Frame>) -> String {
    use base64::Engine as _;
    let mut out = String::with_capacity(buffer.iter().map(|f| f.len() + 1).sum());
    for (i, f) in buffer.drain(..).enumerate() {
        if i > 0 {
            out.push('\x1e');
        }
        match f {
            Frame::Text(t) => out.push_str(&t),
            Frame::Binary(b) => {
                out.push('b');
                base64::engine::general_purpose::STANDARD.encode_string(&b, &mut out);
            }
        }
    }
    out
}

/// The session actor. `A` is the protocol running on top.
pub struct SessionActor<A: EngineApp> {
    pub core: EngineCore,
    pub app: A,
}

impl<A: EngineApp> SessionActor<A> {
    fn on_packet(&mut self, packet: Packet, from_ws: Option<u64>, ctx: &mut Context<Self>) {
        match packet {
            Packet::Message(text) => {
                self.core.metrics.packet_in(text.len() + 1);
                self.app
                    .on_message(Message::Text(text), &mut self.core, ctx)
            }
            Packet::Binary(bin) => {
                self.core.metrics.packet_in(bin.len());
                self.app
                    .on_message(Message::Binary(bin), &mut self.core, ctx)
            }
            Packet::Pong(_) => self.core.on_pong(ctx),
            Packet::Ping(data) => {
                // Only a WebSocket in its probe phase pings: answer on it, and
                // release any waiting poll with a noop so the client can pause
                // polling and finish the upgrade.
                if let (Some(id), Some((probe_id, ws))) = (from_ws, &self.core.probe) {
                    if id == *probe_id && data == "probe" {
                        ws.send(&Frame::control(&Packet::Pong(data)), false);
                        self.core.probe_answered = true;
                        close_after(ws, std::mem::take(&mut self.core.refused_ws));
                        // A waiting GET means nothing is queued. Only one
                        // that was waiting before the upgrade WebSocket came
                        // is released now; a later one is the client's after
                        // its `5` (on another connection, so it may be handled
                        // first) and gets its answer from the upgrade.
                        if !self.core.waiting_since_probe {
                            if let Some(tx) = self.core.take_waiting() {
                                let _ = tx.send(Ok(Frame::control(&Packet::Noop).as_text()));
                            }
                        }
                    }
                }
            }
            Packet::Upgrade => {
                let Some(id) = from_ws else { return };
                match self.core.probe.take() {
                    Some((probe_id, ws)) if probe_id == id => {
                        if let Some(h) = self.core.upgrade_timer.take() {
                            ctx.cancel_future(h);
                        }
                        // The GET that was waiting when the probe began was
                        // released then; one waiting now came after the
                        // client's `5`: polling is over for this session.
                        // Its 400 leaves after the `3probe`: the client may
                        // read the WebSocket only once it has the 400.
                        if let Some(tx) = self.core.take_waiting() {
                            self.core.metrics.bad_input("bad_request");
                            after_flush(&ws, move || {
                                let _ = tx.send(Err(EngineError::BadRequest));
                            });
                        }
                        for frame in self.core.buffer.drain(..) {
                            ws.send(&frame, false);
                        }
                        close_after(&ws, std::mem::take(&mut self.core.refused_ws));
                        self.core.transport = Transport::WebSocket { id, ws };
                        self.core.metrics.session_upgraded();
                        debug!(self.core.log, "upgraded to websocket");
                    }
                    other => self.core.probe = other,
                }
            }
            Packet::Close => self.core.close(CloseReason::TransportClose, ctx),
            Packet::Open(_) | Packet::Noop => {}
        }
    }
}

impl Frame {
    fn as_text(&self) -> String {
        match self {
            Frame::Text(t) => t.to_string(),
            Frame::Binary(_) => String::new(),
        }
    }
}

impl<A: EngineApp> Actor for SessionActor<A> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let me = ctx.address();
        self.core.me = Some(me.clone().recipient());
        self.core.registry.write().insert(
            self.core.sid.clone(),
            SessionHandle {
                poll: me.clone().recipient(),
                poll_aborted: me.clone().recipient(),
                post: me.clone().recipient(),
                ws: me.clone().recipient(),
                close: me.recipient(),
            },
        );
        let open = serde_json::json!({
            "sid": self.core.sid.as_str(),
            "upgrades": if self.core.config.allow_websocket && matches!(self.core.transport, Transport::Polling { .. }) {
                vec!["websocket"]
            } else {
                vec![]
            },
            "pingInterval": self.core.config.ping_interval.as_millis() as u64,
            "pingTimeout": self.core.config.ping_timeout.as_millis() as u64,
            "maxPayload": self.core.config.max_payload,
        });
        self.core
            .buffer
            .push(Frame::control(&Packet::Open(open.to_string())));
        self.core.schedule_ping(ctx);
        self.app.on_open(&mut self.core, ctx);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        let reason = self
            .core
            .close_reason
            .unwrap_or(CloseReason::TransportClose);
        self.core.registry.write().remove(&self.core.sid);
        self.core
            .metrics
            .session_closed(self.core.transport_name(), reason.as_str());
        match std::mem::replace(&mut self.core.transport, Transport::Pending) {
            Transport::WebSocket { ws, .. } => ws.close(CloseCode::Normal, ""),
            Transport::Polling { waiting } => {
                if let Some(tx) = waiting {
                    // Like the reference server: the client gets what was
                    // queued (with the close packet when the server closed
                    // it); a client that closed itself gets a noop (its
                    // close packet needs no answer); any other end (ping
                    // timeout, parse or transport error) a close packet.
                    let body = if !self.core.buffer.is_empty() {
                        encode_poll_body(&mut self.core.buffer)
                    } else if reason == CloseReason::TransportClose {
                        Frame::control(&Packet::Noop).as_text()
                    } else {
                        Frame::control(&Packet::Close).as_text()
                    };
                    let _ = tx.send(Ok(body));
                }
            }
            Transport::Pending => {}
        }
        if let Some((_, ws)) = self.core.probe.take() {
            ws.close(CloseCode::Normal, "");
        }
        close_now(self.core.refused_ws.drain(..));
        self.core.close_reason = Some(reason);
        self.app.on_close(reason, &mut self.core);
    }
}

// ---- messages from the transports ------------------------------------------

/// A polling GET: answered once data is queued.
pub struct Poll(pub oneshot::Sender<PollReply>);
impl actix::Message for Poll {
    type Result = ();
}

impl<A: EngineApp> Handler<Poll> for SessionActor<A> {
    type Result = ();
    fn handle(&mut self, Poll(tx): Poll, ctx: &mut Context<Self>) {
        if self.core.pong_overdue(ctx) {
            self.core
                .metrics
                .bad_input(EngineError::UnknownSid.metric_kind());
            let _ = tx.send(Err(EngineError::UnknownSid));
            return;
        }
        if self.core.close_reason.is_some() {
            // Closed by the client's POST, handled before this GET.
            if let Some(body) = take_closed_poll(&self.core.closed_polls, self.core.sid.as_str()) {
                let _ = tx.send(Ok(body));
                return;
            }
        }
        match &mut self.core.transport {
            Transport::Polling { waiting } => {
                // A waiting GET whose client went away is simply replaced.
                if waiting.as_ref().is_some_and(|w| !w.is_closed()) {
                    // Two GETs at once is a protocol violation: the reference
                    // server answers 400 and closes the session; the waiting
                    // GET carries the close packet.
                    let _ = tx.send(Err(EngineError::BadRequest));
                    self.core.metrics.bad_input("bad_request");
                    self.core.buffer.push(Frame::control(&Packet::Close));
                    self.core.close(CloseReason::TransportError, ctx);
                    return;
                }
                if self.core.probe.is_some() && self.core.buffer.is_empty() {
                    // Mid-upgrade. A client pausing its polling loop gets a
                    // noop shortly (the reference server ticks every 100 ms);
                    // a GET sent after the client's `5` but handled before
                    // it (they travel on different connections) is still
                    // parked when the upgrade lands and is refused there.
                    *waiting = Some(tx);
                    self.core.waiting_since_probe = true;
                    ctx.run_later(UPGRADE_NOOP_DELAY, |act, _| {
                        if act.core.probe.is_some() {
                            if let Some(tx) = act.core.take_waiting() {
                                let _ = tx.send(Ok(Frame::control(&Packet::Noop).as_text()));
                            }
                        }
                    });
                } else if !self.core.buffer.is_empty() {
                    let _ = tx.send(Ok(encode_poll_body(&mut self.core.buffer)));
                } else {
                    *waiting = Some(tx);
                }
            }
            Transport::WebSocket { ws, .. } => {
                // Upgraded: polling is over. The 400 leaves after what the
                // WebSocket carries (the `3probe`): the client may read the
                // WebSocket only once it has the 400.
                self.core.metrics.bad_input("bad_request");
                after_flush(ws, move || {
                    let _ = tx.send(Err(EngineError::BadRequest));
                });
            }
            Transport::Pending => {
                let _ = tx.send(Err(EngineError::BadRequest));
                self.core.metrics.bad_input("bad_request");
            }
        }
    }
}

/// The request of a polling GET went away before it was answered: the
/// client dropped its connection mid-poll. Like the reference server ("poll
/// connection closed prematurely"), that ends the session as a transport
/// error, at once rather than at the ping timeout.
pub struct PollAborted;
impl actix::Message for PollAborted {
    type Result = ();
}

impl<A: EngineApp> Handler<PollAborted> for SessionActor<A> {
    type Result = ();
    fn handle(&mut self, _: PollAborted, ctx: &mut Context<Self>) {
        if let Transport::Polling { waiting } = &mut self.core.transport {
            if waiting.as_ref().is_some_and(|tx| tx.is_closed()) {
                *waiting = None;
                debug!(self.core.log, "poll connection closed prematurely");
                self.core.close(CloseReason::TransportError, ctx);
            }
        }
    }
}

/// A polling POST's decoded packets, or the reason it could not be decoded.
pub struct Post(pub Result<Vec<Packet>, PostError>);
#[derive(Debug, Clone, Copy)]
pub enum PostError {
    Decode,
    InvalidUtf8,
    TooLarge,
}
/// What a handled POST asks of its answer: `Some` when its close packet
/// ended the session while no GET was waiting. The answer is then held until
/// the receiver resolves (a GET took the noop it is owed) or
/// [`CLOSED_POLL_GRACE`] has passed; see [`ClosedPolls`].
pub type PostDone = Option<oneshot::Receiver<()>>;

impl actix::Message for Post {
    type Result = Result<PostDone, EngineError>;
}

impl<A: EngineApp> Handler<Post> for SessionActor<A> {
    type Result = Result<PostDone, EngineError>;
    fn handle(&mut self, Post(packets): Post, ctx: &mut Context<Self>) -> Self::Result {
        if self.core.pong_overdue(ctx) {
            self.core
                .metrics
                .bad_input(EngineError::UnknownSid.metric_kind());
            return Err(EngineError::UnknownSid);
        }
        if !matches!(self.core.transport, Transport::Polling { .. }) {
            self.core.metrics.bad_input("bad_request");
            return Err(EngineError::BadRequest);
        }
        match packets {
            Ok(packets) => {
                let was_open = !self.core.is_closing();
                for p in packets {
                    if self.core.is_closing() {
                        break;
                    }
                    self.on_packet(p, None, ctx);
                }
                if !(was_open && self.core.close_reason == Some(CloseReason::TransportClose)) {
                    return Ok(None);
                }
                // The client closed. A waiting GET gets its noop when the
                // actor stops; with none waiting, one may be on its way on
                // another connection: keep its answer for it.
                if matches!(&self.core.transport,
                    Transport::Polling { waiting: Some(tx) } if !tx.is_closed())
                {
                    return Ok(None);
                }
                let body = if self.core.buffer.is_empty() {
                    Frame::control(&Packet::Noop).as_text()
                } else {
                    encode_poll_body(&mut self.core.buffer)
                };
                let (taken, rx) = oneshot::channel();
                self.core
                    .closed_polls
                    .lock()
                    .insert(self.core.sid.clone(), ClosedPoll { body, taken });
                Ok(Some(rx))
            }
            Err(e @ (PostError::Decode | PostError::InvalidUtf8)) => {
                self.core.metrics.bad_input(match e {
                    PostError::InvalidUtf8 => "invalid_utf8",
                    _ => "engine_decode",
                });
                self.core.close(CloseReason::ParseError, ctx);
                Err(EngineError::BadRequest)
            }
            Err(PostError::TooLarge) => {
                self.core.metrics.bad_input("oversized");
                self.core.close(CloseReason::TransportError, ctx);
                Err(EngineError::PayloadTooLarge)
            }
        }
    }
}

/// What a WebSocket transport actor reports to its session.
pub enum WsEvent {
    /// The WebSocket actor started. `upgrade` is true when it was opened with
    /// the sid of a polling session (the probe phase begins).
    Attach {
        id: u64,
        ws: WsSink,
        upgrade: bool,
    },
    Packet {
        id: u64,
        packet: Packet,
    },
    /// The frame could not be decoded, was too large, or was not valid UTF-8.
    Invalid {
        id: u64,
        kind: &'static str,
    },
    Closed {
        id: u64,
    },
    /// Sent behind `Attach`: its failing to arrive means the session is gone.
    Alive,
}
impl actix::Message for WsEvent {
    type Result = ();
}

impl<A: EngineApp> Handler<WsEvent> for SessionActor<A> {
    type Result = ();
    fn handle(&mut self, ev: WsEvent, ctx: &mut Context<Self>) {
        match ev {
            WsEvent::Attach { id, ws, upgrade } => {
                if !upgrade {
                    for frame in self.core.buffer.drain(..) {
                        ws.send(&frame, false);
                    }
                    self.core.transport = Transport::WebSocket { id, ws };
                } else if let Some((_, probe)) = &self.core.probe {
                    // Only one upgrade at a time. The client may have sent
                    // `2probe` on the first WebSocket before opening this
                    // one (on another connection, so it may be handled
                    // later), and must see the `3probe` before this close:
                    // it waits for the probe's answer to have left.
                    self.core.metrics.bad_input("bad_request");
                    if self.core.probe_answered {
                        close_after(probe, vec![ws]);
                    } else {
                        self.core.refused_ws.push(ws);
                    }
                } else if let Transport::WebSocket { ws: active, .. } = &self.core.transport {
                    // Upgraded already: closed after what the active
                    // WebSocket carries has left, for the same reason.
                    self.core.metrics.bad_input("bad_request");
                    close_after(active, vec![ws]);
                } else if !matches!(self.core.transport, Transport::Polling { .. }) {
                    // Only from polling.
                    self.core.metrics.bad_input("bad_request");
                    ws.close(CloseCode::Normal, "");
                } else {
                    self.core.probe = Some((id, ws));
                    self.core.probe_answered = false;
                    let timeout = self.core.config.upgrade_timeout;
                    self.core.upgrade_timer = Some(ctx.run_later(timeout, move |act, ctx| {
                        act.core.upgrade_timer = None;
                        debug!(act.core.log, "upgrade timed out");
                        act.core.end_probe(id, ctx);
                    }));
                }
            }
            WsEvent::Packet { id, packet } => {
                let active =
                    matches!(self.core.transport, Transport::WebSocket { id: a, .. } if a == id);
                let probing = matches!(self.core.probe, Some((p, _)) if p == id);
                if active {
                    self.on_packet(packet, Some(id), ctx);
                } else if probing {
                    // During the probe only ping and upgrade are meaningful;
                    // anything else aborts the upgrade, like the reference
                    // server (the session stays on polling).
                    if matches!(packet, Packet::Ping(_) | Packet::Upgrade) {
                        self.on_packet(packet, Some(id), ctx);
                    } else {
                        self.core.metrics.bad_input("bad_request");
                        self.core.end_probe(id, ctx);
                    }
                }
            }
            WsEvent::Invalid { id, kind } => {
                self.core.metrics.bad_input(kind);
                if matches!(self.core.transport, Transport::WebSocket { id: a, .. } if a == id) {
                    let reason = if kind == "engine_decode" {
                        CloseReason::ParseError
                    } else {
                        CloseReason::TransportError
                    };
                    self.core.close(reason, ctx);
                } else {
                    self.core.end_probe(id, ctx);
                }
            }
            WsEvent::Alive => {}
            WsEvent::Closed { id } => {
                if matches!(self.core.transport, Transport::WebSocket { id: a, .. } if a == id) {
                    self.core.close(CloseReason::TransportClose, ctx);
                } else {
                    self.core.end_probe(id, ctx);
                }
            }
        }
    }
}

/// Close a session from outside (node shutdown, administrative close).
pub struct CloseSession(pub CloseReason);
impl actix::Message for CloseSession {
    type Result = ();
}

impl<A: EngineApp> Handler<CloseSession> for SessionActor<A> {
    type Result = ();
    fn handle(&mut self, CloseSession(reason): CloseSession, ctx: &mut Context<Self>) {
        self.core.close(reason, ctx);
    }
}

/// Slow-consumer handling, sent by a session to itself.
pub enum Backpressure {
    /// The queue went over `max_queued_frames`: check again after the grace.
    Arm,
    /// Close now as a slow consumer.
    Close(&'static str),
}
impl actix::Message for Backpressure {
    type Result = ();
}

impl<A: EngineApp> Handler<Backpressure> for SessionActor<A> {
    type Result = ();
    fn handle(&mut self, msg: Backpressure, ctx: &mut Context<Self>) {
        match msg {
            Backpressure::Arm => {
                let grace = self.core.config.slow_consumer_grace;
                ctx.run_later(grace, |act, ctx| {
                    act.core.grace_armed = false;
                    if act.core.is_full() {
                        act.core.slow_consumer_close(
                            "queue full past limits.slow_consumer_grace_ms",
                            ctx,
                        );
                    }
                });
            }
            Backpressure::Close(why) => self.core.slow_consumer_close(why, ctx),
        }
    }
}

impl EngineCore {
    fn slow_consumer_close<A: EngineApp>(
        &mut self,
        why: &'static str,
        ctx: &mut Context<SessionActor<A>>,
    ) {
        if self.close_reason.is_some() {
            return;
        }
        slog::warn!(self.log, "closing slow consumer"; "why" => why,
            "transport" => self.transport_name());
        self.metrics.slow_consumer_closed();
        if let Transport::WebSocket { ws, .. } = &self.transport {
            ws.kill();
        }
        self.buffer.clear();
        self.close(CloseReason::SlowConsumer, ctx);
    }
}

// ---- the registry of live sessions -----------------------------------------

/// How the HTTP routes reach a session, whatever its app type.
#[derive(Clone)]
pub struct SessionHandle {
    pub poll: Recipient<Poll>,
    pub poll_aborted: Recipient<PollAborted>,
    pub post: Recipient<Post>,
    pub ws: Recipient<WsEvent>,
    pub close: Recipient<CloseSession>,
}

/// Every live session of one engine, by sid. Written on open and close only.
pub type SessionRegistry = Arc<RwLock<HashMap<Sid, SessionHandle>>>;

pub(crate) fn new_core(
    handshake: Arc<Handshake>,
    config: Arc<EngineConfig>,
    metrics: Metrics,
    log: &Logger,
    registry: SessionRegistry,
    closed_polls: ClosedPolls,
    polling: bool,
) -> EngineCore {
    EngineCore {
        sid: handshake.sid.clone(),
        log: log.new(o!("sid" => handshake.sid.to_string())),
        config,
        metrics,
        transport: if polling {
            Transport::Polling { waiting: None }
        } else {
            Transport::Pending
        },
        buffer: Vec::new(),
        probe: None,
        probe_answered: false,
        refused_ws: Vec::new(),
        closed_polls,
        ping_timer: None,
        pong_timer: None,
        pong_deadline: None,
        upgrade_timer: None,
        close_reason: None,
        registry,
        buffer_bytes: 0,
        waiting_since_probe: false,
        ip_slot: None,
        grace_armed: false,
        me: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_body_joins_records_and_base64s_binary() {
        let mut buf = vec![
            Frame::Text("4hello".into()),
            Frame::Binary(Bytes::from_static(&[1, 2, 3])),
            Frame::Text("2".into()),
        ];
        assert_eq!(encode_poll_body(&mut buf), "4hello\x1ebAQID\x1e2");
        assert!(buf.is_empty());
    }

    #[test]
    fn query_params_are_percent_decoded() {
        let pairs: Vec<_> = url_query_pairs("EIO=4&transport=polling&token=a%20b%2Fc&x").collect();
        assert_eq!(pairs[2], ("token".to_string(), "a b/c".to_string()));
        assert_eq!(pairs[3], ("x".to_string(), String::new()));
    }
}
