//! The actor that runs an application's [`NamespaceHandler`], under the
//! node's supervision.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use slog::Logger;

use super::namespace::{HandlerContext, Listener, NamespaceHandler};
use crate::node::connection::Command;
use crate::node::dispatch::Dispatch;
use crate::node::metrics::Metrics;
use crate::node::socket::{DisconnectReason, Event, Socket};
use crate::node::supervisor::guard;

/// Runs one handler instance. A panic in the handler is caught: the socket
/// whose packet caused it is disconnected ("handler panic"), and the actor
/// is restarted by its supervisor with a fresh handler from the namespace's
/// factory (the state that panicked is not trusted again). The mailbox
/// survives the restart, so every connection that talks to this actor keeps
/// working. Counted in `riptide_handler_panics_total` and
/// `riptide_actor_restarts_total{kind="handler"}`.
pub struct HandlerActor<H: NamespaceHandler> {
    handler: H,
    factory: Arc<dyn Fn() -> H + Send + Sync>,
    listeners: Arc<HashMap<String, Listener<H>>>,
    metrics: Metrics,
    log: Logger,
}

impl<H: NamespaceHandler> HandlerActor<H> {
    pub(crate) fn start_supervised(
        factory: Arc<dyn Fn() -> H + Send + Sync>,
        listeners: Arc<HashMap<String, Listener<H>>>,
        metrics: Metrics,
        log: Logger,
    ) -> Recipient<Dispatch> {
        Supervisor::start(move |_| HandlerActor {
            handler: factory(),
            factory,
            listeners,
            metrics,
            log,
        })
        .recipient()
    }

    /// The application's handler (for code running on this actor, such as
    /// a future spawned with `ctx.spawn(fut.into_actor(act))`).
    pub fn handler(&mut self) -> &mut H {
        &mut self.handler
    }

    /// Run `f` on the handler under the node's panic guard: a panic restarts
    /// the actor instead of unwinding through actix (and is reported as
    /// `None`).
    pub(crate) fn call<R>(
        &mut self,
        f: impl FnOnce(&mut H, &mut HandlerContext<H>) -> R,
        ctx: &mut HandlerContext<H>,
    ) -> Option<R> {
        let handler = &mut self.handler;
        let done = guard(ctx, &self.log, "handler", |ctx| f(handler, ctx));
        if done.is_none() {
            self.metrics.handler_panic();
        }
        done
    }

    fn blame(&self, socket: &Socket) {
        slog::warn!(self.log, "disconnecting the socket whose event panicked the handler";
            "ns" => socket.namespace(), "socket" => socket.id());
        socket.inner.conn.do_send(Command::Disconnect {
            ns: socket.inner.ns.clone(),
            sid: socket.inner.id.clone(),
            reason: DisconnectReason::HandlerPanic,
        });
    }

    fn on_event(&mut self, socket: Socket, event: Event, ctx: &mut HandlerContext<H>) {
        let Some(listener) = self.listeners.get(&event.name).cloned() else {
            if self
                .call(|h, ctx| h.on_event(&socket, event, ctx), ctx)
                .is_none()
            {
                self.blame(&socket);
            }
            return;
        };
        let name = event.name.clone();
        match self.call(|h, ctx| listener(h, &socket, event, ctx), ctx) {
            None => self.blame(&socket),
            Some(Ok(())) => {}
            Some(Err((why, ack))) => {
                self.metrics.event_refused("invalid_arguments");
                slog::debug!(self.log, "event refused: arguments do not decode";
                    "ns" => socket.namespace(), "event" => &name, "error" => &why);
                let body = serde_json::json!({ "message": why, "event": name });
                match ack {
                    Some(ack) => ack.send(serde_json::json!({ "error": body })),
                    None => {
                        let _ = socket.emit("error", body);
                    }
                }
            }
        }
    }
}

impl<H: NamespaceHandler> Actor for HandlerActor<H> {
    type Context = Context<Self>;
}

impl<H: NamespaceHandler> Supervised for HandlerActor<H> {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        // Rebuilt from the namespace's factory: the sockets are owned by
        // their connections, so nothing else needs restoring.
        self.handler = (self.factory)();
        self.metrics.actor_restart("handler");
    }
}

impl<H: NamespaceHandler> Handler<Dispatch> for HandlerActor<H> {
    type Result = ();

    fn handle(&mut self, msg: Dispatch, ctx: &mut Context<Self>) {
        let blamed = match msg {
            Dispatch::Connect(socket) => self
                .call(|h, ctx| h.on_connect(&socket, ctx), ctx)
                .is_none()
                .then_some(socket),
            Dispatch::Event(socket, event) => return self.on_event(socket, event, ctx),
            Dispatch::Disconnecting(socket, rooms, reason) => {
                // The socket is leaving anyway: nobody to blame.
                self.call(
                    |h, ctx| h.on_disconnecting(&socket, &rooms, reason, ctx),
                    ctx,
                );
                None
            }
            Dispatch::Disconnect(socket, reason) => {
                self.call(|h, ctx| h.on_disconnect(&socket, reason, ctx), ctx);
                None
            }
            Dispatch::ServerEvent { ns, event } => {
                let name = event.name.clone();
                if self
                    .call(|h, ctx| h.on_server_event(event, ctx), ctx)
                    .is_none()
                {
                    // No socket to blame; an ack it owed is never sent (the
                    // emitter sees this node missing).
                    slog::error!(self.log, "the panic was on a server-side event";
                        "ns" => &*ns, "event" => name);
                }
                None
            }
            Dispatch::Barrier => None,
        };
        if let Some(socket) = blamed {
            self.blame(&socket);
        }
    }
}
