//! The node's observer while the admin UI is on: every socket's connect,
//! disconnect, join, leave, data and events, as the UI's development-mode
//! events (`socket_connected`, `room_joined`, `event_received`, ...), emitted to
//! the admin namespace on every node. Each node reports its own sockets.

use std::sync::Arc;
use std::time::SystemTime;

use serde_json::Value;

use super::wire;
use super::AdminState;
use crate::node::observer::Observer;
use crate::node::socket::{room_list, DisconnectReason, Socket};
use crate::socketio::encode::Encoded;
use crate::socketio::payload::Payload;

pub(super) struct AdminObserver {
    state: Arc<AdminState>,
}

impl AdminObserver {
    pub(super) fn new(state: Arc<AdminState>) -> AdminObserver {
        AdminObserver { state }
    }

    fn is_admin(&self, socket: &Socket) -> bool {
        socket.namespace() == &*self.state.ns
    }

    fn now() -> Value {
        Value::String(wire::iso(SystemTime::now()))
    }

    fn room_event(&self, event: &str, socket: &Socket, room: &str) {
        self.state.broadcast(
            event,
            vec![
                socket.namespace().into(),
                room.into(),
                socket.id().into(),
                Self::now(),
            ],
        );
    }

    /// `socket_updated`: one field of the socket's description changed.
    fn socket_updated(&self, socket: &Socket, field: &str, value: Value) {
        let mut update = serde_json::Map::new();
        update.insert("id".into(), socket.id().into());
        update.insert("nsp".into(), socket.namespace().into());
        update.insert(field.into(), value);
        self.state
            .broadcast("socket_updated", vec![Value::Object(update)]);
    }
}

impl Observer for AdminObserver {
    fn socket_connected(&self, socket: &Socket) {
        // As the reference: the rooms it is in first (its own included),
        // then the socket. Admin sockets are reported too.
        let rooms = room_list(&socket.inner.rooms.lock().rooms, &socket.inner.id);
        for room in &rooms {
            self.room_event("room_joined", socket, room);
        }
        let described = wire::local_socket(socket, &self.state.endpoint);
        self.state
            .broadcast("socket_connected", vec![described, Self::now()]);
    }

    fn socket_disconnected(&self, socket: &Socket, rooms: &[String], reason: DisconnectReason) {
        self.state.broadcast(
            "socket_disconnected",
            vec![
                socket.namespace().into(),
                socket.id().into(),
                wire::disconnect_reason(reason).into(),
                Self::now(),
            ],
        );
        for room in rooms {
            self.room_event("room_left", socket, room);
        }
    }

    fn socket_upgraded(&self, socket: &Socket) {
        self.socket_updated(socket, "transport", "websocket".into());
    }

    fn socket_data_set(&self, socket: &Socket) {
        // As the reference's proxy on `socket.data` tells of each change.
        self.socket_updated(socket, "data", socket.json_data());
    }

    fn room_joined(&self, socket: &Socket, room: &str) {
        self.room_event("room_joined", socket, room);
    }

    fn room_left(&self, socket: &Socket, room: &str) {
        self.room_event("room_left", socket, room);
    }

    fn event_received(&self, socket: &Socket, event: &str, payload: &Payload) {
        if self.is_admin(socket) {
            return;
        }
        let mut args = Vec::with_capacity(payload.args.len() + 1);
        args.push(Value::String(event.to_owned()));
        args.extend(payload.args.iter().cloned());
        // Binary attachments go along (the UI gets them as the reference
        // sends them, as binary): the placeholders still point at them.
        self.state.broadcast_payload(
            "event_received",
            Payload {
                args: vec![
                    socket.namespace().into(),
                    socket.id().into(),
                    Value::Array(args),
                    Self::now(),
                ],
                binary: payload.binary.clone(),
            },
        );
    }

    fn event_sent(&self, socket: &Socket, frames: &Encoded) {
        if self.is_admin(socket) {
            return;
        }
        let Some((args, binary)) = wire::sent_event(frames) else {
            return;
        };
        self.state.broadcast_payload(
            "event_sent",
            Payload {
                args: vec![
                    socket.namespace().into(),
                    socket.id().into(),
                    args,
                    Self::now(),
                ],
                binary,
            },
        );
    }
}
