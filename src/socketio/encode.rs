//! Socket.IO packets as Engine.IO frames, encoded once for every receiver.

use std::sync::Arc;

use serde_json::Value;

use super::packet::{is_reserved_event, Packet, PacketData};
use super::payload::Payload;
use crate::engineio::Frame;

/// An encoded packet: a text frame and its binary attachments, shared by
/// every receiver of one emit.
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

/// Encode a Socket.IO packet as Engine.IO frames: the `4`-prefixed text frame
/// and one binary frame per attachment.
pub fn encode_packet(packet: &Packet) -> Encoded {
    let (text, attachments) = packet.encode();
    let mut frames = Vec::with_capacity(1 + attachments.len());
    frames.push(Frame::message(&text));
    frames.extend(attachments.iter().map(|a| Frame::binary(a)));
    frames.into()
}

fn event_data(event: &str, payload: &Payload) -> Value {
    let mut arr = Vec::with_capacity(payload.args.len() + 1);
    arr.push(Value::String(event.to_string()));
    arr.extend(payload.args.iter().cloned());
    Value::Array(arr)
}

pub fn encode_event(
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
    Ok(encode_packet(&packet))
}

pub fn encode_ack(ns: &str, id: u64, payload: &Payload) -> Encoded {
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
    encode_packet(&packet)
}
