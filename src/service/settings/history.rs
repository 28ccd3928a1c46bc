//! `[history]`: service mode's offline delivery.

use std::time::Duration;

use serde::Deserialize;

use super::{positive, ConfigError};

/// `[history]`: messages published with `persist: true` to a user who has no
/// socket anywhere, kept for the user's next connect.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistorySettings {
    pub max_per_user: usize,
    pub ttl_ms: u64,
    /// Users the in-process store (no broker) keeps messages for, at most.
    pub max_users: usize,
    /// Bytes of one kept message, at most.
    pub max_message_bytes: usize,
}

impl HistorySettings {
    pub fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        positive("history.max_per_user", self.max_per_user as u64)?;
        positive("history.ttl_ms", self.ttl_ms)?;
        positive("history.max_users", self.max_users as u64)?;
        positive("history.max_message_bytes", self.max_message_bytes as u64)
    }
}
