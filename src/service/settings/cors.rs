//! `[cors]`: which cross-origin browsers may connect.

use serde::Deserialize;

use super::ConfigError;

/// `[cors]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSettings {
    /// Empty = send no CORS headers (the safe default); `["*"]` = any origin;
    /// otherwise exact origins such as `https://app.example.com`.
    pub allowed_origins: Vec<String>,
    pub allow_credentials: bool,
}

impl CorsSettings {
    pub fn is_enabled(&self) -> bool {
        !self.allowed_origins.is_empty()
    }

    pub fn allows_any_origin(&self) -> bool {
        self.allowed_origins.iter().any(|o| o == "*")
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        const KEY: &str = "cors.allowed_origins";
        if self.allows_any_origin() {
            if self.allowed_origins.len() > 1 {
                return Err(ConfigError::invalid(
                    KEY,
                    "\"*\" already allows every origin and must be the only entry",
                ));
            }
            if self.allow_credentials {
                // Browsers reject `Access-Control-Allow-Origin: *` on credentialed
                // requests, so this combination would fail every such request.
                return Err(ConfigError::invalid(
                    "cors.allow_credentials",
                    "cannot be true with allowed_origins = [\"*\"] (browsers reject it); list the origins",
                ));
            }
            return Ok(());
        }
        for origin in &self.allowed_origins {
            // Browsers send `scheme://host[:port]` exactly; anything else never matches.
            let rest = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            let well_formed = rest.is_some_and(|host| {
                !host.is_empty() && !host.contains(|c: char| c == '/' || c.is_whitespace())
            });
            if !well_formed {
                return Err(ConfigError::invalid(
                    KEY,
                    format!(
                        "{origin:?} is not an origin like \"https://app.example.com\" (scheme and host, no path or trailing '/')"
                    ),
                ));
            }
        }
        Ok(())
    }
}
