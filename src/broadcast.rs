//! Emitting to many sockets: rooms, exclusions, volatile, and the encoding
//! that a fan-out does once for all its receivers.

use std::sync::Arc;

use serde_json::Value;

use crate::actors::delivery::{Deliver, Encoded, Filter};
use crate::actors::room::{Broadcast, RoomKey};
use crate::actors::user::UserEmit;
use crate::engineio::{Frame, Sid};
use crate::server::ServerShared;
use crate::socket::{EmitError, Payload};
use crate::socketio::packet::{is_reserved_event, Packet, PacketData};

pub(crate) fn check_event_name(event: &str) -> Result<(), EmitError> {
    if is_reserved_event(event) {
        Err(EmitError::ReservedEvent(event.to_string()))
    } else {
        Ok(())
    }
}

/// Encode a Socket.IO packet as Engine.IO frames: the `4`-prefixed text frame
/// and one binary frame per attachment.
pub(crate) fn encode_packet(packet: &Packet) -> Encoded {
    let (text, attachments) = packet.encode();
    let mut frames = Vec::with_capacity(1 + attachments.len());
    frames.push(Frame::message(&text));
    frames.extend(attachments.into_iter().map(Frame::Binary));
    frames.into()
}

fn event_data(event: &str, payload: &Payload) -> Value {
    let mut arr = Vec::with_capacity(payload.args.len() + 1);
    arr.push(Value::String(event.to_string()));
    arr.extend(payload.args.iter().cloned());
    Value::Array(arr)
}

pub(crate) fn encode_event(
    ns: &str,
    event: &str,
    payload: &Payload,
    id: Option<u64>,
) -> Result<Encoded, EmitError> {
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

pub(crate) fn encode_ack(ns: &str, id: u64, payload: &Payload) -> Encoded {
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

/// A broadcast being described: `to`, `except` and `volatile` narrow it,
/// `emit` sends it. Built from a [`crate::Socket`] or a [`crate::ServerHandle`].
#[derive(Clone)]
pub struct BroadcastOperator {
    server: Arc<ServerShared>,
    ns: Arc<str>,
    rooms: Vec<Arc<str>>,
    except_rooms: Vec<Arc<str>>,
    except_sid: Option<Sid>,
    volatile: bool,
}

impl BroadcastOperator {
    pub(crate) fn new(server: Arc<ServerShared>, ns: Arc<str>) -> BroadcastOperator {
        BroadcastOperator {
            server,
            ns,
            rooms: Vec::new(),
            except_rooms: Vec::new(),
            except_sid: None,
            volatile: false,
        }
    }

    /// Add a target room (several rooms: their union, each socket once).
    pub fn to(mut self, room: impl Into<String>) -> Self {
        let room: Arc<str> = room.into().into();
        if !self.rooms.contains(&room) {
            self.rooms.push(room);
        }
        self
    }

    /// Leave out the members of `room`.
    pub fn except(mut self, room: impl Into<String>) -> Self {
        self.except_rooms.push(room.into().into());
        self
    }

    pub(crate) fn except_socket(mut self, sid: Sid) -> Self {
        self.except_sid = Some(sid);
        self
    }

    /// Drop the message for clients that cannot take it right now.
    pub fn volatile(mut self) -> Self {
        self.volatile = true;
        self
    }

    pub fn emit(self, event: &str, payload: impl Into<Payload>) -> Result<(), EmitError> {
        let frames = encode_event(&self.ns, event, &payload.into(), None)?;
        self.send_encoded(frames);
        Ok(())
    }

    pub(crate) fn send_encoded(self, frames: Encoded) {
        let filter =
            if self.rooms.len() <= 1 && self.except_rooms.is_empty() && self.except_sid.is_none() {
                None
            } else {
                Some(Arc::new(Filter {
                    rooms: self.rooms.clone(),
                    except_rooms: self.except_rooms.clone(),
                    except_sid: self.except_sid.clone(),
                }))
            };
        let server = &self.server;
        if self.rooms.is_empty() {
            let key = RoomKey {
                ns: self.ns.clone(),
                room: None,
            };
            if let Some(room) = server.rooms.get(&key) {
                room.do_send(Broadcast {
                    frames,
                    filter,
                    volatile: self.volatile,
                });
            }
            return;
        }
        for room in &self.rooms {
            // A socket's own id is a room only that socket is in: served
            // directly, without an actor per socket.
            if let Some(conn) = server.local_socket(&self.ns, room) {
                conn.do_send(Deliver {
                    ns: self.ns.clone(),
                    sid: Sid::from(&**room),
                    frames: frames.clone(),
                    via: Some(room.clone()),
                    filter: filter.clone(),
                    volatile: self.volatile,
                });
                continue;
            }
            let key = RoomKey {
                ns: self.ns.clone(),
                room: Some(room.clone()),
            };
            if let Some(actor) = server.rooms.get(&key) {
                actor.do_send(Broadcast {
                    frames: frames.clone(),
                    filter: filter.clone(),
                    volatile: self.volatile,
                });
            }
        }
    }
}

/// Emit to every socket of one user in one namespace.
pub struct UserOperator {
    pub(crate) server: Arc<ServerShared>,
    pub(crate) ns: Arc<str>,
    pub(crate) user: Arc<str>,
}

impl UserOperator {
    pub fn emit(self, event: &str, payload: impl Into<Payload>) -> Result<(), EmitError> {
        let frames = encode_event(&self.ns, event, &payload.into(), None)?;
        if let Some(actor) = self.server.users.get(&self.user) {
            actor.do_send(UserEmit {
                ns: self.ns,
                frames,
                volatile: false,
            });
        }
        Ok(())
    }
}
