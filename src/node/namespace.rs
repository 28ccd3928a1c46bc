//! What a registered namespace is to the node: the middleware that admits
//! sockets and events, and how to start its handler actor. The application
//! builds one with the public `Namespace` builder.

use std::sync::Arc;

use actix::Recipient;
use serde_json::Value;

use slog::Logger;

use super::dispatch::Dispatch;
use super::metrics::Metrics;
use super::socket::{Event, Extensions, JsonData, Socket};
use crate::engineio::Handshake;
use crate::socketio::payload::Payload;
use futures_util::future::BoxFuture;

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
    pub(crate) rooms: Vec<String>,
    pub(crate) extensions: Extensions,
    pub(crate) preface: Option<PrefaceFuture>,
}

/// Events a socket is sent before its CONNECT reply (see
/// [`ConnectRequest::preface`]), and what to call once they were written.
#[derive(Default)]
pub struct Preface {
    /// In order: event name and arguments.
    pub events: Vec<(String, Payload)>,
    /// Called once the events were handed to the connection's transport
    /// (not called if the client went away first).
    pub written: Option<Box<dyn FnOnce() + Send>>,
}

pub(crate) type PrefaceFuture = BoxFuture<'static, Preface>;

impl<'a> ConnectRequest<'a> {
    pub(crate) fn new(namespace: &'a str, auth: &'a Value, handshake: &'a Handshake) -> Self {
        ConnectRequest {
            namespace,
            auth,
            handshake,
            user: None,
            rooms: Vec::new(),
            extensions: Extensions::default(),
            preface: None,
        }
    }

    /// Mark the socket as belonging to `user`: it joins that user's actor, so
    /// emits to the user and revocation of the user reach it.
    pub fn set_user(&mut self, user: impl Into<String>) {
        self.user = Some(user.into());
    }

    /// The socket joins `room` as it is created, before its CONNECT reply
    /// leaves: an emit to the room made once the client saw `connect`
    /// reaches it (a join in `on_connect` runs later, on the handler's
    /// thread). Counted against `socketio.max_rooms_per_socket`; the rooms
    /// past it are not joined (and counted as refused joins).
    pub fn join(&mut self, room: impl Into<String>) {
        self.rooms.push(room.into());
    }

    /// The socket's typed data from its start ([`Socket::extensions`]).
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// The socket's JSON data from its start ([`Socket::json_data`]): what
    /// `fetch_sockets` and the admin UI report of it, its `socket_connected`
    /// included.
    pub fn set_json_data(&mut self, data: impl serde::Serialize) -> Result<(), serde_json::Error> {
        self.extensions
            .insert(JsonData(serde_json::to_value(data)?));
        Ok(())
    }

    /// Events to send the socket before anything else, once `events`
    /// resolves (reading a store, say): the socket is created and joins its
    /// rooms at once, what is emitted to it meanwhile waits, and the client
    /// gets the preface's events, then what waited, then the CONNECT reply
    /// (the official clients hand a namespace's events over at its
    /// `connect`, in order). Only for a new socket: one that connection
    /// state recovery restores gets its missed events instead. A later call
    /// replaces an earlier one.
    pub fn preface(&mut self, events: impl std::future::Future<Output = Preface> + Send + 'static) {
        self.preface = Some(Box::pin(events));
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
