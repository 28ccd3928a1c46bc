//! The extension API: what an application writes to serve a namespace.
//!
//! An application implements [`NamespaceHandler`] and registers it with a
//! [`Namespace`], optionally with connect and event middleware. Riptide runs
//! the handler as an actor ([`HandlerActor`]), one instance per worker
//! thread (like actix-web's `App` factory), so handlers scale with cores and
//! state shared between instances is explicit (`Arc`). Handler calls are
//! made in the order the socket's packets arrived.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::Value;

pub use crate::actors::handler::HandlerActor;
use crate::adapter::{NodeId, ResponsePayload};
use crate::engineio::Handshake;
use crate::socket::{DisconnectReason, Event, Payload, Socket};

/// The actor context a handler runs in: use it for timers
/// (`ctx.run_later`) and to spawn futures bound to the handler
/// (`ctx.spawn(fut.into_actor(act))`).
pub type HandlerContext<H> = actix::Context<HandlerActor<H>>;

/// Run `fut` on the handler's actor: it is dropped if the handler stops.
/// Handy for awaiting an ack or a lookup without blocking other sockets.
pub fn spawn<H: NamespaceHandler>(
    ctx: &mut HandlerContext<H>,
    fut: impl std::future::Future<Output = ()> + 'static,
) {
    use actix::AsyncContext;
    ctx.spawn(actix::fut::wrap_future(fut));
}

/// An application's logic for one namespace.
///
/// ```
/// use riptide::{Event, HandlerContext, NamespaceHandler, Socket};
///
/// struct Echo;
///
/// impl NamespaceHandler for Echo {
///     fn on_event(&mut self, socket: &Socket, event: Event, _ctx: &mut HandlerContext<Self>) {
///         if let Some(ack) = event.ack {
///             ack.send(event.payload);
///         } else {
///             let _ = socket.emit(&event.name, event.payload);
///         }
///     }
/// }
/// ```
pub trait NamespaceHandler: Sized + Unpin + 'static {
    /// A socket connected; its CONNECT reply leaves after this call is made,
    /// so the handler is in place before the client can emit.
    fn on_connect(&mut self, _socket: &Socket, _ctx: &mut HandlerContext<Self>) {}

    /// An event from the client. A panic here disconnects only `socket`.
    fn on_event(&mut self, socket: &Socket, event: Event, ctx: &mut HandlerContext<Self>);

    /// An event another node sent this namespace's handlers with
    /// [`crate::ServerHandle::server_side_emit`]: one handler of each other
    /// node gets it. Answer `event.ack` if present, or the emitter counts
    /// this node as missing after its timeout. Ignored by default.
    fn on_server_event(&mut self, _event: ServerEvent, _ctx: &mut HandlerContext<Self>) {}

    /// The socket left the namespace; its rooms are already left.
    fn on_disconnect(
        &mut self,
        _socket: &Socket,
        _reason: DisconnectReason,
        _ctx: &mut HandlerContext<Self>,
    ) {
    }
}

/// An event from another node's `server_side_emit`.
#[derive(Debug)]
pub struct ServerEvent {
    pub name: String,
    pub payload: Payload,
    /// The node that sent it.
    pub origin: NodeId,
    /// Present when the emitter waits for an acknowledgement.
    pub ack: Option<ServerAck>,
}

/// Answers one `server_side_emit_with_ack` for this node; consumed by `send`.
pub struct ServerAck {
    pub(crate) reply: crate::server::Reply,
}

impl ServerAck {
    /// Acknowledge with `payload` (its JSON arguments: binary attachments
    /// do not travel back to the emitter, and are dropped with a warning).
    pub fn send(self, payload: impl Into<Payload>) {
        let payload = payload.into();
        if !payload.binary.is_empty() {
            slog::warn!(self.reply.log(), "binary attachments of a server-side ack dropped";
                "attachments" => payload.binary.len());
        }
        self.reply.send(ResponsePayload::Acks {
            args: vec![crate::broadcast::payload_to_json(&payload)],
            unanswered: 0,
        });
    }
}

impl std::fmt::Debug for ServerAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerAck")
            .field("origin", &self.reply.origin)
            .finish()
    }
}

/// What [`crate::ServerHandle::server_side_emit_with_ack`] gathered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerAcks {
    /// One acknowledgement per node that gave one in time.
    pub responses: Vec<(NodeId, Payload)>,
    /// Nodes that did not acknowledge in time.
    pub missing: Vec<NodeId>,
}

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
pub(crate) type HandlerStarter =
    Arc<dyn Fn() -> actix::Recipient<crate::actors::handler::Dispatch> + Send + Sync>;

static NEXT_NAMESPACE_ID: AtomicUsize = AtomicUsize::new(0);

/// A namespace's handler and middleware, ready to register on a server.
#[derive(Clone)]
pub struct Namespace {
    pub(crate) id: usize,
    pub(crate) start_handler: HandlerStarter,
    pub(crate) connect_middleware: Vec<ConnectMiddleware>,
    pub(crate) event_middleware: Vec<EventMiddleware>,
}

impl Namespace {
    /// `factory` builds one handler per worker thread.
    pub fn new<H, F>(factory: F) -> Namespace
    where
        H: NamespaceHandler,
        F: Fn() -> H + Send + Sync + 'static,
    {
        let start: HandlerStarter = Arc::new(move || HandlerActor::start_new(factory()));
        Namespace {
            id: NEXT_NAMESPACE_ID.fetch_add(1, Ordering::Relaxed),
            start_handler: start,
            connect_middleware: Vec::new(),
            event_middleware: Vec::new(),
        }
    }

    /// Run `mw` on every CONNECT to this namespace, in registration order;
    /// the first error refuses the connection with CONNECT_ERROR.
    pub fn on_connect(
        mut self,
        mw: impl Fn(&mut ConnectRequest<'_>) -> Result<(), ConnectError> + Send + Sync + 'static,
    ) -> Self {
        self.connect_middleware.push(Arc::new(mw));
        self
    }

    /// Run `mw` on every event before the handler; an error refuses it.
    pub fn on_event(
        mut self,
        mw: impl Fn(&Socket, &Event) -> Result<(), EventRefused> + Send + Sync + 'static,
    ) -> Self {
        self.event_middleware.push(Arc::new(mw));
        self
    }
}
