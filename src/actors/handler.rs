//! The actor that runs an application's [`NamespaceHandler`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use actix::prelude::*;

use std::sync::Arc;

use crate::handler::{NamespaceHandler, ServerEvent};
use crate::socket::{DisconnectReason, Event, Socket};

/// What a connection tells its namespace's handler.
#[derive(Message)]
#[rtype(result = "()")]
pub enum Dispatch {
    Connect(Socket),
    Event(Socket, Event),
    Disconnect(Socket, DisconnectReason),
    /// From another node's `server_side_emit`, for namespace `ns`.
    ServerEvent {
        ns: Arc<str>,
        event: ServerEvent,
        metrics: crate::metrics::Metrics,
        log: slog::Logger,
    },
    /// Does nothing: answered once everything sent before it has run (node
    /// shutdown waits on it).
    #[doc(hidden)]
    Barrier,
}

/// Runs one handler instance. A panic in the handler is caught: the socket
/// whose packet caused it is disconnected and counted, and the handler goes on
/// serving every other socket.
pub struct HandlerActor<H: NamespaceHandler> {
    pub handler: H,
}

impl<H: NamespaceHandler> HandlerActor<H> {
    pub(crate) fn start_new(handler: H) -> Recipient<Dispatch> {
        HandlerActor { handler }.start().recipient()
    }
}

impl<H: NamespaceHandler> Actor for HandlerActor<H> {
    type Context = Context<Self>;
}

impl<H: NamespaceHandler> Handler<Dispatch> for HandlerActor<H> {
    type Result = ();

    fn handle(&mut self, msg: Dispatch, ctx: &mut Context<Self>) {
        let (socket, result) = match msg {
            Dispatch::Connect(socket) => {
                let r = catch_unwind(AssertUnwindSafe(|| self.handler.on_connect(&socket, ctx)));
                (socket, r)
            }
            Dispatch::Event(socket, event) => {
                let r = catch_unwind(AssertUnwindSafe(|| {
                    self.handler.on_event(&socket, event, ctx)
                }));
                (socket, r)
            }
            Dispatch::Disconnect(socket, reason) => {
                let r = catch_unwind(AssertUnwindSafe(|| {
                    self.handler.on_disconnect(&socket, reason, ctx)
                }));
                (socket, r)
            }
            Dispatch::ServerEvent {
                ns,
                event,
                metrics,
                log,
            } => {
                let name = event.name.clone();
                let r = catch_unwind(AssertUnwindSafe(|| {
                    self.handler.on_server_event(event, ctx)
                }));
                if r.is_err() {
                    // No socket to blame: counted and logged; an ack it
                    // owed is never sent (the emitter sees this node missing).
                    metrics.handler_panic();
                    slog::error!(log, "application handler panicked on a server-side event";
                        "ns" => &*ns, "event" => name);
                }
                return;
            }
            Dispatch::Barrier => return,
        };
        if let Err(panic) = result {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let server = &socket.inner.server;
            server.metrics.handler_panic();
            slog::error!(server.log, "application handler panicked; disconnecting the socket";
                "ns" => &*socket.inner.ns, "socket" => socket.id(), "panic" => what);
            socket
                .inner
                .conn
                .do_send(crate::actors::connection::Command::Disconnect {
                    ns: socket.inner.ns.clone(),
                    sid: socket.inner.id.clone(),
                    reason: DisconnectReason::HandlerPanic,
                });
        }
    }
}

thread_local! {
    /// The handler actor of each namespace on this worker thread, started on
    /// first use: connections talk to the instance on their own thread.
    static LOCAL_HANDLERS: RefCell<HashMap<usize, Recipient<Dispatch>>> = RefCell::new(HashMap::new());
}

/// The handler of namespace `id` on the current thread, started if needed;
/// `started` is told of each one it starts.
pub(crate) fn local_handler(
    id: usize,
    start: &dyn Fn() -> Recipient<Dispatch>,
    started: impl FnOnce(&Recipient<Dispatch>),
) -> Recipient<Dispatch> {
    LOCAL_HANDLERS.with(|h| {
        let mut h = h.borrow_mut();
        match h.get(&id) {
            Some(r) if r.connected() => r.clone(),
            _ => {
                let r = start();
                started(&r);
                h.insert(id, r.clone());
                r
            }
        }
    })
}
