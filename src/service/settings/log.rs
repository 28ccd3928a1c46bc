//! `[log]`: format, level and per-module levels of the service's log.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::ConfigError;

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum LogFormat {
    /// Human-readable, for a terminal.
    #[default]
    Term,
    /// One JSON object per line, for log collectors.
    Json,
}

/// A log level, most to least severe; `off` silences a module entirely.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub enum LogLevel {
    Off,
    Critical,
    Error,
    Warning,
    #[default]
    Info,
    Debug,
    Trace,
}

named_enum!(LogFormat, "log format", {
    Term => "term",
    Json => "json",
});

named_enum!(LogLevel, "log level", {
    Off => "off",
    Critical => "critical",
    Error => "error",
    Warning => "warning",
    Info => "info",
    Debug => "debug",
    Trace => "trace",
});

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// Level for records whose module matches no entry of `modules`.
    pub level: LogLevel,
    /// Module-path prefix (`riptide::engineio`) -> level; the longest matching
    /// prefix wins. A `BTreeMap` so the configuration prints in a stable order.
    pub modules: BTreeMap<String, LogLevel>,
}

impl LogSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for module in self.modules.keys() {
            let well_formed =
                !module.is_empty() && module.split("::").all(|segment| !segment.is_empty());
            if !well_formed {
                return Err(ConfigError::invalid(
                    format!("log.modules.{module}"),
                    "not a module path like \"riptide::engineio\"",
                ));
            }
        }
        Ok(())
    }
}
