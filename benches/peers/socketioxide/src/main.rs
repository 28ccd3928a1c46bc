//! The bench fixture (`/work/shared/FIXTURE.md`) on socketioxide + axum + tokio.
//!
//! `PORT=3001 socketioxide-fixture` listens on 127.0.0.1:$PORT, path
//! `/socket.io/`, Engine.IO v4 / Socket.IO v5, polling and websocket, namespace
//! `/`, and handles `join`, `publish` and `echo`. No logging.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::serve::ListenerExt;
use serde_json::Value;
use socketioxide::extract::{AckSender, Data, SocketRef};
use socketioxide::handler::ConnectHandler;
use socketioxide::{BroadcastError, SocketIo, TransportType};

/// Per-socket outbound queue, in packets (socketioxide default: 128). When it
/// is full, `emit` fails for that socket and the packet is dropped, so it must
/// hold a burst of a 1,000 msg/s fan-out while the writer catches up.
const MAX_BUFFER_SIZE: usize = 8192;
/// Largest HTTP (polling) body, in bytes (socketioxide default: 100 kB); the
/// reference Node server's `maxHttpBufferSize` is 1 MB.
const MAX_PAYLOAD: u64 = 1_000_000;
/// Engine.IO heartbeat: socketioxide's (and the reference server's) defaults, spelled out.
const PING_INTERVAL: Duration = Duration::from_millis(25_000);
const PING_TIMEOUT: Duration = Duration::from_millis(20_000);

/// Deliveries refused because a receiver's queue was full or closed.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Registers the fixture's event handlers on a socket.
///
/// socketioxide sends the CONNECT reply *before* it spawns the connect handler,
/// so handlers registered there could miss an event the client emits as soon as
/// it sees the reply. Connect middlewares are awaited before the reply is
/// queued, so the handlers are registered here instead.
async fn register_handlers(s: SocketRef) -> Result<(), std::convert::Infallible> {
    // join(room, ack): the room is joined synchronously (local adapter), then acked.
    s.on(
        "join",
        async |s: SocketRef, Data::<String>(room), ack: AckSender| {
            s.join(room);
            ack.send(&true).ok();
        },
    );

    // publish(room, payload): `msg` to every socket in room, the sender
    // included only if it is in the room (`within`, unlike `to`, does not
    // exclude the current socket).
    s.on(
        "publish",
        async |s: SocketRef, Data::<(String, Value)>((room, payload))| match s
            .within(room)
            .emit("msg", &payload)
            .await
        {
            Ok(()) => {}
            Err(BroadcastError::Socket(failed)) => {
                DROPPED.fetch_add(failed.len() as u64, Ordering::Relaxed);
            }
            Err(_) => {
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
        },
    );

    // echo(payload, ack): ack with the payload.
    s.on("echo", async |Data::<Value>(payload), ack: AckSender| {
        ack.send(&payload).ok();
    });
    Ok(())
}

async fn on_connect(_s: SocketRef) {}

/// Pending connections the kernel queues before accept (capped by
/// net.core.somaxconn). `TcpListener::bind` listens with 128, which overflows
/// when hundreds of handshakes arrive at once: each dropped SYN costs the
/// client a 1 s retransmit. 4096 is what Riptide uses.
const LISTEN_BACKLOG: u32 = 4096;

fn bind(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

// Multi-threaded runtime, one worker per core (TOKIO_WORKER_THREADS overrides).
#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p.parse().expect("PORT must be a port number"),
        Err(_) => 3000,
    };

    let (layer, io) = SocketIo::builder()
        .req_path("/socket.io")
        .transports([TransportType::Polling, TransportType::Websocket])
        .ping_interval(PING_INTERVAL)
        .ping_timeout(PING_TIMEOUT)
        .max_buffer_size(MAX_BUFFER_SIZE)
        .max_payload(MAX_PAYLOAD)
        .build_layer();
    io.ns("/", on_connect.with(register_handlers));

    let app = axum::Router::new().layer(layer);

    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let listener = bind(addr)
        .unwrap_or_else(|e| panic!("bind {addr}: {e}"))
        // Small frames must not wait for Nagle (the Node server sets noDelay too).
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
    println!("listening on {addr}");

    tokio::select! {
        res = axum::serve(listener, app) => {
            if let Err(e) = res {
                eprintln!("server error: {e}");
                std::process::exit(1);
            }
        }
        sig = shutdown_signal() => {
            eprintln!(
                "{sig}: exiting ({} deliveries dropped: receiver queue full or closed)",
                DROPPED.load(Ordering::Relaxed)
            );
        }
    }
    // Don't wait for open connections: exit at once.
    std::process::exit(0);
}
