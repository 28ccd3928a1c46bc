//! # Riptide
//!
//! A Socket.IO v5 / Engine.IO v4 server built from actix actors: the official
//! Socket.IO clients connect to it unchanged.
//!
//! # Layout
//!
//! Data flows one way, down this list; a module never imports one above it.
//!
//! - [`engineio`]: the transport layer. `session` is the session actor (one
//!   per client: heartbeat, upgrade, frames not yet written); `routes` is the
//!   HTTP face (handshake, polling, protocol errors, CORS, admission limits);
//!   `websocket` holds every WebSocket detail (reader task, bounded outbound
//!   queue, killing a slow consumer's socket); `packet` the Engine.IO codec.
//! - [`socketio`]: the Socket.IO packet codec, binary attachments included.
//! - [`actors`]: `connection` (the Socket.IO state of a session: sockets,
//!   rooms, acks), `room` (membership and fan-out of one room), `user` (one
//!   user's sockets on every device), `handler` (runs an application's
//!   handler), `registry` (which room and user actors exist, supervised).
//! - The public API: [`handler`] (what applications implement and register),
//!   [`socket`] (the socket handle, events, acks), [`broadcast`] (emits to
//!   rooms), [`server`] (building and running a node), [`fixture`] (the bench
//!   fixture application).
//! - [`adapter`]: everything that crosses nodes. `Bus` (memory | NATS |
//!   Redis, by interest: one subject per room and namespace), `subject` (the
//!   one mapping of topics to subjects), `codec` (versioned bincode
//!   envelopes), `cluster` (node heartbeats, requests with replies and
//!   timeouts, broadcast).
//! - [`limits`]: token buckets for per-IP admission and per-socket events.
//! - [`service`] and [`metrics`]: configuration, logging and Prometheus
//!   figures; `main.rs` wires them into the `riptide` binary;
//!   the load generator is its own package, `benches/riptide-bench`.
//!
//! # Writing a handler
//!
//! ```no_run
//! use riptide::{Event, HandlerContext, Namespace, NamespaceHandler, Riptide, Settings, Socket};
//!
//! struct Chat;
//!
//! impl NamespaceHandler for Chat {
//!     fn on_connect(&mut self, socket: &Socket, _ctx: &mut HandlerContext<Self>) {
//!         socket.join("lobby");
//!     }
//!     fn on_event(&mut self, socket: &Socket, event: Event, _ctx: &mut HandlerContext<Self>) {
//!         if event.name == "say" {
//!             let _ = socket.to("lobby").emit("said", event.payload);
//!         }
//!     }
//! }
//!
//! #[actix_web::main]
//! async fn main() -> std::io::Result<()> {
//!     let settings = Settings::default();
//!     let log = riptide::service::logging::build_logger(&settings.log);
//!     Riptide::new(settings, log)
//!         .namespace("/", Namespace::new(|| Chat))
//!         .build()
//!         .run()
//!         .await
//! }
//! ```

pub mod actors;
pub mod adapter;
pub mod broadcast;
pub mod engineio;
pub mod fixture;
pub mod handler;
pub mod limits;
pub mod metrics;
pub mod server;
pub mod service;
pub mod socket;
pub mod socketio;

pub use broadcast::{Affected, BroadcastAcks, BroadcastOperator, FetchedSockets, UserOperator};
pub use handler::{
    ConnectError, ConnectRequest, EventRefused, HandlerActor, HandlerContext, Namespace,
    NamespaceHandler, ServerAck, ServerAcks, ServerEvent,
};
pub use server::{Riptide, RiptideServer, ServerHandle};
pub use service::config::Settings;
pub use socket::{AckError, AckSender, DisconnectReason, EmitError, Event, Payload, Socket};
