//! The `RIPTIDE__SECTION__KEY` environment overrides, as a `config` source.
//!
//! Hand-written rather than `config`'s own `Environment` source, which cannot
//! express what these variables mean:
//!
//! - `log.modules` is keyed by module paths such as `riptide::engineio`.
//!   `Environment` turns every separator into `.` and `config` reads the
//!   result as a path expression, so `RIPTIDE__LOG__MODULES__RIPTIDE__ENGINEIO`
//!   would become the nested tables `log.modules.riptide.engineio`, and no
//!   path expression can hold the `::` of a module path. Here the segments
//!   after `MODULES` are joined with `::` into one key, and the overrides
//!   reach `config` as nested tables ([`EnvSource`]), never as dotted keys.
//! - Our list keys ([`ENV_LIST_KEYS`]) take comma-separated items, trimmed,
//!   with an empty value meaning an empty list. `Environment` splits lists
//!   only with `try_parsing` on, which also turns every other value that
//!   looks like a number or a boolean into one (a string field would lose
//!   the leading zero of `"0123"`), and it neither trims items nor has an
//!   empty list (`""` is `[""]`).
//! - Its values all come from "the environment"; ours name their variable,
//!   so a bad value's error says which one to fix.

use super::ConfigError;

/// Prefix of override variables, followed by [`ENV_SEPARATOR`].
pub const ENV_PREFIX: &str = "RIPTIDE";
/// Separates prefix, section and key in override variables. A double underscore,
/// because single underscores already appear inside key names.
pub const ENV_SEPARATOR: &str = "__";

/// Keys whose environment value is a comma-separated list: an environment
/// variable has no array syntax, and none of these values can contain a comma.
const ENV_LIST_KEYS: &[&str] = &[
    "engine.transports",
    "cors.allowed_origins",
    "auth.algorithms",
    "channels.public",
    "channels.client_publish",
    "server.trusted_proxies",
];

/// One `RIPTIDE__...` variable, already turned into a key path and a value.
#[derive(Debug, Clone)]
pub(super) struct EnvOverride {
    path: Vec<String>,
    value: config::ValueKind,
    origin: String,
}

impl EnvOverride {
    /// `None` for a variable without the `RIPTIDE__` prefix.
    pub(super) fn parse(name: &str, raw: &str) -> Result<Option<Self>, ConfigError> {
        let Some(rest) = strip_env_prefix(name) else {
            return Ok(None);
        };
        let segments: Vec<&str> = rest.split(ENV_SEPARATOR).collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(ConfigError::invalid(
                name,
                format!("expected {ENV_PREFIX}{ENV_SEPARATOR}SECTION{ENV_SEPARATOR}KEY"),
            ));
        }
        let mut path: Vec<String> = segments.iter().map(|s| s.to_ascii_lowercase()).collect();
        // A module path contains `::`, which a shell variable name cannot: the
        // segments after MODULES are the module path, `__` standing for `::`
        // (RIPTIDE__LOG__MODULES__RIPTIDE__ENGINEIO -> "riptide::engineio").
        if path.len() > 3 && path[0] == "log" && path[1] == "modules" {
            let module = path[2..].join("::");
            path.truncate(2);
            path.push(module);
        }
        let key = path.join(".");
        // Values stay strings: the deserializer parses numbers and booleans for
        // the fields that want them, and a string field keeps "0123" intact.
        let value = if ENV_LIST_KEYS.contains(&key.as_str()) {
            config::ValueKind::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(|item| config::Value::new(None, item))
                    .collect(),
            )
        } else {
            config::ValueKind::String(raw.to_owned())
        };
        Ok(Some(Self {
            path,
            value,
            origin: format!("environment variable {name}"),
        }))
    }
}

/// The part after `RIPTIDE__`, matched case-insensitively like the rest of the name.
pub(super) fn strip_env_prefix(name: &str) -> Option<&str> {
    let prefix_len = ENV_PREFIX.len() + ENV_SEPARATOR.len();
    let rest = name.get(prefix_len..)?;
    let head = &name.as_bytes()[..prefix_len];
    let matches = head[..ENV_PREFIX.len()].eq_ignore_ascii_case(ENV_PREFIX.as_bytes())
        && &head[ENV_PREFIX.len()..] == ENV_SEPARATOR.as_bytes();
    matches.then_some(rest)
}

/// Feeds overrides to `config` as nested tables rather than dotted keys:
/// `config` parses a dotted key as a path expression, which cannot hold the
/// `::` of a module name.
#[derive(Debug, Clone)]
pub(super) struct EnvSource(pub(super) Vec<EnvOverride>);

impl config::Source for EnvSource {
    fn clone_into_box(&self) -> Box<dyn config::Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<config::Map<String, config::Value>, config::ConfigError> {
        let mut root = config::Map::new();
        for entry in &self.0 {
            insert_nested(&mut root, &entry.path, entry);
        }
        Ok(root)
    }
}

fn insert_nested(
    table: &mut config::Map<String, config::Value>,
    path: &[String],
    entry: &EnvOverride,
) {
    let (first, rest) = path.split_first().expect("override paths are non-empty");
    if rest.is_empty() {
        table.insert(
            first.clone(),
            config::Value::new(Some(&entry.origin), entry.value.clone()),
        );
        return;
    }
    let child = table.entry(first.clone()).or_insert_with(empty_table);
    if !matches!(child.kind, config::ValueKind::Table(_)) {
        // A scalar override of a section and a key inside it: the key wins,
        // deserialization would reject the scalar anyway.
        *child = empty_table();
    }
    if let config::ValueKind::Table(ref mut inner) = child.kind {
        insert_nested(inner, rest, entry);
    }
}

fn empty_table() -> config::Value {
    config::Value::new(None, config::Map::<String, config::Value>::new())
}
