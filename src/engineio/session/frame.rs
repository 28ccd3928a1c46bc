//! What a session sends and receives: encoded outbound frames, shared by every
//! receiver of a broadcast, and the inbound messages handed to the app.

use bytes::Bytes;
use bytestring::ByteString;

use crate::engineio::packet::Packet;

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

    pub(super) fn control(p: &Packet) -> Frame {
        let mut s = String::with_capacity(8);
        p.encode_text(&mut s);
        Frame::Text(s.into())
    }
}
#[derive(Debug)]
pub enum Message {
    Text(String),
    Binary(Bytes),
}

impl Frame {
    pub(super) fn as_text(&self) -> String {
        match self {
            Frame::Text(t) => t.to_string(),
            Frame::Binary(_) => String::new(),
        }
    }
}

/// Body of a polling GET response: records joined by the record separator,
/// binary as `b` + base64.
pub(super) fn encode_poll_body(buffer: &mut Vec<Frame>) -> String {
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
}
