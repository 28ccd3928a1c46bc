//! `[limits]`: backpressure and abuse limits.

use serde::Deserialize;

use super::{positive, ConfigError};

/// `[limits]`: backpressure and abuse limits. Every bound is here with the
/// reason for its default in `config/default.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSettings {
    /// Frames a connection may have queued for writing before it counts as full.
    pub max_queued_frames: usize,
    /// Bytes a connection may have queued; past it the client is closed at once.
    pub max_queued_bytes: usize,
    /// How long a connection may stay full before it is closed as a slow consumer.
    pub slow_consumer_grace_ms: u64,
    /// Concurrent Engine.IO sessions from one IP address.
    pub max_connections_per_ip: u32,
    /// New sessions a second from one IP address (sustained), and its burst.
    pub connection_rate_per_ip: f64,
    pub connection_burst_per_ip: u32,
    /// Events a second one socket may send (sustained), and its burst.
    pub event_rate: f64,
    pub event_burst: u32,
    /// Consecutive refused events after which the socket is closed.
    pub event_abuse_close_after: u32,
}

impl Eq for LimitsSettings {}

impl LimitsSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        positive("limits.max_queued_frames", self.max_queued_frames as u64)?;
        positive("limits.max_queued_bytes", self.max_queued_bytes as u64)?;
        positive("limits.slow_consumer_grace_ms", self.slow_consumer_grace_ms)?;
        positive(
            "limits.max_connections_per_ip",
            self.max_connections_per_ip as u64,
        )?;
        positive_f("limits.connection_rate_per_ip", self.connection_rate_per_ip)?;
        positive(
            "limits.connection_burst_per_ip",
            self.connection_burst_per_ip as u64,
        )?;
        positive_f("limits.event_rate", self.event_rate)?;
        positive("limits.event_burst", self.event_burst as u64)?;
        positive(
            "limits.event_abuse_close_after",
            self.event_abuse_close_after as u64,
        )
    }
}

fn positive_f(key: &str, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            key: key.to_string(),
            reason: "must be a number > 0".to_string(),
        })
    }
}
