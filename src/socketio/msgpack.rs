//! The wire format of `socket.io-msgpack-parser` (npm, 3.x): every packet is
//! one Engine.IO binary message holding the MessagePack map
//! `{type, data?, id?, nsp}` (notepack.io's encoding). There are no
//! BINARY_EVENT / BINARY_ACK packets: binary values sit inside `data` as
//! MessagePack `bin`.
//!
//! Decoding yields the same [`Packet`] as the JSON parser would for the same
//! emit: each binary value becomes a `{"_placeholder": true, "num": n}` in
//! `data` and attachment `n` (a slice of the received message, not a copy),
//! so handlers never see which parser is on. Encoding does the opposite.
//!
//! What clients actually send, and how it is read:
//!
//! - socket.io-client encodes its packet object whole, so a map may carry
//!   keys the protocol does not have (`options: {compress: true}`): unknown
//!   keys are skipped, as the reference decoder ignores them.
//! - notepack writes JavaScript's `undefined` as fixext 1 of type 0: a
//!   CONNECT without auth has `data: undefined`, an auth object may hold
//!   `offset: undefined`. At the packet's top level it means absent; inside
//!   `data` it is dropped from maps and `null` in arrays, as
//!   `JSON.stringify` does with the JSON parser.
//! - Browsers send an `ArrayBuffer` as ext 8/16/32 of type 0, Node a
//!   `Buffer` as `bin`: both are binary attachments. A `Date` is fixext 8 of
//!   type 0 (milliseconds since the epoch): it becomes the ISO 8601 string
//!   its `toJSON` gives, what the JSON parser would have carried. Any other
//!   extension type is refused.
//! - python-socketio (`serializer="msgpack"`) writes `{type, data, nsp}`
//!   plus `id` when there is one, `data` as nil when it has none: nil `data`
//!   and `id` read as absent.
//!
//! Validation is the JSON decoder's (`packet.rs`): packet type (0 to 4, the
//! only ones this format has), namespace (a string starting with `/`, no
//! `,`), an event's first element a string, the ack id a non-negative
//! integer, CONNECT data an object, at most `max_attachments` binary values,
//! nesting at most 128 deep (serde_json's limit), no trailing bytes.

use bytes::Bytes;
use rmp::encode as mp;
use rmp::Marker;
use serde_json::{Map, Number, Value};

use super::packet::{placeholder, placeholder_num, DecodeError, Packet, PacketData};

/// As deep as serde_json lets JSON data nest, so both parsers refuse the same.
pub const MAX_DEPTH: usize = 128;

const CONNECT: u64 = 0;
const DISCONNECT: u64 = 1;
const EVENT: u64 = 2;
const ACK: u64 = 3;
const CONNECT_ERROR: u64 = 4;

/// notepack's extension type for `undefined` (fixext 1), `Date` (fixext 8)
/// and `ArrayBuffer` (ext 8/16/32).
const EXT_JS: i8 = 0;

// ---- encoding ----------------------------------------------------------------

/// The packet as one MessagePack map. Keys in the order the reference
/// server's `socket.emit` builds its packets (`type`, `data`, `id`, then
/// `nsp` when it is sent), so the bytes of an event match the reference's.
pub fn encode(packet: &Packet) -> Vec<u8> {
    let (ty, id, data): (u64, Option<u64>, Option<&Value>) = match &packet.data {
        PacketData::Connect(d) => (CONNECT, None, d.as_ref()),
        PacketData::Disconnect => (DISCONNECT, None, None),
        PacketData::Event { data, id } | PacketData::BinaryEvent { data, id, .. } => {
            (EVENT, *id, Some(data))
        }
        PacketData::Ack { data, id } | PacketData::BinaryAck { data, id, .. } => {
            (ACK, Some(*id), Some(data))
        }
        PacketData::ConnectError(d) => (CONNECT_ERROR, None, Some(d)),
    };
    let attachments = packet.attachments();
    let mut out = Vec::with_capacity(32 + packet.ns.len());
    let len = 2 + u32::from(data.is_some()) + u32::from(id.is_some());
    // Writing into a `Vec` cannot fail: the results below carry no error.
    let _ = mp::write_map_len(&mut out, len);
    let _ = mp::write_str(&mut out, "type");
    let _ = mp::write_uint(&mut out, ty);
    if let Some(data) = data {
        let _ = mp::write_str(&mut out, "data");
        write_value(&mut out, data, attachments);
    }
    if let Some(id) = id {
        let _ = mp::write_str(&mut out, "id");
        let _ = mp::write_uint(&mut out, id);
    }
    let _ = mp::write_str(&mut out, "nsp");
    let _ = mp::write_str(
        &mut out,
        if packet.ns.is_empty() {
            "/"
        } else {
            &packet.ns
        },
    );
    out
}

/// `v` in MessagePack, each placeholder that points at one of
/// `attachments` written as that attachment's `bin`.
fn write_value(out: &mut Vec<u8>, v: &Value, attachments: &[Bytes]) {
    match v {
        Value::Null => {
            let _ = mp::write_nil(out);
        }
        Value::Bool(b) => {
            let _ = mp::write_bool(out, *b);
        }
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                let _ = mp::write_uint(out, u);
            } else if let Some(i) = n.as_i64() {
                let _ = mp::write_sint(out, i);
            } else {
                let _ = mp::write_f64(out, n.as_f64().unwrap_or(0.0));
            }
        }
        Value::String(s) => {
            let _ = mp::write_str(out, s);
        }
        Value::Array(items) => {
            let _ = mp::write_array_len(out, items.len() as u32);
            for item in items {
                write_value(out, item, attachments);
            }
        }
        Value::Object(m) => {
            if let Some(bin) = placeholder_num(m).and_then(|n| attachments.get(n)) {
                let _ = mp::write_bin(out, bin);
                return;
            }
            let _ = mp::write_map_len(out, m.len() as u32);
            for (k, item) in m {
                let _ = mp::write_str(out, k);
                write_value(out, item, attachments);
            }
        }
    }
}

// ---- decoding ----------------------------------------------------------------

fn invalid(why: &str) -> DecodeError {
    DecodeError::InvalidMsgpack(why.to_owned())
}

/// A cursor over one received message; binary values are sliced out of it.
struct Reader<'a> {
    frame: &'a Bytes,
    at: usize,
}

/// A decoded value, or notepack's `undefined`.
enum Item {
    Value(Value),
    Undefined,
}

/// What the values of one packet's `data` gathered.
struct Attachments {
    found: Vec<Bytes>,
    max: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.frame.len())
            .ok_or_else(|| invalid("truncated"))?;
        let bytes = &self.frame[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn take_bytes(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        let start = self.at;
        self.take(n)?;
        Ok(self.frame.slice(start..self.at))
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.be::<1>()?[0])
    }

    fn u16(&mut self) -> Result<usize, DecodeError> {
        Ok(u16::from_be_bytes(self.be()?) as usize)
    }

    fn u32(&mut self) -> Result<usize, DecodeError> {
        Ok(u32::from_be_bytes(self.be()?) as usize)
    }

    fn marker(&mut self) -> Result<Marker, DecodeError> {
        Ok(Marker::from_u8(self.u8()?))
    }

    /// A length the next items must fit in: a header claiming more items
    /// than bytes remain is refused before anything is allocated for it.
    fn count(&self, n: usize) -> Result<usize, DecodeError> {
        if n > self.frame.len() - self.at {
            return Err(invalid("truncated"));
        }
        Ok(n)
    }

    fn string(&mut self, len: usize) -> Result<String, DecodeError> {
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| invalid("a string is not UTF-8"))
    }

    /// One value of `data` (`depth` counts the containers it is in).
    fn value(&mut self, depth: usize, atts: &mut Attachments) -> Result<Item, DecodeError> {
        let number = |n: Number| Ok(Item::Value(Value::Number(n)));
        let float = |f: f64| {
            // NaN and the infinities have no JSON form: `null`, as
            // JSON.stringify writes them.
            Ok(Item::Value(
                Number::from_f64(f).map_or(Value::Null, Value::Number),
            ))
        };
        match self.marker()? {
            Marker::Null => Ok(Item::Value(Value::Null)),
            Marker::True => Ok(Item::Value(Value::Bool(true))),
            Marker::False => Ok(Item::Value(Value::Bool(false))),
            Marker::FixPos(n) => number(u64::from(n).into()),
            Marker::U8 => number(u64::from(self.u8()?).into()),
            Marker::U16 => number((self.u16()? as u64).into()),
            Marker::U32 => number((self.u32()? as u64).into()),
            Marker::U64 => number(u64::from_be_bytes(self.be()?).into()),
            Marker::FixNeg(n) => number(i64::from(n).into()),
            Marker::I8 => number(i64::from(i8::from_be_bytes(self.be()?)).into()),
            Marker::I16 => number(i64::from(i16::from_be_bytes(self.be()?)).into()),
            Marker::I32 => number(i64::from(i32::from_be_bytes(self.be()?)).into()),
            Marker::I64 => number(i64::from_be_bytes(self.be()?).into()),
            Marker::F32 => float(f64::from(f32::from_be_bytes(self.be()?))),
            Marker::F64 => float(f64::from_be_bytes(self.be()?)),
            Marker::FixStr(n) => Ok(Item::Value(Value::String(self.string(n as usize)?))),
            Marker::Str8 => {
                let n = self.u8()? as usize;
                Ok(Item::Value(Value::String(self.string(n)?)))
            }
            Marker::Str16 => {
                let n = self.u16()?;
                Ok(Item::Value(Value::String(self.string(n)?)))
            }
            Marker::Str32 => {
                let n = self.u32()?;
                Ok(Item::Value(Value::String(self.string(n)?)))
            }
            Marker::Bin8 => {
                let n = self.u8()? as usize;
                self.binary(n, atts)
            }
            Marker::Bin16 => {
                let n = self.u16()?;
                self.binary(n, atts)
            }
            Marker::Bin32 => {
                let n = self.u32()?;
                self.binary(n, atts)
            }
            Marker::FixArray(n) => self.array(n as usize, depth, atts),
            Marker::Array16 => {
                let n = self.u16()?;
                self.array(n, depth, atts)
            }
            Marker::Array32 => {
                let n = self.u32()?;
                self.array(n, depth, atts)
            }
            Marker::FixMap(n) => self.map(n as usize, depth, atts),
            Marker::Map16 => {
                let n = self.u16()?;
                self.map(n, depth, atts)
            }
            Marker::Map32 => {
                let n = self.u32()?;
                self.map(n, depth, atts)
            }
            Marker::FixExt1 => self.ext(1, atts),
            Marker::FixExt2 => self.ext(2, atts),
            Marker::FixExt4 => self.ext(4, atts),
            Marker::FixExt8 => self.ext(8, atts),
            Marker::FixExt16 => self.ext(16, atts),
            Marker::Ext8 => {
                let n = self.u8()? as usize;
                self.ext_var(n, atts)
            }
            Marker::Ext16 => {
                let n = self.u16()?;
                self.ext_var(n, atts)
            }
            Marker::Ext32 => {
                let n = self.u32()?;
                self.ext_var(n, atts)
            }
            Marker::Reserved => Err(invalid("reserved byte 0xc1")),
        }
    }

    fn binary(&mut self, len: usize, atts: &mut Attachments) -> Result<Item, DecodeError> {
        if atts.found.len() >= atts.max {
            return Err(DecodeError::TooManyAttachments {
                declared: atts.found.len() + 1,
                max: atts.max,
            });
        }
        let bytes = self.take_bytes(len)?;
        atts.found.push(bytes);
        Ok(Item::Value(placeholder(atts.found.len() - 1)))
    }

    fn nested(&self, depth: usize) -> Result<usize, DecodeError> {
        if depth >= MAX_DEPTH {
            return Err(invalid("nested more than 128 deep"));
        }
        Ok(depth + 1)
    }

    fn array(
        &mut self,
        n: usize,
        depth: usize,
        atts: &mut Attachments,
    ) -> Result<Item, DecodeError> {
        let depth = self.nested(depth)?;
        let mut items = Vec::with_capacity(self.count(n)?);
        for _ in 0..n {
            items.push(match self.value(depth, atts)? {
                Item::Value(v) => v,
                Item::Undefined => Value::Null,
            });
        }
        Ok(Item::Value(Value::Array(items)))
    }

    fn map(&mut self, n: usize, depth: usize, atts: &mut Attachments) -> Result<Item, DecodeError> {
        let depth = self.nested(depth)?;
        self.count(n)?;
        let mut m = Map::new();
        for _ in 0..n {
            let key = self.key()?;
            if let Item::Value(v) = self.value(depth, atts)? {
                m.insert(key, v);
            }
        }
        Ok(Item::Value(Value::Object(m)))
    }

    /// A map key: a string, or an integer as JavaScript makes an object key
    /// of it (its decimal form).
    fn key(&mut self) -> Result<String, DecodeError> {
        let not_a_key = || invalid("a map key is neither a string nor an integer");
        match self.marker()? {
            Marker::FixStr(n) => self.string(n as usize),
            Marker::Str8 => {
                let n = self.u8()? as usize;
                self.string(n)
            }
            Marker::Str16 => {
                let n = self.u16()?;
                self.string(n)
            }
            Marker::Str32 => {
                let n = self.u32()?;
                self.string(n)
            }
            Marker::FixPos(n) => Ok(n.to_string()),
            Marker::U8 => Ok(self.u8()?.to_string()),
            Marker::U16 => Ok(self.u16()?.to_string()),
            Marker::U32 => Ok(self.u32()?.to_string()),
            Marker::U64 => Ok(u64::from_be_bytes(self.be()?).to_string()),
            Marker::FixNeg(n) => Ok(n.to_string()),
            Marker::I8 => Ok(i8::from_be_bytes(self.be()?).to_string()),
            Marker::I16 => Ok(i16::from_be_bytes(self.be()?).to_string()),
            Marker::I32 => Ok(i32::from_be_bytes(self.be()?).to_string()),
            Marker::I64 => Ok(i64::from_be_bytes(self.be()?).to_string()),
            _ => Err(not_a_key()),
        }
    }

    /// A fixext of `len` bytes: `undefined` (1) and `Date` (8) of type 0.
    fn ext(&mut self, len: usize, atts: &mut Attachments) -> Result<Item, DecodeError> {
        let ty = i8::from_be_bytes(self.be()?);
        match (ty, len) {
            (EXT_JS, 1) => {
                self.take(1)?;
                Ok(Item::Undefined)
            }
            (EXT_JS, 8) => {
                // notepack writes the milliseconds as a signed high word and
                // an unsigned low one.
                let hi = i64::from(i32::from_be_bytes(self.be()?));
                let lo = i64::from(u32::from_be_bytes(self.be()?));
                Ok(Item::Value(Value::String(iso_date(hi * (1 << 32) + lo)?)))
            }
            (EXT_JS, _) => self.binary(len, atts),
            (ty, _) => Err(DecodeError::UnsupportedExt(ty)),
        }
    }

    /// An ext 8/16/32: type 0 is a browser's `ArrayBuffer`.
    fn ext_var(&mut self, len: usize, atts: &mut Attachments) -> Result<Item, DecodeError> {
        match i8::from_be_bytes(self.be()?) {
            EXT_JS => self.binary(len, atts),
            ty => Err(DecodeError::UnsupportedExt(ty)),
        }
    }

    /// An unsigned integer (the packet's `type` and `id`); `Ok(None)` for
    /// anything else.
    fn uint(&mut self) -> Result<Option<u64>, DecodeError> {
        let start = self.at;
        let v = match self.marker()? {
            Marker::FixPos(n) => u64::from(n),
            Marker::U8 => u64::from(self.u8()?),
            Marker::U16 => self.u16()? as u64,
            Marker::U32 => self.u32()? as u64,
            Marker::U64 => u64::from_be_bytes(self.be()?),
            Marker::I8 | Marker::I16 | Marker::I32 | Marker::I64 => {
                // A signed encoding of a non-negative value is still one.
                self.at = start;
                let mut none = Attachments {
                    found: Vec::new(),
                    max: 0,
                };
                return Ok(match self.value(0, &mut none)? {
                    Item::Value(Value::Number(n)) => n.as_u64(),
                    _ => None,
                });
            }
            _ => {
                self.at = start;
                self.skip()?;
                return Ok(None);
            }
        };
        Ok(Some(v))
    }

    /// Reads past one value whose content does not matter (an unknown key's).
    fn skip(&mut self) -> Result<(), DecodeError> {
        // Binary values are counted like `data`'s: an unknown key cannot
        // make the decoder walk more than a packet could hold.
        let mut ignored = Attachments {
            found: Vec::new(),
            max: usize::MAX,
        };
        self.value(0, &mut ignored).map(drop)
    }
}

/// One message of a client speaking the msgpack parser, as a packet.
pub fn decode(frame: &Bytes, max_attachments: usize) -> Result<Packet, DecodeError> {
    let mut r = Reader { frame, at: 0 };
    let fields = match r.marker()? {
        Marker::FixMap(n) => n as usize,
        Marker::Map16 => r.u16()?,
        Marker::Map32 => r.u32()?,
        _ => return Err(DecodeError::NotAMap),
    };
    r.count(fields)?;
    let mut atts = Attachments {
        found: Vec::new(),
        max: max_attachments,
    };
    let (mut ty, mut nsp, mut data, mut id) = (None, None, None, None);
    let mut seen = [false; 4];
    for _ in 0..fields {
        let key = r.key()?;
        let slot = match key.as_str() {
            "type" => 0,
            "nsp" => 1,
            "data" => 2,
            "id" => 3,
            _ => {
                r.skip()?;
                continue;
            }
        };
        if std::mem::replace(&mut seen[slot], true) {
            return Err(DecodeError::DuplicateKey(key));
        }
        match slot {
            0 => ty = Some(r.uint()?.ok_or(DecodeError::InvalidPacketType)?),
            1 => {
                nsp = match r.value(0, &mut atts)? {
                    Item::Value(Value::String(s)) => Some(s),
                    _ => return Err(DecodeError::InvalidNamespace),
                }
            }
            2 => {
                data = match r.value(0, &mut atts)? {
                    Item::Value(Value::Null) | Item::Undefined => None,
                    Item::Value(v) => Some(v),
                }
            }
            _ => {
                // nil (python-socketio) and undefined (notepack) mean no
                // id; any other value is not one.
                let start = r.at;
                id = match r.marker()? {
                    Marker::Null => None,
                    Marker::FixExt1 if frame.get(r.at) == Some(&0) => {
                        r.take(2)?;
                        None
                    }
                    _ => {
                        r.at = start;
                        Some(r.uint()?.ok_or(DecodeError::AckIdNotInteger)?)
                    }
                }
            }
        }
    }
    if r.at != frame.len() {
        return Err(invalid("trailing bytes after the packet"));
    }
    let ty = ty.ok_or(DecodeError::InvalidPacketType)?;
    let ns = nsp.ok_or(DecodeError::InvalidNamespace)?;
    if !ns.starts_with('/') || ns.contains(',') {
        return Err(DecodeError::InvalidNamespace);
    }
    let no_id = || match id {
        Some(_) => Err(DecodeError::UnexpectedAckId),
        None => Ok(()),
    };
    let attachments = atts.found;
    let data = match ty {
        CONNECT => {
            no_id()?;
            if data.as_ref().is_some_and(|d| !d.is_object()) {
                return Err(DecodeError::ConnectPayloadNotObject);
            }
            PacketData::Connect(data)
        }
        DISCONNECT => {
            no_id()?;
            if data.is_some() {
                return Err(DecodeError::TrailingData);
            }
            PacketData::Disconnect
        }
        EVENT => {
            let data = data.ok_or(DecodeError::MissingData)?;
            match data.as_array().map(|a| a.first()) {
                None => return Err(DecodeError::EventNotArray),
                Some(Some(Value::String(_))) => {}
                Some(_) => return Err(DecodeError::EventNameNotString),
            }
            if attachments.is_empty() {
                PacketData::Event { data, id }
            } else {
                PacketData::BinaryEvent {
                    data,
                    id,
                    attachments,
                }
            }
        }
        ACK => {
            let id = id.ok_or(DecodeError::MissingAckId)?;
            let data = data.ok_or(DecodeError::MissingData)?;
            if !data.is_array() {
                return Err(DecodeError::AckNotArray);
            }
            if attachments.is_empty() {
                PacketData::Ack { data, id }
            } else {
                PacketData::BinaryAck {
                    data,
                    id,
                    attachments,
                }
            }
        }
        CONNECT_ERROR => {
            no_id()?;
            let data = data.ok_or(DecodeError::MissingData)?;
            if !(data.is_object() || data.is_string()) {
                return Err(DecodeError::ConnectErrorPayloadInvalid);
            }
            PacketData::ConnectError(data)
        }
        _ => return Err(DecodeError::InvalidPacketType),
    };
    Ok(Packet { ns, data })
}

/// Days since the epoch as a UTC (year, month, day): Howard Hinnant's
/// days-to-civil algorithm, for any day (negative ones too). Also the admin
/// UI's dates (service/admin/wire.rs).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Milliseconds since the epoch as JavaScript's `Date.prototype.toJSON`
/// (and `toISOString`) writes them (`2026-12-02T16:28:27.123Z`), within the
/// range a `Date` can hold (±8.64e15 ms).
pub(crate) fn iso_date(ms: i64) -> Result<String, DecodeError> {
    const MAX_MS: i64 = 8_640_000_000_000_000;
    if !(-MAX_MS..=MAX_MS).contains(&ms) {
        return Err(invalid("a Date out of JavaScript's range"));
    }
    let in_day = ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(ms.div_euclid(86_400_000));
    let (h, m, s, milli) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    let year = if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else {
        // toJSON's expanded years: a sign and six digits.
        format!("{}{:06}", if year < 0 { '-' } else { '+' }, year.abs())
    };
    Ok(format!(
        "{year}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hex(s: &str) -> Bytes {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect::<Vec<u8>>()
            .into()
    }

    fn decode10(b: &[u8]) -> Result<Packet, DecodeError> {
        decode(&Bytes::copy_from_slice(b), 10)
    }

    /// Bytes `socket.io-msgpack-parser` 3.0.2's `Encoder` (notepack.io
    /// 2.2.0) made from packet objects built as the reference server builds
    /// them (tests/interop/node_modules, once).
    fn server_pins() -> Vec<(&'static str, Packet)> {
        vec![
            (
                "83a47479706500a46461746181a3736964b46f534f304f70616b4d565f336a6e696c41414141a36e7370a12f",
                Packet::connect("/", Some(json!({"sid": "oSO0OpakMV_3jnilAAAA"}))),
            ),
            (
                "84a47479706502a46461746193a568656c6c6f0181a161c3a2696407a36e7370a52f63686174",
                Packet::event("/chat", "hello", vec![json!(1), json!({"a": true})]).with_ack_id(7),
            ),
            (
                "83a47479706502a46461746193a466696c65c40301020381a66e6573746564c401ffa36e7370a12f",
                Packet::binary_event(
                    "/",
                    "file",
                    vec![placeholder(0), json!({"nested": placeholder(1)})],
                    vec![Bytes::from_static(&[1, 2, 3]), Bytes::from_static(&[0xff])],
                ),
            ),
            (
                "84a47479706503a46461746194a26f6bfbcb3ff8000000000000c0a269640ca36e7370a12f",
                Packet::ack("/", 12, vec![json!("ok"), json!(-5), json!(1.5), Value::Null]),
            ),
            (
                "82a47479706501a36e7370a62f61646d696e",
                Packet::disconnect("/admin"),
            ),
            (
                "83a47479706504a46461746181a76d657373616765ae4e6f7420617574686f72697a6564a36e7370a12f",
                Packet::connect_error("/", "Not authorized", None),
            ),
        ]
    }

    #[test]
    fn encodes_byte_for_byte_as_the_reference_parser() {
        for (wire, packet) in server_pins() {
            assert_eq!(&encode(&packet)[..], &hex(wire)[..], "encoding {packet:?}");
            assert_eq!(decode(&hex(wire), 10), Ok(packet), "decoding {wire}");
        }
    }

    #[test]
    fn decodes_what_the_official_clients_send() {
        let cases = [
            // socket.io-client: CONNECT without auth is `data: undefined`.
            (
                "83a47479706500a464617461d40000a36e7370a12f",
                Packet::connect("/", None),
            ),
            // An undefined value in the auth object is dropped.
            (
                "83a47479706500a46461746182a5746f6b656ea3616263a66f6666736574d40000a36e7370a62f61646d696e",
                Packet::connect("/admin", Some(json!({"token": "abc"}))),
            ),
            // The client's `options` key is skipped; ack id 0.
            (
                "85a47479706502a46461746193a26869cd012cd2ffff63c0a76f7074696f6e7381a8636f6d7072657373c3a2696400a36e7370a12f",
                Packet::event("/", "hi", vec![json!(300), json!(-40000)]).with_ack_id(0),
            ),
            // A browser's ArrayBuffer (ext type 0) and a Date.
            (
                "84a47479706502a46461746193a362696ec702000908d700000001a237960073a76f7074696f6e7381a8636f6d7072657373c3a36e7370a12f",
                Packet::binary_event(
                    "/",
                    "bin",
                    vec![placeholder(0), json!("2026-12-02T16:28:27.123Z")],
                    vec![Bytes::from_static(&[9, 8])],
                ),
            ),
            // An ack with binary, `id` before `type`.
            (
                "84a47479706503a2696405a46461746191c4027879a36e7370a12f",
                Packet::binary_ack("/", 5, vec![placeholder(0)], vec![Bytes::from_static(b"xy")]),
            ),
        ];
        for (wire, packet) in cases {
            assert_eq!(decode(&hex(wire), 10), Ok(packet), "decoding {wire}");
        }
    }

    /// python-socketio's `MsgPackPacket`: `{type, data, nsp}` with nil for
    /// no data, `id` only when there is one.
    #[test]
    fn decodes_python_socketio_packets() {
        let mut buf = Vec::new();
        let map = |buf: &mut Vec<u8>, n| mp::write_map_len(buf, n).unwrap();
        let key = |buf: &mut Vec<u8>, k| mp::write_str(buf, k).unwrap();
        map(&mut buf, 3);
        key(&mut buf, "type");
        mp::write_uint(&mut buf, 1).unwrap();
        key(&mut buf, "data");
        mp::write_nil(&mut buf).unwrap();
        key(&mut buf, "nsp");
        key(&mut buf, "/");
        assert_eq!(decode10(&buf), Ok(Packet::disconnect("/")));

        buf.clear();
        map(&mut buf, 4);
        key(&mut buf, "type");
        mp::write_uint(&mut buf, 2).unwrap();
        key(&mut buf, "data");
        mp::write_array_len(&mut buf, 2).unwrap();
        key(&mut buf, "bytes");
        mp::write_bin(&mut buf, b"\x00\x01").unwrap();
        key(&mut buf, "nsp");
        key(&mut buf, "/");
        key(&mut buf, "id");
        mp::write_nil(&mut buf).unwrap();
        assert_eq!(
            decode10(&buf),
            Ok(Packet::binary_event(
                "/",
                "bytes",
                vec![placeholder(0)],
                vec![Bytes::from_static(b"\x00\x01")]
            ))
        );
    }

    #[test]
    fn attachments_are_slices_of_the_message() {
        let wire = hex("84a47479706503a2696405a46461746191c4027879a36e7370a12f");
        let p = decode(&wire, 10).unwrap();
        let att = &p.attachments()[0];
        let inside = wire.as_ptr_range();
        assert!(inside.contains(&att.as_ptr()), "no copy");
    }

    #[test]
    fn round_trips() {
        let atts = vec![Bytes::from_static(b""), Bytes::from(vec![7u8; 70_000])];
        let packets = [
            Packet::connect("/", None),
            Packet::connect(
                "/a",
                Some(json!({"token": "é✓", "n": u64::MAX, "m": i64::MIN})),
            ),
            Packet::event("/", "x", vec![json!(0.1), json!([[[]]]), json!({})]),
            Packet::event(
                "/",
                "long",
                vec![
                    json!("s".repeat(70_000)),
                    json!((0..20).collect::<Vec<_>>()),
                ],
            ),
            Packet::binary_event(
                "/",
                "b",
                vec![json!([placeholder(0), placeholder(1)])],
                atts.clone(),
            )
            .with_ack_id(u64::MAX),
            Packet::binary_ack("/x", 0, vec![placeholder(0), placeholder(1)], atts),
            Packet::connect_error("/", "no", Some(json!({"code": 3}))),
            Packet::disconnect("/x"),
        ];
        for (i, p) in packets.into_iter().enumerate() {
            // Not `assert_eq!`: a failure would print 70 kB.
            assert!(decode(&encode(&p).into(), 10) == Ok(p), "packet {i}");
        }
        // Attachments are numbered in the order they appear on the wire.
        let (a, b) = (Bytes::from_static(b"a"), Bytes::from_static(b"b"));
        let p = Packet::binary_event(
            "/",
            "x",
            vec![placeholder(1), placeholder(0)],
            vec![a.clone(), b.clone()],
        );
        assert_eq!(
            decode10(&encode(&p)),
            Ok(Packet::binary_event(
                "/",
                "x",
                vec![placeholder(0), placeholder(1)],
                vec![b, a]
            ))
        );
        // The JSON encoder's "" namespace is "/" on the wire too.
        assert_eq!(
            decode10(&encode(&Packet::disconnect(""))),
            Ok(Packet::disconnect("/"))
        );
    }

    #[test]
    fn placeholders_without_their_attachment_stay_objects() {
        // As with the JSON parser, a placeholder in a packet without
        // binary is plain data.
        let p = Packet::event("/", "x", vec![placeholder(0)]);
        assert_eq!(decode10(&encode(&p)), Ok(p));
    }

    /// Writes one value of a test packet.
    type Write<'a> = &'a dyn Fn(&mut Vec<u8>);

    /// One packet map from `fields` (key, value written by the closure).
    fn packet(fields: &[(&str, Write<'_>)]) -> Vec<u8> {
        let mut buf = Vec::new();
        mp::write_map_len(&mut buf, fields.len() as u32).unwrap();
        for (k, write) in fields {
            mp::write_str(&mut buf, k).unwrap();
            write(&mut buf);
        }
        buf
    }

    fn uint(n: u64) -> impl Fn(&mut Vec<u8>) {
        move |b: &mut Vec<u8>| {
            mp::write_uint(b, n).unwrap();
        }
    }

    fn string(s: &'static str) -> impl Fn(&mut Vec<u8>) {
        move |b: &mut Vec<u8>| mp::write_str(b, s).unwrap()
    }

    fn raw(bytes: &'static [u8]) -> impl Fn(&mut Vec<u8>) {
        move |b: &mut Vec<u8>| b.extend_from_slice(bytes)
    }

    #[test]
    fn every_error() {
        use DecodeError::*;
        let ev = raw(b"\x91\xa1x"); // ["x"]
        let root = string("/");
        let cases: Vec<(Vec<u8>, DecodeError)> = vec![
            (vec![], InvalidMsgpack("truncated".into())),
            (vec![0x92, 0x01, 0x02], NotAMap),
            (vec![0xc1], NotAMap),
            (packet(&[("nsp", &root)]), InvalidPacketType),
            (
                packet(&[("type", &uint(5)), ("nsp", &root), ("data", &ev)]),
                InvalidPacketType,
            ),
            (
                packet(&[("type", &raw(b"\xff")), ("nsp", &root)]),
                InvalidPacketType,
            ),
            (
                packet(&[("type", &string("2")), ("nsp", &root)]),
                InvalidPacketType,
            ),
            (
                packet(&[("type", &uint(2)), ("data", &ev)]),
                InvalidNamespace,
            ),
            (
                packet(&[("type", &uint(2)), ("nsp", &string("chat")), ("data", &ev)]),
                InvalidNamespace,
            ),
            (
                packet(&[("type", &uint(2)), ("nsp", &string("/a,b")), ("data", &ev)]),
                InvalidNamespace,
            ),
            (
                packet(&[("type", &uint(2)), ("nsp", &uint(1)), ("data", &ev)]),
                InvalidNamespace,
            ),
            (
                packet(&[("type", &uint(2)), ("nsp", &root), ("nsp", &root)]),
                DuplicateKey("nsp".into()),
            ),
            (packet(&[("type", &uint(2)), ("nsp", &root)]), MissingData),
            (
                packet(&[("type", &uint(2)), ("nsp", &root), ("data", &raw(b"\x80"))]),
                EventNotArray,
            ),
            (
                packet(&[("type", &uint(2)), ("nsp", &root), ("data", &raw(b"\x90"))]),
                EventNameNotString,
            ),
            (
                packet(&[
                    ("type", &uint(2)),
                    ("nsp", &root),
                    ("data", &raw(b"\x91\x01")),
                ]),
                EventNameNotString,
            ),
            (
                packet(&[
                    ("type", &uint(2)),
                    ("nsp", &root),
                    ("data", &ev),
                    ("id", &raw(b"\xff")),
                ]),
                AckIdNotInteger,
            ),
            (
                packet(&[
                    ("type", &uint(2)),
                    ("nsp", &root),
                    ("data", &ev),
                    ("id", &raw(b"\xcb\x3f\xf8\0\0\0\0\0\0")),
                ]),
                AckIdNotInteger,
            ),
            (
                packet(&[
                    ("type", &uint(2)),
                    ("nsp", &root),
                    ("data", &ev),
                    ("id", &string("1")),
                ]),
                AckIdNotInteger,
            ),
            (
                packet(&[("type", &uint(3)), ("nsp", &root), ("data", &raw(b"\x90"))]),
                MissingAckId,
            ),
            (
                packet(&[
                    ("type", &uint(3)),
                    ("nsp", &root),
                    ("data", &raw(b"\xa1x")),
                    ("id", &uint(1)),
                ]),
                AckNotArray,
            ),
            (
                packet(&[("type", &uint(0)), ("nsp", &root), ("data", &raw(b"\x90"))]),
                ConnectPayloadNotObject,
            ),
            (
                packet(&[("type", &uint(0)), ("nsp", &root), ("id", &uint(1))]),
                UnexpectedAckId,
            ),
            (
                packet(&[("type", &uint(1)), ("nsp", &root), ("data", &raw(b"\x80"))]),
                TrailingData,
            ),
            (
                packet(&[("type", &uint(4)), ("nsp", &root), ("data", &raw(b"\x90"))]),
                ConnectErrorPayloadInvalid,
            ),
            (packet(&[("type", &uint(4)), ("nsp", &root)]), MissingData),
            (
                packet(&[
                    ("type", &uint(2)),
                    ("nsp", &root),
                    ("data", &raw(b"\x92\xa1x\xd6\x05\0\0\0\0")),
                ]),
                UnsupportedExt(5),
            ),
            (
                packet(&[
                    ("type", &uint(2)),
                    ("nsp", &root),
                    ("data", &raw(b"\x92\xa1x\xc7\x01\x07\0")),
                ]),
                UnsupportedExt(7),
            ),
            (
                packet(&[
                    ("type", &uint(2)),
                    ("nsp", &root),
                    ("data", &raw(b"\x91\xa1\xff")),
                ]),
                InvalidMsgpack("a string is not UTF-8".into()),
            ),
            (
                packet(&[
                    ("type", &uint(2)),
                    ("nsp", &root),
                    ("data", &raw(b"\x91\x81\xc0\x01")),
                ]),
                InvalidMsgpack("a map key is neither a string nor an integer".into()),
            ),
            (
                packet(&[
                    ("type", &uint(2)),
                    ("nsp", &root),
                    ("data", &raw(b"\x92\xa1x\xc1")),
                ]),
                InvalidMsgpack("reserved byte 0xc1".into()),
            ),
            (
                // An array claiming four billion items in a few bytes.
                packet(&[
                    ("type", &uint(2)),
                    ("nsp", &root),
                    ("data", &raw(b"\xdd\xff\xff\xff\xff\xa1x")),
                ]),
                InvalidMsgpack("truncated".into()),
            ),
            (
                packet(&[
                    ("type", &uint(2)),
                    ("nsp", &root),
                    ("data", &raw(b"\x91\xdb\xff\xff\xff\xffx")),
                ]),
                InvalidMsgpack("truncated".into()),
            ),
            (
                {
                    let mut b = packet(&[("type", &uint(2)), ("nsp", &root), ("data", &ev)]);
                    b.push(0xc0);
                    b
                },
                InvalidMsgpack("trailing bytes after the packet".into()),
            ),
            (
                {
                    let mut b = packet(&[("type", &uint(2)), ("nsp", &root), ("data", &ev)]);
                    b.pop();
                    b
                },
                InvalidMsgpack("truncated".into()),
            ),
        ];
        for (wire, err) in cases {
            assert_eq!(decode10(&wire), Err(err.clone()), "decoding {wire:02x?}");
        }
    }

    #[test]
    fn attachments_are_bounded() {
        let p = |n: usize| {
            Packet::binary_event(
                "/",
                "x",
                (0..n).map(placeholder).collect(),
                (0..n).map(|_| Bytes::from_static(b"a")).collect(),
            )
        };
        assert!(decode10(&encode(&p(10))).is_ok());
        assert_eq!(
            decode10(&encode(&p(11))),
            Err(DecodeError::TooManyAttachments {
                declared: 11,
                max: 10
            })
        );
        // Binary values under an unknown key are not attachments.
        let skipped = packet(&[
            ("type", &uint(2)),
            ("nsp", &string("/")),
            ("data", &raw(b"\x91\xa1x")),
            ("extra", &raw(b"\x93\xc4\x00\xc4\x00\xc4\x00")),
        ]);
        assert_eq!(
            decode(&skipped.into(), 1),
            Ok(Packet::event("/", "x", vec![]))
        );
    }

    #[test]
    fn nesting_is_bounded_without_overflow() {
        let nested = |depth: usize| {
            let mut data = vec![0x92, 0xa1, b'x'];
            data.extend(std::iter::repeat_n(0x91, depth));
            data.push(0xc0);
            let data: &'static [u8] = Box::leak(data.into_boxed_slice());
            packet(&[
                ("type", &uint(2)),
                ("nsp", &string("/")),
                ("data", &raw(data)),
            ])
        };
        assert!(decode10(&nested(MAX_DEPTH - 1)).is_ok());
        assert_eq!(
            decode10(&nested(MAX_DEPTH)),
            Err(DecodeError::InvalidMsgpack(
                "nested more than 128 deep".into()
            ))
        );
        // Far beyond: an error, not a stack overflow (unknown keys too).
        assert!(decode10(&nested(1_000_000)).is_err());
        let deep: &'static [u8] = Box::leak(vec![0x91; 1_000_000].into_boxed_slice());
        assert!(decode10(&packet(&[("x", &raw(deep))])).is_err());
    }

    #[test]
    fn numbers_and_undefined() {
        let data = raw(b"\x96\xa1x\xca\x3f\xc0\x00\x00\xcb\x7f\xf8\0\0\0\0\0\x01\xd0\x80\xcf\xff\xff\xff\xff\xff\xff\xff\xff\xd4\x00\x00");
        let wire = packet(&[("type", &uint(2)), ("nsp", &string("/")), ("data", &data)]);
        assert_eq!(
            decode10(&wire),
            Ok(Packet::event(
                "/",
                "x",
                // f32 1.5; NaN is null as JSON.stringify makes it; -128;
                // u64::MAX; undefined in an array is null.
                vec![
                    json!(1.5),
                    Value::Null,
                    json!(-128),
                    json!(u64::MAX),
                    Value::Null
                ]
            ))
        );
        // Integer map keys are their decimal form, as in a JavaScript object.
        let data = raw(b"\x92\xa1x\x82\x01\xc3\xff\xc2");
        let wire = packet(&[("type", &uint(2)), ("nsp", &string("/")), ("data", &data)]);
        assert_eq!(
            decode10(&wire),
            Ok(Packet::event(
                "/",
                "x",
                vec![json!({"1": true, "-1": false})]
            ))
        );
    }

    #[test]
    fn dates_as_to_json_writes_them() {
        assert_eq!(iso_date(0).unwrap(), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_date(-1).unwrap(), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            iso_date(951_782_400_000).unwrap(),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            iso_date(8_640_000_000_000_000).unwrap(),
            "+275760-09-13T00:00:00.000Z"
        );
        assert_eq!(
            iso_date(-62_198_755_200_000).unwrap(),
            "-000001-01-01T00:00:00.000Z"
        );
        assert!(iso_date(8_640_000_000_000_001).is_err());
    }
}
