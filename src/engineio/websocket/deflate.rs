//! WebSocket per-message deflate (RFC 7692), without context takeover in
//! either direction.
//!
//! Every message is compressed (and decompressed) on its own, so:
//! - a broadcast is compressed once and the same bytes go to every receiver
//!   that negotiated the extension ([`Frame::deflated_wire`]);
//! - a connection keeps no compressor or decompressor state: both live in
//!   the worker thread ([`COMPRESSOR`], [`DECOMPRESSOR`]) and are reset per
//!   message, so an idle connection costs nothing more with deflate on (the
//!   reference server's memory under deflate is a known complaint:
//!   socket.io #3477, engine.io #559).
//!
//! The server answers an offer with `server_no_context_takeover;
//! client_no_context_takeover` (RFC 7692 §7.1.1: a server may ask for the
//! client's even unoffered). An offer asking for a window smaller than
//! 2^15 (`server_max_window_bits` < 15) is declined: miniz's deflate always
//! uses a 32 kB window.
//!
//! [`Frame::deflated_wire`]: crate::engineio::Frame::deflated_wire

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::{put_header_rsv1, MAX_HEADER};

/// The response's `Sec-WebSocket-Extensions` when an offer is accepted.
pub(crate) const ACCEPTED: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// The empty stored block's tail that a sync flush ends with; RFC 7692 §7.2.1
/// has the sender drop it and the receiver put it back.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Payloads shorter than this are never compressed, whatever the threshold:
/// deflate's framing costs more than such a payload can save.
pub const MIN_DEFLATE: usize = 64;

/// The smallest payload any engine of this process compresses
/// ([`enable`]); `usize::MAX` while none has deflate on, so that a frame
/// gets its shared compressed-form cell ([`Frame::deflated_wire`]) only
/// where it may be used, not on every emit of a node with deflate off.
///
/// [`Frame::deflated_wire`]: crate::engineio::Frame::deflated_wire
static COMPRESS_FROM: AtomicUsize = AtomicUsize::new(usize::MAX);

/// An engine with permessage-deflate on at `threshold` exists: frames of
/// that size and more may be sent compressed from now on.
pub(crate) fn enable(threshold: usize) {
    COMPRESS_FROM.fetch_min(threshold.max(MIN_DEFLATE), Ordering::Relaxed);
}

/// Whether a payload of `len` bytes may ever be sent compressed.
pub(crate) fn may_compress(len: usize) -> bool {
    len >= COMPRESS_FROM.load(Ordering::Relaxed)
}

thread_local! {
    static COMPRESSOR: RefCell<Compress> = RefCell::new(Compress::new(Compression::default(), false));
    static DECOMPRESSOR: RefCell<Decompress> = RefCell::new(Decompress::new(false));
}

/// Whether the client's `Sec-WebSocket-Extensions` headers carry a
/// permessage-deflate offer this server can accept (RFC 7692 §5, §7.1).
pub(crate) fn accepts_offer<'a>(headers: impl Iterator<Item = &'a [u8]>) -> bool {
    headers
        .filter_map(|h| std::str::from_utf8(h).ok())
        .flat_map(|h| h.split(','))
        .any(acceptable)
}

/// One offer: `permessage-deflate` and parameters we can honour, each at
/// most once.
fn acceptable(offer: &str) -> bool {
    let mut parts = offer.split(';').map(str::trim);
    if !parts
        .next()
        .is_some_and(|n| n.eq_ignore_ascii_case("permessage-deflate"))
    {
        return false;
    }
    let mut seen: Vec<String> = Vec::new();
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (param, None),
        };
        let name = name.to_ascii_lowercase();
        if seen.contains(&name) {
            return false;
        }
        let ok = match (name.as_str(), value) {
            ("server_no_context_takeover" | "client_no_context_takeover", None) => true,
            // Our window is 2^15; a client may let it be that large only.
            ("server_max_window_bits", Some(v)) => v == "15",
            // The client's window is its own business: we inflate any.
            ("client_max_window_bits", None) => true,
            ("client_max_window_bits", Some(v)) => {
                v.parse::<u8>().is_ok_and(|b| (8..=15).contains(&b))
            }
            _ => false,
        };
        if !ok {
            return false;
        }
        seen.push(name);
    }
    true
}

/// The whole WebSocket frame of `payload` compressed: RSV1 set, the sync
/// flush's tail dropped (RFC 7692 §7.2.1).
pub(crate) fn deflate_frame(binary: bool, payload: &[u8]) -> Bytes {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        c.reset();
        let mut out = Vec::with_capacity(payload.len() / 2 + 64);
        let mut input = payload;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            let before = c.total_in();
            // Writing to a Vec with room left cannot fail.
            c.compress_vec(input, &mut out, FlushCompress::Sync)
                .expect("deflate into a vector");
            input = &input[(c.total_in() - before) as usize..];
            // Done once the input is in and the flush had room to finish.
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        let mut buf = BytesMut::with_capacity(out.len() + MAX_HEADER);
        put_header_rsv1(&mut buf, if binary { 0x2 } else { 0x1 }, out.len());
        buf.extend_from_slice(&out);
        buf.freeze()
    })
}

/// Why a compressed message could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// It inflates to more than the payload limit.
    TooLarge,
    /// Not a deflate stream.
    Corrupt,
}

/// Decompress one message's payload (its frames' payloads concatenated),
/// refusing to produce more than `max` bytes: a small compressed frame must
/// not make the server allocate without bound.
pub(crate) fn inflate(data: &[u8], max: usize) -> Result<Vec<u8>, InflateError> {
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        d.reset(false);
        let mut out = Vec::with_capacity((data.len() * 4).clamp(256, max + 1));
        let mut input = data;
        let mut tail_fed = false;
        loop {
            if input.is_empty() && !tail_fed {
                input = &TAIL;
                tail_fed = true;
            }
            if out.len() == out.capacity() {
                if out.len() > max {
                    return Err(InflateError::TooLarge);
                }
                // Never room for more than one byte past the limit.
                out.reserve(out.capacity().clamp(256, max + 1 - out.len()));
            }
            let (was_in, was_out) = (d.total_in(), d.total_out());
            let status = d
                .decompress_vec(input, &mut out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Corrupt)?;
            let used = (d.total_in() - was_in) as usize;
            let made = (d.total_out() - was_out) as usize;
            input = &input[used..];
            if out.len() > max {
                return Err(InflateError::TooLarge);
            }
            let room = out.len() < out.capacity();
            match status {
                // A final block ends the message (a client may send one).
                Status::StreamEnd => return Ok(out),
                _ if input.is_empty() && tail_fed && room => return Ok(out),
                _ if used == 0 && made == 0 && room => return Err(InflateError::Corrupt),
                _ => {}
            }
        }
    })
}

/// `len` bytes that deflate cannot shrink (xorshift), for tests.
#[cfg(test)]
pub(crate) fn noise(len: usize) -> Vec<u8> {
    let mut x: u32 = 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(h: &str) -> bool {
        accepts_offer(std::iter::once(h.as_bytes()))
    }

    #[test]
    fn negotiates_the_offers_we_can_honour() {
        // What browsers and Node's `ws` send.
        assert!(offer("permessage-deflate; client_max_window_bits"));
        assert!(offer("permessage-deflate"));
        assert!(offer(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        ));
        assert!(offer("permessage-deflate; server_max_window_bits=15"));
        assert!(offer("permessage-deflate; client_max_window_bits=10"));
        // A window we cannot keep to, then a fallback offer we can.
        assert!(!offer("permessage-deflate; server_max_window_bits=10"));
        assert!(offer(
            "permessage-deflate; server_max_window_bits=10, permessage-deflate"
        ));
        assert!(!offer("permessage-deflate; unknown_param"));
        assert!(!offer(
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover"
        ));
        assert!(!offer("x-webkit-deflate-frame"));
        assert!(!accepts_offer(std::iter::empty()));
    }

    fn payload_of(frame: &Bytes) -> &[u8] {
        match frame[1] {
            126 => &frame[4..],
            127 => &frame[10..],
            _ => &frame[2..],
        }
    }

    #[test]
    fn a_message_round_trips_with_rsv1_and_no_tail() {
        let text = "42[\"msg\",{\"hello\":\"world\"}]".repeat(100);
        let frame = deflate_frame(false, text.as_bytes());
        assert_eq!(frame[0], 0xC1, "FIN + RSV1 + text");
        let compressed = payload_of(&frame);
        assert!(compressed.len() < text.len() / 10, "{}", compressed.len());
        assert!(!compressed.ends_with(&TAIL));
        let back = inflate(compressed, 1 << 20).unwrap();
        assert_eq!(back, text.as_bytes());
        // Each message stands alone: the same input gives the same bytes.
        assert_eq!(deflate_frame(false, text.as_bytes()), frame);
        assert_eq!(deflate_frame(true, &[7; 300])[0], 0xC2);
    }

    #[test]
    fn large_and_incompressible_payloads_round_trip() {
        let noise = noise(200_000);
        let frame = deflate_frame(true, &noise);
        assert_eq!(inflate(payload_of(&frame), 1 << 20).unwrap(), noise);
    }

    #[test]
    fn inflating_stops_at_the_limit() {
        let zeros = vec![0u8; 1 << 20];
        let frame = deflate_frame(true, &zeros);
        let compressed = payload_of(&frame);
        assert!(compressed.len() < 2_000);
        assert_eq!(inflate(compressed, 1000), Err(InflateError::TooLarge));
        assert_eq!(inflate(compressed, 1 << 20).unwrap().len(), 1 << 20);
        assert_eq!(
            inflate(&[0xff, 0xff, 0xff], 1000),
            Err(InflateError::Corrupt)
        );
    }
}
