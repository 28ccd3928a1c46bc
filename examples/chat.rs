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
use riptide::{
    logging, settings, AckSender, ConnectError, DisconnectReason, HandlerContext, Namespace,
    NamespaceHandler, Riptide, Socket,
};
use serde::Deserialize;
use serde_json::json;

/// Room sizes shared by the handler instances of every worker thread.
type Rooms = Arc<Mutex<HashMap<String, usize>>>;

struct Chat {
    rooms: Rooms,
}

fn name(socket: &Socket) -> String {
    socket.user().unwrap_or("anonymous").to_string()
}

impl NamespaceHandler for Chat {
    fn on_connect(&mut self, socket: &Socket, _ctx: &mut HandlerContext<Self>) {
        let _ = socket.emit("welcome", json!({ "name": name(socket) }));
    }

    // Still in its rooms' list: tell each room who left.
    fn on_disconnecting(
        &mut self,
        socket: &Socket,
        rooms: &[String],
        _reason: DisconnectReason,
        _ctx: &mut HandlerContext<Self>,
    ) {
        let mut sizes = self.rooms.lock();
        for room in rooms.iter().filter(|r| r.as_str() != socket.id()) {
            if let Some(n) = sizes.get_mut(room) {
                *n = n.saturating_sub(1);
            }
            let _ = socket
                .to(room.clone())
                .emit("left", json!({ "room": room, "name": name(socket) }));
        }
    }
}

/// `join(room)`: one string argument.
fn join(
    chat: &mut Chat,
    socket: &Socket,
    room: String,
    ack: Option<AckSender>,
    _ctx: &mut HandlerContext<Chat>,
) {
    if let Err(e) = socket.join(room.clone()) {
        if let Some(ack) = ack {
            ack.send(json!({ "ok": false, "error": e.to_string() }));
        }
        return;
    }
    let members = {
        let mut rooms = chat.rooms.lock();
        let n = rooms.entry(room.clone()).or_default();
        *n += 1;
        *n
    };
    let _ = socket
        .to(room.clone())
        .emit("joined", json!({ "room": room, "name": name(socket) }));
    if let Some(ack) = ack {
        ack.send(json!({ "room": room, "members": members }));
    }
}

/// `say(room, text)`: two arguments, taken as a tuple. Anything else is
/// refused by Riptide with `{"error": {...}}` in the ack.
fn say(
    _chat: &mut Chat,
    socket: &Socket,
    (room, text): (String, String),
    ack: Option<AckSender>,
    _ctx: &mut HandlerContext<Chat>,
) {
    let _ = socket.within(room.clone()).emit(
        "said",
        Said {
            room,
            name: name(socket),
            text,
        },
    );
    if let Some(ack) = ack {
        ack.send(json!({ "ok": true }));
    }
}

#[derive(serde::Serialize)]
struct Said {
    room: String,
    name: String,
    text: String,
}

#[derive(Deserialize)]
struct Typing(String);

/// `typing(room)`: a volatile hint, cleared after three seconds of silence.
fn typing(
    _chat: &mut Chat,
    socket: &Socket,
    Typing(room): Typing,
    _ack: Option<AckSender>,
    ctx: &mut HandlerContext<Chat>,
) {
    // Volatile: a typing hint is worthless late, so never queue it.
    let _ = socket
        .to(room.clone())
        .volatile()
        .emit("typing", json!({ "name": name(socket) }));
    let (socket, who) = (socket.clone(), name(socket));
    ctx.run_later(Duration::from_secs(3), move |_, _| {
        let _ = socket
            .to(room)
            .volatile()
            .emit("stopped-typing", json!({ "name": who }));
    });
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut settings = settings::load(std::path::Path::new("config"))
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    if let Some(port) = std::env::var("PORT").ok().and_then(|p| p.parse().ok()) {
        settings.server.port = port;
    }
    let log = logging::build_logger(&settings.log);
    let rooms = Rooms::default();
    let chat = Namespace::new(move || Chat {
        rooms: rooms.clone(),
    })
    .on("join", join)
    .on("say", say)
    .on("typing", typing)
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
