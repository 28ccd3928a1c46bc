//! Watching a node's sockets from outside the node (the admin UI): one
//! [`Observer`], set at most once per node, told of every socket's
//! connect, disconnect, join, leave, data change, and every event it
//! receives and is sent.
//!
//! Off (no observer) it costs one `OnceLock` load where each hook sits: the
//! per-delivery path loads it once per `Deliver`, not per item.

use super::socket::{DisconnectReason, Socket};
use crate::socketio::encode::Encoded;
use crate::socketio::payload::Payload;

/// What an observer is told. Each call runs on the thread of the socket's
/// connection, inside its actor, or (a join, a leave, its data set) on the
/// thread of the handler that asked: it must not block (hand the work to a
/// task or an actor).
pub(crate) trait Observer: Send + Sync + 'static {
    /// A socket connected (its CONNECT reply is being written); its rooms,
    /// those its connect middleware joined, are already in effect.
    fn socket_connected(&self, socket: &Socket);
    /// A socket left; `rooms` are the rooms it was in, its own id included.
    fn socket_disconnected(&self, socket: &Socket, rooms: &[String], reason: DisconnectReason);
    /// The socket's connection moved from polling to WebSocket.
    fn socket_upgraded(&self, socket: &Socket);
    /// A handler set the socket's JSON data ([`Socket::set_json_data`]);
    /// called on the handler's thread.
    fn socket_data_set(&self, socket: &Socket);
    fn room_joined(&self, socket: &Socket, room: &str);
    fn room_left(&self, socket: &Socket, room: &str);
    /// An event from the client, admitted (past the rate limit and the
    /// event middleware) and on its way to the handler.
    fn event_received(&self, socket: &Socket, event: &str, payload: &Payload);
    /// An event (or ack) written to the socket: its encoded frames.
    fn event_sent(&self, socket: &Socket, frames: &Encoded);
}
