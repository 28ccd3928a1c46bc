//! Riptide's configuration: one typed [`Settings`] struct.
//!
//! Layers, later wins:
//!
//! 1. `config/default.toml`, the single source of every default, compiled in
//!    ([`DEFAULT_TOML`]; a copy in the config directory may override it);
//! 2. `config/<environment>.toml`, where the environment comes from
//!    `RIPTIDE_ENV` (default `development`); a missing file is fine;
//! 3. environment variables `RIPTIDE__<SECTION>__<KEY>`, e.g.
//!    `RIPTIDE__SERVER__PORT=4000`.
//!
//! Every section denies unknown fields, so a misspelt key is an error that
//! names it instead of a silent fallback to the default. Loading ends with
//! [`Settings::validate`], so a `Settings` returned by [`load`] is usable as is.
//!
//! `Settings::default()` is `config/default.toml` as compiled in, so library
//! users who build `Settings` in code get the same defaults as the binary;
//! no default is written anywhere else.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

pub use crate::adapter::{AdapterKind, AdapterSettings};

/// Environment variable naming the environment file to layer on the defaults.
pub const ENVIRONMENT_VAR: &str = "RIPTIDE_ENV";
/// Environment used when `RIPTIDE_ENV` is unset.
pub const DEFAULT_ENVIRONMENT: &str = "development";
/// Prefix of override variables, followed by [`ENV_SEPARATOR`].
pub const ENV_PREFIX: &str = "RIPTIDE";
/// Separates prefix, section and key in override variables. A double underscore,
/// because single underscores already appear inside key names.
pub const ENV_SEPARATOR: &str = "__";

/// Keys whose environment value is a comma-separated list: an environment
/// variable has no array syntax, and none of these values can contain a comma.
const ENV_LIST_KEYS: &[&str] = &["engine.transports", "cors.allowed_origins"];

/// `max_payload` bounds: below 1 KiB ordinary handshakes and events do not fit;
/// above 100 MiB one client could make the server buffer more than a node can spare.
pub const MIN_PAYLOAD: usize = 1024;
pub const MAX_PAYLOAD: usize = 100 * 1024 * 1024;
/// More workers than this is a misconfiguration (each one is a thread with its
/// own accept loop and actor arbiters), not a bigger machine.
pub const MAX_WORKERS: usize = 1024;

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
        /// `, expected one of ...` as reported by the deserializer, or empty.
        expected: String,
    },
    /// A top-level table that is not one of the known sections.
    #[error("unknown section `{section}`{expected}")]
    UnknownSection { section: String, expected: String },
    /// A configuration file that cannot be read or is not valid TOML.
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    /// Anything else from the loader, e.g. a missing `default.toml`.
    #[error("{0}")]
    Load(String),
}

impl ConfigError {
    fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
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

/// The whole configuration. See `config/default.toml` for every default and why.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub engine: EngineSettings,
    pub socketio: SocketIoSettings,
    pub limits: LimitsSettings,
    pub cors: CorsSettings,
    pub log: LogSettings,
    pub adapter: AdapterSettings,
    pub app: AppSettings,
}

/// `[server]`: the HTTP listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    /// Mount path of the Engine.IO endpoint; starts and ends with `/`.
    pub path: String,
    /// actix workers; 0 = one per core.
    pub workers: usize,
    pub shutdown_timeout_ms: u64,
    /// Per worker, as actix counts it.
    pub max_connections: usize,
}

impl ServerSettings {
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }
}

/// One of the two Engine.IO transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub enum Transport {
    Polling,
    Websocket,
}

// The names are what Engine.IO uses on the wire (`transport=`, handshake `upgrades`).
named_enum!(Transport, "transport", {
    Polling => "polling",
    Websocket => "websocket",
});

/// `[engine]`: Engine.IO sessions and transports.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSettings {
    pub ping_interval_ms: u64,
    pub ping_timeout_ms: u64,
    /// Bytes; bounds a polling request body and a WebSocket frame.
    pub max_payload: usize,
    pub upgrade_timeout_ms: u64,
    /// Non-empty, no duplicates.
    pub transports: Vec<Transport>,
    /// Binary attachments allowed in one Socket.IO packet.
    pub max_attachments: usize,
}

impl EngineSettings {
    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval_ms)
    }

    pub fn ping_timeout(&self) -> Duration {
        Duration::from_millis(self.ping_timeout_ms)
    }

    pub fn upgrade_timeout(&self) -> Duration {
        Duration::from_millis(self.upgrade_timeout_ms)
    }

    pub fn allows(&self, transport: Transport) -> bool {
        self.transports.contains(&transport)
    }
}

/// `[socketio]`: Socket.IO namespaces, rooms and acks.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocketIoSettings {
    /// A connection that never sends CONNECT is closed after this long.
    pub connect_timeout_ms: u64,
    /// Default timeout of a server -> client ack.
    pub ack_timeout_ms: u64,
    pub max_namespaces_per_connection: usize,
    /// Counts the socket's own room.
    pub max_rooms_per_socket: usize,
}

impl SocketIoSettings {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub fn ack_timeout(&self) -> Duration {
        Duration::from_millis(self.ack_timeout_ms)
    }
}

/// `[limits]`: backpressure and abuse limits. Every bound is here with the
/// reason for its default in `config/default.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSettings {
    /// Frames a connection may have queued for writing before it counts as full.
    pub max_queued_frames: usize,
    /// Bytes a connection may have queued; past it the client is closed at once.
    pub max_queued_bytes: usize,
    /// How long a connection may stay full before it is closed as a slow consumer.
    pub slow_consumer_grace_ms: u64,
    /// Concurrent Engine.IO sessions from one IP address.
    pub max_connections_per_ip: u32,
    /// New sessions a second from one IP address (sustained), and its burst.
    pub connection_rate_per_ip: f64,
    pub connection_burst_per_ip: u32,
    /// Events a second one socket may send (sustained), and its burst.
    pub event_rate: f64,
    pub event_burst: u32,
    /// Consecutive refused events after which the socket is closed.
    pub event_abuse_close_after: u32,
}

impl Eq for LimitsSettings {}

impl LimitsSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        positive("limits.max_queued_frames", self.max_queued_frames as u64)?;
        positive("limits.max_queued_bytes", self.max_queued_bytes as u64)?;
        positive("limits.slow_consumer_grace_ms", self.slow_consumer_grace_ms)?;
        positive(
            "limits.max_connections_per_ip",
            self.max_connections_per_ip as u64,
        )?;
        positive_f("limits.connection_rate_per_ip", self.connection_rate_per_ip)?;
        positive(
            "limits.connection_burst_per_ip",
            self.connection_burst_per_ip as u64,
        )?;
        positive_f("limits.event_rate", self.event_rate)?;
        positive("limits.event_burst", self.event_burst as u64)?;
        positive(
            "limits.event_abuse_close_after",
            self.event_abuse_close_after as u64,
        )
    }
}

fn positive_f(key: &str, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            key: key.to_string(),
            reason: "must be a number > 0".to_string(),
        })
    }
}

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
}

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

/// `[app]`: what the binary serves.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSettings {
    /// Serve the bench fixture application (join / publish / echo) on `/`.
    pub fixture: bool,
}

/// `config/default.toml`, compiled in: the one place every default is
/// written (with its reason). A `default.toml` in the config directory may
/// override it; every other file and variable overrides both.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

fn embedded_defaults() -> config::File<config::FileSourceString, config::FileFormat> {
    config::File::from_str(DEFAULT_TOML, config::FileFormat::Toml)
}

impl Default for Settings {
    /// `config/default.toml` as compiled in.
    fn default() -> Settings {
        config::Config::builder()
            .add_source(embedded_defaults())
            .build()
            .and_then(config::Config::try_deserialize)
            .expect("config/default.toml deserializes into Settings (a unit test checks it)")
    }
}

/// Loads settings from `config_dir` and the process environment
/// (`RIPTIDE_ENV` and every `RIPTIDE__*` variable), then validates them.
pub fn load(config_dir: &Path) -> Result<Settings, ConfigError> {
    // Set-but-empty counts as unset: compose files and CI often export `RIPTIDE_ENV=`.
    let environment = std::env::var_os(ENVIRONMENT_VAR)
        .filter(|value| !value.is_empty())
        .map(|value| {
            value
                .into_string()
                .map_err(|_| ConfigError::invalid(ENVIRONMENT_VAR, "not valid UTF-8"))
        })
        .transpose()?;
    load_from(config_dir, environment.as_deref(), process_overrides()?)
}

/// The process's `RIPTIDE__*` variables. Unrelated variables that are not
/// UTF-8 are skipped; ours must be UTF-8 because they become settings.
fn process_overrides() -> Result<Vec<(String, String)>, ConfigError> {
    let mut vars = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str().filter(|n| strip_env_prefix(n).is_some()) else {
            continue;
        };
        let value = value
            .into_string()
            .map_err(|_: OsString| ConfigError::invalid(name, "not valid UTF-8"))?;
        vars.push((name.to_owned(), value));
    }
    Ok(vars)
}

/// Like [`load`], but with the environment name and the variables passed in, so
/// tests need not touch the process environment. `environment: None` means
/// [`DEFAULT_ENVIRONMENT`]. Variables without the `RIPTIDE__` prefix are ignored.
pub fn load_from(
    config_dir: &Path,
    environment: Option<&str>,
    env_vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Settings, ConfigError> {
    let environment = environment.unwrap_or(DEFAULT_ENVIRONMENT);
    // The name becomes a file name: keep it from reaching outside `config_dir`.
    if environment.is_empty()
        || !environment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(ConfigError::invalid(
            ENVIRONMENT_VAR,
            format!("{environment:?} must be non-empty ASCII letters, digits, '_' or '-'"),
        ));
    }

    let mut overrides = Vec::new();
    for (name, value) in env_vars {
        if let Some(entry) = EnvOverride::parse(&name, &value)? {
            overrides.push(entry);
        }
    }

    let toml = |name: String, required: bool| {
        config::File::from(config_dir.join(name))
            .format(config::FileFormat::Toml)
            .required(required)
    };
    let settings: Settings = config::Config::builder()
        .add_source(embedded_defaults())
        .add_source(toml("default.toml".to_owned(), false))
        .add_source(toml(format!("{environment}.toml"), false))
        .add_source(EnvSource(overrides))
        .build()
        .and_then(config::Config::try_deserialize)
        .map_err(translate)?;
    settings.validate()?;
    Ok(settings)
}

/// One `RIPTIDE__...` variable, already turned into a key path and a value.
#[derive(Debug, Clone)]
struct EnvOverride {
    path: Vec<String>,
    value: config::ValueKind,
    origin: String,
}

impl EnvOverride {
    fn parse(name: &str, raw: &str) -> Result<Option<Self>, ConfigError> {
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
fn strip_env_prefix(name: &str) -> Option<&str> {
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
struct EnvSource(Vec<EnvOverride>);

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

/// Turns `config`'s errors into ours, so every message leads with the key.
fn translate(error: config::ConfigError) -> ConfigError {
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
        config::ConfigError::At { error, origin, key } => {
            let key = key.unwrap_or_default();
            match *error {
                config::ConfigError::Message(message) if is_unknown_field(&message) => {
                    let (field, expected) = parse_unknown_field(&message);
                    ConfigError::UnknownField {
                        section: key,
                        field,
                        expected,
                    }
                }
                inner => ConfigError::Invalid {
                    key,
                    reason: with_origin(inner.to_string(), origin),
                },
            }
        }
        config::ConfigError::Message(message) if is_unknown_field(&message) => {
            let (section, expected) = parse_unknown_field(&message);
            ConfigError::UnknownSection { section, expected }
        }
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

fn is_unknown_field(message: &str) -> bool {
    message.starts_with("unknown field `")
}

/// Splits serde's "unknown field `x`, expected one of `a`, `b`" into
/// ("x", ", expected one of `a`, `b`").
fn parse_unknown_field(message: &str) -> (String, String) {
    let rest = &message["unknown field `".len()..];
    match rest.find('`') {
        Some(end) => (rest[..end].to_owned(), rest[end + 1..].to_owned()),
        None => (rest.to_owned(), String::new()),
    }
}

impl Settings {
    /// Checks the relations and ranges the types cannot express. The error
    /// names the first offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.engine.validate()?;
        self.socketio.validate()?;
        self.limits.validate()?;
        self.cors.validate()?;
        self.log.validate()?;
        self.adapter
            .validate()
            .map_err(|e| ConfigError::invalid(e.key, e.reason))?;
        Ok(())
    }
}

fn positive(key: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::invalid(key, "must be > 0"));
    }
    Ok(())
}

impl ServerSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.host.trim().is_empty() {
            return Err(ConfigError::invalid("server.host", "must not be empty"));
        }
        if self.port == 0 {
            // 0 would bind a random port no client knows about.
            return Err(ConfigError::invalid("server.port", "must be > 0"));
        }
        let path = &self.path;
        if !path.starts_with('/') || !path.ends_with('/') {
            return Err(ConfigError::invalid(
                "server.path",
                format!("{path:?} must start and end with '/'"),
            ));
        }
        if path.contains(|c: char| c.is_whitespace() || c == '?' || c == '#') {
            return Err(ConfigError::invalid(
                "server.path",
                format!("{path:?} must not contain whitespace, '?' or '#'"),
            ));
        }
        if self.workers > MAX_WORKERS {
            return Err(ConfigError::invalid(
                "server.workers",
                format!("{} is more than {MAX_WORKERS}", self.workers),
            ));
        }
        positive("server.max_connections", self.max_connections as u64)
    }
}

impl EngineSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        positive("engine.ping_interval_ms", self.ping_interval_ms)?;
        positive("engine.ping_timeout_ms", self.ping_timeout_ms)?;
        positive("engine.upgrade_timeout_ms", self.upgrade_timeout_ms)?;
        if !(MIN_PAYLOAD..=MAX_PAYLOAD).contains(&self.max_payload) {
            return Err(ConfigError::invalid(
                "engine.max_payload",
                format!(
                    "{} is outside {MIN_PAYLOAD}..={MAX_PAYLOAD} bytes (1 KiB to 100 MiB)",
                    self.max_payload
                ),
            ));
        }
        if self.transports.is_empty() {
            return Err(ConfigError::invalid(
                "engine.transports",
                "must list at least one of \"polling\", \"websocket\"",
            ));
        }
        for (i, transport) in self.transports.iter().enumerate() {
            if self.transports[..i].contains(transport) {
                return Err(ConfigError::invalid(
                    "engine.transports",
                    format!("{:?} is listed twice", transport.as_str()),
                ));
            }
        }
        Ok(())
    }
}

impl SocketIoSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        positive("socketio.connect_timeout_ms", self.connect_timeout_ms)?;
        positive("socketio.ack_timeout_ms", self.ack_timeout_ms)?;
        positive(
            "socketio.max_namespaces_per_connection",
            self.max_namespaces_per_connection as u64,
        )?;
        // A socket is always in its own room, so 0 would refuse every socket.
        positive(
            "socketio.max_rooms_per_socket",
            self.max_rooms_per_socket as u64,
        )
    }
}

impl CorsSettings {
    fn validate(&self) -> Result<(), ConfigError> {
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

impl LogSettings {
    fn validate(&self) -> Result<(), ConfigError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory removed on drop; std-only so the crate needs no
    /// extra dev-dependency for it.
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new() -> Self {
            static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = std::env::temp_dir()
                .join(format!("riptide-config-test-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            Self(path)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A config dir holding the real `config/default.toml` plus `extra` files.
    fn config_dir(extra: &[(&str, &str)]) -> TempDir {
        let dir = TempDir::new();
        let defaults = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
        std::fs::copy(defaults, dir.path().join("default.toml")).unwrap();
        for (name, contents) in extra {
            std::fs::write(dir.path().join(name), contents).unwrap();
        }
        dir
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load_with(extra: &[(&str, &str)], env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let dir = config_dir(extra);
        load_from(dir.path(), None, vars(env))
    }

    fn error_with(extra: &[(&str, &str)], env: &[(&str, &str)]) -> String {
        load_with(extra, env).unwrap_err().to_string()
    }

    /// Asserts that a settings change fails validation and the message starts with `key`.
    fn assert_invalid(key: &str, change: impl FnOnce(&mut Settings)) {
        let mut settings = Settings::default();
        change(&mut settings);
        let error = settings.validate().unwrap_err();
        assert_eq!(error.key(), Some(key), "{error}");
        assert!(
            error.to_string().starts_with(&format!("{key}: ")),
            "{error}"
        );
    }

    #[test]
    fn default_toml_matches_default_impls() {
        let settings = load_with(&[], &[]).unwrap();
        assert_eq!(settings, Settings::default());
        Settings::default().validate().unwrap();
    }

    #[test]
    fn env_overrides_a_number() {
        let settings = load_with(&[], &[("RIPTIDE__SERVER__PORT", "4000")]).unwrap();
        assert_eq!(settings.server.port, 4000);
    }

    #[test]
    fn env_overrides_a_bool_and_a_string() {
        let settings = load_with(
            &[],
            &[
                ("RIPTIDE__APP__FIXTURE", "false"),
                ("RIPTIDE__ADAPTER__KIND", "nats"),
                ("RIPTIDE__ADAPTER__URL", "nats://127.0.0.1:4222"),
            ],
        )
        .unwrap();
        assert!(!settings.app.fixture);
        assert_eq!(settings.adapter.kind, AdapterKind::Nats);
        assert_eq!(settings.adapter.url, "nats://127.0.0.1:4222");
    }

    #[test]
    fn env_overrides_a_list_with_comma_separated_values() {
        let settings = load_with(
            &[],
            &[
                ("RIPTIDE__ENGINE__TRANSPORTS", "websocket"),
                (
                    "RIPTIDE__CORS__ALLOWED_ORIGINS",
                    "https://a.example.com, https://b.example.com",
                ),
            ],
        )
        .unwrap();
        assert_eq!(settings.engine.transports, vec![Transport::Websocket]);
        assert_eq!(
            settings.cors.allowed_origins,
            vec!["https://a.example.com", "https://b.example.com"]
        );
    }

    #[test]
    fn env_empty_list_value_means_an_empty_list() {
        let settings = load_with(
            &[("development.toml", "[cors]\nallowed_origins = [\"*\"]\n")],
            &[("RIPTIDE__CORS__ALLOWED_ORIGINS", "")],
        )
        .unwrap();
        assert!(settings.cors.allowed_origins.is_empty());
    }

    #[test]
    fn env_sets_a_nested_module_level() {
        let settings = load_with(
            &[],
            &[
                ("RIPTIDE__LOG__MODULES__RIPTIDE__ENGINEIO", "debug"),
                ("RIPTIDE__LOG__MODULES__riptide::adapter", "TRACE"),
                ("RIPTIDE__LOG__LEVEL", "warning"),
            ],
        )
        .unwrap();
        assert_eq!(settings.log.level, LogLevel::Warning);
        assert_eq!(settings.log.modules["riptide::engineio"], LogLevel::Debug);
        assert_eq!(settings.log.modules["riptide::adapter"], LogLevel::Trace);
    }

    #[test]
    fn env_variables_without_the_prefix_are_ignored() {
        let settings = load_with(
            &[],
            &[
                ("RIPTIDE_ENV", "production"),
                ("PORT", "1"),
                ("SERVER__PORT", "1"),
            ],
        )
        .unwrap();
        assert_eq!(settings, Settings::default());
    }

    #[test]
    fn env_prefix_matching_survives_odd_names() {
        assert_eq!(
            strip_env_prefix("RIPTIDE__SERVER__PORT"),
            Some("SERVER__PORT")
        );
        assert_eq!(
            strip_env_prefix("riptide__server__port"),
            Some("server__port")
        );
        assert_eq!(strip_env_prefix("RIPTIDé__X"), None);
        assert_eq!(strip_env_prefix("RIPTIDE_"), None);
        assert_eq!(strip_env_prefix("RIPTIDE_ENV"), None);
    }

    #[test]
    fn env_variable_with_an_empty_segment_is_an_error_naming_it() {
        let error = error_with(&[], &[("RIPTIDE__SERVER____PORT", "1")]);
        assert!(error.starts_with("RIPTIDE__SERVER____PORT: "), "{error}");
    }

    #[test]
    fn environment_file_overrides_defaults_and_env_overrides_the_file() {
        let dir = config_dir(&[(
            "production.toml",
            "[server]\nhost = \"0.0.0.0\"\nport = 8080\n[log]\nformat = \"json\"\n",
        )]);
        let settings = load_from(
            dir.path(),
            Some("production"),
            vars(&[("RIPTIDE__SERVER__PORT", "9090")]),
        )
        .unwrap();
        assert_eq!(settings.server.host, "0.0.0.0");
        assert_eq!(settings.server.port, 9090);
        assert_eq!(settings.log.format, LogFormat::Json);
        // Untouched keys keep their defaults.
        assert_eq!(settings.engine, Settings::default().engine);
    }

    #[test]
    fn default_environment_is_development_and_its_file_may_be_missing() {
        let settings = load_with(&[("development.toml", "[server]\nport = 3001\n")], &[]).unwrap();
        assert_eq!(settings.server.port, 3001);
        let dir = config_dir(&[]);
        load_from(dir.path(), Some("staging"), vars(&[])).unwrap();
    }

    #[test]
    fn environment_name_cannot_leave_the_config_dir() {
        let dir = config_dir(&[]);
        let error = load_from(dir.path(), Some("../etc/x"), vars(&[])).unwrap_err();
        assert_eq!(error.key(), Some("RIPTIDE_ENV"));
    }

    #[test]
    fn without_a_default_toml_the_compiled_in_defaults_apply() {
        // The defaults are written once, in config/default.toml, and compiled
        // in: a config directory without a copy still loads them.
        let dir = TempDir::new();
        let settings = load_from(dir.path(), None, vars(&[])).unwrap();
        assert_eq!(settings, Settings::default());
    }

    #[test]
    fn unknown_key_in_a_file_names_key_and_section() {
        let error = error_with(&[("development.toml", "[server]\nprot = 1\n")], &[]);
        assert!(
            error.starts_with("unknown field `prot` in section server"),
            "{error}"
        );
    }

    #[test]
    fn unknown_key_in_the_environment_names_key_and_section() {
        let error = error_with(&[], &[("RIPTIDE__ENGINE__PING_INTERVAL", "1")]);
        assert!(
            error.starts_with("unknown field `ping_interval` in section engine"),
            "{error}"
        );
    }

    #[test]
    fn unknown_section_is_named() {
        let error = error_with(&[("development.toml", "[servr]\nport = 1\n")], &[]);
        assert!(error.starts_with("unknown section `servr`"), "{error}");
    }

    #[test]
    fn wrong_type_names_the_key_and_where_it_came_from() {
        let error = error_with(&[], &[("RIPTIDE__SERVER__PORT", "abc")]);
        assert!(error.starts_with("server.port: invalid type"), "{error}");
        assert!(
            error.contains("environment variable RIPTIDE__SERVER__PORT"),
            "{error}"
        );
        let error = error_with(&[], &[("RIPTIDE__SERVER__PORT", "70000")]);
        assert!(error.starts_with("server.port: "), "{error}");
    }

    #[test]
    fn unknown_names_in_closed_sets_name_the_key() {
        let cases = [
            ("RIPTIDE__LOG__LEVEL", "loud", "log.level: "),
            ("RIPTIDE__LOG__FORMAT", "xml", "log.format: "),
            ("RIPTIDE__ADAPTER__KIND", "kafka", "adapter.kind: "),
            (
                "RIPTIDE__ENGINE__TRANSPORTS",
                "polling,flash",
                "engine.transports[1]: ",
            ),
            (
                "RIPTIDE__LOG__MODULES__RIPTIDE__ROOM",
                "chatty",
                "log.modules.riptide::room: ",
            ),
        ];
        for (name, value, prefix) in cases {
            let error = error_with(&[], &[(name, value)]);
            assert!(error.starts_with(prefix), "{error}");
        }
    }

    #[test]
    fn validation_errors_name_their_key() {
        assert_invalid("server.host", |s| s.server.host = " ".into());
        assert_invalid("server.port", |s| s.server.port = 0);
        assert_invalid("server.path", |s| s.server.path = "socket.io/".into());
        assert_invalid("server.path", |s| s.server.path = "/socket.io".into());
        assert_invalid("server.path", |s| s.server.path = "/a b/".into());
        assert_invalid("server.workers", |s| s.server.workers = MAX_WORKERS + 1);
        assert_invalid("server.max_connections", |s| s.server.max_connections = 0);
        assert_invalid("engine.ping_interval_ms", |s| s.engine.ping_interval_ms = 0);
        assert_invalid("engine.ping_timeout_ms", |s| s.engine.ping_timeout_ms = 0);
        assert_invalid("engine.upgrade_timeout_ms", |s| {
            s.engine.upgrade_timeout_ms = 0
        });
        assert_invalid("engine.max_payload", |s| {
            s.engine.max_payload = MIN_PAYLOAD - 1
        });
        assert_invalid("engine.max_payload", |s| {
            s.engine.max_payload = MAX_PAYLOAD + 1
        });
        assert_invalid("engine.transports", |s| s.engine.transports.clear());
        assert_invalid("engine.transports", |s| {
            s.engine.transports = vec![Transport::Polling, Transport::Polling]
        });
        assert_invalid("socketio.connect_timeout_ms", |s| {
            s.socketio.connect_timeout_ms = 0
        });
        assert_invalid("socketio.ack_timeout_ms", |s| s.socketio.ack_timeout_ms = 0);
        assert_invalid("socketio.max_namespaces_per_connection", |s| {
            s.socketio.max_namespaces_per_connection = 0
        });
        assert_invalid("socketio.max_rooms_per_socket", |s| {
            s.socketio.max_rooms_per_socket = 0
        });
        assert_invalid("cors.allow_credentials", |s| {
            s.cors.allowed_origins = vec!["*".into()];
            s.cors.allow_credentials = true;
        });
        assert_invalid("cors.allowed_origins", |s| {
            s.cors.allowed_origins = vec!["*".into(), "https://a.example.com".into()]
        });
        assert_invalid("cors.allowed_origins", |s| {
            s.cors.allowed_origins = vec!["https://a.example.com/".into()]
        });
        assert_invalid("cors.allowed_origins", |s| {
            s.cors.allowed_origins = vec!["a.example.com".into()]
        });
        assert_invalid("log.modules.riptide::", |s| {
            s.log.modules.insert("riptide::".into(), LogLevel::Debug);
        });
        assert_invalid("adapter.url", |s| s.adapter.kind = AdapterKind::Redis);
        assert_invalid("adapter.prefix", |s| s.adapter.prefix = "a.b".into());
        assert_invalid("adapter.prefix", |s| s.adapter.prefix = String::new());
    }

    #[test]
    fn named_values_compare_with_their_names() {
        let settings = Settings::default();
        assert!(settings.engine.transports.iter().any(|t| t == "polling"));
        assert!(settings.engine.transports.iter().any(|t| t == "websocket"));
        assert!(settings.log.format == "term");
        assert_eq!(settings.adapter.kind.to_string(), "memory");
        assert_eq!("DEBUG".parse::<LogLevel>(), Ok(LogLevel::Debug));
        assert_eq!(LogLevel::NAMES.len(), 7);
    }

    #[test]
    fn valid_non_default_settings_pass() {
        let mut settings = Settings::default();
        settings.cors.allowed_origins = vec!["https://app.example.com:8443".into()];
        settings.cors.allow_credentials = true;
        settings.adapter.kind = AdapterKind::Redis;
        settings.adapter.url = "redis://127.0.0.1:6379".into();
        settings.server.path = "/".into();
        settings.engine.transports = vec![Transport::Websocket];
        settings.validate().unwrap();
    }

    #[test]
    fn load_validates() {
        let error = error_with(&[], &[("RIPTIDE__ENGINE__PING_TIMEOUT_MS", "0")]);
        assert_eq!(error, "engine.ping_timeout_ms: must be > 0");
    }

    #[test]
    fn shipped_environment_files_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        for environment in ["production", "test"] {
            if dir.join(format!("{environment}.toml")).exists() {
                load_from(&dir, Some(environment), vars(&[])).unwrap();
            }
        }
    }
}
