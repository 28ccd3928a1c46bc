//! `[recovery]`: Socket.IO connection state recovery.

use std::time::Duration;

use serde::Deserialize;

use super::{positive, ConfigError};

/// `[recovery]`: Socket.IO connection state recovery (the reference server's
/// `connectionStateRecovery`), off by default. A client that comes back
/// within `max_disconnection_ms` of a disconnection it did not choose gets
/// the same socket id, rooms and data back, and the events it missed.
///
/// The missed events come from each namespace's stream, which keeps at most
/// `stream_max_len` events for at most `stream_max_age_ms`: a client away
/// longer than the stream's age (or while more events than its length were
/// sent) is not recovered; it connects as a new socket.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoverySettings {
    /// Turn connection state recovery on. Only with `adapter.kind = "memory"`
    /// for now: the recovery store lives in the node's memory.
    pub enabled: bool,
    /// How long a disconnected socket's state is kept for its client.
    pub max_disconnection_ms: u64,
    /// A recovered socket skips the namespace's connect middlewares.
    pub skip_middlewares: bool,
    /// Events kept per namespace for replay, at most.
    pub stream_max_len: usize,
    /// Events older than this are dropped from the namespace's stream.
    pub stream_max_age_ms: u64,
    /// Bytes of encoded events kept per namespace, at most.
    pub stream_max_bytes: usize,
}

impl RecoverySettings {
    pub fn max_disconnection(&self) -> Duration {
        Duration::from_millis(self.max_disconnection_ms)
    }

    pub fn stream_max_age(&self) -> Duration {
        Duration::from_millis(self.stream_max_age_ms)
    }

    /// The bounds are checked whether or not recovery is on, so turning it on
    /// later cannot reveal a bad value that was there all along.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        positive("recovery.max_disconnection_ms", self.max_disconnection_ms)?;
        positive("recovery.stream_max_len", self.stream_max_len as u64)?;
        positive("recovery.stream_max_age_ms", self.stream_max_age_ms)?;
        positive("recovery.stream_max_bytes", self.stream_max_bytes as u64)
    }
}
