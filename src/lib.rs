//! # Riptide
//!
//! A Socket.IO v5 / Engine.IO v4 server built from actix actors: the official
//! Socket.IO clients connect to it unchanged.
//!
//! # Layout
//!
//! Data flows one way, down this list; a module never imports one above it
//! (`tests/layering.rs` fails the build when one does).
//!
//! - `engineio`: the transport. Sessions and their actor (`session/`, one
//!   file per concern: frames (each one buffer with its WebSocket header,
//!   shared by every receiver), the handshake (its compact `Headers`),
//!   heartbeat and `deadlines` (one timer per worker thread for every
//!   session's heartbeat and its app's one deadline, Socket.IO's connect
//!   timeout), polling, upgrade, backpressure),
//!   HTTP long-polling routes, forwarding a request for another node's
//!   session to its owner (`forward`), the WebSocket (`websocket/`: the
//!   bounded outbound queue, the frame reader, `deflate` (permessage-deflate
//!   without context takeover), and `conn`, the WebSocket run
//!   on the raw connection), `compression` (gzip/deflate of polling
//!   responses), the upgrade service that takes a WebSocket's
//!   connection out of actix-http's HTTP/1 dispatcher (`takeover`),
//!   admission limits (per node, per IP;
//!   the client's address behind `server.trusted_proxies` in `proxy`),
//!   its own configuration and figures (the per-frame counters sharded per
//!   thread), the packet codec (`packet`: v4, and v3 beside it for
//!   Socket.IO v2 clients, `engine.allow_eio3`, chosen per session). It
//!   knows nothing of Socket.IO.
//! - `socketio`: the protocol. The packet codecs (the JSON parser's, binary
//!   attachments included, and the msgpack parser's, `msgpack`), the
//!   server's parser (`parser`: its session decoder, frames of either made
//!   its own), event and ack encoding done once per emit, payloads and
//!   their typed (serde) conversion.
//! - `adapter`: everything that crosses nodes, beside the protocol and below
//!   the actors: the `Bus` (memory | NATS | Redis), the subject mapping, the
//!   versioned bincode envelope, heartbeats and requests, `store`
//!   (connection state recovery's streams and session records in JetStream
//!   or Redis Streams) and `notify` (service mode's revocations and kept
//!   messages, in memory, JetStream or Redis Streams). It imports nothing
//!   else of the crate.
//! - `node`: the actors and what they share. `connection` (a session's
//!   sockets, rooms and acks; Socket.IO v2's semantics for a v3 session), `room` (batches the broadcasts waiting in its
//!   mailbox into one `delivery::Deliver` per member) and `user` actors,
//!   `interest` (the one
//!   owner of record of who is interested in what), `supervisor` (restarts
//!   from that record), `fanout` (emits to many, across nodes), `remote`
//!   (what other nodes ask of this one), `recovery/` (connection state
//!   recovery: the node-memory store in `mod.rs`, the cluster's over
//!   `adapter::store` in `cluster.rs`), `probe` (the mailbox-delay probe
//!   thread), `observer` (the hook the admin UI watches sockets through),
//!   `vec_map` (the small tables a connection and a socket keep), `members`
//!   (a key's members by sid: a `vec_map` while few, a hash table past 8).
//! - `api`: what an application writes against: [`NamespaceHandler`] and
//!   [`Namespace`] (typed listeners, middleware), the supervised
//!   [`HandlerActor`], [`Socket`]'s broadcasts, [`ServerHandle`].
//! - `service`: [`Settings`] (files and environment; `settings/`, a file
//!   per section beside loading, the `RIPTIDE__…` variables and the
//!   errors), logging, the HTTP server that serves a node ([`Riptide`],
//!   [`RiptideServer`]; `tls`: `server.tls`), the bench fixture, the demo
//!   page (`demo`), the admin UI's namespace
//!   (`admin/`, [`AdminUi`]), service mode (`notify/`, public
//!   as [`service_mode`]: JWT verification, channels, its handler actor and
//!   its sockets' token expiries (`expiry`), the server API over HTTP and
//!   NATS); `main.rs` wires them into the
//!   `riptide` binary. The load generator is its own package,
//!   `benches/riptide-bench`.
//! - `names`: `named_enum!`, the closed sets of names the settings parse
//!   (declared first, used by `adapter` and `service`).
//! - `due_heap`: entries kept until due, earliest first, that compact
//!   themselves (nothing is cancelled): the engine's per-thread deadline
//!   wheel and service mode's token expiries are built on it. A foundation,
//!   below every layer: any may import it, and it imports nothing of the
//!   crate (`tests/layering.rs` holds it to that).
//!
//! Only the public API is `pub`; the layers are crate-private. The cargo
//! feature `internals` makes them public for this crate's own integration
//! tests, benches and the conformance example (it also enables the test
//! hooks, such as `ServerHandle::inject_room_panic`).
//!
//! # Writing a handler
//!
//! A handler is an actor's state: listeners registered by event name get
//! typed arguments and reply to acks with any `Serialize`.
//!
//! ```no_run
//! use riptide::{AckSender, HandlerContext, Namespace, NamespaceHandler, Riptide, Settings, Socket};
//!
//! #[derive(Default)]
//! struct Chat {
//!     said: u64,
//! }
//!
//! impl NamespaceHandler for Chat {
//!     fn on_connect(&mut self, socket: &Socket, _ctx: &mut HandlerContext<Self>) {
//!         let _ = socket.join("lobby");
//!     }
//! }
//!
//! #[derive(serde::Deserialize)]
//! struct Say {
//!     room: String,
//!     text: String,
//! }
//!
//! fn say(chat: &mut Chat, socket: &Socket, msg: Say, ack: Option<AckSender>, _ctx: &mut HandlerContext<Chat>) {
//!     chat.said += 1;
//!     let _ = socket.to(msg.room).emit("said", msg.text);
//!     if let Some(ack) = ack {
//!         ack.send(chat.said);
//!     }
//! }
//!
//! #[actix_web::main]
//! async fn main() -> std::io::Result<()> {
//!     let settings = Settings::default();
//!     let log = riptide::logging::build_logger(&settings.log);
//!     Riptide::new(settings, log)
//!         .namespace("/", Namespace::new(Chat::default).on("say", say))
//!         .build()
//!         .run()
//!         .await
//! }
//! ```

#[macro_use]
mod names;
mod due_heap;

// The layers: crate-private, or public with the `internals` feature (this
// crate's own tests and benches reach into them). Written out, not made by a
// macro: rustfmt does not format modules declared inside a macro call.
#[cfg(feature = "internals")]
pub mod adapter;
#[cfg(not(feature = "internals"))]
pub(crate) mod adapter;
#[cfg(feature = "internals")]
pub mod api;
#[cfg(not(feature = "internals"))]
pub(crate) mod api;
#[cfg(feature = "internals")]
pub mod engineio;
#[cfg(not(feature = "internals"))]
pub(crate) mod engineio;
#[cfg(feature = "internals")]
pub mod node;
#[cfg(not(feature = "internals"))]
pub(crate) mod node;
#[cfg(feature = "internals")]
pub mod service;
#[cfg(not(feature = "internals"))]
pub(crate) mod service;
#[cfg(feature = "internals")]
pub mod socketio;
#[cfg(not(feature = "internals"))]
pub(crate) mod socketio;

pub use adapter::{AdapterKind, NodeId, RemoteSocket};
pub use api::{
    spawn, spawn_then, HandlerActor, HandlerContext, Namespace, NamespaceHandler, ServerHandle,
};
pub use engineio::{Handshake, Headers, Protocol};
pub use node::fanout::{Affected, BroadcastAcks, BroadcastOperator, FetchedSockets, UserOperator};
pub use node::metrics::Metrics;
pub use node::namespace::{ConnectError, ConnectRequest, EventRefused, Preface};
pub use node::remote::{ServerAck, ServerAcks, ServerEvent};
pub use node::socket::{
    AckError, AckSender, DisconnectReason, EmitError, Event, Extensions, JoinError, Socket,
    WeakSocket,
};
pub use service::admin::AdminUi;
pub use service::demo;
pub use service::fixture;
pub use service::http::{Riptide, RiptideServer};
pub use service::logging;
/// Service mode (`app.mode = "service"`, `shared/SERVICE.md`): JWT at the
/// handshake, channels, the server API, offline delivery.
pub use service::notify as service_mode;
pub use service::settings::{self as settings, ConfigError, Settings};
pub use socketio::payload::{Args, ArgsError, IntoArgs, Payload};
