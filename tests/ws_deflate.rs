//! Pins WebSocket permessage-deflate (RFC 7692, `engine.per_message_deflate`)
//! at the wire, with a raw client that builds and reads its own frames:
//! the negotiation, messages both ways compressed (RSV1, the sync flush's
//! tail dropped), the threshold, fragmented compressed messages, and bad
//! compressed input closing only the connection that sent it, counted.

mod common;

use std::io::Read;

use common::*;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const OFFER: &str = "permessage-deflate; client_max_window_bits";
const ACCEPTED: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

fn settings(deflate: bool) -> riptide::Settings {
    let mut s = test_settings();
    s.engine.per_message_deflate = deflate;
    s.engine.per_message_deflate_threshold = 1024;
    s.engine.max_payload = 100_000;
    s
}

/// One frame as the server sent it.
#[derive(Debug)]
struct RawFrame {
    fin: bool,
    rsv1: bool,
    opcode: u8,
    payload: Vec<u8>,
}

struct RawWs {
    io: TcpStream,
    buf: Vec<u8>,
    /// Frame bytes read off the socket so far (headers included).
    wire_in: usize,
}

impl RawWs {
    /// Open a WebSocket on the echo engine, offering `extensions` if any;
    /// returns the client and the response's `Sec-WebSocket-Extensions`.
    async fn open(server: &TestServer, extensions: Option<&str>) -> (RawWs, Option<String>) {
        let mut io = TcpStream::connect(("127.0.0.1", server.port))
            .await
            .unwrap();
        let ext = extensions
            .map(|e| format!("Sec-WebSocket-Extensions: {e}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "GET {ECHO}?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{ext}\r\n"
        );
        io.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = vec![0u8; 4096];
            let n = io.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed during the handshake");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let negotiated = head.lines().find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-extensions")
                .then(|| value.trim().to_string())
        });
        buf.drain(..head_end);
        (
            RawWs {
                io,
                buf,
                wire_in: 0,
            },
            negotiated,
        )
    }

    async fn fill(&mut self, n: usize) -> bool {
        while self.buf.len() < n {
            let mut chunk = vec![0u8; 65536];
            match tokio::time::timeout(WAIT, self.io.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return false,
                Ok(Ok(k)) => self.buf.extend_from_slice(&chunk[..k]),
                Err(_) => panic!("no frame within {WAIT:?}"),
            }
        }
        true
    }

    /// The next frame; `None` once the server closed the connection.
    async fn frame(&mut self) -> Option<RawFrame> {
        if !self.fill(2).await {
            return None;
        }
        let (b0, b1) = (self.buf[0], self.buf[1]);
        assert_eq!(b1 & 0x80, 0, "server frames are not masked");
        let (len, head) = match b1 & 0x7f {
            126 => {
                assert!(self.fill(4).await);
                (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
            }
            127 => {
                assert!(self.fill(10).await);
                (
                    u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                    10,
                )
            }
            n => (n as usize, 2),
        };
        assert!(self.fill(head + len).await, "closed inside a frame");
        let payload = self.buf[head..head + len].to_vec();
        self.buf.drain(..head + len);
        self.wire_in += head + len;
        Some(RawFrame {
            fin: b0 & 0x80 != 0,
            rsv1: b0 & 0x40 != 0,
            opcode: b0 & 0x0f,
            payload,
        })
    }

    /// The next data message: its text, and whether it came compressed.
    async fn message(&mut self) -> (String, bool) {
        let f = self.frame().await.expect("a frame");
        assert!(f.fin, "the server does not fragment");
        assert_eq!(f.opcode, 0x1, "{f:?}");
        let data = if f.rsv1 {
            inflate(&f.payload)
        } else {
            f.payload
        };
        (String::from_utf8(data).unwrap(), f.rsv1)
    }

    /// Send one masked frame.
    async fn send_frame(&mut self, fin: bool, rsv1: bool, opcode: u8, payload: &[u8]) {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut out = vec![(fin as u8) << 7 | (rsv1 as u8) << 6 | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.io.write_all(&out).await.unwrap();
    }

    /// The close code the server ends with (after any data frames).
    async fn close_code(&mut self) -> Option<u16> {
        while let Some(f) = self.frame().await {
            if f.opcode == 0x8 {
                return (f.payload.len() >= 2)
                    .then(|| u16::from_be_bytes([f.payload[0], f.payload[1]]));
            }
        }
        None
    }
}

/// What a client that negotiated the extension sends: raw deflate, sync
/// flush, tail dropped.
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    c.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn inflate(data: &[u8]) -> Vec<u8> {
    let mut d = Decompress::new(false);
    let mut input = data.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(1 << 20);
    d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .unwrap();
    assert_eq!(d.total_in() as usize, input.len(), "inflated whole");
    out
}

#[actix_rt::test]
async fn an_offer_is_accepted_without_context_takeover_and_both_ways_compress() {
    let server = TestServer::start_echo(settings(true));
    let (mut ws, negotiated) = RawWs::open(&server, Some(OFFER)).await;
    assert_eq!(negotiated.as_deref(), Some(ACCEPTED));
    let (open, compressed) = ws.message().await;
    assert!(open.starts_with("0{"), "{open}");
    assert!(!compressed, "the open packet is under the threshold");

    // A compressed message in, echoed back compressed: the server inflated
    // it and deflated its answer. Twice: no context is carried over.
    let big = format!("4{}", "riptide ".repeat(1000));
    for _ in 0..2 {
        ws.send_frame(true, true, 0x1, &deflate(big.as_bytes()))
            .await;
        let before = ws.wire_in;
        assert_eq!(ws.message().await, (big.clone(), true));
        assert!(
            ws.wire_in - before < big.len() / 10,
            "{}",
            ws.wire_in - before
        );
    }

    // Under the threshold: sent as it is, whichever way it came.
    ws.send_frame(true, true, 0x1, &deflate(b"4small")).await;
    assert_eq!(ws.message().await, ("4small".to_string(), false));
    ws.send_frame(true, false, 0x1, b"4plain").await;
    assert_eq!(ws.message().await, ("4plain".to_string(), false));

    // A compressed message in fragments: RSV1 on the first frame only.
    let z = deflate(big.as_bytes());
    let (a, b) = z.split_at(z.len() / 2);
    ws.send_frame(false, true, 0x1, a).await;
    ws.send_frame(true, false, 0x0, b).await;
    assert_eq!(ws.message().await, (big.clone(), true));

    // Binary: compressed too (the echo app sends binary back as binary).
    let bin = vec![9u8; 5000];
    ws.send_frame(true, true, 0x2, &deflate(&bin)).await;
    let f = ws.frame().await.unwrap();
    assert_eq!((f.opcode, f.rsv1), (0x2, true));
    assert_eq!(inflate(&f.payload), bin);
}

#[actix_rt::test]
async fn without_an_offer_or_with_deflate_off_nothing_is_compressed() {
    let big = format!("4{}", "riptide ".repeat(1000));
    for (deflate_on, offer) in [(true, None), (false, Some(OFFER))] {
        let server = TestServer::start_echo(settings(deflate_on));
        let (mut ws, negotiated) = RawWs::open(&server, offer).await;
        assert_eq!(negotiated, None);
        ws.message().await;
        ws.send_frame(true, false, 0x1, big.as_bytes()).await;
        assert_eq!(ws.message().await, (big.clone(), false));
        // RSV1 without the extension is a protocol error (RFC 6455 §5.2).
        ws.send_frame(true, true, 0x1, &deflate(big.as_bytes()))
            .await;
        assert_eq!(ws.close_code().await, Some(1002));
    }
}

#[actix_rt::test]
async fn an_offer_we_cannot_honour_is_declined() {
    let server = TestServer::start_echo(settings(true));
    let (_ws, negotiated) = RawWs::open(
        &server,
        Some("permessage-deflate; server_max_window_bits=9"),
    )
    .await;
    assert_eq!(negotiated, None);
    let (_ws, negotiated) = RawWs::open(
        &server,
        Some("permessage-deflate; server_max_window_bits=9, permessage-deflate"),
    )
    .await;
    assert_eq!(negotiated.as_deref(), Some(ACCEPTED));
}

#[actix_rt::test]
async fn bad_compressed_input_closes_that_connection_only_and_is_counted() {
    let server = TestServer::start_echo(settings(true));
    let (mut other, _) = RawWs::open(&server, Some(OFFER)).await;
    other.message().await;

    // Not a deflate stream: 1007.
    let (mut ws, _) = RawWs::open(&server, Some(OFFER)).await;
    ws.message().await;
    ws.send_frame(true, true, 0x1, &[0xff, 0xff, 0xff, 0xff])
        .await;
    assert_eq!(ws.close_code().await, Some(1007));
    assert_eq!(
        server
            .wait_metric("riptide_bad_input_total{kind=\"bad_deflate\"}", 1.0)
            .await,
        1.0
    );

    // A small frame that inflates past max_payload: 1009, and the server
    // stopped inflating at the limit.
    let (mut ws, _) = RawWs::open(&server, Some(OFFER)).await;
    ws.message().await;
    let bomb = deflate(&vec![b'x'; 10_000_000]);
    assert!(bomb.len() < 20_000);
    ws.send_frame(true, true, 0x1, &bomb).await;
    assert_eq!(ws.close_code().await, Some(1009));

    // RSV1 on a control frame or a continuation: a protocol error.
    let (mut ws, _) = RawWs::open(&server, Some(OFFER)).await;
    ws.message().await;
    ws.send_frame(true, true, 0x9, b"").await;
    assert_eq!(ws.close_code().await, Some(1002));

    // The first connection is untouched.
    let big = format!("4{}", "riptide ".repeat(1000));
    other
        .send_frame(true, true, 0x1, &deflate(big.as_bytes()))
        .await;
    assert_eq!(other.message().await, (big, true));
}

/// Long-polling responses (`engine.http_compression`): gzip or deflate as
/// the client prefers, from the threshold up, and off when set off.
#[actix_rt::test]
async fn polling_responses_are_compressed_from_the_threshold() {
    for (on, coding) in [
        (true, Some("gzip")),
        (true, Some("deflate")),
        (true, None),
        (false, Some("gzip")),
    ] {
        let mut s = settings(false);
        s.engine.http_compression = on;
        let server = TestServer::start_echo(s);
        let client = reqwest::Client::builder()
            .no_gzip()
            .no_deflate()
            .no_brotli()
            .build()
            .unwrap();
        let url = |q: &str| {
            format!(
                "http://127.0.0.1:{}{ECHO}?EIO=4&transport=polling{q}",
                server.port
            )
        };
        let open = client
            .get(url(""))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let sid = open
            .split("\"sid\":\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string();
        let q = format!("&sid={sid}");
        for (body, big) in [
            ("4tiny".to_string(), false),
            (format!("4{}", "riptide ".repeat(1000)), true),
        ] {
            let post = client
                .post(url(&q))
                .body(body.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(post.status(), 200);
            let mut get = client.get(url(&q));
            if let Some(c) = coding {
                get = get.header("Accept-Encoding", c);
            }
            let resp = get.send().await.unwrap();
            let encoding = resp
                .headers()
                .get("content-encoding")
                .map(|v| v.to_str().unwrap().to_string());
            let bytes = resp.bytes().await.unwrap();
            let want = if on && big { coding } else { None };
            assert_eq!(
                encoding.as_deref(),
                want,
                "on={on} coding={coding:?} big={big}"
            );
            let text = match encoding.as_deref() {
                Some("gzip") => {
                    let mut s = String::new();
                    flate2::read::GzDecoder::new(&bytes[..])
                        .read_to_string(&mut s)
                        .unwrap();
                    assert!(bytes.len() < body.len() / 10);
                    s
                }
                Some("deflate") => {
                    let mut s = String::new();
                    flate2::read::ZlibDecoder::new(&bytes[..])
                        .read_to_string(&mut s)
                        .unwrap();
                    s
                }
                _ => String::from_utf8(bytes.to_vec()).unwrap(),
            };
            assert_eq!(text, body);
        }
        if on && coding.is_some() {
            let before = server
                .metric("riptide_polling_compressed_bytes_total{stage=\"before\"}")
                .await;
            let after = server
                .metric("riptide_polling_compressed_bytes_total{stage=\"after\"}")
                .await;
            assert!(
                before >= 8000.0 && after < before / 10.0,
                "{before} {after}"
            );
        }
    }
}
