//! Slow consumers: a client whose outbound queue stays full past the grace,
//! or goes over the byte cap, is closed; it never holds memory or others back.

use actix::prelude::*;

use super::{CloseReason, EngineApp, EngineCore, SessionActor, Transport};

impl EngineCore {
    /// The client's queue is full: close it if it still is after the grace.
    pub(super) fn arm_slow_consumer_grace(&mut self) {
        if !self.grace_armed {
            self.grace_armed = true;
            if let Some(me) = &self.me {
                me.backpressure(Backpressure::Arm);
            }
        }
    }

    /// Close the client as a slow consumer: its queue is dropped, not flushed.
    pub(super) fn slow_consumer(&mut self, why: &'static str) {
        if let Transport::WebSocket { ws, .. } = &self.transport {
            ws.kill();
        }
        self.buffer.clear();
        if let Some(me) = &self.me {
            me.backpressure(Backpressure::Close(why));
        }
    }

    /// Whether the client's outbound queue is over `max_queued_frames`.
    pub(super) fn is_full(&self) -> bool {
        match &self.transport {
            Transport::WebSocket { ws, .. } => ws.is_full(),
            _ => self.buffer.len() > self.config.max_queued_frames,
        }
    }
}

/// Slow-consumer handling, sent by a session to itself.
pub enum Backpressure {
    /// The queue went over `max_queued_frames`: check again after the grace.
    Arm,
    /// Close now as a slow consumer.
    Close(&'static str),
}
impl actix::Message for Backpressure {
    type Result = ();
}

impl<A: EngineApp> Handler<Backpressure> for SessionActor<A> {
    type Result = ();
    fn handle(&mut self, msg: Backpressure, ctx: &mut Context<Self>) {
        match msg {
            Backpressure::Arm => {
                let grace = self.core.config.slow_consumer_grace;
                ctx.run_later(grace, |act, ctx| {
                    act.core.grace_armed = false;
                    if act.core.is_full() {
                        act.core.slow_consumer_close(
                            "queue full past limits.slow_consumer_grace_ms",
                            ctx,
                        );
                    }
                });
            }
            Backpressure::Close(why) => self.core.slow_consumer_close(why, ctx),
        }
    }
}

impl EngineCore {
    fn slow_consumer_close<A: EngineApp>(
        &mut self,
        why: &'static str,
        ctx: &mut Context<SessionActor<A>>,
    ) {
        if self.close_reason.is_some() {
            return;
        }
        slog::warn!(self.log(), "closing slow consumer"; "why" => why,
            "transport" => self.transport_name());
        self.metrics.slow_consumer_closed();
        if let Transport::WebSocket { ws, .. } = &self.transport {
            ws.kill();
        }
        self.buffer.clear();
        self.close(CloseReason::SlowConsumer, ctx);
    }
}
