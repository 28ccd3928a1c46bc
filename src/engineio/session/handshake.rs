//! What the transport knows about a client when its session opens.

use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::engineio::packet::Protocol;
use crate::engineio::sid::Sid;

/// What the transport layer knows about the client at handshake time.
#[derive(Debug, Clone)]
pub struct Handshake {
    pub sid: Sid,
    pub headers: Headers,
    /// The raw query string of the handshake request.
    pub query: String,
    /// The TCP peer: behind a proxy, the proxy.
    pub remote_addr: Option<SocketAddr>,
    /// The client's address as the node counts it (the per-IP limits): the
    /// peer's, or a trusted proxy's forwarding header's
    /// (`server.trusted_proxies`, [`crate::engineio::proxy`]).
    pub client_ip: Option<IpAddr>,
    pub issued: SystemTime,
    pub transport: &'static str,
    /// The Engine.IO revision the client speaks: v3 for Socket.IO v2
    /// clients (`engine.allow_eio3`), v4 otherwise.
    pub protocol: Protocol,
}

impl Handshake {
    /// One query parameter of the handshake request, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        url_query_pairs(&self.query)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// The handshake request's headers, copied compactly, in request order.
///
/// A session keeps them for its whole life (`Socket::handshake()`). A clone
/// of actix-web's `HeaderMap` keeps its hash table, sized for a large
/// request, and values that point into the request's read buffer: 6.7 kB
/// per idle connection, a quarter of it (docs/decisions.md, "idle
/// memory"). Here: one slice of exactly the headers sent, each value its
/// own copy.
#[derive(Debug, Clone, Default)]
pub struct Headers(Box<[(HeaderName, HeaderValue)]>);

impl Headers {
    pub fn from_map(map: &HeaderMap) -> Headers {
        Headers(
            map.iter()
                .map(|(name, value)| {
                    // Standard names are constants; others, and every value,
                    // are copied out of the request's buffer.
                    let name =
                        HeaderName::from_bytes(name.as_str().as_bytes()).unwrap_or(name.clone());
                    let mut copy =
                        HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
                    copy.set_sensitive(value.is_sensitive());
                    (name, copy)
                })
                .collect(),
        )
    }

    /// The first value of header `name` (case-insensitive).
    pub fn get(&self, name: impl AsRef<str>) -> Option<&HeaderValue> {
        self.get_all(name).next()
    }

    /// Every value of header `name` (case-insensitive), in request order.
    pub fn get_all(&self, name: impl AsRef<str>) -> impl Iterator<Item = &HeaderValue> {
        // Header names are stored lower-case.
        self.0
            .iter()
            .filter(move |(n, _)| n.as_str().eq_ignore_ascii_case(name.as_ref()))
            .map(|(_, v)| v)
    }

    pub fn contains_key(&self, name: impl AsRef<str>) -> bool {
        self.get(name).is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.0.iter().map(|(n, v)| (n, v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

pub(crate) fn url_query_pairs(q: &str) -> impl Iterator<Item = (String, String)> + '_ {
    q.split('&').filter(|s| !s.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k), percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_copied_and_found_case_insensitively() {
        let mut map = HeaderMap::new();
        map.append(
            actix_web::http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer t"),
        );
        map.append(
            HeaderName::from_static("x-tag"),
            HeaderValue::from_static("a"),
        );
        map.append(
            HeaderName::from_static("x-tag"),
            HeaderValue::from_static("b"),
        );
        let h = Headers::from_map(&map);
        assert_eq!(h.len(), 3);
        assert_eq!(h.get("Authorization").unwrap(), "Bearer t");
        assert_eq!(
            h.get(actix_web::http::header::AUTHORIZATION).unwrap(),
            "Bearer t"
        );
        let tags: Vec<_> = h.get_all("X-Tag").map(|v| v.to_str().unwrap()).collect();
        assert_eq!(tags, ["a", "b"]);
        assert!(!h.contains_key("cookie"));
    }

    #[test]
    fn query_params_are_percent_decoded() {
        let pairs: Vec<_> = url_query_pairs("EIO=4&transport=polling&token=a%20b%2Fc&x").collect();
        assert_eq!(pairs[2], ("token".to_string(), "a b/c".to_string()));
        assert_eq!(pairs[3], ("x".to_string(), String::new()));
    }
}
