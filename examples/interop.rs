//! The server the Node interop suite (`tests/interop/`) drives with the
//! official `socket.io-client`. Listens on 127.0.0.1:$PORT; engine settings
//! come from `config/` and `RIPTIDE__…` like the binary.
//!
//! - `/`: `welcome` on connect; `echo` (acks its arguments), `message` (emits
//!   `message-back`), `join`/`leave` (ack with the sorted rooms), `publish`,
//!   `publish-others`, `publish-except`, `broadcast`, `ask-client`
//!   (server-to-client ack with a 2 s timeout), `disconnect-me`,
//!   `close-connection` (every namespace disconnected, then the connection
//!   closed: Socket.IO's `disconnect(true)`), `state` (acks `{sid, recovered,
//!   rooms}`: what connection state recovery restored), `volatile-back`
//!   (its arguments back, as a volatile emit), `set-data` (sets the
//!   socket's JSON data, `socket.data`, to its argument and acks it).
//! - `/quiet`: as `/` but without `welcome`, for a client that has received
//!   no event yet (connection state recovery without an offset).
//! - `/private`: connect middleware accepting only `auth = {token: "secret"}`.
//! - `^/dyn-[a-z0-9]+$`: dynamic namespaces, served as `/`.
//! - `/admin`, with `admin.enabled`: the admin UI, as the binary mounts it.

use std::time::Duration;

use regex::Regex;
use riptide::{logging, settings as config};
use riptide::{
    ConnectError, Event, HandlerContext, Namespace, NamespaceHandler, Payload, Riptide, Socket,
};
use serde_json::{json, Value};

struct Interop {
    /// Emit `welcome` on connect (every namespace but `/quiet`).
    welcome: bool,
}

impl Interop {
    fn new() -> Interop {
        Interop { welcome: true }
    }
}

fn welcome(socket: &Socket) {
    let _ = socket.emit(
        "welcome",
        json!({ "sid": socket.id(), "nsp": socket.namespace(), "auth": socket.auth() }),
    );
}

impl NamespaceHandler for Interop {
    fn on_connect(&mut self, socket: &Socket, _ctx: &mut HandlerContext<Self>) {
        if self.welcome {
            welcome(socket);
        }
    }

    fn on_event(&mut self, socket: &Socket, event: Event, ctx: &mut HandlerContext<Self>) {
        let arg_str = |i: usize| event.str_arg(i).map(str::to_string);
        match event.name.as_str() {
            "echo" => {
                if let Some(ack) = event.ack {
                    ack.send(event.payload);
                }
            }
            "message" => {
                let _ = socket.emit("message-back", event.payload);
            }
            "volatile-back" => {
                // Volatile: not stored for recovery, so no offset is added,
                // and a trailing string stays what it is.
                let _ = socket.emit_volatile("volatile-back", event.payload);
            }
            "join" | "leave" => {
                let Some(room) = arg_str(0) else { return };
                if event.name == "join" {
                    let _ = socket.join(room);
                } else {
                    socket.leave(room);
                }
                if let Some(ack) = event.ack {
                    let socket = socket.clone();
                    riptide::spawn(ctx, async move {
                        let rooms = socket.rooms().await;
                        ack.send(json!({ "rooms": rooms }));
                    });
                }
            }
            "publish" | "publish-others" => {
                let Some(room) = arg_str(0) else { return };
                let payload = rest(event.payload, 1);
                let op = if event.name == "publish" {
                    socket.within(room)
                } else {
                    socket.to(room)
                };
                let _ = op.emit("msg", payload);
            }
            "publish-except" => {
                let (Some(room), Some(except)) = (arg_str(0), arg_str(1)) else {
                    return;
                };
                let payload = rest(event.payload, 2);
                let _ = socket.within(room).except(except).emit("msg", payload);
            }
            "broadcast" => {
                let _ = socket.broadcast().emit("msg", event.payload);
            }
            "ask-client" => {
                let Some(ack) = event.ack else { return };
                let Ok(answer) = socket.emit_with_ack(
                    "question",
                    Payload::new(vec![json!(1), json!("two")]),
                    Some(Duration::from_secs(2)),
                ) else {
                    return;
                };
                riptide::spawn(ctx, async move {
                    match answer.await {
                        // Keep the client's binary attachments: its
                        // placeholders still point at them.
                        Ok(p) => ack.send(Payload {
                            args: vec![json!({ "answer": p.args })],
                            binary: p.binary,
                        }),
                        Err(_) => ack.send(json!({ "error": "timeout" })),
                    }
                });
            }
            "state" => {
                let Some(ack) = event.ack else { return };
                let socket = socket.clone();
                riptide::spawn(ctx, async move {
                    let rooms = socket.rooms().await;
                    ack.send(json!({
                        "sid": socket.id(),
                        "recovered": socket.recovered(),
                        "rooms": rooms,
                    }));
                });
            }
            "set-data" => {
                let _ = socket.set_json_data(event.arg(0).cloned().unwrap_or(Value::Null));
                if let Some(ack) = event.ack {
                    ack.send(socket.json_data());
                }
            }
            "disconnect-me" => socket.disconnect(),
            "close-connection" => socket.close_connection(),
            _ => {}
        }
    }
}

/// The payload without its first `n` arguments (the routing ones).
fn rest(mut payload: Payload, n: usize) -> Payload {
    payload.args.drain(..n.min(payload.args.len()));
    payload
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut settings = config::load(std::path::Path::new("config"))
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    settings.server.host = "127.0.0.1".into();
    if let Some(port) = std::env::var("PORT").ok().and_then(|p| p.parse().ok()) {
        settings.server.port = port;
    }
    let log = logging::build_logger(&settings.log);
    let private = Namespace::new(Interop::new).on_connect(|req| {
        if req.auth.get("token") == Some(&Value::from("secret")) {
            Ok(())
        } else {
            Err(ConnectError::new("unauthorized").with_data(json!({ "reason": "bad token" })))
        }
    });
    let admin = riptide::AdminUi::from_settings(&settings, &log);
    let mut node = Riptide::new(settings, log)
        .namespace("/", Namespace::new(Interop::new))
        .namespace("/quiet", Namespace::new(|| Interop { welcome: false }))
        .namespace("/private", private)
        .dynamic_namespace(
            Regex::new(r"^/dyn-[a-z0-9]+$").expect("valid pattern"),
            Namespace::new(Interop::new),
        );
    if let Some(admin) = &admin {
        node = admin.mount(node);
    }
    let server = node.build();
    if let Some(admin) = &admin {
        admin.start(&server);
    }
    server.run().await
}
