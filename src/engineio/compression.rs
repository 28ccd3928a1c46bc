//! Compression of long-polling responses (`engine.http_compression`), as
//! the reference server's `httpCompression`: gzip or deflate, whichever the
//! client's `Accept-Encoding` prefers, for bodies of at least the threshold.

use std::io::Write;

use flate2::write::{GzEncoder, ZlibEncoder};
use flate2::Compression;

/// A content coding this server produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    Gzip,
    /// HTTP's `deflate` is the zlib format (RFC 9110 §8.4.1.2).
    Deflate,
}

impl Coding {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
        }
    }

    /// `body`, compressed.
    pub(crate) fn encode(self, body: &[u8]) -> Vec<u8> {
        let out = Vec::with_capacity(body.len() / 3 + 64);
        // Writing into a Vec cannot fail.
        match self {
            Coding::Gzip => {
                let mut e = GzEncoder::new(out, Compression::default());
                e.write_all(body).expect("gzip into a vector");
                e.finish().expect("gzip into a vector")
            }
            Coding::Deflate => {
                let mut e = ZlibEncoder::new(out, Compression::default());
                e.write_all(body).expect("deflate into a vector");
                e.finish().expect("deflate into a vector")
            }
        }
    }
}

/// The coding to answer an `Accept-Encoding` with: the one of highest
/// quality among gzip and deflate (`*` counts for both), gzip on a tie;
/// none when neither is acceptable (absent, or `q=0`).
pub(crate) fn negotiate(accept_encoding: &str) -> Option<Coding> {
    let mut best: Option<(Coding, u16)> = None;
    let mut star: Option<u16> = None;
    let mut gzip: Option<u16> = None;
    let mut deflate: Option<u16> = None;
    for item in accept_encoding.split(',') {
        let mut parts = item.split(';').map(str::trim);
        let name = parts.next().unwrap_or("").to_ascii_lowercase();
        let mut q = 1000u16;
        for p in parts {
            if let Some(v) = p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")) {
                q = parse_q(v).unwrap_or(0);
            }
        }
        match name.as_str() {
            "gzip" | "x-gzip" => gzip = Some(q),
            "deflate" => deflate = Some(q),
            "*" => star = Some(q),
            _ => {}
        }
    }
    for (coding, q) in [(Coding::Gzip, gzip), (Coding::Deflate, deflate)] {
        let q = q.or(star).unwrap_or(0);
        if q > 0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((coding, q));
        }
    }
    best.map(|(c, _)| c)
}

/// A quality value (RFC 9110 §12.4.2) in thousandths.
fn parse_q(v: &str) -> Option<u16> {
    let q: f32 = v.trim().parse().ok()?;
    (0.0..=1.0)
        .contains(&q)
        .then(|| (q * 1000.0).round() as u16)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn picks_what_the_client_prefers() {
        assert_eq!(negotiate("gzip, deflate, br"), Some(Coding::Gzip));
        assert_eq!(negotiate("deflate"), Some(Coding::Deflate));
        assert_eq!(
            negotiate("gzip;q=0.5, deflate;q=0.8"),
            Some(Coding::Deflate)
        );
        assert_eq!(negotiate("gzip;q=0, deflate;q=0"), None);
        assert_eq!(negotiate("br"), None);
        assert_eq!(negotiate(""), None);
        assert_eq!(negotiate("*"), Some(Coding::Gzip));
        assert_eq!(negotiate("gzip;q=0, *"), Some(Coding::Deflate));
        assert_eq!(negotiate("identity"), None);
        assert_eq!(negotiate("gzip;q=nonsense"), None);
    }

    #[test]
    fn bodies_decode_back() {
        let body = "4hello\x1e".repeat(500);
        let gz = Coding::Gzip.encode(body.as_bytes());
        let mut back = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut back)
            .unwrap();
        assert_eq!(back, body);
        let z = Coding::Deflate.encode(body.as_bytes());
        let mut back = String::new();
        flate2::read::ZlibDecoder::new(&z[..])
            .read_to_string(&mut back)
            .unwrap();
        assert_eq!(back, body);
        assert!(gz.len() < body.len() / 10 && z.len() < body.len() / 10);
    }
}
