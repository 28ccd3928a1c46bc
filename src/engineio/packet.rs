//! Engine.IO protocol v4 packet codec.
//!
//! A packet is one ASCII type digit followed by its data. Over WebSocket each
//! packet is one frame, and binary messages travel as raw binary frames. Over
//! HTTP long-polling a body holds several packets separated by
//! [`RECORD_SEPARATOR`], and binary messages are written as `'b'` + base64
//! because the body is text.

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use bytes::Bytes;

/// Separates the packets of a polling payload (ASCII "record separator");
/// it can't occur in base64 or in any JSON the Socket.IO layer produces.
pub const RECORD_SEPARATOR: char = '\x1e';
const RECORD_SEPARATOR_BYTE: u8 = 0x1e;

/// Encodes with padding, as the JS client expects, but accepts unpadded input:
/// some clients strip padding and rejecting them would buy nothing.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Handshake JSON text, sent by the server only.
    Open(String),
    Close,
    /// Carries `"probe"` while a transport upgrade is being tested.
    Ping(String),
    Pong(String),
    Message(String),
    /// A binary message: a raw WebSocket binary frame, or `'b'` + base64 in a
    /// polling payload.
    Binary(Bytes),
    Upgrade,
    Noop,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("empty Engine.IO packet (no type character)")]
    Empty,
    #[error("unknown Engine.IO packet type {0:?}")]
    UnknownType(char),
    #[error("binary Engine.IO packet is not valid base64")]
    InvalidBase64,
    #[error("polling payload holds more than {0} packets")]
    TooManyPackets(usize),
}

impl Packet {
    /// Decodes one WebSocket text frame or one record of a polling payload.
    pub fn decode_text(s: &str) -> Result<Packet, DecodeError> {
        let bytes = s.as_bytes();
        let Some(&ty) = bytes.first() else {
            return Err(DecodeError::Empty);
        };
        // Only read for ASCII types, where byte 1 is a char boundary; `get`
        // keeps a multi-byte first char from panicking.
        let rest = s.get(1..).unwrap_or("");
        Ok(match ty {
            b'0' => Packet::Open(rest.to_owned()),
            // Data after close/upgrade/noop has no meaning; the JS parser
            // ignores it too, so tolerate it rather than kill the session.
            b'1' => Packet::Close,
            b'2' => Packet::Ping(rest.to_owned()),
            b'3' => Packet::Pong(rest.to_owned()),
            b'4' => Packet::Message(rest.to_owned()),
            b'5' => Packet::Upgrade,
            b'6' => Packet::Noop,
            b'b' => Packet::Binary(
                BASE64
                    .decode(rest)
                    .map(Bytes::from)
                    .map_err(|_| DecodeError::InvalidBase64)?,
            ),
            _ => {
                // Report the whole (possibly multi-byte) character.
                let c = s.chars().next().unwrap_or(char::REPLACEMENT_CHARACTER);
                return Err(DecodeError::UnknownType(c));
            }
        })
    }

    /// A WebSocket binary frame is always a binary message in v4 (no type byte).
    pub fn decode_ws_binary(b: Bytes) -> Packet {
        Packet::Binary(b)
    }

    #[cfg(test)]
    /// Stable lowercase name, for metric labels and logs.
    pub fn type_name(&self) -> &'static str {
        match self {
            Packet::Open(_) => "open",
            Packet::Close => "close",
            Packet::Ping(_) => "ping",
            Packet::Pong(_) => "pong",
            Packet::Message(_) => "message",
            Packet::Binary(_) => "binary",
            Packet::Upgrade => "upgrade",
            Packet::Noop => "noop",
        }
    }

    /// Appends the text form; binary messages become `'b'` + base64, which is
    /// only correct for polling (WebSocket sends them raw, as binary frames).
    pub fn encode_text(&self, out: &mut String) {
        out.reserve(self.encoded_text_len());
        match self {
            Packet::Open(d) => push_typed(out, '0', d),
            Packet::Close => out.push('1'),
            Packet::Ping(d) => push_typed(out, '2', d),
            Packet::Pong(d) => push_typed(out, '3', d),
            Packet::Message(d) => push_typed(out, '4', d),
            Packet::Upgrade => out.push('5'),
            Packet::Noop => out.push('6'),
            Packet::Binary(b) => {
                out.push('b');
                BASE64.encode_string(b, out);
            }
        }
    }

    /// The text form in a new, exactly sized `String`.
    #[cfg(any(test, feature = "internals"))]
    pub fn to_text(&self) -> String {
        let mut s = String::with_capacity(self.encoded_text_len());
        self.encode_text(&mut s);
        s
    }

    /// Exact length in bytes of [`Packet::encode_text`]'s output.
    pub fn encoded_text_len(&self) -> usize {
        match self {
            Packet::Open(d) | Packet::Ping(d) | Packet::Pong(d) | Packet::Message(d) => 1 + d.len(),
            Packet::Close | Packet::Upgrade | Packet::Noop => 1,
            Packet::Binary(b) => 1 + b.len().div_ceil(3) * 4,
        }
    }
}

fn push_typed(out: &mut String, ty: char, data: &str) {
    out.push(ty);
    out.push_str(data);
}

/// Decodes an HTTP long-polling POST body. `max_packets` is checked before any
/// packet is decoded, so a hostile body costs one scan, not `n` allocations.
pub fn decode_payload(body: &str, max_packets: usize) -> Result<Vec<Packet>, DecodeError> {
    let count = 1 + body.bytes().filter(|&b| b == RECORD_SEPARATOR_BYTE).count();
    if count > max_packets {
        return Err(DecodeError::TooManyPackets(max_packets));
    }
    let mut packets = Vec::with_capacity(count);
    for record in body.split(RECORD_SEPARATOR) {
        packets.push(Packet::decode_text(record)?);
    }
    Ok(packets)
}

/// Encodes packets as a polling GET response body.
#[cfg(any(test, feature = "internals"))]
pub fn encode_payload(packets: &[Packet]) -> String {
    let mut out = String::new();
    encode_payload_into(packets, &mut out);
    out
}

/// Appends the polling body for `packets` to `out`, growing it at most once.
#[cfg(any(test, feature = "internals"))]
pub fn encode_payload_into(packets: &[Packet], out: &mut String) {
    let len: usize = packets.iter().map(Packet::encoded_text_len).sum::<usize>()
        + packets.len().saturating_sub(1);
    out.reserve(len);
    for (i, p) in packets.iter().enumerate() {
        if i > 0 {
            out.push(RECORD_SEPARATOR);
        }
        p.encode_text(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(p: &Packet) -> String {
        p.to_text()
    }

    #[test]
    fn encodes_every_type() {
        assert_eq!(
            text(&Packet::Open(r#"{"sid":"lv_VI97HAXpY6yYWAAAC"}"#.into())),
            r#"0{"sid":"lv_VI97HAXpY6yYWAAAC"}"#
        );
        assert_eq!(text(&Packet::Close), "1");
        assert_eq!(text(&Packet::Ping(String::new())), "2");
        assert_eq!(text(&Packet::Ping("probe".into())), "2probe");
        assert_eq!(text(&Packet::Pong("probe".into())), "3probe");
        assert_eq!(text(&Packet::Message("hello".into())), "4hello");
        assert_eq!(text(&Packet::Upgrade), "5");
        assert_eq!(text(&Packet::Noop), "6");
        assert_eq!(
            text(&Packet::Binary(Bytes::from_static(&[1, 2, 3, 4]))),
            "bAQIDBA=="
        );
        // Socket.IO CONNECT inside an Engine.IO message.
        assert_eq!(
            text(&Packet::Message(r#"0{"sid":"abc"}"#.into())),
            r#"40{"sid":"abc"}"#
        );
    }

    #[test]
    fn encoded_len_is_exact() {
        for n in 0..10 {
            let p = Packet::Binary(Bytes::from(vec![7u8; n]));
            assert_eq!(p.to_text().len(), p.encoded_text_len());
        }
        let p = Packet::Message("€€€".into());
        assert_eq!(p.to_text().len(), p.encoded_text_len());
    }

    #[test]
    fn decodes_every_type() {
        let d = |s| Packet::decode_text(s).unwrap();
        assert_eq!(d("0{}"), Packet::Open("{}".into()));
        assert_eq!(d("1"), Packet::Close);
        assert_eq!(d("2"), Packet::Ping(String::new()));
        assert_eq!(d("2probe"), Packet::Ping("probe".into()));
        assert_eq!(d("3probe"), Packet::Pong("probe".into()));
        assert_eq!(d("4hello"), Packet::Message("hello".into()));
        assert_eq!(d("4"), Packet::Message(String::new()));
        assert_eq!(d("4€€€"), Packet::Message("€€€".into()));
        assert_eq!(d("5"), Packet::Upgrade);
        assert_eq!(d("6"), Packet::Noop);
        assert_eq!(
            d("bAQIDBA=="),
            Packet::Binary(Bytes::from_static(&[1, 2, 3, 4]))
        );
        assert_eq!(
            d("bAQIDBA"),
            Packet::Binary(Bytes::from_static(&[1, 2, 3, 4]))
        );
        assert_eq!(d("b"), Packet::Binary(Bytes::new()));
    }

    #[test]
    fn tolerates_trailing_data_on_dataless_types() {
        assert_eq!(Packet::decode_text("1x"), Ok(Packet::Close));
        assert_eq!(Packet::decode_text("5probe"), Ok(Packet::Upgrade));
        assert_eq!(Packet::decode_text("6junk"), Ok(Packet::Noop));
    }

    #[test]
    fn decode_errors() {
        assert_eq!(Packet::decode_text(""), Err(DecodeError::Empty));
        assert_eq!(Packet::decode_text("7"), Err(DecodeError::UnknownType('7')));
        assert_eq!(
            Packet::decode_text("x4"),
            Err(DecodeError::UnknownType('x'))
        );
        assert_eq!(Packet::decode_text("é"), Err(DecodeError::UnknownType('é')));
        assert_eq!(Packet::decode_text("b!!!"), Err(DecodeError::InvalidBase64));
        assert_eq!(Packet::decode_text("bA"), Err(DecodeError::InvalidBase64));
        assert_eq!(
            decode_payload("4a\x1e4b\x1e4c", 2),
            Err(DecodeError::TooManyPackets(2))
        );
        assert_eq!(decode_payload("4a\x1e\x1e4c", 10), Err(DecodeError::Empty));
        assert_eq!(decode_payload("", 10), Err(DecodeError::Empty));
    }

    #[test]
    fn error_messages_name_the_problem() {
        assert_eq!(
            DecodeError::UnknownType('x').to_string(),
            "unknown Engine.IO packet type 'x'"
        );
        assert_eq!(
            DecodeError::TooManyPackets(16).to_string(),
            "polling payload holds more than 16 packets"
        );
    }

    #[test]
    fn payload_examples_from_the_protocol() {
        let packets = vec![
            Packet::Message("hello".into()),
            Packet::Binary(Bytes::from_static(&[1, 2, 3])),
        ];
        assert_eq!(encode_payload(&packets), "4hello\x1ebAQID");
        assert_eq!(decode_payload("4hello\x1ebAQID", 16).unwrap(), packets);

        let packets = vec![
            Packet::Ping("probe".into()),
            Packet::Message("hello".into()),
            Packet::Close,
        ];
        assert_eq!(encode_payload(&packets), "2probe\x1e4hello\x1e1");
        assert_eq!(decode_payload("2probe\x1e4hello\x1e1", 3).unwrap(), packets);

        assert_eq!(
            decode_payload("4hello\x1e4€€€", 16).unwrap(),
            vec![
                Packet::Message("hello".into()),
                Packet::Message("€€€".into())
            ]
        );
        assert_eq!(encode_payload(&[]), "");
    }

    #[test]
    fn encode_payload_into_appends() {
        let mut out = String::from("x");
        encode_payload_into(&[Packet::Noop, Packet::Noop], &mut out);
        assert_eq!(out, "x6\x1e6");
    }

    #[test]
    fn type_names() {
        let all = [
            (Packet::Open(String::new()), "open"),
            (Packet::Close, "close"),
            (Packet::Ping(String::new()), "ping"),
            (Packet::Pong(String::new()), "pong"),
            (Packet::Message(String::new()), "message"),
            (Packet::Binary(Bytes::new()), "binary"),
            (Packet::Upgrade, "upgrade"),
            (Packet::Noop, "noop"),
        ];
        for (p, name) in all {
            assert_eq!(p.type_name(), name);
        }
    }
}
