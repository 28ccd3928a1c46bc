//! JWT verification for service mode: the token's signature, algorithm,
//! `exp`/`nbf` (to the millisecond, with `auth.leeway_ms`), `iss`/`aud`, and
//! the claims SERVICE.md gives meaning to (`sub`, `roles`, `channels`).

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use crate::service::settings::{AuthSettings, ConfigError, JwtAlgorithm};

/// Why a token was refused; `as_str` is the `data.reason` of the
/// CONNECT_ERROR (and the `error` of an `auth:refresh` ack).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Invalid,
    Expired,
    Revoked,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Missing => "missing token",
            Refusal::Invalid => "invalid token",
            Refusal::Expired => "token expired",
            Refusal::Revoked => "token revoked",
        }
    }

    /// The `reason` label of `riptide_auth_refusals_total`.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Missing => "missing_token",
            Refusal::Invalid => "invalid_token",
            Refusal::Expired => "token_expired",
            Refusal::Revoked => "token_revoked",
        }
    }
}

/// Who a verified token says the socket is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub sub: String,
    pub roles: Vec<String>,
    /// Channel patterns the token grants.
    pub channels: Vec<String>,
    /// Unix seconds; `None`: the token does not expire.
    pub exp: Option<u64>,
    /// Unix seconds; `None`: the token does not say when it was issued.
    pub iat: Option<u64>,
}

/// The longest `sub` accepted: it names a room (`user:<sub>`) and a broker
/// subject token.
pub const MAX_SUB_BYTES: usize = 256;

#[derive(Deserialize)]
struct Claims {
    sub: Option<Value>,
    exp: Option<Value>,
    nbf: Option<Value>,
    iat: Option<Value>,
    roles: Option<Value>,
    channels: Option<Value>,
}

/// Verifies tokens against the configured keys. Built once at start.
pub struct Verifier {
    /// Per accepted algorithm: its key, and a validation that accepts it
    /// alone (jsonwebtoken refuses a key whose family is not that of every
    /// algorithm a validation lists).
    keys: Vec<(Algorithm, DecodingKey, Validation)>,
    leeway_ms: u64,
    max_token_bytes: usize,
    max_claim_items: usize,
}

fn algorithm(a: JwtAlgorithm) -> Algorithm {
    match a {
        JwtAlgorithm::Hs256 => Algorithm::HS256,
        JwtAlgorithm::Hs384 => Algorithm::HS384,
        JwtAlgorithm::Hs512 => Algorithm::HS512,
        JwtAlgorithm::Rs256 => Algorithm::RS256,
        JwtAlgorithm::Es256 => Algorithm::ES256,
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A NumericDate claim (RFC 7519: seconds, possibly fractional) in ms.
fn date_ms(v: &Value) -> Option<u64> {
    let secs = v.as_f64()?;
    (secs.is_finite() && secs >= 0.0).then_some((secs * 1000.0) as u64)
}

fn strings(v: Option<&Value>, max: usize) -> Result<Vec<String>, Refusal> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) if items.len() <= max => items
            .iter()
            .map(|i| {
                i.as_str()
                    .filter(|s| !s.is_empty() && s.len() <= MAX_SUB_BYTES)
                    .map(str::to_owned)
                    .ok_or(Refusal::Invalid)
            })
            .collect(),
        Some(_) => Err(Refusal::Invalid),
    }
}

impl Verifier {
    /// The verifier `[auth]` describes (already validated by
    /// `Settings::validate`; a key that fails to load here is reported the
    /// same way).
    pub fn new(s: &AuthSettings) -> Result<Verifier, ConfigError> {
        let mut keys = Vec::new();
        let pem = if s.public_key_file.is_empty() {
            None
        } else {
            Some(std::fs::read(&s.public_key_file).map_err(|e| {
                ConfigError::invalid("auth.public_key_file", format!("cannot read it: {e}"))
            })?)
        };
        for a in s.accepted() {
            let key = if a.is_hmac() {
                DecodingKey::from_secret(s.hmac_secret.as_bytes())
                    .map_err(|e| ConfigError::invalid("auth.hmac_secret", e.to_string()))?
            } else {
                let pem = pem.as_deref().unwrap_or_default();
                let loaded = if a == JwtAlgorithm::Rs256 {
                    DecodingKey::from_rsa_pem(pem)
                } else {
                    DecodingKey::from_ec_pem(pem)
                };
                loaded.map_err(|e| {
                    ConfigError::invalid("auth.public_key_file", format!("not a {a} key: {e}"))
                })?
            };
            keys.push((algorithm(a), key));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        // exp and nbf are checked below, to the millisecond.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        let mut required = vec!["sub"];
        if !s.issuer.is_empty() {
            validation.set_issuer(&[&s.issuer]);
            required.push("iss");
        }
        if s.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&[&s.audience]);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        let keys = keys
            .into_iter()
            .map(|(alg, key)| {
                let mut v = validation.clone();
                v.algorithms = vec![alg];
                (alg, key, v)
            })
            .collect();
        Ok(Verifier {
            keys,
            leeway_ms: s.leeway_ms,
            max_token_bytes: s.max_token_bytes,
            max_claim_items: s.max_claim_items,
        })
    }

    /// Verify `token` at `now_ms`: who it names, or why it is refused.
    pub fn verify(&self, token: &str, now_ms: u64) -> Result<Identity, Refusal> {
        if token.is_empty() {
            return Err(Refusal::Missing);
        }
        if token.len() > self.max_token_bytes || token.bytes().filter(|b| *b == b'.').count() != 2 {
            return Err(Refusal::Invalid);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::Invalid)?;
        // `alg: none` never parses into an `Algorithm`, so it fails above.
        let (_, key, validation) = self
            .keys
            .iter()
            .find(|(a, _, _)| *a == header.alg)
            .ok_or(Refusal::Invalid)?;
        let data =
            jsonwebtoken::decode::<Claims>(token, key, validation).map_err(|_| Refusal::Invalid)?;
        let claims = data.claims;
        let sub = claims
            .sub
            .as_ref()
            .and_then(Value::as_str)
            .filter(|s| {
                !s.is_empty() && s.len() <= MAX_SUB_BYTES && !s.chars().any(char::is_control)
            })
            .ok_or(Refusal::Invalid)?
            .to_owned();
        let date = |v: &Option<Value>| match v {
            None => Ok(None),
            Some(v) => date_ms(v).map(Some).ok_or(Refusal::Invalid),
        };
        let (exp, nbf, iat) = (date(&claims.exp)?, date(&claims.nbf)?, date(&claims.iat)?);
        if nbf.is_some_and(|nbf| nbf > now_ms + self.leeway_ms) {
            return Err(Refusal::Invalid);
        }
        if exp.is_some_and(|exp| exp + self.leeway_ms <= now_ms) {
            return Err(Refusal::Expired);
        }
        let roles = strings(claims.roles.as_ref(), self.max_claim_items)?;
        let channels = strings(claims.channels.as_ref(), self.max_claim_items)?;
        if roles.len() + channels.len() > self.max_claim_items {
            return Err(Refusal::Invalid);
        }
        Ok(Identity {
            sub,
            roles: dedup(roles),
            channels,
            exp: exp.map(|ms| ms / 1000),
            iat: iat.map(|ms| ms / 1000),
        })
    }
}

fn dedup(items: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    items
        .into_iter()
        .filter(|i| seen.insert(i.clone()))
        .collect()
}

/// The token of a CONNECT: `auth.token`, else the handshake's
/// `Authorization: Bearer` header.
pub fn token_of<'a>(auth: &'a Value, headers: &'a crate::engineio::Headers) -> Option<&'a str> {
    if let Some(t) = auth.get("token").and_then(Value::as_str) {
        return Some(t);
    }
    let value = headers.get(actix_web::http::header::AUTHORIZATION)?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn settings() -> AuthSettings {
        let mut s = crate::service::settings::Settings::default().auth;
        s.hmac_secret = SECRET.into();
        s
    }

    fn token(alg: Algorithm, claims: Value) -> String {
        encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    const NOW: u64 = 1_800_000_000_000;

    #[test]
    fn accepts_a_valid_token_and_reads_its_claims() {
        let v = Verifier::new(&settings()).unwrap();
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let t = token(
                alg,
                json!({"sub": "42", "exp": NOW / 1000 + 60, "iat": NOW / 1000,
                    "roles": ["admin", "admin"], "channels": ["orders.42.*"]}),
            );
            let id = v.verify(&t, NOW).unwrap();
            assert_eq!(id.sub, "42");
            assert_eq!(id.roles, ["admin"]);
            assert_eq!(id.channels, ["orders.42.*"]);
            assert_eq!(id.exp, Some(NOW / 1000 + 60));
        }
    }

    #[test]
    fn refuses_with_the_contract_reasons() {
        let v = Verifier::new(&settings()).unwrap();
        let t = |c: Value| token(Algorithm::HS256, c);
        assert_eq!(v.verify("", NOW), Err(Refusal::Missing));
        assert_eq!(v.verify("not a jwt", NOW), Err(Refusal::Invalid));
        assert_eq!(v.verify("a.b.c", NOW), Err(Refusal::Invalid));
        assert_eq!(
            v.verify(&t(json!({"exp": NOW / 1000 + 60})), NOW),
            Err(Refusal::Invalid)
        );
        assert_eq!(
            v.verify(&t(json!({"sub": "1", "exp": NOW / 1000})), NOW),
            Err(Refusal::Expired),
            "expired at its exp second exactly"
        );
        assert_eq!(
            v.verify(&t(json!({"sub": "1", "nbf": NOW / 1000 + 5})), NOW),
            Err(Refusal::Invalid),
            "not yet valid"
        );
        assert_eq!(v.verify(&t(json!({"sub": 7})), NOW), Err(Refusal::Invalid));
        assert_eq!(
            v.verify(&t(json!({"sub": "1", "roles": "admin"})), NOW),
            Err(Refusal::Invalid)
        );
        let other = encode(
            &Header::new(Algorithm::HS256),
            &json!({"sub": "1"}),
            &EncodingKey::from_secret(b"another secret of at least 32 bytes!!").unwrap(),
        )
        .unwrap();
        assert_eq!(v.verify(&other, NOW), Err(Refusal::Invalid));
        // alg: none, unsigned.
        let none = format!(
            "{}.{}.",
            base64_url(br#"{"alg":"none","typ":"JWT"}"#),
            base64_url(br#"{"sub":"1"}"#)
        );
        assert_eq!(v.verify(&none, NOW), Err(Refusal::Invalid));
        let many: Vec<String> = (0..300).map(|i| format!("c{i}")).collect();
        let mut s = settings();
        s.max_token_bytes = 1 << 20;
        let v = Verifier::new(&s).unwrap();
        assert_eq!(
            v.verify(&t(json!({"sub": "1", "channels": many})), NOW),
            Err(Refusal::Invalid),
            "more claim items than auth.max_claim_items"
        );
    }

    #[test]
    fn leeway_issuer_and_audience() {
        let mut s = settings();
        s.leeway_ms = 2000;
        s.issuer = "https://id.example".into();
        s.audience = "riptide".into();
        let v = Verifier::new(&s).unwrap();
        let t = |c: Value| token(Algorithm::HS256, c);
        let good = json!({"sub": "1", "iss": "https://id.example", "aud": ["x", "riptide"],
            "exp": NOW / 1000 - 1});
        assert!(v.verify(&t(good), NOW).is_ok(), "within the leeway");
        assert_eq!(
            v.verify(&t(json!({"sub": "1", "aud": "riptide"})), NOW),
            Err(Refusal::Invalid),
            "no iss"
        );
        assert_eq!(
            v.verify(
                &t(json!({"sub": "1", "iss": "https://id.example", "aud": "other"})),
                NOW
            ),
            Err(Refusal::Invalid)
        );
        assert_eq!(
            v.verify(&t(json!({"sub": "1", "iss": "https://id.example"})), NOW),
            Err(Refusal::Invalid),
            "no aud"
        );
    }

    fn base64_url(b: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    #[test]
    fn the_token_comes_from_auth_or_the_bearer_header() {
        use crate::engineio::Headers;
        use actix_web::http::header::{HeaderMap, HeaderValue, AUTHORIZATION};
        let mut map = HeaderMap::new();
        let headers = |m: &HeaderMap| Headers::from_map(m);
        assert_eq!(token_of(&json!({}), &headers(&map)), None);
        map.insert(AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        let h = headers(&map);
        assert_eq!(token_of(&json!({}), &h), Some("abc"));
        assert_eq!(token_of(&json!({"token": "xyz"}), &h), Some("xyz"));
        map.insert(AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(token_of(&json!({}), &headers(&map)), None);
    }
}
