//! `[engine]`: Engine.IO sessions and transports.

use std::time::Duration;

use serde::Deserialize;

use super::{positive, ConfigError};

/// `max_payload` bounds: below 1 KiB ordinary handshakes and events do not fit;
/// above 100 MiB one client could make the server buffer more than a node can spare.
pub const MIN_PAYLOAD: usize = 1024;
pub const MAX_PAYLOAD: usize = 100 * 1024 * 1024;

/// One of the two Engine.IO transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub enum Transport {
    Polling,
    Websocket,
}

// The names are what Engine.IO uses on the wire (`transport=`, handshake `upgrades`).
named_enum!(Transport, "transport", {
    Polling => "polling",
    Websocket => "websocket",
});

/// `[engine]`: Engine.IO sessions and transports.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSettings {
    pub ping_interval_ms: u64,
    pub ping_timeout_ms: u64,
    /// Bytes; bounds a polling request body and a WebSocket frame.
    pub max_payload: usize,
    pub upgrade_timeout_ms: u64,
    /// Non-empty, no duplicates.
    pub transports: Vec<Transport>,
    /// Binary attachments allowed in one Socket.IO packet.
    pub max_attachments: usize,
    /// WebSocket permessage-deflate (RFC 7692), when the client offers it.
    pub per_message_deflate: bool,
    /// Bytes; smaller messages go uncompressed.
    pub per_message_deflate_threshold: usize,
    /// gzip / deflate of polling responses, when the client accepts it.
    pub http_compression: bool,
    /// Bytes; smaller responses go uncompressed.
    pub http_compression_threshold: usize,
    /// Accept Engine.IO v3 / Socket.IO v2 clients (Node's `allowEIO3`).
    pub allow_eio3: bool,
}

impl EngineSettings {
    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval_ms)
    }

    pub fn ping_timeout(&self) -> Duration {
        Duration::from_millis(self.ping_timeout_ms)
    }

    pub fn upgrade_timeout(&self) -> Duration {
        Duration::from_millis(self.upgrade_timeout_ms)
    }

    /// The permessage-deflate threshold, when deflate is on.
    pub fn deflate_threshold(&self) -> Option<usize> {
        self.per_message_deflate
            .then_some(self.per_message_deflate_threshold)
    }

    /// The polling responses' compression threshold, when it is on.
    pub fn http_compression_threshold(&self) -> Option<usize> {
        self.http_compression
            .then_some(self.http_compression_threshold)
    }

    pub fn allows(&self, transport: Transport) -> bool {
        self.transports.contains(&transport)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        positive("engine.ping_interval_ms", self.ping_interval_ms)?;
        positive("engine.ping_timeout_ms", self.ping_timeout_ms)?;
        positive("engine.upgrade_timeout_ms", self.upgrade_timeout_ms)?;
        if !(MIN_PAYLOAD..=MAX_PAYLOAD).contains(&self.max_payload) {
            return Err(ConfigError::invalid(
                "engine.max_payload",
                format!(
                    "{} is outside {MIN_PAYLOAD}..={MAX_PAYLOAD} bytes (1 KiB to 100 MiB)",
                    self.max_payload
                ),
            ));
        }
        for (key, value) in [
            (
                "engine.per_message_deflate_threshold",
                self.per_message_deflate_threshold,
            ),
            (
                "engine.http_compression_threshold",
                self.http_compression_threshold,
            ),
        ] {
            if value > self.max_payload {
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "{value} is above engine.max_payload ({}): nothing would be compressed",
                        self.max_payload
                    ),
                ));
            }
        }
        if self.transports.is_empty() {
            return Err(ConfigError::invalid(
                "engine.transports",
                "must list at least one of \"polling\", \"websocket\"",
            ));
        }
        for (i, transport) in self.transports.iter().enumerate() {
            if self.transports[..i].contains(transport) {
                return Err(ConfigError::invalid(
                    "engine.transports",
                    format!("{:?} is listed twice", transport.as_str()),
                ));
            }
        }
        Ok(())
    }
}
