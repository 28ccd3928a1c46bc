//! The engine half of a session: queueing and writing frames, closing.

use actix::prelude::*;
use slog::debug;
use tokio::sync::oneshot;

use super::{
    encode_poll_body, CloseReason, EngineApp, EngineCore, Frame, PollBody, PollReply, SessionActor,
    Transport, TransportKind,
};
use crate::engineio::packet::{Packet, Protocol};
use crate::engineio::websocket::{SendOutcome, WsSink};

impl EngineCore {
    /// The session's logger: the engine's, with the session's id. Made when
    /// something is logged, not kept: a child logger per session was two
    /// allocations every idle connection paid for.
    pub fn log(&self) -> slog::Logger {
        self.node_log.new(slog::o!("sid" => self.sid.to_string()))
    }

    /// Queue or write one frame (a WebSocket queues a reference to its bytes).
    pub fn send(&mut self, frame: &Frame) {
        if self.close_reason.is_some() {
            return;
        }
        self.metrics.packet_out(frame.len());
        if let Transport::WebSocket { ws, .. } = &self.transport {
            let v3 = self.v3_ws_frame(frame, self.ws_base64);
            match ws.send(v3.as_ref().unwrap_or(frame), false) {
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
        self.buffer.push(frame.clone());
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

    pub(crate) fn hold_ip_slot(&mut self, slot: crate::engineio::admission::SessionSlot) {
        self.ip_slot = Some(slot);
    }

    /// The waiting GET, if its client is still there to be answered. A GET
    /// whose request went away stays in place for [`PollAborted`] to find,
    /// and what would have been written to it stays queued.
    pub(super) fn take_waiting(&mut self) -> Option<oneshot::Sender<PollReply>> {
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
    pub(super) fn flush_poll(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        if let Some(tx) = self.take_waiting() {
            let _ = tx.send(Ok(encode_poll_body(&mut self.buffer, self.framing)));
        }
    }

    /// `frame` as a v3 WebSocket carries it, when that differs (a binary
    /// message); `None` for v4 and for text.
    pub(super) fn v3_ws_frame(&self, frame: &Frame, base64: bool) -> Option<Frame> {
        match self.protocol {
            Protocol::V3 => frame.for_v3_websocket(base64),
            Protocol::V4 => None,
        }
    }

    /// Write every frame waiting in the buffer to WebSocket `ws` (opened
    /// with `b64=1` when `base64`), in order.
    pub(super) fn drain_to(&mut self, ws: &WsSink, base64: bool) {
        for frame in std::mem::take(&mut self.buffer) {
            let v3 = self.v3_ws_frame(&frame, base64);
            ws.send(v3.as_ref().unwrap_or(&frame), false);
        }
        self.buffer_bytes = 0;
    }

    /// The body of a GET answered with the one control packet `p`.
    pub(super) fn control_body(&self, p: &Packet) -> PollBody {
        self.framing.control(p)
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

    /// The transport the session writes to now (polling until its
    /// WebSocket has attached).
    pub fn transport_kind(&self) -> TransportKind {
        match self.transport {
            Transport::WebSocket { .. } => TransportKind::WebSocket,
            _ => TransportKind::Polling,
        }
    }

    pub fn transport_name(&self) -> &'static str {
        self.transport_kind().as_str()
    }

    pub fn is_closing(&self) -> bool {
        self.close_reason.is_some()
    }

    /// End the session; the app's `on_close` runs when the actor stops.
    pub fn close<A: EngineApp>(&mut self, reason: CloseReason, ctx: &mut Context<SessionActor<A>>) {
        if self.close_reason.is_some() {
            return;
        }
        debug!(self.log(), "closing session"; "reason" => reason.as_str());
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
}
