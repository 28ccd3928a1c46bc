//! The heartbeat. Engine.IO v4: the server pings, the client must pong
//! within the timeout. v3: the client pings, the server answers pong, and a
//! client silent for the ping interval plus the timeout is closed.

use actix::prelude::*;

use super::{CloseReason, EngineApp, EngineCore, Frame, SessionActor};
use crate::engineio::packet::Packet;

impl EngineCore {
    pub(super) fn schedule_ping<A: EngineApp>(&mut self, ctx: &mut Context<SessionActor<A>>) {
        let interval = self.config.ping_interval;
        self.ping_timer = Some(ctx.run_later(interval, |act, ctx| {
            act.core.ping_timer = None;
            act.core.send(&Frame::control(&Packet::Ping(String::new())));
            let timeout = act.core.config.ping_timeout;
            act.core.pong_deadline = Some(std::time::Instant::now() + timeout);
            act.core.pong_timer = Some(ctx.run_later(timeout, |act, ctx| {
                act.core.pong_timer = None;
                act.core.close(CloseReason::PingTimeout, ctx);
            }));
        }));
    }

    pub(super) fn on_pong<A: EngineApp>(&mut self, ctx: &mut Context<SessionActor<A>>) {
        // A pong with no ping outstanding is harmless: ignore it rather than
        // let a chatty client push the next ping further away.
        if let Some(h) = self.pong_timer.take() {
            ctx.cancel_future(h);
            self.pong_deadline = None;
            self.schedule_ping(ctx);
        }
    }

    /// v3: arm (or re-arm) the wait for the client's next ping: it is due
    /// within the ping interval plus the timeout, as the reference server
    /// counts it. The deadline is `pong_deadline`, so requests check it too.
    pub(super) fn await_client_ping<A: EngineApp>(&mut self, ctx: &mut Context<SessionActor<A>>) {
        if let Some(h) = self.pong_timer.take() {
            ctx.cancel_future(h);
        }
        let wait = self.config.ping_interval + self.config.ping_timeout;
        self.pong_deadline = Some(std::time::Instant::now() + wait);
        self.pong_timer = Some(ctx.run_later(wait, |act, ctx| {
            act.core.pong_timer = None;
            act.core.close(CloseReason::PingTimeout, ctx);
        }));
    }

    /// v3: the client pinged; answer pong and wait for the next.
    pub(super) fn on_client_ping<A: EngineApp>(&mut self, ctx: &mut Context<SessionActor<A>>) {
        self.send(&Frame::control(&Packet::Pong(String::new())));
        self.await_client_ping(ctx);
    }

    /// Close the session if its pong (v3: its ping) is overdue; true when it was.
    pub(super) fn pong_overdue<A: EngineApp>(
        &mut self,
        ctx: &mut Context<SessionActor<A>>,
    ) -> bool {
        if self
            .pong_deadline
            .is_some_and(|d| std::time::Instant::now() >= d)
        {
            self.close(CloseReason::PingTimeout, ctx);
            return true;
        }
        false
    }
}
