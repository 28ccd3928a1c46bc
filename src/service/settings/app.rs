//! `[app]`: what the binary serves.

use serde::Deserialize;

/// `[app]`: what the binary serves.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSettings {
    /// Serve the bench fixture application (join / publish / echo) on `/`.
    pub fixture: bool,
}
