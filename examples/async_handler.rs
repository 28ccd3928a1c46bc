//! Async work in a handler without blocking its actor: a `profile` event
//! looks a user up in a (simulated) database that takes 200 ms, and acks with
//! the answer; other sockets' events keep being served meanwhile.
//!
//! ```text
//! cargo run --example async_handler      # 127.0.0.1:3000 (PORT to change)
//! ```
//! ```js
//! socket.emit("profile", 42, (p) => console.log(p)); // { id: 42, name: "user-42", lookups: 1 }
//! ```

use std::time::Duration;

use riptide::{
    logging, spawn_then, AckSender, HandlerContext, Namespace, NamespaceHandler, Riptide, Settings,
    Socket,
};
use serde::Serialize;

#[derive(Default)]
struct Profiles {
    /// Handler state survives across events and across awaits.
    lookups: u64,
}

impl NamespaceHandler for Profiles {}

#[derive(Serialize)]
struct Profile {
    id: u64,
    name: String,
    lookups: u64,
}

/// Stands for a database call.
async fn load_name(id: u64) -> String {
    tokio::time::sleep(Duration::from_millis(200)).await;
    format!("user-{id}")
}

fn profile(
    _h: &mut Profiles,
    _socket: &Socket,
    id: u64,
    ack: Option<AckSender>,
    ctx: &mut HandlerContext<Profiles>,
) {
    // The actor goes on with other messages; `then` runs on it again, with
    // `&mut Profiles`, once the lookup is done.
    spawn_then(ctx, load_name(id), move |h: &mut Profiles, name, _ctx| {
        h.lookups += 1;
        if let Some(ack) = ack {
            ack.send(Profile {
                id,
                name,
                lookups: h.lookups,
            });
        }
    });
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut settings = Settings::default();
    if let Some(port) = std::env::var("PORT").ok().and_then(|p| p.parse().ok()) {
        settings.server.port = port;
    }
    let log = logging::build_logger(&settings.log);
    Riptide::new(settings, log)
        .namespace(
            "/",
            Namespace::new(Profiles::default).on("profile", profile),
        )
        .build()
        .run()
        .await
}
