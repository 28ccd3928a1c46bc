//! HTTP long-polling: the waiting GET, POSTed packets, and the answer owed to
//! a GET that races the client's close.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use slog::debug;
use tokio::sync::oneshot;

use super::{
    after_flush, encode_poll_body, CloseReason, EngineApp, Frame, PollBody, SessionActor, Transport,
};
use crate::engineio::errors::EngineError;
use crate::engineio::packet::Packet;
use crate::engineio::sid::Sid;

/// How long a GET that arrives mid-upgrade waits before its noop.
pub(super) const UPGRADE_NOOP_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

/// How long the answer to a POST whose close packet ended the session, with
/// no GET waiting, is held for the GET the client may have sent before it
/// (see [`ClosedPolls`]).
pub const CLOSED_POLL_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// The answer owed to the poll of a session its client closed over polling
/// while no GET was waiting, by sid.
///
/// The client's GET and its close POST travel on two connections, read by
/// two worker threads: the GET the client sent first may reach the session
/// after the POST. The reference server, on one thread, answers a GET that
/// waits at the close with a noop; here the GET that arrives while the
/// POST's answer is held gets the same answer (a GET that arrives before the
/// client has its POST answer cannot have been sent after it). The POST is
/// answered as soon as that GET took its answer, or after
/// [`CLOSED_POLL_GRACE`]; the sid is then unknown, as for the reference.
pub type ClosedPolls = Arc<parking_lot::Mutex<HashMap<Sid, ClosedPoll>>>;

pub struct ClosedPoll {
    body: PollBody,
    taken: oneshot::Sender<()>,
}

/// The answer owed to a GET of closed session `sid`, if there is one (it is
/// given once).
pub(crate) fn take_closed_poll(polls: &ClosedPolls, sid: &str) -> Option<PollBody> {
    let slot = polls.lock().remove(sid)?;
    let _ = slot.taken.send(());
    Some(slot.body)
}

pub type PollReply = Result<PollBody, EngineError>;

/// A polling GET: answered once data is queued.
pub struct Poll(pub oneshot::Sender<PollReply>);
impl actix::Message for Poll {
    type Result = ();
}

impl<A: EngineApp> Handler<Poll> for SessionActor<A> {
    type Result = ();
    fn handle(&mut self, Poll(tx): Poll, ctx: &mut Context<Self>) {
        if self.core.pong_overdue(ctx) {
            self.core
                .metrics
                .bad_input(EngineError::UnknownSid.metric_kind());
            let _ = tx.send(Err(EngineError::UnknownSid));
            return;
        }
        if self.core.close_reason.is_some() {
            // Closed by the client's POST, handled before this GET.
            if let Some(body) = take_closed_poll(&self.core.closed_polls, self.core.sid.as_str()) {
                let _ = tx.send(Ok(body));
                return;
            }
        }
        match &mut self.core.transport {
            Transport::Polling { waiting } => {
                // A waiting GET whose client went away is simply replaced.
                if waiting.as_ref().is_some_and(|w| !w.is_closed()) {
                    // Two GETs at once is a protocol violation: the reference
                    // server answers 400 and closes the session; the waiting
                    // GET carries the close packet.
                    let _ = tx.send(Err(EngineError::BadRequest));
                    self.core.metrics.bad_input("bad_request");
                    self.core.buffer.push(Frame::control(&Packet::Close));
                    self.core.close(CloseReason::TransportError, ctx);
                    return;
                }
                if self.core.probe.is_some() && self.core.buffer.is_empty() {
                    // Mid-upgrade. A client pausing its polling loop gets a
                    // noop shortly (the reference server ticks every 100 ms);
                    // a GET sent after the client's `5` but handled before
                    // it (they travel on different connections) is still
                    // parked when the upgrade lands and is refused there.
                    *waiting = Some(tx);
                    self.core.waiting_since_probe = true;
                    ctx.run_later(UPGRADE_NOOP_DELAY, |act, _| {
                        if act.core.probe.is_some() {
                            if let Some(tx) = act.core.take_waiting() {
                                let _ = tx.send(Ok(act.core.control_body(&Packet::Noop)));
                            }
                        }
                    });
                } else if !self.core.buffer.is_empty() {
                    let framing = self.core.framing;
                    let _ = tx.send(Ok(encode_poll_body(&mut self.core.buffer, framing)));
                } else {
                    *waiting = Some(tx);
                }
            }
            Transport::WebSocket { ws, .. } => {
                // Upgraded: polling is over. The 400 leaves after what the
                // WebSocket carries (the `3probe`): the client may read the
                // WebSocket only once it has the 400.
                self.core.metrics.bad_input("bad_request");
                after_flush(ws, move || {
                    let _ = tx.send(Err(EngineError::BadRequest));
                });
            }
            Transport::Pending => {
                let _ = tx.send(Err(EngineError::BadRequest));
                self.core.metrics.bad_input("bad_request");
            }
        }
    }
}

/// The request of a polling GET went away before it was answered: the
/// client dropped its connection mid-poll. Like the reference server ("poll
/// connection closed prematurely"), that ends the session as a transport
/// error, at once rather than at the ping timeout.
pub struct PollAborted;
impl actix::Message for PollAborted {
    type Result = ();
}

impl<A: EngineApp> Handler<PollAborted> for SessionActor<A> {
    type Result = ();
    fn handle(&mut self, _: PollAborted, ctx: &mut Context<Self>) {
        if let Transport::Polling { waiting } = &mut self.core.transport {
            if waiting.as_ref().is_some_and(|tx| tx.is_closed()) {
                *waiting = None;
                debug!(self.core.log(), "poll connection closed prematurely");
                self.core.close(CloseReason::TransportError, ctx);
            }
        }
    }
}

/// A polling POST's decoded packets, or the reason it could not be decoded.
pub struct Post(pub Result<Vec<Packet>, PostError>);
#[derive(Debug, Clone, Copy)]
pub enum PostError {
    Decode,
    InvalidUtf8,
    TooLarge,
}
/// What a handled POST asks of its answer: `Some` when its close packet
/// ended the session while no GET was waiting. The answer is then held until
/// the receiver resolves (a GET took the noop it is owed) or
/// [`CLOSED_POLL_GRACE`] has passed; see [`ClosedPolls`].
pub type PostDone = Option<oneshot::Receiver<()>>;

impl actix::Message for Post {
    type Result = Result<PostDone, EngineError>;
}

impl<A: EngineApp> Handler<Post> for SessionActor<A> {
    type Result = Result<PostDone, EngineError>;
    fn handle(&mut self, Post(packets): Post, ctx: &mut Context<Self>) -> Self::Result {
        if self.core.pong_overdue(ctx) {
            self.core
                .metrics
                .bad_input(EngineError::UnknownSid.metric_kind());
            return Err(EngineError::UnknownSid);
        }
        if !matches!(self.core.transport, Transport::Polling { .. }) {
            self.core.metrics.bad_input("bad_request");
            return Err(EngineError::BadRequest);
        }
        match packets {
            Ok(packets) => {
                let was_open = !self.core.is_closing();
                for p in packets {
                    if self.core.is_closing() {
                        break;
                    }
                    self.on_packet(p, None, ctx);
                }
                if !(was_open && self.core.close_reason == Some(CloseReason::TransportClose)) {
                    return Ok(None);
                }
                // The client closed. A waiting GET gets its noop when the
                // actor stops; with none waiting, one may be on its way on
                // another connection: keep its answer for it.
                if matches!(&self.core.transport,
                    Transport::Polling { waiting: Some(tx) } if !tx.is_closed())
                {
                    return Ok(None);
                }
                let body = if self.core.buffer.is_empty() {
                    self.core.control_body(&Packet::Noop)
                } else {
                    let framing = self.core.framing;
                    encode_poll_body(&mut self.core.buffer, framing)
                };
                let (taken, rx) = oneshot::channel();
                self.core
                    .closed_polls
                    .lock()
                    .insert(self.core.sid.clone(), ClosedPoll { body, taken });
                Ok(Some(rx))
            }
            Err(e @ (PostError::Decode | PostError::InvalidUtf8)) => {
                self.core.metrics.bad_input(match e {
                    PostError::InvalidUtf8 => "invalid_utf8",
                    _ => "engine_decode",
                });
                self.core.close(CloseReason::ParseError, ctx);
                Err(EngineError::BadRequest)
            }
            Err(PostError::TooLarge) => {
                self.core.metrics.bad_input("oversized");
                self.core.close(CloseReason::TransportError, ctx);
                Err(EngineError::PayloadTooLarge)
            }
        }
    }
}
