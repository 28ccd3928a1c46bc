//! What a session sends and receives: encoded outbound frames, shared by every
//! receiver of a broadcast, and the inbound messages handed to the app.

use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};

use crate::engineio::packet::Packet;
use crate::engineio::websocket::deflate::{deflate_frame, MIN_DEFLATE};
use crate::engineio::websocket::{put_header, MAX_HEADER, OP_BINARY, OP_TEXT};

/// One outbound Engine.IO message, encoded once and shared by every receiver
/// of a broadcast. Its bytes are the whole WebSocket frame, header included
/// (an unmasked final frame, RFC 6455 §5.2), so a WebSocket write queues a
/// reference to them and nothing per receiver; long-polling reads the
/// payload behind the header.
#[derive(Clone)]
pub struct Frame {
    wire: Bytes,
    /// Length of the WebSocket header at the front of `wire` (2 to 10).
    head: u8,
    binary: bool,
    /// The frame compressed (permessage-deflate), made by the first
    /// receiver that negotiated it and shared with the others; only for
    /// payloads that may be compressed at all.
    deflated: Option<Arc<OnceLock<Bytes>>>,
}

impl PartialEq for Frame {
    fn eq(&self, other: &Frame) -> bool {
        (&self.wire, self.head, self.binary) == (&other.wire, other.head, other.binary)
    }
}

impl Eq for Frame {}

/// What a [`Frame`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameRef<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

impl Frame {
    /// A frame whose payload is `parts`, concatenated.
    fn build(binary: bool, parts: &[&[u8]]) -> Frame {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut buf = BytesMut::with_capacity(len + MAX_HEADER);
        put_header(&mut buf, if binary { OP_BINARY } else { OP_TEXT }, len);
        let head = buf.len() as u8;
        for p in parts {
            buf.extend_from_slice(p);
        }
        Frame {
            wire: buf.freeze(),
            head,
            binary,
            deflated: (len >= MIN_DEFLATE).then(Default::default),
        }
    }

    pub fn text(text: &str) -> Frame {
        Frame::build(false, &[text.as_bytes()])
    }

    pub fn binary(data: &[u8]) -> Frame {
        Frame::build(true, &[data])
    }

    /// A `message` packet carrying `text` (`4` + text).
    pub fn message(text: &str) -> Frame {
        Frame::build(false, &[b"4", text.as_bytes()])
    }

    pub(super) fn control(p: &Packet) -> Frame {
        let mut s = String::with_capacity(8);
        p.encode_text(&mut s);
        Frame::text(&s)
    }

    /// The payload's length (the Engine.IO packet, without the header).
    pub fn len(&self) -> usize {
        self.wire.len() - self.head as usize
    }

    #[cfg(any(test, feature = "internals"))]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The Engine.IO packet: text or binary.
    pub fn view(&self) -> FrameRef<'_> {
        let payload = &self.wire[self.head as usize..];
        if self.binary {
            FrameRef::Binary(payload)
        } else {
            debug_assert!(std::str::from_utf8(payload).is_ok());
            // SAFETY: a text frame's payload is only ever built from `&str`s
            // (`text`, `message`, `control`) and the fields are private.
            FrameRef::Text(unsafe { std::str::from_utf8_unchecked(payload) })
        }
    }

    /// The text payload; `None` for a binary frame.
    pub fn as_str(&self) -> Option<&str> {
        match self.view() {
            FrameRef::Text(t) => Some(t),
            FrameRef::Binary(_) => None,
        }
    }

    /// The whole WebSocket frame, shared (a reference count, no copy).
    pub(crate) fn wire(&self) -> &Bytes {
        &self.wire
    }

    /// The whole WebSocket frame compressed (RSV1 set), for a receiver that
    /// negotiated permessage-deflate: compressed by the first receiver
    /// that asks, then shared like [`Frame::wire`], so a broadcast is
    /// compressed once. A payload under [`MIN_DEFLATE`] bytes, or one that
    /// deflate does not shrink, is sent as it is.
    pub(crate) fn deflated_wire(&self) -> &Bytes {
        let Some(cell) = &self.deflated else {
            return &self.wire;
        };
        let z = cell.get_or_init(|| deflate_frame(self.binary, &self.wire[self.head as usize..]));
        if z.len() < self.wire.len() {
            z
        } else {
            &self.wire
        }
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.view().fmt(f)
    }
}

#[derive(Debug)]
pub enum Message {
    Text(String),
    Binary(Bytes),
}

impl Frame {
    pub(super) fn as_text(&self) -> String {
        self.as_str().unwrap_or_default().to_string()
    }
}

/// Body of a polling GET response: records joined by the record separator,
/// binary as `b` + base64.
pub fn encode_poll_body(buffer: &mut Vec<Frame>) -> String {
    use base64::Engine as _;
    let mut out = String::with_capacity(buffer.iter().map(|f| f.len() + 1).sum());
    for (i, f) in buffer.drain(..).enumerate() {
        if i > 0 {
            out.push('\x1e');
        }
        match f.view() {
            FrameRef::Text(t) => out.push_str(t),
            FrameRef::Binary(b) => {
                out.push('b');
                base64::engine::general_purpose::STANDARD.encode_string(b, &mut out);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_body_joins_records_and_base64s_binary() {
        let mut buf = vec![
            Frame::text("4hello"),
            Frame::binary(&[1, 2, 3]),
            Frame::text("2"),
        ];
        assert_eq!(encode_poll_body(&mut buf), "4hello\x1ebAQID\x1e2");
        assert!(buf.is_empty());
    }

    #[test]
    fn a_frame_is_compressed_once_for_every_receiver() {
        let text = "42[\"msg\",\"riptide riptide riptide\"]".repeat(50);
        let f = Frame::message(&text);
        let copy = f.clone();
        let z = f.deflated_wire().clone();
        assert_eq!(z[0], 0xC1, "FIN + RSV1 + text");
        assert!(z.len() < f.wire().len() / 5);
        // The clone (another receiver) gets the same bytes, not a second
        // compression.
        assert_eq!(copy.deflated_wire().as_ptr(), z.as_ptr());
        // Too short to compress, or not shrunk by it: the frame as it is.
        let short = Frame::message("hi");
        assert_eq!(short.deflated_wire(), short.wire());
        let mut x: u32 = 7;
        let noise: Vec<u8> = (0..500)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let b = Frame::binary(&noise);
        assert_eq!(b.deflated_wire(), b.wire());
    }

    #[test]
    fn carries_its_websocket_header() {
        for len in [0, 1, 125, 126, 127, 65535, 65536, 70000] {
            let text = "x".repeat(len);
            let f = Frame::text(&text);
            assert_eq!(f.len(), len);
            assert_eq!(f.as_str(), Some(text.as_str()));
            let wire = f.wire();
            assert_eq!(wire[0], 0x81, "FIN + text");
            let (n, head) = match wire[1] {
                126 => (u16::from_be_bytes([wire[2], wire[3]]) as usize, 4),
                127 => (
                    u64::from_be_bytes(wire[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                n => (n as usize, 2),
            };
            assert_eq!((n, wire.len()), (len, head + len), "{len}");
        }
        let b = Frame::binary(&[1, 2, 3]);
        assert_eq!(&b.wire()[..], &[0x82, 3, 1, 2, 3]);
        assert_eq!(b.view(), FrameRef::Binary(&[1, 2, 3]));
        assert_eq!(
            &Frame::message("hi").wire()[..],
            &[0x81, 3, b'4', b'h', b'i']
        );
    }
}
