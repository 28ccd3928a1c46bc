//! `[app]`: what the binary serves.

use serde::Deserialize;

/// What the `riptide` binary serves on `/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum AppMode {
    /// The bench fixture application (`shared/FIXTURE.md`): join, publish, echo.
    Fixture,
    /// The notification and pub/sub service (`shared/SERVICE.md`): JWT at the
    /// handshake, channels, the server API, offline delivery.
    Service,
    /// Nothing on `/` (only `/health` and `/metrics`): a node that only
    /// relays, or a library user's own namespaces.
    None,
}

named_enum!(AppMode, "app mode", {
    Fixture => "fixture",
    Service => "service",
    None => "none",
});

/// `[app]`: what the binary serves.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSettings {
    pub mode: AppMode,
}
