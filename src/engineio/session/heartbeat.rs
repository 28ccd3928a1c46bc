//! The heartbeat. Engine.IO v4: the server pings, the client must pong
//! within the timeout. v3: the client pings, the server answers pong, and a
//! client silent for the ping interval plus the timeout is closed.
//!
//! The session keeps its deadlines itself (`ping_due`, `pong_deadline`, and
//! the app's one deadline, `app_deadline`); its thread's wheel (`deadlines`)
//! tells it when the earliest of them comes, through one entry at a time,
//! instead of a timer of its own per deadline.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use super::deadlines::{self, DeadlineDue};
use super::{CloseReason, EngineApp, EngineCore, Frame, SessionActor};
use crate::engineio::packet::Packet;

/// What a session's heartbeat must do at `now`, from its deadlines.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Beat {
    /// The pong (v3: the client's ping) did not come in time.
    TimedOut,
    /// v4: send a ping; its pong is due by the deadline.
    Ping { pong_by: Instant },
    /// Nothing is due yet.
    Wait,
}

/// The heartbeat's rule, apart from the actor: the timeout wins over a ping
/// due at the same time (a ping is due only while no pong is outstanding).
pub(super) fn beat(
    now: Instant,
    ping_due: Option<Instant>,
    pong_deadline: Option<Instant>,
    timeout: std::time::Duration,
) -> Beat {
    if pong_deadline.is_some_and(|d| now >= d) {
        return Beat::TimedOut;
    }
    if ping_due.is_some_and(|d| now >= d) {
        return Beat::Ping {
            pong_by: now + timeout,
        };
    }
    Beat::Wait
}

impl EngineCore {
    /// v4: the next ping goes one interval from now.
    pub(super) fn schedule_ping(&mut self) {
        self.ping_due = Some(Instant::now() + self.config.ping_interval);
        self.arm_deadlines();
    }

    /// Set (or, with `None`, clear) the app's deadline: its
    /// [`EngineApp::on_deadline`] runs when it comes, on the session's
    /// actor, unless it was cleared or moved first. One per session,
    /// without a timer of its own (Socket.IO's connect timeout is one).
    pub fn set_app_deadline(&mut self, at: Option<Instant>) {
        self.app_deadline = at;
        self.arm_deadlines();
    }

    /// Make sure the wheel tells this session by the earliest of its
    /// deadlines: one entry at a time, pushed only when there is none or the
    /// deadline is earlier than it. A later deadline (a pong came, a v3
    /// client pinged, the app's deadline cleared) waits for the entry there
    /// is, which re-arms.
    fn arm_deadlines(&mut self) {
        let Some(at) = [self.ping_due, self.pong_deadline, self.app_deadline]
            .into_iter()
            .flatten()
            .min()
        else {
            return;
        };
        if self.wheel_entry.is_some_and(|e| e <= at) {
            return;
        }
        let Some(me) = &self.me else { return };
        self.wheel_entry = Some(at);
        let me: std::sync::Weak<dyn super::SessionPort> = Arc::downgrade(me);
        deadlines::arm(at, me);
    }

    /// The wheel told this session that an entry of its came due: the
    /// heartbeat's part. True when the app's deadline has come (it is
    /// cleared; the caller runs the app's `on_deadline`).
    fn on_deadline_due<A: EngineApp>(&mut self, ctx: &mut Context<SessionActor<A>>) -> bool {
        let now = Instant::now();
        // An earlier entry replaced a later one that is still in the wheel:
        // that one's message leaves the current entry armed.
        if self.wheel_entry.is_some_and(|e| e <= now) {
            self.wheel_entry = None;
        }
        if self.close_reason.is_some() {
            return false;
        }
        match beat(
            now,
            self.ping_due,
            self.pong_deadline,
            self.config.ping_timeout,
        ) {
            Beat::TimedOut => {
                self.close(CloseReason::PingTimeout, ctx);
                return false;
            }
            Beat::Ping { pong_by } => {
                self.ping_due = None;
                self.send(&Frame::control(&Packet::Ping(String::new())));
                self.pong_deadline = Some(pong_by);
            }
            Beat::Wait => {}
        }
        let app_due = self.app_deadline.is_some_and(|d| now >= d);
        if app_due {
            self.app_deadline = None;
        }
        self.arm_deadlines();
        app_due
    }

    pub(super) fn on_pong(&mut self) {
        // A pong with no ping outstanding is harmless: ignore it rather than
        // let a chatty client push the next ping further away.
        if self.pong_deadline.take().is_some() {
            self.schedule_ping();
        }
    }

    /// v3: arm (or re-arm) the wait for the client's next ping: it is due
    /// within the ping interval plus the timeout, as the reference server
    /// counts it. The deadline is `pong_deadline`, so requests check it too.
    pub(super) fn await_client_ping(&mut self) {
        let wait = self.config.ping_interval + self.config.ping_timeout;
        self.pong_deadline = Some(Instant::now() + wait);
        self.arm_deadlines();
    }

    /// v3: the client pinged; answer pong and wait for the next.
    pub(super) fn on_client_ping(&mut self) {
        self.send(&Frame::control(&Packet::Pong(String::new())));
        self.await_client_ping();
    }

    /// Close the session if its pong (v3: its ping) is overdue; true when it was.
    pub(super) fn pong_overdue<A: EngineApp>(
        &mut self,
        ctx: &mut Context<SessionActor<A>>,
    ) -> bool {
        if self.pong_deadline.is_some_and(|d| Instant::now() >= d) {
            self.close(CloseReason::PingTimeout, ctx);
            return true;
        }
        false
    }
}

impl<A: EngineApp> Handler<DeadlineDue> for SessionActor<A> {
    type Result = ();
    fn handle(&mut self, _: DeadlineDue, ctx: &mut Context<Self>) {
        if self.core.on_deadline_due(ctx) {
            self.app.on_deadline(&mut self.core, ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(200);

    #[test]
    fn nothing_is_due_before_the_deadlines() {
        let t = Instant::now();
        let later = Some(t + Duration::from_millis(1));
        assert_eq!(beat(t, later, None, TIMEOUT), Beat::Wait);
        assert_eq!(beat(t, None, later, TIMEOUT), Beat::Wait);
        assert_eq!(beat(t, None, None, TIMEOUT), Beat::Wait);
    }

    #[test]
    fn a_due_ping_is_sent_with_its_pong_deadline_one_timeout_away() {
        let t = Instant::now();
        assert_eq!(
            beat(t, Some(t), None, TIMEOUT),
            Beat::Ping {
                pong_by: t + TIMEOUT
            }
        );
    }

    #[test]
    fn the_pong_deadline_closes_at_the_deadline_itself_and_wins_over_a_ping() {
        let t = Instant::now();
        assert_eq!(beat(t, None, Some(t), TIMEOUT), Beat::TimedOut);
        assert_eq!(beat(t, Some(t), Some(t), TIMEOUT), Beat::TimedOut);
    }
}
