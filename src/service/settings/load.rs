//! Loading: the compiled-in defaults, the config directory's files and the
//! `RIPTIDE__…` variables layered in that order, deserialized into
//! [`Settings`] and validated.

use std::ffi::OsString;
use std::path::Path;

use super::env::{strip_env_prefix, EnvOverride, EnvSource};
use super::error::{from_deserialize, translate};
use super::{ConfigError, Settings};

/// Environment variable naming the environment file to layer on the defaults.
pub const ENVIRONMENT_VAR: &str = "RIPTIDE_ENV";
/// Environment used when `RIPTIDE_ENV` is unset.
pub const DEFAULT_ENVIRONMENT: &str = "development";

/// `config/default.toml`, compiled in: the one place every default is
/// written (with its reason). A `default.toml` in the config directory may
/// override it; every other file and variable overrides both.
pub const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

pub(super) fn embedded_defaults() -> config::File<config::FileSourceString, config::FileFormat> {
    config::File::from_str(DEFAULT_TOML, config::FileFormat::Toml)
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
    let merged = config::Config::builder()
        .add_source(embedded_defaults())
        .add_source(toml("default.toml".to_owned(), false))
        .add_source(toml(format!("{environment}.toml"), false))
        .add_source(EnvSource(overrides))
        .build()
        .map_err(translate)?;
    // Through serde_path_to_error, so an error comes with the path of the key
    // it is about, an unknown key's included.
    let settings: Settings = serde_path_to_error::deserialize(merged).map_err(from_deserialize)?;
    settings.validate()?;
    Ok(settings)
}
