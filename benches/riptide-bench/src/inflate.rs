//! permessage-deflate (RFC 7692) on the receiving side, for `--deflate`.
//!
//! tungstenite knows no WebSocket extension, so the generator offers
//! `permessage-deflate` itself and reads the server's frames through
//! [`InflateStream`], which sits between the TCP stream and tungstenite: it
//! passes the handshake response through, then turns every compressed frame
//! (RSV1 set) into the plain frame tungstenite expects. What the generator
//! sends stays uncompressed, which the extension allows message by message.
//!
//! The server must not use context takeover (`server_no_context_takeover`,
//! which the offer asks for): each message is inflated on its own. Servers
//! that do not accept the offer send plain frames, which pass through.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use flate2::{Decompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The offer the generator sends with `--deflate`.
pub const OFFER: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Every `--deflate` connection's bytes read off TCP after the handshake,
/// what tungstenite got instead, and the compressed messages among them.
static WIRE_BYTES: AtomicU64 = AtomicU64::new(0);
static PLAIN_BYTES: AtomicU64 = AtomicU64::new(0);
static INFLATED: AtomicU64 = AtomicU64::new(0);

/// The report's `deflate` object.
pub fn totals() -> serde_json::Value {
    let wire = WIRE_BYTES.load(Ordering::Relaxed);
    let plain = PLAIN_BYTES.load(Ordering::Relaxed);
    serde_json::json!({
        "wire_bytes": wire,
        "plain_bytes": plain,
        "inflated_messages": INFLATED.load(Ordering::Relaxed),
        "ratio": if plain > 0 { (wire as f64 / plain as f64 * 1000.0).round() / 1000.0 } else { 1.0 },
    })
}

pub struct InflateStream {
    io: TcpStream,
    /// `None`: a plain pass-through (no `--deflate`).
    state: Option<Box<State>>,
}

struct State {
    /// Still in the HTTP response head.
    handshake: bool,
    /// Bytes read and not yet turned into output (a partial frame).
    raw: Vec<u8>,
    /// Bytes ready for tungstenite, from `pos`.
    out: Vec<u8>,
    pos: usize,
    inflater: Decompress,
}

impl InflateStream {
    pub fn new(io: TcpStream, deflate: bool) -> InflateStream {
        InflateStream {
            io,
            state: deflate.then(|| {
                Box::new(State {
                    handshake: true,
                    raw: Vec::new(),
                    out: Vec::new(),
                    pos: 0,
                    inflater: Decompress::new(false),
                })
            }),
        }
    }
}

impl State {
    /// Move what `raw` holds, whole frames only, into `out`.
    fn process(&mut self) -> io::Result<()> {
        if self.handshake {
            let Some(end) = self.raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                return Ok(());
            };
            self.out.extend(self.raw.drain(..end + 4));
            self.handshake = false;
        }
        let mut at = 0;
        loop {
            let buf = &self.raw[at..];
            if buf.len() < 2 {
                break;
            }
            let (len, head) = match buf[1] & 0x7f {
                126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                127 if buf.len() >= 10 => (
                    u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                126 | 127 => break,
                n => (n as usize, 2),
            };
            if buf[1] & 0x80 != 0 {
                return Err(io::Error::other("a masked frame from the server"));
            }
            if buf.len() < head + len {
                break;
            }
            let frame = &buf[..head + len];
            WIRE_BYTES.fetch_add(frame.len() as u64, Ordering::Relaxed);
            let before = self.out.len();
            if frame[0] & 0x40 == 0 {
                self.out.extend_from_slice(frame);
            } else {
                let plain = inflate(&mut self.inflater, &frame[head..])?;
                INFLATED.fetch_add(1, Ordering::Relaxed);
                put_header(&mut self.out, frame[0] & !0x40, plain.len());
                self.out.extend_from_slice(&plain);
            }
            PLAIN_BYTES.fetch_add((self.out.len() - before) as u64, Ordering::Relaxed);
            at += head + len;
        }
        self.raw.drain(..at);
        Ok(())
    }
}

fn put_header(out: &mut Vec<u8>, first: u8, len: usize) {
    out.push(first);
    if len < 126 {
        out.push(len as u8);
    } else if len <= u16::MAX as usize {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

fn inflate(d: &mut Decompress, data: &[u8]) -> io::Result<Vec<u8>> {
    d.reset(false);
    let mut out = Vec::with_capacity(data.len() * 4 + 64);
    for mut input in [data, &TAIL[..]] {
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity());
            }
            let before = d.total_in();
            d.decompress_vec(input, &mut out, FlushDecompress::Sync)
                .map_err(|e| io::Error::other(format!("inflate: {e}")))?;
            input = &input[(d.total_in() - before) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
    }
    Ok(out)
}

impl AsyncRead for InflateStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(st) = this.state.as_mut() else {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        };
        loop {
            if st.pos < st.out.len() {
                let n = (st.out.len() - st.pos).min(buf.remaining());
                buf.put_slice(&st.out[st.pos..st.pos + n]);
                st.pos += n;
                if st.pos == st.out.len() {
                    st.out.clear();
                    st.pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut rb = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.io).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) if rb.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    st.raw.extend_from_slice(rb.filled());
                    st.process()?;
                }
            }
        }
    }
}

impl AsyncWrite for InflateStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, b)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_frames_become_plain_ones_and_the_rest_passes() {
        let text = b"42[\"msg\",\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"]".repeat(40);
        let mut c = flate2::Compress::new(flate2::Compression::default(), false);
        let mut z = Vec::with_capacity(text.len());
        c.compress_vec(&text, &mut z, flate2::FlushCompress::Sync)
            .unwrap();
        z.truncate(z.len() - 4);
        let mut wire = b"HTTP/1.1 101 Switching Protocols\r\n\r\n".to_vec();
        put_header(&mut wire, 0xC1, z.len());
        wire.extend_from_slice(&z);
        put_header(&mut wire, 0x81, 3);
        wire.extend_from_slice(b"4hi");
        let mut st = State {
            handshake: true,
            raw: Vec::new(),
            out: Vec::new(),
            pos: 0,
            inflater: Decompress::new(false),
        };
        // Byte by byte: partial frames wait for the rest.
        for b in wire {
            st.raw.push(b);
            st.process().unwrap();
        }
        let mut want = b"HTTP/1.1 101 Switching Protocols\r\n\r\n".to_vec();
        put_header(&mut want, 0x81, text.len());
        want.extend_from_slice(&text);
        put_header(&mut want, 0x81, 3);
        want.extend_from_slice(b"4hi");
        assert_eq!(st.out, want);
        assert!(st.raw.is_empty());
    }
}
