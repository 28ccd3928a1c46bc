//! `[api]`: service mode's server API (HTTP, and NATS request/reply).

use serde::Deserialize;

use super::{positive, ConfigError};

/// The shortest `api.key` accepted: a guessable key opens every user's
/// messages to whoever guesses it.
pub const MIN_API_KEY: usize = 16;

/// `[api]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    pub enabled: bool,
    /// `Authorization: Bearer <key>`.
    pub key: String,
    pub max_body_bytes: usize,
    /// Rooms one publish may name.
    pub max_rooms: usize,
}

impl ApiSettings {
    /// Whether the API is served (on, with a key).
    pub fn is_on(&self) -> bool {
        self.enabled && !self.key.is_empty()
    }

    pub(super) fn validate(&self, service: bool) -> Result<(), ConfigError> {
        positive("api.max_body_bytes", self.max_body_bytes as u64)?;
        positive("api.max_rooms", self.max_rooms as u64)?;
        if !service || !self.enabled {
            return Ok(());
        }
        if self.key.is_empty() {
            return Err(ConfigError::invalid(
                "api.key",
                "is empty while api.enabled is true: set a key (e.g. `openssl rand -hex 24`) or api.enabled = false",
            ));
        }
        if self.key.len() < MIN_API_KEY {
            return Err(ConfigError::invalid(
                "api.key",
                format!(
                    "is {} bytes; at least {MIN_API_KEY} are needed",
                    self.key.len()
                ),
            ));
        }
        Ok(())
    }
}
