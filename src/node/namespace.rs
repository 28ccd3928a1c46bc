//! What a registered namespace is to the node: the middleware that admits
//! sockets and events, and how to start its handler actor. The application
//! builds one with the public `Namespace` builder.

use std::sync::Arc;

use actix::Recipient;
use serde_json::Value;

use slog::Logger;

use super::dispatch::Dispatch;
use super::metrics::Metrics;
use super::socket::{Event, Socket};
use crate::engineio::Handshake;

/// A refused CONNECT: the client's `connect_error` gets `message` and `data`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectError {
    pub message: String,
    pub data: Option<Value>,
}

impl ConnectError {
    pub fn new(message: impl Into<String>) -> ConnectError {
        ConnectError {
            message: message.into(),
            data: None,
        }
    }

    pub fn with_data(mut self, data: Value) -> ConnectError {
        self.data = Some(data);
        self
    }
}

/// What connect middleware sees, and may annotate, before a socket exists.
pub struct ConnectRequest<'a> {
    pub namespace: &'a str,
    /// The CONNECT auth payload (`{}` if none).
    pub auth: &'a Value,
    pub handshake: &'a Handshake,
    pub(crate) user: Option<String>,
}

impl ConnectRequest<'_> {
    /// Mark the socket as belonging to `user`: it joins that user's actor, so
    /// emits to the user and revocation of the user reach it.
    pub fn set_user(&mut self, user: impl Into<String>) {
        self.user = Some(user.into());
    }
}

/// Why event middleware refused an event; the client sees `message` (in
/// its ack if it asked for one, otherwise as an `error` event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRefused {
    pub message: String,
}

impl EventRefused {
    pub fn new(message: impl Into<String>) -> EventRefused {
        EventRefused {
            message: message.into(),
        }
    }
}

pub(crate) type ConnectMiddleware =
    Arc<dyn Fn(&mut ConnectRequest<'_>) -> Result<(), ConnectError> + Send + Sync>;
pub(crate) type EventMiddleware =
    Arc<dyn Fn(&Socket, &Event) -> Result<(), EventRefused> + Send + Sync>;
/// Starts one handler actor (supervised; its panics and restarts counted in
/// `Metrics`, logged to `Logger`) and hands back its mailbox.
pub(crate) type HandlerStarter = Arc<dyn Fn(Metrics, Logger) -> Recipient<Dispatch> + Send + Sync>;

/// A namespace's handler and middleware, as the node runs them.
#[derive(Clone)]
pub(crate) struct NamespaceSpec {
    /// Unique per registered namespace: keys the per-thread handler actors.
    pub id: usize,
    pub start_handler: HandlerStarter,
    pub connect_middleware: Vec<ConnectMiddleware>,
    pub event_middleware: Vec<EventMiddleware>,
}
