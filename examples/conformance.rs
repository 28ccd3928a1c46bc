//! The server the official `engine.io-protocol` and `socket.io-protocol` test
//! suites expect (run by `tests/conformance/run.sh`):
//!
//! - `/engine.io/`: a plain Engine.IO v4 echo: every message, text or binary,
//!   goes back unchanged on the same session (the transport layer alone);
//! - `/socket.io/`: namespaces `/` and `/custom`; on connect the server emits
//!   `auth` with the CONNECT payload; in `/`, `message` is echoed as
//!   `message-back`, `message-with-ack` is acked with its arguments, and
//!   `emit-with-ack` is emitted back with an ack request whose answer is
//!   emitted as `emit-with-ack`.
//!
//! pingInterval 300 ms, pingTimeout 200 ms, connectTimeout 1000 ms,
//! maxPayload 1000000, port from env `PORT`.

use std::sync::Arc;

use actix::Context;
use riptide::engineio::session::Message;
use riptide::engineio::{
    Engine, EngineApp, EngineAppFactory, EngineCore, Frame, Handshake, SessionActor,
};
use riptide::service::logging;
use riptide::{Event, HandlerContext, Namespace, NamespaceHandler, Riptide, Settings, Socket};

/// Engine.IO echo: the transport layer used on its own.
struct Echo;

impl EngineApp for Echo {
    fn on_message(
        &mut self,
        msg: Message,
        core: &mut EngineCore,
        _ctx: &mut Context<SessionActor<Self>>,
    ) {
        match msg {
            Message::Text(text) => core.send(&Frame::message(&text)),
            Message::Binary(bin) => core.send(&Frame::binary(&bin)),
        }
    }
}

struct EchoFactory;

impl EngineAppFactory for EchoFactory {
    type App = Echo;
    fn create(&self, _handshake: &Arc<Handshake>) -> Echo {
        Echo
    }
}

struct Conformance {
    main: bool,
}

impl NamespaceHandler for Conformance {
    fn on_connect(&mut self, socket: &Socket, _ctx: &mut HandlerContext<Self>) {
        let _ = socket.emit("auth", socket.auth().clone());
    }

    fn on_event(&mut self, socket: &Socket, event: Event, ctx: &mut HandlerContext<Self>) {
        if !self.main {
            return;
        }
        match event.name.as_str() {
            "message" => {
                let _ = socket.emit("message-back", event.payload);
            }
            "message-with-ack" => {
                if let Some(ack) = event.ack {
                    ack.send(event.payload);
                }
            }
            "emit-with-ack" => {
                // Emit the arguments back with an ack request; when the client
                // acks, emit its ack arguments as a plain event.
                let Ok(reply) = socket.emit_with_ack("emit-with-ack", event.payload, None) else {
                    return;
                };
                let socket = socket.clone();
                riptide::spawn(ctx, async move {
                    if let Ok(args) = reply.await {
                        let _ = socket.emit("emit-with-ack", args);
                    }
                });
            }
            _ => {}
        }
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut settings = Settings::default();
    settings.server.host = "127.0.0.1".into();
    settings.server.port = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    settings.engine.ping_interval_ms = 300;
    settings.engine.ping_timeout_ms = 200;
    settings.engine.max_payload = 1_000_000;
    settings.socketio.connect_timeout_ms = 1000;
    settings.cors.allowed_origins = vec!["*".into()];
    settings.log.level = std::env::var("LOG_LEVEL")
        .ok()
        .and_then(|l| l.parse().ok())
        .unwrap_or(riptide::settings::LogLevel::Warning);
    let log = logging::build_logger(&settings.log);
    // The echo endpoint runs with the same Engine.IO settings.
    let engine_config = riptide::service::http::engine_config(&settings);
    let server = Riptide::new(settings, log.clone())
        .namespace("/", Namespace::new(|| Conformance { main: true }))
        .namespace("/custom", Namespace::new(|| Conformance { main: false }))
        .build();
    let echo = Engine::new(
        engine_config,
        EchoFactory,
        server.metrics().engine().clone(),
        log,
        usize::MAX,
    );
    server
        .run_with(move |cfg| echo.mount("/engine.io/", cfg))
        .await
}
