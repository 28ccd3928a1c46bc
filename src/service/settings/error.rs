//! [`ConfigError`], and the translation of `config`'s and serde's errors into
//! it, so every message leads with the key it is about.

use serde_path_to_error::Segment;

use super::keys;

/// A configuration problem. The message always names the offending key, e.g.
/// `engine.ping_timeout_ms: must be > 0`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A key is present but its value is wrong (bad type or failed validation).
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
    /// A key no section knows, almost always a typo.
    #[error("unknown field `{field}` in section {section}{expected}")]
    UnknownField {
        section: String,
        field: String,
        /// `, expected one of ...`: the section's keys as `config/default.toml`
        /// defines them, and the nearest one when it is near enough to be what
        /// was meant (`(did you mean ...?)`); empty if the section has none.
        expected: String,
    },
    /// A top-level table that is not one of the known sections.
    #[error("unknown section `{section}`{expected}")]
    UnknownSection {
        section: String,
        /// `, expected one of ...` as for [`ConfigError::UnknownField`].
        expected: String,
    },
    /// A configuration file that cannot be read or is not valid TOML.
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    /// Anything else from the loader, e.g. a missing `default.toml`.
    #[error("{0}")]
    Load(String),
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// The dotted key the error is about (`server.port`), when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Invalid { key, .. } => Some(key),
            Self::UnknownField { .. }
            | Self::UnknownSection { .. }
            | Self::File { .. }
            | Self::Load(_) => None,
        }
    }
}

/// A failed deserialization into `Settings`. serde_path_to_error gives the
/// path of the key the error happened at, an unknown key's own name included
/// (it is recorded as the key is read, before serde refuses it). When a key on
/// that path is one `config/default.toml` does not define, the error is that
/// key being unknown, whatever serde's message says; otherwise it is about the
/// value and `config`'s error (which knows the value's origin) says what.
pub(super) fn from_deserialize(
    error: serde_path_to_error::Error<config::ConfigError>,
) -> ConfigError {
    // Keys from the root, up to the first segment that is not a key (an array
    // index: inside a value, where no key is unknown).
    let path: Vec<&str> = error
        .path()
        .iter()
        .map_while(|segment| match segment {
            Segment::Map { key } => Some(key.as_str()),
            _ => None,
        })
        .collect();
    let Some(unknown) = keys::first_unknown(&path) else {
        return translate(error.into_inner());
    };
    let field = path[unknown.depth].to_owned();
    let expected = expected(&field, &unknown.expected);
    match unknown.depth {
        0 => ConfigError::UnknownSection {
            section: field,
            expected,
        },
        depth => ConfigError::UnknownField {
            section: path[..depth].join("."),
            field,
            expected,
        },
    }
}

/// `, expected one of `a`, `b` (did you mean `b`?)`, worded as serde words
/// its own (`expected `a``, `expected `a` or `b``, `expected one of ...`).
fn expected(unknown: &str, keys: &[String]) -> String {
    let quoted: Vec<String> = keys.iter().map(|key| format!("`{key}`")).collect();
    let mut text = match quoted.as_slice() {
        [] => return String::new(),
        [one] => format!(", expected {one}"),
        [a, b] => format!(", expected {a} or {b}"),
        many => format!(", expected one of {}", many.join(", ")),
    };
    if let Some(near) = keys::nearest(unknown, keys) {
        text.push_str(&format!(" (did you mean `{near}`?)"));
    }
    text
}

/// Turns `config`'s errors into ours, so every message leads with the key.
pub(super) fn translate(error: config::ConfigError) -> ConfigError {
    match error {
        config::ConfigError::Type {
            origin,
            unexpected,
            expected,
            key,
        } => ConfigError::Invalid {
            key: key.unwrap_or_else(|| "<root>".to_owned()),
            reason: with_origin(
                format!("invalid type: {unexpected}, expected {expected}"),
                origin,
            ),
        },
        config::ConfigError::At { error, origin, key } => ConfigError::Invalid {
            key: key.unwrap_or_default(),
            reason: with_origin(error.to_string(), origin),
        },
        config::ConfigError::NotFound(key) => ConfigError::Invalid {
            key,
            reason: "missing (every key needs a value in default.toml)".to_owned(),
        },
        config::ConfigError::FileParse { uri, cause } => ConfigError::File {
            path: uri.unwrap_or_else(|| "<config file>".to_owned()),
            reason: cause.to_string(),
        },
        other => ConfigError::Load(other.to_string()),
    }
}

fn with_origin(reason: String, origin: Option<String>) -> String {
    match origin {
        Some(origin) => format!("{reason} (from {origin})"),
        None => reason,
    }
}
