//! Engine.IO packet codec: protocol v4, and v3 (Socket.IO v2 clients,
//! `engine.allow_eio3`) beside it.
//!
//! A packet is one ASCII type digit followed by its data. Over WebSocket each
//! packet is one frame, and binary messages travel as raw binary frames. Over
//! HTTP long-polling a body holds several packets separated by
//! [`RECORD_SEPARATOR`], and binary messages are written as `'b'` + base64
//! because the body is text.
//!
//! Protocol v3 (engine.io-parser 2.x, the reference server's `parser-v3`)
//! differs in three places: a binary WebSocket frame starts with the packet
//! type as a byte (`0x04` + data), a base64 record names its type
//! (`b4` + base64), and a polling payload is length-prefixed instead of
//! separated: `<length>:<packet>` records, the length in UTF-16 code units as
//! JavaScript counts a string, or, when the client takes binary (no `b64=1`)
//! and a binary message is among them, the XHR2 binary form
//! (`0x00`|`0x01`, the length's decimal digits as bytes, `0xFF`, the packet).

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

/// The Engine.IO protocol revision a session speaks (the `EIO` query
/// parameter of its requests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    /// Engine.IO v3: Socket.IO v2 clients. The client pings.
    V3,
    /// Engine.IO v4: Socket.IO v3 and later clients. The server pings.
    #[default]
    V4,
}

impl Protocol {
    /// The `EIO` value, also the metrics' `protocol` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::V3 => "3",
            Protocol::V4 => "4",
        }
    }
}

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
    /// v3: a binary packet whose type is not `message` (only messages carry
    /// binary data).
    #[error("binary Engine.IO v3 packet of type {0:?} (only messages carry binary data)")]
    BinaryNotMessage(u8),
    /// v3: a record's length prefix is missing, not a number, or too long.
    #[error("Engine.IO v3 payload record has no valid length")]
    InvalidLength,
    /// v3: a record's length runs past the payload or splits a character.
    #[error("Engine.IO v3 payload record is shorter than its length")]
    LengthMismatch,
    /// v3: a string record of a binary payload is not UTF-8.
    #[error("Engine.IO v3 binary payload string record is not UTF-8")]
    InvalidUtf8,
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

    /// Decodes one text frame or record in `protocol`: as
    /// [`Packet::decode_text`], except that a v3 base64 record names its
    /// type (`b4` + base64).
    pub fn decode_text_in(s: &str, protocol: Protocol) -> Result<Packet, DecodeError> {
        match (protocol, s.as_bytes()) {
            (Protocol::V3, [b'b', ty, ..]) => {
                if *ty != b'4' {
                    return Err(DecodeError::BinaryNotMessage(ty.wrapping_sub(b'0')));
                }
                BASE64
                    .decode(&s[2..])
                    .map(|b| Packet::Binary(Bytes::from(b)))
                    .map_err(|_| DecodeError::InvalidBase64)
            }
            (Protocol::V3, [b'b']) => Err(DecodeError::BinaryNotMessage(0)),
            _ => Packet::decode_text(s),
        }
    }

    /// A WebSocket binary frame is always a binary message in v4 (no type byte).
    #[cfg(any(test, feature = "internals"))]
    pub fn decode_ws_binary(b: Bytes) -> Packet {
        Packet::Binary(b)
    }

    /// A WebSocket binary frame (or binary payload record) in `protocol`:
    /// v3 puts the packet type in front as a byte, and only a message
    /// (`0x04`) carries binary data.
    pub fn decode_binary_in(b: Bytes, protocol: Protocol) -> Result<Packet, DecodeError> {
        match protocol {
            Protocol::V4 => Ok(Packet::Binary(b)),
            Protocol::V3 => match b.first() {
                None => Err(DecodeError::Empty),
                Some(4) => Ok(Packet::Binary(b.slice(1..))),
                Some(&ty) => Err(DecodeError::BinaryNotMessage(ty)),
            },
        }
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

/// The most digits a v3 length prefix may have: ten cover any body the
/// payload bound (at most 100 MiB) allows.
const V3_MAX_LENGTH_DIGITS: usize = 10;

/// Decodes a v3 text polling body: `<length>:<packet>` records, the length
/// in UTF-16 code units. A record of length 0 carries nothing and is
/// skipped, as the reference parser skips it.
pub fn decode_payload_v3(body: &str, max_packets: usize) -> Result<Vec<Packet>, DecodeError> {
    if body.is_empty() {
        return Err(DecodeError::Empty);
    }
    let mut packets = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let colon = rest.find(':').ok_or(DecodeError::InvalidLength)?;
        let digits = &rest[..colon];
        if digits.is_empty()
            || digits.len() > V3_MAX_LENGTH_DIGITS
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(DecodeError::InvalidLength);
        }
        let units: usize = digits.parse().map_err(|_| DecodeError::InvalidLength)?;
        rest = &rest[colon + 1..];
        // Walk `units` UTF-16 code units into `rest`.
        let mut counted = 0;
        let mut end = 0;
        for c in rest.chars() {
            if counted >= units {
                break;
            }
            counted += c.len_utf16();
            end += c.len_utf8();
        }
        if counted != units {
            return Err(DecodeError::LengthMismatch);
        }
        let (record, tail) = rest.split_at(end);
        rest = tail;
        if record.is_empty() {
            continue;
        }
        if packets.len() == max_packets {
            return Err(DecodeError::TooManyPackets(max_packets));
        }
        packets.push(Packet::decode_text_in(record, Protocol::V3)?);
    }
    Ok(packets)
}

/// Decodes a v3 binary polling body (`application/octet-stream`): records
/// of `0x00` (string) or `0x01` (binary), the length's decimal digits one
/// per byte, `0xFF`, then the packet (a string record's bytes are UTF-8).
pub fn decode_payload_v3_binary(
    body: &Bytes,
    max_packets: usize,
) -> Result<Vec<Packet>, DecodeError> {
    if body.is_empty() {
        return Err(DecodeError::Empty);
    }
    let mut packets = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let is_string = body[at] == 0;
        at += 1;
        // Ten digits fit a u64 (not every usize): converted below.
        let mut len: u64 = 0;
        let mut digits = 0;
        loop {
            match body.get(at) {
                Some(0xFF) if digits > 0 => break,
                Some(&d) if d <= 9 && digits < V3_MAX_LENGTH_DIGITS => {
                    len = len * 10 + u64::from(d);
                    digits += 1;
                    at += 1;
                }
                _ => return Err(DecodeError::InvalidLength),
            }
        }
        at += 1; // the 0xFF
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| at.checked_add(len))
            .ok_or(DecodeError::LengthMismatch)?;
        if end > body.len() {
            return Err(DecodeError::LengthMismatch);
        }
        if packets.len() == max_packets {
            return Err(DecodeError::TooManyPackets(max_packets));
        }
        let record = body.slice(at..end);
        at = end;
        packets.push(if is_string {
            let text = std::str::from_utf8(&record).map_err(|_| DecodeError::InvalidUtf8)?;
            Packet::decode_text_in(text, Protocol::V3)?
        } else {
            Packet::decode_binary_in(record, Protocol::V3)?
        });
    }
    Ok(packets)
}

/// Appends one v3 text payload record: the length in UTF-16 code units,
/// `:`, the record.
pub fn push_v3_record(out: &mut String, record: &str) {
    use std::fmt::Write as _;
    let units: usize = record.chars().map(char::len_utf16).sum();
    let _ = write!(out, "{units}:");
    out.push_str(record);
}

/// Appends one v3 binary payload record's head: the kind byte, the
/// length's decimal digits one per byte, `0xFF`.
pub fn push_v3_binary_head(out: &mut Vec<u8>, is_string: bool, len: usize) {
    out.push(if is_string { 0 } else { 1 });
    out.extend(len.to_string().bytes().map(|d| d - b'0'));
    out.push(0xFF);
}

/// A v3 base64 record: `b4` + base64 (only messages carry binary).
pub fn push_v3_base64(out: &mut String, data: &[u8]) {
    out.push_str("b4");
    BASE64.encode_string(data, out);
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
    fn v3_text_records_name_their_binary_type() {
        let v3 = |s| Packet::decode_text_in(s, Protocol::V3);
        assert_eq!(
            v3("b4AQID"),
            Ok(Packet::Binary(Bytes::from_static(&[1, 2, 3])))
        );
        assert_eq!(v3("4hello"), Ok(Packet::Message("hello".into())));
        assert_eq!(v3("2"), Ok(Packet::Ping(String::new())));
        assert_eq!(v3("b2AQID"), Err(DecodeError::BinaryNotMessage(2)));
        assert_eq!(v3("b"), Err(DecodeError::BinaryNotMessage(0)));
        assert_eq!(v3("b4!!"), Err(DecodeError::InvalidBase64));
        // v4 reads the same record as base64 of "4AQID", which is not.
        assert_eq!(
            Packet::decode_text_in("b4AQID", Protocol::V4),
            Err(DecodeError::InvalidBase64)
        );
    }

    #[test]
    fn v3_binary_frames_carry_their_type_byte() {
        let v3 = |b: &'static [u8]| Packet::decode_binary_in(Bytes::from_static(b), Protocol::V3);
        assert_eq!(
            v3(&[4, 1, 2, 3]),
            Ok(Packet::Binary(Bytes::from_static(&[1, 2, 3])))
        );
        assert_eq!(v3(&[4]), Ok(Packet::Binary(Bytes::new())));
        assert_eq!(v3(&[]), Err(DecodeError::Empty));
        assert_eq!(v3(&[2, 1]), Err(DecodeError::BinaryNotMessage(2)));
        assert_eq!(
            Packet::decode_binary_in(Bytes::from_static(&[4, 1]), Protocol::V4),
            Ok(Packet::Binary(Bytes::from_static(&[4, 1])))
        );
    }

    #[test]
    fn v3_text_payloads_count_utf16_units() {
        // The reference parser's examples: "11:hello world2:hi".
        assert_eq!(
            decode_payload_v3("6:4hello2:4a1:2", 16).unwrap(),
            vec![
                Packet::Message("hello".into()),
                Packet::Message("a".into()),
                Packet::Ping(String::new())
            ]
        );
        // "€" is one UTF-16 unit (three UTF-8 bytes), "😀" two (four bytes).
        assert_eq!(
            decode_payload_v3("4:4€😀1:6", 16).unwrap(),
            vec![Packet::Message("€😀".into()), Packet::Noop]
        );
        let mut out = String::new();
        push_v3_record(&mut out, "4€😀");
        push_v3_record(&mut out, "6");
        assert_eq!(out, "4:4€😀1:6");
        assert_eq!(
            decode_payload_v3("0:6:b4AQ==", 16).unwrap(),
            vec![Packet::Binary(Bytes::from_static(&[1]))]
        );
    }

    #[test]
    fn v3_text_payload_errors() {
        let e = |s| decode_payload_v3(s, 16).unwrap_err();
        assert_eq!(e(""), DecodeError::Empty);
        assert_eq!(e("4hello"), DecodeError::InvalidLength);
        assert_eq!(e(":4"), DecodeError::InvalidLength);
        assert_eq!(e("x:4"), DecodeError::InvalidLength);
        assert_eq!(e("99999999999:4"), DecodeError::InvalidLength);
        assert_eq!(e("9:4hello"), DecodeError::LengthMismatch);
        // A length that ends inside a surrogate pair splits a character.
        assert_eq!(e("2:4😀"), DecodeError::LengthMismatch);
        assert_eq!(e("1:7"), DecodeError::UnknownType('7'));
        assert_eq!(
            decode_payload_v3("1:61:61:6", 2).unwrap_err(),
            DecodeError::TooManyPackets(2)
        );
    }

    #[test]
    fn v3_binary_payloads() {
        // "4hi" as a string record, then a binary message [1, 2, 3].
        let body = Bytes::from_static(&[0, 3, 0xFF, b'4', b'h', b'i', 1, 4, 0xFF, 4, 1, 2, 3]);
        assert_eq!(
            decode_payload_v3_binary(&body, 16).unwrap(),
            vec![
                Packet::Message("hi".into()),
                Packet::Binary(Bytes::from_static(&[1, 2, 3]))
            ]
        );
        let mut head = Vec::new();
        push_v3_binary_head(&mut head, true, 3);
        push_v3_binary_head(&mut head, false, 12);
        assert_eq!(head, [0, 3, 0xFF, 1, 1, 2, 0xFF]);
        let e =
            |b: &'static [u8]| decode_payload_v3_binary(&Bytes::from_static(b), 16).unwrap_err();
        assert_eq!(e(&[]), DecodeError::Empty);
        assert_eq!(e(&[0, 0xFF]), DecodeError::InvalidLength);
        assert_eq!(e(&[0, 10, 0xFF]), DecodeError::InvalidLength);
        assert_eq!(e(&[0, 3]), DecodeError::InvalidLength);
        assert_eq!(e(&[0, 5, 0xFF, b'4']), DecodeError::LengthMismatch);
        assert_eq!(e(&[0, 2, 0xFF, b'4', 0xC3]), DecodeError::InvalidUtf8);
        assert_eq!(e(&[1, 2, 0xFF, 2, 1]), DecodeError::BinaryNotMessage(2));
        assert_eq!(
            decode_payload_v3_binary(
                &Bytes::from_static(&[0, 1, 0xFF, b'6', 0, 1, 0xFF, b'6']),
                1
            )
            .unwrap_err(),
            DecodeError::TooManyPackets(1)
        );
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
