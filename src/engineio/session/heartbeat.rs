//! The heartbeat: the server pings, the client must pong within the timeout.

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

    /// Close the session if its pong is overdue; true when it was.
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
