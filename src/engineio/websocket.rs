//! The WebSocket transport, on actix-web-actors.
//!
//! Every WebSocket detail lives in this module: the session actor only sends
//! [`WsSend`] / [`WsClose`] and receives [`WsEvent`]s, so the transport can be
//! swapped (see docs/decisions.md) without touching the layers above.

use std::sync::atomic::{AtomicU64, Ordering};

use actix::prelude::*;
use actix_web_actors::ws;
use bytes::{Bytes, BytesMut};

use super::packet::Packet;
use super::session::{Frame, WsEvent};

static NEXT_WS_ID: AtomicU64 = AtomicU64::new(1);

/// One WebSocket connection. It decodes frames into Engine.IO packets for its
/// session and writes the session's frames; it holds no protocol state.
pub struct WsTransport {
    id: u64,
    session: Recipient<WsEvent>,
    upgrade: bool,
    max_payload: usize,
    /// A fragmented message being reassembled (text flag, bytes so far).
    partial: Option<(bool, BytesMut)>,
}

impl WsTransport {
    pub fn new(session: Recipient<WsEvent>, upgrade: bool, max_payload: usize) -> WsTransport {
        WsTransport {
            id: NEXT_WS_ID.fetch_add(1, Ordering::Relaxed),
            session,
            upgrade,
            max_payload,
            partial: None,
        }
    }

    fn deliver_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        match Packet::decode_text(text) {
            Ok(packet) => self.session.do_send(WsEvent::Packet {
                id: self.id,
                packet,
            }),
            Err(_) => self.fail("engine_decode", ws::CloseCode::Invalid, ctx),
        }
    }

    fn deliver_binary(&mut self, bin: Bytes) {
        self.session.do_send(WsEvent::Packet {
            id: self.id,
            packet: Packet::decode_ws_binary(bin),
        });
    }

    fn fail(
        &mut self,
        kind: &'static str,
        code: ws::CloseCode,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        self.session.do_send(WsEvent::Invalid { id: self.id, kind });
        ctx.close(Some(ws::CloseReason {
            code,
            description: Some(kind.to_string()),
        }));
        ctx.stop();
    }
}

impl Actor for WsTransport {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.session.do_send(WsEvent::Attach {
            id: self.id,
            ws: ctx.address(),
            upgrade: self.upgrade,
        });
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.session.do_send(WsEvent::Closed { id: self.id });
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for WsTransport {
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        match item {
            Ok(ws::Message::Text(text)) => self.deliver_text(&text, ctx),
            Ok(ws::Message::Binary(bin)) => self.deliver_binary(bin),
            Ok(ws::Message::Ping(p)) => ctx.pong(&p),
            Ok(ws::Message::Pong(_)) | Ok(ws::Message::Nop) => {}
            Ok(ws::Message::Continuation(item)) => self.continuation(item, ctx),
            Ok(ws::Message::Close(_)) => {
                ctx.close(None);
                ctx.stop();
            }
            Err(ws::ProtocolError::Overflow) => self.fail("oversized", ws::CloseCode::Size, ctx),
            Err(ws::ProtocolError::Io(_)) => ctx.stop(),
            // Invalid UTF-8 in a text frame arrives as an I/O-wrapped error
            // above; everything else is a framing violation.
            Err(_) => self.fail("bad_frame", ws::CloseCode::Protocol, ctx),
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl WsTransport {
    /// Reassemble fragmented messages ourselves: actix-web-actors hands the
    /// fragments over raw. The total is bounded by `max_payload` like a frame.
    fn continuation(&mut self, item: actix_http::ws::Item, ctx: &mut ws::WebsocketContext<Self>) {
        let (first_text, chunk, last) = match item {
            actix_http::ws::Item::FirstText(b) => (Some(true), b, false),
            actix_http::ws::Item::FirstBinary(b) => (Some(false), b, false),
            actix_http::ws::Item::Continue(b) => (None, b, false),
            actix_http::ws::Item::Last(b) => (None, b, true),
        };
        match (first_text, &mut self.partial) {
            (Some(text), None) => self.partial = Some((text, BytesMut::from(&chunk[..]))),
            (None, Some((_, buf))) => buf.extend_from_slice(&chunk),
            _ => return self.fail("bad_frame", ws::CloseCode::Protocol, ctx),
        }
        if self
            .partial
            .as_ref()
            .is_some_and(|(_, b)| b.len() > self.max_payload)
        {
            return self.fail("oversized", ws::CloseCode::Size, ctx);
        }
        if last {
            let (text, buf) = self.partial.take().expect("checked above");
            if text {
                match std::str::from_utf8(&buf) {
                    Ok(s) => {
                        let s = s.to_owned();
                        self.deliver_text(&s, ctx)
                    }
                    Err(_) => self.fail("invalid_utf8", ws::CloseCode::Invalid, ctx),
                }
            } else {
                self.deliver_binary(buf.freeze());
            }
        }
    }
}

/// Write one frame.
pub struct WsSend(pub Frame);
impl Message for WsSend {
    type Result = ();
}

impl Handler<WsSend> for WsTransport {
    type Result = ();
    fn handle(&mut self, WsSend(frame): WsSend, ctx: &mut Self::Context) {
        match frame {
            Frame::Text(t) => ctx.text(t),
            Frame::Binary(b) => ctx.binary(b),
        }
    }
}

/// Close the WebSocket (normal closure) after what was already written.
pub struct WsClose;
impl Message for WsClose {
    type Result = ();
}

impl Handler<WsClose> for WsTransport {
    type Result = ();
    fn handle(&mut self, _: WsClose, ctx: &mut Self::Context) {
        ctx.close(Some(ws::CloseCode::Normal.into()));
        ctx.stop();
    }
}
