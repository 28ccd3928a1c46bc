//! The client's address behind reverse proxies.
//!
//! Behind a load balancer every connection comes from the balancer's
//! address, so the per-IP admission limits would count the whole world as
//! one client. With `server.trusted_proxies` the node takes the client's
//! address from the `Forwarded` (RFC 7239) or `X-Forwarded-For` header, but
//! only when the TCP peer is one of the trusted proxies: anyone else can
//! write those headers, so from anyone else they are ignored.
//!
//! The header is read from the right (each proxy appends the address it
//! saw): trusted proxies are skipped, and the first address that is not a
//! trusted proxy is the client. When every hop is trusted the leftmost one
//! is. A header that does not parse, or whose nearest untrusted hop is not
//! an address (`unknown`, an obfuscated `_name`), gives the peer's address:
//! the node never takes a guess for a client address. `Forwarded` wins when
//! both are present (it is the standard; a proxy that sets it means it).

use std::net::IpAddr;
use std::str::FromStr;

use actix_web::http::header::{HeaderMap, FORWARDED};
use ipnet::IpNet;

const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// The proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Box<[IpNet]>);

/// Where a client address came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientIp {
    /// The TCP peer: no trusted proxy in front, or no forwarding header.
    Peer(IpAddr),
    /// A trusted proxy's forwarding header.
    Forwarded(IpAddr),
    /// A trusted proxy sent a forwarding header that does not parse, or
    /// names no address: the peer's address is used.
    Malformed(IpAddr),
}

impl ClientIp {
    pub fn ip(self) -> IpAddr {
        match self {
            ClientIp::Peer(ip) | ClientIp::Forwarded(ip) | ClientIp::Malformed(ip) => ip,
        }
    }
}

impl TrustedProxies {
    /// Parse addresses (`10.0.0.1`, `::1`) and CIDRs (`10.0.0.0/8`); the
    /// error names the entry that is neither.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<TrustedProxies, String> {
        entries
            .iter()
            .map(|e| {
                let e = e.as_ref().trim();
                IpNet::from_str(e)
                    .or_else(|_| IpAddr::from_str(e).map(IpNet::from))
                    .map(|n| n.trunc())
                    .map_err(|_| format!("{e:?} is not an IP address or CIDR"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|v| TrustedProxies(v.into()))
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The address of the client whose request came from `peer` with
    /// `headers`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> ClientIp {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return ClientIp::Peer(peer);
        }
        let hops = if headers.contains_key(FORWARDED) {
            forwarded_for(headers)
        } else if headers.contains_key(X_FORWARDED_FOR) {
            x_forwarded_for(headers)
        } else {
            return ClientIp::Peer(peer);
        };
        let Some(hops) = hops else {
            return ClientIp::Malformed(peer);
        };
        let mut leftmost = None;
        for hop in hops.iter().rev() {
            match hop {
                Some(ip) if self.trusts(*ip) => leftmost = Some(*ip),
                Some(ip) => return ClientIp::Forwarded(*ip),
                None => return ClientIp::Malformed(peer),
            }
        }
        match leftmost {
            Some(ip) => ClientIp::Forwarded(ip),
            None => ClientIp::Peer(peer), // a header with no hop in it
        }
    }
}

/// Every `for=` of every `Forwarded` header, in order: `None` for a hop
/// that names no address; `None` overall when the header does not parse.
fn forwarded_for(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let mut hops = Vec::new();
    for value in headers.get_all(FORWARDED) {
        let value = value.to_str().ok()?;
        for element in value.split(',') {
            for pair in element.split(';') {
                let pair = pair.trim();
                if pair.is_empty() {
                    continue;
                }
                let (key, v) = pair.split_once('=')?;
                if key.trim().eq_ignore_ascii_case("for") {
                    hops.push(node_ip(v.trim()));
                }
            }
        }
    }
    Some(hops)
}

/// Every address of every `X-Forwarded-For` header, in order.
fn x_forwarded_for(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let mut hops = Vec::new();
    for value in headers.get_all(X_FORWARDED_FOR) {
        let value = value.to_str().ok()?;
        for hop in value.split(',').map(str::trim).filter(|h| !h.is_empty()) {
            hops.push(Some(node_ip(hop)?));
        }
    }
    Some(hops)
}

/// The address of an RFC 7239 node (`192.0.2.1`, `"192.0.2.1:80"`,
/// `"[2001:db8::1]:4711"`), also as some proxies write X-Forwarded-For;
/// `None` for `unknown` and obfuscated names.
fn node_ip(node: &str) -> Option<IpAddr> {
    let node = node.trim_matches('"');
    if let Some(rest) = node.strip_prefix('[') {
        let (ip, _port) = rest.split_once(']')?;
        return IpAddr::from_str(ip).ok().map(|ip| ip.to_canonical());
    }
    if let Ok(ip) = IpAddr::from_str(node) {
        return Some(ip.to_canonical());
    }
    // v4 with a port
    let (ip, port) = node.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    std::net::Ipv4Addr::from_str(ip).ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(list).unwrap()
    }

    #[test]
    fn entries_are_addresses_or_cidrs_and_the_error_names_the_bad_one() {
        let p = proxies(&["10.0.0.0/8", "192.168.1.7", "::1", "fd00::/8"]);
        assert!(p.trusts(ip("10.1.2.3")));
        assert!(p.trusts(ip("192.168.1.7")));
        assert!(!p.trusts(ip("192.168.1.8")));
        assert!(p.trusts(ip("::1")));
        assert!(p.trusts(ip("fd12::5")));
        // an IPv4 peer seen on an IPv6 socket
        assert!(p.trusts(ip("::ffff:10.9.9.9")));
        let err = TrustedProxies::parse(&["10.0.0.1", "10.0.0.0/33"]).unwrap_err();
        assert!(err.contains("10.0.0.0/33"), "{err}");
        assert!(TrustedProxies::parse(&["nginx"]).is_err());
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_writes() {
        let p = proxies(&["10.0.0.1"]);
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("forwarded", "for=1.2.3.4"),
        ]);
        assert_eq!(
            p.client_ip(ip("198.51.100.1"), &h),
            ClientIp::Peer(ip("198.51.100.1"))
        );
        assert_eq!(
            TrustedProxies::default().client_ip(ip("10.0.0.1"), &h),
            ClientIp::Peer(ip("10.0.0.1"))
        );
    }

    #[test]
    fn x_forwarded_for_is_read_from_the_right_skipping_trusted_hops() {
        let p = proxies(&["10.0.0.0/8"]);
        // a client-written first hop, then the client, then an inner proxy
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.2")]);
        assert_eq!(
            p.client_ip(ip("10.0.0.1"), &h),
            ClientIp::Forwarded(ip("203.0.113.7"))
        );
        // several headers are one list
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-for", "10.0.0.3"),
        ]);
        assert_eq!(
            p.client_ip(ip("10.0.0.1"), &h),
            ClientIp::Forwarded(ip("203.0.113.7"))
        );
        // every hop trusted: the leftmost
        let h = headers(&[("x-forwarded-for", "10.0.0.9, 10.0.0.2")]);
        assert_eq!(
            p.client_ip(ip("10.0.0.1"), &h),
            ClientIp::Forwarded(ip("10.0.0.9"))
        );
        // no header: the peer
        assert_eq!(
            p.client_ip(ip("10.0.0.1"), &HeaderMap::new()),
            ClientIp::Peer(ip("10.0.0.1"))
        );
        // with ports, IPv6
        let h = headers(&[("x-forwarded-for", "[2001:db8::1]:4711, 203.0.113.8:80")]);
        assert_eq!(
            p.client_ip(ip("10.0.0.1"), &h),
            ClientIp::Forwarded(ip("203.0.113.8"))
        );
    }

    #[test]
    fn forwarded_wins_and_understands_rfc_7239_nodes() {
        let p = proxies(&["10.0.0.0/8"]);
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            (
                "forwarded",
                r#"for="[2001:db8:cafe::17]:4711";proto=https, for=10.0.0.2;by=10.0.0.1"#,
            ),
        ]);
        assert_eq!(
            p.client_ip(ip("10.0.0.1"), &h),
            ClientIp::Forwarded(ip("2001:db8:cafe::17"))
        );
        let h = headers(&[("forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43")]);
        assert_eq!(
            p.client_ip(ip("10.0.0.1"), &h),
            ClientIp::Forwarded(ip("192.0.2.60"))
        );
    }

    #[test]
    fn what_does_not_parse_or_names_no_address_gives_the_peer() {
        let p = proxies(&["10.0.0.1"]);
        for h in [
            headers(&[("x-forwarded-for", "not-an-ip")]),
            headers(&[("x-forwarded-for", "203.0.113.7, 1.2.3.999")]),
            headers(&[("forwarded", "for")]),
            headers(&[("forwarded", "for=unknown")]),
            headers(&[("forwarded", "for=_hidden, for=10.0.0.1")]),
        ] {
            assert_eq!(
                p.client_ip(ip("10.0.0.1"), &h),
                ClientIp::Malformed(ip("10.0.0.1")),
                "{h:?}"
            );
        }
        // an unknown hop behind the client does not matter
        let h = headers(&[("forwarded", "for=unknown, for=203.0.113.7")]);
        assert_eq!(
            p.client_ip(ip("10.0.0.1"), &h),
            ClientIp::Forwarded(ip("203.0.113.7"))
        );
    }
}
