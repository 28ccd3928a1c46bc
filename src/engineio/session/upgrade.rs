//! A session's WebSockets: the one it was opened on, or the probe that
//! upgrades it from polling (`2probe`, `3probe`, `5`), and the refusal of any
//! other.

use actix::prelude::*;
use actix_http::ws::CloseCode;
use slog::debug;
use tokio::sync::oneshot;

use super::{
    CloseReason, EngineApp, EngineCore, Frame, Probe, SessionActor, SessionHandle, Transport,
};
use crate::engineio::errors::EngineError;
use crate::engineio::packet::Packet;
use crate::engineio::websocket::WsSink;

/// Close refused WebSockets at once.
pub(super) fn close_now(sinks: impl IntoIterator<Item = WsSink>) {
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
pub(super) fn after_flush(ws: &WsSink, then: impl FnOnce() + 'static) {
    let flushed = ws.flushed();
    actix_rt::spawn(async move {
        let _ = flushed.await;
        then();
    });
}

impl EngineCore {
    /// Whether a packet from WebSocket `from_ws` came from the probe.
    pub(super) fn is_probe(&self, from_ws: Option<u64>) -> bool {
        matches!((from_ws, &self.probe), (Some(id), Some(p)) if id == p.id)
    }

    /// Abandon the upgrade attempt of WebSocket `id`, if it is the current
    /// one: close it and cancel its timer (so the timer cannot cut a later
    /// attempt short). The session stays on polling.
    pub(super) fn end_probe<A: EngineApp>(&mut self, id: u64, ctx: &mut Context<SessionActor<A>>) {
        if !matches!(&self.probe, Some(p) if p.id == id) {
            return;
        }
        if let Some(probe) = self.probe.take() {
            probe.ws.close(CloseCode::Normal, "");
            if let Some(h) = probe.timer {
                ctx.cancel_future(h);
            }
            close_now(probe.refused);
        }
    }
}

impl<A: EngineApp> SessionActor<A> {
    /// A ping from a WebSocket: only one in its probe phase pings.
    pub(super) fn on_ping(&mut self, data: String, from_ws: Option<u64>) {
        // Only a WebSocket in its probe phase pings: answer on it, and
        // release any waiting poll with a noop so the client can pause
        // polling and finish the upgrade.
        if let (Some(id), Some(probe)) = (from_ws, &mut self.core.probe) {
            if id == probe.id && data == "probe" {
                probe.ws.send(&Frame::control(&Packet::Pong(data)), false);
                probe.answered = true;
                close_after(&probe.ws, std::mem::take(&mut probe.refused));
                // A waiting GET means nothing is queued. Only one
                // that was waiting before the upgrade WebSocket came
                // is released now; a later one is the client's after
                // its `5` (on another connection, so it may be handled
                // first) and gets its answer from the upgrade.
                if !self.core.waiting_since_probe {
                    if let Some(tx) = self.core.take_waiting() {
                        let _ = tx.send(Ok(self.core.control_body(&Packet::Noop)));
                    }
                }
            }
        }
    }

    /// `5` on the probe WebSocket: the session moves to it.
    pub(super) fn on_upgrade(&mut self, from_ws: Option<u64>, ctx: &mut Context<Self>) {
        let Some(id) = from_ws else { return };
        match self.core.probe.take() {
            Some(probe) if probe.id == id => {
                let Probe {
                    ws,
                    base64,
                    refused,
                    timer,
                    ..
                } = *probe;
                if let Some(h) = timer {
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
                self.core.drain_to(&ws, base64);
                close_after(&ws, refused);
                self.core.ws_base64 = base64;
                self.core.transport = Transport::WebSocket { id, ws };
                self.core.metrics.session_upgraded();
                self.app.on_upgrade(&mut self.core);
                debug!(self.core.log(), "upgraded to websocket");
            }
            other => self.core.probe = other,
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
        /// Opened with `b64=1` (Engine.IO v3: binary as base64 text).
        base64: bool,
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
    /// Answered once the session has handled everything sent before it
    /// (dropped unanswered if the session is gone). Sent behind `Attach`, it
    /// tells that the session is alive; behind a read's packets, that the
    /// session has taken them.
    ///
    /// Not `Recipient::send`: its request keeps room for a timer and the
    /// message inline, 224 bytes in every WebSocket's task for its whole
    /// life, where a receiver is 8.
    Reached(oneshot::Sender<()>),
}

impl WsEvent {
    /// Queue a [`WsEvent::Reached`] behind what was sent to `session`: the
    /// receiver errs if the session is gone.
    pub fn reached(session: &SessionHandle) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        session.ws_event(WsEvent::Reached(tx));
        rx
    }
}
impl actix::Message for WsEvent {
    type Result = ();
}

impl<A: EngineApp> Handler<WsEvent> for SessionActor<A> {
    type Result = ();
    fn handle(&mut self, ev: WsEvent, ctx: &mut Context<Self>) {
        match ev {
            WsEvent::Attach {
                id,
                ws,
                upgrade,
                base64,
            } => {
                if !upgrade {
                    self.core.drain_to(&ws, base64);
                    self.core.ws_base64 = base64;
                    self.core.transport = Transport::WebSocket { id, ws };
                } else if let Some(probe) = &mut self.core.probe {
                    // Only one upgrade at a time. The client may have sent
                    // `2probe` on the first WebSocket before opening this
                    // one (on another connection, so it may be handled
                    // later), and must see the `3probe` before this close:
                    // it waits for the probe's answer to have left.
                    self.core.metrics.bad_input("bad_request");
                    if probe.answered {
                        close_after(&probe.ws, vec![ws]);
                    } else {
                        probe.refused.push(ws);
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
                    let timeout = self.core.config.upgrade_timeout;
                    let timer = ctx.run_later(timeout, move |act, ctx| {
                        if let Some(probe) = act.core.probe.as_mut().filter(|p| p.id == id) {
                            probe.timer = None;
                        }
                        debug!(act.core.log(), "upgrade timed out");
                        act.core.end_probe(id, ctx);
                    });
                    self.core.probe = Some(Box::new(Probe {
                        id,
                        ws,
                        base64,
                        answered: false,
                        refused: Vec::new(),
                        timer: Some(timer),
                    }));
                }
            }
            WsEvent::Packet { id, packet } => {
                let active =
                    matches!(self.core.transport, Transport::WebSocket { id: a, .. } if a == id);
                let probing = matches!(&self.core.probe, Some(p) if p.id == id);
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
            WsEvent::Reached(tx) => {
                let _ = tx.send(());
            }
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
