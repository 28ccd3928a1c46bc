//! The bench fixture application (`shared/FIXTURE.md`): the contract every
//! load scenario drives, so one load generator measures Riptide and its peers.
//!
//! | event     | arguments          | what the server does                              |
//! |-----------|--------------------|---------------------------------------------------|
//! | `join`    | room, ack          | joins `room`, then acks (the join is in effect before the ack leaves) |
//! | `publish` | room, payload      | emits `msg` with payload to every socket in `room` (the sender only if a member) |
//! | `echo`    | payload, ack       | acks with `payload`                                |

use crate::api::{HandlerContext, NamespaceHandler};
use crate::node::socket::{Event, Socket};
use crate::socketio::payload::Payload;

/// The fixture's handler, served on `/` by the binary when `app.mode = "fixture"`.
#[derive(Debug, Default, Clone, Copy)]
pub struct FixtureHandler;

impl NamespaceHandler for FixtureHandler {
    fn on_event(&mut self, socket: &Socket, event: Event, _ctx: &mut HandlerContext<Self>) {
        handle_event(socket, event);
    }
}

/// The fixture's events (`join`, `publish`, `echo`) for any handler that
/// serves them; other events are ignored.
pub fn handle_event(socket: &Socket, event: Event) {
    match event.name.as_str() {
        "join" => {
            let Some(room) = event.str_arg(0) else { return };
            // `join` registers the membership before it returns, so a
            // publish made after the ack (by anyone) reaches us.
            // A join refused at the room limit is logged and counted by
            // `join`; the fixture acks anyway (FIXTURE.md has no error reply).
            let _ = socket.join(room);
            if let Some(ack) = event.ack {
                ack.send(());
            }
        }
        "publish" => {
            let mut args = event.payload.args;
            if args.is_empty() {
                return;
            }
            let room = match args.remove(0) {
                serde_json::Value::String(r) => r,
                _ => return,
            };
            let payload = Payload {
                args,
                binary: event.payload.binary,
            };
            let _ = socket.within(room).emit("msg", payload);
        }
        "echo" => {
            if let Some(ack) = event.ack {
                ack.send(event.payload);
            }
        }
        _ => {}
    }
}
