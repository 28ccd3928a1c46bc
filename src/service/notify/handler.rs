//! The `/` namespace of service mode: the client events of SERVICE.md
//! (`subscribe`, `unsubscribe`, `publish`, `presence`, `user:emit`,
//! `auth:refresh`), each answered through its ack; the token's expiry
//! (`auth:expiring`, then `auth:expired` and a server disconnect); and what
//! the other nodes' services ask of this one (presence, revocation, counts).

use std::sync::Arc;
use std::time::Duration;

use actix::{AsyncContext, SpawnHandle};
use serde_json::{json, Value};
use slog::debug;

use super::auth::{self, Identity, Refusal};
use super::channels::{self, Refused};
use super::expiry::{self, Armed, Entry, Schedule, Step};
use super::{user_room, AuthState, Service, INFO, PRESENCE, PRESENT, REVOKE};
use crate::api::{spawn_then, HandlerActor, HandlerContext, NamespaceHandler};
use crate::node::remote::ServerEvent;
use crate::node::socket::{AckSender, DisconnectReason, EmitError, Event, JoinError, Socket};
use crate::socketio::encode::check_event_name;
use crate::socketio::payload::Payload;

/// How long a `subscribe` waits for its rooms to be in effect at the
/// broker before it answers anyway (the rooms are joined on this node; the
/// broker catches up when it is back).
const SYNC_TIMEOUT: Duration = Duration::from_secs(2);

/// One per worker thread (like every handler actor); what it keeps is per
/// socket of that thread.
pub struct ServiceHandler {
    service: Arc<Service>,
    /// Its sockets' token expiries ([`expiry`]).
    expiries: Schedule,
    /// The timer for the earliest of them: when, and its handle.
    timer: Option<(u64, SpawnHandle)>,
}

/// `socket`'s token's `exp` if the socket is still armed with `arming`.
fn armed(socket: &Socket, arming: u64) -> Option<u64> {
    socket
        .extensions()
        .update(|a: &mut AuthState| a.identity.exp.filter(|_| a.arming == arming))
        .flatten()
}

/// Whether an entry for `a` can still be due: its socket there and still
/// armed with it.
fn live(a: &Armed) -> bool {
    a.socket
        .upgrade()
        .is_some_and(|s| armed(&s, a.arming).is_some())
}

fn error(ack: Option<AckSender>, message: &str) {
    if let Some(ack) = ack {
        ack.send(json!({ "error": message }));
    }
}

/// A channel argument: one name or an array of names.
fn channel_list(v: Option<&Value>) -> Option<Vec<String>> {
    match v? {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned))
            .collect(),
        _ => None,
    }
}

/// Argument `i` of `event` as the payload to pass on, with the event's
/// binary attachments (its placeholders index them).
fn forwarded(event: &Event, i: usize) -> Payload {
    Payload {
        args: vec![event.arg(i).cloned().unwrap_or(Value::Null)],
        binary: event.payload.binary.clone(),
    }
}

fn identity(socket: &Socket) -> Option<Identity> {
    socket.extensions().get::<AuthState>().map(|a| a.identity)
}

impl ServiceHandler {
    pub fn new(service: Arc<Service>) -> ServiceHandler {
        ServiceHandler {
            service,
            expiries: Schedule::default(),
            timer: None,
        }
    }

    /// Arm `auth:expiring` and the disconnect at `exp` for `socket`, if its
    /// token expires: a new arming number in its [`AuthState`], so what was
    /// armed for it before (another token) is skipped when due.
    fn schedule(&mut self, socket: &Socket, ctx: &mut HandlerContext<Self>) {
        let arming = expiry::next_arming();
        let exp = socket
            .extensions()
            .update(|a: &mut AuthState| {
                a.arming = arming;
                a.identity.exp
            })
            .flatten();
        let Some(exp) = exp else {
            return;
        };
        let warn_at = (exp * 1000).saturating_sub(self.service.settings.auth.refresh_ahead_ms);
        self.push(
            Entry {
                at: warn_at,
                step: Step::Warn,
                armed: Armed {
                    arming,
                    socket: socket.downgrade(),
                },
            },
            ctx,
        );
    }

    fn push(&mut self, entry: Entry, ctx: &mut HandlerContext<Self>) {
        self.expiries.push(entry, live);
        let next = self.expiries.next_at();
        if next.is_some() && self.timer.map(|(at, _)| Some(at)) != Some(next) {
            self.arm_timer(ctx);
        }
    }

    /// The one timer, at the earliest entry (moved earlier when an earlier
    /// entry came).
    fn arm_timer(&mut self, ctx: &mut HandlerContext<Self>) {
        if let Some((_, t)) = self.timer.take() {
            ctx.cancel_future(t);
        }
        let Some(at) = self.expiries.next_at() else {
            return;
        };
        let wait = Duration::from_millis(at.saturating_sub(auth::now_ms()));
        let t = ctx.run_later(wait, |act: &mut HandlerActor<ServiceHandler>, ctx| {
            act.call(
                |h, ctx| {
                    h.timer = None;
                    h.due(ctx);
                },
                ctx,
            );
        });
        self.timer = Some((at, t));
    }

    /// What is due now: each entry still armed for its socket warns, or
    /// expires the token; a warning arms the expiry after it.
    fn due(&mut self, ctx: &mut HandlerContext<Self>) {
        let now = auth::now_ms();
        let mut expire = Vec::new();
        while let Some(e) = self.expiries.pop_due(now) {
            let Some(socket) = e.armed.socket.upgrade() else {
                continue;
            };
            let Some(exp) = armed(&socket, e.armed.arming) else {
                continue;
            };
            match e.step {
                Step::Warn => {
                    let _ = socket.emit("auth:expiring", json!({ "exp": exp }));
                    expire.push(Entry {
                        at: exp * 1000 + self.service.settings.auth.leeway_ms,
                        step: Step::Expire,
                        ..e
                    });
                }
                Step::Expire => self.expire(&socket, exp),
            }
        }
        // After the loop, so an expiry due now is not popped in the same pass
        // as its warning (it is, at the next timer, at once).
        for e in expire {
            self.expiries.push(e, live);
        }
        self.arm_timer(ctx);
    }

    fn expire(&mut self, socket: &Socket, exp: u64) {
        socket.extensions().update(|a: &mut AuthState| a.arming = 0);
        self.service.metrics.expired();
        debug!(self.service.log, "token expired: disconnecting"; "socket" => socket.id(),
            "user" => socket.user());
        let _ = socket.emit("auth:expired", json!({ "exp": exp }));
        socket.disconnect();
    }

    fn subscribe(&mut self, socket: &Socket, mut event: Event, ctx: &mut HandlerContext<Self>) {
        let ack = event.ack.take();
        let settings = &self.service.settings.channels;
        let Some(list) = channel_list(event.arg(0)) else {
            self.service.metrics.event("subscribe", "invalid");
            return error(ack, "invalid arguments");
        };
        if list.len() > settings.max_per_request {
            self.service.metrics.event("subscribe", "invalid");
            return error(ack, "too many channels");
        }
        let granted = identity(socket).map(|i| i.channels).unwrap_or_default();
        let mut ok = Vec::new();
        let mut refused = Vec::new();
        for channel in list {
            let verdict = channels::may_subscribe(settings, &granted, &channel)
                .map_err(Refused::as_str)
                .and_then(|()| match socket.join(channel.as_str()) {
                    Ok(()) => Ok(()),
                    Err(JoinError::RoomLimit { .. }) => Err("room limit"),
                    Err(_) => Err("disconnected"),
                });
            match verdict {
                Ok(()) => ok.push(channel),
                Err(reason) => refused.push(json!({ "channel": channel, "reason": reason })),
            }
        }
        let outcome = if refused.is_empty() { "ok" } else { "refused" };
        self.service.metrics.event("subscribe", outcome);
        let Some(ack) = ack else {
            return;
        };
        let answer = json!({ "ok": ok, "refused": refused });
        let Some(handle) = self.service.handle().cloned() else {
            return ack.send(answer);
        };
        // In effect on every node before the ack leaves: the broker has the
        // rooms' subscriptions.
        spawn_then(
            ctx,
            async move { handle.synced(SYNC_TIMEOUT).await },
            move |_h: &mut Self, _synced, _ctx| ack.send(answer),
        );
    }

    fn unsubscribe(&mut self, socket: &Socket, mut event: Event) {
        let ack = event.ack.take();
        let Some(list) = channel_list(event.arg(0)) else {
            self.service.metrics.event("unsubscribe", "invalid");
            return error(ack, "invalid arguments");
        };
        let mut ok = Vec::new();
        for channel in list {
            // Never the user's or roles' rooms: those are the service's.
            if channels::is_reserved(&channel) || channel == socket.id() {
                continue;
            }
            socket.leave(channel.as_str());
            ok.push(channel);
        }
        self.service.metrics.event("unsubscribe", "ok");
        if let Some(ack) = ack {
            ack.send(json!({ "ok": ok }));
        }
    }

    fn publish(&mut self, socket: &Socket, mut event: Event) {
        let ack = event.ack.take();
        let (Some(channel), Some(name)) = (event.str_arg(0), event.str_arg(1)) else {
            self.service.metrics.event("publish", "invalid");
            return error(ack, "invalid arguments");
        };
        let settings = &self.service.settings.channels;
        if !channels::may_publish(settings, channel) || !socket.inner.in_room(channel) {
            self.service.metrics.event("publish", "refused");
            return error(ack, "forbidden");
        }
        if check_event_name(name).is_err() {
            self.service.metrics.event("publish", "invalid");
            return error(ack, "invalid event");
        }
        let sent = socket.to(channel).emit(name, forwarded(&event, 2));
        self.answer_emit("publish", sent, ack);
    }

    fn presence(&mut self, socket: &Socket, mut event: Event, ctx: &mut HandlerContext<Self>) {
        let ack = event.ack.take();
        let Some(channel) = event.str_arg(0).map(str::to_owned) else {
            self.service.metrics.event("presence", "invalid");
            return error(ack, "invalid arguments");
        };
        if channels::is_reserved(&channel) || !socket.inner.in_room(&channel) {
            self.service.metrics.event("presence", "refused");
            return error(ack, "forbidden");
        }
        self.service.metrics.event("presence", "ok");
        let Some(ack) = ack else {
            return;
        };
        let service = self.service.clone();
        spawn_then(
            ctx,
            async move { service.presence(&channel).await },
            move |_h: &mut Self, answer, _ctx| ack.send(answer),
        );
    }

    fn user_emit(&mut self, socket: &Socket, mut event: Event) {
        let ack = event.ack.take();
        let (Some(user), Some(name)) = (socket.user(), event.str_arg(0)) else {
            let why = if socket.user().is_none() {
                "forbidden"
            } else {
                "invalid arguments"
            };
            self.service.metrics.event("user:emit", "invalid");
            return error(ack, why);
        };
        if check_event_name(name).is_err() {
            self.service.metrics.event("user:emit", "invalid");
            return error(ack, "invalid event");
        }
        let data = forwarded(&event, 1);
        // Every other socket of the user, on every node: the user's room
        // without this socket (its id is a room only it is in).
        let sent = socket
            .server()
            .of(socket.namespace())
            .to(user_room(user))
            .except(socket.id())
            .emit(name, data);
        self.answer_emit("user:emit", sent, ack);
    }

    /// Answer a client event that emitted: `{"ok":true}`, or why not.
    fn answer_emit(
        &self,
        event: &'static str,
        sent: Result<(), EmitError>,
        ack: Option<AckSender>,
    ) {
        match sent {
            Ok(()) => {
                self.service.metrics.event(event, "ok");
                if let Some(ack) = ack {
                    ack.send(json!({ "ok": true }));
                }
            }
            Err(e) => {
                self.service.metrics.event(event, "invalid");
                error(ack, &e.to_string());
            }
        }
    }

    fn refresh(&mut self, socket: &Socket, mut event: Event, ctx: &mut HandlerContext<Self>) {
        let ack = event.ack.take();
        let Some(current) = identity(socket) else {
            self.service.metrics.event("auth:refresh", "refused");
            return error(ack, Refusal::Missing.as_str());
        };
        let Some(token) = event.str_arg(0) else {
            self.service.metrics.event("auth:refresh", "invalid");
            return error(ack, "invalid arguments");
        };
        let verdict = self.service.verify(Some(token)).and_then(|id| {
            if id.sub == current.sub {
                Ok(id)
            } else {
                Err(Refusal::Invalid)
            }
        });
        let identity = match verdict {
            Ok(id) => id,
            Err(r) => {
                self.service.metrics.refused(r.label());
                self.service.metrics.event("auth:refresh", "refused");
                return error(ack, r.as_str());
            }
        };
        let exp = identity.exp;
        socket.extensions().insert(AuthState::new(identity));
        self.service.metrics.refreshed();
        self.service.metrics.event("auth:refresh", "ok");
        self.schedule(socket, ctx);
        if let Some(ack) = ack {
            ack.send(json!({ "ok": true, "exp": exp }));
        }
    }
}

impl NamespaceHandler for ServiceHandler {
    fn on_connect(&mut self, socket: &Socket, ctx: &mut HandlerContext<Self>) {
        if socket.user().is_some() && identity(socket).is_none() {
            // Recovered on another node than the one it left (its typed
            // data stayed there): check its token again.
            let auth = socket.auth().clone();
            let token = auth::token_of(&auth, &socket.handshake().headers);
            match self.service.verify(token) {
                Ok(identity) if Some(identity.sub.as_str()) == socket.user() => {
                    socket.extensions().insert(AuthState::new(identity));
                }
                _ => {
                    let _ = socket.emit("auth:expired", json!({}));
                    socket.disconnect();
                    return;
                }
            }
        }
        self.schedule(socket, ctx);
    }

    fn on_event(&mut self, socket: &Socket, event: Event, ctx: &mut HandlerContext<Self>) {
        match event.name.as_str() {
            "subscribe" => self.subscribe(socket, event, ctx),
            "unsubscribe" => self.unsubscribe(socket, event),
            "publish" => self.publish(socket, event),
            "presence" => self.presence(socket, event, ctx),
            "user:emit" => self.user_emit(socket, event),
            "auth:refresh" => self.refresh(socket, event, ctx),
            _ => {
                self.service.metrics.event("unknown", "invalid");
                error(event.ack, "unknown event");
            }
        }
    }

    fn on_server_event(&mut self, event: ServerEvent, _ctx: &mut HandlerContext<Self>) {
        let arg = event.payload.args.first().cloned().unwrap_or(Value::Null);
        let answer = match event.name.as_str() {
            PRESENCE => {
                let room = arg.get("room").and_then(Value::as_str).unwrap_or_default();
                let (sockets, mut users) = self.service.local_presence(room);
                users.sort();
                users.dedup();
                json!({ "sockets": sockets, "users": users })
            }
            PRESENT => {
                let users: Vec<&str> = arg
                    .get("users")
                    .and_then(Value::as_array)
                    .map(|l| l.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let here: Vec<&str> = users
                    .into_iter()
                    .filter(|u| self.service.has_local_member(&user_room(u)))
                    .collect();
                json!(here)
            }
            REVOKE => {
                let (Some(user), Some(at)) = (
                    arg.get("user").and_then(Value::as_str),
                    arg.get("at").and_then(Value::as_u64),
                ) else {
                    return;
                };
                self.service.apply_revocation(user, at);
                json!(self.service.disconnect_local(user))
            }
            INFO => json!({ "sockets": self.service.handle().map_or(0, |h| h.socket_count()) }),
            _ => return,
        };
        if let Some(ack) = event.ack {
            ack.send(answer);
        }
    }

    fn on_disconnect(
        &mut self,
        socket: &Socket,
        _reason: DisconnectReason,
        _ctx: &mut HandlerContext<Self>,
    ) {
        // Its expiry, if armed, is skipped when due. Its typed data is
        // still there for a recovery, which arms it again.
        socket.extensions().update(|a: &mut AuthState| a.arming = 0);
    }
}
