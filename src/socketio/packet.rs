//! Socket.IO protocol v5 packet codec.
//!
//! Wire form of the text part:
//! `<type>[<attachments>-][<namespace>,][<ack id>][<JSON>]`.
//! Binary packets (types 5 and 6) carry `{"_placeholder":true,"num":N}`
//! objects in their JSON; the `N` attachments follow as separate Engine.IO
//! binary messages, so decoding is stateful (see [`Decoder`]).
//!
//! Decoding follows socket.io-parser v4's `decodeString` (the reference
//! implementation), tightened where it is loose in ways no real client relies
//! on: empty attachment counts, ack ids that overflow, non-string event names.
//! Unlike it, the decoder does not reject reserved event names: that is a
//! server policy, see [`is_reserved_event`].

use bytes::Bytes;
use serde_json::{Map, Value};

/// Event names a server must not dispatch to user handlers, because
/// Socket.IO or the Node.js EventEmitter give them a meaning of their own.
pub const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// Whether `name` is one of [`RESERVED_EVENTS`].
pub fn is_reserved_event(name: &str) -> bool {
    RESERVED_EVENTS.contains(&name)
}

/// The JSON object that stands for attachment `num` in a binary packet.
pub fn placeholder(num: usize) -> Value {
    let mut m = Map::new();
    m.insert("_placeholder".to_owned(), Value::Bool(true));
    m.insert("num".to_owned(), Value::from(num));
    Value::Object(m)
}

/// The attachment an object stands for, if it is a placeholder (as the
/// reference parser reads one: `"_placeholder": true` and an integer `num`).
pub fn placeholder_num(m: &Map<String, Value>) -> Option<usize> {
    if m.get("_placeholder") != Some(&Value::Bool(true)) {
        return None;
    }
    m.get("num")
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
}

#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// `"/"` for the main namespace; otherwise starts with `'/'` and holds no `','`.
    pub ns: String,
    pub data: PacketData,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PacketData {
    /// Client to server: optional auth object. Server to client: `{"sid": ...}`.
    Connect(Option<Value>),
    Disconnect,
    /// `data` is an array whose first element is the event name.
    Event {
        data: Value,
        id: Option<u64>,
    },
    /// `data` is the array of the acknowledgement's arguments.
    Ack {
        data: Value,
        id: u64,
    },
    /// Usually `{"message": ..., "data": ...}`; a bare string is accepted too.
    ConnectError(Value),
    /// `data` keeps its placeholders; `attachments[n]` is placeholder `n`.
    BinaryEvent {
        data: Value,
        id: Option<u64>,
        attachments: Vec<Bytes>,
    },
    BinaryAck {
        data: Value,
        id: u64,
        attachments: Vec<Bytes>,
    },
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("empty Socket.IO packet")]
    Empty,
    #[error("unknown Socket.IO packet type byte {0:#04x}")]
    UnknownType(u8),
    #[error("binary packet's attachment count is missing, not a number or not followed by '-'")]
    InvalidAttachmentCount,
    #[error("binary packet declares {declared} attachments, more than the allowed {max}")]
    TooManyAttachments { declared: usize, max: usize },
    #[error("ack id does not fit in 64 bits")]
    InvalidAckId,
    #[error("ACK packet has no ack id")]
    MissingAckId,
    #[error("ack id on a packet type that cannot carry one")]
    UnexpectedAckId,
    #[error("packet type requires a JSON payload but has none")]
    MissingData,
    #[error("payload is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("EVENT payload is not a JSON array")]
    EventNotArray,
    #[error("EVENT payload's first element is not an event name string")]
    EventNameNotString,
    #[error("ACK payload is not a JSON array")]
    AckNotArray,
    #[error("CONNECT payload is not a JSON object")]
    ConnectPayloadNotObject,
    #[error("CONNECT_ERROR payload is neither a JSON object nor a string")]
    ConnectErrorPayloadInvalid,
    #[error("DISCONNECT packet carries a payload")]
    TrailingData,
    #[error("binary placeholder has a missing, non-integer or out-of-range num")]
    InvalidPlaceholder,
    #[error("binary attachment received while no binary packet awaits one")]
    UnexpectedBinary,
    #[error("text packet received while a binary packet still awaits attachments")]
    UnexpectedText,
    // The msgpack parser's (`super::msgpack`).
    #[error(
        "text message on a server speaking the msgpack parser (each packet is one binary message)"
    )]
    TextOnMsgpack,
    #[error("packet is not valid MessagePack: {0}")]
    InvalidMsgpack(String),
    #[error("MessagePack packet is not a map")]
    NotAMap,
    #[error("MessagePack packet has the key `{0}` twice")]
    DuplicateKey(String),
    #[error("packet type is missing or not an integer from 0 to 4")]
    InvalidPacketType,
    #[error("namespace is missing, not a string, does not start with '/' or holds a ','")]
    InvalidNamespace,
    #[error("ack id is not a non-negative integer")]
    AckIdNotInteger,
    #[error("MessagePack extension type {0} has no meaning in a Socket.IO packet")]
    UnsupportedExt(i8),
}

const CONNECT: u8 = b'0';
const DISCONNECT: u8 = b'1';
const EVENT: u8 = b'2';
const ACK: u8 = b'3';
const CONNECT_ERROR: u8 = b'4';
const BINARY_EVENT: u8 = b'5';
const BINARY_ACK: u8 = b'6';

/// Constructors for tests and benches.
#[cfg(any(test, feature = "internals"))]
impl Packet {
    pub fn connect(ns: impl Into<String>, data: Option<Value>) -> Self {
        Self::new(ns, PacketData::Connect(data))
    }

    pub fn disconnect(ns: impl Into<String>) -> Self {
        Self::new(ns, PacketData::Disconnect)
    }

    /// An event without ack id; see [`Packet::with_ack_id`].
    pub fn event(ns: impl Into<String>, name: impl Into<String>, args: Vec<Value>) -> Self {
        Self::new(
            ns,
            PacketData::Event {
                data: event_array(name.into(), args),
                id: None,
            },
        )
    }

    /// `args` must already hold [`placeholder`]s referring to `attachments`.
    pub fn binary_event(
        ns: impl Into<String>,
        name: impl Into<String>,
        args: Vec<Value>,
        attachments: Vec<Bytes>,
    ) -> Self {
        Self::new(
            ns,
            PacketData::BinaryEvent {
                data: event_array(name.into(), args),
                id: None,
                attachments,
            },
        )
    }

    pub fn ack(ns: impl Into<String>, id: u64, args: Vec<Value>) -> Self {
        Self::new(
            ns,
            PacketData::Ack {
                data: Value::Array(args),
                id,
            },
        )
    }

    /// `args` must already hold [`placeholder`]s referring to `attachments`.
    pub fn binary_ack(
        ns: impl Into<String>,
        id: u64,
        args: Vec<Value>,
        attachments: Vec<Bytes>,
    ) -> Self {
        Self::new(
            ns,
            PacketData::BinaryAck {
                data: Value::Array(args),
                id,
                attachments,
            },
        )
    }

    /// `{"message": message}`, plus `"data"` when given, as the JS client expects.
    pub fn connect_error(
        ns: impl Into<String>,
        message: impl Into<String>,
        data: Option<Value>,
    ) -> Self {
        let mut m = Map::new();
        m.insert("message".to_owned(), Value::String(message.into()));
        if let Some(d) = data {
            m.insert("data".to_owned(), d);
        }
        Self::new(ns, PacketData::ConnectError(Value::Object(m)))
    }

    /// Sets the ack id of an event or ack; other packet types are returned unchanged.
    pub fn with_ack_id(mut self, ack_id: u64) -> Self {
        match &mut self.data {
            PacketData::Event { id, .. } | PacketData::BinaryEvent { id, .. } => *id = Some(ack_id),
            PacketData::Ack { id, .. } | PacketData::BinaryAck { id, .. } => *id = ack_id,
            _ => {}
        }
        self
    }

    fn new(ns: impl Into<String>, data: PacketData) -> Self {
        Packet {
            ns: ns.into(),
            data,
        }
    }

    /// The event name of an event packet.
    pub fn event_name(&self) -> Option<&str> {
        match &self.data {
            PacketData::Event { data, .. } | PacketData::BinaryEvent { data, .. } => {
                data.get(0).and_then(Value::as_str)
            }
            _ => None,
        }
    }

    pub fn ack_id(&self) -> Option<u64> {
        match self.data {
            PacketData::Event { id, .. } | PacketData::BinaryEvent { id, .. } => id,
            PacketData::Ack { id, .. } | PacketData::BinaryAck { id, .. } => Some(id),
            _ => None,
        }
    }
}

impl Packet {
    pub fn attachments(&self) -> &[Bytes] {
        match &self.data {
            PacketData::BinaryEvent { attachments, .. }
            | PacketData::BinaryAck { attachments, .. } => attachments,
            _ => &[],
        }
    }
}

impl Packet {
    #[cfg(test)]
    /// Stable lowercase name, for metric labels and logs.
    pub fn type_name(&self) -> &'static str {
        match self.data {
            PacketData::Connect(_) => "connect",
            PacketData::Disconnect => "disconnect",
            PacketData::Event { .. } => "event",
            PacketData::Ack { .. } => "ack",
            PacketData::ConnectError(_) => "connect_error",
            PacketData::BinaryEvent { .. } => "binary_event",
            PacketData::BinaryAck { .. } => "binary_ack",
        }
    }

    /// The text message plus the attachments, each of which must be sent as
    /// its own Engine.IO binary message right after the text, in order.
    pub fn encode(&self) -> (String, Vec<Bytes>) {
        let mut out = String::with_capacity(self.size_hint());
        self.encode_into(&mut out);
        (out, self.attachments().to_vec())
    }

    /// Appends the text part to `out`, so callers can reuse one buffer.
    pub fn encode_into(&self, out: &mut String) {
        debug_assert!(
            self.ns.is_empty() || (self.ns.starts_with('/') && !self.ns.contains(',')),
            "namespace {:?} cannot be encoded",
            self.ns
        );
        let (ty, id, data): (u8, Option<u64>, Option<&Value>) = match &self.data {
            PacketData::Connect(d) => (CONNECT, None, d.as_ref()),
            PacketData::Disconnect => (DISCONNECT, None, None),
            PacketData::Event { data, id } => (EVENT, *id, Some(data)),
            PacketData::Ack { data, id } => (ACK, Some(*id), Some(data)),
            PacketData::ConnectError(d) => (CONNECT_ERROR, None, Some(d)),
            PacketData::BinaryEvent { data, id, .. } => (BINARY_EVENT, *id, Some(data)),
            PacketData::BinaryAck { data, id, .. } => (BINARY_ACK, Some(*id), Some(data)),
        };
        out.push(ty as char);
        if ty == BINARY_EVENT || ty == BINARY_ACK {
            push_u64(out, self.attachments().len() as u64);
            out.push('-');
        }
        // The JS encoder omits an empty namespace too; it decodes as "/".
        if !self.ns.is_empty() && self.ns != "/" {
            out.push_str(&self.ns);
            out.push(',');
        }
        if let Some(id) = id {
            push_u64(out, id);
        }
        if let Some(data) = data {
            write_json(out, data);
        }
    }

    /// Initial capacity for [`Packet::encode`]: the header exactly plus a guess
    /// at the JSON, so small packets never reallocate.
    fn size_hint(&self) -> usize {
        // type + attachment count + '-' + ',' + ack id, all bounded.
        const HEADER: usize = 1 + 20 + 1 + 1 + 20;
        HEADER + self.ns.len() + 64
    }
}

#[cfg(any(test, feature = "internals"))]
fn event_array(name: String, args: Vec<Value>) -> Value {
    let mut v = Vec::with_capacity(args.len() + 1);
    v.push(Value::String(name));
    v.extend(args);
    Value::Array(v)
}

fn push_u64(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &buf[i..] {
        out.push(d as char);
    }
}

/// Serializes through `io::Write` on the string's own bytes: serde_json's
/// `Display` path goes through `fmt::Write` one fragment at a time and is
/// about 2.5x slower. The one UTF-8 check afterwards costs a few percent.
fn write_json(out: &mut String, v: &Value) {
    let mut bytes = std::mem::take(out).into_bytes();
    // Serializing a `Value` into a `Vec` cannot fail: keys are strings and
    // the writer never errors.
    let _ = serde_json::to_writer(&mut bytes, v);
    *out = match String::from_utf8(bytes) {
        Ok(s) => s,
        // Unreachable (serde_json emits UTF-8); degrade instead of panicking.
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
}

/// A binary packet whose text part has been decoded, waiting for attachments.
#[derive(Debug)]
struct Pending {
    ns: String,
    data: Value,
    kind: BinaryKind,
    expected: usize,
    attachments: Vec<Bytes>,
}

#[derive(Debug, Clone, Copy)]
enum BinaryKind {
    Event(Option<u64>),
    Ack(u64),
}

impl Pending {
    fn into_packet(self) -> Packet {
        let Pending {
            ns,
            data,
            kind,
            attachments,
            ..
        } = self;
        let data = match kind {
            BinaryKind::Event(id) => PacketData::BinaryEvent {
                data,
                id,
                attachments,
            },
            BinaryKind::Ack(id) => PacketData::BinaryAck {
                data,
                id,
                attachments,
            },
        };
        Packet { ns, data }
    }
}

enum Parsed {
    Complete(Packet),
    Binary(Pending),
}

/// Stateful decoder, one per Engine.IO session, because a binary packet's
/// attachments arrive as separate Engine.IO messages after its text.
///
/// Every error is a protocol violation that should close the session; the
/// decoder is left idle (any partly assembled packet is dropped).
#[derive(Debug)]
pub struct Decoder {
    /// Boxed: a packet awaiting attachments is rare, and inline it would be
    /// about 100 bytes in every connection for its whole life.
    pending: Option<Box<Pending>>,
    max_attachments: usize,
}

impl Decoder {
    /// `max_attachments` bounds what one packet may make us buffer.
    pub fn new(max_attachments: usize) -> Self {
        Decoder {
            pending: None,
            max_attachments,
        }
    }

    /// Decodes a text Engine.IO message. `Ok(None)` means a binary packet now
    /// awaits its attachments.
    pub fn decode_text(&mut self, s: &str) -> Result<Option<Packet>, DecodeError> {
        if self.pending.take().is_some() {
            return Err(DecodeError::UnexpectedText);
        }
        match parse(s, self.max_attachments)? {
            Parsed::Complete(p) => Ok(Some(p)),
            Parsed::Binary(p) if p.expected == 0 => Ok(Some(p.into_packet())),
            Parsed::Binary(p) => {
                self.pending = Some(Box::new(p));
                Ok(None)
            }
        }
    }

    /// Decodes a binary Engine.IO message, i.e. the next attachment.
    pub fn decode_binary(&mut self, b: Bytes) -> Result<Option<Packet>, DecodeError> {
        let Some(pending) = self.pending.as_mut() else {
            return Err(DecodeError::UnexpectedBinary);
        };
        pending.attachments.push(b);
        if pending.attachments.len() < pending.expected {
            return Ok(None);
        }
        Ok(self.pending.take().map(|p| p.into_packet()))
    }

    /// Whether a binary packet is waiting for attachments.
    #[cfg(any(test, feature = "internals"))]
    pub fn is_waiting(&self) -> bool {
        self.pending.is_some()
    }

    /// Drops any partly assembled packet.
    #[cfg(any(test, feature = "internals"))]
    pub fn reset(&mut self) {
        self.pending = None;
    }
}

fn parse(s: &str, max_attachments: usize) -> Result<Parsed, DecodeError> {
    let b = s.as_bytes();
    let ty = *b.first().ok_or(DecodeError::Empty)?;
    if !(CONNECT..=BINARY_ACK).contains(&ty) {
        return Err(DecodeError::UnknownType(ty));
    }
    let mut i = 1;

    let binary = ty == BINARY_EVENT || ty == BINARY_ACK;
    let mut expected = 0;
    if binary {
        let (count, end) = parse_digits(b, i).ok_or(DecodeError::InvalidAttachmentCount)?;
        if end == i || b.get(end) != Some(&b'-') {
            return Err(DecodeError::InvalidAttachmentCount);
        }
        // Anything beyond usize is certainly beyond the limit too.
        let declared = usize::try_from(count).unwrap_or(usize::MAX);
        if declared > max_attachments {
            return Err(DecodeError::TooManyAttachments {
                declared,
                max: max_attachments,
            });
        }
        expected = declared;
        i = end + 1;
    }

    // As in the reference parser, a namespace runs to the first ',' or, when
    // there is none, to the end of the packet.
    let ns = if b.get(i) == Some(&b'/') {
        let end = b[i..]
            .iter()
            .position(|&c| c == b',')
            .map_or(b.len(), |p| i + p);
        let ns = &s[i..end];
        i = (end + 1).min(b.len());
        ns
    } else {
        "/"
    };

    let id = match b.get(i) {
        Some(c) if c.is_ascii_digit() => {
            let (id, end) = parse_digits(b, i).ok_or(DecodeError::InvalidAckId)?;
            i = end;
            Some(id)
        }
        _ => None,
    };

    // Every delimiter above is ASCII, so `i` is a char boundary.
    let rest = &s[i..];
    let data = match ty {
        CONNECT => {
            no_ack_id(id)?;
            let data = parse_json_opt(rest)?;
            if data.as_ref().is_some_and(|d| !d.is_object()) {
                return Err(DecodeError::ConnectPayloadNotObject);
            }
            PacketData::Connect(data)
        }
        DISCONNECT => {
            no_ack_id(id)?;
            if !rest.is_empty() {
                return Err(DecodeError::TrailingData);
            }
            PacketData::Disconnect
        }
        EVENT | BINARY_EVENT => {
            let data = parse_json(rest)?;
            validate_event(&data)?;
            if binary {
                check_placeholders(&data, expected)?;
                return Ok(Parsed::Binary(Pending {
                    ns: ns.to_owned(),
                    data,
                    kind: BinaryKind::Event(id),
                    expected,
                    attachments: Vec::with_capacity(expected),
                }));
            }
            PacketData::Event { data, id }
        }
        ACK | BINARY_ACK => {
            let id = id.ok_or(DecodeError::MissingAckId)?;
            let data = parse_json(rest)?;
            if !data.is_array() {
                return Err(DecodeError::AckNotArray);
            }
            if binary {
                check_placeholders(&data, expected)?;
                return Ok(Parsed::Binary(Pending {
                    ns: ns.to_owned(),
                    data,
                    kind: BinaryKind::Ack(id),
                    expected,
                    attachments: Vec::with_capacity(expected),
                }));
            }
            PacketData::Ack { data, id }
        }
        // Only CONNECT_ERROR is left after the range check above.
        _ => {
            no_ack_id(id)?;
            let data = parse_json(rest)?;
            if !(data.is_object() || data.is_string()) {
                return Err(DecodeError::ConnectErrorPayloadInvalid);
            }
            PacketData::ConnectError(data)
        }
    };
    Ok(Parsed::Complete(Packet {
        ns: ns.to_owned(),
        data,
    }))
}

/// Reads ASCII digits from `start`; `None` on u64 overflow. Returns the value
/// and the index of the first non-digit.
fn parse_digits(b: &[u8], start: usize) -> Option<(u64, usize)> {
    let mut n: u64 = 0;
    let mut i = start;
    while let Some(&c) = b.get(i) {
        if !c.is_ascii_digit() {
            break;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
        i += 1;
    }
    Some((n, i))
}

fn no_ack_id(id: Option<u64>) -> Result<(), DecodeError> {
    match id {
        Some(_) => Err(DecodeError::UnexpectedAckId),
        None => Ok(()),
    }
}

/// serde_json's default recursion limit (128) stays on: it is what keeps
/// hostile nesting from overflowing the stack here and in
/// [`check_placeholders`].
fn parse_json(s: &str) -> Result<Value, DecodeError> {
    if s.is_empty() {
        return Err(DecodeError::MissingData);
    }
    serde_json::from_str(s).map_err(|e| DecodeError::InvalidJson(e.to_string()))
}

fn parse_json_opt(s: &str) -> Result<Option<Value>, DecodeError> {
    if s.is_empty() {
        Ok(None)
    } else {
        parse_json(s).map(Some)
    }
}

fn validate_event(data: &Value) -> Result<(), DecodeError> {
    let arr = data.as_array().ok_or(DecodeError::EventNotArray)?;
    match arr.first() {
        Some(Value::String(_)) => Ok(()),
        _ => Err(DecodeError::EventNameNotString),
    }
}

/// Like the reference parser, any object with `"_placeholder": true` is a
/// placeholder and must point at an attachment that will exist. Checked on the
/// text part so a bad packet fails before its attachments are buffered.
/// Recursion depth is bounded by serde_json's nesting limit.
fn check_placeholders(v: &Value, count: usize) -> Result<(), DecodeError> {
    match v {
        Value::Array(items) => items.iter().try_for_each(|x| check_placeholders(x, count)),
        Value::Object(m) => {
            if m.get("_placeholder") == Some(&Value::Bool(true)) {
                match m.get("num").and_then(Value::as_u64) {
                    Some(n) if n < count as u64 => Ok(()),
                    _ => Err(DecodeError::InvalidPlaceholder),
                }
            } else {
                m.values().try_for_each(|x| check_placeholders(x, count))
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(s: &str) -> Result<Option<Packet>, DecodeError> {
        Decoder::new(10).decode_text(s)
    }

    fn decode_one(s: &str) -> Packet {
        decode(s).unwrap().expect("complete packet")
    }

    fn encode(p: &Packet) -> String {
        p.encode().0
    }

    fn pkt(ns: &str, data: PacketData) -> Packet {
        Packet {
            ns: ns.to_owned(),
            data,
        }
    }

    /// Wire strings from the Socket.IO v5 protocol document.
    fn protocol_examples() -> Vec<(&'static str, Packet)> {
        vec![
            ("0", Packet::connect("/", None)),
            (
                r#"0/admin,{"token":"123"}"#,
                Packet::connect("/admin", Some(json!({"token": "123"}))),
            ),
            (
                r#"0{"sid":"oSO0OpakMV_3jnilAAAA"}"#,
                Packet::connect("/", Some(json!({"sid": "oSO0OpakMV_3jnilAAAA"}))),
            ),
            (
                r#"0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}"#,
                Packet::connect("/admin", Some(json!({"sid": "oSO0OpakMV_3jnilAAAA"}))),
            ),
            ("1/admin,", Packet::disconnect("/admin")),
            ("1", Packet::disconnect("/")),
            (
                r#"2["hello",1]"#,
                Packet::event("/", "hello", vec![json!(1)]),
            ),
            (r#"2["foo"]"#, Packet::event("/", "foo", vec![])),
            (r#"2/admin,["bar"]"#, Packet::event("/admin", "bar", vec![])),
            (
                r#"2/admin,456["project:delete",123]"#,
                Packet::event("/admin", "project:delete", vec![json!(123)]).with_ack_id(456),
            ),
            (
                r#"212["foo"]"#,
                Packet::event("/", "foo", vec![]).with_ack_id(12),
            ),
            ("3/admin,456[]", Packet::ack("/admin", 456, vec![])),
            (r#"312["bar"]"#, Packet::ack("/", 12, vec![json!("bar")])),
            (
                r#"4{"message":"Not authorized"}"#,
                Packet::connect_error("/", "Not authorized", None),
            ),
        ]
    }

    #[test]
    fn connect_error_with_data() {
        // Key order on the wire depends on serde_json's `preserve_order`
        // feature, so compare decoded values rather than strings.
        let p = Packet::connect_error("/admin", "Not authorized", Some(json!({"code": 1})));
        assert_eq!(
            decode_one(r#"4/admin,{"message":"Not authorized","data":{"code":1}}"#),
            p
        );
        assert_eq!(decode_one(&encode(&p)), p);
    }

    #[test]
    fn protocol_examples_encode_and_decode() {
        for (wire, packet) in protocol_examples() {
            assert_eq!(encode(&packet), wire, "encoding {packet:?}");
            assert_eq!(decode_one(wire), packet, "decoding {wire}");
        }
    }

    #[test]
    fn binary_event_example() {
        let wire = r#"51-["hello",{"_placeholder":true,"num":0}]"#;
        let att = Bytes::from_static(&[1, 2, 3]);
        let mut d = Decoder::new(10);
        assert_eq!(d.decode_text(wire), Ok(None));
        assert!(d.is_waiting());
        let p = d.decode_binary(att.clone()).unwrap().unwrap();
        assert!(!d.is_waiting());
        let expected = Packet::binary_event("/", "hello", vec![placeholder(0)], vec![att.clone()]);
        assert_eq!(p, expected);
        assert_eq!(p.encode(), (wire.to_owned(), vec![att]));
        assert_eq!(p.type_name(), "binary_event");
    }

    #[test]
    fn binary_ack_example() {
        let wire = r#"61-/admin,456[{"_placeholder":true,"num":0}]"#;
        let att = Bytes::from_static(b"\x00\xff");
        let mut d = Decoder::new(10);
        assert_eq!(d.decode_text(wire), Ok(None));
        let p = d.decode_binary(att.clone()).unwrap().unwrap();
        let expected = Packet::binary_ack("/admin", 456, vec![placeholder(0)], vec![att.clone()]);
        assert_eq!(p, expected);
        assert_eq!(p.encode(), (wire.to_owned(), vec![att]));
    }

    #[test]
    fn binary_event_with_namespace_and_ack_id() {
        let atts = vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")];
        let p = Packet::binary_event(
            "/ns",
            "ev",
            vec![placeholder(0), json!({"x": placeholder(1)})],
            atts.clone(),
        )
        .with_ack_id(12);
        let (text, out_atts) = p.encode();
        assert_eq!(
            text,
            r#"52-/ns,12["ev",{"_placeholder":true,"num":0},{"x":{"_placeholder":true,"num":1}}]"#
        );
        assert_eq!(out_atts, atts);
        let mut d = Decoder::new(10);
        assert_eq!(d.decode_text(&text), Ok(None));
        assert_eq!(d.decode_binary(atts[0].clone()), Ok(None));
        assert_eq!(d.decode_binary(atts[1].clone()), Ok(Some(p)));
    }

    #[test]
    fn single_placeholder_event_encoding() {
        let p = Packet::binary_event(
            "/ns",
            "ev",
            vec![placeholder(0)],
            vec![Bytes::from_static(b"z")],
        )
        .with_ack_id(12);
        assert_eq!(
            encode(&p),
            r#"51-/ns,12["ev",{"_placeholder":true,"num":0}]"#
        );
    }

    #[test]
    fn zero_attachments_complete_immediately() {
        let mut d = Decoder::new(10);
        let p = d.decode_text(r#"50-["x"]"#).unwrap().unwrap();
        assert_eq!(p, Packet::binary_event("/", "x", vec![], vec![]));
        assert!(!d.is_waiting());
        assert_eq!(encode(&p), r#"50-["x"]"#);
    }

    #[test]
    fn namespace_without_comma_runs_to_the_end() {
        assert_eq!(decode_one("1/admin"), Packet::disconnect("/admin"));
        assert_eq!(decode_one("0/admin"), Packet::connect("/admin", None));
        // As in socket.io-parser: the JSON becomes part of the namespace, and
        // the event is then missing its payload.
        assert_eq!(decode(r#"2/chat["x"]"#), Err(DecodeError::MissingData));
        assert_eq!(decode_one("1/a/b"), Packet::disconnect("/a/b"));
    }

    #[test]
    fn namespace_edge_cases() {
        assert_eq!(decode_one(r#"2/,["x"]"#), Packet::event("/", "x", vec![]));
        assert_eq!(decode_one("1/é✓,"), Packet::disconnect("/é✓"));
        // Without a leading '/', there is no namespace: this is JSON garbage.
        assert!(matches!(
            decode(r#"2admin,["x"]"#),
            Err(DecodeError::InvalidJson(_))
        ));
        assert_eq!(encode(&Packet::disconnect("")), "1");
        assert_eq!(encode(&Packet::disconnect("/")), "1");
    }

    #[test]
    fn ack_ids() {
        assert_eq!(
            decode_one(&format!(r#"2{}["x"]"#, u64::MAX)).ack_id(),
            Some(u64::MAX)
        );
        assert_eq!(
            decode(r#"218446744073709551616["x"]"#),
            Err(DecodeError::InvalidAckId)
        );
        assert_eq!(decode_one(r#"2007["x"]"#).ack_id(), Some(7));
        let p = Packet::event("/", "x", vec![]).with_ack_id(u64::MAX);
        assert_eq!(decode_one(&encode(&p)), p);
        assert_eq!(encode(&Packet::ack("/", 0, vec![])), "30[]");
    }

    #[test]
    fn json_is_parsed_with_trailing_whitespace() {
        assert_eq!(decode_one("2[\"x\"] \n"), Packet::event("/", "x", vec![]));
    }

    #[test]
    fn every_error_variant() {
        use DecodeError::*;
        let cases: &[(&str, DecodeError)] = &[
            ("", Empty),
            ("7", UnknownType(b'7')),
            ("x", UnknownType(b'x')),
            ("é", UnknownType(0xc3)),
            (r#"5-["x"]"#, InvalidAttachmentCount),
            (r#"5a-["x"]"#, InvalidAttachmentCount),
            (r#"51["x"]"#, InvalidAttachmentCount),
            ("51", InvalidAttachmentCount),
            ("5", InvalidAttachmentCount),
            (r#"599999999999999999999-["x"]"#, InvalidAttachmentCount),
            (
                r#"511-["x"]"#,
                TooManyAttachments {
                    declared: 11,
                    max: 10,
                },
            ),
            (r#"299999999999999999999["x"]"#, InvalidAckId),
            ("3[]", MissingAckId),
            ("3/admin,[]", MissingAckId),
            (r#"61-[{"_placeholder":true,"num":0}]"#, MissingAckId),
            ("0/admin,1{}", UnexpectedAckId),
            ("112", UnexpectedAckId),
            (r#"41{"message":"x"}"#, UnexpectedAckId),
            ("2", MissingData),
            ("212", MissingData),
            ("3/admin,456", MissingData),
            ("4", MissingData),
            (r#"51-"#, MissingData),
            (
                r#"2{"#,
                InvalidJson("EOF while parsing an object at line 1 column 1".into()),
            ),
            ("2{\"a\":1}", EventNotArray),
            ("2\"x\"", EventNotArray),
            ("2[]", EventNameNotString),
            ("2[1]", EventNameNotString),
            ("2[null,\"x\"]", EventNameNotString),
            ("31{}", AckNotArray),
            ("0[]", ConnectPayloadNotObject),
            ("0/admin,\"tok\"", ConnectPayloadNotObject),
            ("4[]", ConnectErrorPayloadInvalid),
            ("41", UnexpectedAckId),
            ("4null", ConnectErrorPayloadInvalid),
            ("1/admin,{}", TrailingData),
            ("1{}", TrailingData),
            ("1/admin, ", TrailingData),
            (
                r#"51-["x",{"_placeholder":true,"num":1}]"#,
                InvalidPlaceholder,
            ),
            (
                r#"51-["x",{"_placeholder":true,"num":-1}]"#,
                InvalidPlaceholder,
            ),
            (
                r#"51-["x",{"_placeholder":true,"num":0.0}]"#,
                InvalidPlaceholder,
            ),
            (
                r#"51-["x",{"_placeholder":true,"num":"0"}]"#,
                InvalidPlaceholder,
            ),
            (r#"51-["x",{"_placeholder":true}]"#, InvalidPlaceholder),
            (
                r#"50-["x",[{"_placeholder":true,"num":0}]]"#,
                InvalidPlaceholder,
            ),
            (
                r#"61-1[{"a":{"_placeholder":true,"num":5}}]"#,
                InvalidPlaceholder,
            ),
        ];
        for (wire, err) in cases {
            assert_eq!(decode(wire).as_ref(), Err(err), "decoding {wire:?}");
        }

        let mut d = Decoder::new(10);
        assert_eq!(d.decode_binary(Bytes::new()), Err(UnexpectedBinary));
        assert_eq!(
            d.decode_text(r#"51-["x",{"_placeholder":true,"num":0}]"#),
            Ok(None)
        );
        assert_eq!(d.decode_text(r#"2["x"]"#), Err(UnexpectedText));
        assert!(!d.is_waiting(), "errors leave the decoder idle");
        assert_eq!(
            d.decode_text(r#"2["x"]"#),
            Ok(Some(Packet::event("/", "x", vec![])))
        );
    }

    #[test]
    fn non_binary_placeholders_are_plain_data() {
        let p = decode_one(r#"2["x",{"_placeholder":true,"num":9}]"#);
        assert_eq!(p.type_name(), "event");
    }

    #[test]
    fn non_placeholder_objects_are_fine_in_binary_packets() {
        let mut d = Decoder::new(10);
        let p = d
            .decode_text(r#"50-["x",{"_placeholder":false,"num":9},{"num":"a"}]"#)
            .unwrap()
            .unwrap();
        assert_eq!(p.attachments().len(), 0);
    }

    #[test]
    fn nesting_limit_is_enforced_without_overflow() {
        let nested = |depth: usize| format!("2[\"x\",{}{}]", "[".repeat(depth), "]".repeat(depth));
        // 1 (event array) + 126 is within serde_json's limit of 128.
        assert!(decode(&nested(126)).is_ok());
        match decode(&nested(200)) {
            Err(DecodeError::InvalidJson(msg)) => assert!(msg.contains("recursion limit"), "{msg}"),
            other => panic!("expected recursion limit error, got {other:?}"),
        }
        // Far beyond the limit: must fail, not blow the stack.
        let deep = format!("2{}", "[".repeat(1_000_000));
        assert!(matches!(decode(&deep), Err(DecodeError::InvalidJson(_))));
        let deep_obj = format!("2[\"x\",{}", "{\"a\":".repeat(100_000));
        assert!(matches!(
            decode(&deep_obj),
            Err(DecodeError::InvalidJson(_))
        ));
    }

    #[test]
    fn reset_drops_pending_packet() {
        let mut d = Decoder::new(10);
        assert_eq!(d.decode_text(r#"52-["x"]"#), Ok(None));
        assert_eq!(d.decode_binary(Bytes::new()), Ok(None));
        d.reset();
        assert!(!d.is_waiting());
        assert_eq!(
            d.decode_binary(Bytes::new()),
            Err(DecodeError::UnexpectedBinary)
        );
    }

    #[test]
    fn lenient_connect_error_string() {
        assert_eq!(
            decode_one(r#"4/admin,"nope""#),
            pkt("/admin", PacketData::ConnectError(json!("nope")))
        );
    }

    #[test]
    fn encode_into_appends() {
        let mut out = String::from("4");
        Packet::event("/", "a", vec![]).encode_into(&mut out);
        assert_eq!(out, r#"42["a"]"#);
    }

    #[test]
    fn accessors() {
        let p = Packet::event("/", "hello", vec![json!(1)]).with_ack_id(3);
        assert_eq!(p.event_name(), Some("hello"));
        assert_eq!(p.ack_id(), Some(3));
        assert!(p.attachments().is_empty());
        assert_eq!(Packet::ack("/", 9, vec![]).ack_id(), Some(9));
        assert_eq!(Packet::ack("/", 9, vec![]).with_ack_id(4).ack_id(), Some(4));
        assert_eq!(
            Packet::disconnect("/").with_ack_id(4),
            Packet::disconnect("/")
        );
        assert_eq!(Packet::connect("/", None).event_name(), None);
        assert_eq!(Packet::connect("/", None).ack_id(), None);
    }

    #[test]
    fn type_names() {
        let atts = vec![];
        let names = [
            (Packet::connect("/", None), "connect"),
            (Packet::disconnect("/"), "disconnect"),
            (Packet::event("/", "x", vec![]), "event"),
            (Packet::ack("/", 1, vec![]), "ack"),
            (Packet::connect_error("/", "m", None), "connect_error"),
            (
                Packet::binary_event("/", "x", vec![], atts.clone()),
                "binary_event",
            ),
            (Packet::binary_ack("/", 1, vec![], atts), "binary_ack"),
        ];
        for (p, name) in names {
            assert_eq!(p.type_name(), name);
        }
    }

    #[test]
    fn reserved_events() {
        for name in RESERVED_EVENTS {
            assert!(is_reserved_event(name));
        }
        assert!(!is_reserved_event("message"));
        assert!(!is_reserved_event("Connect"));
    }

    #[test]
    fn error_messages_name_the_problem() {
        assert_eq!(
            DecodeError::TooManyAttachments {
                declared: 11,
                max: 10
            }
            .to_string(),
            "binary packet declares 11 attachments, more than the allowed 10"
        );
        assert_eq!(
            DecodeError::UnknownType(b'9').to_string(),
            "unknown Socket.IO packet type byte 0x39"
        );
    }

    #[test]
    fn push_u64_writes_decimal() {
        for n in [0, 1, 9, 10, 99, 100, 12345, u64::MAX] {
            let mut s = String::new();
            push_u64(&mut s, n);
            assert_eq!(s, n.to_string());
        }
    }
}
