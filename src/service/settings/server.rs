//! `[server]`: the HTTP listener.

use std::time::Duration;

use serde::Deserialize;

use super::{positive, ConfigError};
use crate::engineio::proxy::TrustedProxies;

/// More workers than this is a misconfiguration (each one is a thread with its
/// own accept loop and actor arbiters), not a bigger machine.
pub const MAX_WORKERS: usize = 1024;

/// `[server]`: the HTTP listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    /// Mount path of the Engine.IO endpoint; starts and ends with `/`.
    pub path: String,
    /// actix workers; 0 = one per core.
    pub workers: usize,
    pub shutdown_timeout_ms: u64,
    /// Sessions closed per second when the node stops (paced, so clients do
    /// not all reconnect at once).
    pub drain_rate_per_s: u32,
    /// Per worker, as actix counts it.
    pub max_connections: usize,
    /// Addresses and CIDRs of the reverse proxies whose `Forwarded` /
    /// `X-Forwarded-For` headers name the client (for the per-IP limits and
    /// `handshake.address`); from anyone else those headers are ignored.
    pub trusted_proxies: Vec<String>,
    /// The demo page at `/` in the fixture and service modes.
    pub demo: bool,
    /// `[server.tls]`: HTTPS and WSS on this listener.
    pub tls: TlsSettings,
}

/// `[server.tls]`: a certificate chain and its private key, both PEM.
/// Both empty: plain HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    pub cert_file: String,
    pub key_file: String,
}

impl TlsSettings {
    pub fn enabled(&self) -> bool {
        !self.cert_file.is_empty() || !self.key_file.is_empty()
    }

    /// The rustls configuration of these files; the error names the key
    /// whose file is wrong.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, ConfigError> {
        crate::service::tls::server_config(&self.cert_file, &self.key_file)
            .map_err(|(key, reason)| ConfigError::invalid(format!("server.tls.{key}"), reason))
    }
}

impl ServerSettings {
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.host.trim().is_empty() {
            return Err(ConfigError::invalid("server.host", "must not be empty"));
        }
        if self.port == 0 {
            // 0 would bind a random port no client knows about.
            return Err(ConfigError::invalid("server.port", "must be > 0"));
        }
        let path = &self.path;
        if !path.starts_with('/') || !path.ends_with('/') {
            return Err(ConfigError::invalid(
                "server.path",
                format!("{path:?} must start and end with '/'"),
            ));
        }
        if path.contains(|c: char| c.is_whitespace() || c == '?' || c == '#') {
            return Err(ConfigError::invalid(
                "server.path",
                format!("{path:?} must not contain whitespace, '?' or '#'"),
            ));
        }
        if self.workers > MAX_WORKERS {
            return Err(ConfigError::invalid(
                "server.workers",
                format!("{} is more than {MAX_WORKERS}", self.workers),
            ));
        }
        if let Err(e) = TrustedProxies::parse(&self.trusted_proxies) {
            return Err(ConfigError::invalid("server.trusted_proxies", e));
        }
        if self.tls.enabled() {
            self.tls.server_config()?;
        }
        positive("server.drain_rate_per_s", u64::from(self.drain_rate_per_s))?;
        positive("server.max_connections", self.max_connections as u64)
    }
}
