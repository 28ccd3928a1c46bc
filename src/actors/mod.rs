//! The actors of a node: connections, rooms, users and namespace handlers.
//!
//! - [`connection`]: the Socket.IO state of one Engine.IO session (its
//!   namespaces' sockets, their rooms and pending acks), running inside the
//!   session actor.
//! - [`room`]: one actor per room (and one per namespace for namespace-wide
//!   emits); it owns the room's local membership and does its fan-out.
//! - [`user`]: one actor per authenticated user, tracking that user's sockets
//!   on every device.
//! - [`handler`]: runs an application's [`crate::NamespaceHandler`], one actor
//!   per namespace and worker thread, catching its panics.
//! - [`registry`]: the one place that knows which room and user actors exist,
//!   starting them under supervision and retiring them when empty.

pub mod connection;
pub mod delivery;
pub mod handler;
pub mod registry;
pub mod room;
pub mod user;
