//! The public API: what an application writes against.
//!
//! - `namespace`: [`NamespaceHandler`] (an actor's worth of application
//!   logic) and the [`Namespace`] builder (typed listeners, middleware).
//! - `handler_actor`: the supervised actor that runs a handler.
//! - `socket`: what a handler may do with a socket beyond the node's own
//!   operations (broadcast from it, reach the server).
//! - `handle`: [`ServerHandle`], to emit and manage sockets from anywhere.

pub mod handle;
pub mod handler_actor;
pub mod namespace;
pub mod socket;

pub use handle::ServerHandle;
pub use handler_actor::HandlerActor;
pub use namespace::{spawn, spawn_then, HandlerContext, Namespace, NamespaceHandler};
