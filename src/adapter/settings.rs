//! The adapter's own settings (`[adapter]` in `config/default.toml`, where
//! every default is written and explained).

use serde::Deserialize;

/// Cluster adapter implementation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum AdapterKind {
    /// Single node, no broker.
    #[default]
    Memory,
    Nats,
    Redis,
}

named_enum!(AdapterKind, "adapter kind", {
    Memory => "memory",
    Nats => "nats",
    Redis => "redis",
});

/// `[adapter]`: how nodes of a cluster reach each other.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterSettings {
    pub kind: AdapterKind,
    /// Broker URL; required unless `kind` is `memory`.
    pub url: String,
    /// Prefix of every subject / channel, so several clusters can share a broker.
    pub prefix: String,
    /// PEM certificates to trust for a TLS broker connection (`tls://` or
    /// `rediss://`) instead of the system's roots; empty: the system's.
    pub tls_ca_file: String,
}

impl AdapterSettings {
    /// Checks what the types cannot express; the error names the key.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if self.kind != AdapterKind::Memory && self.url.trim().is_empty() {
            return Err(InvalidSetting::new(
                "adapter.url",
                format!("required when adapter.kind = {:?}", self.kind.as_str()),
            ));
        }
        // The prefix becomes a NATS subject token and a Redis key prefix: `.`, `*`,
        // `>` and whitespace would change what a NATS subscription matches.
        let well_formed = !self.prefix.is_empty()
            && self
                .prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !well_formed {
            return Err(InvalidSetting::new(
                "adapter.prefix",
                format!(
                    "{:?} must be non-empty ASCII letters, digits, '_' or '-'",
                    self.prefix
                ),
            ));
        }
        if !self.tls_ca_file.is_empty() {
            ca_certificates(&self.tls_ca_file)
                .map_err(|reason| InvalidSetting::new("adapter.tls_ca_file", reason))?;
        }
        Ok(())
    }

    /// `tls_ca_file`, when set.
    pub(crate) fn ca_file(&self) -> Option<&std::path::Path> {
        (!self.tls_ca_file.is_empty()).then(|| std::path::Path::new(&self.tls_ca_file))
    }
}

/// The PEM file's bytes, once it is known to hold at least one certificate.
pub(crate) fn ca_certificates(path: &str) -> Result<Vec<u8>, String> {
    use rustls_pki_types::pem::PemObject;
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{path}: not PEM certificates ({e})"))?;
    if certs.is_empty() {
        return Err(format!("{path}: holds no PEM certificate"));
    }
    Ok(bytes)
}

/// A setting out of its range: `key` names it, `reason` says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSetting {
    pub key: &'static str,
    pub reason: String,
}

impl InvalidSetting {
    fn new(key: &'static str, reason: impl Into<String>) -> InvalidSetting {
        InvalidSetting {
            key,
            reason: reason.into(),
        }
    }
}
