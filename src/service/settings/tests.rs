//! The settings as a whole: loading through every layer, the overrides,
//! the errors and validation.

use std::path::Path;

use super::env::strip_env_prefix;
use super::*;

/// A scratch directory removed on drop; std-only so the crate needs no
/// extra dev-dependency for it.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("riptide-config-test-{}-{n}", std::process::id()));
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
            ("RIPTIDE__API__ENABLED", "false"),
            ("RIPTIDE__ADAPTER__KIND", "nats"),
            ("RIPTIDE__ADAPTER__URL", "nats://127.0.0.1:4222"),
        ],
    )
    .unwrap();
    assert!(!settings.api.enabled);
    assert_eq!(settings.adapter.kind, AdapterKind::Nats);
    assert_eq!(settings.adapter.url, "nats://127.0.0.1:4222");
}

#[test]
fn the_parser_is_json_unless_set() {
    assert_eq!(Settings::default().socketio.parser, Parser::Json);
    let settings = load_with(&[], &[("RIPTIDE__SOCKETIO__PARSER", "msgpack")]).unwrap();
    assert_eq!(settings.socketio.parser, Parser::Msgpack);
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
        ("RIPTIDE__SOCKETIO__PARSER", "protobuf", "socketio.parser: "),
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
    assert_invalid("engine.per_message_deflate_threshold", |s| {
        s.engine.per_message_deflate_threshold = s.engine.max_payload + 1
    });
    assert_invalid("engine.http_compression_threshold", |s| {
        s.engine.http_compression_threshold = s.engine.max_payload + 1
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
    assert_invalid("socketio.broadcast_window_us", |s| {
        s.socketio.broadcast_window_us = super::socketio::MAX_BROADCAST_WINDOW_US + 1
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
    assert_invalid("recovery.max_disconnection_ms", |s| {
        s.recovery.max_disconnection_ms = 0
    });
    assert_invalid("recovery.stream_max_len", |s| s.recovery.stream_max_len = 0);
    assert_invalid("recovery.stream_max_age_ms", |s| {
        s.recovery.stream_max_age_ms = 0
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

#[test]
fn unknown_key_lists_the_section_keys_and_suggests_the_nearest() {
    let error = load_with(&[("development.toml", "[server]\nprot = 1\n")], &[]).unwrap_err();
    assert_eq!(
        error,
        ConfigError::UnknownField {
            section: "server".into(),
            field: "prot".into(),
            expected: ", expected one of `demo`, `drain_rate_per_s`, `host`, `max_connections`, \
                       `path`, `port`, `shutdown_timeout_ms`, `tls`, `trusted_proxies`, `workers` (did you mean `port`?)"
                .into(),
        }
    );
    assert_eq!(error.key(), None);
    let error = error_with(&[], &[("RIPTIDE__APP__MODES", "service")]);
    assert_eq!(
        error,
        "unknown field `modes` in section app, expected `mode` (did you mean `mode`?)"
    );
    let error = error_with(&[], &[("RIPTIDE__ADAPTER__URI", "nats://127.0.0.1:4222")]);
    assert_eq!(
        error,
        "unknown field `uri` in section adapter, expected one of `kind`, `prefix`, `tls_ca_file`, `url` \
         (did you mean `url`?)"
    );
    let error = error_with(&[("development.toml", "[server]\naddress = \"x\"\n")], &[]);
    assert!(
        error.starts_with(
            "unknown field `address` in section server, expected one of `demo`, `drain_rate_per_s`, `host`,"
        ),
        "{error}"
    );
    assert!(!error.contains("did you mean"), "{error}");
}

#[test]
fn unknown_section_lists_the_sections_and_suggests_the_nearest() {
    let error = load_with(&[("development.toml", "[servr]\nport = 1\n")], &[]).unwrap_err();
    assert_eq!(
        error,
        ConfigError::UnknownSection {
            section: "servr".into(),
            expected: ", expected one of `adapter`, `admin`, `api`, `app`, `auth`, `channels`, \
                       `cluster`, `cors`, `engine`, `history`, `limits`, `log`, `recovery`, `server`, \
                       `socketio` (did you mean `server`?)"
                .into(),
        }
    );
    let error = error_with(&[], &[("RIPTIDE__METRICS__PORT", "1")]);
    assert!(
        error.starts_with("unknown section `metrics`, expected one of"),
        "{error}"
    );
    assert!(!error.contains("did you mean"), "{error}");
}

#[test]
fn any_module_path_is_a_known_key_of_log_modules() {
    let settings = load_with(
        &[(
            "development.toml",
            "[log.modules]\n\"riptide::node::room\" = \"trace\"\n",
        )],
        &[],
    )
    .unwrap();
    assert_eq!(settings.log.modules["riptide::node::room"], LogLevel::Trace);
}

#[test]
fn recovery_is_off_by_default_with_the_reference_bounds() {
    let recovery = Settings::default().recovery;
    assert_eq!(
        recovery,
        RecoverySettings {
            enabled: false,
            max_disconnection_ms: 120_000,
            skip_middlewares: true,
            stream_max_len: 10_000,
            stream_max_age_ms: 120_000,
            stream_max_bytes: 64 << 20,
        }
    );
    assert_eq!(
        recovery.max_disconnection(),
        std::time::Duration::from_secs(120)
    );
    assert_eq!(
        recovery.stream_max_age(),
        std::time::Duration::from_secs(120)
    );
}

#[test]
fn env_turns_recovery_on_and_sets_its_bounds() {
    let settings = load_with(&[], &[("RIPTIDE__RECOVERY__ENABLED", "true")]).unwrap();
    assert!(settings.recovery.enabled);
    // The rest keeps its defaults.
    assert_eq!(
        RecoverySettings {
            enabled: false,
            ..settings.recovery.clone()
        },
        Settings::default().recovery
    );

    let settings = load_with(
        &[],
        &[
            ("RIPTIDE__RECOVERY__ENABLED", "true"),
            ("RIPTIDE__RECOVERY__MAX_DISCONNECTION_MS", "5000"),
            ("RIPTIDE__RECOVERY__SKIP_MIDDLEWARES", "false"),
            ("RIPTIDE__RECOVERY__STREAM_MAX_LEN", "50"),
            ("RIPTIDE__RECOVERY__STREAM_MAX_AGE_MS", "60000"),
            ("RIPTIDE__RECOVERY__STREAM_MAX_BYTES", "1000000"),
        ],
    )
    .unwrap();
    assert_eq!(
        settings.recovery,
        RecoverySettings {
            enabled: true,
            max_disconnection_ms: 5000,
            skip_middlewares: false,
            stream_max_len: 50,
            stream_max_age_ms: 60000,
            stream_max_bytes: 1_000_000,
        }
    );
}

#[test]
fn recovery_bounds_must_be_positive_even_when_it_is_off() {
    for (name, key) in [
        (
            "RIPTIDE__RECOVERY__MAX_DISCONNECTION_MS",
            "recovery.max_disconnection_ms",
        ),
        (
            "RIPTIDE__RECOVERY__STREAM_MAX_LEN",
            "recovery.stream_max_len",
        ),
        (
            "RIPTIDE__RECOVERY__STREAM_MAX_AGE_MS",
            "recovery.stream_max_age_ms",
        ),
        (
            "RIPTIDE__RECOVERY__STREAM_MAX_BYTES",
            "recovery.stream_max_bytes",
        ),
    ] {
        for enabled in ["true", "false"] {
            let error = error_with(&[], &[("RIPTIDE__RECOVERY__ENABLED", enabled), (name, "0")]);
            assert_eq!(error, format!("{key}: must be > 0"));
        }
        let error = error_with(&[], &[(name, "-1")]);
        assert!(error.starts_with(&format!("{key}: ")), "{error}");
    }
}

#[test]
fn recovery_with_a_cluster_adapter_is_accepted() {
    // The broker keeps its state (JetStream, Redis Streams).
    for (kind, url) in [
        ("nats", "nats://127.0.0.1:4222"),
        ("redis", "redis://127.0.0.1:6379"),
    ] {
        let settings = load_with(
            &[],
            &[
                ("RIPTIDE__RECOVERY__ENABLED", "true"),
                ("RIPTIDE__ADAPTER__KIND", kind),
                ("RIPTIDE__ADAPTER__URL", url),
            ],
        )
        .unwrap();
        assert!(settings.recovery.enabled);
    }
    // The adapter's own errors still name the adapter's key.
    assert_invalid("adapter.url", |s| {
        s.recovery.enabled = true;
        s.adapter.kind = AdapterKind::Redis;
    });
}

#[test]
fn valid_recovery_settings_pass() {
    // On, on the memory adapter.
    let mut settings = Settings::default();
    settings.recovery.enabled = true;
    settings.validate().unwrap();
    // A stream shorter-lived than the disconnection window is allowed: a
    // client away longer than the stream's age is simply not recovered.
    settings.recovery.stream_max_age_ms = 1000;
    settings.recovery.max_disconnection_ms = 60_000;
    settings.validate().unwrap();
    // Off, with a cluster adapter: nothing to refuse.
    let mut settings = Settings::default();
    settings.adapter.kind = AdapterKind::Nats;
    settings.adapter.url = "nats://127.0.0.1:4222".into();
    settings.validate().unwrap();
}

#[test]
fn unknown_recovery_key_is_named_with_the_nearest() {
    let error = error_with(&[], &[("RIPTIDE__RECOVERY__MAX_DISCONNECTION", "1")]);
    assert!(
        error.starts_with("unknown field `max_disconnection` in section recovery, expected one of"),
        "{error}"
    );
    assert!(
        error.contains("(did you mean `max_disconnection_ms`?)"),
        "{error}"
    );
    let error = error_with(&[("development.toml", "[recovery]\nenable = true\n")], &[]);
    assert!(error.contains("(did you mean `enabled`?)"), "{error}");
}

#[test]
fn cluster_forwarding_defaults_and_the_advertised_address() {
    let s = Settings::default();
    assert!(s.cluster.forward_polling);
    assert_eq!(s.cluster.advertise_url, "");
    let local: std::net::SocketAddr = "127.0.0.1:3001".parse().unwrap();
    assert_eq!(
        s.cluster.advertise(Some(local)).unwrap().as_deref(),
        Some("http://127.0.0.1:3001")
    );
    assert_eq!(s.cluster.advertise(None).unwrap(), None, "no address known");
    // Listening on every address: nobody can be told where to forward.
    let any: std::net::SocketAddr = "0.0.0.0:3001".parse().unwrap();
    let err = s.cluster.advertise(Some(any)).unwrap_err();
    assert_eq!(err.key(), Some("cluster.advertise_url"), "{err}");
    // Set explicitly (the trailing slash is not doubled later).
    let set = load_with(
        &[],
        &[("RIPTIDE__CLUSTER__ADVERTISE_URL", "http://10.1.2.3:3000/")],
    )
    .unwrap();
    assert_eq!(
        set.cluster.advertise(Some(any)).unwrap().as_deref(),
        Some("http://10.1.2.3:3000")
    );
}

#[test]
fn a_malformed_advertise_url_is_refused_naming_it() {
    for bad in [
        "10.1.2.3:3000",
        "http://",
        "http://h:1/path",
        "ftp://h:1",
        "https://h:1",
    ] {
        let err = load_with(&[], &[("RIPTIDE__CLUSTER__ADVERTISE_URL", bad)]).unwrap_err();
        assert_eq!(err.key(), Some("cluster.advertise_url"), "{bad}: {err}");
    }
}

/// Service mode with a secret and an API key, plus `more`.
fn service_with(more: &[(&'static str, &str)]) -> Result<Settings, ConfigError> {
    let mut env = vec![
        ("RIPTIDE__APP__MODE", "service"),
        (
            "RIPTIDE__AUTH__HMAC_SECRET",
            "0123456789abcdef0123456789abcdef",
        ),
        ("RIPTIDE__API__KEY", "0123456789abcdef"),
    ];
    for (k, v) in more {
        env.retain(|(key, _)| key != k);
        env.push((k, v));
    }
    load_with(&[], &env)
}

fn service_error_key(more: &[(&'static str, &str)]) -> String {
    let e = service_with(more).unwrap_err();
    e.key()
        .unwrap_or_else(|| panic!("no key in {e}"))
        .to_owned()
}

#[test]
fn service_mode_loads_with_a_secret_and_an_api_key() {
    let s = service_with(&[
        ("RIPTIDE__CHANNELS__PUBLIC", "news, alerts.*"),
        ("RIPTIDE__AUTH__ALGORITHMS", "hs256,HS512"),
    ])
    .unwrap();
    assert_eq!(s.app.mode, AppMode::Service);
    assert_eq!(s.channels.public, ["news", "alerts.*"]);
    assert_eq!(
        s.auth.accepted(),
        [JwtAlgorithm::Hs256, JwtAlgorithm::Hs512]
    );
    // The fixture mode needs none of it.
    assert_eq!(Settings::default().app.mode, AppMode::Fixture);
    assert!(Settings::default().validate().is_ok());
}

#[test]
fn service_mode_names_the_bad_key() {
    let empty = [("RIPTIDE__AUTH__HMAC_SECRET", "")];
    assert_eq!(service_error_key(&empty), "auth.hmac_secret");
    assert_eq!(
        service_error_key(&[("RIPTIDE__AUTH__HMAC_SECRET", "short")]),
        "auth.hmac_secret"
    );
    let e = service_with(&[("RIPTIDE__AUTH__ALGORITHMS", "HS999")]).unwrap_err();
    assert!(
        e.to_string().contains("HS999") && e.to_string().contains("auth.algorithms"),
        "{e}"
    );
    assert_eq!(
        service_error_key(&[("RIPTIDE__AUTH__ALGORITHMS", "RS256")]),
        "auth.algorithms",
        "RS256 without a public key file"
    );
    let dir = TempDir::new();
    let not_pem = dir.path().join("key.pem");
    std::fs::write(&not_pem, "not a key").unwrap();
    let path = not_pem.to_str().unwrap();
    assert_eq!(
        service_error_key(&[("RIPTIDE__AUTH__PUBLIC_KEY_FILE", path)]),
        "auth.public_key_file"
    );
    assert_eq!(
        service_error_key(&[("RIPTIDE__AUTH__PUBLIC_KEY_FILE", "/nonexistent/key.pem")]),
        "auth.public_key_file"
    );
    assert_eq!(service_error_key(&[("RIPTIDE__API__KEY", "")]), "api.key");
    assert_eq!(
        service_error_key(&[("RIPTIDE__API__KEY", "short")]),
        "api.key"
    );
    assert!(service_with(&[
        ("RIPTIDE__API__KEY", ""),
        ("RIPTIDE__API__ENABLED", "false")
    ])
    .is_ok());
    assert_eq!(
        service_error_key(&[("RIPTIDE__CHANNELS__PUBLIC", "a*b")]),
        "channels.public"
    );
    assert_eq!(
        service_error_key(&[("RIPTIDE__CHANNELS__CLIENT_PUBLISH", "user:*")]),
        "channels.client_publish"
    );
    assert_eq!(
        service_error_key(&[("RIPTIDE__HISTORY__MAX_PER_USER", "0")]),
        "history.max_per_user"
    );
    // Anonymous service: no key needed when auth is not required.
    assert!(service_with(&[
        ("RIPTIDE__AUTH__HMAC_SECRET", ""),
        ("RIPTIDE__AUTH__REQUIRED", "false")
    ])
    .is_ok());
}

#[test]
fn trusted_proxies_take_addresses_and_cidrs_and_name_a_bad_entry() {
    let s = load_with(
        &[],
        &[("RIPTIDE__SERVER__TRUSTED_PROXIES", "10.0.0.0/8, ::1")],
    )
    .unwrap();
    assert_eq!(s.server.trusted_proxies, vec!["10.0.0.0/8", "::1"]);
    let err = error_with(
        &[],
        &[("RIPTIDE__SERVER__TRUSTED_PROXIES", "10.0.0.1,10.0.0.0/40")],
    );
    assert!(
        err.starts_with("server.trusted_proxies: ") && err.contains("10.0.0.0/40"),
        "{err}"
    );
    assert_invalid("server.trusted_proxies", |s| {
        s.server.trusted_proxies = vec!["load-balancer".into()]
    });
}

#[test]
fn tls_needs_both_readable_files() {
    let key = |env: &[(&str, &str)]| load_with(&[], env).unwrap_err().key().map(str::to_owned);
    assert_eq!(
        key(&[("RIPTIDE__SERVER__TLS__CERT_FILE", "/nonexistent/cert.pem")]).as_deref(),
        Some("server.tls.key_file"),
        "a certificate without its key"
    );
    assert_eq!(
        key(&[
            ("RIPTIDE__SERVER__TLS__CERT_FILE", "/nonexistent/cert.pem"),
            ("RIPTIDE__SERVER__TLS__KEY_FILE", "/nonexistent/key.pem"),
        ])
        .as_deref(),
        Some("server.tls.cert_file")
    );
    // With good files and a cluster adapter, forwarding must be off: the
    // interop TLS test (tests/interop/test/tls.test.mjs) checks that with
    // real files.
}

#[test]
fn a_broker_ca_file_must_hold_certificates() {
    let key = |v: &str| {
        load_with(&[], &[("RIPTIDE__ADAPTER__TLS_CA_FILE", v)])
            .unwrap_err()
            .key()
            .map(str::to_owned)
    };
    assert_eq!(
        key("/nonexistent/ca.pem").as_deref(),
        Some("adapter.tls_ca_file")
    );
    let dir = TempDir::new();
    let junk = dir.path().join("ca.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    assert_eq!(
        key(junk.to_str().unwrap()).as_deref(),
        Some("adapter.tls_ca_file")
    );
}

#[test]
fn allow_eio3_is_off_by_default_and_a_bad_value_names_the_key() {
    assert!(!Settings::default().engine.allow_eio3);
    let settings = load_with(&[], &[("RIPTIDE__ENGINE__ALLOW_EIO3", "true")]).unwrap();
    assert!(settings.engine.allow_eio3);
    let error = error_with(&[], &[("RIPTIDE__ENGINE__ALLOW_EIO3", "maybe")]);
    assert!(error.starts_with("engine.allow_eio3: "), "{error}");
}
