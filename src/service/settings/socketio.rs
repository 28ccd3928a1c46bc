//! `[socketio]`: Socket.IO namespaces, rooms and acks.

use std::time::Duration;

use serde::Deserialize;

use super::{positive, ConfigError};
pub use crate::socketio::parser::Parser;

/// The longest `socketio.broadcast_window_us` accepted.
pub const MAX_BROADCAST_WINDOW_US: u64 = 100_000;

/// `[socketio]`: Socket.IO namespaces, rooms and acks.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocketIoSettings {
    /// The packet format every client speaks: `json` (the clients' default
    /// parser) or `msgpack` (`socket.io-msgpack-parser`).
    pub parser: Parser,
    /// A connection that never sends CONNECT is closed after this long.
    pub connect_timeout_ms: u64,
    /// Default timeout of a server -> client ack.
    pub ack_timeout_ms: u64,
    pub max_namespaces_per_connection: usize,
    /// Counts the socket's own room.
    pub max_rooms_per_socket: usize,
    /// A room that sent a broadcast less than this long ago holds the next
    /// ones until this long after it, and sends them together. 0: off.
    pub broadcast_window_us: u64,
}

impl SocketIoSettings {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub fn ack_timeout(&self) -> Duration {
        Duration::from_millis(self.ack_timeout_ms)
    }

    pub fn broadcast_window(&self) -> Duration {
        Duration::from_micros(self.broadcast_window_us)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        positive("socketio.connect_timeout_ms", self.connect_timeout_ms)?;
        positive("socketio.ack_timeout_ms", self.ack_timeout_ms)?;
        positive(
            "socketio.max_namespaces_per_connection",
            self.max_namespaces_per_connection as u64,
        )?;
        // A socket is always in its own room, so 0 would refuse every socket.
        positive(
            "socketio.max_rooms_per_socket",
            self.max_rooms_per_socket as u64,
        )?;
        // It is added to every broadcast's latency under load: past this it
        // is a mistake (milliseconds for microseconds), not a tuning.
        if self.broadcast_window_us > MAX_BROADCAST_WINDOW_US {
            return Err(ConfigError::invalid(
                "socketio.broadcast_window_us",
                format!("must be <= {MAX_BROADCAST_WINDOW_US} (100 ms)"),
            ));
        }
        Ok(())
    }
}
