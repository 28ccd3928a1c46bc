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
//! names it instead of a silent fallback to the default; the error lists the
//! section's keys and suggests the nearest one. Loading ends with
//! [`Settings::validate`], so a `Settings` returned by [`load()`] is usable as is.
//!
//! `Settings::default()` is `config/default.toml` as compiled in, so library
//! users who build `Settings` in code get the same defaults as the binary;
//! no default is written anywhere else.
//!
//! The files, one concept each:
//!
//! - this one: [`Settings`], its `Default` and [`Settings::validate`], which
//!   runs each section's own checks;
//! - one per section (`server`, `engine`, `socketio`, `recovery`, `limits`,
//!   `cors`, `log`, `cluster`, `app`, and service mode's `auth`,
//!   `channels`, `api`, `history`, and the admin UI's `admin`): its struct, its named values and its checks;
//!   `[adapter]` is the adapter layer's own ([`AdapterSettings`]);
//! - `load`: [`load()`] and [`load_from`], the layers in order, the compiled-in
//!   defaults;
//! - `env`: the `RIPTIDE__…` variables as a `config` source (hand-written; its
//!   module doc says why);
//! - `error`: [`ConfigError`] and the translation of `config`'s and serde's
//!   errors into it;
//! - `keys`: the keys `config/default.toml` defines, which tell an unknown key
//!   from a known one and which keys were meant.

use serde::Deserialize;

mod admin;
mod api;
mod app;
mod auth;
mod channels;
mod cluster;
mod cors;
mod engine;
mod env;
mod error;
mod history;
mod keys;
mod limits;
mod load;
mod log;
mod recovery;
mod server;
mod socketio;
#[cfg(test)]
mod tests;

pub use self::admin::{AdminMode, AdminSettings};
pub use self::api::{ApiSettings, MIN_API_KEY};
pub use self::app::{AppMode, AppSettings};
pub use self::auth::{AuthSettings, JwtAlgorithm, PublicKind, MIN_HMAC_SECRET};
pub use self::channels::{check_pattern, ChannelSettings};
pub use self::cluster::ClusterSettings;
pub use self::cors::CorsSettings;
pub use self::engine::{EngineSettings, Transport, MAX_PAYLOAD, MIN_PAYLOAD};
pub use self::env::{ENV_PREFIX, ENV_SEPARATOR};
pub use self::error::ConfigError;
pub use self::history::HistorySettings;
pub use self::limits::LimitsSettings;
pub use self::load::{load, load_from, DEFAULT_ENVIRONMENT, DEFAULT_TOML, ENVIRONMENT_VAR};
pub use self::log::{LogFormat, LogLevel, LogSettings};
pub use self::recovery::RecoverySettings;
pub use self::server::{ServerSettings, MAX_WORKERS};
pub use self::socketio::{Parser, SocketIoSettings};
pub use crate::adapter::{AdapterKind, AdapterSettings};

/// The whole configuration. See `config/default.toml` for every default and why.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub engine: EngineSettings,
    pub socketio: SocketIoSettings,
    pub recovery: RecoverySettings,
    pub limits: LimitsSettings,
    pub cors: CorsSettings,
    pub log: LogSettings,
    pub adapter: AdapterSettings,
    pub cluster: ClusterSettings,
    pub app: AppSettings,
    pub auth: AuthSettings,
    pub channels: ChannelSettings,
    pub api: ApiSettings,
    pub history: HistorySettings,
    pub admin: AdminSettings,
}

impl Default for Settings {
    /// `config/default.toml` as compiled in.
    fn default() -> Settings {
        config::Config::builder()
            .add_source(load::embedded_defaults())
            .build()
            .and_then(config::Config::try_deserialize)
            .expect("config/default.toml deserializes into Settings (a unit test checks it)")
    }
}

impl Settings {
    /// Checks the relations and ranges the types cannot express. The error
    /// names the first offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.engine.validate()?;
        self.socketio.validate()?;
        self.recovery.validate()?;
        self.limits.validate()?;
        self.cors.validate()?;
        self.log.validate()?;
        self.adapter
            .validate()
            .map_err(|e| ConfigError::invalid(e.key, e.reason))?;
        self.cluster.validate()?;
        if self.server.tls.enabled()
            && self.cluster.forward_polling
            && self.adapter.kind != AdapterKind::Memory
        {
            // The nodes forward to each other over plain HTTP.
            return Err(ConfigError::invalid(
                "cluster.forward_polling",
                "nodes forward each other's requests over plain HTTP, which a server.tls \
                 listener does not take: set it to false (and pin sessions at the load \
                 balancer), or terminate TLS at the load balancer",
            ));
        }
        let service = self.app.mode == AppMode::Service;
        self.auth.validate(service)?;
        self.channels.validate()?;
        self.api.validate(service)?;
        self.history.validate()?;
        self.admin.validate()
    }
}

/// `key` must be > 0 (the sections' checks share it).
fn positive(key: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::invalid(key, "must be > 0"));
    }
    Ok(())
}
