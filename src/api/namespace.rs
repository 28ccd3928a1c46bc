//! The extension API: what an application writes to serve a namespace.
//!
//! An application implements [`NamespaceHandler`] (its state and its
//! lifecycle hooks) and registers it with a [`Namespace`]: typed listeners
//! per event name, connect and event middleware. Riptide runs the handler as
//! a supervised actor ([`crate::HandlerActor`]), one instance per worker
//! thread (like actix-web's `App` factory), so handlers scale with cores and
//! state shared between instances is explicit (`Arc`). Handler calls are made
//! in the order the socket's packets arrived.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use serde::de::DeserializeOwned;

use super::handler_actor::HandlerActor;
use crate::node::namespace::{
    ConnectError, ConnectMiddleware, ConnectRequest, EventMiddleware, EventRefused, NamespaceSpec,
};
use crate::node::remote::ServerEvent;
use crate::node::socket::{AckSender, DisconnectReason, Event, Socket};

/// The actor context a handler runs in: use it for timers
/// (`ctx.run_later`) and for async work ([`spawn`], [`spawn_then`]).
pub type HandlerContext<H> = actix::Context<HandlerActor<H>>;

/// Run `fut` on the handler's actor without blocking it: other sockets'
/// events are handled while it waits. It is dropped if the actor stops.
pub fn spawn<H: NamespaceHandler>(
    ctx: &mut HandlerContext<H>,
    fut: impl std::future::Future<Output = ()> + 'static,
) {
    ctx.spawn(actix::fut::wrap_future(fut));
}

/// Run `fut` without blocking the handler, then `then` with its output and
/// the handler's state: awaiting a database call, say, and acting on the
/// answer with `&mut self` again.
///
/// ```
/// use riptide::{spawn_then, AckSender, HandlerContext, NamespaceHandler, Socket};
///
/// #[derive(Default)]
/// struct Profiles { lookups: u64 }
/// impl NamespaceHandler for Profiles {}
///
/// async fn load_profile(id: u64) -> String { format!("user {id}") }
///
/// fn profile(h: &mut Profiles, _s: &Socket, id: u64, ack: Option<AckSender>, ctx: &mut HandlerContext<Profiles>) {
///     spawn_then(ctx, load_profile(id), move |h: &mut Profiles, profile, _ctx| {
///         h.lookups += 1;
///         if let Some(ack) = ack { ack.send(profile); }
///     });
/// }
/// ```
pub fn spawn_then<H, F, T>(
    ctx: &mut HandlerContext<H>,
    fut: F,
    then: impl FnOnce(&mut H, T, &mut HandlerContext<H>) + 'static,
) where
    H: NamespaceHandler,
    F: std::future::Future<Output = T> + 'static,
    T: 'static,
{
    ctx.spawn(
        actix::fut::wrap_future::<_, HandlerActor<H>>(fut).map(move |out, act, ctx| {
            act.call(|h, ctx| then(h, out, ctx), ctx);
        }),
    );
}

/// An application's logic for one namespace: its state, and hooks for the
/// socket's life. Events go to the listeners registered with
/// [`Namespace::on`]; [`NamespaceHandler::on_event`] gets the rest.
///
/// ```
/// use riptide::{AckSender, Event, HandlerContext, Namespace, NamespaceHandler, Socket};
///
/// #[derive(Default)]
/// struct Echo { echoed: u64 }
///
/// impl NamespaceHandler for Echo {
///     // Every event no listener takes: echo it back.
///     fn on_event(&mut self, socket: &Socket, event: Event, _ctx: &mut HandlerContext<Self>) {
///         self.echoed += 1;
///         match event.ack {
///             Some(ack) => ack.send(event.payload),
///             None => { let _ = socket.emit(&event.name, event.payload); }
///         }
///     }
/// }
///
/// let ns = Namespace::new(Echo::default)
///     .on("count", |h: &mut Echo, _s: &Socket, _: (), ack: Option<AckSender>, _ctx: &mut HandlerContext<Echo>| {
///         if let Some(ack) = ack { ack.send(h.echoed); }
///     });
/// ```
pub trait NamespaceHandler: Sized + Unpin + 'static {
    /// A socket connected; its CONNECT reply leaves after this call is made,
    /// so the handler is in place before the client can emit.
    fn on_connect(&mut self, _socket: &Socket, _ctx: &mut HandlerContext<Self>) {}

    /// An event no listener is registered for (the catch-all). A panic here
    /// disconnects only `socket`. Ignored by default.
    fn on_event(&mut self, _socket: &Socket, _event: Event, _ctx: &mut HandlerContext<Self>) {}

    /// An event another node sent this namespace's handlers with
    /// [`crate::ServerHandle::server_side_emit`]: one handler of each other
    /// node gets it. Answer `event.ack` if present, or the emitter counts
    /// this node as missing after its timeout. Ignored by default.
    fn on_server_event(&mut self, _event: ServerEvent, _ctx: &mut HandlerContext<Self>) {}

    /// The socket is leaving the namespace; `rooms` are the rooms it was in
    /// (its own id included), so a handler can tell them. Runs before
    /// [`NamespaceHandler::on_disconnect`].
    fn on_disconnecting(
        &mut self,
        _socket: &Socket,
        _rooms: &[String],
        _reason: DisconnectReason,
        _ctx: &mut HandlerContext<Self>,
    ) {
    }

    /// The socket left the namespace; its rooms are already left.
    fn on_disconnect(
        &mut self,
        _socket: &Socket,
        _reason: DisconnectReason,
        _ctx: &mut HandlerContext<Self>,
    ) {
    }
}

/// A listener with its arguments' type erased: decodes them and calls the
/// listener, or hands back why they did not decode, with the client's ack
/// (so the refusal can answer it).
pub(crate) type Listener<H> = Arc<
    dyn Fn(&mut H, &Socket, Event, &mut HandlerContext<H>) -> Result<(), Refusal> + Send + Sync,
>;

/// Why a listener's arguments did not decode, and the ack to tell.
pub(crate) type Refusal = (String, Option<AckSender>);

static NEXT_NAMESPACE_ID: AtomicUsize = AtomicUsize::new(0);

/// A namespace's handler, listeners and middleware, ready to register on a
/// server (`Riptide::namespace`).
pub struct Namespace<H: NamespaceHandler> {
    factory: Arc<dyn Fn() -> H + Send + Sync>,
    listeners: HashMap<String, Listener<H>>,
    connect_middleware: Vec<ConnectMiddleware>,
    event_middleware: Vec<EventMiddleware>,
}

impl<H: NamespaceHandler> Namespace<H> {
    /// `factory` builds one handler per worker thread, and a fresh one when
    /// the supervisor restarts a handler that panicked.
    pub fn new<F>(factory: F) -> Namespace<H>
    where
        F: Fn() -> H + Send + Sync + 'static,
    {
        Namespace {
            factory: Arc::new(factory),
            listeners: HashMap::new(),
            connect_middleware: Vec::new(),
            event_middleware: Vec::new(),
        }
    }

    /// Call `listener` for every `event` from a client, with its arguments
    /// as a `T` (see [`crate::Payload::decode`]: one argument as itself,
    /// several as a tuple) and the client's ack, if it asked for one (reply
    /// with any `Serialize`). Arguments that do not decode as `T` are
    /// refused: the client gets `{"error": {"message", "event"}}` in its
    /// ack (or an `error` event), counted in
    /// `riptide_events_refused_total{reason="invalid_arguments"}`, and the
    /// listener is not called. A later `on` for the same name replaces it.
    pub fn on<T, F>(mut self, event: &str, listener: F) -> Self
    where
        T: DeserializeOwned + 'static,
        F: Fn(&mut H, &Socket, T, Option<AckSender>, &mut HandlerContext<H>)
            + Send
            + Sync
            + 'static,
    {
        let erased: Listener<H> =
            Arc::new(
                move |h, socket, event, ctx| match event.payload.decode::<T>() {
                    Ok(args) => {
                        listener(h, socket, args, event.ack, ctx);
                        Ok(())
                    }
                    Err(e) => Err((e.to_string(), event.ack)),
                },
            );
        self.listeners.insert(event.to_owned(), erased);
        self
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

    /// What the node runs: the handler actor's starter and the middleware.
    pub(crate) fn into_spec(self) -> NamespaceSpec {
        let factory = self.factory;
        let listeners = Arc::new(self.listeners);
        NamespaceSpec {
            id: NEXT_NAMESPACE_ID.fetch_add(1, Ordering::Relaxed),
            start_handler: Arc::new(move |metrics, log| {
                HandlerActor::start_supervised(factory.clone(), listeners.clone(), metrics, log)
            }),
            connect_middleware: self.connect_middleware,
            event_middleware: self.event_middleware,
        }
    }
}
