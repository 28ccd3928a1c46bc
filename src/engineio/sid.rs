//! Session and socket identifiers.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use rand::RngCore;

/// A random, URL-safe identifier (120 bits, 20 characters), shared cheaply.
///
/// 120 bits matches the reference server's `base64id`: long enough that a
/// guessed sid never lands on a live session.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sid(Arc<str>);

impl Sid {
    pub fn random() -> Sid {
        let mut raw = [0u8; 15];
        rand::rng().fill_bytes(&mut raw);
        Sid(base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(raw)
            .into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `s` has the shape of an id from [`Sid::random`] (20
    /// URL-safe base64 characters): a room name that could be a socket id.
    pub fn could_be(s: &str) -> bool {
        s.len() == 20
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    pub fn as_arc(&self) -> &Arc<str> {
        &self.0
    }
}

impl From<&str> for Sid {
    fn from(s: &str) -> Sid {
        Sid(s.into())
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sid({})", self.0)
    }
}

impl std::borrow::Borrow<str> for Sid {
    fn borrow(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_sids_are_url_safe_and_distinct() {
        let a = Sid::random();
        let b = Sid::random();
        assert_eq!(a.as_str().len(), 20);
        assert_ne!(a, b);
        assert!(a
            .as_str()
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert!(Sid::could_be(a.as_str()));
        assert!(!Sid::could_be("lobby"));
        assert!(!Sid::could_be("aaaaaaaaaaaaaaaaaaa/"));
    }
}
