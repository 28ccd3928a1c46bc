//! A small chat server: rooms, a typing indicator, acks, and a user name
//! taken from the CONNECT auth payload.
//!
//! ```text
//! cargo run --example chat            # listens on 127.0.0.1:3000 (PORT to change)
//! ```
//! With the JavaScript client:
//! ```js
//! const socket = io("http://127.0.0.1:3000", { auth: { name: "ada" } });
//! socket.emit("join", "rust", (reply) => console.log(reply));   // { room: "rust", members: n }
//! socket.emit("say", "rust", "hello", (reply) => console.log(reply)); // { ok: true }
//! socket.emit("typing", "rust");
//! socket.on("said", (msg) => console.log(msg));
//! socket.on("typing", ({ name }) => console.log(name, "is typing"));
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::AsyncContext;
use parking_lot::Mutex;
use riptide::service::{config, logging};
use riptide::{ConnectError, Event, HandlerContext, Namespace, NamespaceHandler, Riptide, Socket};
use serde_json::json;

/// Room sizes shared by the handler instances of every worker thread.
type Rooms = Arc<Mutex<HashMap<String, usize>>>;

struct Chat {
    rooms: Rooms,
}

impl Chat {
    fn name(socket: &Socket) -> String {
        socket.user().unwrap_or("anonymous").to_string()
    }
}

impl NamespaceHandler for Chat {
    fn on_connect(&mut self, socket: &Socket, _ctx: &mut HandlerContext<Self>) {
        let _ = socket.emit("welcome", json!({ "name": Self::name(socket) }));
    }

    fn on_event(&mut self, socket: &Socket, event: Event, ctx: &mut HandlerContext<Self>) {
        match event.name.as_str() {
            "join" => {
                let Some(room) = event.str_arg(0).map(str::to_string) else {
                    return;
                };
                socket.join(room.clone());
                let members = {
                    let mut rooms = self.rooms.lock();
                    let n = rooms.entry(room.clone()).or_default();
                    *n += 1;
                    *n
                };
                let _ = socket.to(room.clone()).emit(
                    "joined",
                    json!({ "room": room, "name": Self::name(socket) }),
                );
                if let Some(ack) = event.ack {
                    ack.send(json!({ "room": room, "members": members }));
                }
            }
            "say" => {
                let (Some(room), Some(text)) = (event.str_arg(0), event.str_arg(1)) else {
                    if let Some(ack) = event.ack {
                        ack.send(json!({ "ok": false, "error": "usage: say(room, text)" }));
                    }
                    return;
                };
                let _ = socket.within(room).emit(
                    "said",
                    json!({ "room": room, "name": Self::name(socket), "text": text }),
                );
                if let Some(ack) = event.ack {
                    ack.send(json!({ "ok": true }));
                }
            }
            "typing" => {
                let Some(room) = event.str_arg(0).map(str::to_string) else {
                    return;
                };
                // Volatile: a typing hint is worthless late, so never queue it.
                let _ = socket
                    .to(room.clone())
                    .volatile()
                    .emit("typing", json!({ "name": Self::name(socket) }));
                // And clear it after three seconds of silence.
                let (socket, name) = (socket.clone(), Self::name(socket));
                ctx.run_later(Duration::from_secs(3), move |_, _| {
                    let _ = socket
                        .to(room)
                        .volatile()
                        .emit("stopped-typing", json!({ "name": name }));
                });
            }
            _ => {}
        }
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut settings = config::load(std::path::Path::new("config"))
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    if let Some(port) = std::env::var("PORT").ok().and_then(|p| p.parse().ok()) {
        settings.server.port = port;
    }
    let log = logging::build_logger(&settings.log);
    let rooms = Rooms::default();
    let chat = Namespace::new(move || Chat {
        rooms: rooms.clone(),
    })
    .on_connect(|req| {
        // The user's name comes from the auth payload; it also makes the
        // socket part of that user's actor (every tab of one user).
        match req.auth.get("name").and_then(|n| n.as_str()) {
            Some(name) if !name.is_empty() && name.len() <= 32 => {
                req.set_user(name);
                Ok(())
            }
            _ => Err(ConnectError::new("a name is required")
                .with_data(json!({ "hint": "io(url, { auth: { name } })" }))),
        }
    });
    Riptide::new(settings, log)
        .namespace("/", chat)
        .build()
        .run()
        .await
}
