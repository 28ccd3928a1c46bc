//! Engine.IO v4: sessions, heartbeats, HTTP long-polling, WebSocket and the
//! polling-to-WebSocket upgrade.
//!
//! This layer knows nothing about Socket.IO. It hands every message of a
//! session to an [`EngineApp`], the protocol state that lives inside the
//! session actor, and takes frames to send back. Socket.IO is one such app;
//! the conformance fixture's echo server is another.

pub mod admission;
mod compression;
pub mod config;
pub mod errors;
pub mod forward;
pub mod metrics;
pub mod packet;
pub mod proxy;
pub mod routes;
pub mod session;
pub mod sid;
pub mod takeover;
pub mod websocket;

#[cfg_attr(not(feature = "internals"), allow(unused_imports))] // for tests and benches
pub use config::EngineConfig;
#[cfg_attr(not(feature = "internals"), allow(unused_imports))] // for tests and benches
pub use errors::EngineError;
pub use packet::Protocol;
#[cfg_attr(not(feature = "internals"), allow(unused_imports))] // for tests and benches
pub use routes::Engine;
pub(crate) use session::url_query_pairs;
#[cfg_attr(not(feature = "internals"), allow(unused_imports))] // for tests and benches
pub use session::{
    CloseReason, EngineApp, EngineAppFactory, EngineCore, Frame, FrameRef, Handshake, Headers,
    SessionActor, TransportKind,
};
#[cfg_attr(not(feature = "internals"), allow(unused_imports))] // for tests and benches
pub use sid::Sid;
