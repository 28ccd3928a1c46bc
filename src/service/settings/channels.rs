//! `[channels]`: service mode's channel permissions.

use serde::Deserialize;

use super::{positive, ConfigError};

/// `[channels]`. Patterns are exact names or prefixes ending in `*`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSettings {
    /// Channels every authenticated socket may subscribe to.
    pub public: Vec<String>,
    /// Channels a client may publish to (besides being subscribed).
    pub client_publish: Vec<String>,
    /// Longest channel name, in bytes.
    pub max_name_bytes: usize,
    /// Channels one `subscribe` may name.
    pub max_per_request: usize,
}

impl ChannelSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        positive("channels.max_name_bytes", self.max_name_bytes as u64)?;
        positive("channels.max_per_request", self.max_per_request as u64)?;
        for (key, patterns) in [
            ("channels.public", &self.public),
            ("channels.client_publish", &self.client_publish),
        ] {
            for p in patterns {
                check_pattern(p).map_err(|reason| ConfigError::invalid(key, reason))?;
            }
        }
        Ok(())
    }
}

/// A channel pattern: a channel name, or a name prefix followed by one `*`
/// at the end (`*` alone matches every channel).
pub fn check_pattern(p: &str) -> Result<(), String> {
    let stem = p.strip_suffix('*').unwrap_or(p);
    if p.is_empty() || stem.contains(['*', '>']) || p.chars().any(char::is_whitespace) {
        return Err(format!(
            "{p:?} is not a channel pattern (a name, or a prefix ending in one '*')"
        ));
    }
    if stem.starts_with("user:") || stem.starts_with("role:") {
        return Err(format!(
            "{p:?}: user:… and role:… rooms are never subscribable"
        ));
    }
    Ok(())
}
