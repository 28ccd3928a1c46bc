//! `[auth]`: service mode's authentication (JWT at the handshake).

use std::time::Duration;

use serde::Deserialize;

use super::{positive, ConfigError};

/// A JWT signature algorithm service mode verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub enum JwtAlgorithm {
    Hs256,
    Hs384,
    Hs512,
    Rs256,
    Es256,
}

named_enum!(JwtAlgorithm, "JWT algorithm", {
    Hs256 => "HS256",
    Hs384 => "HS384",
    Hs512 => "HS512",
    Rs256 => "RS256",
    Es256 => "ES256",
});

impl JwtAlgorithm {
    /// Verified with `auth.hmac_secret` (else with `auth.public_key_file`).
    pub fn is_hmac(self) -> bool {
        matches!(self, Self::Hs256 | Self::Hs384 | Self::Hs512)
    }
}

/// The shortest `auth.hmac_secret` accepted: RFC 7518 §3.2 asks for a key
/// at least as long as the hash (256 bits for HS256); a short secret can be
/// brute-forced offline from one token.
pub const MIN_HMAC_SECRET: usize = 32;

/// `[auth]`. Read in service mode only (`app.mode = "service"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// A CONNECT without a valid token is refused.
    pub required: bool,
    /// The HS256/384/512 secret.
    pub hmac_secret: String,
    /// PEM public key (RSA for RS256, P-256 for ES256).
    pub public_key_file: String,
    /// Accepted algorithms; empty = every one the configured keys verify.
    pub algorithms: Vec<JwtAlgorithm>,
    /// Required `iss` when not empty.
    pub issuer: String,
    /// Required `aud` (one of the token's) when not empty.
    pub audience: String,
    pub leeway_ms: u64,
    pub refresh_ahead_ms: u64,
    pub revocation_ttl_ms: u64,
    pub max_token_bytes: usize,
    pub max_claim_items: usize,
}

impl AuthSettings {
    pub fn leeway(&self) -> Duration {
        Duration::from_millis(self.leeway_ms)
    }

    pub fn refresh_ahead(&self) -> Duration {
        Duration::from_millis(self.refresh_ahead_ms)
    }

    pub fn revocation_ttl(&self) -> Duration {
        Duration::from_millis(self.revocation_ttl_ms)
    }

    /// The algorithms accepted: `algorithms`, or every one a configured key
    /// verifies.
    pub fn accepted(&self) -> Vec<JwtAlgorithm> {
        if !self.algorithms.is_empty() {
            return self.algorithms.clone();
        }
        let mut all = Vec::new();
        if !self.hmac_secret.is_empty() {
            all.extend([
                JwtAlgorithm::Hs256,
                JwtAlgorithm::Hs384,
                JwtAlgorithm::Hs512,
            ]);
        }
        if let Ok(pem) = std::fs::read(&self.public_key_file) {
            match PublicKind::of(&pem) {
                Some(PublicKind::Rsa) => all.push(JwtAlgorithm::Rs256),
                Some(PublicKind::Ec) => all.push(JwtAlgorithm::Es256),
                None => {}
            }
        }
        all
    }

    /// Bounds always; the keys only in service mode (`service`), where they
    /// are used: an empty secret while `required`, a key file that is not a
    /// PEM public key, an algorithm without its key.
    pub(super) fn validate(&self, service: bool) -> Result<(), ConfigError> {
        positive("auth.max_token_bytes", self.max_token_bytes as u64)?;
        positive("auth.max_claim_items", self.max_claim_items as u64)?;
        positive("auth.revocation_ttl_ms", self.revocation_ttl_ms)?;
        if !service {
            return Ok(());
        }
        if !self.hmac_secret.is_empty() && self.hmac_secret.len() < MIN_HMAC_SECRET {
            return Err(ConfigError::invalid(
                "auth.hmac_secret",
                format!(
                    "is {} bytes; at least {MIN_HMAC_SECRET} are needed (RFC 7518: as long as the hash), e.g. `openssl rand -hex 32`",
                    self.hmac_secret.len()
                ),
            ));
        }
        let public = if self.public_key_file.is_empty() {
            None
        } else {
            let pem = std::fs::read(&self.public_key_file).map_err(|e| {
                ConfigError::invalid(
                    "auth.public_key_file",
                    format!("cannot read {:?}: {e}", self.public_key_file),
                )
            })?;
            Some(PublicKind::of(&pem).ok_or_else(|| {
                ConfigError::invalid(
                    "auth.public_key_file",
                    format!(
                        "{:?} is not a PEM RSA or P-256 (EC) public key",
                        self.public_key_file
                    ),
                )
            })?)
        };
        for alg in &self.algorithms {
            let missing = if alg.is_hmac() {
                self.hmac_secret.is_empty().then_some("auth.hmac_secret")
            } else {
                let wanted = if *alg == JwtAlgorithm::Rs256 {
                    PublicKind::Rsa
                } else {
                    PublicKind::Ec
                };
                (public != Some(wanted)).then_some("auth.public_key_file")
            };
            if let Some(key) = missing {
                return Err(ConfigError::invalid(
                    "auth.algorithms",
                    format!("{alg} needs {key} (with a key of its kind)"),
                ));
            }
        }
        if self.required && self.hmac_secret.is_empty() && public.is_none() {
            return Err(ConfigError::invalid(
                "auth.hmac_secret",
                "is empty and auth.public_key_file is not set, while auth.required is true: no token could be verified",
            ));
        }
        if self.required && self.accepted().is_empty() {
            return Err(ConfigError::invalid("auth.algorithms", "accepts nothing"));
        }
        Ok(())
    }
}

/// The kind of a PEM public key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicKind {
    Rsa,
    Ec,
}

impl PublicKind {
    /// The kind of the public key in `pem`, if it is one jsonwebtoken can
    /// load (RSA for RS256, EC for ES256).
    pub fn of(pem: &[u8]) -> Option<PublicKind> {
        if jsonwebtoken::DecodingKey::from_ec_pem(pem).is_ok() {
            Some(PublicKind::Ec)
        } else if jsonwebtoken::DecodingKey::from_rsa_pem(pem).is_ok() {
            Some(PublicKind::Rsa)
        } else {
            None
        }
    }
}
