//! What a session sends and receives: encoded outbound frames, shared by every
//! receiver of a broadcast, and the inbound messages handed to the app.

use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};

use crate::engineio::packet::{
    push_v3_base64, push_v3_binary_head, push_v3_record, Packet, Protocol,
};
use crate::engineio::websocket::deflate::{deflate_frame, may_compress};
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
    /// payloads that may be compressed at all (`deflate::may_compress`:
    /// never while no engine of the process has deflate on).
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
            deflated: may_compress(len).then(Default::default),
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
    /// compressed once. A payload too short to compress (see
    /// `deflate::may_compress`), or one that deflate does not shrink, is
    /// sent as it is.
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

/// How a session's polling bodies are framed, fixed at its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PollFraming {
    /// v4: records joined by the record separator, binary as `b` + base64.
    #[default]
    V4,
    /// v3 with `b64=1`: `<length>:<record>` text, binary as `b4` + base64.
    V3Text,
    /// v3 from a client that takes binary: text as `V3Text` while no binary
    /// message is queued, else the XHR2 binary form (`application/octet-stream`).
    V3Binary,
}

impl PollFraming {
    /// The framing of a session speaking `protocol`, whose handshake asked
    /// for base64 (`b64=1`) or not.
    pub fn of(protocol: Protocol, base64: bool) -> PollFraming {
        match (protocol, base64) {
            (Protocol::V4, _) => PollFraming::V4,
            (Protocol::V3, true) => PollFraming::V3Text,
            (Protocol::V3, false) => PollFraming::V3Binary,
        }
    }

    /// The body holding the one control packet `p` (a noop, a close).
    pub fn control(self, p: &Packet) -> PollBody {
        encode_poll_body(&mut vec![Frame::control(p)], self)
    }
}

/// A polling GET response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollBody {
    Text(String),
    /// v3's binary payload.
    Binary(Vec<u8>),
}

impl PollBody {
    pub fn len(&self) -> usize {
        match self {
            PollBody::Text(t) => t.len(),
            PollBody::Binary(b) => b.len(),
        }
    }

    #[cfg(any(test, feature = "internals"))]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the reference server answers it as.
    pub fn content_type(&self) -> &'static str {
        match self {
            PollBody::Text(_) => "text/plain; charset=UTF-8",
            PollBody::Binary(_) => "application/octet-stream",
        }
    }

    pub fn into_bytes(self) -> Bytes {
        match self {
            PollBody::Text(t) => Bytes::from(t),
            PollBody::Binary(b) => Bytes::from(b),
        }
    }
}

/// Body of a polling GET response, draining `buffer`: v4 records joined by
/// the record separator, binary as `b` + base64; v3 as [`PollFraming`] says.
pub fn encode_poll_body(buffer: &mut Vec<Frame>, framing: PollFraming) -> PollBody {
    use base64::Engine as _;
    match framing {
        PollFraming::V4 => {
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
            PollBody::Text(out)
        }
        PollFraming::V3Binary if buffer.iter().any(|f| f.binary) => {
            let mut out = Vec::with_capacity(buffer.iter().map(|f| f.len() + 8).sum());
            for f in buffer.drain(..) {
                match f.view() {
                    FrameRef::Text(t) => {
                        push_v3_binary_head(&mut out, true, t.len());
                        out.extend_from_slice(t.as_bytes());
                    }
                    FrameRef::Binary(b) => {
                        push_v3_binary_head(&mut out, false, b.len() + 1);
                        out.push(4);
                        out.extend_from_slice(b);
                    }
                }
            }
            PollBody::Binary(out)
        }
        PollFraming::V3Text | PollFraming::V3Binary => {
            if buffer.is_empty() {
                return PollBody::Text("0:".into());
            }
            let mut out = String::with_capacity(buffer.iter().map(|f| f.len() + 6).sum());
            let mut record = String::new();
            for f in buffer.drain(..) {
                match f.view() {
                    FrameRef::Text(t) => push_v3_record(&mut out, t),
                    FrameRef::Binary(b) => {
                        record.clear();
                        push_v3_base64(&mut record, b);
                        push_v3_record(&mut out, &record);
                    }
                }
            }
            PollBody::Text(out)
        }
    }
}

impl Frame {
    /// This frame as a v3 WebSocket carries it: a binary message gets its
    /// type byte in front (`0x04` + data), or becomes a `b4` + base64 text
    /// frame for a WebSocket opened with `b64=1`. `None`: the frame goes as
    /// it is (text is the same in both protocols). Made per receiver: only
    /// v3 sessions pay for it.
    pub fn for_v3_websocket(&self, base64: bool) -> Option<Frame> {
        let FrameRef::Binary(b) = self.view() else {
            return None;
        };
        Some(if base64 {
            let mut s = String::with_capacity(2 + b.len().div_ceil(3) * 4);
            push_v3_base64(&mut s, b);
            Frame::text(&s)
        } else {
            Frame::build(true, &[&[4], b])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engineio::websocket::deflate;

    #[test]
    fn poll_body_joins_records_and_base64s_binary() {
        let mut buf = vec![
            Frame::text("4hello"),
            Frame::binary(&[1, 2, 3]),
            Frame::text("2"),
        ];
        assert_eq!(
            encode_poll_body(&mut buf, PollFraming::V4),
            PollBody::Text("4hello\x1ebAQID\x1e2".into())
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn a_frame_is_compressed_once_for_every_receiver() {
        // As an engine with deflate on does when it is made.
        deflate::enable(64);
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
        let b = Frame::binary(&deflate::noise(500));
        assert_eq!(b.deflated_wire(), b.wire());
    }

    #[test]
    fn v3_poll_bodies() {
        let frames = || {
            vec![
                Frame::text("4h€"),
                Frame::binary(&[1, 2, 3]),
                Frame::text("3"),
            ]
        };
        assert_eq!(
            encode_poll_body(&mut frames(), PollFraming::V3Text),
            PollBody::Text("3:4h€6:b4AQID1:3".into())
        );
        let mut expected = vec![0, 5, 0xFF];
        expected.extend_from_slice("4h€".as_bytes());
        expected.extend_from_slice(&[1, 4, 0xFF, 4, 1, 2, 3, 0, 1, 0xFF, b'3']);
        let body = encode_poll_body(&mut frames(), PollFraming::V3Binary);
        assert_eq!(body.content_type(), "application/octet-stream");
        assert_eq!(body, PollBody::Binary(expected));
        // Text only: text framing even for a client that takes binary.
        assert_eq!(
            encode_poll_body(&mut vec![Frame::text("6")], PollFraming::V3Binary),
            PollBody::Text("1:6".into())
        );
        assert_eq!(
            encode_poll_body(&mut Vec::new(), PollFraming::V3Text),
            PollBody::Text("0:".into())
        );
        assert_eq!(
            PollFraming::V3Binary.control(&Packet::Noop),
            PollBody::Text("1:6".into())
        );
    }

    #[test]
    fn v3_websocket_frames() {
        assert_eq!(Frame::text("4x").for_v3_websocket(false), None);
        let b = Frame::binary(&[1, 2]);
        assert_eq!(
            &b.for_v3_websocket(false).unwrap().wire()[..],
            &[0x82, 3, 4, 1, 2]
        );
        assert_eq!(b.for_v3_websocket(true).unwrap().as_str(), Some("b4AQI="));
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
