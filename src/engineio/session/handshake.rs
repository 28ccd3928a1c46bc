//! What the transport knows about a client when its session opens.

use std::net::SocketAddr;
use std::time::SystemTime;

use actix_web::http::header::HeaderMap;

use crate::engineio::sid::Sid;

/// What the transport layer knows about the client at handshake time.
#[derive(Debug, Clone)]
pub struct Handshake {
    pub sid: Sid,
    pub headers: HeaderMap,
    /// The raw query string of the handshake request.
    pub query: String,
    pub remote_addr: Option<SocketAddr>,
    pub issued: SystemTime,
    pub transport: &'static str,
}

impl Handshake {
    /// One query parameter of the handshake request, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        url_query_pairs(&self.query)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
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
    fn query_params_are_percent_decoded() {
        let pairs: Vec<_> = url_query_pairs("EIO=4&transport=polling&token=a%20b%2Fc&x").collect();
        assert_eq!(pairs[2], ("token".to_string(), "a b/c".to_string()));
        assert_eq!(pairs[3], ("x".to_string(), String::new()));
    }
}
