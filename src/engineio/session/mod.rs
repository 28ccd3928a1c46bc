//! The session actor: one per Engine.IO session, whatever its transport.
//!
//! It owns the session's transport state (a waiting long-poll, or the address
//! of its WebSocket actor), the heartbeat, the upgrade, and the frames not yet
//! written. The protocol above Engine.IO runs inside it as an [`EngineApp`], so
//! a Socket.IO packet costs no extra actor hop between transport and protocol.
//!
//! The state is declared here, so every part below sees it; each file holds
//! one concern of the same actor:
//!
//! - `frame`: encoded outbound frames, inbound messages, the polling body;
//! - `handshake`: what is known of the client when the session opens;
//! - `reason`: why a session ended;
//! - `core`: queueing and writing frames, closing;
//! - `heartbeat`: ping, pong and the timeout;
//! - `deadlines`: the one timer per worker thread that tells sessions when
//!   their heartbeat (or their app's deadline) is due;
//! - `polling`: the waiting GET, POSTs, and a GET racing the client's close;
//! - `upgrade`: the session's WebSockets and the upgrade from polling;
//! - `backpressure`: closing slow consumers.

mod backpressure;
mod core;
mod deadlines;
mod frame;
mod handshake;
mod heartbeat;
mod polling;
mod reason;
mod upgrade;

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use actix_http::ws::CloseCode;
use parking_lot::RwLock;
use slog::{debug, Logger};
use tokio::sync::oneshot;

pub use backpressure::Backpressure;
pub use frame::encode_poll_body;
pub use frame::{Frame, FrameRef, Message, PollBody, PollFraming};
pub(crate) use handshake::url_query_pairs;
pub use handshake::{Handshake, Headers, TransportKind};
pub(crate) use polling::take_closed_poll;
pub use polling::{ClosedPolls, Poll, PollAborted, PollReply, Post, PostError, CLOSED_POLL_GRACE};
pub use reason::CloseReason;
pub use upgrade::WsEvent;
use upgrade::{after_flush, close_now};

use crate::engineio::config::EngineConfig;
use crate::engineio::metrics::EngineMetrics as Metrics;
use crate::engineio::packet::{Packet, Protocol};
use crate::engineio::sid::Sid;
use crate::engineio::websocket::WsSink;

/// The protocol that runs on top of a session (Socket.IO, or a plain echo).
///
/// Its methods run inside the session actor, with the engine's state and the
/// actor's context, so an app can send, close, and schedule timers itself.
pub trait EngineApp: Sized + Unpin + 'static {
    /// The session's address, before `on_open`: one pointer for its life,
    /// to share rather than clone (an address clone allocates).
    fn on_address(&mut self, _me: &Arc<Addr<SessionActor<Self>>>) {}
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
    /// The session moved from polling to its WebSocket.
    fn on_upgrade(&mut self, _core: &mut EngineCore) {}
    /// The deadline set with [`EngineCore::set_app_deadline`] has come.
    fn on_deadline(&mut self, _core: &mut EngineCore, _ctx: &mut Context<SessionActor<Self>>) {}
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

/// The engine half of a session, lent to the app on every call.
pub struct EngineCore {
    pub sid: Sid,
    /// The Engine.IO revision the client speaks (its handshake's `EIO`).
    pub protocol: Protocol,
    /// How its polling bodies are framed.
    framing: PollFraming,
    /// v3: the active WebSocket was opened with `b64=1` (binary messages go
    /// as `b4` + base64 text frames).
    ws_base64: bool,
    pub config: Arc<EngineConfig>,
    pub metrics: Metrics,
    /// The engine's logger; [`EngineCore::log`] adds the session's id.
    node_log: Logger,
    transport: Transport,
    /// Frames waiting for a poll (polling) or for the WebSocket to attach.
    buffer: Vec<Frame>,
    /// The upgrade in progress: a WebSocket that was opened with the sid of
    /// this polling session and has not yet sent `5`. Boxed: a session
    /// upgrades once at most, and inline this would be in every session for
    /// its whole life.
    probe: Option<Box<Probe>>,
    closed_polls: ClosedPolls,
    /// v4: when the next ping is sent (`None` while one is outstanding).
    ping_due: Option<std::time::Instant>,
    /// When the outstanding ping's pong (v3: the client's next ping) is due.
    /// Requests are checked against it too, so a timed-out session is
    /// refused exactly at the deadline even if the wheel has not told it yet
    /// on a busy worker.
    pong_deadline: Option<std::time::Instant>,
    /// The app's one deadline ([`EngineCore::set_app_deadline`]).
    app_deadline: Option<std::time::Instant>,
    /// When this session's one entry in its thread's deadline wheel comes
    /// due (`deadlines`; `None`: it has none).
    wheel_entry: Option<std::time::Instant>,
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
    /// has no actor context (closing a slow consumer found while sending):
    /// the registry's pointer, shared (docs/decisions.md, "Idle memory").
    me: Option<Arc<dyn SessionPort>>,
    /// When the handshake made it: its lifetime is observed at the close
    /// (`riptide_engine_session_duration_seconds`).
    opened: std::time::Instant,
}

/// An upgrade in progress (see [`EngineCore::probe`]).
struct Probe {
    id: u64,
    ws: WsSink,
    /// Opened with `b64=1` (v3).
    base64: bool,
    /// Its `2probe` has been answered.
    answered: bool,
    /// Second upgrade WebSockets refused while the probe has not answered
    /// `2probe` yet: closed once it has and the `3probe` has left (or the
    /// probe ended), so the client never sees their close before it.
    refused: Vec<WsSink>,
    /// Ends the attempt at the upgrade timeout.
    timer: Option<SpawnHandle>,
}

/// The session actor. `A` is the protocol running on top.
pub struct SessionActor<A: EngineApp> {
    pub core: EngineCore,
    pub app: A,
}

impl<A: EngineApp> SessionActor<A> {
    /// Start a session on the current worker. Its one address for its life,
    /// behind one pointer shared by the registry, the session itself, its
    /// app and its WebSocket: every clone of an actix address allocates
    /// sender state of its own (docs/decisions.md, "Idle memory").
    pub fn launch(mut core: EngineCore, mut app: A) -> Arc<Addr<Self>> {
        let ctx = Context::new();
        let me = Arc::new(ctx.address());
        app.on_address(&me);
        core.me = Some(me.clone());
        ctx.run(SessionActor { core, app });
        me
    }

    fn on_packet(&mut self, packet: Packet, from_ws: Option<u64>, ctx: &mut Context<Self>) {
        if self.core.protocol == Protocol::V3 {
            match packet {
                // v3: the client pings, on its current transport (a probe's
                // `2probe` is answered by the upgrade, not here).
                Packet::Ping(_) if !self.core.is_probe(from_ws) => {
                    return self.core.on_client_ping()
                }
                Packet::Pong(_) => {
                    // As the reference server: "invalid heartbeat direction".
                    self.core.metrics.bad_input("heartbeat_direction");
                    debug!(self.core.log(), "pong from an Engine.IO v3 client");
                    return self.core.close(CloseReason::TransportError, ctx);
                }
                _ => {}
            }
        }
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
            Packet::Pong(_) => self.core.on_pong(),
            Packet::Ping(data) => self.on_ping(data, from_ws),
            Packet::Upgrade => self.on_upgrade(from_ws, ctx),
            Packet::Close => self.core.close(CloseReason::TransportClose, ctx),
            Packet::Open(_) | Packet::Noop => {}
        }
    }
}

impl<A: EngineApp> Actor for SessionActor<A> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let me = match &self.core.me {
            Some(me) => me.clone(),
            // Not started by `launch`.
            None => {
                let me = Arc::new(ctx.address());
                self.app.on_address(&me);
                self.core.me = Some(me.clone());
                me
            }
        };
        self.core.registry.write().insert(
            self.core.sid.clone(),
            SessionHandle {
                protocol: self.core.protocol,
                port: me,
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
            // Sent to v3 clients too, as the reference server does; they
            // ignore it.
            "maxPayload": self.core.config.max_payload,
        });
        self.core
            .buffer
            .push(Frame::control(&Packet::Open(open.to_string())));
        match self.core.protocol {
            Protocol::V4 => self.core.schedule_ping(),
            Protocol::V3 => self.core.await_client_ping(),
        }
        self.app.on_open(&mut self.core, ctx);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        let reason = self
            .core
            .close_reason
            .unwrap_or(CloseReason::TransportClose);
        self.core.registry.write().remove(&self.core.sid);
        self.core.metrics.session_closed(
            self.core.transport_name(),
            reason.as_str(),
            self.core.opened.elapsed(),
        );
        match std::mem::replace(&mut self.core.transport, Transport::Pending) {
            Transport::WebSocket { ws, .. } => ws.close(CloseCode::Normal, ""),
            Transport::Polling { waiting } => {
                if let Some(tx) = waiting {
                    // Like the reference server: the client gets what was
                    // queued (with the close packet when the server closed
                    // it); a client that closed itself gets a noop (its
                    // close packet needs no answer); any other end (ping
                    // timeout, parse or transport error) a close packet.
                    let framing = self.core.framing;
                    let body = if !self.core.buffer.is_empty() {
                        encode_poll_body(&mut self.core.buffer, framing)
                    } else if reason == CloseReason::TransportClose {
                        framing.control(&Packet::Noop)
                    } else {
                        framing.control(&Packet::Close)
                    };
                    let _ = tx.send(Ok(body));
                }
            }
            Transport::Pending => {}
        }
        if let Some(probe) = self.core.probe.take() {
            probe.ws.close(CloseCode::Normal, "");
            close_now(probe.refused);
        }
        self.core.close_reason = Some(reason);
        self.app.on_close(reason, &mut self.core);
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

// ---- the registry of live sessions -----------------------------------------

/// How the HTTP routes reach a session, whatever its app type: its address
/// behind one shared pointer, a recipient made only when a request needs
/// one. (Five boxed recipients per session were 240 bytes in the registry,
/// and five allocations in every request that cloned the handle.)
#[derive(Clone)]
pub struct SessionHandle {
    /// What the session speaks: its POST bodies are decoded by it.
    pub protocol: Protocol,
    port: Arc<dyn SessionPort>,
}

/// A session's address, whatever its app type; the heartbeat's wheel tells
/// it through [`deadlines::Due`].
trait SessionPort: Send + Sync + deadlines::Due {
    fn backpressure(&self, b: Backpressure);
    fn ws_event(&self, e: WsEvent);
    fn poll(&self) -> Recipient<Poll>;
    fn post(&self) -> Recipient<Post>;
    fn poll_aborted(&self);
    fn close(&self, reason: CloseReason);
}

impl<A: EngineApp> deadlines::Due for Addr<SessionActor<A>> {
    fn due(&self) {
        self.do_send(deadlines::DeadlineDue);
    }
}

impl<A: EngineApp> SessionPort for Addr<SessionActor<A>> {
    fn backpressure(&self, b: Backpressure) {
        self.do_send(b);
    }
    fn ws_event(&self, e: WsEvent) {
        self.do_send(e);
    }
    fn poll(&self) -> Recipient<Poll> {
        self.clone().recipient()
    }
    fn post(&self) -> Recipient<Post> {
        self.clone().recipient()
    }
    fn poll_aborted(&self) {
        self.do_send(PollAborted);
    }
    fn close(&self, reason: CloseReason) {
        self.do_send(CloseSession(reason));
    }
}

impl SessionHandle {
    pub fn new<A: EngineApp>(protocol: Protocol, session: Arc<Addr<SessionActor<A>>>) -> Self {
        SessionHandle {
            protocol,
            port: session,
        }
    }
    /// Where a polling GET goes.
    pub fn poll(&self) -> Recipient<Poll> {
        self.port.poll()
    }
    /// Where a polling POST goes.
    pub fn post(&self) -> Recipient<Post> {
        self.port.post()
    }
    /// Tell the session of its WebSocket (without a recipient of its own).
    pub fn ws_event(&self, e: WsEvent) {
        self.port.ws_event(e)
    }
    /// A waiting GET's request went away unanswered.
    pub fn poll_aborted(&self) {
        self.port.poll_aborted()
    }
    /// Close the session (from outside: shutdown, administrative close).
    pub fn close(&self, reason: CloseReason) {
        self.port.close(reason)
    }
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
        protocol: handshake.protocol,
        // As the reference server, the handshake's `b64` decides for the
        // polling transport it opens.
        framing: PollFraming::of(handshake.protocol, handshake.query_param("b64").is_some()),
        ws_base64: false,
        node_log: log.clone(),
        config,
        metrics,
        transport: if polling {
            Transport::Polling { waiting: None }
        } else {
            Transport::Pending
        },
        buffer: Vec::new(),
        probe: None,
        closed_polls,
        ping_due: None,
        pong_deadline: None,
        app_deadline: None,
        wheel_entry: None,
        close_reason: None,
        registry,
        buffer_bytes: 0,
        waiting_since_probe: false,
        ip_slot: None,
        grace_armed: false,
        me: None,
        opened: std::time::Instant::now(),
    }
}
