//! The Engine.IO layer's bounds and timings: plain data, built once per
//! node by whoever configures the engine (the service resolves it from its
//! settings, whose defaults live in `config/default.toml` alone).

use std::time::Duration;

/// Everything a session needs to know about its limits; built once per node.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// Largest polling body or WebSocket frame accepted (`maxHttpBufferSize`).
    pub max_payload: usize,
    /// How long a WebSocket may stay in the probe phase before it is dropped.
    pub upgrade_timeout: Duration,
    pub allow_polling: bool,
    pub allow_websocket: bool,
    /// Accept Engine.IO v3 clients (Socket.IO v2), as the reference
    /// server's `allowEIO3`.
    pub allow_eio3: bool,
    /// Allowed CORS origins; empty sends no CORS headers, `*` allows any.
    pub cors_origins: Vec<String>,
    pub cors_credentials: bool,
    /// Outbound frames queued for a client before it counts as full.
    pub max_queued_frames: usize,
    /// Outbound bytes queued for a client past which it is closed at once.
    pub max_queued_bytes: usize,
    /// How long a client may stay full before it is closed as a slow consumer.
    pub slow_consumer_grace: Duration,
    /// Per-IP admission: concurrent sessions, new sessions a second, burst.
    pub max_connections_per_ip: u32,
    pub connection_rate_per_ip: f64,
    pub connection_burst_per_ip: u32,
    /// permessage-deflate: on with this threshold (bytes), or off.
    pub deflate_threshold: Option<usize>,
    /// gzip / deflate of polling responses: on with this threshold, or off.
    pub http_compression: Option<usize>,
    /// Peers whose `Forwarded` / `X-Forwarded-For` name the client
    /// (`server.trusted_proxies`).
    pub trusted_proxies: super::proxy::TrustedProxies,
}

impl EngineConfig {
    /// The most packets one polling POST may carry: every packet is at least
    /// one byte plus a separator, so this never refuses an honest body, and it
    /// stops a hostile one from making us allocate per empty record.
    /// The WebSocket transport's bounds.
    pub fn ws_limits(&self) -> super::websocket::WsLimits {
        super::websocket::WsLimits {
            max_payload: self.max_payload,
            max_frames: self.max_queued_frames,
            max_bytes: self.max_queued_bytes,
            deflate_threshold: self.deflate_threshold,
        }
    }

    pub fn max_packets_per_payload(&self) -> usize {
        self.max_payload / 2 + 1
    }
}
