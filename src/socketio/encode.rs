//! Socket.IO packets as Engine.IO frames, encoded once for every receiver.

use std::sync::Arc;

use serde_json::Value;

use super::msgpack;
use super::packet::{is_reserved_event, Packet, PacketData};
use super::parser::{decode_frames, Parser};
use super::payload::Payload;
use crate::engineio::Frame;

/// An encoded packet, shared by every receiver of one emit: with the JSON
/// parser a text frame and its binary attachments, with the msgpack parser
/// one binary frame.
pub type Encoded = Arc<[Frame]>;

/// An event name the protocol reserves (`connect`, `disconnect`, ...): the
/// client's parser would refuse the packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is a reserved event name")]
pub struct ReservedEvent(pub String);

pub fn check_event_name(event: &str) -> Result<(), ReservedEvent> {
    if is_reserved_event(event) {
        Err(ReservedEvent(event.to_string()))
    } else {
        Ok(())
    }
}

/// Encode a Socket.IO packet as Engine.IO frames: with the JSON parser the
/// `4`-prefixed text frame and one binary frame per attachment, with the
/// msgpack parser one binary frame.
pub fn encode_packet(parser: Parser, packet: &Packet) -> Encoded {
    match parser {
        Parser::Json => {
            let (text, attachments) = packet.encode();
            let mut frames = Vec::with_capacity(1 + attachments.len());
            frames.push(Frame::message(&text));
            frames.extend(attachments.iter().map(|a| Frame::binary(a)));
            frames.into()
        }
        Parser::Msgpack => Arc::new([Frame::binary(&msgpack::encode(packet))]),
    }
}

/// An event's frames with `arg` (a string) as one more last argument, in
/// the encoding they came in (connection state recovery's offset on an
/// event already encoded). `None` if they are not an event.
pub fn with_last_arg(frames: &Encoded, arg: &str) -> Option<Encoded> {
    match Parser::of(frames)? {
        Parser::Json => {
            // The text frame is `4<packet>` and the packet's data a JSON
            // array: the argument goes before its closing bracket.
            let mut out: Vec<Frame> = frames.iter().cloned().collect();
            let body = out[0].as_str()?.strip_suffix(']')?;
            let sep = if body.ends_with('[') { "" } else { "," };
            let quoted = serde_json::Value::String(arg.to_owned()).to_string();
            out[0] = Frame::text(&format!("{body}{sep}{quoted}]"));
            Some(out.into())
        }
        Parser::Msgpack => {
            let mut packet = decode_frames(frames)?;
            match &mut packet.data {
                PacketData::Event { data, .. } | PacketData::BinaryEvent { data, .. } => {
                    data.as_array_mut()?.push(Value::String(arg.to_owned()))
                }
                _ => return None,
            }
            Some(encode_packet(Parser::Msgpack, &packet))
        }
    }
}

fn event_data(event: &str, payload: &Payload) -> Value {
    let mut arr = Vec::with_capacity(payload.args.len() + 1);
    arr.push(Value::String(event.to_string()));
    arr.extend(payload.args.iter().cloned());
    Value::Array(arr)
}

pub fn encode_event(
    parser: Parser,
    ns: &str,
    event: &str,
    payload: &Payload,
    id: Option<u64>,
) -> Result<Encoded, ReservedEvent> {
    check_event_name(event)?;
    let data = event_data(event, payload);
    let packet = if payload.binary.is_empty() {
        Packet {
            ns: ns.to_string(),
            data: PacketData::Event { data, id },
        }
    } else {
        Packet {
            ns: ns.to_string(),
            data: PacketData::BinaryEvent {
                data,
                id,
                attachments: payload.binary.clone(),
            },
        }
    };
    Ok(encode_packet(parser, &packet))
}

pub fn encode_ack(parser: Parser, ns: &str, id: u64, payload: &Payload) -> Encoded {
    let data = Value::Array(payload.args.clone());
    let packet = if payload.binary.is_empty() {
        Packet {
            ns: ns.to_string(),
            data: PacketData::Ack { data, id },
        }
    } else {
        Packet {
            ns: ns.to_string(),
            data: PacketData::BinaryAck {
                data,
                id,
                attachments: payload.binary.clone(),
            },
        }
    };
    encode_packet(parser, &packet)
}
