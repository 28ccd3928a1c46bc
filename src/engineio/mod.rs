//! Engine.IO v4: sessions, heartbeats, HTTP long-polling, WebSocket and the
//! polling-to-WebSocket upgrade.
//!
//! This layer knows nothing about Socket.IO. It hands every message of a
//! session to an [`EngineApp`], the protocol state that lives inside the
//! session actor, and takes frames to send back. Socket.IO is one such app;
//! the conformance fixture's echo server is another.

pub mod config;
pub mod errors;
pub mod packet;
pub mod routes;
pub mod session;
pub mod sid;
pub mod websocket;

pub use config::EngineConfig;
pub use errors::EngineError;
pub use routes::Engine;
pub use session::{
    CloseReason, EngineApp, EngineAppFactory, EngineCore, Frame, Handshake, SessionActor,
};
pub use sid::Sid;
