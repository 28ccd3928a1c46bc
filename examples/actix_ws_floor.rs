//! The floor under Riptide's idle memory: what one WebSocket connection
//! costs in actix-web before any Riptide state exists.
//!
//! It serves `/socket.io/` WebSocket requests the way Riptide's transport
//! does (actix-web-actors' handshake, a streaming response body fed from a
//! queue, a task reading the request payload), and speaks only enough
//! Engine.IO / Socket.IO for `riptide-bench idle`: the open packet, then
//! `40` answered with `40{"sid":…}`. No session actor, no sockets, no
//! rooms, no timers. `riptide-bench idle` against it gives the RSS per
//! connection that the actix-web HTTP/1 dispatcher (its read and write
//! buffers, the request it keeps while the body streams) and a reader task
//! cost by themselves (docs/decisions.md, "idle memory").
//!
//! ```sh
//! cargo build --release --example actix_ws_floor
//! PORT=3000 target/release/examples/actix_ws_floor &
//! target/release/riptide-bench idle --url http://127.0.0.1:3000 --server-pid $!
//! ```

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A server text frame (unmasked, final).
fn text_frame(s: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(s.len() + 4);
    b.put_u8(0x81);
    if s.len() < 126 {
        b.put_u8(s.len() as u8);
    } else {
        b.put_u8(126);
        b.put_u16(s.len() as u16);
    }
    b.put_slice(s.as_bytes());
    b.freeze()
}

struct Body(mpsc::UnboundedReceiver<Bytes>);

impl Stream for Body {
    type Item = Result<Bytes, std::io::Error>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|b| b.map(Ok))
    }
}

async fn ws(req: HttpRequest, mut payload: web::Payload) -> HttpResponse {
    let Ok(mut builder) = actix_web_actors::ws::handshake(&req) else {
        return HttpResponse::BadRequest().finish();
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let _ = tx.send(text_frame(
        r#"0{"sid":"floor","upgrades":[],"pingInterval":300000,"pingTimeout":20000,"maxPayload":1000000}"#,
    ));
    actix_web::rt::spawn(async move {
        let mut buf = BytesMut::new();
        while let Some(Ok(chunk)) = payload.next().await {
            buf.extend_from_slice(&chunk);
            // Client frames are masked: FIN/opcode, 0x80|len (< 126 here),
            // 4 mask bytes, payload. Only `40` (CONNECT) is answered.
            while buf.len() >= 2 {
                let len = (buf[1] & 0x7f) as usize;
                if buf.len() < 6 + len {
                    break;
                }
                let frame = buf.split_to(6 + len);
                let mask = [frame[2], frame[3], frame[4], frame[5]];
                let data: Vec<u8> = frame[6..]
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ mask[i % 4])
                    .collect();
                if data.starts_with(b"40") {
                    let _ = tx.send(text_frame(r#"40{"sid":"floor-socket"}"#));
                }
            }
        }
    });
    builder.streaming(Body(rx))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    HttpServer::new(|| App::new().route("/socket.io/", web::get().to(ws)))
        .backlog(4096)
        .max_connections(30_000)
        .bind(("127.0.0.1", port))?
        .run()
        .await
}
