//! Inbound WebSocket frames to Engine.IO packets: one decoder for both ways
//! a WebSocket is run (on the raw connection, [`super::conn`], or as
//! actix-web's response body, [`super::read_loop`]).

use actix_codec::Decoder;
use actix_http::ws::{CloseCode, CloseReason, Codec, Frame as WsFrame, Item};
use bytes::{Bytes, BytesMut};

use super::deflate::{inflate, InflateError};
use super::WsSink;
use crate::engineio::packet::{Packet, Protocol};

/// What a call to [`FrameReader::decode`] ended on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Every whole frame is decoded; the rest of the buffer is a partial
    /// frame (or nothing).
    More,
    /// The client sent a close frame: hand over what was decoded, then
    /// close with this code.
    Close(CloseCode),
    /// A bad frame: hand over what was decoded before it, report `kind`,
    /// close with the code.
    Fail(&'static str, CloseCode),
}

/// Decoder state of one WebSocket: the codec and a fragmented message being
/// put together.
pub(super) struct FrameReader {
    codec: Codec,
    /// A fragmented message: text or binary, compressed or not, its bytes.
    partial: Option<(bool, bool, BytesMut)>,
    max: usize,
    protocol: Protocol,
    /// permessage-deflate was negotiated: RSV1 marks a compressed message.
    inflate: bool,
    /// The frame at the front of the buffer had RSV1 set (cleared there for
    /// actix-http's codec, which refuses it: it knows no extension).
    rsv1: bool,
}

impl FrameReader {
    pub(super) fn new(max: usize, protocol: Protocol, inflate: bool) -> FrameReader {
        FrameReader {
            codec: Codec::new().max_size(max),
            partial: None,
            max,
            protocol,
            inflate,
            rsv1: false,
        }
    }

    /// Take RSV1 off the frame at the front of `buf`, remembering it, when
    /// it may carry it: the first frame of a data message, with deflate
    /// negotiated. Anywhere else the codec refuses the frame.
    fn take_rsv1(&mut self, buf: &mut BytesMut) {
        let Some(first) = buf.first_mut() else {
            return;
        };
        let opcode = *first & 0x0f;
        if self.inflate && *first & 0x40 != 0 && (opcode == 0x1 || opcode == 0x2) {
            *first &= !0x40;
            self.rsv1 = true;
        }
    }

    /// Decode every whole frame at the front of `buf` into `packets`,
    /// answering pings on `sink`. actix-http's codec does not check UTF-8;
    /// text is checked here.
    pub(super) fn decode(
        &mut self,
        buf: &mut BytesMut,
        packets: &mut Vec<Packet>,
        sink: &WsSink,
    ) -> Step {
        loop {
            self.take_rsv1(buf);
            let frame = match self.codec.decode(buf) {
                Ok(Some(f)) => f,
                Ok(None) => return Step::More,
                Err(actix_http::ws::ProtocolError::Overflow) => {
                    return Step::Fail("oversized", CloseCode::Size)
                }
                Err(_) => return Step::Fail("bad_frame", CloseCode::Protocol),
            };
            let rsv1 = std::mem::take(&mut self.rsv1);
            let (text, compressed, data) = match frame {
                WsFrame::Text(b) => (true, rsv1, b),
                WsFrame::Binary(b) => (false, rsv1, b),
                WsFrame::Continuation(item) => {
                    let (first, chunk, last) = match item {
                        Item::FirstText(b) => (Some(true), b, false),
                        Item::FirstBinary(b) => (Some(false), b, false),
                        Item::Continue(b) => (None, b, false),
                        Item::Last(b) => (None, b, true),
                    };
                    match (first, &mut self.partial) {
                        (Some(text), None) => {
                            self.partial = Some((text, rsv1, BytesMut::from(&chunk[..])));
                        }
                        (None, Some((_, _, acc))) => acc.extend_from_slice(&chunk),
                        _ => return Step::Fail("bad_frame", CloseCode::Protocol),
                    }
                    if self
                        .partial
                        .as_ref()
                        .is_some_and(|(_, _, acc)| acc.len() > self.max)
                    {
                        return Step::Fail("oversized", CloseCode::Size);
                    }
                    if !last {
                        continue;
                    }
                    match self.partial.take() {
                        Some((text, compressed, acc)) => (text, compressed, acc.freeze()),
                        None => continue,
                    }
                }
                WsFrame::Ping(p) => {
                    sink.pong(p);
                    continue;
                }
                WsFrame::Pong(_) => continue,
                WsFrame::Close(reason) => {
                    return Step::Close(reason.map_or(CloseCode::Normal, |r: CloseReason| r.code));
                }
            };
            let data = if compressed {
                match inflate(&data, self.max) {
                    Ok(d) => Bytes::from(d),
                    Err(InflateError::TooLarge) => return Step::Fail("oversized", CloseCode::Size),
                    Err(InflateError::Corrupt) => {
                        return Step::Fail("bad_deflate", CloseCode::Invalid)
                    }
                }
            } else {
                data
            };
            let packet = if text {
                match std::str::from_utf8(&data) {
                    Ok(s) => match Packet::decode_text_in(s, self.protocol) {
                        Ok(p) => p,
                        Err(_) => return Step::Fail("engine_decode", CloseCode::Invalid),
                    },
                    Err(_) => return Step::Fail("invalid_utf8", CloseCode::Invalid),
                }
            } else {
                match Packet::decode_binary_in(data, self.protocol) {
                    Ok(p) => p,
                    Err(_) => return Step::Fail("engine_decode", CloseCode::Invalid),
                }
            };
            packets.push(packet);
        }
    }
}
