//! `[admin]`: the Socket.IO admin UI (`@socket.io/admin-ui` 0.5.x) on a
//! namespace of its own.

use serde::Deserialize;

use super::{positive, ConfigError};

/// What the admin UI is sent, as the Node package's `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum AdminMode {
    /// Every socket, room and event (the Sockets, Rooms, Clients and Events
    /// pages): each node tells the UI of every connect, join and event.
    Development,
    /// `server_stats` only (the Dashboard and Servers pages): the node's
    /// sockets are not watched at all.
    Production,
}

named_enum!(AdminMode, "admin mode", {
    Development => "development",
    Production => "production",
});

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    pub enabled: bool,
    /// The namespace the UI connects to (its "Admin namespace" field).
    pub namespace: String,
    pub username: String,
    /// A bcrypt hash (`$2a$`, `$2b$` or `$2y$`) of the password, never the
    /// password itself.
    pub password_hash: String,
    /// No commands (disconnect, join, leave, emit): the UI only watches.
    pub readonly: bool,
    pub mode: AdminMode,
    /// The id the node reports in `server_stats`; empty: the node's cluster
    /// id, or the host name without a cluster.
    pub server_id: String,
    /// Password checks a second on this node, at most: each costs a bcrypt
    /// hash on a worker thread, so guessing cannot take the node's CPU.
    pub max_logins_per_s: u32,
    /// Login sessions (the UI's `sessionId`) the node remembers, at most;
    /// past it the oldest is forgotten (its UI logs in again).
    pub max_sessions: usize,
}

impl AdminSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        positive("admin.max_logins_per_s", u64::from(self.max_logins_per_s))?;
        positive("admin.max_sessions", self.max_sessions as u64)?;
        if !self.namespace.starts_with('/') {
            return Err(ConfigError::invalid(
                "admin.namespace",
                format!("{:?} must start with '/' (e.g. \"/admin\")", self.namespace),
            ));
        }
        if !self.enabled {
            return Ok(());
        }
        if self.namespace == "/" {
            return Err(ConfigError::invalid(
                "admin.namespace",
                "must not be \"/\": the main namespace serves the application",
            ));
        }
        if self.username.is_empty() {
            return Err(ConfigError::invalid(
                "admin.username",
                "is empty while admin.enabled is true: set the name the UI logs in with",
            ));
        }
        if self.password_hash.parse::<bcrypt::HashParts>().is_err() {
            return Err(ConfigError::invalid(
                "admin.password_hash",
                "is not a bcrypt hash ($2b$<cost>$<53 characters>); make one with \
                 `htpasswd -nbBC 10 '' 'PASSWORD' | cut -c2-` (never the password itself)",
            ));
        }
        Ok(())
    }
}
