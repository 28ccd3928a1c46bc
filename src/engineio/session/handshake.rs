//! What the transport knows about a client when its session opens.

use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

use actix_web::http::header::HeaderMap;

use crate::engineio::packet::Protocol;
use crate::engineio::sid::Sid;

/// What the transport layer knows about the client at handshake time.
#[derive(Debug, Clone)]
pub struct Handshake {
    pub sid: Sid,
    pub headers: Headers,
    /// The raw query string of the handshake request.
    pub query: Box<str>,
    /// The TCP peer: behind a proxy, the proxy.
    pub remote_addr: Option<SocketAddr>,
    /// The client's address as the node counts it (the per-IP limits): the
    /// peer's, or a trusted proxy's forwarding header's
    /// (`server.trusted_proxies`, [`crate::engineio::proxy`]).
    pub client_ip: Option<IpAddr>,
    pub issued: SystemTime,
    /// The transport the handshake request came on (a WebSocket opened
    /// without a sid, or a polling GET that may upgrade later).
    pub transport: TransportKind,
    /// The Engine.IO revision the client speaks: v3 for Socket.IO v2
    /// clients (`engine.allow_eio3`), v4 otherwise.
    pub protocol: Protocol,
}

/// An Engine.IO transport, as a request names it (`transport=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    Polling,
    WebSocket,
}

impl TransportKind {
    /// Its name on the wire: `polling` or `websocket`.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Polling => "polling",
            TransportKind::WebSocket => "websocket",
        }
    }
}

impl Handshake {
    /// One query parameter of the handshake request, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        url_query_pairs(&self.query)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// The handshake request's headers, copied compactly (a name's values in
/// request order).
///
/// A session keeps them for its whole life (`Socket::handshake()`). A clone
/// of actix-web's `HeaderMap` keeps its hash table, sized for a large
/// request, and values that point into the request's read buffer: 6.7 kB
/// per idle connection, a quarter of it (docs/decisions.md, "idle
/// memory"). A slice of `(HeaderName, HeaderValue)` was 72 bytes a header
/// plus a copy of each value. Here: every name and value as text, back to
/// back in one buffer, and where each ends: two allocations whatever the
/// count, the headers' own length and 8 bytes a header.
///
/// Values are text as the clients' servers give them: UTF-8 when they are,
/// otherwise each byte one character (ISO-8859-1, as Node.js reads them).
#[derive(Clone, Default)]
pub struct Headers {
    /// Each name (lower-case, as HTTP/1 parsing leaves it) then its value.
    text: Box<str>,
    /// Where each header's name and value end in `text`.
    ends: Box<[(u32, u32)]>,
}

impl Headers {
    pub fn from_map(map: &HeaderMap) -> Headers {
        let mut text = String::new();
        let mut ends = Vec::with_capacity(map.len());
        for (name, value) in map.iter() {
            text.push_str(name.as_str());
            let name_end = text.len() as u32;
            match std::str::from_utf8(value.as_bytes()) {
                Ok(v) => text.push_str(v),
                Err(_) => text.extend(value.as_bytes().iter().map(|&b| b as char)),
            }
            ends.push((name_end, text.len() as u32));
        }
        Headers {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        }
    }

    /// The first value of header `name` (case-insensitive).
    pub fn get(&self, name: impl AsRef<str>) -> Option<&str> {
        self.get_all(name).next()
    }

    /// Every value of header `name` (case-insensitive), in request order.
    pub fn get_all(&self, name: impl AsRef<str>) -> impl Iterator<Item = &str> {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_ref()))
            .map(|(_, v)| v)
    }

    pub fn contains_key(&self, name: impl AsRef<str>) -> bool {
        self.get(name).is_some()
    }

    /// Every header as (name, value); a name that came several times comes
    /// as often, its values in request order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut start = 0;
        self.ends.iter().map(move |&(name_end, end)| {
            let (name_end, end) = (name_end as usize, end as usize);
            let pair = (&self.text[start..name_end], &self.text[name_end..end]);
            start = end;
            pair
        })
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
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
    use actix_web::http::header::{HeaderName, HeaderValue};

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
        let tags: Vec<_> = h.get_all("X-Tag").collect();
        assert_eq!(tags, ["a", "b"]);
        assert!(!h.contains_key("cookie"));
        let mut all: Vec<_> = h.iter().collect();
        all.sort();
        assert_eq!(
            all,
            [
                ("authorization", "Bearer t"),
                ("x-tag", "a"),
                ("x-tag", "b")
            ]
        );
    }

    #[test]
    fn values_that_are_not_utf8_are_read_byte_by_byte() {
        let mut map = HeaderMap::new();
        map.append(
            HeaderName::from_static("x-utf8"),
            HeaderValue::from_bytes("caf\u{e9}".as_bytes()).unwrap(),
        );
        map.append(
            HeaderName::from_static("x-latin1"),
            HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        );
        let h = Headers::from_map(&map);
        assert_eq!(h.get("x-utf8"), Some("caf\u{e9}"));
        assert_eq!(h.get("x-latin1"), Some("caf\u{e9}"));
        assert!(Headers::default().is_empty());
        assert_eq!(Headers::default().get("host"), None);
    }

    #[test]
    fn query_params_are_percent_decoded() {
        let pairs: Vec<_> = url_query_pairs("EIO=4&transport=polling&token=a%20b%2Fc&x").collect();
        assert_eq!(pairs[2], ("token".to_string(), "a b/c".to_string()));
        assert_eq!(pairs[3], ("x".to_string(), String::new()));
    }
}
